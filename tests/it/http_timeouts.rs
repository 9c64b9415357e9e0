//! Timeouts, each for its own phase: connect, response headers, idle (no byte moving in either
//! direction during a body) and an optional total deadline. None of them cuts a slow transfer
//! that keeps moving.

use crate::hostile;

use std::time::Duration;

use actix_transfer::{Download, TimeoutPhase, TransferError, Upload};
use hostile::*;

const NAME: &str = "t.bin";
const SHORT: Duration = Duration::from_millis(400);
/// Longer than the rig's bound on a whole transfer ([`LIMIT`]): a timeout that must not fire,
/// and that would fail the test if the engine waited for it instead of the short one.
const LONG: Duration = Duration::from_secs(60);

fn timed_out(phase: TimeoutPhase) -> TransferError {
    TransferError::Timeout(phase)
}

#[actix_rt::test]
async fn connect_timeout_on_a_full_accept_queue() {
    let target = Unconnectable::new().expect("a listener with a full accept queue");
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.connect_timeout(SHORT).headers_timeout(LONG)
    });

    let (_, outcome) = run(&engine, Download::new(target.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Connect));
    assert!(failure(&outcome).is_retryable());
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn headers_timeout_when_the_server_reads_and_never_answers() {
    let server = Hostile::always(vec![Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.headers_timeout(SHORT).idle_timeout(LONG));

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Headers));
    assert_eq!(server.requests().len(), 1, "the request was sent");
    assert_empty(dir.path());
}

/// An attempt whose limits are all longer than the thread's tick (50 ms) arms its timer only
/// after a tick; one with a shorter limit arms it at once. Both fire: the short one here, the
/// long ones in the tests around it.
#[actix_rt::test]
async fn a_timeout_shorter_than_a_tick_fires_as_well() {
    let server = Hostile::always(vec![Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.headers_timeout(Duration::from_millis(20))
            .idle_timeout(LONG)
    });

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Headers));
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn headers_timeout_when_the_server_accepts_and_never_reads() {
    let server = Deaf::start();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.headers_timeout(SHORT).idle_timeout(LONG));

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Headers));
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn headers_timeout_when_the_head_stops_half_way() {
    let server = Hostile::always(vec![
        Step::Write(b"HTTP/1.1 200 OK\r\nContent-Len".to_vec()),
        Step::Hang,
    ]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.headers_timeout(SHORT).idle_timeout(LONG));

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Headers));
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn idle_timeout_when_the_body_stalls_after_the_headers() {
    let mut answer = head(200, &[("Content-Length", "1000")]);
    answer.extend_from_slice(&pattern(100));
    let server = Hostile::always(vec![Step::Write(answer), Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.headers_timeout(LONG).idle_timeout(SHORT));

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Idle));
    assert_eq!(outcome.bytes(), 100);
    assert_nothing_completed(dir.path(), NAME);
    assert_eq!(part(dir.path(), NAME).unwrap(), pattern(100));
}

#[actix_rt::test]
async fn idle_timeout_when_a_chunked_body_stalls() {
    let mut answer = head(200, &[("Transfer-Encoding", "chunked")]);
    answer.extend_from_slice(&chunk(&pattern(300)));
    let server = Hostile::always(vec![Step::Write(answer), Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.headers_timeout(LONG).idle_timeout(SHORT));

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Idle));
    assert_eq!(part(dir.path(), NAME).unwrap(), pattern(300));
    assert_nothing_completed(dir.path(), NAME);
}

#[actix_rt::test]
async fn idle_timeout_when_an_upload_stalls() {
    // The server never reads: once the socket buffers are full no byte moves.
    let server = Deaf::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![7u8; 32 * 1024 * 1024]).unwrap();
    let engine = engine(dir.path(), |b| b.headers_timeout(LONG).idle_timeout(SHORT));

    let (_, outcome) = run(&engine, Upload::new(server.url("/up"), &file)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Idle));
    assert!(outcome.bytes() < 32 * 1024 * 1024, "{outcome:?}");
}

