//! The journal against real crashes (feature `journal`): a child process (this test binary run
//! again, in `crash_child`) runs an engine on a journal and dies by `SIGKILL`, from the test or
//! from a crash point of the hidden feature `__fault-injection`; the next process on the same
//! journal finishes what was left, each transfer exactly once.

#![cfg(feature = "journal")]

use std::{
    collections::{HashMap, HashSet},
    io::BufRead,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_transfer::{Download, Engine, EventKind, Outcome, TransferEvent, TransferId};

use crate::ranged::{self, Act};

/// The environment of the child mode (`crash_child`).
const CHILD_DIR: &str = "ACTIX_TRANSFER_TEST_CRASH_DIR";
const CHILD_JOURNAL: &str = "ACTIX_TRANSFER_TEST_CRASH_JOURNAL";
/// `name=url` pairs separated by spaces: downloads to submit (a first run only).
const CHILD_URLS: &str = "ACTIX_TRANSFER_TEST_CRASH_URLS";
/// The run's number: its `User-Agent` is `crash-run-<n>`.
const CHILD_RUN: &str = "ACTIX_TRANSFER_TEST_CRASH_RUN";
/// Arms a crash point of `__fault-injection` (read by the engine itself).
const FAULT: &str = "ACTIX_TRANSFER_FAULT";

/// How long a child may take to finish its downloads.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// What the child saw: which transfers were restored, which ended.
#[derive(Default)]
struct Seen {
    restored: Vec<TransferId>,
    ended: HashSet<TransferId>,
}

/// Prints each `Restored` and `Ended` on stdout as it arrives (a line is flushed whole).
struct Printer(Arc<Mutex<Seen>>);

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<TransferEvent> for Printer {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, _: &mut Context<Self>) {
        let mut seen = self.0.lock().unwrap();
        match &ev.kind {
            EventKind::Restored {
                state,
                bytes_on_disk,
            } => {
                seen.restored.push(ev.id);
                println!("RESTORED {} {state:?} {bytes_on_disk}", ev.id);
            }
            EventKind::Ended(outcome) => {
                seen.ended.insert(ev.id);
                match (outcome, outcome.path()) {
                    (Outcome::Completed { .. }, Some(path)) => {
                        println!("ENDED {} completed {}", ev.id, path.display())
                    }
                    _ => println!("ENDED {} other {outcome:?}", ev.id),
                }
            }
            _ => {}
        }
    }
}

/// Answered once the printer handled every event queued before it.
#[derive(Message)]
#[rtype(result = "()")]
struct Drained;

impl Handler<Drained> for Printer {
    type Result = ();
    fn handle(&mut self, _: Drained, _: &mut Context<Self>) {}
}

/// Not a test of its own: the child process of the tests below. It starts an engine on the
/// journal (printing each `Restored`), submits `CHILD_URLS` when given (printing `ID name id`),
/// prints `STARTED`, and prints `DONE` once every transfer it restored or submitted ended.
#[actix_rt::test]
#[ignore = "the child process of the journal crash tests"]
async fn crash_child() {
    let (Ok(dir), Ok(journal), Ok(run)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_JOURNAL),
        std::env::var(CHILD_RUN),
    ) else {
        return;
    };
    // The harness printed `test ... ` without a line end: ours start on lines of their own.
    println!();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let printer = Printer(Arc::clone(&seen)).start();
    let engine = Engine::builder()
        .download_dir(&dir)
        .journal(&journal)
        .max_active(8)
        // A SIGKILL keeps the page cache: syncing guards against power cuts, not this.
        .fsync(false)
        .user_agent(format!("crash-run-{run}"))
        .subscriber(printer.clone().recipient())
        .try_start()
        .expect("the journal opens");
    printer.send(Drained).await.unwrap();
    let mut ids = seen.lock().unwrap().restored.clone();
    if let Ok(urls) = std::env::var(CHILD_URLS) {
        for pair in urls.split(' ') {
            let (name, url) = pair.split_once('=').unwrap();
            let id = crate::support::submit(&engine, Download::new(url).to(name))
                .await
                .unwrap();
            println!("ID {name} {id}");
            ids.push(id);
        }
    }
    println!("STARTED");
    let start = Instant::now();
    while !ids.iter().all(|id| seen.lock().unwrap().ended.contains(id)) {
        assert!(start.elapsed() < CHILD_LIMIT, "the downloads did not end");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    println!("DONE");
}

