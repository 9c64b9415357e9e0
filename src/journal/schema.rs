//! Opening a journal: the checks that run before anything is written, the schema, and its
//! migrations.

use std::{
    fs::{self, File},
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use rusqlite::{Connection, OpenFlags};

use super::JournalError;

/// `PRAGMA application_id` of a transfer journal ("ATJ1"): tells it from other SQLite files.
pub(super) const APPLICATION_ID: i32 = 0x4154_4a31;

/// The schema, one migration per version: `MIGRATIONS[v]` takes a journal from version `v` to
/// `v + 1`. Applied in order, all in one transaction; never edited once released (add one).
pub(super) const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE transfers (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        method TEXT NOT NULL,
        url TEXT NOT NULL,
        final_url TEXT,
        headers TEXT NOT NULL,
        target BLOB,
        path BLOB,
        source_len INTEGER,
        source_mtime_ns INTEGER,
        priority INTEGER NOT NULL,
        max_rate INTEGER,
        expect_sha256 TEXT,
        expect_size INTEGER,
        segments INTEGER,
        conflict TEXT,
        on_cancel TEXT,
        on_failure TEXT,
        resumable_only INTEGER NOT NULL,
        max_attempts INTEGER,
        retry_max_attempts INTEGER,
        retry_initial_delay_ms INTEGER,
        retry_max_delay_ms INTEGER,
        retry_max_retry_after_ms INTEGER,
        retry_on TEXT,
        fsync INTEGER,
        state TEXT NOT NULL,
        bytes_on_disk INTEGER NOT NULL,
        etag TEXT,
        last_modified TEXT,
        date TEXT,
        expected_len INTEGER,
        attempts INTEGER NOT NULL,
        outcome TEXT,
        status INTEGER,
        error_kind TEXT,
        error_message TEXT,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        ended_ms INTEGER
    );
    CREATE INDEX transfers_by_state ON transfers (state);
    CREATE INDEX transfers_by_end ON transfers (ended_ms) WHERE ended_ms IS NOT NULL;
    CREATE INDEX transfers_by_creation ON transfers (created_ms);
    -- URL substring search: a trigram index kept by triggers (a URL never changes).
    CREATE VIRTUAL TABLE transfers_url USING fts5 (
        url, content = 'transfers', content_rowid = 'id', tokenize = 'trigram'
    );
    CREATE TRIGGER transfers_url_insert AFTER INSERT ON transfers BEGIN
        INSERT INTO transfers_url (rowid, url) VALUES (new.id, new.url);
    END;
    CREATE TRIGGER transfers_url_delete AFTER DELETE ON transfers BEGIN
        INSERT INTO transfers_url (transfers_url, rowid, url) VALUES ('delete', old.id, old.url);
    END;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('next_id', 1);",
    // v2: the identity (device, inode) of the `.part` file a download created, recorded
    // before anything is written into it: a file found under its final name after a crash
    // is known to be this download's (the rename keeps the inode).
    "ALTER TABLE transfers ADD COLUMN part_dev INTEGER;
    ALTER TABLE transfers ADD COLUMN part_ino INTEGER;",
    // A download's mirrors, as a JSON array of URLs (`[]` for the rows written before).
    "ALTER TABLE transfers ADD COLUMN mirrors TEXT NOT NULL DEFAULT '[]';",
    // v4: a transfer's own timeouts (milliseconds) and an upload's cap on its response body;
    // NULL: the engine's setting (as every row written before had it).
    "ALTER TABLE transfers ADD COLUMN headers_timeout_ms INTEGER;
    ALTER TABLE transfers ADD COLUMN idle_timeout_ms INTEGER;
    ALTER TABLE transfers ADD COLUMN total_timeout_ms INTEGER;
    ALTER TABLE transfers ADD COLUMN max_body INTEGER;",
];

/// The schema version this build writes and reads.
pub(super) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates the journal file if it does not exist (mode 0600 from its first byte: request
/// headers may hold credentials), and takes an exclusive `flock` on it, held for as long as
/// the journal is open: two engines on one journal would issue the same ids.
pub(super) fn create_and_lock(path: &Path) -> Result<File, JournalError> {
    let io_error = |source: io::Error| JournalError::Io {
        path: path.to_owned(),
        source: Arc::new(source),
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(io_error)?;
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.kind() == io::ErrorKind::WouldBlock {
                JournalError::InUse {
                    path: path.to_owned(),
                }
            } else {
                io_error(err)
            });
        }
    }
    Ok(file)
}

