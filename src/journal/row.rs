//! What one row of the `transfers` table holds, and how each field is stored: enums as their
//! snake_case names, request headers as JSON text, paths as text (bytes when not UTF-8), times
//! as unix milliseconds.

use std::{path::PathBuf, sync::LazyLock, time::Duration};

use rusqlite::types::{Value, ValueRef};

use super::JournalError;
use crate::{
    error::{EndState, ErrorKind, TransferError},
    event::status::{TransferKind, TransferState},
    event::{Outcome, Output},
    file::policy::{Conflict, Partial},
    request::Timeouts,
    retry::RetryPolicy,
};

/// One journaled transfer: its request, every option, and where it is in its life.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The transfer id, never reused (see `meta.next_id`).
    pub(crate) id: u64,
    /// Download or upload (fetches are not journaled).
    pub(crate) kind: TransferKind,
    pub(crate) method: String,
    /// The URL as submitted.
    pub(crate) url: String,
    /// The URL after redirects, once one was followed.
    pub(crate) final_url: Option<String>,
    /// The request headers as submitted. They may hold credentials: the file is 0600.
    pub(crate) headers: Vec<(String, String)>,
    /// Downloads: the target path as resolved at submit. Uploads: the source file.
    pub(crate) target: Option<PathBuf>,
    /// Downloads: the path chosen for the file (a `Uniquify` name), once chosen.
    pub(crate) path: Option<PathBuf>,
    /// Downloads: the identity (device, inode) of the `.part` file created for `path`.
    pub(crate) part_file: Option<(u64, u64)>,
    /// Uploads: the source file's size and modification time at submit, so that a restart can
    /// tell whether it changed.
    pub(crate) source_len: Option<u64>,
    pub(crate) source_mtime_ns: Option<i64>,
    pub(crate) options: Options,
    pub(crate) state: TransferState,
    /// Downloads: the verified length of the `.part` file.
    pub(crate) bytes_on_disk: u64,
    /// The response's validators, for `If-Range` on a resume: the strong-validator rule of
    /// `http::validator_of` needs the `Date` beside `Last-Modified`.
    pub(crate) etag: Option<String>,
    pub(crate) last_modified: Option<String>,
    pub(crate) date: Option<String>,
    /// The length the response announced.
    pub(crate) expected_len: Option<u64>,
    pub(crate) attempts: u32,
    /// How it ended, once it did.
    pub(crate) outcome: Option<EndState>,
    /// The final response status.
    pub(crate) status: Option<u16>,
    /// Why it failed: the error's kind and its message (its `Display`).
    pub(crate) error: Option<(ErrorKind, String)>,
    /// Unix milliseconds.
    pub(crate) created_ms: i64,
    pub(crate) started_ms: Option<i64>,
    pub(crate) ended_ms: Option<i64>,
}

/// Every option of a transfer; `None`: the engine's setting at the time it runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Options {
    pub(crate) priority: i32,
    pub(crate) max_rate: Option<u64>,
    /// Lower-case hex.
    pub(crate) expect_sha256: Option<String>,
    pub(crate) expect_size: Option<u64>,
    pub(crate) segments: Option<u32>,
    pub(crate) conflict: Option<Conflict>,
    pub(crate) on_cancel: Option<Partial>,
    pub(crate) on_failure: Option<Partial>,
    pub(crate) resumable_only: bool,
    /// The transfer's own bound on attempts.
    pub(crate) max_attempts: Option<u32>,
    /// The retry policy it runs under (delays are stored in milliseconds).
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) fsync: Option<bool>,
    /// Downloads: the other URLs of the file, as submitted.
    pub(crate) mirrors: Vec<String>,
    /// The transfer's own timeouts.
    pub(crate) timeouts: Timeouts,
    /// Uploads: the cap on the response body kept in memory.
    pub(crate) max_body: Option<u64>,
}

impl Row {
    /// A queued transfer with no options set.
    pub(crate) fn new(
        id: u64,
        kind: TransferKind,
        method: &str,
        url: &str,
        created_ms: i64,
    ) -> Self {
        Row {
            id,
            kind,
            method: method.to_owned(),
            url: url.to_owned(),
            final_url: None,
            headers: Vec::new(),
            target: None,
            path: None,
            part_file: None,
            source_len: None,
            source_mtime_ns: None,
            options: Options::default(),
            state: TransferState::Queued,
            bytes_on_disk: 0,
            etag: None,
            last_modified: None,
            date: None,
            expected_len: None,
            attempts: 0,
            outcome: None,
            status: None,
            error: None,
            created_ms,
            started_ms: None,
            ended_ms: None,
        }
    }
}

