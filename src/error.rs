//! Errors: why a transfer was refused or failed, and why a control message was refused.

use std::{fmt, io};

/// Why a transfer was refused at submit, or why it failed.
///
/// One variant per cause, in the spirit of the WebExtensions `InterruptReason` list. Match on the
/// variant for details, or on [`TransferError::kind`] for a plain, copyable code. The error is
/// `Clone + Send + Sync + 'static`: it travels in events to any number of subscribers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The request is malformed: bad URL, unsupported scheme, bad header, missing upload file.
    /// Refused at submit, before any I/O.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The target file name is absolute, contains `..`, an empty or dot-edged component, or
    /// resolves outside the download directory. Refused before any request is sent.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The TCP (or TLS) connection could not be established.
    #[error("could not connect: {0}")]
    Connect(String),

    /// A deadline passed; the phase says which one.
    #[error("timed out ({0})")]
    Timeout(TimeoutPhase),

    /// The connection failed while the request or the body was in flight.
    #[error("network error: {0}")]
    Network(String),

    /// The server answered with a status that is not a success (and the transfer did not opt
    /// to accept any status).
    #[error("server answered {status}")]
    Server {
        /// The HTTP status code.
        status: u16,
    },

    /// The body ended before (or after) the length the server announced.
    #[error("body truncated: expected {expected} bytes, received {received}")]
    Truncated {
        /// Bytes announced by `Content-Length` / `Content-Range`.
        expected: u64,
        /// Bytes actually received.
        received: u64,
    },

    /// The response is malformed: conflicting lengths, an unframed body, a bad `Content-Range`.
    #[error("bad content: {0}")]
    BadContent(String),

    /// More redirects than the configured limit (a loop ends here too).
    #[error("too many redirects (limit {limit})")]
    TooManyRedirects {
        /// The configured limit.
        limit: u32,
    },

    /// A redirect that the engine refuses to follow (unsupported scheme, credentials in the
    /// `Location`, missing `Location`, or a body that cannot be re-sent).
    #[error("redirect to {location:?} refused: {reason}")]
    RedirectRefused {
        /// The `Location` header as sent, without credentials (`***@` in their place), query
        /// or fragment.
        location: String,
        /// Why it was refused.
        reason: String,
    },

    /// An in-memory body passed its cap.
    #[error("body larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The cap in bytes.
        limit: u64,
    },

    /// A file operation failed; `kind` classifies the OS reason.
    #[error("file error ({kind}) while {op}: {message}")]
    File {
        /// Which class of failure.
        kind: FileErrorKind,
        /// What the engine was doing (`"creating"`, `"writing"`, ...).
        op: &'static str,
        /// The OS error text.
        message: String,
    },

    /// The downloaded bytes do not match the expected size or SHA-256. The `.part` file is
    /// removed; nothing is renamed into place.
    #[error("{what} mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// `"size"` or `"sha256"`.
        what: &'static str,
        /// The expected value.
        expected: String,
        /// What was received.
        actual: String,
    },

    /// A retry could only restart from zero, and the download asked to be resumable only
    /// (the server ignored the range, answered with a bad `Content-Range`, or has no validator).
    #[error("cannot resume: {0}")]
    CannotResume(String),

    /// The engine was shut down while the transfer was queued or active. A download's `.part`
    /// file is kept.
    #[error("the engine shut down")]
    Shutdown,

    /// The transfer's actor stopped without finishing (a panic inside the engine).
    #[error("internal error: {0}")]
    Internal(String),
}

