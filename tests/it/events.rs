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

/// A subscription to one id gets that transfer's `Ended` exactly once, with its original seq,
/// whenever it arrives. The subscriptions come at varying points of their transfers' lives
/// (before they run, while they run, after the actor published the end but before its report
/// reached the Engine, or after); which points a run hits is the scheduler's.
#[actix_rt::test]
async fn a_subscription_to_one_id_gets_its_ended_once_whenever_it_arrives() {
    const N: usize = 300;
    let server = server();
    let rig = rig().await;
    let mine = Events::default();
    let recorder = mine.recorder();
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let id = rig.submit(Fetch::get(server.url("/bytes/10"))).await;
        // Each arrives at another point of its transfer's life.
        for _ in 0..i % 8 {
            actix_rt::task::yield_now().await;
        }
        let one = Subscribe::one(recorder.clone().recipient(), id).kinds(EventKinds::ENDED);
        rig.engine.send(one).await.unwrap().unwrap();
        ids.push(id);
    }
    for &id in &ids {
        assert!(rig.wait(id).await.is_completed());
    }
    // Every delivery was sent before the last wait was answered; all are handled now.
    recorder.send(Drained).await.unwrap();
    rig.recorder.send(Drained).await.unwrap();
    for &id in &ids {
        let original = rig
            .events
            .of(id)
            .into_iter()
            .find(|e| matches!(e.kind, EventKind::Ended(_)));
        assert_eq!(mine.of(id), vec![original.unwrap()], "transfer {id:?}");
    }
}

/// Many transfers ending at once on worker threads, to a subscriber of every kind: each one's
/// last event is its one `Ended` (a `Progress` once waited in a shared sender refused by the
/// full mailbox and went out after it).
#[actix_rt::test]
async fn each_transfers_ended_is_its_last_event_to_a_busy_subscriber() {
    const N: usize = 300;
    let server = server();
    let rig = rig().await;
    let fetches = (0..N).map(|_| Fetch::get(server.url("/bytes/10")));
    let done = rig.run_all(fetches).await;
    // Every event was sent before the last wait was answered; all are handled now.
    rig.recorder.send(Drained).await.unwrap();
    for (id, outcome) in done {
        assert!(outcome.is_completed(), "{outcome:?}");
        let events = rig.events.of(id);
        let ended = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Ended(_)));
        assert_eq!(ended.count(), 1, "{events:?}");
        assert!(
            matches!(events.last().map(|e| &e.kind), Some(EventKind::Ended(_))),
            "{events:?}"
        );
    }
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
        .unwrap()
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
        .unwrap()
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
        .unwrap()
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
        // The quitter may be gone already (then the subscription is refused).
        let _ = rig.engine.send(Subscribe::all(r)).await.unwrap();
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
        .unwrap()
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