/// A running child process and the lines it printed so far.
struct Child {
    process: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Child {
    fn spawn(
        dir: &Path,
        journal: &Path,
        run: usize,
        urls: Option<&str>,
        fault: Option<&str>,
    ) -> Child {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "journal_crash::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_JOURNAL, journal)
        .env(CHILD_RUN, run.to_string())
        .env_remove(CHILD_URLS)
        .env_remove(FAULT)
        .stdout(Stdio::piped());
        if let Some(urls) = urls {
            cmd.env(CHILD_URLS, urls);
        }
        if let Some(fault) = fault {
            cmd.env(FAULT, fault);
        }
        let mut process = cmd.spawn().unwrap();
        let stdout = process.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reader = std::thread::spawn({
            let lines = Arc::clone(&lines);
            move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line);
                }
            }
        });
        Child {
            process,
            lines,
            reader: Some(reader),
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn exited(&mut self) -> bool {
        self.process.try_wait().unwrap().is_some()
    }

    /// Kill it with `SIGKILL` and reap it.
    fn kill(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }

    /// Wait (bounded) for it to exit, running `each` every few milliseconds meanwhile; its
    /// exit status and every line it printed.
    async fn exit(mut self, mut each: impl FnMut()) -> (ExitStatus, Vec<String>) {
        let start = Instant::now();
        let status = loop {
            each();
            if let Some(status) = self.process.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > CHILD_LIMIT {
                self.kill();
                panic!("the child did not exit: {:?}", self.lines());
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        };
        self.reader.take().unwrap().join().unwrap();
        (status, self.lines())
    }
}

/// The lines of `lines` that start with `tag`, without it.
fn tagged<'a>(lines: &'a [String], tag: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(tag)?.strip_prefix(' '))
        .collect()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// One download, a crash at `fault` in the first process, then a second process on the same
/// journal: what each printed, and the server.
#[cfg(feature = "__fault-injection")]
async fn crash_at(
    fault: &str,
) -> (
    ranged::Ranged,
    Vec<u8>,
    tempfile::TempDir,
    Vec<String>,
    Vec<String>,
) {
    use std::os::unix::process::ExitStatusExt;
    let content = crate::support::content(256 << 10, 21);
    let server = ranged::start(content.clone());
    let dir = tempfile::tempdir().unwrap();
    let (downloads, journal) = (dir.path().join("dl"), dir.path().join("journal.db"));
    let urls = format!("f.bin={}/file", server.url);
    let first = Child::spawn(&downloads, &journal, 0, Some(&urls), Some(fault));
    let (status, first) = first.exit(|| {}).await;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{fault}: {first:?}");
    let second = Child::spawn(&downloads, &journal, 1, None, None);
    let (status, second) = second.exit(|| {}).await;
    assert!(status.success(), "{second:?}");
    (server, content, dir, first, second)
}

