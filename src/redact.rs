//! URLs as the engine shows them in errors and logs: never with credentials, never with a query.
//!
//! A URL's userinfo (`user:password@`) is a secret, and so is, often, its query (a token, a
//! signature). Every message, error and log line that quotes a URL quotes it through here:
//! `scheme://host:port/path`, with `***@` where credentials were, without query or fragment.
//! (`Outcome::Completed::url` and `TransferStatus`'s URLs are the caller's data and keep their
//! query; they never hold credentials because a URL with any is refused at submit and as a
//! redirect target.)

use std::fmt;

use url::{Position, Url};

/// `url`, shown without credentials, query or fragment.
pub(crate) fn url(url: &Url) -> Redacted<'_> {
    Redacted::Url(url)
}

/// `raw`, a URL as text that may not even parse, shown like [`url`] does: everything from the
/// authority's start to the last `@` becomes `***`, and the query and fragment are cut off.
///
/// It cannot know where a malformed URL's userinfo ends, so it errs on the side of hiding:
/// with no `/` after the scheme (or no scheme), the `***` starts at the beginning; an `@` in a
/// path or query hides everything before it.
pub(crate) fn raw(raw: &str) -> Redacted<'_> {
    Redacted::Raw(raw.trim())
}

/// Whether `url` carries a user name or a password.
pub(crate) fn has_credentials(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// A URL ready to be shown (see [`url`] and [`raw`]); allocates nothing.
#[derive(Clone, Copy)]
pub(crate) enum Redacted<'a> {
    Url(&'a Url),
    Raw(&'a str),
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Redacted::Url(url) if has_credentials(url) => {
                f.write_str(&url[..Position::BeforeUsername])?;
                f.write_str("***@")?;
                f.write_str(&url[Position::BeforeHost..Position::AfterPath])
            }
            Redacted::Url(url) => f.write_str(&url[..Position::AfterPath]),
            Redacted::Raw(raw) => {
                let start = authority_start(raw);
                let (head, rest) = raw.split_at(start);
                f.write_str(head)?;
                let rest = match rest.rfind('@') {
                    Some(at) => {
                        f.write_str("***@")?;
                        &rest[at + 1..]
                    }
                    None => rest,
                };
                f.write_str(rest.split(['?', '#']).next().unwrap_or_default())
            }
        }
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// Where `raw`'s authority starts: after `scheme:` and the slashes (or backslashes, which
/// parsers read as slashes) that follow it, or after the slashes of a scheme-relative `//host`;
/// 0 when there is no scheme followed by a slash.
fn authority_start(raw: &str) -> usize {
    let slashes = |s: &str| s.len() - s.trim_start_matches(['/', '\\']).len();
    let Some(colon) = raw.find(':').filter(|_| slashes(raw) == 0) else {
        return slashes(raw);
    };
    let scheme = &raw[..colon];
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let after = slashes(&raw[colon + 1..]);
    if is_scheme && after > 0 {
        colon + 1 + after
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_urls_lose_credentials_query_and_fragment() {
        for (given, shown) in [
            ("http://a.test/x", "http://a.test/x"),
            ("http://a.test", "http://a.test/"),
            (
                "https://a.test:8443/p/q?token=t#frag",
                "https://a.test:8443/p/q",
            ),
            ("http://u:pw@a.test/x?k=v", "http://***@a.test/x"),
            ("http://u@a.test/x", "http://***@a.test/x"),
            ("http://:pw@a.test:81/", "http://***@a.test:81/"),
            ("http://u:p%40w@[::1]:8080/x", "http://***@[::1]:8080/x"),
            ("http://a.test/a@b?c@d", "http://a.test/a@b"),
        ] {
            let url = Url::parse(given).unwrap();
            assert_eq!(self::url(&url).to_string(), shown, "{given}");
        }
    }

    #[test]
    fn raw_urls_lose_everything_that_may_be_credentials() {
        for (given, shown) in [
            (
                "http://user:PASS@127.0.0.1:99999/x",
                "http://***@127.0.0.1:99999/x",
            ),
            ("  http://u:PASS@h/x?q=1#f ", "http://***@h/x"),
            ("http://u:PA/SS@h/x", "http://***@h/x"),
            ("http://u:PA?SS@h:99999/x?t=1", "http://***@h:99999/x"),
            ("http://u:PA#SS@h:99999/x", "http://***@h:99999/x"),
            ("http:\\\\u:PASS@h:99999/x", "http:\\\\***@h:99999/x"),
            ("//u:PASS@h/x", "//***@h/x"),
            ("/path@x", "/***@x"),
            ("user:PASS@h:99999", "***@h:99999"),
            ("http:user:PASS@h", "***@h"),
            ("http://h/path?mail=a@b", "http://***@b"),
            ("http://h:99999/x?token=t", "http://h:99999/x"),
            ("ftp://127.0.0.1/file", "ftp://127.0.0.1/file"),
            ("data:text/plain,hello", "data:text/plain,hello"),
            ("javascript:alert(1)", "javascript:alert(1)"),
            ("http://[::1", "http://[::1"),
            ("not a url", "not a url"),
            ("", ""),
            ("@", "***@"),
        ] {
            assert_eq!(raw(given).to_string(), shown, "{given:?}");
        }
    }

    #[test]
    fn credentials_are_told_apart() {
        let has = |s: &str| has_credentials(&Url::parse(s).unwrap());
        assert!(has("http://u@h/"));
        assert!(has("http://:p@h/"));
        assert!(has("http://u:p@h/"));
        assert!(!has("http://h/"));
        assert!(!has("http://@h/"));
    }
}
