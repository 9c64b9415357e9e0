//! The Engine's records and lifecycle: Wait, Status, List, ids, Shutdown, and many at once.

use crate::support;

use std::time::{Duration, Instant};

use actix_transfer::*;
use support::*;

#[actix_rt::test]
async fn wait_status_and_list() {
    let server = server();
    let rig = rig_with(|b| b.max_active(1)).await;
    let slow = rig
        .submit(Download::new(server.url("/slow/2000000")).to("s"))
        .await;
    let queued = rig.submit(Fetch::get(server.url("/bytes/10"))).await;
    assert!(queued > slow, "ids increase");
    assert_eq!(
        rig.engine
            .send(Wait(TransferId::new(777).unwrap()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        rig.engine
            .send(Status(TransferId::new(777).unwrap()))
            .await
            .unwrap(),
        None
    );

    // A Wait sent before the end resolves at the end.
    let waiting = rig.engine.send(Wait(queued));
    let start = Instant::now();
    loop {
        let s = rig.engine.send(Status(slow)).await.unwrap().unwrap();
        if s.bytes_transferred > 0 {
            assert_eq!(s.state, TransferState::Active);
            assert_eq!(s.kind, TransferKind::Download);
            assert_eq!(s.bytes_estimated, Some(2_000_000));
            assert_eq!(s.url, server.url("/slow/2000000"));
            break;
        }
        assert!(start.elapsed() < LIMIT);
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let listed = rig
        .engine
        .send(List::in_state(TransferState::Queued))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![queued]
    );
    rig.engine.send(Cancel(slow)).await.unwrap().unwrap();

    let outcome = actix_rt::time::timeout(LIMIT, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcome.body().unwrap().as_ref(), &pattern(10)[..]);
    // After the end, Wait answers at once with the same outcome.
    assert_eq!(rig.wait(queued).await, outcome);
    let all = rig.engine.send(List::all()).await.unwrap();
    assert_eq!(
        all.iter().map(|s| (s.id, s.state)).collect::<Vec<_>>(),
        vec![
            (slow, TransferState::Cancelled),
            (queued, TransferState::Completed)
        ]
    );
    assert_eq!(all[1].bytes_transferred, 10);
}

#[actix_rt::test]
async fn shutdown_ends_everything_and_keeps_active_parts() {
    let server = server();
    let rig = rig_with(|b| b.max_active(2)).await;
    let mut active = Vec::new();
    for i in 0..2 {
        active.push(
            rig.submit(Download::new(server.url("/slow/5000000")).to(format!("a{i}")))
                .await,
        );
    }
    let queued = rig
        .submit(Download::new(server.url("/bytes/10")).to("q"))
        .await;
    // Wait until both active downloads have bytes on disk (at most 500 ms in memory).
    rig.events
        .until("bytes on disk", |_| {
            (0..2).all(|i| {
                std::fs::metadata(rig.dir.path().join(format!("a{i}.part")))
                    .is_ok_and(|m| m.len() > 0)
            })
        })
        .await;

    actix_rt::time::timeout(LIMIT, rig.engine.send(Shutdown))
        .await
        .expect("shutdown finished")
        .unwrap();
    for id in active.iter().chain([&queued]) {
        let outcome = rig.events.until_ended(*id).await;
        assert_eq!(outcome.error(), Some(&TransferError::Shutdown), "{id}");
    }
    let files = rig.files();
    assert_eq!(
        files,
        vec!["a0.part", "a1.part"],
        "active .part files are kept"
    );
    // The engine is gone: later messages are not delivered.
    assert!(rig
        .engine
        .send(Download::new(server.url("/bytes/1")))
        .await
        .is_err());
}

#[actix_rt::test]
async fn a_thousand_concurrent_transfers_all_complete() {
    let server = server();
    let rig = rig_with(|b| b.max_active(1000)).await;
    let mut ids = Vec::new();
    for i in 0..1000usize {
        let n = 100 + i % 900;
        let id = if i % 2 == 0 {
            rig.submit(Download::new(server.url(&format!("/bytes/{n}"))).to(format!("d/{i}")))
                .await
        } else {
            rig.submit(Fetch::get(server.url(&format!("/bytes/{n}"))))
                .await
        };
        ids.push((id, n));
    }
    for (i, (id, n)) in ids.into_iter().enumerate() {
        let outcome = rig.wait(id).await;
        let body = match &outcome {
            Outcome::Completed {
                output: Output::File(p),
                ..
            } => std::fs::read(p).unwrap(),
            Outcome::Completed {
                output: Output::Body(b),
                ..
            } => b.to_vec(),
            other => panic!("{i}: {other:?}"),
        };
        assert_eq!(body, pattern(n), "transfer {i}");
    }
    assert_eq!(rig.files().len(), 500);
}

/// The default `keep_ended` is 1,000: the 1,001st ending forgets the first, and no other.
#[actix_rt::test]
async fn by_default_the_last_thousand_endings_are_remembered() {
    let server = server();
    let rig = rig().await;
    // The first ends alone, so it is the oldest ending; then a thousand, a hundred at a time,
    // each waited for while fewer than a thousand ended after it.
    let mut ids = Vec::new();
    for batch in 0..11 {
        let size = if batch == 0 { 1 } else { 100 };
        let fetches = (0..size).map(|_| Fetch::get(server.url("/bytes/10")));
        for (id, outcome) in rig.run_all(fetches).await {
            assert!(outcome.is_completed(), "{outcome:?}");
            ids.push(id);
        }
    }
    assert_eq!(ids.len(), 1001);
    assert_eq!(rig.engine.send(Status(ids[0])).await.unwrap(), None);
    for &id in &ids[1..] {
        let status = rig.engine.send(Status(id)).await.unwrap();
        assert_eq!(status.map(|s| s.state), Some(TransferState::Completed));
    }
    let listed = rig.engine.send(List::all()).await.unwrap();
    assert_eq!(listed.len(), 1000);
}

#[actix_rt::test]
async fn only_the_last_keep_ended_endings_are_remembered() {
    let server = server();
    let rig = rig_with(|b| b.keep_ended(3)).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let id = rig.submit(Fetch::get(server.url("/bytes/10"))).await;
        assert!(rig.wait(id).await.is_completed());
        ids.push(id);
    }
    let (forgotten, kept) = ids.split_at(2);
    for &id in forgotten {
        assert_eq!(rig.engine.send(Status(id)).await.unwrap(), None);
        assert_eq!(rig.engine.send(Wait(id)).await.unwrap(), None);
        assert_eq!(
            rig.engine.send(Cancel(id)).await.unwrap(),
            Err(ControlError::Unknown)
        );
    }
    for &id in kept {
        let status = rig.engine.send(Status(id)).await.unwrap().expect("kept");
        assert_eq!(status.state, TransferState::Completed);
        assert_eq!(
            rig.engine.send(Cancel(id)).await.unwrap(),
            Err(ControlError::NotActive(EndState::Completed))
        );
    }
    let listed = rig.engine.send(List::all()).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        kept.to_vec()
    );

    // An erased record makes room: the next ending does not evict a kept one.
    let erase = Erase {
        id: kept[0],
        delete_files: false,
    };
    rig.engine.send(erase).await.unwrap().unwrap();
    let next = rig.submit(Fetch::get(server.url("/bytes/10"))).await;
    assert!(rig.wait(next).await.is_completed());
    let listed = rig.engine.send(List::all()).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![kept[1], kept[2], next]
    );
}

