//! The writer thread: it owns the journal's only connection and carries out what the engine
//! queued, every write queued at once in one transaction (group commit), then answers each.

use std::{
    fs::File,
    sync::{mpsc, Arc, OnceLock},
};

use futures::channel::oneshot;
use rusqlite::{params_from_iter, Connection, ErrorCode};

use super::{row, JournalError, Keep, Op};

/// Writes queued from one call: applied together or not at all, answered once.
pub(super) struct Write {
    pub(super) ops: Vec<Op>,
    pub(super) reply: oneshot::Sender<Result<(), JournalError>>,
}

pub(super) enum Job {
    Write(Write),
    /// A read, run on the connection after every write queued before it committed.
    Read(Box<dyn FnOnce(&Connection) + Send>),
}

/// Writes committed in one transaction, at most: bounds how long the first waits.
const MAX_BATCH: usize = 4096;

/// The thread's body: until every sender is gone, take what is queued, commit it, answer.
pub(super) fn run(
    conn: Connection,
    jobs: mpsc::Receiver<Job>,
    failed: Arc<OnceLock<Arc<JournalError>>>,
    lock: File,
) {
    let mut batch = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Write(write) => batch.push(write),
                Job::Read(read) => {
                    commit(&conn, &mut batch, &failed);
                    read(&conn);
                }
            }
            if batch.len() >= MAX_BATCH {
                commit(&conn, &mut batch, &failed);
            }
            next = jobs.try_recv().ok();
        }
        commit(&conn, &mut batch, &failed);
    }
    // The connection closes (and checkpoints) before the lock is released.
    drop(conn);
    drop(lock);
}

/// Applies `batch` in one transaction and answers each write. A write that fails on its own
/// (an unknown id) is undone alone; a failure of the journal itself (I/O, disk full) undoes
/// the transaction, answers every write of it with that error, and fails the journal: every
/// later write is refused with [`JournalError::Failed`]. Committed rows stay.
fn commit(conn: &Connection, batch: &mut Vec<Write>, failed: &OnceLock<Arc<JournalError>>) {
    if batch.is_empty() {
        return;
    }
    if let Some(first) = failed.get() {
        for write in batch.drain(..) {
            let _ = write.reply.send(Err(JournalError::Failed(first.clone())));
        }
        return;
    }
    match apply(conn, batch) {
        Ok(results) => {
            for (write, result) in batch.drain(..).zip(results) {
                let _ = write.reply.send(result);
            }
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            let error = JournalError::sqlite("writing", e);
            tracing::error!(error = %error, "the transfer journal failed; it takes no more writes");
            let _ = failed.set(Arc::new(error.clone()));
            for write in batch.drain(..) {
                let _ = write.reply.send(Err(error.clone()));
            }
        }
    }
}

/// Runs the batch's writes in one transaction: `Ok` with each write's own result once
/// committed, `Err` when the journal itself failed (the caller rolls back).
fn apply(conn: &Connection, batch: &[Write]) -> rusqlite::Result<Vec<Result<(), JournalError>>> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(batch.len());
    let mut high = 0u64;
    for write in batch {
        let several = write.ops.len() > 1;
        if several {
            conn.execute_batch("SAVEPOINT write")?;
        }
        let mut result = Ok(());
        for op in &write.ops {
            match op {
                Op::Insert(row) => high = high.max(row.id),
                Op::Reserve(upto) => high = high.max(*upto),
                _ => {}
            }
            match one(conn, op)? {
                Ok(()) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if several {
            if result.is_err() {
                conn.execute_batch("ROLLBACK TO write")?;
            }
            conn.execute_batch("RELEASE write")?;
        }
        results.push(result);
    }
    if high > 0 {
        // The high-water mark of ids: an erased id is never issued again.
        conn.prepare_cached("UPDATE meta SET value = max(value, ?1 + 1) WHERE key = 'next_id'")?
            .execute([high as i64])?;
    }
    conn.execute_batch("COMMIT")?;
    Ok(results)
}

/// One write: the outer `Err` is a failure of the journal, the inner one of this write alone.
fn one(conn: &Connection, op: &Op) -> rusqlite::Result<Result<(), JournalError>> {
    match op {
        Op::Insert(row) => {
            let inserted = conn
                .prepare_cached(&row::INSERT)?
                .execute(params_from_iter(row.values()));
            match inserted {
                Ok(_) => Ok(Ok(())),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == ErrorCode::ConstraintViolation =>
                {
                    Ok(Err(JournalError::Duplicate(row.id)))
                }
                Err(e) => Err(e),
            }
        }
        Op::Update(id, changes) => {
            let set = changes.assignments();
            let changed = if set.is_empty() {
                conn.prepare_cached("SELECT count(*) FROM transfers WHERE id = ?1")?
                    .query_row([*id as i64], |r| r.get::<_, i64>(0))? as usize
            } else {
                let columns: Vec<String> = set
                    .iter()
                    .enumerate()
                    .map(|(i, (column, _))| format!("{column} = ?{}", i + 2))
                    .collect();
                let sql = format!("UPDATE transfers SET {} WHERE id = ?1", columns.join(", "));
                let values = std::iter::once(rusqlite::types::Value::Integer(*id as i64))
                    .chain(set.into_iter().map(|(_, v)| v));
                conn.prepare_cached(&sql)?
                    .execute(params_from_iter(values))?
            };
            Ok(if changed == 0 {
                Err(JournalError::NoSuchTransfer(*id))
            } else {
                Ok(())
            })
        }
        Op::Erase(id) => {
            let erased = conn
                .prepare_cached("DELETE FROM transfers WHERE id = ?1")?
                .execute([*id as i64])?;
            Ok(if erased == 0 {
                Err(JournalError::NoSuchTransfer(*id))
            } else {
                Ok(())
            })
        }
        Op::Keep { keep, now_ms } => {
            retain(conn, keep, *now_ms)?;
            Ok(Ok(()))
        }
        // Written with the high-water mark, after the batch.
        Op::Reserve(_) => Ok(Ok(())),
        Op::SetMeta { key, value } => {
            conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                .execute(rusqlite::params![key, value])?;
            Ok(Ok(()))
        }
    }
}

/// Deletes the ended rows past the newest `keep.count`, and those that ended before
/// `now_ms - keep.age`.
fn retain(conn: &Connection, keep: &Keep, now_ms: i64) -> rusqlite::Result<usize> {
    let age = i64::try_from(keep.age.as_millis()).unwrap_or(i64::MAX);
    let before = now_ms.saturating_sub(age);
    let count = i64::try_from(keep.count).unwrap_or(i64::MAX);
    let by_age = conn
        .prepare_cached("DELETE FROM transfers WHERE ended_ms IS NOT NULL AND ended_ms < ?1")?
        .execute([before])?;
    let by_count = conn
        .prepare_cached(
            "DELETE FROM transfers WHERE id IN (
                SELECT id FROM transfers WHERE ended_ms IS NOT NULL
                ORDER BY ended_ms DESC, id DESC LIMIT -1 OFFSET ?1
            )",
        )?
        .execute([count])?;
    let deleted = by_age + by_count;
    tracing::debug!(deleted, "journal retention");
    Ok(deleted)
}
