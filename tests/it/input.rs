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
    assert!(engine.send(List::all()).await.unwrap().is_empty());
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
    assert!(engine.send(List::all()).await.unwrap().is_empty());
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

/// A password (or user name) in a URL is never echoed: not in the message of any refusal, for
/// every kind of transfer, however the URL is malformed around it.
#[actix_rt::test]
async fn credentials_in_a_refused_url_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let file = dir.path().join("up.bin");
    std::fs::write(&file, b"data").unwrap();
    for url in [
        "http://user:PASS@127.0.0.1:99999/x",
        "http://user:PASS@127.0.0.1/x",
        "http://user:PASS@127.0.0.1/x?q=1",
        "ftp://user:PASS@127.0.0.1/x",
        "gopher://user:PASS@127.0.0.1/x",
        "http://user:PASS@/x",
        "http://user:PA/SS@127.0.0.1/x",
        "http://user:PA?SS@127.0.0.1:99999/x",
        "http://user:PA#SS@127.0.0.1:99999/x",
        "http:\\\\user:PASS@127.0.0.1:99999/x",
        "HTTP://user:PASS@127.0.0.1:99999/x",
        "user:PASS@127.0.0.1:99999",
        "  http://user:PASS@127.0.0.1:99999/x  ",
        "http://user:P%41SS@127.0.0.1:99999/x",
    ] {
        let refusals = [
            submit(&engine, Download::new(url).to("x.bin")).await,
            submit(&engine, Fetch::get(url)).await,
            submit(&engine, Upload::new(url, &file)).await,
        ];
        for refused in refusals {
            let shown = format!("{refused:?}");
            let message = invalid(url, refused);
            for secret in ["PASS", "PA", "SS", "P%41SS"] {
                assert!(!message.contains(secret), "{url:?}: {message}");
                assert!(!shown.contains(secret), "{url:?}: {shown}");
            }
        }
    }
    assert!(engine.send(List::all()).await.unwrap().is_empty());
}