/// A crash after the completed file was moved into place and before the journal recorded the
/// end: the next start finds the file under its final name (the identity recorded for its
/// `.part`), completes it without a request, and makes no `(1)` copy; one `Ended`.
#[cfg(feature = "__fault-injection")]
#[actix_rt::test]
async fn a_crash_between_the_rename_and_the_commit_neither_downloads_again_nor_copies() {
    let (server, content, dir, first, second) = crash_at("placed").await;
    let downloads = dir.path().join("dl");
    let id = tagged(&first, "ID")[0]
        .split(' ')
        .nth(1)
        .unwrap()
        .to_owned();
    assert_eq!(tagged(&first, "ENDED"), Vec::<&str>::new(), "{first:?}");
    assert_eq!(tagged(&second, "RESTORED").len(), 1, "{second:?}");
    let ended = tagged(&second, "ENDED");
    let want = format!("{id} completed {}", downloads.join("f.bin").display());
    assert_eq!(ended.len(), 1, "{second:?}");
    assert!(
        ended[0].ends_with("f.bin") && ended[0].starts_with(&format!("{id} completed ")),
        "{ended:?}, want {want}"
    );
    assert_eq!(server.seen().len(), 1, "downloaded again");
    assert_eq!(names(&downloads), ["f.bin"]);
    assert_eq!(std::fs::read(downloads.join("f.bin")).unwrap(), content);
}

/// A crash after the `.part` was created and recorded, before anything was written into it:
/// the next start knows the `.part` and downloads into it under the same name, with no
/// orphan `.part` and no `(1)` copy.
#[cfg(feature = "__fault-injection")]
#[actix_rt::test]
async fn a_crash_right_after_the_part_was_created_leaves_no_orphan() {
    let (server, content, dir, first, second) = crash_at("part-recorded").await;
    let downloads = dir.path().join("dl");
    assert_eq!(tagged(&first, "ENDED"), Vec::<&str>::new(), "{first:?}");
    assert_eq!(tagged(&second, "RESTORED").len(), 1, "{second:?}");
    let ended = tagged(&second, "ENDED");
    assert_eq!(ended.len(), 1, "{second:?}");
    assert!(ended[0].ends_with("/f.bin"), "{ended:?}");
    assert_eq!(server.seen().len(), 1, "{:?}", server.seen());
    assert_eq!(names(&downloads), ["f.bin"]);
    assert_eq!(std::fs::read(downloads.join("f.bin")).unwrap(), content);
}

/// A crash after the `.part` was created and before the journal recorded it (nothing is
/// written into it before then, so it is empty): the next start takes that `.part` back and
/// downloads into it under the same name, with no orphan `.part` and no `(1)` copy.
#[cfg(feature = "__fault-injection")]
#[actix_rt::test]
async fn a_crash_before_the_part_was_recorded_keeps_the_name_and_leaves_no_orphan() {
    let (server, content, dir, first, second) = crash_at("part-created").await;
    let downloads = dir.path().join("dl");
    assert_eq!(tagged(&first, "ENDED"), Vec::<&str>::new(), "{first:?}");
    assert_eq!(tagged(&second, "RESTORED").len(), 1, "{second:?}");
    let ended = tagged(&second, "ENDED");
    assert_eq!(ended.len(), 1, "{second:?}");
    assert!(ended[0].ends_with("/f.bin"), "{ended:?}");
    assert_eq!(server.seen().len(), 1, "{:?}", server.seen());
    assert_eq!(names(&downloads), ["f.bin"]);
    assert_eq!(std::fs::read(downloads.join("f.bin")).unwrap(), content);
}

/// What a download's files were right after a kill.
#[derive(Debug, Clone, Copy)]
struct Snap {
    part: Option<u64>,
    placed: bool,
}

