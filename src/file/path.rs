//! Target names: validation of user-given targets, and the names of downloads given none,
//! chosen from the response ([`file_name`]: `Content-Disposition`, else the final URL).
//!
//! The rules follow the WebExtensions `downloads.download()` filename checks: a target is a
//! relative path of plain components; absolute paths, `..`, `.`, empty components, components
//! that start or end with a dot or a space, control characters, invisible format characters
//! (see [`is_sneaky`]) and backslashes are refused. Names a server gives get those characters
//! replaced instead ([`sanitize`]). Symlinks that would lead outside the download dir are caught later, when
//! the transfer actor resolves the real path off-thread (see `sink::prepare_part`).
//!
//! Lengths: every file the engine creates for a target must fit `NAME_MAX` (255 bytes, the
//! limit of the common file systems): `name`, `name.part`, `name (k)` and `name (k).part`. So a
//! file name is at most `NAME_MAX - ".part".len()` bytes (a longer caller-given one is refused,
//! one from a URL is cut), and [`uniquified`] cuts the stem to make room for ` (k)`.

use std::path::{Component, Path, PathBuf};

use awc::http::header::{HeaderMap, CONTENT_DISPOSITION};

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

/// The name of a download given no target, chosen from its response as browsers choose it:
/// the `Content-Disposition` file name (`filename*`, RFC 8187, before `filename`), else the
/// last path segment of `final_url` (the URL that answered, after redirects; percent-decoded),
/// else `download`. Always a safe single file name (see [`sanitize`]): it passes
/// [`validate_target`].
pub(crate) fn file_name(headers: &HeaderMap, final_url: &url::Url) -> PathBuf {
    let disposition = headers
        .get(CONTENT_DISPOSITION)
        .and_then(|v| disposition_filename(v.as_bytes()));
    let from_url = || {
        let last = final_url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .unwrap_or("");
        String::from_utf8_lossy(&percent_decode(last)).into_owned()
    };
    [disposition, Some(from_url())]
        .into_iter()
        .flatten()
        .map(|raw| sanitize(&raw))
        .find(|name| !name.is_empty() && validate_target(name).is_ok())
        .map_or_else(|| PathBuf::from("download"), PathBuf::from)
}

/// The file name a `Content-Disposition` value gives (RFC 6266), whatever its disposition type:
/// the `filename*` parameter (RFC 8187: `UTF-8'lang'percent-encoded`, the language ignored;
/// ISO-8859-1 too) when it decodes, else `filename` (a token, or a quoted string whose `\`
/// escapes the next character). Bytes that are not UTF-8 are read as ISO-8859-1, as browsers
/// do. `None` when neither gives a name.
pub(crate) fn disposition_filename(value: &[u8]) -> Option<String> {
    let text = match std::str::from_utf8(value) {
        Ok(s) => s.to_owned(),
        Err(_) => value.iter().map(|&b| char::from(b)).collect(),
    };
    let (mut plain, mut extended) = (None, None);
    // The disposition type runs up to the first `;`; a value without one (`filename=a.pdf`)
    // is read as parameters from its start, as browsers read it.
    let mut rest = match text.split_once(';') {
        Some((kind, _)) if kind.contains('=') => text.as_str(),
        Some((_, params)) => params,
        None if text.contains('=') => text.as_str(),
        None => "",
    };
    while !rest.is_empty() {
        let (name, after) = match rest.find(['=', ';']) {
            Some(i) if rest.as_bytes()[i] == b'=' => (&rest[..i], &rest[i + 1..]),
            Some(i) => {
                rest = &rest[i + 1..];
                continue;
            }
            None => break,
        };
        let (value, after) = param_value(after);
        rest = after;
        match name.trim().to_ascii_lowercase().as_str() {
            "filename*" if extended.is_none() => extended = ext_value(&value),
            "filename" if plain.is_none() => plain = Some(value),
            _ => {}
        }
    }
    extended.or(plain).filter(|n| !n.is_empty())
}

