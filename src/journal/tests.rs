//! The journal on real SQLite files in temporary directories.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use futures::FutureExt;

use super::*;
use crate::{
    error::{EndState, ErrorKind},
    event::status::{TransferKind, TransferState},
    file::policy::{Conflict, Partial},
    retry::RetryPolicy,
};

fn journal_in(dir: &tempfile::TempDir) -> (PathBuf, Journal) {
    let path = dir.path().join("transfers.db");
    let journal = Journal::open(&path, false).expect("open");
    (path, journal)
}

fn queued(id: u64) -> Row {
    Row::new(
        id,
        TransferKind::Download,
        "GET",
        &format!("http://127.0.0.1/file-{id}.bin"),
        1_000 + id as i64,
    )
}

fn ended(id: u64, ended_ms: i64) -> Row {
    let mut row = queued(id);
    row.state = TransferState::Completed;
    row.outcome = Some(EndState::Completed);
    row.ended_ms = Some(ended_ms);
    row
}

/// A row with every column set to something other than its default.
fn full_row() -> Row {
    use std::os::unix::ffi::OsStrExt;
    Row {
        id: 42,
        kind: TransferKind::Upload,
        method: "POST".into(),
        url: "http://127.0.0.1:8080/a?b=c".into(),
        final_url: Some("http://127.0.0.1:8080/moved".into()),
        headers: vec![
            ("authorization".into(), "Bearer \"s3cret\"\n".into()),
            ("x-émoji".into(), "☃".into()),
        ],
        target: Some(PathBuf::from(std::ffi::OsStr::from_bytes(
            b"dir/not-utf8-\xff.bin",
        ))),
        path: Some(PathBuf::from("/downloads/dir/file (1).bin")),
        part_file: Some((u64::MAX, 1 << 40)),
        source_len: Some(1 << 40),
        source_mtime_ns: Some(-5),
        options: Options {
            priority: -7,
            max_rate: Some(u64::MAX),
            expect_sha256: Some("ab".repeat(32)),
            expect_size: Some(12345),
            segments: Some(16),
            conflict: Some(Conflict::Overwrite),
            on_cancel: Some(Partial::Keep),
            on_failure: Some(Partial::Delete),
            resumable_only: true,
            max_attempts: Some(9),
            retry: Some(
                RetryPolicy::default()
                    .max_attempts(3)
                    .initial_delay(Duration::from_millis(250))
                    .max_delay(Duration::from_secs(7))
                    .max_retry_after(Duration::ZERO)
                    .retry_on(&[ErrorKind::Connect, ErrorKind::TooManyRedirects]),
            ),
            fsync: Some(false),
            mirrors: vec![
                "http://127.0.0.1:8081/a".into(),
                "https://mirror.test/b?sig=x".into(),
            ],
            timeouts: crate::request::Timeouts {
                headers: Some(Duration::from_millis(2)),
                idle: Some(Duration::ZERO),
                total: Some(Duration::from_millis(u64::MAX)),
            },
            max_body: Some(u64::MAX),
        },
        state: TransferState::Failed,
        bytes_on_disk: 999,
        etag: Some("\"v1\"".into()),
        last_modified: Some("Sun, 06 Nov 1994 08:49:37 GMT".into()),
        date: Some("Mon, 07 Nov 1994 08:49:37 GMT".into()),
        expected_len: Some(5000),
        attempts: 3,
        outcome: Some(EndState::Failed),
        status: Some(503),
        error: Some((ErrorKind::Server, "server answered 503".into())),
        created_ms: 1_700_000_000_000,
        started_ms: Some(1_700_000_000_001),
        ended_ms: Some(1_700_000_000_002),
    }
}

