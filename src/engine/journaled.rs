//! The engine's side of the journal (feature `journal`): opening it at start, restoring what
//! had not ended, and the rows and changes the transitions write (see the table in
//! `crate::journal`).
//!
//! Fetches are never journaled: their bodies live in memory and die with the process.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::records::Records;
use crate::{
    error::{Cause, TransferError},
    event::status::{TransferKind, TransferState, TransferStatus},
    event::subscribers::{Delivery, Subscribers},
    event::{EventKind, Outcome, Output, TransferId},
    journal::{Changes, Journal, JournalError, Keep, Options, Row},
    request::{Download, Job, JobKind, Restore, Upload},
};

/// Where a restored transfer's event numbers start: past any number its events had in an
/// earlier run (a transfer never publishes 2^40 events in one run).
const SEQ_EPOCH_SHIFT: u32 = 40;

/// A journal opened and read at start, not yet restored into the record table.
pub(super) struct Opened {
    journal: Journal,
    keep: Keep,
    unfinished: Vec<Row>,
    max_id: u64,
    epoch: u64,
}

/// The engine's journal: the file, and how much history it keeps.
#[derive(Debug)]
pub(crate) struct EngineJournal {
    pub(crate) journal: Arc<Journal>,
    pub(crate) keep: Keep,
    /// Ids up to this one are recorded as issued (by a row, or by [`Journal::reserve`]).
    pub(crate) reserved: u64,
}

/// How many ids one reservation covers: transfers with no row (fetches) wait for a commit
/// once per this many.
const ID_BLOCK: u64 = 1024;

impl EngineJournal {
    /// For a transfer with no row, about to be issued `id`: the commit to wait for before its
    /// id is answered, when `id` is past the ids already recorded. So a fetch's id, too, is
    /// never issued again after a crash or a restart.
    pub(crate) fn reserve(&mut self, id: u64) -> Option<crate::journal::Reply<()>> {
        if id <= self.reserved {
            return None;
        }
        self.reserved = id.saturating_add(ID_BLOCK - 1);
        Some(self.journal.reserve(self.reserved))
    }
}

/// Open the journal and read what the start needs (blocks: called before the engine starts).
pub(super) fn open(path: &std::path::Path, sync: bool, keep: Keep) -> Result<Opened, JournalError> {
    let journal = Journal::open(path, sync)?;
    let max_id = journal.max_id().wait()?;
    let mut unfinished = journal.load_unfinished().wait()?;
    // Progress is not journaled per chunk: after a crash a row's figure lags behind its
    // `.part`. A download's bytes on disk are what its `.part` holds now (what the resume's
    // `Range` starts from); with no `.part` to adopt it starts from zero.
    for row in &mut unfinished {
        if row.kind == TransferKind::Download {
            row.bytes_on_disk = row
                .path
                .as_deref()
                .and_then(crate::file::sink::kept_part_len)
                .unwrap_or(0);
        }
    }
    let starts: u64 = journal
        .meta("starts")
        .wait()?
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let epoch = starts + 1;
    journal
        .write(vec![
            crate::journal::Op::SetMeta {
                key: "starts".into(),
                value: Some(epoch.to_string()),
            },
            // The history is bounded at start too, not only as transfers end.
            crate::journal::Op::Keep {
                keep,
                now_ms: crate::journal::now_ms(),
            },
        ])
        .wait()?;
    Ok(Opened {
        journal,
        keep,
        unfinished,
        max_id,
        epoch,
    })
}

impl Opened {
    /// Put every unfinished transfer back into `records` (publishing its `Restored`), ids past
    /// the journal's high-water mark.
    pub(super) fn restore<A: Clone>(
        self,
        records: &mut Records<A>,
        subs: &Subscribers,
    ) -> EngineJournal {
        records.skip_ids(self.max_id);
        let seq = self.epoch << SEQ_EPOCH_SHIFT;
        for row in self.unfinished {
            let Some(id) = TransferId::new(row.id) else {
                continue;
            };
            let (state, bytes) = (row.state, row.bytes_on_disk);
            let job = match job_of(&row) {
                Ok(job) => job,
                Err(error) => {
                    // A row this build cannot turn back into a request: it fails (once
                    // restored, as a transfer that cannot start), never silently dropped.
                    tracing::warn!(id = row.id, %error, "a journaled transfer cannot be restored");
                    let mut job = failing_job(&row);
                    job.restore = Some(Box::new(Restore {
                        fail: Some(error),
                        ..Restore::default()
                    }));
                    job
                }
            };
            let effects = records.restore(
                id,
                job,
                state == TransferState::Paused,
                seq,
                EventKind::Restored {
                    state,
                    bytes_on_disk: bytes,
                },
            );
            if let Some(event) = effects.event {
                subs.publish(event, Delivery::Now);
            }
            records.set_created(id, time_of(row.created_ms));
        }
        EngineJournal {
            journal: Arc::new(self.journal),
            keep: self.keep,
            reserved: self.max_id,
        }
    }
}

