//! The bearer-token check, in constant time.
//!
//! `subtle` is in the tree only through rustls (an optional feature), so the comparison is
//! our own, on SHA-256 digests of both sides: equal lengths whatever the token's length, and
//! every byte compared whatever the first difference.

use actix_web::{dev::ServiceRequest, http::header};
use sha2::{Digest, Sha256};

use super::error::ApiError;

/// Whether `given` equals `expected`, in time independent of where they differ (and of
/// `given`'s length beyond hashing it). An empty `expected` matches nothing.
pub(crate) fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0 && !expected.is_empty()
}

/// `Ok` when the request may go on: no token configured, or the right bearer token.
pub(crate) fn check(token: Option<&str>, req: &ServiceRequest) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()))
        .unwrap_or(b"");
    if !given.is_empty() && token_matches(given, token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

/// The credentials of an `Authorization: Bearer <token>` value. The scheme's name is
/// case-insensitive (RFC 9110 §11.1: clients send `bearer` too), and spaces may separate it
/// from the token.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return None;
    }
    Some(rest.trim_ascii_start())
}

#[cfg(test)]
mod tests {
    use super::{bearer, token_matches};

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer(b"Bearer s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer(b"bearer s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer(b"BEARER   s3cret"), Some(&b"s3cret"[..]));
        assert_eq!(bearer(b"Bearers3cret"), None);
        assert_eq!(bearer(b"Basic s3cret"), None);
        assert_eq!(bearer(b"Bear"), None);
        assert_eq!(
            bearer(b"Bearer "),
            Some(&b""[..]),
            "empty: refused by the caller"
        );
    }

    #[test]
    fn equal_tokens_match_and_others_do_not() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cres", b"s3cret"));
        assert!(!token_matches(b"s3cret ", b"s3cret"));
        assert!(!token_matches(b"", b"s3cret"));
        assert!(!token_matches(b"", b""), "an empty token matches nothing");
    }
}
