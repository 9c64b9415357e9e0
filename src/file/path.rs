//! Target names: validation of user-given and URL-derived file names under the download dir.
//!
//! The rules follow the WebExtensions `downloads.download()` filename checks: a target is a
//! relative path of plain components; absolute paths, `..`, `.`, empty components, components
//! that start or end with a dot or a space, control characters, invisible format characters
//! (see [`is_sneaky`]) and backslashes are refused. Names taken from a URL get those characters
//! replaced instead. Symlinks that would lead outside the download dir are caught later, when
//! the transfer actor resolves the real path off-thread (see `sink::prepare_part`).
//!
//! Lengths: every file the engine creates for a target must fit `NAME_MAX` (255 bytes, the
//! limit of the common file systems): `name`, `name.part`, `name (k)` and `name (k).part`. So a
//! file name is at most `NAME_MAX - ".part".len()` bytes (a longer caller-given one is refused,
//! one from a URL is cut), and [`uniquified`] cuts the stem to make room for ` (k)`.

use std::path::{Component, Path, PathBuf};

use crate::error::TransferError;

/// The longest directory component we accept, in bytes (the common `NAME_MAX`).
const NAME_MAX: usize = 255;

/// The suffix of the file a download writes before it is complete.
const PART_SUFFIX: &str = ".part";

/// The longest file name (last component) we accept: its `.part` must fit `NAME_MAX` too.
pub(crate) const FILE_NAME_MAX: usize = NAME_MAX - PART_SUFFIX.len();

/// The longest extension kept whole when a name is cut; a longer "extension" is just text.
const EXT_MAX: usize = 16;

/// Whether `c` has no place in a file name: control characters, Unicode format characters
/// (general category Cf: bidirectional overrides and isolates such as U+202E, zero-width
/// spaces and joiners, the byte-order mark, soft hyphen, tag characters) and the line and
/// paragraph separators. They make one name look like another in a listing
/// (`invoice\u{202E}fdp.exe` shows as `invoiceexe.pdf`), or split a name across lines.
pub(crate) fn is_sneaky(c: char) -> bool {
    // General category Cf (Unicode 16), plus Zl and Zp.
    const RANGES: &[(u32, u32)] = &[
        (0x00AD, 0x00AD),
        (0x0600, 0x0605),
        (0x061C, 0x061C),
        (0x06DD, 0x06DD),
        (0x070F, 0x070F),
        (0x0890, 0x0891),
        (0x08E2, 0x08E2),
        (0x180E, 0x180E),
        (0x200B, 0x200F),
        (0x2028, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
        (0x110BD, 0x110BD),
        (0x110CD, 0x110CD),
        (0x13430, 0x1343F),
        (0x1BCA0, 0x1BCA3),
        (0x1D173, 0x1D17A),
        (0xE0001, 0xE0001),
        (0xE0020, 0xE007F),
    ];
    let n = c as u32;
    c.is_control() || RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&n))
}

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
    if let Some(c) = name.chars().find(|c| is_sneaky(*c)) {
        return refuse(&format!(
            "invisible or bidirectional formatting characters are not allowed (U+{:04X})",
            c as u32
        ));
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
    if name
        .rsplit('/')
        .next()
        .is_some_and(|f| f.len() > FILE_NAME_MAX)
    {
        return refuse(&format!(
            "the file name is longer than {FILE_NAME_MAX} bytes (its `.part` file would pass 255)"
        ));
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
            if c == '/' || c == '\\' || is_sneaky(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '.' || c == ' ');
    let mut name = cut(trimmed, FILE_NAME_MAX);
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

/// `name` cut to at most `max` bytes, on a character boundary, keeping a short extension
/// (`.tar`, `.jpeg`) whole when there is a stem to cut instead; never ends with a dot or a
/// space (a name [`validate_target`] would refuse).
fn cut(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = split_ext(name);
    let (stem, ext) = if ext.len() < max / 2 {
        (stem, ext)
    } else {
        (name, "")
    };
    let mut end = max - ext.len();
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    let stem = stem[..end].trim_end_matches(['.', ' ']);
    format!("{stem}{ext}")
        .trim_end_matches(['.', ' '])
        .to_string()
}

/// `("name", ".ext")` when the name has a short extension after a non-empty stem, else
/// `(name, "")`.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= EXT_MAX + 1 => name.split_at(i),
        _ => (name, ""),
    }
}

