//! Events: order, seq numbers, exactly one Ended, throttling, unknown sizes, subscriptions.

use crate::support;

use std::time::Duration;

use actix::prelude::*;
use actix_transfer::*;
use support::*;

fn check_stream(events: &[TransferEvent]) {
    assert!(!events.is_empty());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.seq, i as u64,
            "seq counts from 0 without gaps: {events:?}"
        );
    }
    assert_eq!(events[0].kind, EventKind::Queued);
    let ended = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Ended(_)))
        .count();
    assert_eq!(ended, 1, "exactly one Ended");
    assert!(
        matches!(events.last().unwrap().kind, EventKind::Ended(_)),
        "Ended is last"
    );
}

#[actix_rt::test]
async fn events_come_in_order_with_gapless_seq_and_one_ended() {
    let server = server();
    let rig = rig().await;
    let id = rig
        .submit(Download::new(server.url("/bytes/3000000")).to("x"))
        .await;
    rig.events.until_ended(id).await;
    let events = rig.events.of(id);
    check_stream(&events);
    match &events[1].kind {
        EventKind::Began {
            status,
            headers,
            bytes_estimated,
        } => {
            assert_eq!(*status, Some(200));
            assert_eq!(*bytes_estimated, Some(3_000_000));
            assert!(headers
                .iter()
                .any(|(k, v)| k == "content-length" && v == "3000000"));
        }
        other => panic!("{other:?}"),
    }
    let progress: Vec<u64> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Progress {
                bytes_transferred, ..
            } => Some(bytes_transferred),
            _ => None,
        })
        .collect();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(
        progress.last(),
        Some(&3_000_000),
        "a final Progress with the total"
    );
}

#[actix_rt::test]
async fn progress_is_throttled_but_always_ends_with_the_total() {
    let server = server();
    let rig = rig_with(|b| b.progress_interval(Duration::from_secs(3600))).await;
    let id = rig
        .submit(Download::new(server.url("/bytes/8000000")).to("x"))
        .await;
    rig.events.until_ended(id).await;
    let kinds: Vec<EventKind> = rig.events.of(id).into_iter().map(|e| e.kind).collect();
    let progress: Vec<&EventKind> = kinds
        .iter()
        .filter(|k| matches!(k, EventKind::Progress { .. }))
        .collect();
    assert_eq!(
        progress,
        vec![&EventKind::Progress {
            bytes_transferred: 8_000_000,
            bytes_estimated: Some(8_000_000)
        }],
        "one Progress (the final one) for 8 MB with an hour-long interval"
    );
}

#[actix_rt::test]
async fn unknown_sizes_are_never_invented() {
    let server = server();
    let rig = rig().await;
    let id = rig
        .submit(Download::new(server.url("/chunked/500000")).to("x"))
        .await;
    let outcome = rig.events.until_ended(id).await;
    assert_eq!(outcome.bytes(), 500_000);
    for e in rig.events.of(id) {
        match e.kind {
            EventKind::Began {
                bytes_estimated, ..
            }
            | EventKind::Progress {
                bytes_estimated, ..
            } => assert_eq!(bytes_estimated, None),
            _ => {}
        }
    }
    let status = rig.engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.bytes_estimated, None);
}

#[actix_rt::test]
async fn per_id_subscriptions_late_subscribers_and_unsubscribe() {
    let server = server();
    let rig = rig().await;
    let a = rig
        .submit(Download::new(server.url("/slow/40000")).to("a"))
        .await;
    let b = rig
        .submit(Download::new(server.url("/bytes/10")).to("b"))
        .await;

    let only_a = Events::default();
    let only_a_actor = only_a.recorder();
    rig.engine
        .send(Subscribe::one(only_a_actor.clone().recipient(), a))
        .await
        .unwrap();
    rig.wait(b).await;
    rig.wait(a).await;
    only_a.until_ended(a).await;
    assert!(only_a.all().iter().all(|e| e.id == a), "only a's events");

    // Subscribing to an ended transfer delivers its Ended, once, with its original seq.
    let late = Events::default();
    let late_actor = late.recorder();
    rig.engine
        .send(Subscribe::one(late_actor.clone().recipient(), b))
        .await
        .unwrap();
    late.until_ended(b).await;
    let original = rig.events.of(b).pop().unwrap();
    assert_eq!(late.all(), vec![original]);

    // After Unsubscribe, nothing more arrives.
    let gone = Events::default();
    let gone_actor = gone.recorder();
    let sub = rig
        .engine
        .send(Subscribe::all(gone_actor.clone().recipient()))
        .await
        .unwrap();
    assert!(rig.engine.send(Unsubscribe(sub)).await.unwrap());
    assert!(!rig.engine.send(Unsubscribe(sub)).await.unwrap());
    let c = rig
        .submit(Download::new(server.url("/bytes/10")).to("c"))
        .await;
    rig.wait(c).await;
    rig.events.until_ended(c).await;
    assert!(gone.all().is_empty());
}

/// A subscriber that panics on its first event.
struct Panicker;
impl Actor for Panicker {
    type Context = Context<Self>;
}
impl Handler<TransferEvent> for Panicker {
    type Result = ();
    fn handle(&mut self, _: TransferEvent, _: &mut Context<Self>) {
        panic!("a subscriber that panics (expected in this test)");
    }
}

/// A subscriber that stops itself at once.
struct Quitter;
impl Actor for Quitter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
impl Handler<TransferEvent> for Quitter {
    type Result = ();
    fn handle(&mut self, _: TransferEvent, _: &mut Context<Self>) {}
}

