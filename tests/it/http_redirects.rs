//! Redirects, followed by the engine (awc's are off): a configurable limit, http and https only,
//! credentials and ranges never carried to another origin, upload bodies re-sent on 307/308,
//! loops ended, and the final URL reported.

use crate::{hostile, ranged};

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
    let server = Hostile::ping_pong();
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
    // The target speaks plain HTTP: the TLS handshake fails (`Tls`), so the redirect was followed
    // (not refused) and the https connection went through the engine's connector.
    let plain = Blurt::start(ok(b"not tls"));
    let origin = Hostile::always(vec![Step::Write(redirect(302, &plain.url("https", "/s")))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (id, outcome) = run(&engine, Download::new(origin.url("/x")).to(NAME)).await;

    assert_failed(&outcome, ErrorKind::Tls);
    let status = engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.final_url, Some(plain.url("https", "/s")));
    assert_empty(dir.path());
}

/// A download behind a cross-origin redirect: origin A (`Hostile`) answers every request
/// with 302 to origin B (`ranged`, another port of 127.0.0.1), whose first answer is scripted.
/// The download carries a credential meant for A only.
async fn behind_a_cdn(
    body: &[u8],
    script: Vec<ranged::Act>,
    tweak: impl FnOnce(Download) -> Download,
) -> (
    Hostile,
    ranged::Ranged,
    Vec<actix_transfer::EventKind>,
    actix_transfer::Outcome,
) {
    let b = ranged::start(body.to_vec());
    b.script(script);
    let a = Hostile::always(vec![Step::Write(redirect(302, &format!("{}/file", b.url)))]);
    let dir = tempfile::tempdir().unwrap();
    let fast = actix_transfer::RetryPolicy::default()
        .initial_delay(std::time::Duration::from_millis(10))
        .max_delay(std::time::Duration::from_millis(50));
    let engine = engine(dir.path(), |e| e.retry(fast));
    let events = Events::subscribe(&engine).await;
    let download = Download::new(a.url("/get"))
        .to(NAME)
        .header("Authorization", "Bearer for-a-only");
    let id = submit(&engine, tweak(download)).await.unwrap();
    events.until_ended(id).await;
    let events = events.kinds(id);
    let outcome = wait(&engine, id).await;
    if outcome.is_completed() {
        assert!(
            std::fs::read(dir.path().join(NAME)).unwrap() == body,
            "the file differs from the body"
        );
    }
    (a, b, events, outcome)
}

/// The bytes the first attempt kept (its `Truncated` error says how many it received).
fn received_before_retry(events: &[actix_transfer::EventKind]) -> u64 {
    events
        .iter()
        .find_map(|k| match k {
            actix_transfer::EventKind::Retrying {
                error: TransferError::Truncated { received, .. },
                ..
            } => Some(*received),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no retry after a cut body: {events:?}"))
}

#[actix_rt::test]
async fn a_retry_resumes_at_the_final_url_of_a_cross_origin_redirect() {
    let body = ranged::content(1_000_000, 40);
    let (a, b, events, outcome) =
        behind_a_cdn(&body, vec![ranged::Act::CutAt(400_000)], |d| d).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(a.requests().len(), 1, "the retry goes straight to B");
    let seen = b.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    let kept = received_before_retry(&events);
    assert!(kept > 0 && kept <= 400_000, "{kept}");
    assert_eq!(seen[1].range, Some(format!("bytes={kept}-")));
    assert_eq!(
        seen[1].if_range.as_deref(),
        Some("\"v1\""),
        "B's own validator"
    );
    for s in &seen {
        assert_eq!(s.authorization, None, "A's credential reached B");
    }
}

#[actix_rt::test]
async fn a_final_url_that_is_gone_falls_back_to_the_original_from_zero() {
    // An expired signed URL: B answers the resume with 410. A gives a new one (here the same).
    let body = ranged::content(1_000_000, 41);
    let script = vec![ranged::Act::CutAt(400_000), ranged::Act::Status(410, None)];
    let (a, b, _, outcome) = behind_a_cdn(&body, script, |d| d).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(a.requests().len(), 2, "back to A once B's URL is gone");
    let seen = b.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1].range.is_some(), "the resume went to B: {seen:?}");
    assert_eq!(seen[2].range, None, "from A, the file restarts from zero");
    assert_eq!(seen[2].if_range, None);
}