/// `name (k).ext` for the `Uniquify` conflict policy (k ≥ 1), its stem cut so that the name
/// and its `.part` fit `NAME_MAX`.
pub(crate) fn uniquified(path: &Path, k: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match path.extension().map(|e| e.len() + 1) {
        // `Path`'s own split (the last dot), unless the "extension" is most of the name.
        Some(n) if n < FILE_NAME_MAX / 2 => name.split_at(name.len() - n),
        _ => (name.as_str(), ""),
    };
    let tag = format!(" ({k})");
    let mut end = stem
        .len()
        .min(FILE_NAME_MAX.saturating_sub(tag.len() + ext.len()));
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    path.with_file_name(format!("{}{tag}{ext}", &stem[..end]))
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

    /// Every file the engine may create for `name` fits `NAME_MAX`.
    fn fits(name: &Path) -> bool {
        let last = name.file_name().unwrap().len();
        last + PART_SUFFIX.len() <= NAME_MAX
            && (1..10_000).all(|k| {
                uniquified(name, k).file_name().unwrap().len() + PART_SUFFIX.len() <= NAME_MAX
            })
    }

    #[test]
    fn long_names_from_urls_are_cut_to_leave_room_for_every_suffix() {
        for (raw, ext) in [
            (format!("{}.bin", "n".repeat(251)), ".bin"),
            (format!("{}.tar", "é".repeat(200)), ".tar"),
            (format!("{}.jpeg", "日".repeat(100)), ".jpeg"),
            ("🦀".repeat(80), ""),
            (format!("a.{}", "x".repeat(300)), ""),
            (format!("{}  .txt", "s".repeat(246)), ".txt"),
        ] {
            let url = url::Url::parse("http://h/").unwrap().join(&raw).unwrap();
            let name = name_from_url(&url);
            let got = name.to_str().unwrap();
            assert!(got.len() <= FILE_NAME_MAX, "{} bytes", got.len());
            assert!(fits(&name), "{got}");
            assert!(got.ends_with(ext), "{got}");
            assert!(validate_target(got).is_ok(), "{got}");
            let stem = got.strip_suffix(ext).unwrap();
            assert!(raw.starts_with(stem.trim_end()), "{got}");
        }
        // Names that fit are kept whole.
        let name = format!("{}.bin", "n".repeat(FILE_NAME_MAX - 4));
        let url = url::Url::parse("http://h/").unwrap().join(&name).unwrap();
        assert_eq!(name_from_url(&url), PathBuf::from(&name));
    }

    #[test]
    fn caller_names_must_leave_room_for_the_part_suffix() {
        let longest = "y".repeat(FILE_NAME_MAX);
        assert!(validate_target(&longest).is_ok());
        assert!(fits(Path::new(&longest)));
        let dirs = format!("{}/{longest}", "d".repeat(NAME_MAX));
        assert!(
            validate_target(&dirs).is_ok(),
            "a directory may use all 255 bytes"
        );
        let err = validate_target(&format!("{longest}y")).unwrap_err();
        assert!(err.to_string().contains("250 bytes"), "{err}");
    }

    #[test]
    fn sneaky_characters_are_refused_from_callers_and_replaced_in_urls() {
        for c in [
            '\u{202E}',
            '\u{200B}',
            '\u{200E}',
            '\u{2028}',
            '\u{2029}',
            '\u{FEFF}',
            '\u{2066}',
            '\u{2069}',
            '\u{061C}',
            '\u{00AD}',
            '\u{E0041}',
            '\u{0085}',
            '\u{7F}',
        ] {
            let name = format!("a{c}b.txt");
            assert!(
                matches!(
                    validate_target(&name),
                    Err(TransferError::UnsafePath { .. })
                ),
                "U+{:04X} accepted",
                c as u32
            );
            let mut url = url::Url::parse("http://h/").unwrap();
            url.set_path(&name);
            assert_eq!(
                name_from_url(&url),
                PathBuf::from("a_b.txt"),
                "U+{:04X}",
                c as u32
            );
        }
        for fine in ["café.txt", "日本語.pdf", "emoji 🦀.bin", "a\u{0301}.txt"] {
            assert!(validate_target(fine).is_ok(), "{fine}");
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
