//! What a download does with the files around it: an existing target, and its `.part` file
//! when it is cancelled or fails. Public, re-exported at the crate root; decided here, where
//! the files are made, and chosen per download in [`crate::Download`].

/// What a download does when its target file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Conflict {
    /// Pick `name (1).ext`, `name (2).ext`, ... (the default, like browsers).
    #[default]
    Uniquify,
    /// Replace the existing file, atomically, once the new one is complete. A download to a
    /// target whose `.part` another running download writes (in this process or another)
    /// fails with a `File` error of kind `InUse`; a leftover `.part` nobody writes is replaced.
    Overwrite,
    /// Fail with a `File` error of kind `AlreadyExists`. A `.part` in use fails as with
    /// `Overwrite`.
    Fail,
}

/// What happens to a download's `.part` file when the transfer is cancelled or finally fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Partial {
    /// Keep it (a later download of the same target does not reuse it).
    Keep,
    /// Remove it.
    Delete,
}