/// A body of `pieces` × 1000 bytes, one piece every `every`.
fn trickle(pieces: usize, every: Duration) -> Hostile {
    let body = pattern(pieces * 1000);
    let mut script = vec![Step::Write(head(
        200,
        &[("Content-Length", &body.len().to_string())],
    ))];
    for piece in body.chunks(1000) {
        script.push(Step::Pause(every));
        script.push(Step::Write(piece.to_vec()));
    }
    Hostile::always(script)
}

#[actix_rt::test]
async fn a_slow_but_moving_body_is_not_cut() {
    // 15 pieces 150 ms apart: over 2 s in all, never idle for the 400 ms idle timeout, and
    // longer in all than both the idle and the headers timeout.
    let server = trickle(15, Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.headers_timeout(SHORT)
            .idle_timeout(SHORT)
            .connect_timeout(SHORT)
    });

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        std::fs::read(dir.path().join(NAME)).unwrap(),
        pattern(15_000)
    );
}

#[actix_rt::test]
async fn the_total_deadline_cuts_even_a_moving_body() {
    let server = trickle(40, Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.total_timeout(Duration::from_millis(800))
            .idle_timeout(LONG)
    });

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Total));
    let received = outcome.bytes() as usize;
    assert!(received < 40_000, "{outcome:?}");
    assert_nothing_completed(dir.path(), NAME);
    if received > 0 {
        assert_eq!(part(dir.path(), NAME).unwrap(), pattern(40_000)[..received]);
    }
}

#[actix_rt::test]
async fn a_slow_upload_longer_than_awc_default_timeout_completes() {
    // The server reads 32 KiB every 20 ms (~1.6 MB/s) with a 64 KiB receive buffer: 10 MiB take
    // over 6 s, longer than awc's default 5 s request timeout, which the engine turns off; its
    // own idle timeout (1 s) never fires because bytes keep moving.
    let server = Hostile::throttled(
        Throttle {
            bytes: 32 * 1024,
            every: Duration::from_millis(20),
        },
        |req| {
            vec![Step::Write(
                ok(format!("got {}", req.body.len()).as_bytes()),
            )]
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up.bin");
    let size = 10 * 1024 * 1024;
    std::fs::write(&file, pattern(size)).unwrap();
    let engine = engine(dir.path(), |b| {
        b.idle_timeout(Duration::from_secs(1))
            .headers_timeout(Duration::from_secs(10))
    });

    let (_, outcome) = run(&engine, Upload::new(server.url("/up"), &file)).await;

    assert_eq!(
        outcome.body().map(|b| b.as_ref()),
        Some(format!("got {size}").as_bytes()),
        "{outcome:?}"
    );
    assert_eq!(server.requests()[0].body, pattern(size));
}

#[actix_rt::test]
async fn a_refused_connection_is_a_connect_error_not_a_timeout() {
    // A port with no listener: the connection is refused at once.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.connect_timeout(LONG));

    let (_, outcome) = run(&engine, Download::new(format!("http://{addr}/x")).to(NAME)).await;

    assert_failed(&outcome, actix_transfer::ErrorKind::Connect);
    assert_empty(dir.path());
}

/// `total_timeout` bounds the whole transfer, retries included: the attempt cut by the deadline
/// is not retried, and the transfer ends at the deadline with `Timeout(Total)`.
#[actix_rt::test]
async fn the_total_deadline_bounds_the_whole_transfer_and_is_not_retried() {
    // A 4 s body; a deadline of 800 ms; retries with short backoffs allowed.
    let server = trickle(40, Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_millis(800);
    let engine = engine(dir.path(), |b| {
        b.total_timeout(deadline).idle_timeout(LONG).retry(
            actix_transfer::RetryPolicy::default()
                .max_attempts(5)
                .initial_delay(Duration::from_millis(50)),
        )
    });

    let start = std::time::Instant::now();
    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;
    let elapsed = start.elapsed();

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Total));
    let actix_transfer::Outcome::Failed { attempts, .. } = &outcome else {
        unreachable!()
    };
    assert_eq!(*attempts, 1, "the deadline was retried: {outcome:?}");
    assert_eq!(server.requests().len(), 1);
    assert!(
        elapsed >= deadline,
        "ended before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < deadline + Duration::from_millis(1500),
        "ended long after the deadline: {elapsed:?}"
    );
    assert_nothing_completed(dir.path(), NAME);
}

/// A backoff that would end past the total deadline is not slept: the transfer ends at the
/// deadline with `Timeout(Total)` instead of sending a request after it.
#[actix_rt::test]
async fn a_backoff_past_the_total_deadline_ends_at_the_deadline() {
    let server = Hostile::always(vec![Step::Write(response(503, &[], b"busy"))]);
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_millis(500);
    let engine = engine(dir.path(), |b| {
        // The backoff is at least 5 s (10 s with jitter down to half).
        b.total_timeout(deadline).retry(
            actix_transfer::RetryPolicy::default()
                .max_attempts(2)
                .initial_delay(Duration::from_secs(10)),
        )
    });

    let start = std::time::Instant::now();
    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;
    let elapsed = start.elapsed();

    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Total));
    assert_eq!(server.requests().len(), 1, "a request after the deadline");
    assert!(
        elapsed >= deadline,
        "ended before the deadline: {elapsed:?}"
    );
    assert!(
        elapsed < deadline + Duration::from_millis(1500),
        "the backoff was slept: {elapsed:?}"
    );
    assert_empty(dir.path());
}