/// The crash test of the journal: 20 downloads of 5 to 50 MB, each from its own paced
/// loopback server, in a child process killed with `SIGKILL` at random moments (12 times;
/// kills of later runs may land while the engine is still starting or restoring) and
/// restarted on the same journal each time, then let finish. At the end:
/// - every transfer completed exactly once: at most one `Ended` per id over all runs, all of
///   them `Completed`, and the journal records every id completed (an `Ended` whose process
///   was killed between its commit and its subscriber's print is the only one allowed to go
///   unprinted: it was committed, never published again);
/// - byte-exact, under the name it was submitted with, nothing else in the directory;
/// - ids never changed: the ids the first run got are those restored and completed;
/// - no file ever appeared under its final name before it was whole (the directory is polled
///   while the children run);
/// - every first request of a run for a file whose `.part` held `L > 0` bytes after the kill
///   carried `Range: bytes=L-` and the `If-Range` ETag; one with no `.part` (or an empty one)
///   asked for the whole file; one already placed asked for nothing.
#[actix_rt::test]
async fn downloads_survive_repeated_sigkills_exactly_once() {
    const FILES: usize = 20;
    const KILLS: usize = 12;
    let started = Instant::now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = seed | 1;
    let mut next = move |below: u64| {
        // xorshift64
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };

    let mut files = Vec::new();
    for i in 0..FILES {
        let size = (5 << 20) + i * ((45 << 20) / (FILES - 1));
        let server = ranged::start(crate::support::content(size, i as u8));
        // Paced so that the whole run outlasts the kills (a few seconds of downloading).
        server.script((0..256).map(|_| Act::Slow {
            chunk: 64 << 10,
            every: Duration::from_millis(10),
        }));
        files.push((format!("f{i:02}.bin"), size as u64, server));
    }
    let sizes: HashMap<String, u64> = files.iter().map(|(n, s, _)| (n.clone(), *s)).collect();
    let dir = tempfile::tempdir().unwrap();
    let (downloads, journal) = (dir.path().join("dl"), dir.path().join("journal.db"));
    std::fs::create_dir(&downloads).unwrap();
    let urls = files
        .iter()
        .map(|(name, _, server)| format!("{name}={}/file", server.url))
        .collect::<Vec<_>>()
        .join(" ");

    // Every final name seen while a child runs holds the whole file.
    let watch = |downloads: &Path| {
        let Ok(entries) = std::fs::read_dir(downloads) else {
            return;
        };
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(base) = name.strip_suffix(".part") {
                assert!(sizes.contains_key(base), "an unexpected .part: {name}");
                continue;
            }
            let want = sizes
                .get(&name)
                .unwrap_or_else(|| panic!("an unexpected file: {name}"));
            let len = std::fs::metadata(downloads.join(&name)).unwrap().len();
            assert_eq!(
                len, *want,
                "{name} appeared under its final name before it was whole"
            );
        }
    };

    let mut lines: Vec<String> = Vec::new();
    let mut snaps: Vec<HashMap<String, Snap>> = Vec::new();
    let mut run = 0;
    let last = loop {
        let mut child = Child::spawn(
            &downloads,
            &journal,
            run,
            (run == 0).then_some(urls.as_str()),
            None,
        );
        if run == KILLS {
            break child;
        }
        let mut from = Instant::now();
        if run == 0 {
            // The first run is killed only once it has every id.
            while !child.lines().iter().any(|l| l == "STARTED") {
                assert!(
                    !child.exited(),
                    "the first run ended early: {:?}",
                    child.lines()
                );
                assert!(from.elapsed() < CHILD_LIMIT, "the first run never started");
                watch(&downloads);
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
            from = Instant::now();
        }
        let delay = Duration::from_millis(50 + next(850));
        while from.elapsed() < delay {
            assert!(
                !child.exited(),
                "run {run} finished every download before its kill: the pacing is too fast"
            );
            watch(&downloads);
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill();
        snaps.push(
            files
                .iter()
                .map(|(name, _, _)| {
                    let part = std::fs::metadata(downloads.join(format!("{name}.part")))
                        .ok()
                        .map(|m| m.len());
                    let placed = downloads.join(name).exists();
                    (name.clone(), Snap { part, placed })
                })
                .collect(),
        );
        let (_, printed) = child.exit(|| {}).await;
        lines.extend(printed);
        watch(&downloads);
        run += 1;
    };
    let (status, printed) = last.exit(|| watch(&downloads)).await;
    assert!(status.success(), "the last run: {printed:?}");
    assert!(printed.iter().any(|l| l == "DONE"), "{printed:?}");
    lines.extend(printed);
    assert_eq!(snaps.len(), KILLS);

    // Ids: those of the first run, and only those, are restored and ended.
    let ids: HashMap<String, String> = tagged(&lines, "ID")
        .iter()
        .map(|l| {
            let (name, id) = l.split_once(' ').unwrap();
            (id.to_owned(), name.to_owned())
        })
        .collect();
    assert_eq!(ids.len(), FILES, "{lines:?}");
    for restored in tagged(&lines, "RESTORED") {
        let id = restored.split(' ').next().unwrap();
        assert!(ids.contains_key(id), "restored an unknown id: {restored}");
    }
    let mut ended: HashMap<&str, usize> = HashMap::new();
    for line in tagged(&lines, "ENDED") {
        let (id, rest) = line.split_once(' ').unwrap();
        let name = ids
            .get(id)
            .unwrap_or_else(|| panic!("an unknown id ended: {line}"));
        let want = format!("completed {}", downloads.join(name).display());
        let real = std::fs::canonicalize(&downloads).unwrap().join(name);
        assert!(
            rest == want || rest == format!("completed {}", real.display()),
            "{line}: not completed under its own name"
        );
        *ended.entry(id).or_default() += 1;
    }
    for (id, n) in &ended {
        assert_eq!(*n, 1, "transfer {id} ended {n} times");
    }
    // The journal holds every one completed.
    let conn =
        rusqlite::Connection::open_with_flags(&journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut states = conn.prepare("SELECT id, state FROM transfers").unwrap();
    let states: HashMap<String, String> = states
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?.to_string(), r.get::<_, String>(1)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for id in ids.keys() {
        assert_eq!(
            states.get(id).map(String::as_str),
            Some("completed"),
            "{id}"
        );
    }
    let unprinted = FILES - ended.len();
    eprintln!("{unprinted} Ended committed by a process killed before it printed them");

    // Byte-exact, and nothing else left.
    let mut want: Vec<String> = sizes.keys().cloned().collect();
    want.sort();
    assert_eq!(names(&downloads), want);
    for (name, _, server) in &files {
        let bytes = std::fs::read(downloads.join(name)).unwrap();
        assert!(
            bytes == server.state.lock().unwrap().content,
            "{name} differs"
        );
    }

    // Every resumed request asked for the rest of its `.part`, pinned by the validator.
    let mut resumed = 0;
    for (name, _, server) in &files {
        let seen = server.seen();
        let run_of = |s: &ranged::Seen| -> usize {
            let ua = s.user_agent.as_deref().unwrap_or_default();
            ua.strip_prefix("crash-run-").unwrap().parse().unwrap()
        };
        for s in &seen {
            if s.range.is_some() {
                assert_eq!(s.if_range.as_deref(), Some("\"v1\""), "{name}: {s:?}");
            }
        }
        for (k, snap) in snaps.iter().enumerate() {
            let snap = snap[name];
            let later: Vec<_> = seen.iter().filter(|s| run_of(s) > k).collect();
            let Some(first) = seen.iter().find(|s| run_of(s) == k + 1) else {
                continue;
            };
            if snap.placed {
                panic!("{name}: placed before kill {k}, requested again: {later:?}");
            }
            match snap.part {
                Some(len) if len > 0 => {
                    resumed += 1;
                    assert_eq!(
                        first.range.as_deref(),
                        Some(&*format!("bytes={len}-")),
                        "{name}: the first request after kill {k} ({snap:?})"
                    );
                }
                _ => assert_eq!(first.range, None, "{name} after kill {k} ({snap:?})"),
            }
        }
    }
    assert!(
        resumed > 0,
        "no download was ever resumed: the kills came too early"
    );
    eprintln!(
        "crash test: {KILLS} kills, {resumed} resumed requests, {:?}",
        started.elapsed()
    );
}