/// Header names are tokens (RFC 9110 §5.1): anything else is refused at submit, for every kind
/// of transfer, before any connection. The `http` crate alone lets `"` through.
#[actix_rt::test]
async fn header_names_outside_the_token_grammar_are_refused() {
    let server = Hostile::always(vec![Step::Write(ok(b"fine"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let url = server.url("/x");
    let file = dir.path().join("up.bin");
    std::fs::write(&file, b"data").unwrap();
    let bad_names = [
        "x-\"quoted\"",
        "\"",
        "x-(comment)",
        "x)",
        "x,y",
        "x/y",
        "x;y",
        "x<y>",
        "x=y",
        "x?",
        "x@y",
        "x[y]",
        "x\\y",
        "x{y}",
        "x y",
        "x:",
        "x\ty",
        "x\u{7f}",
        "x-é",
        "",
    ];
    for name in bad_names {
        let what = format!("header name {name:?}");
        let message = invalid(
            &what,
            submit(&engine, Download::new(&url).to("x.bin").header(name, "v")).await,
        );
        assert!(message.contains("header name"), "{what}: {message}");
        invalid(
            &what,
            submit(&engine, Fetch::get(&url).header(name, "v")).await,
        );
        invalid(
            &what,
            submit(&engine, Upload::new(&url, &file).header(name, "v")).await,
        );
    }
    for method in ["GE\"T", "GET(", "GET:", "G T", "GET/1", "GÉT"] {
        invalid(method, submit(&engine, Fetch::new(method, &url)).await);
    }
    assert_eq!(server.connections(), 0, "a request was made");
    assert!(engine.send(List::all()).await.unwrap().is_empty());

    // Every tchar is allowed.
    let (_, outcome) = run(
        &engine,
        Fetch::get(&url).header("x-!#$%&'*+-.^_`|~09AZaz", "v"),
    )
    .await;
    assert!(outcome.is_completed(), "{outcome:?}");
    let sent = &server.requests()[0];
    assert_eq!(
        sent.header("x-!#$%&'*+-.^_`|~09azaz"),
        Some("v"),
        "{sent:?}"
    );
}

/// Headers the engine or awc owns are refused at submit, naming the header: `Expect` (awc
/// refuses it on a request without a body, and the engine sends no `100-continue` bodies),
/// `Host` (the URL names the host), and the framing and connection headers, which awc drops or
/// which HTTP/2 forbids. Before, an `Expect` was accepted and then retried as a connect error.
#[actix_rt::test]
async fn headers_the_engine_owns_are_refused_at_submit() {
    let server = Hostile::always(vec![Step::Write(ok(b"no"))]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up.bin");
    std::fs::write(&file, b"data").unwrap();
    let engine = engine(dir.path(), |b| b);
    let url = server.url("/x");
    for (name, value) in [
        ("Expect", "100-continue"),
        ("expect", "x"),
        ("Host", "example.com"),
        ("Content-Length", "5"),
        ("Transfer-Encoding", "chunked"),
        ("Connection", "close"),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("Upgrade", "h2c"),
        ("TE", "trailers"),
    ] {
        let what = format!("{name}: {value}");
        for refused in [
            submit(&engine, Download::new(&url).to("x.bin").header(name, value)).await,
            submit(&engine, Fetch::get(&url).header(name, value)).await,
            submit(
                &engine,
                Fetch::new("POST", &url).body("b").header(name, value),
            )
            .await,
            submit(&engine, Upload::new(&url, &file).header(name, value)).await,
        ] {
            let message = invalid(&what, refused);
            assert!(
                message
                    .to_ascii_lowercase()
                    .contains(&name.to_ascii_lowercase()),
                "{what}: {message}"
            );
        }
    }
    assert_eq!(server.connections(), 0, "a request was made");
    assert!(engine.send(List::all()).await.unwrap().is_empty());
}

/// Zero and huge counts either work or are cut to a documented bound, never panic or hang:
/// `max_active(0)`, `max_per_host(0)`, `keep_ended(0)`, `max_rate(0)` (no limit),
/// `segments(0)`, `max_attempts(0)` and huge attempt counts all complete a download.
#[actix_rt::test]
async fn zero_and_huge_counts_work() {
    type Tweak = fn(actix_transfer::EngineBuilder) -> actix_transfer::EngineBuilder;
    let tweaks: [(&str, Tweak); 8] = [
        ("max_active 0", |b| b.max_active(0)),
        ("max_per_host 0", |b| b.max_per_host(0)),
        ("max_rate 0", |b| b.max_rate(0)),
        ("keep_ended 0", |b| b.keep_ended(0).keep_ended_bytes(0)),
        ("segments 0", |b| b.segments(0, 0)),
        ("segments huge", |b| b.segments(u32::MAX, 0)),
        ("attempts 0", |b| {
            b.retry(actix_transfer::RetryPolicy::default().max_attempts(0))
        }),
        ("attempts huge", |b| {
            b.retry(actix_transfer::RetryPolicy::default().max_attempts(u32::MAX))
        }),
    ];
    let server = Hostile::always(vec![Step::Write(ok(b"content"))]);
    for (what, tweak) in tweaks {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), tweak);
        let download = Download::new(server.url("/x"))
            .to("x.bin")
            .max_rate(0)
            .segments(0)
            .max_attempts(0);

        let (_, outcome) = run(&engine, download).await;

        assert!(outcome.is_completed(), "{what}: {outcome:?}");
        assert_eq!(
            std::fs::read(dir.path().join("x.bin")).unwrap(),
            b"content",
            "{what}"
        );
    }
}

/// A huge `max_redirects` is cut to a bound, so a redirect loop ends instead of running
/// (practically) forever.
#[actix_rt::test]
async fn a_huge_redirect_limit_still_ends_a_loop() {
    let server = Hostile::start(|req| vec![Step::Write(redirect(302, &req.path))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.max_redirects(u32::MAX));

    let (_, outcome) = run(&engine, Fetch::get(server.url("/"))).await;

    match failure(&outcome) {
        TransferError::TooManyRedirects { limit } => assert!(*limit < 1_000, "{limit}"),
        other => panic!("not a redirect limit: {other:?}"),
    }
}