/// What a transition changes in a row: `None` leaves a column as it is; `Some(None)` clears a
/// nullable one (a changed validator, for instance).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Changes {
    pub(crate) state: Option<TransferState>,
    pub(crate) final_url: Option<Option<String>>,
    pub(crate) path: Option<Option<PathBuf>>,
    pub(crate) part_file: Option<Option<(u64, u64)>>,
    pub(crate) bytes_on_disk: Option<u64>,
    pub(crate) etag: Option<Option<String>>,
    pub(crate) last_modified: Option<Option<String>>,
    pub(crate) date: Option<Option<String>>,
    pub(crate) expected_len: Option<Option<u64>>,
    pub(crate) attempts: Option<u32>,
    pub(crate) outcome: Option<Option<EndState>>,
    pub(crate) status: Option<Option<u16>>,
    pub(crate) error: Option<Option<(ErrorKind, String)>>,
    pub(crate) started_ms: Option<Option<i64>>,
    pub(crate) ended_ms: Option<Option<i64>>,
}

/// The columns of `transfers`, in the order of [`Row::values`] and [`Row::read`].
pub(super) const COLUMNS: &[&str] = &[
    "id",
    "kind",
    "method",
    "url",
    "final_url",
    "headers",
    "target",
    "path",
    "source_len",
    "source_mtime_ns",
    "priority",
    "max_rate",
    "expect_sha256",
    "expect_size",
    "segments",
    "conflict",
    "on_cancel",
    "on_failure",
    "resumable_only",
    "max_attempts",
    "retry_max_attempts",
    "retry_initial_delay_ms",
    "retry_max_delay_ms",
    "retry_max_retry_after_ms",
    "retry_on",
    "fsync",
    "state",
    "bytes_on_disk",
    "etag",
    "last_modified",
    "date",
    "expected_len",
    "attempts",
    "outcome",
    "status",
    "error_kind",
    "error_message",
    "created_ms",
    "started_ms",
    "ended_ms",
    "part_dev",
    "part_ino",
    "mirrors",
    "headers_timeout_ms",
    "idle_timeout_ms",
    "total_timeout_ms",
    "max_body",
];

/// `SELECT <every column> FROM transfers`.
pub(super) static SELECT: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM transfers", COLUMNS.join(", ")));

/// `INSERT INTO transfers (<every column>) VALUES (?1, ...)`.
pub(super) static INSERT: LazyLock<String> = LazyLock::new(|| {
    let marks: Vec<String> = (1..=COLUMNS.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO transfers ({}) VALUES ({})",
        COLUMNS.join(", "),
        marks.join(", ")
    )
});