/// A parameter's value at the start of `s` (a quoted string, or text up to the next `;`) and
/// what follows it.
fn param_value(s: &str) -> (String, &str) {
    let s = s.trim_start();
    let Some(quoted) = s.strip_prefix('"') else {
        let end = s.find(';').unwrap_or(s.len());
        let rest = s.get(end + 1..).unwrap_or("");
        return (s[..end].trim().to_owned(), rest);
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    out.push(escaped);
                }
            }
            '"' => {
                let after = &quoted[i + 1..];
                let rest = after.find(';').map_or("", |j| &after[j + 1..]);
                return (out, rest);
            }
            c => out.push(c),
        }
    }
    // An unterminated quoted string runs to the end.
    (out, "")
}

/// An RFC 8187 `ext-value`: `charset'language'value-chars`. UTF-8 and ISO-8859-1 only; `None`
/// for another charset or bytes that are not in it.
fn ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let (charset, _language, encoded) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = percent_decode(encoded);
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

/// Names Windows reserves for devices, whatever the extension (`NUL.txt` is the device too).
const RESERVED: [&str; 24] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$",
    "CONOUT$",
];

/// `raw` made a safe single file name, as browsers make a server's name one: path separators,
/// the characters Windows forbids (`<>:"|?*`), control characters and invisible formatting
/// characters ([`is_sneaky`]) become `_`; leading and trailing dots and spaces are trimmed; a
/// name Windows reserves gets a leading `_`; and the name is cut to [`FILE_NAME_MAX`] bytes on
/// a character boundary, keeping its extension when it can. Empty when nothing is left.
pub(crate) fn sanitize(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '<' | '>' | ':' | '"' | '|' | '?' | '*') || is_sneaky(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c| c == '.' || c == ' ');
    let stem = trimmed.split('.').next().unwrap_or("").trim_end();
    let name = if RESERVED.iter().any(|r| stem.eq_ignore_ascii_case(r)) {
        format!("_{trimmed}")
    } else {
        trimmed.to_owned()
    };
    cut(&name, FILE_NAME_MAX)
}