/// Every file in `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let mtime = fs::metadata(&p).unwrap().modified().unwrap();
            (p.clone(), fs::read(&p).unwrap(), mtime)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_column_round_trips_through_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (path, journal) = journal_in(&dir);
    let row = full_row();
    journal.insert(row.clone()).wait().unwrap();
    let mut minimal = queued(7);
    minimal.kind = TransferKind::Download;
    journal.insert(minimal.clone()).wait().unwrap();
    assert_eq!(journal.get(42).wait().unwrap().as_ref(), Some(&row));
    journal.close();

    let journal = Journal::open(&path, false).unwrap();
    assert_eq!(journal.get(42).wait().unwrap(), Some(row.clone()));
    assert_eq!(journal.get(7).wait().unwrap(), Some(minimal));
    assert_eq!(journal.get(8).wait().unwrap(), None);

    // Timeouts are kept in whole milliseconds, rounded up: a positive one never reads back
    // as zero, which means no limit.
    let mut short = queued(9);
    short.options.timeouts.idle = Some(Duration::from_micros(1500));
    short.options.timeouts.headers = Some(Duration::from_nanos(1));
    journal.insert(short).wait().unwrap();
    let back = journal.get(9).wait().unwrap().unwrap().options.timeouts;
    assert_eq!(back.idle, Some(Duration::from_millis(2)));
    assert_eq!(back.headers, Some(Duration::from_millis(1)));

    // Every column a transition changes, and clearing the nullable ones.
    let changes = Changes {
        state: Some(TransferState::Active),
        final_url: Some(None),
        path: Some(Some(PathBuf::from("/d/x"))),
        part_file: Some(Some((3, 4))),
        bytes_on_disk: Some(1),
        etag: Some(None),
        last_modified: Some(Some("Tue, 08 Nov 1994 08:49:37 GMT".into())),
        date: Some(None),
        expected_len: Some(Some(2)),
        attempts: Some(4),
        outcome: Some(None),
        status: Some(Some(206)),
        error: Some(None),
        started_ms: Some(Some(5)),
        ended_ms: Some(None),
    };
    journal.update(42, changes).wait().unwrap();
    let mut want = row;
    want.state = TransferState::Active;
    want.final_url = None;
    want.path = Some(PathBuf::from("/d/x"));
    want.part_file = Some((3, 4));
    want.bytes_on_disk = 1;
    want.etag = None;
    want.last_modified = Some("Tue, 08 Nov 1994 08:49:37 GMT".into());
    want.date = None;
    want.expected_len = Some(2);
    want.attempts = 4;
    want.outcome = None;
    want.status = Some(206);
    want.error = None;
    want.started_ms = Some(5);
    want.ended_ms = None;
    assert_eq!(journal.get(42).wait().unwrap(), Some(want));
    journal.close();
}

#[test]
fn every_error_kind_and_state_name_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let (_, journal) = journal_in(&dir);
    for (i, kind) in ErrorKind::ALL.iter().copied().enumerate() {
        let mut r = queued(i as u64 + 1);
        r.state = row::STATES[i % row::STATES.len()];
        r.error = Some((kind, kind.to_string()));
        journal.insert(r.clone()).wait().unwrap();
        assert_eq!(journal.get(r.id).wait().unwrap(), Some(r));
    }
    journal.close();
}

#[test]
fn an_empty_file_is_migrated_to_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    fs::write(&path, b"").unwrap();
    let journal = Journal::open(&path, true).unwrap();
    journal.insert(queued(1)).wait().unwrap();
    journal.close();
    let conn = Connection::open(&path).unwrap();
    let pragma = |p: &str| conn.query_row(p, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(pragma("PRAGMA user_version"), schema::VERSION);
    assert_eq!(
        pragma("PRAGMA application_id"),
        i64::from(schema::APPLICATION_ID)
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(pragma("SELECT count(*) FROM transfers"), 1);
}

#[test]
fn the_journal_and_its_wal_are_created_0600() {
    let dir = tempfile::tempdir().unwrap();
    let (path, journal) = journal_in(&dir);
    journal.insert(queued(1)).wait().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let wal = schema::sibling(&path, "-wal");
    assert!(wal.exists(), "WAL mode keeps a -wal file while open");
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&schema::sibling(&path, "-shm")), 0o600);
    journal.close();
}

#[test]
fn a_second_open_of_one_journal_is_refused_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let (path, journal) = journal_in(&dir);
    let second = Journal::open(&path, false).unwrap_err();
    assert!(matches!(second, JournalError::InUse { .. }), "{second}");
    journal.close();
    Journal::open(&path, false).unwrap().close();
}