/// The chosen rule: time spent paused does not count toward `total_timeout` (the caller
/// stopped the clock by pausing); the time before the pause and after the resume does.
#[actix_rt::test]
async fn time_spent_paused_does_not_count_toward_the_total_deadline() {
    // A body of 500 ms; a deadline of 1.5 s; paused for 2 s in between.
    let server = trickle(5, Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.total_timeout(Duration::from_millis(1500))
            .idle_timeout(LONG)
    });
    let events = Events::subscribe(&engine).await;

    let id = submit(&engine, Download::new(server.url("/x")).to(NAME))
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while !events
        .kinds(id)
        .iter()
        .any(|e| matches!(e, actix_transfer::EventKind::Began { .. }))
    {
        assert!(start.elapsed() < LIMIT, "no Began: {:?}", events.kinds(id));
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    engine
        .send(actix_transfer::Pause(id))
        .await
        .unwrap()
        .unwrap();
    // Paused for longer than the whole deadline: the point of this test, not a hope.
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    engine
        .send(actix_transfer::Resume(id))
        .await
        .unwrap()
        .unwrap();
    let outcome = wait(&engine, id).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        std::fs::read(dir.path().join(NAME)).unwrap(),
        pattern(5_000)
    );
}

/// Zero means "no limit" for every timeout: a server slow to answer and a body with gaps
/// complete with all four timeouts set to zero.
#[actix_rt::test]
async fn zero_timeouts_mean_no_limit() {
    let body = pattern(3_000);
    let mut script = vec![
        Step::Pause(Duration::from_millis(300)),
        Step::Write(head(200, &[("Content-Length", "3000")])),
    ];
    for piece in body.chunks(1000) {
        script.push(Step::Pause(Duration::from_millis(200)));
        script.push(Step::Write(piece.to_vec()));
    }
    let server = Hostile::always(script);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.connect_timeout(Duration::ZERO)
            .headers_timeout(Duration::ZERO)
            .idle_timeout(Duration::ZERO)
            .total_timeout(Duration::ZERO)
            .progress_interval(Duration::ZERO)
    });

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), body);
}