impl Row {
    /// The row's values, in the order of [`COLUMNS`].
    pub(super) fn values(&self) -> Vec<Value> {
        let o = &self.options;
        let retry = o.retry.as_ref();
        vec![
            int(self.id),
            text(kind_name(self.kind)),
            text(&self.method),
            text(&self.url),
            opt_text(self.final_url.as_deref()),
            Value::Text(serde_json::to_string(&self.headers).unwrap_or_default()),
            opt_path(self.target.as_ref()),
            opt_path(self.path.as_ref()),
            opt_int(self.source_len),
            self.source_mtime_ns.map_or(Value::Null, Value::Integer),
            Value::Integer(o.priority.into()),
            opt_int(o.max_rate),
            opt_text(o.expect_sha256.as_deref()),
            opt_int(o.expect_size),
            opt_int(o.segments.map(u64::from)),
            opt_text(o.conflict.map(conflict_name)),
            opt_text(o.on_cancel.map(partial_name)),
            opt_text(o.on_failure.map(partial_name)),
            Value::Integer(o.resumable_only.into()),
            opt_int(o.max_attempts.map(u64::from)),
            opt_int(retry.map(|r| u64::from(r.max_attempts))),
            opt_int(retry.map(|r| millis(r.initial_delay))),
            opt_int(retry.map(|r| millis(r.max_delay))),
            opt_int(retry.map(|r| millis(r.max_retry_after))),
            opt_text(
                retry
                    .and_then(|r| r.retry_on.as_ref())
                    .map(|kinds| {
                        kinds
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .as_deref(),
            ),
            o.fsync.map_or(Value::Null, |b| Value::Integer(b.into())),
            text(state_name(self.state)),
            int(self.bytes_on_disk),
            opt_text(self.etag.as_deref()),
            opt_text(self.last_modified.as_deref()),
            opt_text(self.date.as_deref()),
            opt_int(self.expected_len),
            int(self.attempts.into()),
            opt_text(self.outcome.map(end_name)),
            opt_int(self.status.map(u64::from)),
            opt_text(self.error.as_ref().map(|(k, _)| k.as_str())),
            opt_text(self.error.as_ref().map(|(_, m)| m.as_str())),
            Value::Integer(self.created_ms),
            self.started_ms.map_or(Value::Null, Value::Integer),
            self.ended_ms.map_or(Value::Null, Value::Integer),
            opt_int(self.part_file.map(|(dev, _)| dev)),
            opt_int(self.part_file.map(|(_, ino)| ino)),
            Value::Text(serde_json::to_string(&o.mirrors).unwrap_or_default()),
            opt_int(o.timeouts.headers.map(timeout_millis)),
            opt_int(o.timeouts.idle.map(timeout_millis)),
            opt_int(o.timeouts.total.map(timeout_millis)),
            opt_int(o.max_body),
        ]
    }

    /// A row selected with [`SELECT`].
    pub(super) fn read(r: &rusqlite::Row<'_>) -> Result<Row, JournalError> {
        let get = |i: usize| r.get_ref(i).map_err(|e| JournalError::sqlite("reading", e));
        let id = as_u64(get(0)?).unwrap_or(0);
        let bad = |i: usize, v: ValueRef<'_>| JournalError::BadRow {
            id,
            column: COLUMNS[i],
            value: match v {
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                other => format!("{:?}", other.data_type()),
            },
        };
        // Each column through its decoder; a value no decoder reads is an error naming it.
        macro_rules! col {
            ($i:expr, $decode:expr) => {{
                let v = get($i)?;
                match $decode(v) {
                    Some(x) => x,
                    None => return Err(bad($i, v)),
                }
            }};
        }
        let retry_attempts: Option<u32> = col!(20, nullable(as_u32));
        let retry = match retry_attempts {
            None => None,
            Some(max_attempts) => Some(RetryPolicy {
                max_attempts,
                initial_delay: Duration::from_millis(col!(21, as_u64)),
                max_delay: Duration::from_millis(col!(22, as_u64)),
                max_retry_after: Duration::from_millis(col!(23, as_u64)),
                retry_on: col!(24, nullable(kinds)),
            }),
        };
        let error_kind: Option<ErrorKind> = col!(35, nullable(|v| as_str(v).and_then(kind_of)));
        let error_message: Option<String> = col!(36, nullable(as_string));
        let part_dev: Option<u64> = col!(40, nullable(as_u64));
        let part_ino: Option<u64> = col!(41, nullable(as_u64));
        // Found by name: columns added by later migrations are appended in any order.
        let at = |name: &str| {
            COLUMNS
                .iter()
                .position(|c| *c == name)
                .unwrap_or(COLUMNS.len())
        };
        let mirrors: Vec<String> = col!(at("mirrors"), |v| as_str(v)
            .and_then(|s| serde_json::from_str(s).ok()));
        let ms = |v| nullable(as_u64)(v).map(|n| n.map(Duration::from_millis));
        let timeouts = Timeouts {
            headers: col!(at("headers_timeout_ms"), ms),
            idle: col!(at("idle_timeout_ms"), ms),
            total: col!(at("total_timeout_ms"), ms),
        };
        let max_body: Option<u64> = col!(at("max_body"), nullable(as_u64));
        Ok(Row {
            id,
            kind: col!(1, |v| as_str(v).and_then(kind_from)),
            method: col!(2, as_string),
            url: col!(3, as_string),
            final_url: col!(4, nullable(as_string)),
            headers: col!(5, |v| as_str(v).and_then(|s| serde_json::from_str(s).ok())),
            target: col!(6, nullable(as_path)),
            path: col!(7, nullable(as_path)),
            part_file: part_dev.zip(part_ino),
            source_len: col!(8, nullable(as_u64)),
            source_mtime_ns: col!(9, nullable(as_i64)),
            options: Options {
                priority: col!(10, |v| as_i64(v).and_then(|n| i32::try_from(n).ok())),
                max_rate: col!(11, nullable(as_u64)),
                expect_sha256: col!(12, nullable(as_string)),
                expect_size: col!(13, nullable(as_u64)),
                segments: col!(14, nullable(as_u32)),
                conflict: col!(15, nullable(|v| as_str(v).and_then(conflict_from))),
                on_cancel: col!(16, nullable(|v| as_str(v).and_then(partial_from))),
                on_failure: col!(17, nullable(|v| as_str(v).and_then(partial_from))),
                resumable_only: col!(18, as_bool),
                max_attempts: col!(19, nullable(as_u32)),
                retry,
                fsync: col!(25, nullable(as_bool)),
                mirrors,
                timeouts,
                max_body,
            },
            state: col!(26, |v| as_str(v).and_then(state_from)),
            bytes_on_disk: col!(27, as_u64),
            etag: col!(28, nullable(as_string)),
            last_modified: col!(29, nullable(as_string)),
            date: col!(30, nullable(as_string)),
            expected_len: col!(31, nullable(as_u64)),
            attempts: col!(32, as_u32),
            outcome: col!(33, nullable(|v| as_str(v).and_then(end_from))),
            status: col!(
                34,
                nullable(|v| as_u64(v).and_then(|n| u16::try_from(n).ok()))
            ),
            error: error_kind.map(|k| (k, error_message.unwrap_or_default())),
            created_ms: col!(37, as_i64),
            started_ms: col!(38, nullable(as_i64)),
            ended_ms: col!(39, nullable(as_i64)),
        })
    }
}

impl Changes {
    /// `(column, value)` for every column this changes.
    pub(super) fn assignments(&self) -> Vec<(&'static str, Value)> {
        let mut set = Vec::new();
        let mut put = |column: &'static str, v: Option<Value>| {
            if let Some(v) = v {
                set.push((column, v));
            }
        };
        put("state", self.state.map(|s| text(state_name(s))));
        put(
            "final_url",
            self.final_url.as_ref().map(|u| opt_text(u.as_deref())),
        );
        put("path", self.path.as_ref().map(|p| opt_path(p.as_ref())));
        if let Some(file) = self.part_file {
            put("part_dev", Some(opt_int(file.map(|(dev, _)| dev))));
            put("part_ino", Some(opt_int(file.map(|(_, ino)| ino))));
        }
        put("bytes_on_disk", self.bytes_on_disk.map(int));
        put("etag", self.etag.as_ref().map(|v| opt_text(v.as_deref())));
        put(
            "last_modified",
            self.last_modified.as_ref().map(|v| opt_text(v.as_deref())),
        );
        put("date", self.date.as_ref().map(|v| opt_text(v.as_deref())));
        put("expected_len", self.expected_len.map(opt_int));
        put("attempts", self.attempts.map(|n| int(n.into())));
        put("outcome", self.outcome.map(|o| opt_text(o.map(end_name))));
        put("status", self.status.map(|s| opt_int(s.map(u64::from))));
        if let Some(error) = &self.error {
            put(
                "error_kind",
                Some(opt_text(error.as_ref().map(|(k, _)| k.as_str()))),
            );
            put(
                "error_message",
                Some(opt_text(error.as_ref().map(|(_, m)| m.as_str()))),
            );
        }
        put(
            "started_ms",
            self.started_ms
                .map(|t| t.map_or(Value::Null, Value::Integer)),
        );
        put(
            "ended_ms",
            self.ended_ms.map(|t| t.map_or(Value::Null, Value::Integer)),
        );
        set
    }
}