#[test]
fn a_file_that_is_not_a_readable_journal_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();

    // A real journal with rows, closed cleanly (no -wal left), then damaged in each way.
    let make = |name: &str| {
        let path = dir.path().join(name);
        let journal = Journal::open(&path, false).unwrap();
        for id in 1..=300 {
            journal.insert(full_row_with_id(id)).wait().unwrap();
        }
        journal.close();
        assert!(!schema::sibling(&path, "-wal").exists());
        path
    };
    let truncated = make("truncated.db");
    let len = fs::metadata(&truncated).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 2 + 100)
        .unwrap();
    let newer = make("newer.db");
    {
        let conn = Connection::open(&newer).unwrap();
        conn.pragma_update(None, "user_version", schema::VERSION + 1)
            .unwrap();
    }
    let random = dir.path().join("random.db");
    let mut state = 0x1234_5678_u64;
    let bytes: Vec<u8> = (0..8192)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as u8
        })
        .collect();
    fs::write(&random, &bytes).unwrap();
    let short = dir.path().join("short.db");
    fs::write(&short, b"SQLite format 3\0 and then nothing").unwrap();
    let foreign = dir.path().join("foreign.db");
    {
        let conn = Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
    }
    // Some seconds apart from now, so that a write would show in the modification times.
    std::thread::sleep(Duration::from_millis(20));

    let before = snapshot(dir.path());
    type Expected = fn(&JournalError) -> bool;
    let cases: [(&Path, Expected); 5] = [
        (&truncated, |e| {
            matches!(e, JournalError::NotAJournal { .. })
        }),
        (&newer, |e| {
            matches!(e, JournalError::NewerSchema { found, known, .. }
                if *found == schema::VERSION + 1 && *known == schema::VERSION)
        }),
        (&random, |e| matches!(e, JournalError::NotAJournal { .. })),
        (&short, |e| matches!(e, JournalError::NotAJournal { .. })),
        (&foreign, |e| matches!(e, JournalError::NotAJournal { .. })),
    ];
    for (path, expected) in cases {
        let error = Journal::open(path, false).unwrap_err();
        assert!(expected(&error), "{}: {error:?}", path.display());
        let text = error.to_string();
        assert!(text.contains(&*path.display().to_string()), "{text}");
        assert!(text.contains("untouched"), "{text}");
        assert!(
            !text.contains("SqliteFailure"),
            "a sentence, not a Debug dump: {text}"
        );
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "no byte, time or file changed"
    );
}

fn full_row_with_id(id: u64) -> Row {
    let mut row = full_row();
    row.id = id;
    row
}

#[test]
fn acknowledgements_come_after_the_commit_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (path, journal) = journal_in(&dir);
    // A second connection sees only committed rows.
    let reader =
        Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let committed = |id: u64| {
        reader
            .query_row(
                "SELECT count(*) FROM transfers WHERE id = ?1",
                [id as i64],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            == 1
    };
    let mut replies: Vec<_> = (1..=500).map(|id| journal.insert(queued(id))).collect();
    // One duplicate among them fails alone.
    replies.push(journal.insert(queued(250)));
    let replies_after: Vec<_> = (501..=600).map(|id| journal.insert(queued(id))).collect();

    let last = replies_after.into_iter().rev().collect::<Vec<_>>();
    let mut last = last.into_iter();
    let newest = last.next().unwrap();
    newest.wait().unwrap();
    assert!(committed(600));
    // Every write queued before the newest one is answered by now, each after its commit.
    for reply in last.chain(replies.into_iter().rev()) {
        let answer = reply.now_or_never().expect("answered before a later write");
        match answer {
            Ok(()) => {}
            Err(JournalError::Duplicate(250)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    for id in 1..=600 {
        assert!(committed(id), "{id}");
    }
    journal.close();
}

#[test]
fn a_batch_is_applied_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let (_, journal) = journal_in(&dir);
    let refused = journal
        .write(vec![
            Op::Insert(Box::new(queued(1))),
            Op::Update(99, Box::default()),
        ])
        .wait()
        .unwrap_err();
    assert!(
        matches!(refused, JournalError::NoSuchTransfer(99)),
        "{refused}"
    );
    assert_eq!(journal.get(1).wait().unwrap(), None);
    journal
        .write(vec![
            Op::Insert(Box::new(queued(1))),
            Op::Insert(Box::new(queued(2))),
        ])
        .wait()
        .unwrap();
    assert!(journal.get(2).wait().unwrap().is_some());
    assert!(matches!(
        journal.erase(3).wait(),
        Err(JournalError::NoSuchTransfer(3))
    ));
    journal.close();
}

#[test]
fn ids_continue_past_every_id_ever_recorded_even_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (path, journal) = journal_in(&dir);
    assert_eq!(journal.max_id().wait().unwrap(), 0);
    for id in [1, 2, 9] {
        journal.insert(queued(id)).wait().unwrap();
    }
    journal.erase(9).wait().unwrap();
    journal
        .write(vec![Op::SetMeta {
            key: "state".into(),
            value: Some("journal_failed".into()),
        }])
        .wait()
        .unwrap();
    assert_eq!(journal.get(9).wait().unwrap(), None);
    journal.close();
    let journal = Journal::open(&path, false).unwrap();
    assert_eq!(journal.max_id().wait().unwrap(), 9);
    assert_eq!(
        journal.meta("state").wait().unwrap().as_deref(),
        Some("journal_failed")
    );
    assert_eq!(journal.meta("nothing").wait().unwrap(), None);
    assert_eq!(journal.path(), path);
    journal.close();
}

#[test]
fn unfinished_transfers_load_by_id_and_ended_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_, journal) = journal_in(&dir);
    let states = [
        TransferState::Paused,
        TransferState::Completed,
        TransferState::Active,
        TransferState::Failed,
        TransferState::Queued,
        TransferState::Cancelled,
    ];
    for (i, state) in states.into_iter().enumerate() {
        let mut row = queued(i as u64 + 1);
        row.state = state;
        journal.insert(row).wait().unwrap();
    }
    let ids: Vec<_> = journal
        .load_unfinished()
        .wait()
        .unwrap()
        .iter()
        .map(|r| (r.id, r.state))
        .collect();
    assert_eq!(
        ids,
        [
            (1, TransferState::Paused),
            (3, TransferState::Active),
            (5, TransferState::Queued)
        ]
    );
    journal.close();
}

