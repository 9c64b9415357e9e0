//! `EngineHandle`: async methods, event streams, and an engine on its own thread used from a
//! plain tokio program (no actix System).

use crate::support;

use std::time::Duration;

use actix::prelude::*;
use actix_transfer::*;
use futures::StreamExt;
use support::*;

/// An engine on a fresh temp dir, behind a handle.
fn handle(dir: &tempfile::TempDir) -> EngineHandle {
    EngineHandle::new(
        Engine::builder()
            .workers(1)
            .download_dir(dir.path())
            .retry(RetryPolicy::never())
            .start(),
    )
}

/// The next event (bounded).
async fn next(stream: &mut EventStream) -> Option<TransferEvent> {
    tokio::time::timeout(LIMIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {LIMIT:?}"))
}

/// Events of `id` until its `Ended` (bounded), skipping other transfers'.
async fn until_ended(stream: &mut EventStream, id: TransferId) -> Vec<TransferEvent> {
    let mut got = Vec::new();
    while let Some(ev) = next(stream).await {
        if ev.id != id {
            continue;
        }
        let end = matches!(ev.kind, EventKind::Ended(_));
        got.push(ev);
        if end {
            return got;
        }
    }
    panic!("the stream ended before {id}'s Ended: {got:?}");
}

/// A test server on a thread of its own with its own actix System, for tests that have none;
/// stopped when the returned sender is dropped.
fn server_thread() -> (String, futures::channel::oneshot::Sender<()>) {
    let (base_tx, base_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        System::new().block_on(async move {
            let server = server();
            base_tx.send(server.base.clone()).unwrap();
            let _ = stop_rx.await;
            server.stop().await;
        })
    });
    let base = base_rx.recv_timeout(LIMIT).expect("the server started");
    (base, stop_tx)
}

#[actix_rt::test]
async fn a_handle_downloads_waits_cancels_and_answers_for_unknown_ids() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let engine = handle(&dir);

    let id = engine
        .download(Download::new(server.url("/bytes/100000")).to("a.bin"))
        .await
        .expect("accepted");
    let outcome = engine.wait(id).await.expect("known");
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        std::fs::read(dir.path().join("a.bin")).unwrap(),
        pattern(100_000)
    );
    assert_eq!(
        engine.status(id).await.map(|s| s.state),
        Ok(TransferState::Completed)
    );

    let slow = engine
        .download(Download::new(server.url("/slow/10000000")).to("slow.bin"))
        .await
        .expect("accepted");
    server.last_slow().await;
    assert_eq!(engine.cancel(slow).await, Ok(()));
    assert!(matches!(
        engine.wait(slow).await,
        Ok(Outcome::Cancelled { .. })
    ));
    assert_eq!(
        engine.cancel(slow).await,
        Err(ControlError::NotActive(EndState::Cancelled))
    );
    assert_eq!(engine.list(None).await.map(|l| l.len()), Ok(2));

    let unknown = TransferId::new(999).unwrap();
    assert_eq!(engine.wait(unknown).await, Err(ControlError::Unknown));
    assert_eq!(
        engine.status(unknown).await.err(),
        Some(ControlError::Unknown)
    );
    assert_eq!(engine.erase(unknown, false).await, Err(EraseError::Unknown));
    assert_eq!(engine.erase(id, true).await, Ok(()));
    assert!(!dir.path().join("a.bin").exists());
    server.stop().await;
}

#[actix_rt::test]
async fn a_stopped_engine_answers_stopped_through_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handle(&dir);
    engine.shutdown().await;
    let id = TransferId::new(1).unwrap();
    assert_eq!(
        engine.download(Download::new("http://127.0.0.1:9/x")).await,
        Err(TransferError::Shutdown)
    );
    assert_eq!(engine.cancel(id).await, Err(ControlError::Stopped));
    assert_eq!(engine.wait(id).await, Err(ControlError::Stopped));
    assert_eq!(engine.erase(id, false).await, Err(EraseError::Stopped));
    assert_eq!(
        engine.set_limits(SetLimits::default()).await,
        Err(ControlError::Stopped)
    );
    assert!(matches!(engine.events().await, Err(ControlError::Stopped)));
    // Shutting down a stopped engine is done at once.
    tokio::time::timeout(LIMIT, engine.shutdown())
        .await
        .expect("at once");
}