impl TransferError {
    /// The plain code of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransferError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            TransferError::UnsafePath { .. } => ErrorKind::UnsafePath,
            TransferError::Connect(_) => ErrorKind::Connect,
            TransferError::Timeout(_) => ErrorKind::Timeout,
            TransferError::Network(_) => ErrorKind::Network,
            TransferError::Server { .. } => ErrorKind::Server,
            TransferError::Truncated { .. } => ErrorKind::Truncated,
            TransferError::BadContent(_) => ErrorKind::BadContent,
            TransferError::TooManyRedirects { .. } => ErrorKind::TooManyRedirects,
            TransferError::RedirectRefused { .. } => ErrorKind::RedirectRefused,
            TransferError::BodyTooLarge { .. } => ErrorKind::BodyTooLarge,
            TransferError::File { .. } => ErrorKind::File,
            TransferError::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            TransferError::CannotResume(_) => ErrorKind::CannotResume,
            TransferError::Shutdown => ErrorKind::Shutdown,
            TransferError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Whether trying the same transfer again may succeed: connection failures, timeouts,
    /// truncated bodies and `408`, `429`, `5xx` statuses (except `501`, `505`).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransferError::Connect(_)
            | TransferError::Timeout(_)
            | TransferError::Network(_)
            | TransferError::Truncated { .. } => true,
            TransferError::Server { status } => {
                matches!(*status, 408 | 429)
                    || ((500..600).contains(status) && !matches!(*status, 501 | 505))
            }
            TransferError::File { kind, .. } => *kind == FileErrorKind::Transient,
            _ => false,
        }
    }

    /// Whether this is a timeout of any phase.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TransferError::Timeout(_))
    }

    /// The HTTP status, for [`TransferError::Server`].
    pub fn status(&self) -> Option<u16> {
        match self {
            TransferError::Server { status } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        TransferError::InvalidRequest(msg.into())
    }

    pub(crate) fn unsafe_path(path: impl Into<String>, reason: impl Into<String>) -> Self {
        TransferError::UnsafePath {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn file(op: &'static str, err: &io::Error) -> Self {
        TransferError::File {
            kind: FileErrorKind::from_io(err),
            op,
            message: err.to_string(),
        }
    }
}

/// The plain code of a [`TransferError`]: what to match on or log. With the `serde` feature it
/// serialises as a snake_case string (`"truncated"`, `"too_many_redirects"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum ErrorKind {
    InvalidRequest,
    UnsafePath,
    Connect,
    Timeout,
    Network,
    Server,
    Truncated,
    BadContent,
    TooManyRedirects,
    RedirectRefused,
    BodyTooLarge,
    File,
    ChecksumMismatch,
    CannotResume,
    Shutdown,
    Internal,
}

impl ErrorKind {
    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::UnsafePath => "unsafe_path",
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::Server => "server",
            ErrorKind::Truncated => "truncated",
            ErrorKind::BadContent => "bad_content",
            ErrorKind::TooManyRedirects => "too_many_redirects",
            ErrorKind::RedirectRefused => "redirect_refused",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::File => "file",
            ErrorKind::ChecksumMismatch => "checksum_mismatch",
            ErrorKind::CannotResume => "cannot_resume",
            ErrorKind::Shutdown => "shutdown",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which deadline passed, for [`TransferError::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TimeoutPhase {
    /// Establishing the TCP/TLS connection.
    Connect,
    /// Waiting for the response headers after the request was sent.
    Headers,
    /// No byte moved in either direction for the idle timeout, during a body.
    Idle,
    /// The optional overall deadline of the transfer, every attempt and backoff included
    /// ([`total_timeout`](crate::EngineBuilder::total_timeout)). Never retried.
    Total,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Headers => "response headers",
            TimeoutPhase::Idle => "idle",
            TimeoutPhase::Total => "total",
        })
    }
}

/// The class of a [`TransferError::File`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum FileErrorKind {
    /// Permission denied or a read-only file system.
    AccessDenied,
    /// The disk (or quota) is full.
    NoSpace,
    /// A path component is too long.
    NameTooLong,
    /// The target exists and the conflict policy is `Fail`.
    AlreadyExists,
    /// The target's `.part` file belongs to another download that is still running (in this
    /// process or another), or it was replaced or removed while this download wrote it: a
    /// `.part` file is only ever written, and moved into place, by the download that created it.
    InUse,
    /// The download directory, or a directory on the way to the target, is not a directory.
    NotADirectory,
    /// The file to upload, or a directory, does not exist.
    NotFound,
    /// Interrupted or would-block: trying again may work.
    Transient,
    /// Anything else.
    Failed,
}

impl FileErrorKind {
    pub(crate) fn from_io(err: &io::Error) -> Self {
        use io::ErrorKind as K;
        match err.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => FileErrorKind::AccessDenied,
            K::StorageFull | K::QuotaExceeded => FileErrorKind::NoSpace,
            K::InvalidFilename => FileErrorKind::NameTooLong,
            K::AlreadyExists => FileErrorKind::AlreadyExists,
            K::NotFound => FileErrorKind::NotFound,
            K::NotADirectory => FileErrorKind::NotADirectory,
            K::Interrupted | K::WouldBlock | K::TimedOut => FileErrorKind::Transient,
            _ => match err.raw_os_error() {
                Some(28) | Some(122) => FileErrorKind::NoSpace, // ENOSPC, EDQUOT
                Some(36) => FileErrorKind::NameTooLong,         // ENAMETOOLONG
                Some(20) => FileErrorKind::NotADirectory,       // ENOTDIR
                Some(13) | Some(1) | Some(30) => FileErrorKind::AccessDenied,
                _ => FileErrorKind::Failed,
            },
        }
    }
}

impl fmt::Display for FileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileErrorKind::AccessDenied => "access denied",
            FileErrorKind::NoSpace => "no space",
            FileErrorKind::NameTooLong => "name too long",
            FileErrorKind::AlreadyExists => "already exists",
            FileErrorKind::InUse => "in use",
            FileErrorKind::NotADirectory => "not a directory",
            FileErrorKind::NotFound => "not found",
            FileErrorKind::Transient => "transient",
            FileErrorKind::Failed => "failed",
        })
    }
}

/// How a transfer ended: the payload of [`CancelError::NotActive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum EndState {
    /// Every byte arrived and was verified.
    Completed,
    /// It failed; see its `Ended` event for the error.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl fmt::Display for EndState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndState::Completed => "completed",
            EndState::Failed => "failed",
            EndState::Cancelled => "cancelled",
        })
    }
}