#[test]
fn retention_deletes_the_oldest_ended_rows_by_count_and_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let (_, journal) = journal_in(&dir);
    // Ended at 100, 200, ..., 1000; one unfinished row, old, is never deleted.
    let mut old_queued = queued(100);
    old_queued.created_ms = 0;
    journal.insert(old_queued).wait().unwrap();
    for id in 1..=10 {
        journal.insert(ended(id, id as i64 * 100)).wait().unwrap();
    }
    let ids = |journal: &Journal| -> Vec<u64> {
        journal
            .list(Filter::default())
            .wait()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    };
    let long = Duration::from_secs(1_000_000);
    journal
        .keep(
            Keep {
                count: 6,
                age: long,
            },
            1_000,
        )
        .wait()
        .unwrap();
    assert_eq!(ids(&journal), [5, 6, 7, 8, 9, 10, 100]);
    // By age: ended before now - age = 1_000 - 250 = 750.
    journal
        .keep(
            Keep {
                count: 100,
                age: Duration::from_millis(250),
            },
            1_000,
        )
        .wait()
        .unwrap();
    assert_eq!(ids(&journal), [8, 9, 10, 100]);
    journal
        .keep(
            Keep {
                count: 0,
                age: long,
            },
            1_000,
        )
        .wait()
        .unwrap();
    assert_eq!(ids(&journal), [100]);
    journal.close();
}

#[test]
fn list_filters_by_state_url_substring_and_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let (_, journal) = journal_in(&dir);
    let urls = [
        "http://a.example/one.iso",
        "http://b.example/TWO.iso",
        "http://a.example/two.txt",
        "http://c.example/%_\"x\"",
    ];
    for (i, url) in urls.iter().enumerate() {
        let mut row = queued(i as u64 + 1);
        row.url = (*url).into();
        row.created_ms = (i as i64 + 1) * 10;
        if i % 2 == 1 {
            row.state = TransferState::Completed;
        }
        journal.insert(row).wait().unwrap();
    }
    let ids = |filter: Filter| -> Vec<u64> {
        journal
            .list(filter)
            .wait()
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    };
    let url = |s: &str| Filter {
        url: Some(s.into()),
        ..Filter::default()
    };
    assert_eq!(ids(url("a.example")), [1, 3]);
    assert_eq!(ids(url("two")), [3], "case-sensitive");
    assert_eq!(ids(url(".iso")), [1, 2]);
    assert_eq!(ids(url("o")), [1, 2, 3], "shorter than a trigram");
    assert_eq!(ids(url("%_\"x\"")), [4], "no pattern characters");
    assert_eq!(ids(url("nowhere")), Vec::<u64>::new());
    assert_eq!(
        ids(Filter {
            state: Some(TransferState::Completed),
            ..Filter::default()
        }),
        [2, 4]
    );
    assert_eq!(
        ids(Filter {
            since_ms: Some(20),
            until_ms: Some(40),
            ..Filter::default()
        }),
        [2, 3]
    );
    assert_eq!(
        ids(Filter {
            newest_first: true,
            limit: Some(2),
            ..Filter::default()
        }),
        [4, 3]
    );
    assert_eq!(
        ids(Filter {
            state: Some(TransferState::Queued),
            url: Some("example".into()),
            since_ms: Some(15),
            ..Filter::default()
        }),
        [3]
    );
    journal.close();
}

