//! File writing: the `.part` file of a download, written off the arbiter thread.
//!
//! Chunks from the network (at most 32 KiB each) are coalesced into large buffers and each buffer
//! is written by one job on the blocking pool, one job in flight at a time, while the next
//! buffer fills: the arbiter thread never touches the disk. Buffers are allocated when the first
//! byte arrives, not when the transfer is created, so queued and stalled transfers cost no buffer.
//!
//! Completion is atomic: the `.part` length is checked against the bytes received, the file is
//! `sync_all`ed, moved into place (no-clobber unless the policy is `Overwrite`) and the directory
//! is synced. A file under the final name is therefore always complete.

use std::{
    cell::RefCell,
    fs::{File, OpenOptions},
    io::{self, Write},
    mem,
    path::{Path, PathBuf},
    rc::Rc,
};

use actix_rt::task::{spawn_blocking, JoinHandle};
use futures::future::LocalBoxFuture;

use crate::{
    error::{FileErrorKind, TransferError},
    path::{part_path, uniquified},
    request::Conflict,
};

/// Size of one coalesced write.
pub(crate) const WRITE_BUF: usize = 512 * 1024;

/// How many `name (k).ext` candidates `Uniquify` tries.
const MAX_UNIQUIFY: u32 = 10_000;

type WriteJob = JoinHandle<(File, Vec<u8>, io::Result<()>)>;

/// What a dropped sink still had to write: its write in flight and the bytes it had buffered.
/// An attempt that failed or was cancelled drops its sink; the transfer actor awaits these
/// before it looks at or removes the file, so a kept `.part` holds every byte received.
#[derive(Default, Clone)]
pub(crate) struct Drain(Rc<RefCell<Vec<LocalBoxFuture<'static, ()>>>>);

impl Drain {
    /// Wait until every abandoned write has landed.
    pub(crate) async fn settle(&self) {
        let jobs = mem::take(&mut *self.0.borrow_mut());
        for job in jobs {
            job.await;
        }
    }
}

/// A `.part` file and its write pipeline.
pub(crate) struct FileSink {
    file: Option<File>,
    pending: Option<WriteJob>,
    buf: Vec<u8>,
    spare: Vec<u8>,
    drain: Drain,
    /// A write failed: the file's content is unknown past that point, so nothing more is
    /// appended, not even on drop.
    damaged: bool,
}

impl FileSink {
    pub(crate) fn new(file: File, drain: Drain) -> Self {
        FileSink {
            file: Some(file),
            pending: None,
            buf: Vec::new(),
            spare: Vec::new(),
            drain,
            damaged: false,
        }
    }

    /// Append a chunk; hands a full buffer to the blocking pool.
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), TransferError> {
        if self.buf.capacity() == 0 {
            self.buf = mem::take(&mut self.spare);
            self.buf.reserve_exact(WRITE_BUF);
        }
        self.buf.extend_from_slice(chunk);
        if self.buf.len() >= WRITE_BUF {
            self.hand_off().await?;
        }
        Ok(())
    }

    async fn hand_off(&mut self) -> Result<(), TransferError> {
        self.settle().await?;
        let mut buf = mem::take(&mut self.buf);
        let Some(mut file) = self.file.take() else {
            return Err(TransferError::Internal(
                "file sink used after failure".into(),
            ));
        };
        self.pending = Some(spawn_blocking(move || {
            let res = file.write_all(&buf);
            buf.clear();
            (file, buf, res)
        }));
        Ok(())
    }

    /// Wait for the write in flight, if any.
    async fn settle(&mut self) -> Result<(), TransferError> {
        if let Some(job) = self.pending.take() {
            let (file, buf, res) = job
                .await
                .map_err(|e| TransferError::Internal(format!("file write job failed: {e}")))?;
            self.file = Some(file);
            self.spare = buf;
            self.damaged |= res.is_err();
            res.map_err(|e| TransferError::file("writing", &e))?;
        }
        Ok(())
    }

    /// Write everything buffered and return the file, all writes landed.
    pub(crate) async fn finish(mut self) -> Result<File, TransferError> {
        if !self.buf.is_empty() {
            self.hand_off().await?;
        }
        self.settle().await?;
        self.file
            .take()
            .ok_or_else(|| TransferError::Internal("file sink lost its file".into()))
    }
}

impl Drop for FileSink {
    /// Hand the write in flight and the buffered bytes to the drain, which lands them in order.
    fn drop(&mut self) {
        let pending = self.pending.take();
        let leftover = if self.damaged {
            Vec::new()
        } else {
            mem::take(&mut self.buf)
        };
        let file = self.file.take();
        if pending.is_none() && leftover.is_empty() {
            return;
        }
        let land = async move {
            let file = match pending {
                Some(job) => match job.await {
                    Ok((file, _, Ok(()))) => Some(file),
                    _ => None, // failed: append nothing after a hole
                },
                None => file,
            };
            if let (Some(mut file), false) = (file, leftover.is_empty()) {
                let _ = spawn_blocking(move || file.write_all(&leftover)).await;
            }
        };
        self.drain.0.borrow_mut().push(Box::pin(land));
    }
}

/// The resolved places of one download.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// The name the file should get (may change at completion under `Uniquify`).
    pub(crate) target: PathBuf,
    /// The `.part` file being written.
    pub(crate) part: PathBuf,
}

