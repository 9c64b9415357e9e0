//! The cancel contract: Ok only after the stream stopped, NotActive once ended, Unknown for
//! ids never issued; the reply always agrees with the single Ended event.

use crate::support;

use std::{
    sync::atomic::Ordering::SeqCst,
    time::{Duration, Instant},
};

use actix_transfer::*;
use support::*;

/// Bounded wait until the transfer reported at least `n` bytes.
async fn until_bytes(rig: &Rig, id: TransferId, n: u64) {
    poll_status(&rig.engine, id, |s| s.bytes_transferred >= n).await;
}

#[actix_rt::test]
async fn cancel_while_streaming_stops_the_stream_and_removes_the_part() {
    let server = server();
    let rig = rig().await;
    let id = rig
        .submit(Download::new(server.url("/slow/10000000")).to("big.bin"))
        .await;
    until_bytes(&rig, id, 40_000).await;
    let conn = server.last_slow().await;

    assert_eq!(rig.engine.send(Cancel(id)).await.unwrap(), Ok(()));
    // The reply comes after the Ended event, which agrees.
    assert!(matches!(
        rig.events.until_ended(id).await,
        Outcome::Cancelled { .. }
    ));
    assert!(
        rig.files().is_empty(),
        "the .part is gone: {:?}",
        rig.files()
    );

    // The server sees the connection go away, and stops sending.
    let start = Instant::now();
    while !conn.dropped.load(SeqCst) {
        assert!(
            start.elapsed() < LIMIT,
            "the server never saw the disconnect"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let sent = conn.sent.load(SeqCst);
    actix_rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(conn.sent.load(SeqCst), sent, "nothing more was sent");
    assert!(sent < 10_000_000);
    // And the status keeps the bytes it had when cancelled.
    let status = rig.engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.state, TransferState::Cancelled);
}

#[actix_rt::test]
async fn cancel_while_queued_never_sends_a_request() {
    let server = server();
    let rig = rig_with(|b| b.max_active(1)).await;
    let blocker = rig
        .submit(Download::new(server.url("/slow/10000000")).to("a"))
        .await;
    until_bytes(&rig, blocker, 1).await;
    let queued = rig
        .submit(Download::new(server.url("/bytes/10")).to("b"))
        .await;
    let status = rig.engine.send(Status(queued)).await.unwrap().unwrap();
    assert_eq!(status.state, TransferState::Queued);
    assert_eq!(rig.engine.send(Cancel(queued)).await.unwrap(), Ok(()));
    let events: Vec<EventKind> = rig.events.of(queued).into_iter().map(|e| e.kind).collect();
    assert_eq!(
        events,
        vec![
            EventKind::Queued,
            // Never sent, so no response either.
            EventKind::Ended(Outcome::Cancelled {
                bytes: 0,
                status: None,
                headers: Headers::default(),
            })
        ]
    );
    rig.engine.send(Cancel(blocker)).await.unwrap().unwrap();
    assert!(
        !server
            .state
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|p| p == "/bytes/10"),
        "the cancelled transfer never reached the server"
    );
}

#[actix_rt::test]
async fn cancel_after_the_end_is_not_active_and_unknown_ids_are_unknown() {
    let server = server();
    let rig = rig().await;
    let done = rig.submit(Download::new(server.url("/bytes/10"))).await;
    assert!(rig.wait(done).await.is_completed());
    assert_eq!(
        rig.engine.send(Cancel(done)).await.unwrap(),
        Err(ControlError::NotActive(EndState::Completed))
    );
    let failed = rig.submit(Download::new(server.url("/status/404"))).await;
    rig.wait(failed).await;
    assert_eq!(
        rig.engine.send(Cancel(failed)).await.unwrap(),
        Err(ControlError::NotActive(EndState::Failed))
    );
    let unknown = TransferId::new(9999).unwrap();
    assert_eq!(
        rig.engine.send(Cancel(unknown)).await.unwrap(),
        Err(ControlError::Unknown)
    );
    // The completed file is untouched by the late cancel.
    assert_eq!(rig.files(), vec!["10"]);
}

#[actix_rt::test]
async fn cancel_twice() {
    let server = server();
    let rig = rig().await;
    let id = rig.submit(Download::new(server.url("/slow/1000000"))).await;
    until_bytes(&rig, id, 1).await;
    let (a, b) = futures::join!(rig.engine.send(Cancel(id)), rig.engine.send(Cancel(id)));
    let mut replies = vec![a.unwrap(), b.unwrap()];
    replies.sort_by_key(|r| r.is_err());
    assert_eq!(
        replies,
        vec![Ok(()), Err(ControlError::NotActive(EndState::Cancelled))],
        "exactly one cancel wins"
    );
    assert_eq!(
        rig.engine.send(Cancel(id)).await.unwrap(),
        Err(ControlError::NotActive(EndState::Cancelled))
    );
    assert_eq!(rig.events.ended(id).len(), 1);
}

