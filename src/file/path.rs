//! Target names: validation of user-given and URL-derived file names under the download dir.
//!
//! The rules follow the WebExtensions `downloads.download()` filename checks: a target is a
//! relative path of plain components; absolute paths, `..`, `.`, empty components, components
//! that start or end with a dot or a space, control characters and backslashes are refused.
//! Symlinks that would lead outside the download dir are caught later, when the transfer actor
//! resolves the real path off-thread (see `sink::prepare_part`).

use std::path::{Component, Path, PathBuf};

use crate::error::TransferError;

/// The longest component we accept, in bytes (the common `NAME_MAX`).
const NAME_MAX: usize = 255;

/// Check a user-given relative target path and return it as a `PathBuf` of plain components.
pub(crate) fn validate_target(name: &str) -> Result<PathBuf, TransferError> {
    let refuse = |reason: &str| Err(TransferError::unsafe_path(name, reason));
    if name.is_empty() {
        return refuse("empty path");
    }
    if name.contains('\\') {
        return refuse("backslashes are not allowed");
    }
    if name.chars().any(|c| c.is_control()) {
        return refuse("control characters are not allowed");
    }
    let path = Path::new(name);
    if path.is_absolute() || name.starts_with('/') {
        return refuse("absolute paths are not allowed");
    }
    let mut out = PathBuf::new();
    for raw in name.split('/') {
        if raw.is_empty() {
            return refuse("empty path component");
        }
        if raw == "." || raw == ".." {
            return refuse("`.` and `..` components are not allowed");
        }
        if raw.starts_with('.') || raw.ends_with('.') {
            return refuse("components may not start or end with a dot");
        }
        if raw.starts_with(' ') || raw.ends_with(' ') {
            return refuse("components may not start or end with a space");
        }
        if raw.len() > NAME_MAX {
            return refuse("a path component is longer than 255 bytes");
        }
        out.push(raw);
    }
    // Belt and braces: every component must be a plain name.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return refuse("only plain path components are allowed");
    }
    Ok(out)
}

/// A safe file name derived from a URL's last path segment, or `"download"`.
///
/// Percent-escapes are decoded, then anything that `validate_target` would refuse is replaced,
/// so the result always passes it.
pub(crate) fn name_from_url(url: &url::Url) -> PathBuf {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    let decoded: String = percent_decode(last);
    let cleaned: String = decoded
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '.' || c == ' ');
    let mut name: String = trimmed.to_string();
    while name.len() > NAME_MAX {
        name.pop();
    }
    if name.is_empty() {
        name = "download".to_string();
    }
    match validate_target(&name) {
        Ok(p) => p,
        Err(_) => PathBuf::from("download"),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `name (k).ext` for the `Uniquify` conflict policy (k ≥ 1).
pub(crate) fn uniquified(path: &Path, k: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem} ({k}).{}", ext.to_string_lossy()),
        None => format!("{stem} ({k})"),
    };
    path.with_file_name(name)
}

/// `<path>.part`.
pub(crate) fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".part");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unsafe_targets() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            ".hidden",
            "trailing.",
            "a\\b",
            "a\nb",
            " lead",
        ] {
            assert!(
                matches!(validate_target(bad), Err(TransferError::UnsafePath { .. })),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(
            validate_target("a/b.txt").unwrap(),
            PathBuf::from("a/b.txt")
        );
    }

    #[test]
    fn names_from_urls_are_safe() {
        let cases = [
            ("http://h/a/file.bin", "file.bin"),
            ("http://h/", "download"),
            ("http://h/dir/..%2F..%2Fetc%2Fpasswd", "_.._etc_passwd"),
            ("http://h/%2e%2e", "download"),
            ("http://h/name%20with%20space.txt", "name with space.txt"),
        ];
        for (u, want) in cases {
            let got = name_from_url(&url::Url::parse(u).unwrap());
            assert_eq!(got, PathBuf::from(want), "{u}");
            assert!(validate_target(got.to_str().unwrap()).is_ok());
        }
    }

    #[test]
    fn uniquify_keeps_extension() {
        assert_eq!(
            uniquified(Path::new("d/a.tar"), 2),
            PathBuf::from("d/a (2).tar")
        );
        assert_eq!(uniquified(Path::new("a"), 1), PathBuf::from("a (1)"));
    }
}