/// Fills the database up to a page limit: SQLite then answers "database or disk is full" as
/// on a full disk, on any machine.
#[test]
fn a_full_journal_fails_its_writes_refuses_later_ones_and_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, journal) = journal_in(&dir);
    journal.insert(queued(1)).wait().unwrap();
    let pages: i64 = journal
        .read(|c| {
            c.query_row("PRAGMA page_count", [], |r| r.get(0))
                .map_err(|e| JournalError::sqlite("reading", e))
        })
        .wait()
        .unwrap();
    journal
        .read(move |c| {
            c.pragma_update(None, "max_page_count", pages + 2)
                .map_err(|e| JournalError::sqlite("writing", e))
        })
        .wait()
        .unwrap();
    assert_full_fails(&journal, 2);
    journal.close();
    let journal = Journal::open(&path, false).unwrap();
    assert!(journal.get(1).wait().unwrap().is_some());
    journal.close();
}

/// Inserts rows from `first` until the journal fails (bounded); checks the failure, the fast
/// refusals after it, and that every acknowledged row is there. Returns the last id
/// acknowledged.
fn assert_full_fails(journal: &Journal, first: u64) -> u64 {
    let mut acknowledged = first - 1;
    let mut failure = None;
    for id in first..first + 20_000 {
        match journal.insert(full_row_with_id(id)).wait() {
            Ok(()) => acknowledged = id,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("the journal filled up");
    assert!(
        matches!(
            &failure,
            JournalError::Sqlite {
                what: "writing",
                ..
            }
        ),
        "{failure:?}"
    );
    assert!(failure.to_string().contains("full"), "{failure}");
    let cause = failure.source().expect("keeps its cause");
    assert!(cause.to_string().contains("full"), "{cause}");
    let later = journal.update(1, Changes::default()).wait().unwrap_err();
    match &later {
        JournalError::Failed(first) => assert_eq!(first.to_string(), failure.to_string()),
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(journal.failure().is_some());
    // Reads go on, and every acknowledged write is there.
    for id in first..=acknowledged {
        assert!(journal.get(id).wait().unwrap().is_some(), "{id}");
    }
    acknowledged
}

/// A real full file system: a 1 MiB tmpfs (needs root to mount: without, it says so loudly, and
/// fails under `CI=true`).
#[test]
fn a_journal_on_a_full_file_system_fails_and_keeps_what_was_committed() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    fs::create_dir(&mount).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mount)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let why = "could not mount a 1 MiB tmpfs (it needs root): the journal on a really full \
                   file system was NOT tested (the max_page_count test still ran)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let path = mount.join("transfers.db");
    let journal = Journal::open(&path, true).unwrap();
    journal.insert(queued(1)).wait().unwrap();
    // Leave little room: the WAL grows into what is left.
    let filler = mount.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);
    let acknowledged = assert_full_fails(&journal, 2);
    journal.close();
    // With room again, every acknowledged row is there.
    fs::remove_file(&filler).unwrap();
    let journal = Journal::open(&path, false).unwrap();
    for id in 1..=acknowledged {
        assert!(journal.get(id).wait().unwrap().is_some(), "{id}");
    }
    journal.close();
}

