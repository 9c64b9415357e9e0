//! The journal (feature `journal`): transfers survive a restart of the engine.

#![cfg(feature = "journal")]

use std::time::Duration;

use actix_transfer::{Download, Engine, EventKind, Outcome, Shutdown, StartError, TransferState};

use crate::ranged::{self, Act};
use crate::support::{self, Events, LIMIT};

/// A download stopped by a shutdown resumes at the next start of an engine on the same
/// journal: it keeps its id, announces itself with `Restored` (first, its seq past every
/// earlier one), asks for the rest of the file with `Range` from the `.part`'s length and
/// `If-Range` with the recorded ETag, and completes byte-exact with one `Ended`.
#[actix_rt::test]
async fn a_download_interrupted_by_shutdown_resumes_after_a_restart() {
    let content = support::content(4 << 20, 7);
    let server = ranged::start(content.clone());
    server.script([Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(5),
    }]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let downloads = dir.path().join("dl");

    let engine = Engine::builder()
        .download_dir(&downloads)
        .journal(&journal)
        .try_start()
        .unwrap();
    let first = Events::subscribe(&engine).await;
    let id = support::submit(
        &engine,
        Download::new(format!("{}/file", server.url)).to("big.bin"),
    )
    .await
    .unwrap();
    support::poll_status(&engine, id, |s| s.bytes_transferred >= 64 << 10).await;
    actix_rt::time::timeout(LIMIT, engine.send(Shutdown))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !downloads.join("big.bin").exists(),
        "no file under its final name yet"
    );
    let part_len = std::fs::metadata(downloads.join("big.bin.part"))
        .unwrap()
        .len();
    assert!(part_len > 0 && part_len < content.len() as u64);
    let seen_before = first.of(id).iter().map(|e| e.seq).max().unwrap();

    let second = Events::default();
    let recorder = second.recorder();
    let engine = Engine::builder()
        .download_dir(&downloads)
        .journal(&journal)
        .subscriber(recorder.clone().recipient())
        .try_start()
        .unwrap();
    let outcome = support::wait(&engine, id).await;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    assert_eq!(std::fs::read(downloads.join("big.bin")).unwrap(), content);
    assert!(!downloads.join("big.bin.part").exists());

    let events = second.of(id);
    match &events[0].kind {
        EventKind::Restored {
            state,
            bytes_on_disk: _,
        } => assert_eq!(state, &TransferState::Active),
        other => panic!("the first event after the restart is {other:?}"),
    }
    assert!(events[0].seq > seen_before, "seq reused across the restart");
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    let ended = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Ended(_)))
        .count();
    assert_eq!(ended, 1);

    let seen = server.seen();
    let resumed = seen.last().unwrap();
    assert_eq!(
        resumed.range.as_deref(),
        Some(&*format!("bytes={part_len}-"))
    );
    assert_eq!(resumed.if_range.as_deref(), Some("\"v1\""));

    // Ids continue past the journal's: never reused.
    let next = support::submit(
        &engine,
        Download::new(format!("{}/file", server.url)).to("again.bin"),
    )
    .await
    .unwrap();
    assert!(next.get() > id.get());
    let _ = support::wait(&engine, next).await;
    drop(recorder);
}

/// A journal the engine cannot read stops the start with `StartError::Journal`; the file and
/// the download directory are left exactly as they were.
#[actix_rt::test]
async fn an_unreadable_journal_refuses_the_start_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("dl");
    std::fs::create_dir(&downloads).unwrap();
    std::fs::write(downloads.join("keep.bin.part"), b"partial").unwrap();
    let truncated = {
        // A real journal, cut short.
        let path = dir.path().join("real.db");
        let engine = Engine::builder()
            .download_dir(&downloads)
            .journal(&path)
            .try_start()
            .unwrap();
        engine.send(Shutdown).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        bytes[..bytes.len() / 3].to_vec()
    };
    let cases: [(&str, Vec<u8>); 2] = [
        (
            "random.db",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("truncated.db", truncated),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = Engine::builder()
            .download_dir(&downloads)
            .journal(&path)
            .try_start()
            .expect_err(name);
        assert!(matches!(err, StartError::Journal(_)), "{name}: {err:?}");
        assert!(err.to_string().contains(name), "{name}: {err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name} changed");
        let mut left: Vec<_> = std::fs::read_dir(&downloads)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["keep.bin.part"]);
        assert_eq!(
            std::fs::read(downloads.join("keep.bin.part")).unwrap(),
            b"partial"
        );
    }
}

