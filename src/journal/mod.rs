//! The journal: transfers recorded in an SQLite file, so that they survive restarts.
//!
//! # What is recorded
//!
//! One row per accepted [`Download`](crate::Download) and [`Upload`](crate::Upload), in the
//! `transfers` table: the id, kind, method, URL and final URL after redirects, the request
//! headers (as JSON text), the target path (an upload: its source file, with its size and
//! modification time), every option (priority, rate, expected SHA-256 and size, segments,
//! conflict and partial-file policies, retry policy, fsync), the state, the bytes on disk,
//! the validators (`ETag`, `Last-Modified` and the `Date` that makes the latter strong), the
//! expected length, the attempts, the outcome and error, and the created, started and ended
//! times (unix milliseconds). [`Fetch`](crate::Fetch)es are **not** journaled: their bodies
//! live in memory and die with the process. The `meta` table holds the high-water mark of ids
//! (`next_id`: an id is never issued twice, even after its row was erased) and engine state.
//!
//! The file is plain SQLite: `sqlite3 FILE 'SELECT id, state, url FROM transfers'` reads it,
//! also while the engine runs (WAL lets a reader in beside the writer).
//!
//! # Permissions
//!
//! The file is created with mode 0600 from its first byte, and SQLite gives its `-wal` and
//! `-shm` files the same mode: request headers may hold credentials (`Authorization`,
//! cookies). An existing file keeps the mode it has.
//!
//! # Durability
//!
//! The journal runs in WAL mode. Without `sync`, `synchronous=NORMAL`: a committed write
//! survives a crash of the process (it is in the WAL, in the page cache), not necessarily a
//! power cut or a kernel crash. With `sync`, `synchronous=FULL`: every commit is fsynced
//! before it is acknowledged, and survives those too. Either way a commit is all or nothing.
//!
//! Writes run on the journal's own thread, never on an arbiter: every write queued while the
//! previous commit ran goes into the next transaction (group commit), and each caller's
//! future resolves once its write committed.
//!
//! # Opening, and what is refused
//!
//! [`Journal::open`] creates the file if it is missing. It refuses, with a clear error and
//! without writing a byte (no `-wal` or `-shm` file appears either), a file that is not an
//! SQLite database (random bytes, a truncated file), another application's database, and a
//! journal whose schema is newer than this build knows. It checks the header itself, then
//! asks SQLite on an immutable read-only connection, and only then opens the file for
//! writing. An `flock` held while the journal is open refuses a second engine on one file.
//!
//! The schema is versioned with `PRAGMA user_version` (and marked as a transfer journal with
//! `PRAGMA application_id`); the migrations from the journal's version to this build's run
//! in order, in one transaction.
//!
//! # When the journal fails
//!
//! A write that fails for the journal's own reasons (disk full, I/O error) fails every write
//! of its transaction with that error; the journal then refuses every later write at once
//! with [`JournalError::Failed`], which carries the first error. What was committed before
//! stays. Reads go on.
//!
//! # How the engine uses this
//!
//! The record table's transitions write, and wait for the write where a guarantee needs it:
//!
//! | Transition | Write | Waits before |
//! |---|---|---|
//! | submit (`Download`, `Upload`) accepted | `Insert(row)` (state `queued`, `created_ms`); the writer commits every write waiting for it in one transaction, so a burst of submits shares a commit (group commit) | replying `Ok(id)` |
//! | submit of a fetch (no row) past the ids recorded | `Reserve(id + 1023)`: the high-water mark of ids, so no id is issued twice | replying `Ok(id)` |
//! | admitted, actor started | `Update(state: active, started_ms)` | nothing |
//! | download: `.part` created (or re-adopted) | `Update(path, part_dev, part_ino)` | writing into it |
//! | `Began` (response accepted) | `Update(final_url, path, etag, last_modified, date, expected_len)` | writing the body |
//! | retry | `Update(attempts, bytes_on_disk)`; a restart from zero also clears the validators | nothing |
//! | paused | `Update(state: paused, bytes_on_disk)` | nothing |
//! | resumed | `Update(state: active)` | nothing |
//! | ended | `Update(state, outcome, status, error, bytes_on_disk, path, ended_ms)` | publishing `Ended`, answering `Wait` |
//! | shutdown with a journal | `Update(bytes_on_disk)` for each running or paused download or upload (its state stays: left resumable; no `Ended` is published) | stopping |
//! | actor torn down (panic, arbiter stopped) | the end, as `ended` | publishing `Ended` (blocking the dying thread) |
//! | `Erase` | `Erase(id)` | replying |
//! | at start, and after each end | `Keep` ([`Keep::default`]: 10,000 ended or 90 days) | nothing |
//!
//! On start: [`Journal::open`], then [`Journal::max_id`] (ids continue past it) and
//! [`Journal::load_unfinished`] (queued, active, paused rows, by id). `Status`, `List` and
//! `Wait` for an id the records no longer hold ask [`Journal::get`] and [`Journal::list`].
//! [`Journal::failure`] is the engine state to show once writes are refused.
//!
//! A restored download whose `.part` is gone, but whose final name (or one of its `Uniquify`
//! names) holds a regular file with the recorded `part_dev`/`part_ino` (a rename keeps the
//! inode) and the recorded `expected_len`, was placed by a process that died before its end
//! was committed: it ends `Completed` (committed, then published once) without a request.