// Encoders. Integers are stored as SQLite's i64: a u64 past i64::MAX keeps its bits.

fn int(n: u64) -> Value {
    Value::Integer(n as i64)
}

fn opt_int(n: Option<u64>) -> Value {
    n.map_or(Value::Null, int)
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> Value {
    s.map_or(Value::Null, text)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A timeout in whole milliseconds, rounded up: a positive one never becomes zero (which
/// means no limit).
fn timeout_millis(d: Duration) -> u64 {
    let partial = !d.subsec_nanos().is_multiple_of(1_000_000);
    millis(d).saturating_add(partial.into())
}

/// A path as text when it is UTF-8 (readable in the `sqlite3` shell), else as its bytes.
fn opt_path(p: Option<&PathBuf>) -> Value {
    let Some(p) = p else { return Value::Null };
    match p.to_str() {
        Some(s) => text(s),
        #[cfg(unix)]
        None => Value::Blob(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec()),
        #[cfg(not(unix))]
        None => text(&p.to_string_lossy()),
    }
}

// Decoders: `None` for a value of the wrong type or out of range.

fn nullable<T>(
    f: impl Fn(ValueRef<'_>) -> Option<T>,
) -> impl Fn(ValueRef<'_>) -> Option<Option<T>> {
    move |v| match v {
        ValueRef::Null => Some(None),
        v => f(v).map(Some),
    }
}

fn as_i64(v: ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Integer(n) => Some(n),
        _ => None,
    }
}

fn as_u64(v: ValueRef<'_>) -> Option<u64> {
    as_i64(v).map(|n| n as u64)
}

fn as_u32(v: ValueRef<'_>) -> Option<u32> {
    as_i64(v).and_then(|n| u32::try_from(n).ok())
}

fn as_bool(v: ValueRef<'_>) -> Option<bool> {
    match as_i64(v)? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

fn as_str(v: ValueRef<'_>) -> Option<&str> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok(),
        _ => None,
    }
}

fn as_string(v: ValueRef<'_>) -> Option<String> {
    as_str(v).map(str::to_owned)
}

fn as_path(v: ValueRef<'_>) -> Option<PathBuf> {
    match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok().map(PathBuf::from),
        #[cfg(unix)]
        ValueRef::Blob(b) => Some(PathBuf::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b),
        )),
        _ => None,
    }
}

