//! Body framing: every way a server can lie about where its body ends must end in a typed error
//! and never in a file under the final name; honest unknown lengths complete without a
//! fabricated total.

use crate::hostile;

use actix_transfer::{Download, ErrorKind, EventKind, Fetch, TransferError};
use hostile::*;

const NAME: &str = "f.bin";

fn download(server: &Hostile) -> Download {
    Download::new(server.url("/f.bin")).to(NAME)
}

/// The body's first `n` bytes under `.part`, and nothing under the final name.
fn assert_part_is_prefix(dir: &std::path::Path, body: &[u8], n: usize) {
    assert_nothing_completed(dir, NAME);
    assert_eq!(
        part(dir, NAME).expect("the .part file is kept after a failure"),
        body[..n],
        "the .part holds exactly the bytes received"
    );
}

#[actix_rt::test]
async fn short_body_then_fin_is_truncated_with_or_without_fsync() {
    for fsync in [true, false] {
        let body = pattern(1000);
        let mut first = head(200, &[("Content-Length", "1000")]);
        first.extend_from_slice(&body[..500]);
        let server = Hostile::always(vec![Step::Write(first), Step::Close]);
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), |b| b.fsync(fsync));

        let (_, outcome) = run(&engine, download(&server)).await;

        assert_eq!(
            failure(&outcome),
            &TransferError::Truncated {
                expected: 1000,
                received: 500
            },
            "fsync {fsync}"
        );
        assert_eq!(outcome.bytes(), 500);
        assert_part_is_prefix(dir.path(), &body, 500);
    }
}