/// A subscriber that stops itself when told, its `Addr` still held.
struct Stopper;
impl Actor for Stopper {
    type Context = Context<Self>;
}
impl Handler<TransferEvent> for Stopper {
    type Result = ();
    fn handle(&mut self, _: TransferEvent, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Subscribing an actor that has stopped is refused: it could never receive an event.
#[actix_rt::test]
async fn subscribing_a_stopped_recipient_is_refused() {
    let rig = rig().await;
    let stopper = Stopper.start();
    // Its first event stops it (sent directly: the test's own doing, not the engine's).
    stopper.do_send(TransferEvent {
        id: TransferId::new(1).unwrap(),
        seq: 0,
        kind: EventKind::Queued,
    });
    let deadline = std::time::Instant::now() + LIMIT;
    while stopper.connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "the actor never stopped"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let answer = rig
        .engine
        .send(Subscribe::all(stopper.clone().recipient()))
        .await
        .unwrap();
    assert_eq!(answer, Err(SubscribeError::RecipientGone));
    assert_eq!(
        answer.unwrap_err().to_string(),
        "the subscriber is gone: its actor has stopped"
    );
    let one = rig
        .engine
        .send(Subscribe::one(
            stopper.recipient(),
            TransferId::new(1).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(one, Err(SubscribeError::RecipientGone));
}

/// Counts the `Ended` events it receives into a shared counter; nobody keeps its `Addr`.
struct Counter(std::sync::Arc<std::sync::atomic::AtomicUsize>);
impl Actor for Counter {
    type Context = Context<Self>;
}
impl Handler<TransferEvent> for Counter {
    type Result = ();
    fn handle(&mut self, event: TransferEvent, _: &mut Context<Self>) {
        if matches!(event.kind, EventKind::Ended(_)) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The usual actix idiom, `Subscribe::all(Printer.start().recipient())` with the `Addr`
/// dropped at once, receives every event: the subscription holds the recipient.
#[actix_rt::test]
async fn a_subscriber_whose_addr_was_dropped_still_receives_events() {
    let server = server();
    let rig = rig().await;
    let ended = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rig.engine
        .send(Subscribe::all(Counter(ended.clone()).start().recipient()))
        .await
        .unwrap()
        .expect("a live recipient is accepted");
    let ids = [
        rig.submit(Fetch::get(server.url("/bytes/10"))).await,
        rig.submit(Fetch::get(server.url("/bytes/20"))).await,
    ];
    for id in ids {
        rig.wait(id).await;
    }
    // Both `Ended` went out before `Wait` answered; bound the wait for their handling.
    let deadline = std::time::Instant::now() + LIMIT;
    while ended.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber received {} of 2 endings",
            ended.load(std::sync::atomic::Ordering::SeqCst)
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A subscriber that stops itself is let go: the subscription does not keep it running, and
/// later events are not sent to it.
#[actix_rt::test]
async fn a_subscriber_that_stops_itself_is_let_go() {
    let server = server();
    let rig = rig().await;
    let stopper = Stopper.start();
    rig.engine
        .send(Subscribe::all(stopper.clone().recipient()))
        .await
        .unwrap()
        .unwrap();
    // Its first event (the `Queued` of this fetch) stops it.
    let id = rig.submit(Fetch::get(server.url("/bytes/10"))).await;
    rig.wait(id).await;
    let deadline = std::time::Instant::now() + LIMIT;
    while stopper.connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriber never stopped"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    // Publishing to a stopped subscriber drops it and disturbs nothing.
    let id = rig.submit(Fetch::get(server.url("/bytes/10"))).await;
    assert!(rig.wait(id).await.is_completed());
}

/// A subscription to some kinds receives those only; when no subscription wants a kind, a
/// transfer builds no event of it (not even a `seq` number is spent on it).
#[actix_rt::test]
async fn subscriptions_receive_only_the_kinds_they_ask_for() {
    let server = server();
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .workers(1)
        .download_dir(dir.path())
        .progress_interval(Duration::from_millis(1))
        .retry(RetryPolicy::never())
        .start();
    let endings = Events::default();
    let end_rec = endings.recorder();
    engine
        .send(Subscribe::all(end_rec.clone().recipient()).kinds(EventKinds::ENDED))
        .await
        .unwrap()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let d = Download::new(server.url("/bytes/300000")).to(format!("k{i}"));
        ids.push(submit(&engine, d).await.unwrap());
    }
    for &id in &ids {
        assert!(wait(&engine, id).await.is_completed());
        endings.until_ended(id).await;
    }
    let all = endings.all();
    assert_eq!(
        all.len(),
        ids.len(),
        "one Ended each, nothing else: {all:?}"
    );
    for e in &all {
        assert!(matches!(e.kind, EventKind::Ended(_)), "{e:?}");
        // Queued (numbered by the Engine) and nothing else before it: no Began, no Progress.
        assert!(e.seq < 2, "events nobody wanted were counted: {e:?}");
    }

    // Another subscriber asking for Began and Progress gets those (and no Ended).
    let moving = Events::default();
    let move_rec = moving.recorder();
    engine
        .send(
            Subscribe::all(move_rec.clone().recipient())
                .kinds(EventKinds::BEGAN | EventKinds::PROGRESS),
        )
        .await
        .unwrap()
        .unwrap();
    let id = submit(&engine, Download::new(server.url("/bytes/300000")).to("m"))
        .await
        .unwrap();
    assert!(wait(&engine, id).await.is_completed());
    endings.until_ended(id).await;
    let deadline = std::time::Instant::now() + LIMIT;
    let done = |e: &TransferEvent| matches!(e.kind, EventKind::Progress { bytes_transferred, .. } if bytes_transferred == 300000);
    while !moving.of(id).iter().any(done) {
        assert!(std::time::Instant::now() < deadline, "no final Progress");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = moving.of(id);
    assert!(matches!(seen[0].kind, EventKind::Began { .. }), "{seen:?}");
    assert!(seen[1..]
        .iter()
        .all(|e| matches!(e.kind, EventKind::Progress { .. })));
    let last = endings.of(id).pop().unwrap();
    assert!(last.seq > seen.last().unwrap().seq, "Ended is still last");
    drop((end_rec, move_rec));
}

/// Counts what a slow subscriber receives, by kind; sleeps 1 s per event (blocking its own
/// thread) while `slow` is set.
struct Sleeper {
    slow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<&'static str, u64>>>,
}
impl Actor for Sleeper {
    type Context = Context<Self>;
}
impl Handler<TransferEvent> for Sleeper {
    type Result = ();
    fn handle(&mut self, e: TransferEvent, _: &mut Context<Self>) {
        if self.slow.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(1));
        }
        let kind = match e.kind {
            EventKind::Queued => "queued",
            EventKind::Began { .. } => "began",
            EventKind::Progress { .. } => "progress",
            EventKind::Ended(_) => "ended",
            _ => "other",
        };
        *self.seen.lock().unwrap().entry(kind).or_default() += 1;
    }
}

/// A subscriber that takes 1 s per event while 10,000 fast transfers run receives every
/// `Queued`, `Began` and `Ended`, and its `Progress` events coalesce: at most a mailbox's
/// worth wait for it, plus one per event it handled meanwhile.
#[actix_rt::test]
async fn a_slow_subscriber_gets_every_ending_and_a_bounded_number_of_progress_events() {
    use std::sync::{atomic::AtomicBool, atomic::Ordering::SeqCst, Arc, Mutex};
    const N: usize = 10_000;
    let server = server();
    let engine = Engine::builder()
        .workers(0)
        .retry(RetryPolicy::never())
        .keep_ended(N) // each is waited for once all are submitted
        .start();
    let slow = Arc::new(AtomicBool::new(true));
    let seen = Arc::new(Mutex::new(std::collections::HashMap::new()));
    let arbiter = actix_rt::Arbiter::new();
    let sleeper = {
        let (slow, seen) = (Arc::clone(&slow), Arc::clone(&seen));
        Sleeper::start_in_arbiter(&arbiter.handle(), move |_| Sleeper { slow, seen })
    };
    engine
        .send(Subscribe::all(sleeper.clone().recipient()))
        .await
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    let url = server.url("/bytes/64");
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        ids.push(submit(&engine, Fetch::new("GET", &url)).await.unwrap());
    }
    for &id in &ids {
        assert!(wait(&engine, id).await.is_completed());
    }
    slow.store(false, SeqCst);
    let slow_for = started.elapsed();
    let count = |k: &str| seen.lock().unwrap().get(k).copied().unwrap_or(0);
    let deadline = std::time::Instant::now() + LIMIT;
    while count("ended") < N as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} Ended arrived",
            count("ended")
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count("queued"), N as u64);
    assert_eq!(count("began"), N as u64);
    assert_eq!(count("ended"), N as u64);
    // While slow it handled at most one event per second; each freed room for one Progress.
    let bound = 16 + slow_for.as_secs() + 2;
    assert!(
        count("progress") <= bound,
        "{} Progress events reached a subscriber that handled about {} events meanwhile",
        count("progress"),
        slow_for.as_secs()
    );
    arbiter.stop();
}