/// A huge duration saturates (a deadline that never comes) instead of overflowing: each
/// duration option alone, then all together, set to `Duration::MAX`.
#[actix_rt::test]
async fn huge_durations_saturate() {
    type Tweak = fn(actix_transfer::EngineBuilder) -> actix_transfer::EngineBuilder;
    let tweaks: [(&str, Tweak); 7] = [
        ("connect", |b| b.connect_timeout(Duration::MAX)),
        ("headers", |b| b.headers_timeout(Duration::MAX)),
        ("idle", |b| b.idle_timeout(Duration::MAX)),
        ("total", |b| b.total_timeout(Duration::MAX)),
        ("progress", |b| b.progress_interval(Duration::MAX)),
        ("retry", |b| {
            b.retry(
                actix_transfer::RetryPolicy::default()
                    .initial_delay(Duration::MAX)
                    .max_delay(Duration::MAX)
                    .max_retry_after(Duration::MAX),
            )
        }),
        ("all", |b| {
            b.connect_timeout(Duration::MAX)
                .headers_timeout(Duration::MAX)
                .idle_timeout(Duration::MAX)
                .total_timeout(Duration::MAX)
                .progress_interval(Duration::MAX)
        }),
    ];
    let server = trickle(3, Duration::from_millis(20));
    for (what, tweak) in tweaks {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path(), tweak);

        let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

        assert!(outcome.is_completed(), "{what}: {outcome:?}");
        assert_eq!(
            std::fs::read(dir.path().join(NAME)).unwrap(),
            pattern(3_000),
            "{what}"
        );
    }

    // A huge backoff, cut by the total deadline.
    let busy = Hostile::always(vec![Step::Write(response(503, &[], b"busy"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.total_timeout(Duration::from_millis(300)).retry(
            actix_transfer::RetryPolicy::default()
                .initial_delay(Duration::MAX)
                .max_delay(Duration::MAX),
        )
    });
    let (_, outcome) = run(&engine, Download::new(busy.url("/x")).to(NAME)).await;
    assert_eq!(failure(&outcome), &timed_out(TimeoutPhase::Total));
}

#[actix_rt::test]
async fn a_refused_connection_keeps_its_io_error_as_the_source() {
    // A port with no listener: the OS refuses the connection, and that `io::Error` (its kind)
    // is reachable from the transfer's error; the message reads as a sentence.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.connect_timeout(LONG));

    let (_, outcome) = run(&engine, Download::new(format!("http://{addr}/x")).to(NAME)).await;

    let error = assert_failed(&outcome, actix_transfer::ErrorKind::Connect);
    let source = std::error::Error::source(error).and_then(|e| e.downcast_ref::<std::io::Error>());
    assert_eq!(
        source.map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{error:?}"
    );
    let message = error.to_string();
    for fragment in ["Some(", "Os {", "Custom {", "kind:"] {
        assert!(!message.contains(fragment), "{message}");
    }
}

/// A zero connect timeout means no limit: a connect that hangs (a full accept queue) is waited
/// for, not failed at awc's next timer tick.
#[actix_rt::test]
async fn a_zero_connect_timeout_waits_for_a_slow_connect() {
    use actix_transfer::{Cancel, Outcome, Status, TransferState};
    let target = Unconnectable::new().expect("a listener with a full accept queue");
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.connect_timeout(Duration::ZERO));
    let id = crate::support::submit(&engine, Download::new(target.url("/x")).to(NAME))
        .await
        .unwrap();
    // Still connecting after a while (a timeout would have ended it at once).
    actix_rt::time::sleep(SHORT).await;
    let status = engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.state, TransferState::Active, "{status:?}");
    engine.send(Cancel(id)).await.unwrap().unwrap();
    let outcome = crate::support::wait(&engine, id).await;
    assert!(matches!(outcome, Outcome::Cancelled { .. }), "{outcome:?}");
}
