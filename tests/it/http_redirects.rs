//! Redirects, followed by the engine (awc's are off): a configurable limit, http and https only,
//! credentials and ranges never carried to another origin, upload bodies re-sent on 307/308,
//! loops ended, and the final URL reported.

use crate::hostile;

use actix_transfer::{Download, ErrorKind, Fetch, Status, TransferError, Upload};
use hostile::*;

const NAME: &str = "r.bin";

/// A server answering `/a` → `/b` → `/c` → `/final` with 301, 302, 307 and `/final` with `body`.
fn chain(body: &'static [u8]) -> Hostile {
    Hostile::start(move |req| {
        let answer = match req.path.as_str() {
            "/a" => redirect(301, "/b"),
            "/b" => redirect(302, "c"), // relative to /b
            "/c" => redirect(307, "/final?x=1"),
            "/final?x=1" => ok(body),
            _ => response(404, &[], b""),
        };
        vec![Step::Write(answer)]
    })
}

#[actix_rt::test]
async fn a_chain_is_followed_and_the_final_url_reported() {
    let server = chain(b"at last");
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (id, outcome) = run(&engine, Download::new(server.url("/a")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), b"at last");
    let final_url = server.url("/final?x=1");
    let actix_transfer::Outcome::Completed { url, .. } = &outcome else {
        unreachable!()
    };
    assert_eq!(url, &final_url);
    let status = engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.url, server.url("/a"));
    assert_eq!(status.final_url.as_deref(), Some(final_url.as_str()));
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/a", "/b", "/c", "/final?x=1"]);
    for req in server.requests() {
        assert_eq!(req.method, "GET");
        assert_eq!(req.header("accept-encoding"), Some("identity"), "{req:?}");
        assert_eq!(req.header("content-length"), None, "a GET without content");
    }
}