mod row;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::{
    error::Error,
    fmt,
    future::Future,
    io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{mpsc, Arc, OnceLock},
    task::{Context, Poll},
    time::Duration,
};

use futures::channel::oneshot;
use rusqlite::Connection;

use crate::event::status::TransferState;

pub(crate) use row::{ended_changes, kept_resumable, Changes, Options, Row};

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Why the journal could not be opened, or refused a write or a read.
#[derive(Debug, Clone)]
pub(crate) enum JournalError {
    /// The file could not be created, opened, locked or read.
    Io {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// Another engine (in this process or another) has the journal open.
    InUse { path: PathBuf },
    /// The file is not a transfer journal; it was left untouched.
    NotAJournal {
        path: PathBuf,
        reason: String,
        source: Option<Arc<rusqlite::Error>>,
    },
    /// The journal's schema is newer than this build knows; it was left untouched.
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// SQLite failed while doing `what`.
    Sqlite {
        what: &'static str,
        source: Arc<rusqlite::Error>,
    },
    /// The journal failed earlier (the first error) and takes no more writes.
    Failed(Arc<JournalError>),
    /// An update or erase named an id the journal does not hold.
    NoSuchTransfer(u64),
    /// An insert named an id the journal already holds.
    Duplicate(u64),
    /// A row holds a value this build cannot read.
    BadRow {
        id: u64,
        column: &'static str,
        value: String,
    },
    /// The journal's thread is gone.
    Closed,
}

impl JournalError {
    fn sqlite(what: &'static str, source: rusqlite::Error) -> Self {
        JournalError::Sqlite {
            what,
            source: Arc::new(source),
        }
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { path, source } => {
                write!(f, "cannot open the journal {}: {source}", path.display())
            }
            JournalError::InUse { path } => write!(
                f,
                "the journal {} is in use by another engine",
                path.display()
            ),
            JournalError::NotAJournal { path, reason, .. } => write!(
                f,
                "{} is not a transfer journal ({reason}); it was left untouched",
                path.display()
            ),
            JournalError::NewerSchema { path, found, known } => write!(
                f,
                "the journal {} has schema version {found}, newer than this build reads \
                 (version {known}); it was left untouched",
                path.display()
            ),
            JournalError::Sqlite { what, source } => {
                write!(f, "the journal failed while {what}: {source}")
            }
            JournalError::Failed(first) => {
                write!(
                    f,
                    "the journal failed earlier and takes no more writes: {first}"
                )
            }
            JournalError::NoSuchTransfer(id) => write!(f, "no transfer {id} in the journal"),
            JournalError::Duplicate(id) => write!(f, "transfer {id} is already in the journal"),
            JournalError::BadRow { id, column, value } => write!(
                f,
                "transfer {id} in the journal has an unreadable {column}: {value:?}"
            ),
            JournalError::Closed => f.write_str("the journal is closed"),
        }
    }
}

impl Error for JournalError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            JournalError::Io { source, .. } => Some(&**source),
            JournalError::NotAJournal {
                source: Some(source),
                ..
            }
            | JournalError::Sqlite { source, .. } => Some(&**source),
            JournalError::Failed(first) => Some(&**first),
            _ => None,
        }
    }
}

/// One write to the journal.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A new transfer.
    Insert(Box<Row>),
    /// A transition of a transfer.
    Update(u64, Box<Changes>),
    /// Forget a transfer.
    Erase(u64),
    /// Delete the oldest ended transfers past `keep`.
    Keep { keep: Keep, now_ms: i64 },
    /// Set (or with `None` clear) a `meta` entry.
    SetMeta { key: String, value: Option<String> },
    /// Ids up to this one may be issued with no row (fetches): the next start issues past it.
    Reserve(u64),
}

/// How much history the journal keeps: at most `count` ended transfers, none that ended
/// longer than `age` ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keep {
    pub(crate) count: u64,
    pub(crate) age: Duration,
}