/// Exactly one `Ended` per transfer across a graceful shutdown and a restart: a shutdown with
/// a journal ends nothing the journal keeps (a running download, a paused one, a queued one),
/// so the stopping process publishes no `Ended` for them and its `Wait`s get no outcome; the
/// next process publishes `Restored` first (seq past every earlier one), keeps the paused one
/// paused, and publishes the one `Ended` of each.
#[actix_rt::test]
async fn a_shutdown_with_a_journal_publishes_no_end_and_the_next_start_publishes_one() {
    use actix_transfer::{Pause, Resume, Wait};
    let content = support::content(1 << 20, 11);
    let server = ranged::start(content.clone());
    server.script((0..32).map(|_| Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(5),
    }));
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let downloads = dir.path().join("dl");
    let url = format!("{}/file", server.url);

    let engine = Engine::builder()
        .download_dir(&downloads)
        .journal(&journal)
        .max_active(1)
        .try_start()
        .unwrap();
    let first = Events::subscribe(&engine).await;
    // `paused`: ran, then paused (its actor holds the `.part`); `running`: mid-body at the
    // shutdown; `queued`: never started.
    let paused = support::submit(&engine, Download::new(&url).to("paused.bin"))
        .await
        .unwrap();
    support::poll_status(&engine, paused, |s| s.bytes_transferred >= 32 << 10).await;
    engine.send(Pause(paused)).await.unwrap().unwrap();
    let running = support::submit(&engine, Download::new(&url).to("running.bin"))
        .await
        .unwrap();
    let queued = support::submit(&engine, Download::new(&url).to("queued.bin"))
        .await
        .unwrap();
    support::poll_status(&engine, running, |s| s.bytes_transferred >= 32 << 10).await;
    let waiting = actix_rt::spawn(engine.send(Wait(running)));
    actix_rt::time::timeout(LIMIT, engine.send(Shutdown))
        .await
        .unwrap()
        .unwrap();
    let answer = actix_rt::time::timeout(LIMIT, waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !matches!(answer, Ok(Some(_))),
        "a Wait in the stopping process got an outcome: {answer:?}"
    );
    let ids = [paused, running, queued];
    let mut seen_before = Vec::new();
    for id in ids {
        assert_eq!(first.ended(id), [], "{id}: an Ended at the shutdown");
        seen_before.push(first.of(id).iter().map(|e| e.seq).max().unwrap());
    }

    let second = Events::default();
    let recorder = second.recorder();
    let engine = Engine::builder()
        .download_dir(&downloads)
        .journal(&journal)
        .subscriber(recorder.clone().recipient())
        .try_start()
        .unwrap();
    for (id, want) in [
        (paused, TransferState::Paused),
        (running, TransferState::Active),
        (queued, TransferState::Queued),
    ] {
        second
            .until_kind(id, |k| matches!(k, EventKind::Restored { .. }))
            .await;
        match &second.of(id)[0].kind {
            EventKind::Restored { state, .. } => assert_eq!(state, &want, "{id}"),
            other => panic!("{id}: the first event after the restart is {other:?}"),
        }
    }
    for id in [running, queued] {
        let outcome = second.until_ended(id).await;
        assert!(outcome.is_completed(), "{id}: {outcome:?}");
    }
    let status = support::poll_status(&engine, paused, |_| true).await;
    assert_eq!(
        status.state,
        TransferState::Paused,
        "the paused one stays paused"
    );
    engine.send(Resume(paused)).await.unwrap().unwrap();
    let outcome = second.until_ended(paused).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    for (id, before) in ids.into_iter().zip(seen_before) {
        let events = second.of(id);
        assert!(
            events[0].seq > before,
            "{id}: seq reused across the restart"
        );
        assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1), "{id}");
        assert_eq!(
            second.ended(id).len(),
            1,
            "{id}: one Ended over both processes"
        );
    }
    for name in ["paused.bin", "running.bin", "queued.bin"] {
        assert_eq!(
            std::fs::read(downloads.join(name)).unwrap(),
            content,
            "{name}"
        );
    }
    drop(recorder);
}