#[actix_rt::test]
async fn cancel_acts_even_when_its_future_is_dropped_unpolled() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let engine = handle(&dir);
    let id = engine
        .download(Download::new(server.url("/slow/10000000")).to("slow.bin"))
        .await
        .unwrap();
    server.last_slow().await;
    drop(engine.cancel(id));
    assert!(matches!(
        tokio::time::timeout(LIMIT, engine.wait(id)).await,
        Ok(Ok(Outcome::Cancelled { .. }))
    ));
    server.stop().await;
}

#[actix_rt::test]
async fn the_events_stream_sees_a_transfer_from_queued_to_ended() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let engine = handle(&dir);
    let mut events = engine.events().await.expect("the engine runs");
    let id = engine
        .download(Download::new(server.url("/bytes/300000")).to("b.bin"))
        .await
        .unwrap();
    let got = until_ended(&mut events, id).await;
    assert_eq!(got[0].kind, EventKind::Queued, "{got:?}");
    assert!(
        matches!(
            got[1].kind,
            EventKind::Began {
                status: Some(200),
                ..
            }
        ),
        "{got:?}"
    );
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "in order, nothing dropped: {got:?}");
    }
    assert!(matches!(&got.last().unwrap().kind, EventKind::Ended(o) if o.is_completed()));
    server.stop().await;
}

#[actix_rt::test]
async fn events_of_sees_only_its_transfer_and_ends_after_its_ended() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let engine = handle(&dir);
    let slow = engine
        .download(Download::new(server.url("/slow/10000000")).to("slow.bin"))
        .await
        .unwrap();
    let mine = engine
        .download(Download::new(server.url("/slow/40000")).to("mine.bin"))
        .await
        .unwrap();
    let mut stream = engine.events_of(mine).await.expect("known");
    let mut got = Vec::new();
    while let Some(ev) = next(&mut stream).await {
        got.push(ev);
    }
    assert!(got.iter().all(|e| e.id == mine), "{got:?}");
    assert!(
        matches!(&got.last().map(|e| &e.kind), Some(EventKind::Ended(o)) if o.is_completed()),
        "{got:?}"
    );
    // After the end, a stream of it still gets its `Ended`, and then ends.
    let mut late = engine.events_of(mine).await.expect("remembered");
    assert!(matches!(
        next(&mut late).await.map(|e| e.kind),
        Some(EventKind::Ended(_))
    ));
    assert_eq!(next(&mut late).await, None);
    assert!(matches!(
        engine.events_of(TransferId::new(999).unwrap()).await,
        Err(ControlError::Unknown)
    ));
    engine.cancel(slow).await.unwrap();
    server.stop().await;
}

#[actix_rt::test]
async fn dropping_a_stream_ends_its_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let engine = handle(&dir);
    let stream = engine.events().await.unwrap();
    let sub = stream.subscription();
    drop(stream);
    // Sent after the drop: the subscription is already gone.
    assert!(!engine.addr().send(Unsubscribe(sub)).await.unwrap());
}