impl Default for Keep {
    /// 10,000 ended transfers, 90 days.
    fn default() -> Self {
        Keep {
            count: 10_000,
            age: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Which rows [`Journal::list`] returns; every field set narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) state: Option<TransferState>,
    /// A substring of the URL as submitted (case-sensitive).
    pub(crate) url: Option<String>,
    /// Created at or after, unix ms.
    pub(crate) since_ms: Option<i64>,
    /// Created before, unix ms.
    pub(crate) until_ms: Option<i64>,
    /// The newest rows first (by id), instead of the oldest.
    pub(crate) newest_first: bool,
    pub(crate) limit: Option<usize>,
}

/// The answer of the journal to one call: a future (await it on an arbiter), or
/// [`Reply::wait`] (block on it: at start, and in a transfer actor torn down mid-end).
#[must_use = "a write is acknowledged only through its reply"]
#[derive(Debug)]
pub(crate) struct Reply<T> {
    now: Option<Result<T, JournalError>>,
    later: Option<oneshot::Receiver<Result<T, JournalError>>>,
}

impl<T> Unpin for Reply<T> {}

impl<T> Future for Reply<T> {
    type Output = Result<T, JournalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(now) = self.now.take() {
            return Poll::Ready(now);
        }
        let Some(later) = self.later.as_mut() else {
            return Poll::Ready(Err(JournalError::Closed));
        };
        match Pin::new(later).poll(cx) {
            Poll::Ready(answer) => {
                self.later = None;
                Poll::Ready(answer.unwrap_or(Err(JournalError::Closed)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Reply<T> {
    fn ready(answer: Result<T, JournalError>) -> Self {
        Reply {
            now: Some(answer),
            later: None,
        }
    }

    /// Blocks the calling thread until the answer arrives: for the engine's start, never on
    /// an arbiter that still runs futures (a transfer actor's `stopped` is the exception: its
    /// context runs none any more).
    pub(crate) fn wait(mut self) -> Result<T, JournalError> {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(answer) = Pin::new(&mut self).poll(&mut cx) {
                return answer;
            }
            std::thread::park();
        }
    }
}

/// An open journal: a handle to its writer thread. Cheap to share by reference; dropping the
/// last handle lets the thread commit what is queued, close the file and end.
#[derive(Debug)]
pub(crate) struct Journal {
    jobs: mpsc::Sender<writer::Job>,
    failed: Arc<OnceLock<Arc<JournalError>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    #[cfg_attr(not(test), allow(dead_code))]
    path: PathBuf,
}

impl fmt::Debug for writer::Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Job")
    }
}

impl Journal {
    /// Opens (or creates) the journal at `path`; `sync`: fsync every commit. Blocks: call it
    /// before the engine starts, or through `blocking::run`.
    pub(crate) fn open(path: &Path, sync: bool) -> Result<Journal, JournalError> {
        let lock = schema::create_and_lock(path)?;
        schema::check(path, &lock)?;
        let conn = schema::open_rw(path, sync)?;
        let (jobs, queue) = mpsc::channel();
        let failed = Arc::new(OnceLock::new());
        let thread = std::thread::Builder::new()
            .name("transfer-journal".into())
            .spawn({
                let failed = failed.clone();
                move || writer::run(conn, queue, failed, lock)
            })
            .map_err(|e| JournalError::Io {
                path: path.to_owned(),
                source: Arc::new(e),
            })?;
        Ok(Journal {
            jobs,
            failed,
            thread: Some(thread),
            path: path.to_owned(),
        })
    }

    /// The journal's file.
    #[cfg_attr(not(test), allow(dead_code))] // the tests read it
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The first error of a journal that failed and refuses writes.
    pub(crate) fn failure(&self) -> Option<Arc<JournalError>> {
        self.failed.get().cloned()
    }

    /// Records a new transfer; resolves once committed.
    pub(crate) fn insert(&self, row: Row) -> Reply<()> {
        self.write(vec![Op::Insert(Box::new(row))])
    }

    /// Records a transition of transfer `id`.
    pub(crate) fn update(&self, id: u64, changes: Changes) -> Reply<()> {
        self.write(vec![Op::Update(id, Box::new(changes))])
    }

    /// Reserves the ids up to `upto`: never issued again, though no row records them.
    pub(crate) fn reserve(&self, upto: u64) -> Reply<()> {
        self.write(vec![Op::Reserve(upto)])
    }

    /// Forgets transfer `id`.
    pub(crate) fn erase(&self, id: u64) -> Reply<()> {
        self.write(vec![Op::Erase(id)])
    }

    /// Deletes the oldest ended transfers past `keep`, as of `now_ms`.
    pub(crate) fn keep(&self, keep: Keep, now_ms: i64) -> Reply<()> {
        self.write(vec![Op::Keep { keep, now_ms }])
    }

    /// Applies `ops` together (all or none) in the next transaction; resolves once committed.
    pub(crate) fn write(&self, ops: Vec<Op>) -> Reply<()> {
        if let Some(first) = self.failed.get() {
            return Reply::ready(Err(JournalError::Failed(first.clone())));
        }
        let (reply, later) = oneshot::channel();
        match self
            .jobs
            .send(writer::Job::Write(writer::Write { ops, reply }))
        {
            Ok(()) => Reply {
                now: None,
                later: Some(later),
            },
            Err(_) => Reply::ready(Err(JournalError::Closed)),
        }
    }

    /// One transfer.
    pub(crate) fn get(&self, id: u64) -> Reply<Option<Row>> {
        self.read(move |conn| {
            let sql = format!("{} WHERE id = ?1", *row::SELECT);
            let mut statement = conn
                .prepare_cached(&sql)
                .map_err(|e| JournalError::sqlite("reading", e))?;
            let mut rows = statement
                .query([id as i64])
                .map_err(|e| JournalError::sqlite("reading", e))?;
            match rows
                .next()
                .map_err(|e| JournalError::sqlite("reading", e))?
            {
                Some(r) => Row::read(r).map(Some),
                None => Ok(None),
            }
        })
    }

    /// The transfers that have not ended (queued, active, paused), by id: what a start
    /// restores.
    pub(crate) fn load_unfinished(&self) -> Reply<Vec<Row>> {
        self.read(|conn| {
            let sql = format!(
                "{} WHERE state IN ('queued', 'active', 'paused') ORDER BY id",
                *row::SELECT
            );
            query(conn, &sql, Vec::new())
        })
    }

    /// The highest id ever recorded (0 for none), erased ones included: new ids start past it.
    pub(crate) fn max_id(&self) -> Reply<u64> {
        self.read(|conn| {
            conn.query_row(
                "SELECT max((SELECT value FROM meta WHERE key = 'next_id') - 1,
                            coalesce((SELECT max(id) FROM transfers), 0))",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| JournalError::sqlite("reading", e))
        })
    }

    /// A `meta` entry.
    pub(crate) fn meta(&self, key: &str) -> Reply<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| {
            use rusqlite::OptionalExtension;
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(|e| JournalError::sqlite("reading", e))
        })
    }

