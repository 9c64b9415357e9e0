//! Input validation: malformed requests are refused at submit with `InvalidRequest`, before any
//! I/O and without creating a transfer.

use crate::hostile;

use actix_transfer::{Download, Fetch, List, TransferError, Upload};
use hostile::*;

/// Assert `refused` is an `InvalidRequest`; returns its message.
fn invalid(what: &str, refused: Result<actix_transfer::TransferId, TransferError>) -> String {
    match refused {
        Err(TransferError::InvalidRequest(message)) => {
            assert!(!message.is_empty(), "{what}: empty message");
            message
        }
        other => panic!("{what}: not refused as invalid: {other:?}"),
    }
}

#[actix_rt::test]
async fn bad_urls_and_schemes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    for url in [
        "",
        "not a url",
        "/relative/path",
        "127.0.0.1:8080/no-scheme",
        "ftp://127.0.0.1/file",
        "file:///etc/passwd",
        "data:text/plain,hi",
        "ws://127.0.0.1/socket",
        "http://",
        "http://user:secret@127.0.0.1/",
    ] {
        invalid(url, submit(&engine, Download::new(url).to("x.bin")).await);
        invalid(url, submit(&engine, Fetch::get(url)).await);
    }
    let message = invalid(
        "ftp",
        submit(&engine, Fetch::get("ftp://127.0.0.1/f")).await,
    );
    assert!(message.contains("ftp"), "{message}");
    assert!(engine.send(List(None)).await.unwrap().is_empty());
}

#[actix_rt::test]
async fn bad_headers_and_methods_are_refused_before_any_request() {
    let server = Hostile::always(vec![Step::Write(ok(b"no"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let url = server.url("/x");
    let bad_headers = [
        ("bad name", "v"),
        ("", "v"),
        ("x-colon:", "v"),
        ("x-ok", "line\r\nInjected: yes"),
        ("x-ok", "nul\0byte"),
    ];
    for (name, value) in bad_headers {
        let what = format!("{name:?}: {value:?}");
        invalid(
            &what,
            submit(&engine, Download::new(&url).to("x.bin").header(name, value)).await,
        );
        invalid(
            &what,
            submit(&engine, Fetch::get(&url).header(name, value)).await,
        );
    }
    for method in ["", "BAD METHOD", "GET\r\n"] {
        invalid(method, submit(&engine, Fetch::new(method, &url)).await);
    }
    assert_eq!(server.connections(), 0, "a request was made");
    assert!(engine.send(List(None)).await.unwrap().is_empty());
}

#[actix_rt::test]
async fn a_missing_or_odd_upload_source_is_refused() {
    let server = Hostile::always(vec![Step::Write(ok(b"no"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let missing = dir.path().join("does-not-exist.bin");
    let message = invalid(
        "missing file",
        submit(&engine, Upload::new(server.url("/up"), &missing)).await,
    );
    assert!(message.contains("does-not-exist.bin"), "{message}");
    invalid(
        "a directory",
        submit(&engine, Upload::new(server.url("/up"), dir.path())).await,
    );
    // A good file with a bad URL is refused too.
    let file = dir.path().join("ok.bin");
    std::fs::write(&file, b"data").unwrap();
    invalid(
        "bad url",
        submit(&engine, Upload::new("gopher://127.0.0.1/", &file)).await,
    );
    assert_eq!(server.connections(), 0, "a request was made");
}

#[cfg(feature = "serde")]
#[actix_rt::test]
async fn refusals_serialise_with_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let error = submit(&engine, Fetch::get("nope")).await.unwrap_err();
    assert_eq!(error.kind(), actix_transfer::ErrorKind::InvalidRequest);
    let json = serde_json::to_value(&error).unwrap();
    assert_eq!(json["kind"], "invalid_request");
    assert!(json["message"].as_str().unwrap().contains("nope"));
}