#[actix_rt::test]
async fn a_stream_read_late_drops_progress_but_no_other_event() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let engine = EngineHandle::new(
        Engine::builder()
            .workers(1)
            .download_dir(dir.path())
            // A Progress event for every chunk: 16 MiB in chunks of at most 32 KiB is at least
            // 512 of them, more than the stream holds.
            .progress_interval(Duration::ZERO)
            .retry(RetryPolicy::never())
            .start(),
    );
    let mut events = engine.events().await.unwrap();
    let id = engine
        .download(Download::new(server.url("/bytes/16777216")).to("big.bin"))
        .await
        .unwrap();
    assert!(engine.wait(id).await.unwrap().is_completed());
    // Nothing was read while it ran.
    let got = until_ended(&mut events, id).await;
    assert!(
        got.len() <= EVENT_BUFFER + 2,
        "the stream held {} events",
        got.len()
    );
    assert_eq!(got[0].kind, EventKind::Queued);
    assert!(matches!(got[1].kind, EventKind::Began { .. }));
    assert!(got[2..got.len() - 1]
        .iter()
        .all(|e| matches!(e.kind, EventKind::Progress { .. })));
    assert!(matches!(&got.last().unwrap().kind, EventKind::Ended(o) if o.is_completed()));
    server.stop().await;
}

/// The reproduction: a `#[tokio::main]` program, no actix System anywhere on its
/// threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_engine_works_from_a_plain_tokio_program() {
    assert!(System::try_current().is_none(), "no actix System here");
    let (base, stop_server) = server_thread();
    let dir = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn(
        Engine::builder()
            .workers(1)
            .download_dir(dir.path())
            .retry(RetryPolicy::never()),
    )
    .expect("started");
    let mut events = engine.events().await.unwrap();

    let id = engine
        .download(Download::new(format!("{base}/bytes/200000")).to("t.bin"))
        .await
        .unwrap();
    // The handle crosses to another tokio task (and thread).
    let other = engine.clone();
    let outcome = tokio::spawn(async move { other.wait(id).await })
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        std::fs::read(dir.path().join("t.bin")).unwrap(),
        pattern(200_000)
    );
    let got = until_ended(&mut events, id).await;
    assert_eq!(got[0].kind, EventKind::Queued);

    let slow = engine
        .download(Download::new(format!("{base}/slow/10000000")).to("s.bin"))
        .await
        .unwrap();
    let mut of_slow = engine.events_of(slow).await.unwrap();
    assert!(matches!(
        next(&mut of_slow).await.map(|e| e.kind),
        Some(EventKind::Began { .. } | EventKind::Progress { .. })
    ));
    assert_eq!(engine.cancel(slow).await, Ok(()));
    assert!(matches!(
        engine.wait(slow).await,
        Ok(Outcome::Cancelled { .. })
    ));

    engine.shutdown().await;
    // The engine stopped: the stream ends.
    while let Some(ev) = next(&mut events).await {
        assert!(ev.id == slow, "{ev:?}");
    }
    assert_eq!(engine.list(None).await, Err(ControlError::Stopped));
    drop(stop_server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_spawned_handle_shuts_the_engine_down() {
    let (base, stop_server) = server_thread();
    let dir = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn(Engine::builder().workers(1).download_dir(dir.path()))
        .expect("started");
    let mut events = engine.events().await.unwrap();
    let id = engine
        .download(Download::new(format!("{base}/slow/10000000")).to("s.bin"))
        .await
        .unwrap();
    let clone = engine.clone();
    drop(engine);
    // A clone still owns it.
    assert!(clone.status(id).await.is_ok());
    drop(clone);
    let mut ended = None;
    while let Some(ev) = next(&mut events).await {
        if let EventKind::Ended(outcome) = ev.kind {
            ended = Some(outcome);
        }
    }
    assert!(
        matches!(
            &ended,
            Some(Outcome::Failed {
                error: TransferError::Shutdown,
                ..
            })
        ),
        "{ended:?}"
    );
    drop(stop_server);
}

#[test]
fn spawn_refuses_what_try_start_refuses() {
    let err = EngineHandle::spawn(Engine::builder().user_agent("a\nb")).unwrap_err();
    assert!(
        matches!(
            err,
            StartError::InvalidOption {
                option: "user_agent",
                ..
            }
        ),
        "{err}"
    );
}