/// The start of an engine: open a journal of 100,000 ended transfers and a few unfinished
/// ones, and load those. Prints the time; asserts only the result.
#[test]
fn opening_a_journal_of_100k_ended_rows_loads_the_unfinished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (path, journal) = journal_in(&dir);
    for chunk in (1..=100_000u64).collect::<Vec<_>>().chunks(5_000) {
        let ops = chunk
            .iter()
            .map(|&id| {
                let mut row = full_row_with_id(id);
                row.state = TransferState::Completed;
                Op::Insert(Box::new(row))
            })
            .collect();
        journal.write(ops).wait().unwrap();
    }
    for id in 100_001..=100_010 {
        journal.insert(queued(id)).wait().unwrap();
    }
    journal.close();
    let size = fs::metadata(&path).unwrap().len();

    let start = Instant::now();
    let journal = Journal::open(&path, false).unwrap();
    let opened = start.elapsed();
    let next = journal.max_id().wait().unwrap();
    let unfinished = journal.load_unfinished().wait().unwrap();
    let loaded = start.elapsed();
    eprintln!(
        "journal of {size} bytes: opened in {opened:?}, max id and {} unfinished loaded in {loaded:?}",
        unfinished.len()
    );
    assert_eq!(next, 100_010);
    assert_eq!(unfinished.len(), 10);
    let start = Instant::now();
    let found = journal
        .list(Filter {
            url: Some("moved".into()),
            ..Filter::default()
        })
        .wait()
        .unwrap();
    let list_time = start.elapsed();
    let start = Instant::now();
    let found_by_url = journal
        .list(Filter {
            url: Some("file-100003".into()),
            ..Filter::default()
        })
        .wait()
        .unwrap();
    eprintln!(
        "url search: no match over 100,000 rows in {list_time:?}; one match in {:?}",
        start.elapsed()
    );
    assert!(found.is_empty());
    assert_eq!(found_by_url.len(), 1);
    journal.close();
}

/// Group commit throughput, printed: `cargo test --features journal --lib journal::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, run by hand"]
fn throughput() {
    for sync in [false, true] {
        for submitters in [1usize, 64] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let journal = Arc::new(Journal::open(&path, sync).unwrap());
            let per = if sync { 4_000 } else { 20_000 } / submitters as u64;
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..submitters as u64 {
                    let journal = journal.clone();
                    s.spawn(move || {
                        for i in 0..per {
                            let mut row = full_row_with_id(t * per + i + 1);
                            row.state = TransferState::Queued;
                            journal.insert(row).wait().unwrap();
                        }
                    });
                }
            });
            let elapsed = start.elapsed();
            let n = per * submitters as u64;
            eprintln!(
                "sync={sync} submitters={submitters}: {n} inserts in {elapsed:?} = {:.0}/s",
                n as f64 / elapsed.as_secs_f64()
            );
            Arc::into_inner(journal).unwrap().close();
        }
    }
}

/// A journal written by schema version 1 (before the `.part` identity) migrates in place:
/// its rows read back, with no identity recorded.
#[test]
fn a_version_1_journal_migrates_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "application_id", schema::APPLICATION_ID)
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO transfers (id, kind, method, url, headers, priority, resumable_only,
                 state, bytes_on_disk, attempts, created_ms)
             VALUES (5, 'download', 'GET', 'http://127.0.0.1/a', '[]', 0, 0, 'active', 7, 0, 1)",
            [],
        )
        .unwrap();
    }
    let journal = Journal::open(&path, false).unwrap();
    let row = journal.get(5).wait().unwrap().unwrap();
    assert_eq!(
        (row.state, row.bytes_on_disk, row.part_file),
        (TransferState::Active, 7, None)
    );
    journal
        .update(
            5,
            Changes {
                part_file: Some(Some((1, 2))),
                ..Changes::default()
            },
        )
        .wait()
        .unwrap();
    assert_eq!(
        journal.get(5).wait().unwrap().unwrap().part_file,
        Some((1, 2))
    );
    journal.close();
}

/// A journal written before mirrors were recorded opens, migrated, and its rows read back
/// with no mirrors.
#[test]
fn a_journal_from_before_mirrors_reads_back_with_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA application_id = {}; PRAGMA user_version = 1;
             INSERT INTO transfers (id, kind, method, url, headers, priority, resumable_only,
                 state, bytes_on_disk, attempts, created_ms)
             VALUES (1, 'download', 'GET', 'http://127.0.0.1/x', '[]', 0, 0, 'queued', 0, 0, 1);",
            schema::APPLICATION_ID
        ))
        .unwrap();
    }
    let journal = Journal::open(&path, true).unwrap();
    let rows = journal.load_unfinished().wait().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].options.mirrors, Vec::<String>::new());
    journal.close();
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, schema::VERSION);
}
