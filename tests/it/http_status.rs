//! Status codes: a non-2xx answer ends as `Server { status }` and its body is never written to
//! the target; a fetch may opt to accept any status.

use crate::hostile;

use actix_transfer::{Download, ErrorKind, Fetch, TransferError, Upload};
use hostile::*;

const NAME: &str = "s.bin";

#[actix_rt::test]
async fn error_statuses_fail_and_their_body_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    for (status, retryable) in [(404, false), (500, true), (503, true), (403, false)] {
        // A large error page: were it written, the .part or the target would hold it.
        let page = pattern(300_000);
        let server = Hostile::always(vec![Step::Write(response(status, &[], &page))]);

        let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

        let error = failure(&outcome);
        assert_eq!(error, &TransferError::Server { status });
        assert_eq!(error.status(), Some(status));
        assert_eq!(error.is_retryable(), retryable, "{status}");
        assert_eq!(outcome.bytes(), 0);
        assert_empty(dir.path());
    }
}

#[actix_rt::test]
async fn an_error_status_with_a_chunked_body_fails_the_same_way() {
    let mut answer = head(500, &[("Transfer-Encoding", "chunked")]);
    answer.extend_from_slice(&chunk(b"internal error page"));
    answer.extend_from_slice(LAST_CHUNK);
    let server = Hostile::always(vec![Step::Write(answer)]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &TransferError::Server { status: 500 });
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn a_fetch_fails_on_error_statuses_unless_it_accepts_any() {
    let server = Hostile::always(vec![Step::Write(response(404, &[], b"no such thing"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, strict) = run(&engine, Fetch::get(server.url("/x"))).await;
    assert_eq!(failure(&strict), &TransferError::Server { status: 404 });
    assert!(strict.body().is_none());

    let (_, lenient) = run(&engine, Fetch::get(server.url("/x")).accept_any_status()).await;
    let actix_transfer::Outcome::Completed { status, .. } = &lenient else {
        panic!("{lenient:?}")
    };
    assert_eq!(*status, 404);
    assert_eq!(
        lenient.body().map(|b| b.as_ref()),
        Some(&b"no such thing"[..])
    );
}

#[actix_rt::test]
async fn an_upload_answered_with_an_error_status_fails() {
    let server = Hostile::always(vec![Step::Write(response(500, &[], b"disk full"))]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up.bin");
    std::fs::write(&file, pattern(10_000)).unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Upload::new(server.url("/up"), &file)).await;

    assert_eq!(failure(&outcome), &TransferError::Server { status: 500 });
    assert_eq!(server.requests()[0].body, pattern(10_000));
}

#[actix_rt::test]
async fn a_partial_answer_to_a_request_without_range_is_bad_content() {
    let server = Hostile::always(vec![Step::Write(response(
        206,
        &[("Content-Range", "bytes 0-99/1000")],
        &pattern(100),
    ))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_failed(&outcome, ErrorKind::BadContent);
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn no_content_is_a_completed_empty_download() {
    let server = Hostile::always(vec![Step::Write(head(204, &[]))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), b"");
}

#[actix_rt::test]
async fn a_partial_answer_from_another_origin_after_the_range_was_dropped_is_bad_content() {
    let other = Hostile::always(vec![Step::Write(response(
        206,
        &[("Content-Range", "bytes 0-99/1000")],
        &pattern(100),
    ))]);
    let target = other.url("/there");
    let origin = Hostile::always(vec![Step::Write(redirect(302, &target))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let ranged = Download::new(origin.url("/here"))
        .to(NAME)
        .header("Range", "bytes=0-99");

    let (_, outcome) = run(&engine, ranged).await;

    assert_eq!(other.requests()[0].header("range"), None);
    assert_failed(&outcome, ErrorKind::BadContent);
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn a_partial_answer_to_a_range_the_caller_asked_for_completes() {
    let server = Hostile::always(vec![Step::Write(response(
        206,
        &[("Content-Range", "bytes 0-99/1000")],
        &pattern(100),
    ))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let ranged = Download::new(server.url("/x"))
        .to(NAME)
        .header("Range", "bytes=0-99");

    let (_, outcome) = run(&engine, ranged).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), pattern(100));
}

/// A `Retry-After` longer than the policy allows is not cut short: the transfer fails at once
/// with the server's status, and no second request is sent early.
#[actix_rt::test]
async fn a_retry_after_beyond_the_policy_fails_with_the_status() {
    let server = Hostile::always(vec![Step::Write(response(
        503,
        &[("Retry-After", "100")],
        b"come back later",
    ))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.retry(actix_transfer::RetryPolicy::default().max_attempts(3))
    });

    let start = std::time::Instant::now();
    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &TransferError::Server { status: 503 });
    assert_eq!(
        server.requests().len(),
        1,
        "retried before the server's time"
    );
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_empty(dir.path());
}

/// A `Retry-After` within the policy is honoured: the next request waits that long.
#[actix_rt::test]
async fn a_retry_after_within_the_policy_is_waited_for() {
    let server = Hostile::start(|req| {
        if req.conn == 0 {
            vec![
                Step::Write(response(429, &[("Retry-After", "1")], b"slow down")),
                Step::Close,
            ]
        } else {
            vec![Step::Write(ok(b"done"))]
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.retry(actix_transfer::RetryPolicy::default().max_attempts(2))
    });
    let events = Events::subscribe(&engine).await;

    let start = std::time::Instant::now();
    let id = submit(&engine, Download::new(server.url("/x")).to(NAME))
        .await
        .unwrap();
    events.until_ended(id).await;
    let all = events.kinds(id);
    // The second request, whose answer ended the transfer, came after the server's delay.
    assert!(start.elapsed() >= std::time::Duration::from_secs(1));

    let outcome = wait(&engine, id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    let delays: Vec<_> = all
        .iter()
        .filter_map(|e| match e {
            actix_transfer::EventKind::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, [std::time::Duration::from_secs(1)]);
    assert_eq!(server.requests().len(), 2);
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), b"done");
}