    /// The transfers `filter` selects.
    pub(crate) fn list(&self, filter: Filter) -> Reply<Vec<Row>> {
        self.read(move |conn| {
            let mut clauses = Vec::new();
            let mut values = Vec::new();
            let mut bind = |clause: &str, v: rusqlite::types::Value| {
                values.push(v);
                clauses.push(clause.replace('?', &format!("?{}", values.len())));
            };
            if let Some(state) = filter.state {
                bind("state = ?", row_text(row::state_name(state)));
            }
            if let Some(needle) = &filter.url {
                // The trigram index finds candidates for 3 characters and more (case-blind);
                // `instr` keeps the exact, case-sensitive matches.
                if needle.chars().count() >= 3 {
                    let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
                    bind(
                        "id IN (SELECT rowid FROM transfers_url WHERE transfers_url MATCH ?)",
                        row_text(&phrase),
                    );
                }
                bind("instr(url, ?) > 0", row_text(needle));
            }
            if let Some(since) = filter.since_ms {
                bind("created_ms >= ?", rusqlite::types::Value::Integer(since));
            }
            if let Some(until) = filter.until_ms {
                bind("created_ms < ?", rusqlite::types::Value::Integer(until));
            }
            let mut sql = (*row::SELECT).clone();
            if !clauses.is_empty() {
                sql.push_str(" WHERE ");
                sql.push_str(&clauses.join(" AND "));
            }
            sql.push_str(if filter.newest_first {
                " ORDER BY id DESC"
            } else {
                " ORDER BY id"
            });
            if let Some(limit) = filter.limit {
                sql.push_str(&format!(
                    " LIMIT {}",
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ));
            }
            query(conn, &sql, values)
        })
    }

    /// Runs `f` on the connection after every write queued before it committed.
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    ) -> Reply<T> {
        let (reply, later) = oneshot::channel();
        let job = writer::Job::Read(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        }));
        match self.jobs.send(job) {
            Ok(()) => Reply {
                now: None,
                later: Some(later),
            },
            Err(_) => Reply::ready(Err(JournalError::Closed)),
        }
    }

    /// Commits what is queued, closes the file and waits for the thread to end (blocks).
    pub(crate) fn close(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

fn row_text(s: &str) -> rusqlite::types::Value {
    rusqlite::types::Value::Text(s.to_owned())
}

fn query(
    conn: &Connection,
    sql: &str,
    values: Vec<rusqlite::types::Value>,
) -> Result<Vec<Row>, JournalError> {
    let sqlite = |e| JournalError::sqlite("reading", e);
    let mut statement = conn.prepare_cached(sql).map_err(sqlite)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(values))
        .map_err(sqlite)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sqlite)? {
        out.push(Row::read(r)?);
    }
    Ok(out)
}