#[actix_rt::test]
async fn panicking_and_dead_subscribers_do_not_disturb_anything() {
    let server = server();
    let rig = rig().await;
    // They live on their own arbiter, so the panic does not take the test's thread down.
    let arbiter = actix_rt::Arbiter::new();
    let panicker = Panicker::start_in_arbiter(&arbiter.handle(), |_| Panicker);
    let quitter = Quitter::start_in_arbiter(&arbiter.handle(), |_| Quitter);
    for r in [panicker.clone().recipient(), quitter.clone().recipient()] {
        rig.engine.send(Subscribe::all(r)).await.unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            rig.submit(Download::new(server.url("/bytes/300000")).to(format!("f{i}")))
                .await,
        );
    }
    for id in ids {
        assert!(rig.wait(id).await.is_completed());
        rig.events.until_ended(id).await;
        check_stream(&rig.events.of(id));
    }
    arbiter.stop();
}

/// Transfers on worker threads send their events at the end of their thread's turn, and an
/// answer to an asker only after the events held back: once the reply to `Cancel` or `Pause`
/// is in hand, a message to the subscriber queues behind the event that reply is about. The
/// fetches check that the events of a turn go out at its end by themselves (nothing else
/// happens on that thread afterwards to push them out).
#[actix_rt::test]
async fn subscribers_are_sent_an_end_or_a_pause_before_anyone_hears_of_it() {
    let server = server();
    let rig = rig().await;
    let last = |id| rig.events.kinds(id).pop();
    let began = |k: &EventKind| matches!(k, EventKind::Began { .. });

    let cancelled = rig
        .submit(Download::new(server.url("/slow/10000000")).to("c"))
        .await;
    rig.events.until_kind(cancelled, began).await;
    assert_eq!(rig.engine.send(Cancel(cancelled)).await.unwrap(), Ok(()));
    rig.recorder.send(Drained).await.unwrap();
    assert!(
        matches!(
            last(cancelled),
            Some(EventKind::Ended(Outcome::Cancelled { .. }))
        ),
        "{:?}",
        rig.events.kinds(cancelled)
    );

    let paused = rig
        .submit(Download::new(server.url("/slow/10000000")).to("p"))
        .await;
    rig.events.until_kind(paused, began).await;
    assert_eq!(rig.engine.send(Pause(paused)).await.unwrap(), Ok(()));
    rig.recorder.send(Drained).await.unwrap();
    assert!(
        matches!(last(paused), Some(EventKind::Paused { .. })),
        "{:?}",
        rig.events.kinds(paused)
    );
    assert_eq!(rig.engine.send(Cancel(paused)).await.unwrap(), Ok(()));

    for _ in 0..20 {
        let fetched = rig.submit(Fetch::get(server.url("/bytes/1000"))).await;
        assert!(rig.wait(fetched).await.is_completed());
        rig.recorder.send(Drained).await.unwrap();
        assert!(
            matches!(last(fetched), Some(EventKind::Ended(_))),
            "{:?}",
            rig.events.kinds(fetched)
        );
    }
}

/// As documented on `Subscribe`: a subscriber added while a transfer runs gets every event
/// published after it subscribed, from the middle of the stream (not `Queued`, seq above 0),
/// without a gap, up to and including the `Ended`.
#[actix_rt::test]
async fn a_subscriber_added_mid_transfer_gets_the_rest_of_the_stream() {
    let server = server();
    let rig = rig().await;
    let id = rig
        .submit(Download::new(server.url("/slow/1000000")).to("x"))
        .await;
    rig.events
        .until_kind(id, |k| matches!(k, EventKind::Progress { .. }))
        .await;

    let late = Events::default();
    let late_actor = late.recorder();
    rig.engine
        .send(Subscribe::all(late_actor.clone().recipient()))
        .await
        .unwrap();
    assert!(rig.wait(id).await.is_completed());
    late.until_ended(id).await;
    rig.events.until_ended(id).await;

    let got = late.of(id);
    let first = &got[0];
    assert_ne!(first.kind, EventKind::Queued);
    assert!(first.seq > 0, "{first:?}");
    let all = rig.events.of(id);
    check_stream(&all);
    assert_eq!(
        got,
        all[first.seq as usize..],
        "the rest of the stream, whole"
    );
    assert!(matches!(
        got.last().unwrap().kind,
        EventKind::Ended(Outcome::Completed { .. })
    ));
}

/// As documented on `Cancel`: `do_send` cancels without waiting for the reply, while a `send`
/// future dropped before the Engine handled the message cancels nothing (actix discards a
/// message whose reply nobody waits for). The Engine runs on this thread, so it cannot handle
/// the message between the `send` and the drop.
#[actix_rt::test]
async fn do_send_cancels_and_a_dropped_send_future_does_not() {
    let server = server();
    let rig = rig().await;
    let began = |k: &EventKind| matches!(k, EventKind::Began { .. });

    let fired = rig
        .submit(Download::new(server.url("/slow/10000000")).to("fired"))
        .await;
    rig.events.until_kind(fired, began).await;
    rig.engine.do_send(Cancel(fired));
    let outcome = rig.wait(fired).await;
    assert!(matches!(outcome, Outcome::Cancelled { .. }), "{outcome:?}");

    let dropped = rig
        .submit(Download::new(server.url("/slow/400000")).to("dropped"))
        .await;
    rig.events.until_kind(dropped, began).await;
    drop(rig.engine.send(Cancel(dropped)));
    // Handled right after the discarded Cancel: the transfer was running then, so its
    // completion below is the Cancel's doing (none), not a race it lost.
    let status = rig.engine.send(Status(dropped)).await.unwrap().unwrap();
    assert_eq!(status.state, TransferState::Active);
    let outcome = rig.wait(dropped).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        std::fs::read(rig.dir.path().join("dropped")).unwrap(),
        pattern(400_000)
    );
}
