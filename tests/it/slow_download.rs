//! A download whose bytes trickle is read in rounds: the bytes gather in the socket for up to
//! 250 ms (a quarter of the idle timeout at most), then everything waiting is read and written
//! at once. These check that rounds lose no byte, never hold a transfer back once it speeds
//! up, and leave the watchdog and cancel as they are.

use crate::hostile;

use std::time::Duration;

use actix_transfer::{Cancel, Download, EndState, TimeoutPhase, TransferError};
use hostile::*;

const NAME: &str = "t.bin";

/// `pieces` pieces of `piece` bytes of the pattern, `every` apart, with a Content-Length of
/// `len` (the body may go on after the trickle). The script's steps, after the head.
fn trickle(len: usize, pieces: usize, piece: usize, every: Duration) -> Vec<Step> {
    let body = pattern(len);
    let mut script = vec![Step::Write(head(
        200,
        &[("Content-Length", &len.to_string())],
    ))];
    for part in body[..pieces * piece].chunks(piece) {
        script.push(Step::Pause(every));
        script.push(Step::Write(part.to_vec()));
    }
    script
}

#[actix_rt::test]
async fn a_trickle_that_turns_into_a_burst_is_read_at_full_speed() {
    // 12 KB over ~0.7 s (the download is judged slow and read in rounds), then 8 MiB at once.
    // Read a chunk a round, the burst would take over a minute; read as it comes, a moment.
    let len = 12_000 + 8 * 1024 * 1024;
    let mut script = trickle(len, 12, 1000, Duration::from_millis(60));
    script.push(Step::Write(pattern(len)[12_000..].to_vec()));
    let server = Hostile::always(script);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), pattern(len));
}

#[actix_rt::test]
async fn a_chunked_trickle_lands_every_byte() {
    let body = pattern(20 * 700);
    let mut script = vec![Step::Write(head(200, &[("Transfer-Encoding", "chunked")]))];
    for part in body.chunks(700) {
        script.push(Step::Pause(Duration::from_millis(50)));
        script.push(Step::Write(chunk(part)));
    }
    script.push(Step::Write(LAST_CHUNK.to_vec()));
    let server = Hostile::always(script);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), body);
}

#[actix_rt::test]
async fn a_stall_after_a_trickle_times_out_and_keeps_every_byte_received() {
    let mut script = trickle(100_000, 12, 1000, Duration::from_millis(60));
    script.push(Step::Hang);
    let server = Hostile::always(script);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b.idle_timeout(Duration::from_millis(400)));

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to(NAME)).await;

    assert_eq!(
        outcome.error(),
        Some(&TransferError::Timeout(TimeoutPhase::Idle)),
        "{outcome:?}"
    );
    assert_eq!(outcome.bytes(), 12_000);
    assert_eq!(part(dir.path(), NAME).unwrap(), pattern(12_000));
    assert_nothing_completed(dir.path(), NAME);
}

#[actix_rt::test]
async fn a_cancel_between_rounds_is_answered_and_reads_nothing_more() {
    // 40 pieces 60 ms apart: judged slow after ~0.5 s (8 KB), cancelled once 20 KB arrived
    // (~1.2 s), so in the middle of its rounds.
    let server = Hostile::always(trickle(40_000, 40, 1000, Duration::from_millis(60)));
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let id = submit(&engine, Download::new(server.url("/x")).to(NAME))
        .await
        .unwrap();
    poll_status(&engine, id, |s| s.bytes_transferred >= 20_000).await;

    assert_eq!(engine.send(Cancel(id)).await.unwrap(), Ok(()));
    let at_reply = poll_status(&engine, id, |_| true).await.bytes_transferred;
    let outcome = wait(&engine, id).await;

    assert_eq!(outcome.end_state(), EndState::Cancelled, "{outcome:?}");
    assert_eq!(outcome.bytes(), at_reply, "no byte counted after the reply");
    assert!(outcome.bytes() < 40_000);
    assert_empty(dir.path());
}