#[actix_rt::test]
async fn short_body_then_reset_is_truncated() {
    let body = pattern(1000);
    let mut first = head(200, &[("Content-Length", "1000")]);
    first.extend_from_slice(&body[..500]);
    let gate = Gate::new();
    let server = Hostile::always(vec![
        Step::Write(first),
        Step::Wait(gate.clone()),
        Step::Reset,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let id = submit(&engine, download(&server)).await.unwrap();
    // Reset only once the engine has the 500 bytes, so the test does not depend on timing.
    poll_status(&engine, id, |s| s.bytes_transferred == 500).await;
    gate.open();
    let outcome = wait(&engine, id).await;

    assert_eq!(
        failure(&outcome),
        &TransferError::Truncated {
            expected: 1000,
            received: 500
        }
    );
    assert_part_is_prefix(dir.path(), &body, 500);
}

#[actix_rt::test]
async fn headers_then_reset_before_any_body_byte_is_truncated() {
    let server = Hostile::always(vec![
        Step::Write(head(200, &[("Content-Length", "1000")])),
        Step::Reset,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;

    // The reset may arrive before awc parsed the headers (a network error) or after (a body of
    // 0 of 1000 bytes): both are failures, never a file.
    let error = failure(&outcome);
    assert!(
        matches!(
            error,
            TransferError::Truncated {
                expected: 1000,
                received: 0
            } | TransferError::Network(_)
        ),
        "{error:?}"
    );
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn long_body_is_overlong_and_the_connection_is_not_reused() {
    // The first answer says 500 bytes and sends 1000; the second is honest.
    let body = pattern(1000);
    let mut lying = head(200, &[("Content-Length", "500")]);
    lying.extend_from_slice(&body);
    let honest = ok(b"second answer");
    let server = Hostile::start(move |req| {
        if req.path == "/f.bin" {
            vec![Step::Write(lying.clone())]
        } else {
            vec![Step::Write(honest.clone())]
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;
    let error = failure(&outcome);
    assert!(
        matches!(error, TransferError::Overlong { expected: 500, received } if *received > 500),
        "{error:?}"
    );
    assert_nothing_completed(dir.path(), NAME);

    // The next transfer to the same server is not poisoned by the 500 extra bytes.
    let (_, next) = run(&engine, Fetch::get(server.url("/next"))).await;
    assert_eq!(
        next.body().map(|b| b.as_ref()),
        Some(&b"second answer"[..]),
        "{next:?}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_ne!(
        requests[0].conn, requests[1].conn,
        "the connection of a mis-framed response went back to the pool"
    );
}

#[actix_rt::test]
async fn late_bytes_past_the_length_never_reach_the_next_transfer() {
    // The body is complete when it is read; 500 more bytes follow on the idle connection later.
    // The first download cannot know (its file is right); the next request must not read them.
    let (idle, late_written) = (Gate::new(), Gate::new());
    let first = ok(&pattern(500));
    let (idle2, late2) = (idle.clone(), late_written.clone());
    let server = Hostile::start(move |req| {
        if req.path == "/f.bin" {
            vec![
                Step::Write(first.clone()),
                Step::Wait(idle2.clone()),
                Step::Write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil".to_vec()),
                Step::Open(late2.clone()),
            ]
        } else {
            vec![Step::Write(ok(b"second answer"))]
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), pattern(500));

    idle.open();
    let waiting = late_written.clone();
    let written = actix_rt::task::spawn_blocking(move || waiting.wait(LIMIT))
        .await
        .unwrap();
    assert!(written, "the server never wrote the late bytes");
    let (_, next) = run(&engine, Fetch::get(server.url("/next"))).await;
    assert_eq!(
        next.body().map(|b| b.as_ref()),
        Some(&b"second answer"[..]),
        "{next:?}"
    );
}

#[actix_rt::test]
async fn http11_body_without_length_or_chunking_is_bad_content() {
    let mut answer = head(200, &[("Content-Type", "application/octet-stream")]);
    answer.extend_from_slice(&pattern(500));
    let server = Hostile::always(vec![Step::Write(answer), Step::Close]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;

    assert_failed(&outcome, ErrorKind::BadContent);
    assert_eq!(outcome.bytes(), 0);
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn http10_close_delimited_body_completes_with_unknown_length() {
    let body = pattern(70_000);
    let mut answer = b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    answer.extend_from_slice(&body);
    let server = Hostile::always(vec![Step::Write(answer), Step::Close]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;

    let (id, outcome) = run(&engine, download(&server)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.bytes(), 70_000);
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), body);
    events.until_ended(id).await;
    let seen = events.kinds(id);
    let estimates = estimates(&seen);
    assert!(!estimates.is_empty());
    assert!(estimates.iter().all(Option::is_none), "{seen:?}");
}

#[actix_rt::test]
async fn conflicting_content_lengths_are_bad_content() {
    let cases: [&[(&str, &str)]; 3] = [
        &[("Content-Length", "10"), ("Content-Length", "20")],
        &[("Content-Length", "10, 20")],
        &[("Content-Length", "ten")],
    ];
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    for (i, headers) in cases.into_iter().enumerate() {
        let mut answer = head(200, headers);
        answer.extend_from_slice(&pattern(20));
        let server = Hostile::always(vec![Step::Write(answer), Step::Close]);
        let name = format!("case{i}.bin");

        let (_, outcome) = run(&engine, Download::new(server.url("/")).to(&name)).await;

        assert_failed(&outcome, ErrorKind::BadContent);
        assert_eq!(outcome.bytes(), 0);
        assert_empty(dir.path());
    }
}

#[actix_rt::test]
async fn content_length_beside_chunked_is_bad_content() {
    let mut answer = head(
        200,
        &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
    );
    answer.extend_from_slice(&chunk(b"hello"));
    answer.extend_from_slice(LAST_CHUNK);
    let server = Hostile::always(vec![Step::Write(answer)]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;

    assert_failed(&outcome, ErrorKind::BadContent);
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn chunked_body_completes_with_unknown_length_throughout() {
    let body = pattern(200_000);
    let mut answer = head(200, &[("Transfer-Encoding", "chunked")]);
    for piece in body.chunks(7_000) {
        answer.extend_from_slice(&chunk(piece));
    }
    answer.extend_from_slice(LAST_CHUNK);
    let server = Hostile::always(vec![Step::Write(answer)]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;

    let (id, outcome) = run(&engine, download(&server)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.bytes(), 200_000);
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), body);
    events.until_ended(id).await;
    let seen = events.kinds(id);
    assert!(matches!(
        seen.iter().find(|e| matches!(e, EventKind::Began { .. })),
        Some(EventKind::Began {
            bytes_estimated: None,
            ..
        })
    ));
    assert!(
        estimates(&seen).iter().all(Option::is_none),
        "a total was fabricated: {seen:?}"
    );
    let status = poll_status(&engine, id, |s| s.state.is_ended()).await;
    assert_eq!(status.bytes_estimated, None);
}

/// A chunked body whose connection closes (FIN) before the last chunk.
async fn chunked_cut_by_fin(answer_tail: &[u8], received: usize) {
    let body = pattern(3000);
    let mut answer = head(200, &[("Transfer-Encoding", "chunked")]);
    answer.extend_from_slice(&chunk(&body[..1000]));
    answer.extend_from_slice(&chunk(&body[1000..2000]));
    answer.extend_from_slice(answer_tail);
    let server = Hostile::always(vec![Step::Write(answer), Step::Close]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;

    assert_failed(&outcome, ErrorKind::Network);
    assert_eq!(outcome.bytes(), received as u64);
    assert_part_is_prefix(dir.path(), &body, received);
}

#[actix_rt::test]
async fn chunked_body_without_last_chunk_fails() {
    chunked_cut_by_fin(b"", 2000).await;
}

#[actix_rt::test]
async fn chunked_body_cut_mid_chunk_fails() {
    // A chunk of 0x3e8 = 1000 bytes announced, 10 sent.
    let mut tail = b"3e8\r\n".to_vec();
    tail.extend_from_slice(&pattern(3000)[2000..2010]);
    chunked_cut_by_fin(&tail, 2010).await;
}

#[actix_rt::test]
async fn chunked_body_cut_inside_a_size_line_fails() {
    chunked_cut_by_fin(b"3e", 2000).await;
}

#[actix_rt::test]
async fn chunked_body_reset_before_last_chunk_fails() {
    let mut answer = head(200, &[("Transfer-Encoding", "chunked")]);
    answer.extend_from_slice(&chunk(&pattern(1000)));
    let gate = Gate::new();
    let server = Hostile::always(vec![
        Step::Write(answer),
        Step::Wait(gate.clone()),
        Step::Reset,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let id = submit(&engine, download(&server)).await.unwrap();
    poll_status(&engine, id, |s| s.bytes_transferred == 1000).await;
    gate.open();
    let outcome = wait(&engine, id).await;

    assert_failed(&outcome, ErrorKind::Network);
    assert_part_is_prefix(dir.path(), &pattern(1000), 1000);
}

#[actix_rt::test]
async fn empty_body_with_content_length_zero_completes() {
    let server = Hostile::always(vec![Step::Write(ok(b""))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), b"");
    assert_eq!(files(dir.path()), vec![std::path::PathBuf::from(NAME)]);
}

#[actix_rt::test]
async fn fetch_of_a_short_body_is_truncated() {
    let mut answer = head(200, &[("Content-Length", "100")]);
    answer.extend_from_slice(&pattern(40));
    let server = Hostile::always(vec![Step::Write(answer), Step::Close]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Fetch::get(server.url("/x"))).await;

    assert_eq!(
        failure(&outcome),
        &TransferError::Truncated {
            expected: 100,
            received: 40
        }
    );
    assert!(outcome.body().is_none());
}

#[actix_rt::test]
async fn garbage_instead_of_a_response_is_bad_content() {
    let server = Hostile::always(vec![
        Step::Write(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n".to_vec()),
        Step::Close,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, download(&server)).await;

    assert_failed(&outcome, ErrorKind::BadContent);
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn head_answers_announce_a_length_without_a_body() {
    let server = Hostile::start(|req| {
        let answer = if req.method == "HEAD" {
            head(200, &[("Content-Length", "1000")])
        } else {
            ok(b"after head")
        };
        vec![Step::Write(answer)]
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Fetch::new("HEAD", server.url("/x"))).await;
    assert_eq!(outcome.body().map(|b| b.len()), Some(0), "{outcome:?}");

    // The connection is still in step: the next answer is read correctly.
    let (_, next) = run(&engine, Fetch::get(server.url("/y"))).await;
    assert_eq!(next.body().map(|b| b.as_ref()), Some(&b"after head"[..]));
}

#[actix_rt::test]
async fn an_interim_answer_fails_clearly_and_never_reaches_the_next_transfer() {
    // awc takes a 1xx for the final answer and cannot read past it (a known limit): the
    // transfer fails. Its final answer may come later on that connection: a request sent on it
    // would read that answer as its own, so the connection must not be used again.
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    for interim in ["100 Continue", "103 Early Hints"] {
        let first = format!("HTTP/1.1 {interim}\r\n\r\n").into_bytes();
        let server = Hostile::start(move |req| match (req.path.as_str(), req.conn) {
            ("/f.bin", _) => vec![Step::Write(first.clone())],
            // On the same connection: the late answer to /f.bin, then the one to /next.
            (_, 0) => vec![
                Step::Write(ok(b"the first answer")),
                Step::Write(ok(b"the second answer")),
            ],
            _ => vec![Step::Write(ok(b"the second answer"))],
        });

        let (_, outcome) = run(&engine, download(&server)).await;
        assert_failed(&outcome, ErrorKind::BadContent);
        assert_empty(dir.path());

        let (_, next) = run(&engine, Fetch::get(server.url("/next"))).await;
        assert_eq!(
            next.body().map(|b| b.as_ref()),
            Some(&b"the second answer"[..]),
            "{interim}: {next:?}"
        );
        let requests = server.requests();
        assert_ne!(requests[0].conn, requests[1].conn);
    }
}

#[actix_rt::test]
async fn a_fetch_over_its_cap_is_body_too_large_announced_or_not() {
    let body = pattern(10_000);
    let mut chunked = head(200, &[("Transfer-Encoding", "chunked")]);
    for piece in body.chunks(1000) {
        chunked.extend_from_slice(&chunk(piece));
    }
    chunked.extend_from_slice(LAST_CHUNK);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    for answer in [ok(&body), chunked] {
        let server = Hostile::always(vec![Step::Write(answer)]);

        let (_, outcome) = run(&engine, Fetch::get(server.url("/x")).max_body(4096)).await;

        assert_eq!(
            failure(&outcome),
            &TransferError::BodyTooLarge { limit: 4096 }
        );
        // It stops reading at the cap, not at the end of the body.
        assert!(outcome.bytes() < 10_000, "{outcome:?}");
    }
}

#[actix_rt::test]
async fn a_segment_with_bytes_past_its_length_fails_and_one_stream_completes_the_file() {
    // Two segments of a 2 MiB file; the range request for the second is answered with 100
    // bytes more than its Content-Length. Segments go through the same wire checks as every
    // request: the segmented attempt fails, and the single stream it falls back to (a plain
    // GET, on another connection) completes the file.
    const N: usize = 2 << 20;
    let body = pattern(N);
    let served = body.clone();
    let server = Hostile::start(move |req| {
        let validators = [("ETag", "\"v1\""), ("Accept-Ranges", "bytes")];
        match req.header("range") {
            None => vec![Step::Write(response(200, &validators, &served))],
            Some(range) => {
                let (a, b) = range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.split_once('-'))
                    .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
                    .expect("a bytes=a-b range");
                let content_range = format!("bytes {a}-{b}/{N}");
                let mut answer = response(
                    206,
                    &[("ETag", "\"v1\""), ("Content-Range", &content_range)],
                    &served[a..=b],
                );
                answer.extend_from_slice(&[b'!'; 100]);
                vec![Step::Write(answer)]
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let retry = actix_transfer::RetryPolicy::default()
        .initial_delay(std::time::Duration::from_millis(10))
        .max_delay(std::time::Duration::from_millis(10));
    let engine = engine(dir.path(), |b| b.retry(retry));

    let (_, outcome) = run(&engine, download(&server).segments(2)).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(outcome.path().unwrap()).unwrap(), body);

    let requests = server.requests();
    let ranges: Vec<Option<&str>> = requests.iter().map(|r| r.header("range")).collect();
    assert_eq!(
        ranges,
        [None, Some("bytes=1048576-2097151"), None],
        "a plain GET, the second segment's range, then one stream from zero"
    );
    assert_ne!(
        requests[1].conn, requests[2].conn,
        "the mis-framed segment's connection went back to the pool"
    );
}