fn kinds(v: ValueRef<'_>) -> Option<Vec<ErrorKind>> {
    let s = as_str(v)?;
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(kind_of).collect()
}

pub(super) fn kind_name(k: TransferKind) -> &'static str {
    match k {
        TransferKind::Download => "download",
        TransferKind::Upload => "upload",
        TransferKind::Fetch => "fetch",
    }
}

fn kind_from(s: &str) -> Option<TransferKind> {
    [
        TransferKind::Download,
        TransferKind::Upload,
        TransferKind::Fetch,
    ]
    .into_iter()
    .find(|k| kind_name(*k) == s)
}

pub(super) const STATES: [TransferState; 6] = [
    TransferState::Queued,
    TransferState::Active,
    TransferState::Paused,
    TransferState::Completed,
    TransferState::Failed,
    TransferState::Cancelled,
];

pub(super) fn state_name(s: TransferState) -> &'static str {
    match s {
        TransferState::Queued => "queued",
        TransferState::Active => "active",
        TransferState::Paused => "paused",
        TransferState::Completed => "completed",
        TransferState::Failed => "failed",
        TransferState::Cancelled => "cancelled",
    }
}

fn state_from(s: &str) -> Option<TransferState> {
    STATES.into_iter().find(|k| state_name(*k) == s)
}

fn end_name(e: EndState) -> &'static str {
    state_name(e.into())
}

fn end_from(s: &str) -> Option<EndState> {
    state_from(s)?.end_state()
}

fn conflict_name(c: Conflict) -> &'static str {
    match c {
        Conflict::Uniquify => "uniquify",
        Conflict::Overwrite => "overwrite",
        Conflict::Fail => "fail",
    }
}

fn conflict_from(s: &str) -> Option<Conflict> {
    [Conflict::Uniquify, Conflict::Overwrite, Conflict::Fail]
        .into_iter()
        .find(|c| conflict_name(*c) == s)
}

fn partial_name(p: Partial) -> &'static str {
    match p {
        Partial::Keep => "keep",
        Partial::Delete => "delete",
    }
}

fn partial_from(s: &str) -> Option<Partial> {
    [Partial::Keep, Partial::Delete]
        .into_iter()
        .find(|p| partial_name(*p) == s)
}

fn kind_of(s: &str) -> Option<ErrorKind> {
    // One list of kinds for the whole crate: a kind added there reads back here too.
    ErrorKind::ALL.iter().copied().find(|k| k.as_str() == s)
}

/// Whether `outcome` is a stop that the journal keeps resumable rather than an end: a
/// shutdown. Such a transfer has not ended: it is restored by the next start, which is the
/// one that publishes its `Ended`.
pub(crate) fn kept_resumable(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Failed {
            error: TransferError::Shutdown,
            ..
        }
    )
}

/// What an end writes. A transfer stopped by a shutdown keeps the state it had in the
/// journal (active, or paused), with its `.part`: the next start resumes it (see
/// [`kept_resumable`]).
pub(crate) fn ended_changes(outcome: &Outcome, part_bytes: Option<u64>) -> Changes {
    let end = outcome.end_state();
    if kept_resumable(outcome) {
        return Changes {
            bytes_on_disk: part_bytes,
            ..Changes::default()
        };
    }
    let path = match outcome {
        Outcome::Completed {
            output: Output::File(p),
            ..
        } => Some(p.clone()),
        _ => None,
    };
    Changes {
        state: Some(end.into()),
        outcome: Some(Some(end)),
        status: Some(outcome.status()),
        error: Some(outcome.error().map(|e| (e.kind(), e.to_string()))),
        bytes_on_disk: Some(match end {
            EndState::Completed => outcome.bytes(),
            _ => part_bytes.unwrap_or(0),
        }),
        path: path.map(Some),
        ended_ms: Some(Some(crate::journal::now_ms())),
        ..Changes::default()
    }
}