#[actix_rt::test]
async fn ended_bodies_are_kept_up_to_keep_ended_bytes_but_the_newest_always() {
    let server = server();
    let rig = rig_with(|b| b.keep_ended_bytes(10_000)).await;
    let engine = rig.engine.clone();
    let known = |id| {
        let engine = engine.clone();
        async move { engine.send(Status(id)).await.unwrap().is_some() }
    };
    let fetch = |n: u32| rig.submit(Fetch::get(server.url(&format!("/bytes/{n}"))));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = fetch(4_000).await;
        assert_eq!(rig.wait(id).await.bytes(), 4_000);
        ids.push(id);
    }
    // 12,000 bytes of bodies ended: the oldest went to make room, its body with it.
    assert!(!known(ids[0]).await);
    assert_eq!(rig.engine.send(Wait(ids[0])).await.unwrap(), None);
    assert!(known(ids[1]).await && known(ids[2]).await);
    // Downloads hold no body here: they cost nothing of the budget.
    let file = rig
        .submit(Download::new(server.url("/bytes/50000")).to("f"))
        .await;
    assert!(rig.wait(file).await.is_completed());
    assert!(known(ids[1]).await && known(ids[2]).await && known(file).await);
    // One body larger than the whole budget is still kept, alone among the bodies.
    let big = fetch(20_000).await;
    let out = rig.wait(big).await;
    assert_eq!(rig.engine.send(Wait(big)).await.unwrap(), Some(out));
    assert!(!known(ids[1]).await && !known(ids[2]).await);
    assert!(
        known(file).await,
        "the download held no body and is younger than the bodies"
    );
    // Erasing gives its bytes back: two more small bodies fit beside each other.
    let erase = Erase {
        id: big,
        delete_files: false,
    };
    rig.engine.send(erase).await.unwrap().unwrap();
    let mut small = Vec::new();
    for _ in 0..2 {
        let id = fetch(4_000).await;
        assert!(rig.wait(id).await.is_completed());
        small.push(id);
    }
    assert!(known(small[0]).await && known(small[1]).await && known(file).await);
}