/// Create the directories and the `.part` file for `rel` under `dir`, off-thread.
///
/// Refuses a target whose parent resolves (through symlinks) outside `dir`. Under `Uniquify` the
/// `.part` file is created with `create_new`, which reserves the name against concurrent
/// downloads; under `Overwrite` and `Fail` an old `.part` of the same name is truncated.
pub(crate) fn prepare_part(
    dir: &Path,
    rel: &Path,
    conflict: Conflict,
) -> Result<(Placement, File), TransferError> {
    let joined = dir.join(rel);
    let parent = joined.parent().unwrap_or(dir).to_path_buf();
    std::fs::create_dir_all(&parent).map_err(|e| TransferError::file("creating directory", &e))?;
    let real_dir = dir
        .canonicalize()
        .map_err(|e| TransferError::file("resolving the download directory", &e))?;
    let real_parent = parent
        .canonicalize()
        .map_err(|e| TransferError::file("resolving the target directory", &e))?;
    if !real_parent.starts_with(&real_dir) {
        return Err(TransferError::unsafe_path(
            rel.to_string_lossy(),
            "resolves outside the download directory",
        ));
    }
    let name = joined
        .file_name()
        .ok_or_else(|| TransferError::unsafe_path(rel.to_string_lossy(), "no file name"))?;
    let target = real_parent.join(name);
    if is_symlink(&target) {
        return Err(TransferError::unsafe_path(
            rel.to_string_lossy(),
            "the target is a symbolic link",
        ));
    }
    match conflict {
        Conflict::Uniquify => {
            for k in 0..MAX_UNIQUIFY {
                let cand = if k == 0 {
                    target.clone()
                } else {
                    uniquified(&target, k)
                };
                if cand.symlink_metadata().is_ok() {
                    continue;
                }
                let part = part_path(&cand);
                match OpenOptions::new().write(true).create_new(true).open(&part) {
                    Ok(f) => return Ok((Placement { target: cand, part }, f)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(TransferError::file("creating", &e)),
                }
            }
            Err(TransferError::File {
                kind: FileErrorKind::AlreadyExists,
                op: "choosing a unique name",
                message: format!("{MAX_UNIQUIFY} candidates taken"),
            })
        }
        Conflict::Overwrite | Conflict::Fail => {
            if conflict == Conflict::Fail && target.symlink_metadata().is_ok() {
                return Err(exists_error(&target));
            }
            let part = part_path(&target);
            if is_symlink(&part) {
                return Err(TransferError::unsafe_path(
                    rel.to_string_lossy(),
                    "the .part file is a symbolic link",
                ));
            }
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&part)
                .map_err(|e| TransferError::file("creating", &e))?;
            Ok((Placement { target, part }, f))
        }
    }
}

fn is_symlink(p: &Path) -> bool {
    p.symlink_metadata()
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

fn exists_error(p: &Path) -> TransferError {
    TransferError::File {
        kind: FileErrorKind::AlreadyExists,
        op: "placing the file",
        message: format!("{} exists", p.display()),
    }
}

/// Verify, sync and move a finished `.part` into place; returns the final path. Off-thread.
pub(crate) fn finalize(
    file: File,
    placement: &Placement,
    conflict: Conflict,
    expected_len: u64,
) -> Result<PathBuf, TransferError> {
    let len = file
        .metadata()
        .map_err(|e| TransferError::file("checking", &e))?
        .len();
    if len != expected_len {
        return Err(TransferError::Internal(format!(
            "the .part file holds {len} bytes, {expected_len} were received"
        )));
    }
    file.sync_all()
        .map_err(|e| TransferError::file("syncing", &e))?;
    drop(file);
    let part = &placement.part;
    let placed = match conflict {
        Conflict::Overwrite => {
            std::fs::rename(part, &placement.target)
                .map_err(|e| TransferError::file("renaming", &e))?;
            placement.target.clone()
        }
        Conflict::Fail => {
            link_no_clobber(part, &placement.target)?;
            placement.target.clone()
        }
        Conflict::Uniquify => {
            let mut placed = None;
            for k in 0..MAX_UNIQUIFY {
                let cand = if k == 0 {
                    placement.target.clone()
                } else {
                    uniquified(&placement.target, k)
                };
                match link_no_clobber(part, &cand) {
                    Ok(()) => {
                        placed = Some(cand);
                        break;
                    }
                    Err(TransferError::File {
                        kind: FileErrorKind::AlreadyExists,
                        ..
                    }) => continue,
                    Err(e) => return Err(e),
                }
            }
            placed.ok_or_else(|| exists_error(&placement.target))?
        }
    };
    if let Some(dir) = placed.parent() {
        // Make the rename durable. Not every file system lets a directory be synced.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(placed)
}

/// Move `from` to `to` unless `to` exists: a hard link then an unlink, so a file that appeared
/// under `to` meanwhile is never replaced. Falls back to a checked rename where the file
/// system has no hard links.
fn link_no_clobber(from: &Path, to: &Path) -> Result<(), TransferError> {
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from).map_err(|e| TransferError::file("removing .part", &e)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists_error(to)),
        Err(_) => {
            if to.symlink_metadata().is_ok() {
                return Err(exists_error(to));
            }
            std::fs::rename(from, to).map_err(|e| TransferError::file("renaming", &e))
        }
    }
}

/// Remove a `.part` file, off-thread; a missing file is fine.
pub(crate) async fn remove_part(part: PathBuf) {
    let _ = spawn_blocking(move || match std::fs::remove_file(&part) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %part.display(), error = %e, "could not remove .part file"),
    })
    .await;
}
