//! The error taxonomy: one matchable kind per cause, helpers that agree with it, and (with the
//! `serde` feature) snake_case kinds with machine-readable details.
#![cfg(feature = "serde")]

use actix_transfer::{ErrorKind, FileErrorKind, TimeoutPhase, TransferError};
use serde_json::{json, Value};

use crate::support::assert_sentence;

/// One error of each cause, with the kind and serialised kind it must have.
fn one_of_each() -> Vec<(TransferError, ErrorKind, &'static str)> {
    use TransferError as E;
    vec![
        (
            E::InvalidRequest("x".into()),
            ErrorKind::InvalidRequest,
            "invalid_request",
        ),
        (
            E::UnsafePath {
                path: "../x".into(),
                reason: "r".into(),
            },
            ErrorKind::UnsafePath,
            "unsafe_path",
        ),
        (E::Connect("refused".into()), ErrorKind::Connect, "connect"),
        (
            E::Timeout(TimeoutPhase::Idle),
            ErrorKind::Timeout,
            "timeout",
        ),
        (E::Network("reset".into()), ErrorKind::Network, "network"),
        (E::Server { status: 503 }, ErrorKind::Server, "server"),
        (
            E::Truncated {
                expected: 10,
                received: 5,
            },
            ErrorKind::Truncated,
            "truncated",
        ),
        (
            E::Overlong {
                expected: 10,
                received: 11,
            },
            ErrorKind::Overlong,
            "overlong",
        ),
        (
            E::BadContent("x".into()),
            ErrorKind::BadContent,
            "bad_content",
        ),
        (
            E::TooManyRedirects { limit: 10 },
            ErrorKind::TooManyRedirects,
            "too_many_redirects",
        ),
        (
            E::RedirectRefused {
                location: "ftp://x".into(),
                reason: "r".into(),
            },
            ErrorKind::RedirectRefused,
            "redirect_refused",
        ),
        (
            E::BodyTooLarge { limit: 1 },
            ErrorKind::BodyTooLarge,
            "body_too_large",
        ),
        (
            E::File {
                kind: FileErrorKind::NoSpace,
                op: "writing",
                cause: "No space left on device (os error 28)".into(),
            },
            ErrorKind::File,
            "file",
        ),
        (
            E::SizeMismatch {
                expected: 10,
                actual: 5,
            },
            ErrorKind::SizeMismatch,
            "size_mismatch",
        ),
        (
            E::ChecksumMismatch {
                what: "sha256",
                expected: "ab".into(),
                actual: "cd".into(),
            },
            ErrorKind::ChecksumMismatch,
            "checksum_mismatch",
        ),
        (
            E::CannotResume("x".into()),
            ErrorKind::CannotResume,
            "cannot_resume",
        ),
        (E::Shutdown, ErrorKind::Shutdown, "shutdown"),
        (
            E::Journal("disk I/O error".into()),
            ErrorKind::Journal,
            "journal",
        ),
        (E::Internal("x".into()), ErrorKind::Internal, "internal"),
        (E::Panicked("x".into()), ErrorKind::Panicked, "panicked"),
        (E::Tls("unknown issuer".into()), ErrorKind::Tls, "tls"),
        (
            E::Dns {
                cause: "no such name".into(),
                temporary: false,
            },
            ErrorKind::Dns,
            "dns",
        ),
        (
            E::Proxy {
                proxy: "http://127.0.0.1:3128".into(),
                status: Some(407),
                cause: "refused the credentials".into(),
                retryable: false,
            },
            ErrorKind::Proxy,
            "proxy",
        ),
    ]
}

#[test]
fn every_cause_has_its_own_kind_and_snake_case_name() {
    let all = one_of_each();
    for (error, kind, name) in &all {
        assert_eq!(error.kind(), *kind);
        assert_eq!(kind.as_str(), *name);
        assert_eq!(kind.to_string(), *name);
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(name));
        assert_eq!(serde_json::to_value(error).unwrap()["kind"], json!(name));
        assert_eq!(
            serde_json::from_value::<ErrorKind>(json!(name)).unwrap(),
            *kind
        );
    }
    let mut names: Vec<_> = all.iter().map(|(_, _, n)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "two causes share a kind");
}