/// On `Ended`, resumes then erases the transfer at once and records the Engine's answers.
struct EraseOnEnd {
    engine: actix::Addr<Engine>,
    answers: std::sync::Arc<std::sync::Mutex<Vec<Result<(), EraseError>>>>,
    resumed: std::sync::Arc<std::sync::Mutex<Vec<Result<(), ControlError>>>>,
}

impl actix::Actor for EraseOnEnd {
    type Context = actix::Context<Self>;
}

impl actix::Handler<TransferEvent> for EraseOnEnd {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, ctx: &mut actix::Context<Self>) {
        if let EventKind::Ended(_) = ev.kind {
            let (engine, answers) = (self.engine.clone(), self.answers.clone());
            let resumed = self.resumed.clone();
            let erase = Erase {
                id: ev.id,
                delete_files: false,
            };
            actix::AsyncContext::spawn(
                ctx,
                actix::fut::wrap_future(async move {
                    let resume = engine
                        .send(Resume(ev.id))
                        .await
                        .expect("the engine is alive");
                    resumed.lock().unwrap().push(resume);
                    let answer = engine.send(erase).await.expect("the engine is alive");
                    answers.lock().unwrap().push(answer);
                }),
            );
        }
    }
}

#[actix_rt::test]
async fn control_messages_sent_on_the_ended_event_answer_as_ended() {
    // The `Ended` event leaves the transfer's actor before the Engine has its report: a Resume
    // sent the moment it arrives answers `NotActive`, and an Erase waits for that report
    // rather than answer `Active`.
    use actix::Actor;
    let server = server();
    let rig = rig().await;
    let answers = std::sync::Arc::default();
    let resumed = std::sync::Arc::default();
    let eraser = EraseOnEnd {
        engine: rig.engine.clone(),
        answers: std::sync::Arc::clone(&answers),
        resumed: std::sync::Arc::clone(&resumed),
    }
    .start();
    rig.engine
        .send(Subscribe::all(eraser.clone().recipient()))
        .await
        .unwrap()
        .unwrap();
    let n = 200;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(rig.submit(Fetch::get(server.url("/bytes/100"))).await);
    }
    let start = Instant::now();
    while answers.lock().unwrap().len() < n {
        assert!(start.elapsed() < LIMIT, "not every Ended was erased");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let refused: Vec<_> = answers
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.is_err())
        .cloned()
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {n} refused: {:?}",
        refused.len(),
        refused.first()
    );
    let resumed = resumed.lock().unwrap().clone();
    assert_eq!(resumed.len(), n);
    assert!(
        resumed
            .iter()
            .all(|r| *r == Err(ControlError::NotActive(EndState::Completed))),
        "{resumed:?}"
    );
    for id in ids {
        assert_eq!(rig.engine.send(Status(id)).await.unwrap(), None, "erased");
    }
}

#[actix_rt::test]
async fn try_start_refuses_a_user_agent_with_a_line_break() {
    for workers in [0, 2] {
        let refused = Engine::builder()
            .workers(workers)
            .user_agent("a\r\nX-Injected: 1")
            .try_start()
            .expect_err("a header value cannot hold a line break");
        let StartError::InvalidOption { option, reason } = &refused else {
            panic!("{refused:?}")
        };
        assert_eq!(*option, "user_agent");
        assert!(reason.contains("control character"), "{reason}");
        assert!(
            refused
                .to_string()
                .starts_with("invalid option user_agent: "),
            "{refused}"
        );
    }
    // Bytes past ASCII are fine in a header value.
    let engine = Engine::builder()
        .workers(0)
        .user_agent("agent/1.0 (tést)")
        .try_start()
        .expect("a valid user agent");
    engine.send(Shutdown).await.unwrap();
}

#[actix_rt::test]
#[should_panic(expected = "the engine cannot start: invalid option user_agent")]
async fn start_panics_with_the_reason_when_try_start_would_fail() {
    let _ = Engine::builder().workers(0).user_agent("a\nb").start();
}