#[actix_rt::test]
async fn a_storm_of_cancels_racing_completions_always_agrees_with_ended() {
    let server = server();
    let rig = rig_with(|b| b.max_active(64)).await;
    let n = 300;
    let mut ids = Vec::new();
    for i in 0..n {
        // Small and medium bodies, files and memory, so cancels land in every phase.
        let size = [0, 100, 5_000, 200_000, 1_500_000][i % 5];
        let id = if i % 2 == 0 {
            rig.submit(Download::new(server.url(&format!("/bytes/{size}"))).to(format!("f{i}")))
                .await
        } else {
            rig.submit(Fetch::get(server.url(&format!("/bytes/{size}"))))
                .await
        };
        ids.push(id);
    }
    // Cancel every transfer at a different moment, concurrently: at once, when it begins (a
    // small body ends about then), after a delay spread over 0-100 ms, or after it ended. The
    // moments are tied to each transfer's own events, not to the clock alone, so every phase
    // is reached however busy the machine is.
    let replies = futures::future::join_all(ids.iter().enumerate().map(|(i, id)| {
        let engine = rig.engine.clone();
        let events = &rig.events;
        let id = *id;
        async move {
            match i % 4 {
                0 => {}
                1 => {
                    events
                        .until_kind(id, |k| {
                            matches!(k, EventKind::Began { .. } | EventKind::Ended(_))
                        })
                        .await;
                }
                2 => actix_rt::time::sleep(Duration::from_micros((i % 41) as u64 * 2500)).await,
                _ => {
                    events.until_ended(id).await;
                }
            }
            (id, engine.send(Cancel(id)).await.unwrap())
        }
    }))
    .await;
    let mut seen = [0usize; 3];
    for (id, reply) in replies {
        let outcome = rig.wait(id).await;
        let expected = match outcome.end_state() {
            EndState::Cancelled => Ok(()),
            end => Err(ControlError::NotActive(end)),
        };
        assert_eq!(
            reply, expected,
            "{id}: reply and outcome disagree: {outcome:?}"
        );
        seen[outcome.end_state() as usize] += 1;
        rig.events.until_ended(id).await;
        assert_eq!(
            rig.events.ended(id),
            vec![outcome],
            "exactly one Ended, the same"
        );
    }
    // No stray .part files, and every completed download is whole.
    for f in rig.files() {
        assert!(!f.ends_with(".part"), "{f}");
    }
    eprintln!(
        "storm: completed {}, failed {}, cancelled {}",
        seen[0], seen[1], seen[2]
    );
    assert!(seen[EndState::Cancelled as usize] > 0, "{seen:?}");
    assert!(seen[EndState::Completed as usize] > 0, "{seen:?}");
}

/// Once `Cancel` answered `Ok`, every message tells the same story: `SetRate` says the
/// transfer ended cancelled, `Status` says `Cancelled`, `List` of active ones leaves it out,
/// and `Wait` answers `Cancelled` (at once, not never). The Engine may not have its actor's
/// report yet at that moment; the answers must not depend on it.
#[actix_rt::test]
async fn every_message_agrees_with_a_cancel_that_answered() {
    const TRIES: usize = 100;
    let server = server();
    let rig = rig().await;
    let mut wrong = Vec::new();
    for i in 0..TRIES {
        let id = rig
            .submit(Download::new(server.url("/slow/10000000")).to(format!("t{i}")))
            .await;
        rig.events
            .until_kind(id, |k| matches!(k, EventKind::Began { .. }))
            .await;
        assert_eq!(rig.engine.send(Cancel(id)).await.unwrap(), Ok(()));
        let set = SetRate {
            id,
            bytes_per_sec: Some(1000),
        };
        let set = rig.engine.send(set).await.unwrap();
        let status = rig.engine.send(Status(id)).await.unwrap().unwrap().state;
        let active = rig
            .engine
            .send(List::in_state(TransferState::Active))
            .await
            .unwrap();
        let listed = active.iter().any(|s| s.id == id);
        let waited = rig.wait(id).await;
        if set != Err(ControlError::NotActive(EndState::Cancelled))
            || status != TransferState::Cancelled
            || listed
            || !matches!(waited, Outcome::Cancelled { .. })
        {
            wrong.push(format!(
                "try {i}: SetRate {set:?}, Status {status:?}, listed active {listed}, Wait {waited:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {TRIES} tries contradicted the cancel:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