/// Checks, without writing anything (no `-wal` or `-shm` file either), that `path` is empty
/// or a transfer journal this build can read. Reads the header through `file`, then asks
/// SQLite on an immutable read-only connection.
pub(super) fn check(path: &Path, file: &File) -> Result<(), JournalError> {
    let not_a_journal = |reason: &str, source: Option<rusqlite::Error>| JournalError::NotAJournal {
        path: path.to_owned(),
        reason: reason.to_owned(),
        source: source.map(Arc::new),
    };
    let io_error = |source: io::Error| JournalError::Io {
        path: path.to_owned(),
        source: Arc::new(source),
    };
    let len = file.metadata().map_err(io_error)?.len();
    if len == 0 {
        return Ok(());
    }
    let mut header = [0u8; 100];
    if len < header.len() as u64 {
        return Err(not_a_journal(
            "it is too short to be an SQLite database",
            None,
        ));
    }
    read_at(file, &mut header).map_err(io_error)?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(not_a_journal("it is not an SQLite database", None));
    }
    let be16 = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().unwrap_or_default());
    let page_size = match be16(16) {
        1 => 65536,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        _ => return Err(not_a_journal("its header is damaged", None)),
    };
    // A `-wal` file left by a crash (or by a checkpoint a full disk cut short) holds pages
    // the file lacks yet: the file alone is then not the database.
    let wal = fs::metadata(sibling(path, "-wal")).is_ok_and(|m| m.len() > 0);
    // The page count in the header is valid when the two change counters agree.
    let pages = u64::from(be32(28));
    if !wal && (len % page_size != 0 || (be32(24) == be32(92) && len < pages * page_size)) {
        return Err(not_a_journal("it is truncated", None));
    }

    // With a `-wal`, read the latest version through SQLite, read-only. Without one,
    // `immutable` keeps SQLite from creating any file.
    let uri = file_uri(path).map_err(io_error)?;
    let uri = if wal {
        format!("{uri}?mode=ro")
    } else {
        format!("{uri}?mode=ro&immutable=1")
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(&uri, flags)
        .map_err(|e| not_a_journal("SQLite cannot open it", Some(e)))?;
    let read = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    let version =
        read("PRAGMA user_version").map_err(|e| not_a_journal("SQLite cannot read it", Some(e)))?;
    let application = read("PRAGMA application_id")
        .map_err(|e| not_a_journal("SQLite cannot read it", Some(e)))?;
    let objects = read("SELECT count(*) FROM sqlite_schema")
        .map_err(|e| not_a_journal("SQLite cannot read its schema", Some(e)))?;
    if version > VERSION && application == i64::from(APPLICATION_ID) {
        return Err(JournalError::NewerSchema {
            path: path.to_owned(),
            found: version,
            known: VERSION,
        });
    }
    if application != i64::from(APPLICATION_ID) && (application != 0 || objects > 0) {
        return Err(not_a_journal(
            "it is another application's SQLite database",
            None,
        ));
    }
    Ok(())
}

/// Opens the read-write connection: WAL; `synchronous` FULL (every commit fsynced) or NORMAL
/// (the WAL is fsynced at checkpoints: a process crash loses nothing, a power cut may lose
/// the last commits); then migrates to [`VERSION`].
pub(super) fn open_rw(path: &Path, sync: bool) -> Result<Connection, JournalError> {
    let sqlite = |e| JournalError::sqlite("opening", e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite)?;
    conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "NORMAL" })
        .map_err(sqlite)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(path, &mut conn)?;
    Ok(conn)
}

/// Applies the migrations past the journal's version, in one transaction.
fn migrate(path: &Path, conn: &mut Connection) -> Result<(), JournalError> {
    let sqlite = |e| JournalError::sqlite("migrating", e);
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite)?;
    // Checked before, but another process may have written it since: refuse untouched (the
    // transaction rolls back on drop).
    if version > VERSION {
        return Err(JournalError::NewerSchema {
            path: path.to_owned(),
            found: version,
            known: VERSION,
        });
    }
    for migration in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
        tx.execute_batch(migration).map_err(sqlite)?;
    }
    if version < VERSION {
        tx.pragma_update(None, "user_version", VERSION)
            .map_err(sqlite)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sqlite)?;
    }
    tx.commit().map_err(sqlite)
}

/// `path` with `suffix` appended to its file name (`journal.db-wal`).
pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A `file:` URI for SQLite, with every character a URI gives a meaning to escaped.
fn file_uri(path: &Path) -> io::Result<String> {
    let absolute = std::path::absolute(path)?;
    url::Url::from_file_path(&absolute)
        .map(String::from)
        .map_err(|()| io::Error::new(io::ErrorKind::InvalidInput, "not an absolute path"))
}

fn read_at(file: &File, buf: &mut [u8]) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, 0)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek};
        let mut file = file;
        file.seek(io::SeekFrom::Start(0))?;
        file.read_exact(buf)
    }
}