#[actix_rt::test]
async fn a_final_url_that_redirects_again_falls_back_to_the_original_from_zero() {
    let body = ranged::content(1_000_000, 43);
    let script = vec![
        ranged::Act::CutAt(400_000),
        ranged::Act::Redirect("/file-moved"),
    ];
    let (a, b, _, outcome) = behind_a_cdn(&body, script, |d| d).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(a.requests().len(), 2, "back to A, not on to where B points");
    let seen = b.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1].range.is_some(), "the resume went to B: {seen:?}");
    assert_eq!(seen[2].range, None, "from A, the file restarts from zero");
}

#[actix_rt::test]
async fn segments_behind_a_cross_origin_redirect_carry_no_credentials() {
    let body = ranged::content(4 << 20, 42);
    let (_, b, _, outcome) = behind_a_cdn(&body, vec![], |d| d.segments(2)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    let seen = b.seen();
    assert_eq!(seen.len(), 2, "the first answer and one segment: {seen:?}");
    assert!(seen[1].range.is_some());
    for s in &seen {
        assert_eq!(s.authorization, None, "A's credential reached B");
    }
}

#[actix_rt::test]
async fn a_redirect_carrying_credentials_is_refused_and_they_are_never_shown() {
    let target = Hostile::always(vec![Step::Write(ok(b"never"))]);
    let addr = target.addr();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;
    for (location, shown) in [
        (
            format!("http://u:secret@{addr}/x?k=1"),
            format!("http://***@{addr}/x"),
        ),
        (
            format!("http://secret@{addr}/x"),
            format!("http://***@{addr}/x"),
        ),
        (format!("//u:secret@{addr}/x"), format!("//***@{addr}/x")),
    ] {
        let origin = Hostile::always(vec![Step::Write(redirect(302, &location))]);
        for fetch in [false, true] {
            let (id, outcome) = if fetch {
                run(&engine, Fetch::get(origin.url("/a"))).await
            } else {
                run(&engine, Download::new(origin.url("/a")).to(NAME)).await
            };

            let error = assert_failed(&outcome, ErrorKind::RedirectRefused);
            assert!(
                matches!(error, TransferError::RedirectRefused { location: l, .. } if *l == shown),
                "{error:?}"
            );
            let status = engine.send(Status(id)).await.unwrap().unwrap();
            assert_eq!(status.final_url, None, "{location}");
            events.until_ended(id).await;
            let seen = events.kinds(id);
            for text in [
                error.to_string(),
                format!("{outcome:?}"),
                serde_json::to_string(&outcome).unwrap(),
                format!("{status:?}"),
                format!("{seen:?}"),
            ] {
                assert!(!text.contains("secret"), "{location}: {text}");
            }
        }
        assert_eq!(origin.requests().len(), 2);
    }
    assert_eq!(target.connections(), 0, "the redirect was followed");
    assert_empty(dir.path());
}

#[cfg(feature = "rustls")]
#[actix_rt::test]
async fn a_failed_tls_handshake_reads_as_a_sentence() {
    // https to a server that answers in plain HTTP: rustls fails the handshake, and writes
    // that failure with a Debug name (`InvalidContentType`); the error reads as words, and
    // the `io::Error` underneath stays reachable.
    let plain = Blurt::start(ok(b"not tls"));
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(plain.url("https", "/s")).to(NAME)).await;

    let error = assert_failed(&outcome, ErrorKind::Tls);
    let message = error.to_string();
    let camel = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| {
            w.chars()
                .zip(w.chars().skip(1))
                .any(|(a, b)| a.is_ascii_lowercase() && b.is_ascii_uppercase())
        });
    assert_eq!(camel, None, "a Debug name in {message:?} {error:?}");
    for fragment in ["Some(", "Os {", "Custom {", "(Other"] {
        assert!(!message.contains(fragment), "{message}");
    }
    assert!(
        std::error::Error::source(error).is_some_and(|e| e.is::<std::io::Error>()),
        "{error:?}"
    );
}