/// The row of a transfer accepted now as `id` (`source_mtime_ns`: an upload's source file).
pub(super) fn row_of(id: u64, job: &Job, source_mtime_ns: Option<i64>) -> Option<Row> {
    let kind = match &job.kind {
        JobKind::Download(_) => TransferKind::Download,
        // Bytes in memory cannot be sent again after a restart: not recorded.
        JobKind::Upload { body, .. } if body.file().is_none() => return None,
        JobKind::Upload { .. } => TransferKind::Upload,
        JobKind::Fetch { .. } => return None,
    };
    let request = &job.request;
    let mut row = Row::new(
        id,
        kind,
        request.method.as_str(),
        request.url.as_str(),
        crate::journal::now_ms(),
    );
    row.headers = request
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    row.options = Options {
        priority: job.priority,
        max_rate: job.max_rate,
        max_attempts: job.max_attempts,
        timeouts: job.timeouts,
        ..Options::default()
    };
    match &job.kind {
        JobKind::Download(opts) => {
            row.target = opts.target.clone();
            let o = &mut row.options;
            o.expect_sha256 = opts.expect_sha256.clone();
            o.expect_size = opts.expect_size;
            o.segments = opts.segments;
            o.conflict = Some(opts.conflict);
            o.on_cancel = Some(opts.on_cancel);
            o.on_failure = Some(opts.on_failure);
            o.resumable_only = opts.resumable_only;
            o.fsync = opts.fsync;
            o.mirrors = opts.mirrors.iter().map(|u| u.as_str().to_owned()).collect();
        }
        JobKind::Upload {
            body,
            size,
            max_body,
        } => {
            row.options.max_body = *max_body;
            row.target = body.file().cloned();
            row.source_len = Some(*size);
            row.source_mtime_ns = source_mtime_ns;
        }
        JobKind::Fetch { .. } => {}
    }
    Some(row)
}

/// The request of a journaled transfer, validated again as at its submit, with what it
/// continues from.
fn job_of(row: &Row) -> Result<Job, TransferError> {
    let mut job = match row.kind {
        TransferKind::Download => {
            let o = &row.options;
            let mut d = Download::new(row.url.clone()).priority(o.priority);
            if let Some(target) = &row.target {
                d = d.to(target.to_string_lossy().into_owned());
            }
            for (n, v) in &row.headers {
                d = d.header(n.clone(), v.clone());
            }
            if let Some(c) = o.conflict {
                d = d.conflict(c);
            }
            if let Some(n) = o.expect_size {
                d = d.expect_size(n);
            }
            if let Some(h) = &o.expect_sha256 {
                d = d.expect_sha256(h.clone());
            }
            if o.resumable_only {
                d = d.resumable_only();
            }
            if let Some(n) = o.max_attempts {
                d = d.max_attempts(n);
            }
            if let Some(p) = o.on_cancel {
                d = d.on_cancel(p);
            }
            if let Some(p) = o.on_failure {
                d = d.on_failure(p);
            }
            if let Some(r) = o.max_rate {
                d = d.max_rate(r);
            }
            if let Some(k) = o.segments {
                d = d.segments(k);
            }
            if let Some(f) = o.fsync {
                d = d.fsync(f);
            }
            d = d.mirrors(o.mirrors.iter().cloned());
            d.timeouts(o.timeouts).validate()?
        }
        TransferKind::Upload | TransferKind::Fetch => {
            let file = row.target.clone().unwrap_or_default();
            let mut u = Upload::new(row.url.clone(), file.clone()).priority(row.options.priority);
            if row.method.eq_ignore_ascii_case("POST") {
                u = u.post();
            }
            for (n, v) in &row.headers {
                u = u.header(n.clone(), v.clone());
            }
            if let Some(r) = row.options.max_rate {
                u = u.max_rate(r);
            }
            if let Some(n) = row.options.max_attempts {
                u = u.max_attempts(n);
            }
            if let Some(n) = row.options.max_body {
                u = u.max_body(n);
            }
            u = u.timeouts(row.options.timeouts);
            let size = row.source_len.unwrap_or(0);
            let mut job = u.validate(size)?;
            // The same file, unchanged, is sent again from its start; any other fails.
            let now = std::fs::metadata(&file);
            let same = now.as_ref().is_ok_and(|m| {
                m.is_file() && m.len() == size && mtime_ns(m) == row.source_mtime_ns
            });
            if !same {
                let why = match now {
                    Err(e) => format!("it cannot be read: {e}"),
                    Ok(_) => "its size or modification time changed".into(),
                };
                job.restore = Some(Box::new(Restore {
                    fail: Some(TransferError::invalid(format!(
                        "the upload source {} changed while the engine was stopped: {why}; \
                         it is not sent again",
                        file.display()
                    ))),
                    ..Restore::default()
                }));
            }
            return Ok(job);
        }
    };
    job.restore = Some(Box::new(Restore {
        path: row.path.clone(),
        validator: row.etag.clone().or_else(|| row.last_modified.clone()),
        final_url: row.final_url.clone(),
        part_file: row.part_file,
        expected_len: row.expected_len,
        fail: None,
    }));
    Ok(job)
}