#[actix_rt::test]
async fn a_loop_ends_as_too_many_redirects_after_the_default_limit() {
    let server = Hostile::start(|req| {
        let to = if req.path == "/ping" {
            "/pong"
        } else {
            "/ping"
        };
        vec![Step::Write(redirect(302, to))]
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/ping")).to(NAME)).await;

    assert_eq!(
        failure(&outcome),
        &TransferError::TooManyRedirects { limit: 10 }
    );
    // The first request and ten redirects followed; the eleventh is refused.
    assert_eq!(server.requests().len(), 11);
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn the_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    for (limit, completes) in [(0, false), (2, false), (3, true)] {
        let server = chain(b"ok");
        let engine = engine(dir.path(), |b| b.max_redirects(limit));

        let (_, outcome) = run(&engine, Fetch::get(server.url("/a"))).await;

        if completes {
            assert_eq!(outcome.body().map(|b| b.as_ref()), Some(&b"ok"[..]));
        } else {
            assert_eq!(
                failure(&outcome),
                &TransferError::TooManyRedirects { limit }
            );
            assert_eq!(server.requests().len(), limit as usize + 1);
        }
    }
}

#[actix_rt::test]
async fn redirects_to_other_schemes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    for location in [
        "ftp://127.0.0.1/file",
        "file:///etc/passwd",
        "data:text/plain,hello",
        "javascript:alert(1)",
        "http://[::1",
    ] {
        let server = Hostile::always(vec![Step::Write(redirect(302, location))]);

        let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

        let error = assert_failed(&outcome, ErrorKind::RedirectRefused);
        assert!(
            matches!(error, TransferError::RedirectRefused { location: l, .. } if l == location),
            "{error:?}"
        );
        assert_eq!(server.requests().len(), 1, "{location}");
        assert_empty(dir.path());
    }
}

#[actix_rt::test]
async fn a_redirect_without_location_is_a_server_error() {
    let server = Hostile::always(vec![Step::Write(response(302, &[], b"nowhere"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &TransferError::Server { status: 302 });
    assert_empty(dir.path());
}

/// Headers that identify or shape the request, sent with a download that is redirected.
fn with_secrets(url: String) -> Download {
    Download::new(url)
        .to(NAME)
        .header("Authorization", "Bearer secret")
        .header("Cookie", "session=secret")
        .header("Range", "bytes=0-")
        .header("If-Range", "\"etag\"")
        .header("X-Custom", "kept")
}

#[actix_rt::test]
async fn credentials_and_ranges_are_not_carried_to_another_origin() {
    let other = Hostile::always(vec![Step::Write(ok(b"elsewhere"))]);
    let target = other.url("/there");
    let origin = Hostile::always(vec![Step::Write(redirect(302, &target))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, with_secrets(origin.url("/here"))).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    let first = &origin.requests()[0];
    assert_eq!(first.header("authorization"), Some("Bearer secret"));
    assert_eq!(first.header("range"), Some("bytes=0-"));
    let second = &other.requests()[0];
    for stripped in ["authorization", "cookie", "range", "if-range"] {
        assert_eq!(second.header(stripped), None, "{stripped} crossed origins");
    }
    assert_eq!(second.header("x-custom"), Some("kept"));
    assert_eq!(second.header("accept-encoding"), Some("identity"));
}

#[actix_rt::test]
async fn credentials_stay_within_the_same_origin() {
    let server = Hostile::start(|req| {
        let answer = if req.path == "/here" {
            redirect(308, "/there")
        } else {
            ok(b"same origin")
        };
        vec![Step::Write(answer)]
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, with_secrets(server.url("/here"))).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    let second = &server.requests()[1];
    assert_eq!(second.path, "/there");
    assert_eq!(second.header("authorization"), Some("Bearer secret"));
    assert_eq!(second.header("range"), Some("bytes=0-"));
}

/// An upload answered by `status` to `/up` and by 201 at `/final`.
async fn upload_redirected(status: u16, post: bool) -> (Vec<Request>, actix_transfer::Outcome) {
    let server = Hostile::start(move |req| {
        let answer = if req.path == "/up" {
            redirect(status, "/final")
        } else {
            response(201, &[], format!("got {}", req.body.len()).as_bytes())
        };
        vec![Step::Write(answer)]
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    std::fs::write(&file, pattern(300_000)).unwrap();
    let engine = engine(dir.path(), |b| b);
    let upload = Upload::new(server.url("/up"), &file);
    let upload = if post { upload.post() } else { upload };

    let (_, outcome) = run(&engine, upload).await;
    (server.requests(), outcome)
}

#[actix_rt::test]
async fn uploads_are_resent_whole_after_307_and_308() {
    for status in [307, 308] {
        let (requests, outcome) = upload_redirected(status, false).await;

        assert_eq!(requests.len(), 2);
        for req in &requests {
            assert_eq!(req.method, "PUT");
            assert_eq!(
                req.body,
                pattern(300_000),
                "{status}: body not re-sent whole"
            );
        }
        assert_eq!(outcome.body().map(|b| b.as_ref()), Some(&b"got 300000"[..]));
        assert_eq!(outcome.bytes(), 300_000);
    }
}

#[actix_rt::test]
async fn a_post_redirected_by_303_becomes_a_get_without_body() {
    let (requests, outcome) = upload_redirected(303, true).await;

    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[1].method, "GET");
    assert!(requests[1].body.is_empty());
    assert_eq!(requests[1].header("content-length"), None);
    assert_eq!(outcome.body().map(|b| b.as_ref()), Some(&b"got 0"[..]));
}

#[actix_rt::test]
async fn a_fetch_post_redirected_by_302_becomes_a_get() {
    let server = Hostile::start(|req| {
        let answer = if req.path == "/form" {
            redirect(302, "/done")
        } else {
            ok(format!("{} {}", req.method, req.body.len()).as_bytes())
        };
        vec![Step::Write(answer)]
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(
        &engine,
        Fetch::new("POST", server.url("/form")).body("a=1&b=2"),
    )
    .await;

    assert_eq!(outcome.body().map(|b| b.as_ref()), Some(&b"GET 0"[..]));
}

#[cfg(feature = "rustls")]
#[actix_rt::test]
async fn a_redirect_to_https_is_followed() {
    // The target speaks plain HTTP: the TLS handshake fails, so the redirect was followed
    // (not refused) and the https connection went through the engine's connector.
    let plain = Blurt::start(ok(b"not tls"));
    let origin = Hostile::always(vec![Step::Write(redirect(302, &plain.url("https", "/s")))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (id, outcome) = run(&engine, Download::new(origin.url("/x")).to(NAME)).await;

    assert_failed(&outcome, ErrorKind::Connect);
    let status = engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.final_url, Some(plain.url("https", "/s")));
    assert_empty(dir.path());
}