/// Why a control message ([`Cancel`](crate::Cancel), [`Pause`](crate::Pause),
/// [`Resume`](crate::Resume)) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CancelError {
    /// The transfer already ended, in the given way; nothing was changed.
    #[error("transfer is not active: already {0}")]
    NotActive(EndState),
    /// This engine never issued that id, or no longer remembers it: it was erased, or it
    /// ended longer ago than the last [`keep_ended`](crate::EngineBuilder::keep_ended) endings.
    #[error("unknown transfer id")]
    Unknown,
}

/// Why [`Erase`](crate::Erase) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum EraseError {
    /// The transfer has not ended: cancel it first.
    #[error("transfer is still active")]
    Active,
    /// This engine never issued that id (or it was erased already).
    #[error("unknown transfer id")]
    Unknown,
}

#[cfg(feature = "serde")]
mod serde_impl {
    use super::TransferError;
    use serde::ser::{Serialize, SerializeStruct, Serializer};

    /// Serialised as `{"kind": "<snake_case>", "message": "<Display>"}` plus the variant's
    /// details: `status`; `expected`/`received`; `phase` (`"connect"`, `"headers"`, `"idle"`,
    /// `"total"`); `file_kind` and `op`; `limit`; `location`; `path`.
    impl Serialize for TransferError {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("TransferError", 4)?;
            st.serialize_field("kind", &self.kind())?;
            st.serialize_field("message", &self.to_string())?;
            match self {
                TransferError::Server { status } => st.serialize_field("status", status)?,
                TransferError::Truncated { expected, received } => {
                    st.serialize_field("expected", expected)?;
                    st.serialize_field("received", received)?;
                }
                TransferError::Timeout(phase) => st.serialize_field("phase", phase)?,
                TransferError::File { kind, op, .. } => {
                    st.serialize_field("file_kind", kind)?;
                    st.serialize_field("op", op)?;
                }
                TransferError::TooManyRedirects { limit } => st.serialize_field("limit", limit)?,
                TransferError::BodyTooLarge { limit } => st.serialize_field("limit", limit)?,
                TransferError::RedirectRefused { location, .. } => {
                    st.serialize_field("location", location)?
                }
                TransferError::UnsafePath { path, .. } => st.serialize_field("path", path)?,
                _ => {}
            }
            st.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_are_classified() {
        let class = |e: io::Error| FileErrorKind::from_io(&e);
        assert_eq!(
            class(io::Error::from_raw_os_error(28)),
            FileErrorKind::NoSpace
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(122)),
            FileErrorKind::NoSpace
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(30)),
            FileErrorKind::AccessDenied
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(13)),
            FileErrorKind::AccessDenied
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(36)),
            FileErrorKind::NameTooLong
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(2)),
            FileErrorKind::NotFound
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(20)),
            FileErrorKind::NotADirectory
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(4)),
            FileErrorKind::Transient
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(5)),
            FileErrorKind::Failed
        ); // EIO
    }
}