/// A stand-in request for a row that cannot be read back (it fails at once when it runs).
fn failing_job(row: &Row) -> Job {
    Upload::new(
        "http://127.0.0.1/",
        PathBuf::from(format!("journal-row-{}", row.id)),
    )
    .validate(0)
    .expect("a fixed valid URL")
}

/// A file's modification time, in nanoseconds since the epoch.
pub(super) fn mtime_ns(meta: &std::fs::Metadata) -> Option<i64> {
    use std::os::unix::fs::MetadataExt;
    Some(meta.mtime().checked_mul(1_000_000_000)? + meta.mtime_nsec())
}

/// The error a submit is refused with when the journal cannot take it.
pub(crate) fn refused(e: &JournalError) -> TransferError {
    TransferError::Journal(Cause::with_error(e.to_string(), e.clone()))
}

/// What the record table's own events write (those of transfers with no actor: pausing or
/// resuming a queued one, ending one that never ran). A shutdown leaves them as they are: the
/// next start restores them.
pub(super) fn table_changes(event: &crate::event::TransferEvent) -> Option<Changes> {
    match &event.kind {
        EventKind::Paused { .. } => Some(Changes {
            state: Some(TransferState::Paused),
            ..Changes::default()
        }),
        EventKind::Resumed => Some(Changes {
            state: Some(TransferState::Queued),
            ..Changes::default()
        }),
        EventKind::Ended(Outcome::Failed {
            error: TransferError::Shutdown,
            ..
        }) => None,
        EventKind::Ended(outcome) => Some(crate::journal::ended_changes(outcome, None)),
        _ => None,
    }
}

/// A time recorded in the journal (unix milliseconds).
fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A time as the journal records it (unix milliseconds).
pub(super) fn ms_of(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The snapshot of a transfer only the journal remembers (its record was evicted, or it ended
/// in an earlier run); `None` for a row that has not ended (its record is in memory, and
/// answers for it).
pub(super) fn status_of(row: Row, download_dir: &Path) -> Option<TransferStatus> {
    if !row.state.is_ended() {
        return None;
    }
    let path = row
        .path
        .clone()
        .or_else(|| row.target.clone())
        .map(|p| match row.kind {
            TransferKind::Download => download_dir.join(p),
            _ => p,
        });
    Some(TransferStatus {
        id: TransferId::new(row.id)?,
        kind: row.kind,
        state: row.state,
        url: row.url.clone(),
        final_url: row.final_url.clone(),
        path,
        bytes_transferred: row.bytes_on_disk,
        bytes_estimated: row.expected_len,
        error: recorded_error(&row),
        can_resume: false,
    })
}

/// The outcome of a transfer only the journal remembers, as recorded: a completed download's
/// file, the final response's status (an upload's body and the response headers are not
/// recorded).
pub(super) fn outcome_of(row: Row, download_dir: &Path) -> Option<Outcome> {
    let bytes = row.bytes_on_disk;
    Some(match row.state {
        TransferState::Completed => Outcome::Completed {
            bytes,
            status: row.status.unwrap_or(200),
            headers: crate::event::Headers::default(),
            url: row.final_url.clone().unwrap_or_else(|| row.url.clone()),
            output: match row.kind {
                TransferKind::Download => Output::File(
                    download_dir.join(
                        row.path
                            .clone()
                            .or_else(|| row.target.clone())
                            .unwrap_or_default(),
                    ),
                ),
                _ => Output::Body(bytes::Bytes::new()),
            },
        },
        TransferState::Failed => Outcome::Failed {
            bytes,
            error: recorded_error(&row).unwrap_or(TransferError::Recorded {
                kind: crate::error::ErrorKind::Internal,
                message: "the journal recorded no error for this failure".into(),
            }),
            attempts: row.attempts,
            // The journal keeps the last response's status, not its headers.
            status: row.status,
            headers: crate::event::Headers::default(),
        },
        TransferState::Cancelled => Outcome::Cancelled {
            bytes,
            status: row.status,
            headers: crate::event::Headers::default(),
        },
        TransferState::Queued | TransferState::Active | TransferState::Paused => return None,
    })
}

fn recorded_error(row: &Row) -> Option<TransferError> {
    let (kind, message) = row.error.clone()?;
    Some(TransferError::Recorded { kind, message })
}
