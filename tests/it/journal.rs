//! The journal (feature `journal`): transfers survive a restart of the engine.

#![cfg(feature = "journal")]

use std::time::Duration;

use actix_transfer::{
    Download, Engine, EngineStatus, Erase, EraseError, ErrorKind, EventKind, JournalState, List,
    Outcome, Output, Shutdown, StartError, Status, TransferError, TransferId, TransferState,
    TransferStatus, Wait,
};

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
    // A real journal, written and closed by an engine.
    let real = |name: &str| {
        let path = dir.path().join(name);
        let downloads = downloads.clone();
        async move {
            let engine = Engine::builder()
                .download_dir(&downloads)
                .journal(&path)
                .try_start()
                .unwrap();
            engine.send(Shutdown).await.unwrap();
            path
        }
    };
    // Cut short.
    let truncated = {
        let bytes = std::fs::read(real("real.db").await).unwrap();
        bytes[..bytes.len() / 3].to_vec()
    };
    // Its schema from a later version of the crate.
    let newer = {
        let path = real("real-newer.db").await;
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        std::fs::read(&path).unwrap()
    };
    let cases: [(&str, Vec<u8>); 3] = [
        ("newer.db", newer),
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

/// An engine on `journal`, downloading into `downloads`.
fn journaled(
    downloads: &std::path::Path,
    journal: &std::path::Path,
) -> actix_transfer::EngineBuilder {
    Engine::builder()
        .download_dir(downloads)
        .journal(journal)
        .retry(actix_transfer::RetryPolicy::never())
}

/// Shut `engine` down (bounded): its journal is closed and unlocked when this returns.
async fn stop(engine: &actix::Addr<Engine>) {
    actix_rt::time::timeout(LIMIT, engine.send(Shutdown))
        .await
        .expect("the engine stopped in time")
        .unwrap();
}

/// The rows of the journal file, `(id, state)` by id, read by a read-only connection of its
/// own.
fn rows(journal: &std::path::Path) -> Vec<(u64, String)> {
    let conn = rusqlite::Connection::open_with_flags(
        journal,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let mut st = conn
        .prepare("SELECT id, state FROM transfers ORDER BY id")
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

async fn status(engine: &actix::Addr<Engine>, id: TransferId) -> Option<TransferStatus> {
    actix_rt::time::timeout(LIMIT, engine.send(Status(id)))
        .await
        .unwrap()
        .unwrap()
}

async fn list(engine: &actix::Addr<Engine>, query: List) -> Vec<TransferId> {
    actix_rt::time::timeout(LIMIT, engine.send(query))
        .await
        .unwrap()
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect()
}

/// After a restart, `Status`, `List` and `Wait` answer for the transfers that ended in the
/// previous run, from the journal: a completed download with its file, a failed one with its
/// error's kind and message.
#[actix_rt::test]
async fn after_a_restart_status_list_and_wait_answer_for_transfers_of_the_previous_run() {
    let server = support::server();
    let dir = tempfile::tempdir().unwrap();
    let (downloads, journal) = (dir.path().join("dl"), dir.path().join("journal.db"));
    let engine = journaled(&downloads, &journal).try_start().unwrap();
    let done = support::submit(
        &engine,
        Download::new(server.url("/bytes/5000")).to("done.bin"),
    )
    .await
    .unwrap();
    let failed = support::submit(
        &engine,
        Download::new(server.url("/status/404")).to("failed.bin"),
    )
    .await
    .unwrap();
    assert!(matches!(
        support::wait(&engine, done).await,
        Outcome::Completed { .. }
    ));
    let Outcome::Failed { error, headers, .. } = support::wait(&engine, failed).await else {
        panic!("the 404 did not fail");
    };
    assert!(
        !headers.is_empty(),
        "the live outcome has the 404's headers"
    );
    let message = error.to_string();
    stop(&engine).await;

    let engine = journaled(&downloads, &journal).try_start().unwrap();
    let s = status(&engine, done)
        .await
        .expect("the completed download is remembered");
    assert_eq!(s.state, TransferState::Completed);
    assert_eq!(s.bytes_transferred, 5000);
    assert_eq!(s.url, server.url("/bytes/5000"));
    assert_eq!(s.path.as_deref(), Some(&*downloads.join("done.bin")));
    let s = status(&engine, failed)
        .await
        .expect("the failed download is remembered");
    assert_eq!(s.state, TransferState::Failed);
    let error = s.error.expect("its error");
    assert_eq!(error.kind(), ErrorKind::Server);
    assert_eq!(error.to_string(), message);

    assert_eq!(list(&engine, List::all()).await, [done, failed]);
    assert_eq!(
        list(&engine, List::in_state(TransferState::Completed)).await,
        [done]
    );
    assert_eq!(
        list(&engine, Some(TransferState::Failed).into()).await,
        [failed]
    );
    assert!(list(&engine, List::in_state(TransferState::Queued))
        .await
        .is_empty());
    assert!(list(&engine, List::all().without_history())
        .await
        .is_empty());

    match support::wait(&engine, done).await {
        Outcome::Completed { bytes, output, .. } => {
            assert_eq!(bytes, 5000);
            assert_eq!(output, Output::File(downloads.join("done.bin")));
        }
        other => panic!("{other:?}"),
    }
    match support::wait(&engine, failed).await {
        Outcome::Failed {
            error,
            status,
            headers,
            ..
        } => {
            assert_eq!(error.kind(), ErrorKind::Server);
            // The journal records the status, not the headers.
            assert_eq!(status, Some(404));
            assert!(headers.is_empty(), "{headers:?}");
        }
        other => panic!("{other:?}"),
    }
    // An id never issued stays unknown.
    let never = TransferId::new(done.get() + 100).unwrap();
    assert!(status(&engine, never).await.is_none());
    stop(&engine).await;
}

/// Within one run, a transfer whose record was evicted from memory (`keep_ended`) is still
/// answered from the journal.
#[actix_rt::test]
async fn an_evicted_record_is_answered_from_the_journal() {
    let server = support::server();
    let dir = tempfile::tempdir().unwrap();
    let (downloads, journal) = (dir.path().join("dl"), dir.path().join("journal.db"));
    let engine = journaled(&downloads, &journal)
        .keep_ended(1)
        .try_start()
        .unwrap();
    let mut ids = Vec::new();
    for name in ["a.bin", "b.bin", "c.bin"] {
        let id = support::submit(&engine, Download::new(server.url("/bytes/100")).to(name))
            .await
            .unwrap();
        assert!(matches!(
            support::wait(&engine, id).await,
            Outcome::Completed { .. }
        ));
        ids.push(id);
    }
    // Only the last one is still in memory.
    assert_eq!(list(&engine, List::all().without_history()).await, ids[2..]);
    let s = status(&engine, ids[0])
        .await
        .expect("answered from the journal");
    assert_eq!(s.state, TransferState::Completed);
    assert_eq!(s.path.as_deref(), Some(&*downloads.join("a.bin")));
    assert_eq!(list(&engine, List::all()).await, ids);
    assert!(matches!(
        support::wait(&engine, ids[1]).await,
        Outcome::Completed { bytes: 100, .. }
    ));
    stop(&engine).await;
}

/// `Erase` deletes the journal's row: of a record in memory (with its file, when asked), and
/// of a transfer only the journal remembers (its file is left: the journal cannot tell that
/// the name still leads to the file that transfer wrote). Erased, it is unknown everywhere.
#[actix_rt::test]
async fn erase_deletes_the_row_from_the_journal() {
    let server = support::server();
    let dir = tempfile::tempdir().unwrap();
    let (downloads, journal) = (dir.path().join("dl"), dir.path().join("journal.db"));
    let engine = journaled(&downloads, &journal).try_start().unwrap();
    let mut ids = Vec::new();
    for name in ["a.bin", "b.bin", "c.bin"] {
        let id = support::submit(&engine, Download::new(server.url("/bytes/100")).to(name))
            .await
            .unwrap();
        let _ = support::wait(&engine, id).await;
        ids.push(id);
    }
    let erase = |id, delete_files| engine.send(Erase { id, delete_files });
    erase(ids[0], true).await.unwrap().unwrap();
    // The row is gone once the erase is answered.
    let left: Vec<u64> = rows(&journal).iter().map(|r| r.0).collect();
    assert_eq!(left, [ids[1].get(), ids[2].get()]);
    assert!(!downloads.join("a.bin").exists());
    assert!(status(&engine, ids[0]).await.is_none());
    stop(&engine).await;

    let engine = journaled(&downloads, &journal).try_start().unwrap();
    let erase = |id, delete_files| engine.send(Erase { id, delete_files });
    erase(ids[1], true).await.unwrap().unwrap();
    assert_eq!(rows(&journal), [(ids[2].get(), "completed".to_owned())]);
    assert!(
        downloads.join("b.bin").exists(),
        "a file the engine cannot vouch for stays"
    );
    assert!(status(&engine, ids[1]).await.is_none());
    assert_eq!(list(&engine, List::all()).await, ids[2..]);
    assert!(engine.send(Wait(ids[1])).await.unwrap().is_none());
    assert_eq!(
        erase(ids[1], false).await.unwrap(),
        Err(EraseError::Unknown)
    );
    assert_eq!(
        erase(ids[0], false).await.unwrap(),
        Err(EraseError::Unknown)
    );
    stop(&engine).await;
}

/// `journal_keep` bounds the history: by count as transfers end, and by age at start.
#[actix_rt::test]
async fn the_history_is_bounded_by_count_and_by_age() {
    let server = support::server();
    let dir = tempfile::tempdir().unwrap();
    let (downloads, journal) = (dir.path().join("dl"), dir.path().join("journal.db"));
    let day = Duration::from_secs(24 * 3600);
    let engine = journaled(&downloads, &journal)
        .journal_keep(3, 90 * day)
        .try_start()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = support::submit(
            &engine,
            Download::new(server.url("/bytes/10")).to(format!("{i}.bin")),
        )
        .await
        .unwrap();
        let _ = support::wait(&engine, id).await;
        ids.push(id);
    }
    stop(&engine).await;
    // The newest three ended transfers are kept.
    let kept: Vec<u64> = rows(&journal).iter().map(|r| r.0).collect();
    assert_eq!(kept, ids[2..].iter().map(|i| i.get()).collect::<Vec<_>>());

    // Two of them ended 100 days ago: the next start deletes them.
    {
        let conn = rusqlite::Connection::open(&journal).unwrap();
        let old = actix_transfer_now_ms() - 100 * 24 * 3600 * 1000;
        let n = conn
            .execute(
                "UPDATE transfers SET ended_ms = ?1 WHERE id IN (?2, ?3)",
                rusqlite::params![old, ids[2].get() as i64, ids[3].get() as i64],
            )
            .unwrap();
        assert_eq!(n, 2);
    }
    let engine = journaled(&downloads, &journal)
        .journal_keep(3, 90 * day)
        .try_start()
        .unwrap();
    assert_eq!(rows(&journal), [(ids[4].get(), "completed".to_owned())]);
    assert!(status(&engine, ids[2]).await.is_none());
    assert!(status(&engine, ids[4]).await.is_some());
    stop(&engine).await;
}

fn actix_transfer_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `List` by a substring of the URL and by the time of submit: the records in memory and the
/// journal's history alike.
#[actix_rt::test]
async fn list_by_url_substring_and_by_time() {
    let server = support::server();
    let dir = tempfile::tempdir().unwrap();
    let (downloads, journal) = (dir.path().join("dl"), dir.path().join("journal.db"));
    let engine = journaled(&downloads, &journal).try_start().unwrap();
    let mut ids = Vec::new();
    let mut between = None;
    for (i, tag) in ["alpha", "beta", "alphabet", "gamma"].iter().enumerate() {
        if i == 2 {
            // A clear gap in time between the first two and the last two.
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            between = Some(std::time::SystemTime::now());
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        let id = support::submit(
            &engine,
            Download::new(server.url(&format!("/bytes/10?tag={tag}"))).to(format!("{tag}.bin")),
        )
        .await
        .unwrap();
        let _ = support::wait(&engine, id).await;
        ids.push(id);
    }
    let between = between.unwrap();
    let check = |engine: actix::Addr<Engine>, ids: Vec<TransferId>| async move {
        assert_eq!(
            list(&engine, List::all().url_contains("alpha")).await,
            [ids[0], ids[2]]
        );
        assert_eq!(
            list(&engine, List::all().url_contains("tag=b")).await,
            [ids[1]]
        );
        // Two characters: below what the trigram index finds, still exact.
        assert_eq!(
            list(&engine, List::all().url_contains("mm")).await,
            [ids[3]]
        );
        assert_eq!(
            list(&engine, List::all().url_contains("ALPHA")).await,
            [],
            "case-sensitive"
        );
        assert_eq!(
            list(&engine, List::all().created_since(between)).await,
            ids[2..]
        );
        assert_eq!(
            list(&engine, List::all().created_before(between)).await,
            ids[..2]
        );
        assert_eq!(
            list(
                &engine,
                List::in_state(TransferState::Completed)
                    .url_contains("alpha")
                    .created_since(between)
            )
            .await,
            [ids[2]]
        );
    };
    // In memory...
    check(engine.clone(), ids.clone()).await;
    stop(&engine).await;
    // ... and from the journal after a restart.
    let engine = journaled(&downloads, &journal).try_start().unwrap();
    assert!(list(&engine, List::all().without_history())
        .await
        .is_empty());
    check(engine.clone(), ids.clone()).await;
    stop(&engine).await;
}

/// A journal that fails while the engine runs (its file system fills up, a real 1 MiB tmpfs):
/// the submit whose row could not be written is refused with `TransferError::Journal`, and so
/// is every later one, at once; `EngineStatus` shows the journal failed; the download already
/// running goes on and completes byte-exact; every transfer answered `Ok` is in the file when
/// it is opened again.
#[actix_rt::test]
async fn a_journal_that_fails_while_running_refuses_submits_and_running_transfers_complete() {
    let plain = Engine::builder().start();
    assert_eq!(
        plain.send(EngineStatus).await.unwrap().journal,
        JournalState::Off
    );
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    let Some(_fs) = crate::file_safety::tmpfs_or_skip(&mount, "size=1m") else {
        return;
    };
    let (downloads, journal) = (dir.path().join("dl"), mount.join("journal.db"));
    let content = support::content(1 << 20, 3);
    let server = ranged::start(content.clone());
    server.script([Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(20),
    }]);
    let engine = journaled(&downloads, &journal)
        .max_active(1)
        .try_start()
        .unwrap();
    assert_eq!(
        engine.send(EngineStatus).await.unwrap().journal,
        JournalState::Ok
    );
    let running = support::submit(
        &engine,
        Download::new(format!("{}/file", server.url)).to("running.bin"),
    )
    .await
    .unwrap();
    support::poll_status(&engine, running, |s| s.bytes_transferred > 0).await;

    // Fill the file system: the journal's WAL has to grow for the next rows.
    let mut filler = std::fs::File::create(mount.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    drop(filler);
    let pad = "x".repeat(8 << 10);
    let mut accepted = vec![running];
    let mut refused = None;
    for i in 0..200 {
        let download = Download::new(format!("{}/file", server.url))
            .to(format!("queued-{i}.bin"))
            .header("x-pad", pad.clone());
        match support::submit(&engine, download).await {
            Ok(id) => accepted.push(id),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the full file system failed a journal write within 200 rows");
    assert!(matches!(refused, TransferError::Journal(_)), "{refused:?}");
    assert!(
        refused
            .to_string()
            .starts_with("the journal refused the transfer"),
        "{refused}"
    );

    let state = engine.send(EngineStatus).await.unwrap();
    match &state.journal {
        JournalState::Failed { reason } => assert!(reason.contains("full"), "{reason}"),
        other => panic!("the journal is {other:?}"),
    }
    assert_eq!(state.active, 1, "{state:?}");
    let again = support::submit(
        &engine,
        Download::new(format!("{}/file", server.url)).to("later.bin"),
    )
    .await
    .unwrap_err();
    assert!(matches!(again, TransferError::Journal(_)), "{again:?}");

    // The running download goes on and completes.
    let outcome = support::wait(&engine, running).await;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    assert_eq!(
        std::fs::read(downloads.join("running.bin")).unwrap(),
        content
    );
    stop(&engine).await;

    // With room again, every transfer answered `Ok` is in the journal.
    std::fs::remove_file(mount.join("filler")).unwrap();
    let recorded: Vec<u64> = rows(&journal).iter().map(|r| r.0).collect();
    for id in &accepted {
        assert!(recorded.contains(&id.get()), "{id} lost: {recorded:?}");
    }
    assert_eq!(recorded.len(), accepted.len(), "{recorded:?}");
}

/// An upload restored from the journal is sent again from its start when its source file is
/// unchanged (size and modification time), and fails with a clear error, without a request,
/// when the file changed while the engine was stopped.
#[actix_rt::test]
async fn a_restored_upload_is_sent_again_only_from_an_unchanged_source() {
    use crate::support::hostile::{Hostile, Step};
    use actix_transfer::Upload;
    let server = support::server();
    // Holds the engine's one slot, so that both uploads are still queued at the shutdown.
    let blocker = Hostile::always(vec![Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let (same, changed) = (dir.path().join("same.bin"), dir.path().join("changed.bin"));
    std::fs::write(&same, support::content(100_000, 3)).unwrap();
    std::fs::write(&changed, support::content(100_000, 4)).unwrap();
    let engine = journaled(dir.path(), &journal)
        .max_active(1)
        .try_start()
        .unwrap();
    support::submit(&engine, Download::new(blocker.url("/hang")).to("hang.bin"))
        .await
        .unwrap();
    let a = support::submit(&engine, Upload::new(server.url("/upload"), &same))
        .await
        .unwrap();
    let b = support::submit(&engine, Upload::new(server.url("/upload"), &changed))
        .await
        .unwrap();
    stop(&engine).await;
    std::fs::write(&changed, support::content(100_001, 4)).unwrap();

    let engine = journaled(dir.path(), &journal)
        .max_active(4)
        .try_start()
        .unwrap();
    let sent = support::wait(&engine, a).await;
    assert!(sent.is_completed(), "{sent:?}");
    assert_eq!(sent.bytes(), 100_000);
    let refused = support::wait(&engine, b).await;
    let error = refused.error().expect("the changed source fails");
    assert_eq!(error.kind(), ErrorKind::InvalidRequest, "{error}");
    assert!(
        error
            .to_string()
            .contains("changed while the engine was stopped"),
        "{error}"
    );
    assert_eq!(refused.bytes(), 0);
    stop(&engine).await;
}

/// Progress is not journaled per chunk, so after a `kill -9` a row can say 0 bytes while the
/// `.part` holds many (here: rows set back to 0 after the shutdown, as a SIGKILL leaves them).
/// At the restart, `Restored` reports the bytes actually on disk (the `.part`'s length), the
/// same figure the resume's `Range` starts from; a paused one's `Status` says it too.
#[actix_rt::test]
async fn restored_reports_the_part_length_when_the_journal_recorded_fewer_bytes() {
    let content = support::content(4 << 20, 11);
    let (active_srv, paused_srv) = (
        ranged::start(content.clone()),
        ranged::start(content.clone()),
    );
    for s in [&active_srv, &paused_srv] {
        s.script([Act::Slow {
            chunk: 16 << 10,
            every: Duration::from_millis(5),
        }]);
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let downloads = dir.path().join("dl");

    let engine = journaled(&downloads, &journal).try_start().unwrap();
    let active = support::submit(
        &engine,
        Download::new(format!("{}/file", active_srv.url)).to("active.bin"),
    )
    .await
    .unwrap();
    let paused = support::submit(
        &engine,
        Download::new(format!("{}/file", paused_srv.url)).to("paused.bin"),
    )
    .await
    .unwrap();
    for id in [active, paused] {
        support::poll_status(&engine, id, |s| s.bytes_transferred >= 64 << 10).await;
    }
    engine
        .send(actix_transfer::Pause(paused))
        .await
        .unwrap()
        .unwrap();
    support::poll_status(&engine, paused, |s| s.state == TransferState::Paused).await;
    stop(&engine).await;
    let len = |name: &str| std::fs::metadata(downloads.join(name)).unwrap().len();
    let (active_len, paused_len) = (len("active.bin.part"), len("paused.bin.part"));
    assert!(active_len > 0 && active_len < content.len() as u64);
    assert!(paused_len > 0 && paused_len < content.len() as u64);
    {
        let conn = rusqlite::Connection::open(&journal).unwrap();
        let n = conn
            .execute("UPDATE transfers SET bytes_on_disk = 0", [])
            .unwrap();
        assert_eq!(n, 2);
    }

    let second = Events::default();
    let recorder = second.recorder();
    let engine = journaled(&downloads, &journal)
        .subscriber(recorder.clone().recipient())
        .try_start()
        .unwrap();
    for id in [active, paused] {
        second
            .until_kind(id, |k| matches!(k, EventKind::Restored { .. }))
            .await;
    }
    let restored = |id| match &second.of(id)[0].kind {
        EventKind::Restored {
            state,
            bytes_on_disk,
        } => (*state, *bytes_on_disk),
        other => panic!("the first event of {id} after the restart is {other:?}"),
    };
    assert_eq!(restored(active), (TransferState::Active, active_len));
    assert_eq!(restored(paused), (TransferState::Paused, paused_len));
    let st = status(&engine, paused).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_transferred),
        (TransferState::Paused, paused_len)
    );

    let outcome = support::wait(&engine, active).await;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    assert_eq!(
        active_srv.seen().last().unwrap().range.as_deref(),
        Some(&*format!("bytes={active_len}-"))
    );
    engine
        .send(actix_transfer::Resume(paused))
        .await
        .unwrap()
        .unwrap();
    let outcome = support::wait(&engine, paused).await;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    assert_eq!(
        paused_srv.seen().last().unwrap().range.as_deref(),
        Some(&*format!("bytes={paused_len}-"))
    );
    for name in ["active.bin", "paused.bin"] {
        assert_eq!(std::fs::read(downloads.join(name)).unwrap(), content);
    }
    stop(&engine).await;
    drop(recorder);
}

/// A restored transfer keeps its own options, the timeouts and an upload's cap on its
/// response too: after the restart, a download with its own 300 ms headers timeout fails as a
/// timeout against a server that never answers (the engine's own timeout is zero, no limit),
/// and an upload capped at 3 response bytes fails when the server answers more.
#[actix_rt::test]
async fn restored_transfers_keep_their_own_timeouts_and_response_cap() {
    use crate::support::hostile::{Hostile, Step};
    use actix_transfer::Upload;
    let server = support::server();
    let blocker = Hostile::always(vec![Step::Hang]);
    let silent = Hostile::always(vec![Step::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let source = dir.path().join("source.bin");
    std::fs::write(&source, support::content(10_000, 5)).unwrap();
    // The engine itself never times out: only a transfer's own timeout can end the hang.
    let engine = |max_active| {
        journaled(dir.path(), &journal)
            .headers_timeout(Duration::ZERO)
            .idle_timeout(Duration::ZERO)
            .max_active(max_active)
            .try_start()
            .unwrap()
    };
    let first = engine(1);
    // Holds the one slot, so that both are still queued at the shutdown.
    support::submit(&first, Download::new(blocker.url("/hang")).to("hang.bin"))
        .await
        .unwrap();
    let download = support::submit(
        &first,
        Download::new(silent.url("/never"))
            .to("never.bin")
            .headers_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let upload = support::submit(
        &first,
        Upload::new(server.url("/upload"), &source).max_body(3),
    )
    .await
    .unwrap();
    stop(&first).await;

    let second = engine(4);
    let timed_out = support::wait(&second, download).await;
    let error = timed_out.error().expect("the restored download timed out");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    let capped = support::wait(&second, upload).await;
    let error = capped
        .error()
        .expect("the restored upload's answer is over its cap");
    assert_eq!(error.kind(), ErrorKind::BodyTooLarge, "{error}");
    stop(&second).await;
}

/// Fetches have no row (their bodies live in memory), yet their ids are never issued again
/// either: the journal records ids issued without a row a block at a time, before the first
/// of them is answered.
#[actix_rt::test]
async fn fetch_ids_are_never_issued_again_after_a_restart() {
    use actix_transfer::Fetch;
    let server = support::server();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let mut before = Vec::new();
    for _ in 0..2 {
        let engine = journaled(dir.path(), &journal).try_start().unwrap();
        for _ in 0..3 {
            let id = support::submit(&engine, Fetch::get(server.url("/bytes/10")))
                .await
                .unwrap();
            assert!(support::wait(&engine, id).await.is_completed());
            assert!(
                before.iter().all(|b: &TransferId| b.get() < id.get()),
                "{id} issued again, or out of order, after {before:?}"
            );
            before.push(id);
        }
        stop(&engine).await;
    }
    assert!(rows(&journal).is_empty(), "fetches have no rows");
}