/// Every cause's `Display` reads as a sentence for people (no Debug fragments), and so do the
/// variants' other shapes: every timeout phase and file error kind, a proxy without a status,
/// an error as the journal recorded it.
#[test]
fn every_error_displays_as_a_sentence() {
    use TransferError as E;
    let mut all: Vec<TransferError> = one_of_each().into_iter().map(|(e, ..)| e).collect();
    all.extend(
        [
            TimeoutPhase::Connect,
            TimeoutPhase::Headers,
            TimeoutPhase::Idle,
            TimeoutPhase::Total,
        ]
        .map(E::Timeout),
    );
    all.extend(
        [
            FileErrorKind::AccessDenied,
            FileErrorKind::NoSpace,
            FileErrorKind::NameTooLong,
            FileErrorKind::AlreadyExists,
            FileErrorKind::InUse,
            FileErrorKind::NotADirectory,
            FileErrorKind::NotFound,
            FileErrorKind::Transient,
            FileErrorKind::Failed,
        ]
        .map(|kind| E::File {
            kind,
            op: "creating",
            cause: "Permission denied (os error 13)".into(),
        }),
    );
    all.push(E::Proxy {
        proxy: "http://127.0.0.1:3128".into(),
        status: None,
        cause: "could not be reached: Connection refused (os error 111)".into(),
        retryable: true,
    });
    let tls = E::Tls("invalid peer certificate: unknown issuer".into());
    all.push(E::Recorded {
        kind: tls.kind(),
        message: tls.to_string(),
    });
    for error in &all {
        let message = error.to_string();
        assert_sentence(&message);
        assert_ne!(message, format!("{error:?}"), "Display is not Debug");
    }
}

#[test]
fn details_are_serialised_for_machines() {
    let detail = |e: TransferError| -> Value { serde_json::to_value(e).unwrap() };
    let v = detail(TransferError::Server { status: 404 });
    assert_eq!(v["status"], 404);
    let v = detail(TransferError::Truncated {
        expected: 1000,
        received: 500,
    });
    assert_eq!(
        (v["expected"].clone(), v["received"].clone()),
        (json!(1000), json!(500))
    );
    for (phase, name) in [
        (TimeoutPhase::Connect, "connect"),
        (TimeoutPhase::Headers, "headers"),
        (TimeoutPhase::Idle, "idle"),
        (TimeoutPhase::Total, "total"),
    ] {
        assert_eq!(detail(TransferError::Timeout(phase))["phase"], name);
    }
    let v = detail(TransferError::File {
        kind: FileErrorKind::AccessDenied,
        op: "creating",
        cause: "Read-only file system (os error 30)".into(),
    });
    assert_eq!(v["file_kind"], "access_denied");
    assert_eq!(v["op"], "creating");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("Read-only file system"));
    assert_eq!(
        detail(TransferError::TooManyRedirects { limit: 3 })["limit"],
        3
    );
    let v = detail(TransferError::RedirectRefused {
        location: "ftp://h/f".into(),
        reason: "scheme".into(),
    });
    assert_eq!(v["location"], "ftp://h/f");
    let v = detail(TransferError::Dns {
        cause: "Try again".into(),
        temporary: true,
    });
    assert_eq!(v["temporary"], true);
}

#[test]
fn retryable_means_trying_again_may_work() {
    use TransferError as E;
    let retryable = [
        E::Connect("refused".into()),
        E::Timeout(TimeoutPhase::Headers),
        E::Network("reset".into()),
        E::Truncated {
            expected: 2,
            received: 1,
        },
        E::Overlong {
            expected: 1,
            received: 2,
        },
        E::Server { status: 408 },
        E::Server { status: 429 },
        E::Server { status: 500 },
        E::Server { status: 502 },
        E::Server { status: 503 },
        E::Server { status: 504 },
        E::File {
            kind: FileErrorKind::Transient,
            op: "writing",
            cause: "interrupted".into(),
        },
        E::Dns {
            cause: "temporary failure in name resolution".into(),
            temporary: true,
        },
    ];
    let final_ = [
        E::InvalidRequest("x".into()),
        E::Server { status: 400 },
        E::Server { status: 404 },
        E::Server { status: 501 },
        E::Server { status: 505 },
        E::BadContent("x".into()),
        E::TooManyRedirects { limit: 10 },
        E::File {
            kind: FileErrorKind::NoSpace,
            op: "writing",
            cause: "full".into(),
        },
        E::SizeMismatch {
            expected: 2,
            actual: 1,
        },
        E::ChecksumMismatch {
            what: "sha256",
            expected: "ab".into(),
            actual: "cd".into(),
        },
        E::Shutdown,
        E::Internal("x".into()),
        E::Panicked("x".into()),
        E::Tls("invalid peer certificate: unknown issuer".into()),
        E::Dns {
            cause: "name or service not known".into(),
            temporary: false,
        },
    ];
    for e in retryable {
        assert!(e.is_retryable(), "{e:?}");
    }
    for e in final_ {
        assert!(!e.is_retryable(), "{e:?}");
    }
    assert!(E::Timeout(TimeoutPhase::Total).is_timeout());
    assert!(!E::Network("x".into()).is_timeout());
    assert_eq!(E::Server { status: 418 }.status(), Some(418));
    assert_eq!(E::Network("x".into()).status(), None);
}
