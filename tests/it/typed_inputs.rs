//! Typed inputs beside strings (`url::Url`, `http::Uri`, `HeaderName`, `HeaderValue`,
//! `HeaderMap`, all of http 1.x) reach the server as given; and every builder has the same
//! shape: its own timeouts and attempts, whatever the kind.

use std::time::{Duration, Instant};

use crate::hostile;

use actix_transfer::{
    Download, ErrorKind, Fetch, RetryPolicy, TimeoutPhase, TransferError, Upload,
};
use hostile::*;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

#[actix_rt::test]
async fn typed_urls_and_headers_reach_the_server() {
    let server = Hostile::start(|_| vec![Step::Write(ok(b"typed"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let source = dir.path().join("up.bin");
    std::fs::write(&source, b"up").unwrap();

    let mut map = HeaderMap::new();
    map.append("x-multi", HeaderValue::from_static("one"));
    map.append("x-multi", HeaderValue::from_static("two"));
    map.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let uri: http::Uri = server.url("/by-uri").parse().unwrap();
    let download = Download::new(uri)
        .to("d.bin")
        .header(header::ACCEPT, "x")
        .header(
            HeaderName::from_static("x-typed"),
            HeaderValue::from_static("v"),
        )
        .header("x-plain", String::from("s"))
        .headers(map);
    let url = url::Url::parse(&server.url("/by-url")).unwrap();
    let upload = Upload::new(url.clone(), &source).header(&header::CONTENT_TYPE, "a/b");
    let uri: http::Uri = server.url("/fetch-by-ref").parse().unwrap();
    let by_ref = HeaderValue::from_static("r");
    let fetch = Fetch::get(&uri).header("x-ref", &by_ref);

    assert!(run(&engine, download).await.1.is_completed());
    assert!(run(&engine, upload).await.1.is_completed());
    assert!(run(&engine, fetch).await.1.is_completed());
    assert!(run(&engine, Fetch::get(&url)).await.1.is_completed());
    let delete = Fetch::new(http::Method::DELETE, server.url("/typed-method"));
    assert!(run(&engine, delete).await.1.is_completed());

    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/by-uri",
            "/by-url",
            "/fetch-by-ref",
            "/by-url",
            "/typed-method"
        ]
    );
    assert_eq!(requests[4].method, "DELETE");
    let d = &requests[0];
    assert_eq!(d.header("accept"), Some("x"));
    assert_eq!(d.header("x-typed"), Some("v"));
    assert_eq!(d.header("x-plain"), Some("s"));
    assert_eq!(d.header("cache-control"), Some("no-cache"));
    let multi: Vec<&str> = d
        .headers
        .iter()
        .filter(|(k, _)| k == "x-multi")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(multi, ["one", "two"]);
    assert_eq!(requests[1].method, "PUT");
    assert_eq!(requests[1].header("content-type"), Some("a/b"));
    assert_eq!(requests[2].header("x-ref"), by_ref.to_str().ok());
}

#[actix_rt::test]
async fn a_bad_typed_url_or_header_is_refused_at_submit_as_a_string_is() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    for uri in ["/relative", "ftp://127.0.0.1/x", "127.0.0.1:80"] {
        let uri: http::Uri = uri.parse().unwrap();
        let refused = submit(&engine, Download::new(uri.clone())).await;
        match refused {
            Err(TransferError::InvalidRequest(message)) => {
                assert!(
                    message.contains("URL") || message.contains("scheme"),
                    "{message}"
                );
            }
            other => panic!("{uri}: {other:?}"),
        }
    }
    // A header the engine owns, typed or not.
    let refused = submit(
        &engine,
        Fetch::get("http://127.0.0.1:1/").header(header::HOST, "elsewhere"),
    )
    .await;
    assert!(
        matches!(&refused, Err(TransferError::InvalidRequest(m)) if m.contains("host")),
        "{refused:?}"
    );
}

#[actix_rt::test]
async fn every_kind_has_its_own_headers_timeout() {
    // The server reads the request, then never answers.
    let server = Hostile::always(vec![Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    // The engine's own headers timeout is far longer than the test's wait. A download's or a
    // fetch's wait for its headers starts with its connect timeout's worth of time.
    let engine = engine(dir.path(), |b| {
        b.headers_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_millis(500))
    });
    let source = dir.path().join("up.bin");
    std::fs::write(&source, b"up").unwrap();
    let own = Duration::from_millis(200);
    let start = Instant::now();
    let outcomes = [
        run(
            &engine,
            Download::new(server.url("/d")).to("d").headers_timeout(own),
        )
        .await
        .1,
        run(
            &engine,
            Upload::new(server.url("/u"), &source).headers_timeout(own),
        )
        .await
        .1,
        run(&engine, Fetch::get(server.url("/f")).headers_timeout(own))
            .await
            .1,
    ];
    for outcome in &outcomes {
        assert_eq!(
            failure(outcome),
            &TransferError::Timeout(TimeoutPhase::Headers)
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[actix_rt::test]
async fn every_kind_has_its_own_idle_and_total_timeouts() {
    // Half a body, then silence.
    let mut half = head(200, &[("Content-Length", "6")]);
    half.extend_from_slice(b"abc");
    let server = Hostile::always(vec![Step::Write(half), Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.idle_timeout(Duration::from_secs(60)));
    let source = dir.path().join("up.bin");
    std::fs::write(&source, b"up").unwrap();
    let own = Duration::from_millis(200);
    let start = Instant::now();
    let idle = [
        run(
            &engine,
            Download::new(server.url("/d")).to("d").idle_timeout(own),
        )
        .await
        .1,
        run(
            &engine,
            Upload::new(server.url("/u"), &source).idle_timeout(own),
        )
        .await
        .1,
        run(&engine, Fetch::get(server.url("/f")).idle_timeout(own))
            .await
            .1,
    ];
    for outcome in &idle {
        assert_eq!(
            failure(outcome),
            &TransferError::Timeout(TimeoutPhase::Idle)
        );
    }
    let total = [
        run(
            &engine,
            Download::new(server.url("/d")).to("e").total_timeout(own),
        )
        .await
        .1,
        run(
            &engine,
            Upload::new(server.url("/u"), &source).total_timeout(own),
        )
        .await
        .1,
        run(&engine, Fetch::get(server.url("/f")).total_timeout(own))
            .await
            .1,
    ];
    for outcome in &total {
        assert_eq!(
            failure(outcome),
            &TransferError::Timeout(TimeoutPhase::Total)
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

#[actix_rt::test]
async fn every_kind_has_its_own_attempt_count() {
    let server = Hostile::always(vec![Step::Write(response(503, &[], b""))]);
    let dir = tempfile::tempdir().unwrap();
    let retry = RetryPolicy::default()
        .max_attempts(10)
        .initial_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(1));
    let engine = engine(dir.path(), |b| b.retry(retry));
    let source = dir.path().join("up.bin");
    std::fs::write(&source, b"up").unwrap();

    let outcomes = [
        run(
            &engine,
            Download::new(server.url("/d")).to("d").max_attempts(2),
        )
        .await
        .1,
        run(
            &engine,
            Upload::new(server.url("/u"), &source).max_attempts(2),
        )
        .await
        .1,
        run(&engine, Fetch::get(server.url("/f")).max_attempts(2))
            .await
            .1,
    ];
    for outcome in &outcomes {
        assert_failed(outcome, ErrorKind::Server);
        let actix_transfer::Outcome::Failed { attempts, .. } = outcome else {
            unreachable!()
        };
        assert_eq!(*attempts, 2, "{outcome:?}");
    }
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/d", "/d", "/u", "/u", "/f", "/f"]);
}

#[actix_rt::test]
async fn an_upload_body_from_bytes_is_sent_like_a_file() {
    let server = crate::support::server();
    let rig = crate::support::rig().await;
    let data = crate::support::pattern(300_000);
    for upload in [
        Upload::bytes(server.url("/upload"), data.clone()),
        Upload::bytes(server.url("/upload"), bytes::Bytes::new()).post(),
    ] {
        let id = rig.submit(upload).await;
        let outcome = rig.wait(id).await;
        assert!(outcome.is_completed(), "{outcome:?}");
        let events = rig.events.of(id);
        let began = events.iter().find_map(|e| match &e.kind {
            actix_transfer::EventKind::Began {
                bytes_estimated, ..
            } => Some(*bytes_estimated),
            _ => None,
        });
        let last_progress = events.iter().rev().find_map(|e| match e.kind {
            actix_transfer::EventKind::Progress {
                bytes_transferred, ..
            } => Some(bytes_transferred),
            _ => None,
        });
        let size = outcome.bytes();
        assert_eq!(began, Some(Some(size)));
        assert_eq!(last_progress, Some(size));
        // A body in memory has no path.
        let status = rig
            .engine
            .send(actix_transfer::Status(id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.path, None);
    }
    let uploads = server.state.uploads.lock().unwrap();
    let got: Vec<(&str, Option<&str>, Option<&str>, usize)> = uploads
        .iter()
        .map(|(m, len, te, body)| (m.as_str(), len.as_deref(), te.as_deref(), body.len()))
        .collect();
    assert_eq!(
        got,
        [
            ("PUT", Some("300000"), None, 300_000),
            ("POST", Some("0"), None, 0)
        ]
    );
    assert_eq!(uploads[0].3, data);
}

#[actix_rt::test]
async fn a_bytes_upload_is_sent_again_whole_after_a_307() {
    let server = Hostile::start(|req| {
        let answer = match req.path.as_str() {
            "/first" => redirect(307, "/second"),
            _ => ok(b"stored"),
        };
        vec![Step::Write(answer)]
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let (_, outcome) = run(
        &engine,
        Upload::bytes(server.url("/first"), &b"payload"[..]),
    )
    .await;
    assert!(outcome.is_completed(), "{outcome:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.method, "PUT");
        assert_eq!(r.header("content-length"), Some("7"), "{r:?}");
    }
    assert_eq!(requests[1].body, b"payload");
}

#[cfg(feature = "journal")]
#[actix_rt::test]
async fn a_journal_records_a_file_upload_but_not_bytes_in_memory() {
    use actix_transfer::{Engine, List, Shutdown};
    // Every request waits for its answer forever: both uploads are running at the shutdown.
    let server = Hostile::always(vec![Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let source = dir.path().join("up.bin");
    std::fs::write(&source, b"up").unwrap();
    let start = || {
        Engine::builder()
            .download_dir(dir.path())
            .journal(&journal)
            .try_start()
            .unwrap()
    };
    let engine = start();
    submit(&engine, Upload::new(server.url("/file"), &source))
        .await
        .unwrap();
    submit(&engine, Upload::bytes(server.url("/bytes"), &b"mem"[..]))
        .await
        .unwrap();
    assert_eq!(engine.send(List::all()).await.unwrap().len(), 2);
    actix_rt::time::timeout(LIMIT, engine.send(Shutdown))
        .await
        .unwrap()
        .unwrap();

    let engine = start();
    let restored: Vec<String> = engine
        .send(List::all())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.url)
        .collect();
    assert_eq!(restored, [server.url("/file")]);
    actix_rt::time::timeout(LIMIT, engine.send(Shutdown))
        .await
        .unwrap()
        .unwrap();
}

#[actix_rt::test]
async fn an_upload_caps_its_response_body_as_a_fetch_does() {
    let server = Hostile::always(vec![Step::Write(ok(&[b'r'; 100]))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let (_, outcome) = run(
        &engine,
        Upload::bytes(server.url("/u"), &b"x"[..]).max_body(10),
    )
    .await;
    assert_eq!(
        failure(&outcome),
        &TransferError::BodyTooLarge { limit: 10 }
    );
    let (_, outcome) = run(
        &engine,
        Upload::bytes(server.url("/u"), &b"x"[..]).max_body(100),
    )
    .await;
    assert_eq!(outcome.body().map(|b| b.len()), Some(100));
}