fn percent_decode(s: &str) -> Vec<u8> {
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
    out
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

    /// The name of a response without `Content-Disposition` from `url`.
    fn from_url(url: &url::Url) -> PathBuf {
        file_name(&HeaderMap::new(), url)
    }

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
            let got = from_url(&url::Url::parse(u).unwrap());
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
            let name = from_url(&url);
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
        assert_eq!(from_url(&url), PathBuf::from(&name));
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
                from_url(&url),
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

    /// The name a response with `Content-Disposition: disposition` from `url` gets.
    fn named(disposition: &str, url: &str) -> String {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_DISPOSITION,
            awc::http::header::HeaderValue::from_bytes(disposition.as_bytes()).unwrap(),
        );
        let name = file_name(&headers, &url::Url::parse(url).unwrap());
        let name = name.to_str().unwrap().to_owned();
        assert!(validate_target(&name).is_ok(), "{name:?}");
        name
    }

    #[test]
    fn content_disposition_names_the_file() {
        let url = "http://h/dl?id=7";
        for (value, want) in [
            (
                r#"attachment; filename="report final.pdf""#,
                "report final.pdf",
            ),
            ("attachment; filename=plain.txt", "plain.txt"),
            ("inline; filename=plain.txt", "plain.txt"),
            ("attachment; FILENAME=upper.txt", "upper.txt"),
            (r#"attachment; filename="say \"hi\".txt""#, "say _hi_.txt"),
            (
                r#"attachment; filename="back\\slash.txt""#,
                "back_slash.txt",
            ),
            (
                r#"attachment; filename="semi;colon.txt"; size=3"#,
                "semi;colon.txt",
            ),
            ("attachment; filename=report final.pdf", "report final.pdf"),
            ("filename=typeless.bin", "typeless.bin"),
            // RFC 8187: `filename*` wins, whichever comes first; the language is ignored.
            (
                "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
                "€ rates.txt",
            ),
            (
                "attachment; filename*=utf-8'en'na%C3%AFve.txt; filename=fallback.txt",
                "naïve.txt",
            ),
            ("attachment; filename*=ISO-8859-1''caf%E9.txt", "café.txt"),
            // An undecodable `filename*` falls back to `filename`.
            (
                "attachment; filename*=UTF-8''%FF%FE.txt; filename=ok.txt",
                "ok.txt",
            ),
            (
                "attachment; filename*=KOI8-R''%C1.txt; filename=ok.txt",
                "ok.txt",
            ),
            // No name at all, or one that sanitises to nothing: the URL's segment.
            ("attachment", "dl"),
            ("attachment; filename=\"\"", "dl"),
            ("attachment; filename=\"...\"", "dl"),
            ("attachment; filename", "dl"),
        ] {
            assert_eq!(named(value, "http://h/dl"), want, "{value}");
            let _ = url;
        }
        // Bytes that are not UTF-8 are ISO-8859-1.
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_DISPOSITION,
            awc::http::header::HeaderValue::from_bytes(b"attachment; filename=\"caf\xe9.txt\"")
                .unwrap(),
        );
        let got = file_name(&headers, &url::Url::parse(url).unwrap());
        assert_eq!(got, PathBuf::from("café.txt"));
    }

    #[test]
    fn names_from_the_server_are_sanitised() {
        let url = "http://h/x";
        for (value, want) in [
            (
                "attachment; filename=\"../../etc/passwd\"",
                "_.._etc_passwd",
            ),
            ("attachment; filename=\"..\\\\x\"", "_x"),
            (
                "attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd",
                "_.._etc_passwd",
            ),
            ("attachment; filename=\"/etc/passwd\"", "_etc_passwd"),
            ("attachment; filename=\".bashrc\"", "bashrc"),
            ("attachment; filename=\"trailing. . \"", "trailing"),
            (
                "attachment; filename*=UTF-8''a%01b%0Ac%7F.txt",
                "a_b_c_.txt",
            ),
            (
                "attachment; filename*=UTF-8''a%E2%80%AEfdp.exe",
                "a_fdp.exe",
            ),
            (
                "attachment; filename=\"a<b>c:d|e?f*.txt\"",
                "a_b_c_d_e_f_.txt",
            ),
            ("attachment; filename=CON", "_CON"),
            ("attachment; filename=nul.txt", "_nul.txt"),
            ("attachment; filename=\"Com1.tar.gz\"", "_Com1.tar.gz"),
            ("attachment; filename=lpt9", "_lpt9"),
            ("attachment; filename=conout$.log", "_conout$.log"),
            ("attachment; filename=\"aux .txt\"", "_aux .txt"),
            // Not reserved: longer names, or digits Windows does not reserve.
            ("attachment; filename=CONSOLE.txt", "CONSOLE.txt"),
            ("attachment; filename=COM0", "COM0"),
        ] {
            assert_eq!(named(value, url), want, "{value}");
        }
    }

    #[test]
    fn overlong_names_from_the_server_are_cut_on_a_character_boundary() {
        let long = "日".repeat(120); // 360 bytes
        let encoded: String = long
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>();
        let value = format!("attachment; filename*=UTF-8''{encoded}.pdf");
        let got = named(&value, "http://h/x");
        assert!(got.len() <= FILE_NAME_MAX, "{} bytes", got.len());
        assert!(got.ends_with(".pdf"), "{got}");
        assert!(long.starts_with(got.strip_suffix(".pdf").unwrap()));
        assert!(fits(Path::new(&got)));
    }

    #[test]
    fn without_a_disposition_the_final_url_names_the_file() {
        assert_eq!(
            named("attachment", "http://h/a/b/final%20name.iso?x=1"),
            "final name.iso"
        );
        assert_eq!(named("attachment", "http://h/"), "download");
        assert_eq!(named("attachment", "http://h/a/%20.%20"), "download");
        assert_eq!(named("attachment", "http://h/nul"), "_nul");
    }
}
