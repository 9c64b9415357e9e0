//! File writing: the `.part` file of a download, written off the arbiter thread.
//!
//! Chunks from the network (at most 32 KiB each) are coalesced into large buffers and each
//! buffer is written by one job on the file-I/O threads (`blocking`), one job in flight at a
//! time, while the next buffer fills: the arbiter thread never touches the disk. Buffers grow
//! with the data and get their size (about 250 ms of the transfer's data, 64 KiB to 1 MiB) only
//! once data flows fast; bytes never wait more than 500 ms in memory, and a slow transfer's
//! buffer is released after each write; once the sink calls a download slow, its reader lets
//! the bytes gather in the socket and hands them over in rounds (`download::read_slowly`), each
//! written at once. Queued, stalled and slow transfers so cost little memory; fast ones reuse
//! two sized buffers.
//!
//! Completion is atomic: the `.part` length is checked against the bytes received, the file is
//! `sync_all`ed, moved into place (no-clobber unless the policy is `Overwrite`) and the directory
//! is synced. A file under the final name is therefore always complete (with `fsync(false)`,
//! for every process, though not across a power cut). A file that will be synced has its
//! writeback started every 8 MiB as it grows (`sync_file_range`, Linux; each segment of a
//! segmented download does the same for its range), so the final sync waits for the last few
//! MiB, not the whole file.

use std::{
    cell::RefCell,
    fs::{File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    mem,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::{
    blocking::{self, Job},
    error::{FileErrorKind, TransferError},
    path::{part_path, uniquified},
    request::Conflict,
};

/// The largest coalesced write (a fast transfer's).
pub(crate) const WRITE_BUF: usize = 1024 * 1024;

/// A buffer this full means data is flowing: it gets its full size at once, sized to the
/// transfer's rate (`blocking::job_size`, between `GROW_AT` and `WRITE_BUF`): 1,000 transfers
/// sharing 1 Gbit/s hold 2 x 250 ms of it, ~60 MB, not 1,000 full-size buffers.
const GROW_AT: usize = 64 * 1024;

/// Longest time buffered bytes wait for more before they are written anyway.
const MAX_HOLD: Duration = Duration::from_millis(500);

/// A buffer that took longer than `SLOW_HOLD` to reach `SLOW_BUF` belongs to a slow transfer:
/// it is written at that size, so thousands of open slow transfers each hold a few KiB, not
/// `MAX_HOLD`'s worth grown by doubling (16 KiB at 20 KiB/s), for about as many writes.
const SLOW_BUF: usize = 8 * 1024;
const SLOW_HOLD: Duration = Duration::from_millis(60);

/// Below this rate (bytes/s, `SLOW_BUF` per `SLOW_HOLD`, ~136 KB/s) a download is read in
/// rounds: see [`FileSink::slow`].
pub(crate) const SLOW_RATE: f64 = SLOW_BUF as f64 * 1000.0 / SLOW_HOLD.as_millis() as f64;

/// A download that will be flushed at the end asks the kernel to start writing its data to the
/// disk every `WRITE_BEHIND` bytes, so the final `sync_all` waits for the last few MiB instead
/// of the whole file: the disk works while the network does.
const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

/// Where writeback was last started in a stretch of a file written in order (a single stream's
/// whole file, or one segment's range): writes call [`Behind::landed`] as they land.
#[derive(Debug)]
pub(crate) struct Behind(u64);

impl Behind {
    /// A stretch starting at `offset`.
    pub(crate) fn at(offset: u64) -> Self {
        Behind(offset)
    }

    /// The stretch now holds everything up to `end`: start the writeback of the part not yet
    /// started once it is `WRITE_BEHIND` long. Blocking.
    pub(crate) fn landed(&mut self, file: &File, end: u64) {
        if end - self.0 >= WRITE_BEHIND {
            start_writeback(file, self.0, end - self.0);
            self.0 = end;
        }
    }
}

/// How many `name (k).ext` candidates `Uniquify` tries.
const MAX_UNIQUIFY: u32 = 10_000;

/// The `.part` file with what has landed in it: the file travels with its byte count and
/// running SHA-256 into each blocking write job and back, so after any stop the engine knows
/// exactly how many bytes are on disk and the digest of exactly those bytes.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) file: File,
    /// Bytes written to the file (its length: writes only ever append).
    pub(crate) written: u64,
    /// SHA-256 of the `written` bytes, when the download asked for a digest check.
    pub(crate) hasher: Option<Sha256>,
    /// A write failed part-way: the file's content past the last good write is unknown.
    pub(crate) damaged: bool,
    /// Writeback started as the file grows, when it will be synced at the end.
    behind: Option<Behind>,
}

impl Writer {
    pub(crate) fn new(file: File, hashed: bool) -> Self {
        Writer {
            file,
            written: 0,
            hasher: hashed.then(Sha256::new),
            damaged: false,
            behind: None,
        }
    }

    /// Start the disk writes as the file grows, for a file that will be synced at the end.
    pub(crate) fn write_behind(mut self, on: bool) -> Self {
        self.behind = on.then(|| Behind::at(0));
        self
    }

    /// Drop everything written so far (a restart from zero). Blocking.
    pub(crate) fn truncate(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.written = 0;
        if let Some(b) = self.behind.as_mut() {
            *b = Behind::at(0);
        }
        self.damaged = false;
        if let Some(h) = self.hasher.as_mut() {
            *h = Sha256::new();
        }
        Ok(())
    }

    /// Append `buf`, counting and hashing it. Blocking.
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let res = self.file.write_all(buf);
        match &res {
            Ok(()) => {
                self.written += buf.len() as u64;
                if let Some(h) = self.hasher.as_mut() {
                    h.update(buf);
                }
                if let Some(b) = self.behind.as_mut() {
                    b.landed(&self.file, self.written);
                }
            }
            Err(_) => self.damaged = true,
        }
        res
    }

    /// The hex SHA-256 of what was written, when hashed.
    pub(crate) fn sha256_hex(&self) -> Option<String> {
        self.hasher
            .clone()
            .map(|h| h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

type WriteJob = Job<(Writer, Vec<u8>, io::Result<()>)>;

/// What a dropped sink leaves behind: its writer, or the write job holding it, and the bytes
/// it had buffered but not handed off yet.
struct Parked {
    job: Option<WriteJob>,
    writer: Option<Writer>,
    leftover: Vec<u8>,
}

/// Where a dropped sink leaves its writer: an attempt that was aborted (cancel, pause,
/// shutdown) or failed drops its sink, and the transfer actor takes the writer back from here
/// once everything the sink had received landed on disk, to resume from exactly that.
#[derive(Default, Clone)]
pub(crate) struct Drain(Rc<RefCell<Option<Parked>>>);

impl Drain {
    /// Wait for the abandoned write, land the buffered bytes too when `land` (else drop them:
    /// the file is about to be removed), off-thread, and return the writer.
    pub(crate) async fn settle(&self, land: bool) -> Option<Writer> {
        let parked = self.0.borrow_mut().take()?;
        let mut writer = match (parked.job, parked.writer) {
            (Some(job), _) => {
                let (mut w, _, res) = job.await.ok()?;
                w.damaged |= res.is_err();
                w
            }
            (None, Some(w)) => w,
            (None, None) => return None,
        };
        if land && !parked.leftover.is_empty() && !writer.damaged {
            let buf = parked.leftover;
            let job = blocking::run(move || {
                // A failed append marks the writer damaged: the next attempt starts over.
                let _ = writer.append(&buf);
                writer
            });
            writer = job.await.ok()?;
        }
        Some(writer)
    }
}

/// A `.part` file and its write pipeline.
pub(crate) struct FileSink {
    writer: Option<Writer>,
    pending: Option<WriteJob>,
    buf: Vec<u8>,
    /// The buffer of the last sized write, reused while data flows fast.
    spare: Vec<u8>,
    /// How full `buf` gets before it is written, once sized (see `GROW_AT`).
    full: Option<usize>,
    /// Whether the buffer of the write in flight becomes the spare when it comes back.
    reuse: bool,
    /// When the first byte in `buf` arrived.
    held_since: Option<Instant>,
    /// The last buffer was written before it filled: the data trickles.
    slow: bool,
    drain: Drain,
}

impl FileSink {
    pub(crate) fn new(writer: Writer, drain: Drain) -> Self {
        FileSink {
            writer: Some(writer),
            pending: None,
            buf: Vec::new(),
            spare: Vec::new(),
            full: None,
            reuse: false,
            held_since: None,
            slow: false,
            drain,
        }
    }

    /// Append a chunk; hands the buffer to the file-I/O threads when it is full, or when it has
    /// held data for `MAX_HOLD` (a slow transfer keeps a small buffer and lands its bytes soon).
    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), TransferError> {
        let now = Instant::now();
        if self.buf.is_empty() {
            self.held_since = Some(now);
            if self.spare.capacity() > 0 {
                // The last sized buffer: the data still flows at about that rate.
                self.buf = mem::take(&mut self.spare);
                self.full = Some(self.buf.capacity() - GROW_AT);
            }
        }
        let held = self.held_since.map_or(Duration::ZERO, |t| now - t);
        if self.full.is_none() && self.buf.len() >= GROW_AT {
            // Data is flowing: size the buffer at once rather than doubling up to it.
            let full = blocking::job_size(self.buf.len(), held, GROW_AT, WRITE_BUF);
            self.buf.reserve_exact(full + GROW_AT - self.buf.len());
            self.full = Some(full);
        }
        self.buf.extend_from_slice(chunk);
        // Slow means data that comes at less than `SLOW_RATE`, not a buffer yet to fill: a
        // steady transfer (one held to a bandwidth limit, say) takes most of the 250 ms its
        // buffer is sized to, and read in rounds it would sleep a round for a trickle's worth.
        let trickles = (self.buf.len() as f64) < SLOW_RATE * held.as_secs_f64();
        let slow = self.buf.len() >= SLOW_BUF && held >= SLOW_HOLD && trickles;
        let filled = self.buf.len() >= self.full.unwrap_or(WRITE_BUF);
        if filled || held >= MAX_HOLD || slow {
            // A buffer written before it filled: not worth keeping (`filled`), and if the data
            // came at less than `SLOW_RATE`, the reader goes on in rounds.
            self.slow = !filled && trickles;
            self.hand_off(filled).await?;
        }
        Ok(())
    }

    /// Whether the data trickles (the last buffer was written before it filled). The reader
    /// should then let the bytes gather in the socket rather than here, and read them in
    /// rounds, each written at once with [`FileSink::write_out`]: thousands of slow downloads
    /// so hold no write buffers at all between rounds.
    pub(crate) fn slow(&self) -> bool {
        self.slow
    }

    /// Hand what is buffered to the file-I/O threads now (without waiting for it to land);
    /// the next buffer is judged afresh.
    pub(crate) async fn write_out(&mut self) -> Result<(), TransferError> {
        self.slow = false;
        if self.buf.is_empty() {
            return Ok(());
        }
        self.hand_off(false).await
    }

    /// Write `buf` (after the write in flight landed); `reuse`: keep it as the spare after.
    async fn hand_off(&mut self, reuse: bool) -> Result<(), TransferError> {
        self.settle().await?;
        self.reuse = reuse;
        let mut buf = mem::take(&mut self.buf);
        self.full = None;
        let Some(mut w) = self.writer.take() else {
            return Err(TransferError::Internal(
                "file sink used after failure".into(),
            ));
        };
        self.pending = Some(blocking::run(move || {
            let res = w.append(&buf);
            buf.clear();
            (w, buf, res)
        }));
        Ok(())
    }

    /// Wait for the write in flight, if any.
    async fn settle(&mut self) -> Result<(), TransferError> {
        if let Some(job) = self.pending.take() {
            let (w, buf, res) = job
                .await
                .map_err(|e| TransferError::Internal(format!("file write job failed: {e}")))?;
            self.writer = Some(w);
            if self.reuse && buf.capacity() >= 2 * GROW_AT {
                // A sized buffer (see `GROW_AT`) that filled: data flows, keep it.
                self.spare = buf;
            }
            res.map_err(|e| TransferError::file("writing", &e))?;
        }
        Ok(())
    }

    /// Mark the file's content unknown (a segmented attempt writes out of order), or known.
    pub(crate) fn set_damaged(&mut self, damaged: bool) {
        if let Some(w) = self.writer.as_mut() {
            w.damaged = damaged;
        }
    }

    /// Record that the file holds exactly `n` verified bytes (a completed segmented attempt).
    pub(crate) fn set_landed(&mut self, n: u64) {
        if let Some(w) = self.writer.as_mut() {
            w.written = n;
            w.damaged = false;
        }
    }

    /// Whether the file will be synced, so its writeback starts as it grows.
    pub(crate) fn write_behind(&self) -> bool {
        self.writer.as_ref().is_some_and(|w| w.behind.is_some())
    }

    /// A second handle on the file, for positioned writes from other threads.
    pub(crate) fn clone_file(&self) -> Result<File, TransferError> {
        self.writer
            .as_ref()
            .ok_or_else(|| TransferError::Internal("file sink used after failure".into()))?
            .file
            .try_clone()
            .map_err(|e| TransferError::file("opening", &e))
    }

    /// Bytes on disk (before any write of this sink), and whether a write was ever torn.
    pub(crate) fn landed(&self) -> (u64, bool) {
        self.writer
            .as_ref()
            .map_or((0, true), |w| (w.written, w.damaged))
    }

    /// Empty the file to start again from zero. Off-thread; the writer stays with the sink
    /// (and so with the transfer) even when this fails.
    pub(crate) async fn truncate(&mut self) -> Result<(), TransferError> {
        self.settle().await?;
        self.buf.clear();
        let Some(mut w) = self.writer.take() else {
            return Err(TransferError::Internal(
                "file sink used after failure".into(),
            ));
        };
        let (w, res) = blocking::run(move || {
            let res = w.truncate();
            (w, res)
        })
        .await
        .map_err(|e| TransferError::Internal(format!("file truncate job failed: {e}")))?;
        self.writer = Some(w);
        res.map_err(|e| TransferError::file("truncating", &e))
    }

    /// Write everything buffered and wait until it landed.
    pub(crate) async fn flush(&mut self) -> Result<(), TransferError> {
        if !self.buf.is_empty() {
            self.hand_off(false).await?;
        }
        self.settle().await
    }

    /// Write everything buffered and return the writer, all writes landed.
    pub(crate) async fn finish(mut self) -> Result<Writer, TransferError> {
        self.flush().await?;
        self.writer
            .take()
            .ok_or_else(|| TransferError::Internal("file sink lost its file".into()))
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        let parked = Parked {
            job: self.pending.take(),
            writer: self.writer.take(),
            leftover: mem::take(&mut self.buf),
        };
        if parked.job.is_some() || parked.writer.is_some() {
            *self.drain.0.borrow_mut() = Some(parked);
        }
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

/// Verify, sync (when `fsync`) and move a finished `.part` into place; returns the final path.
/// Off-thread.
pub(crate) fn finalize(
    file: File,
    placement: &Placement,
    conflict: Conflict,
    expected_len: u64,
    fsync: bool,
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
    if fsync {
        file.sync_all()
            .map_err(|e| TransferError::file("syncing", &e))?;
    }
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
    if let Some(dir) = placed.parent().filter(|_| fsync) {
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

/// Ask the kernel to start writing `len` bytes at `offset` of `file` to the disk, without
/// waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Advisory: a failure only
/// leaves the work to the final `sync_all`. Blocking (it may wait for the device's queue).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call reads no
    // memory of ours.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Remove a `.part` file, off-thread; a missing file is fine.
pub(crate) async fn remove_part(part: PathBuf) {
    let _ = blocking::run(move || match std::fs::remove_file(&part) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %part.display(), error = %e, "could not remove .part file"),
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(dir: &Path) -> FileSink {
        let file = File::create(dir.join("t.part")).unwrap();
        FileSink::new(Writer::new(file, false), Drain::default())
    }

    /// A file that will be synced has its writeback started every `WRITE_BEHIND` bytes (and
    /// from zero again after a truncate); one that will not be synced never.
    #[test]
    fn writeback_starts_behind_a_file_that_will_be_synced() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = vec![3u8; 1024 * 1024];
        let mut synced =
            Writer::new(File::create(dir.path().join("a")).unwrap(), false).write_behind(true);
        let mut unsynced = Writer::new(File::create(dir.path().join("b")).unwrap(), false);
        for _ in 0..WRITE_BEHIND / chunk.len() as u64 - 1 {
            synced.append(&chunk).unwrap();
            unsynced.append(&chunk).unwrap();
        }
        let behind = |w: &Writer| w.behind.as_ref().map(|b| b.0);
        assert_eq!(behind(&synced), Some(0), "not yet WRITE_BEHIND bytes");
        for _ in 0..2 {
            synced.append(&chunk).unwrap();
            unsynced.append(&chunk).unwrap();
        }
        assert_eq!(behind(&synced), Some(WRITE_BEHIND));
        assert_eq!(behind(&unsynced), None);
        synced.truncate().unwrap();
        assert_eq!((synced.written, behind(&synced)), (0, Some(0)));
        assert_eq!(
            std::fs::metadata(dir.path().join("b")).unwrap().len(),
            unsynced.written
        );
    }

    /// A buffer that reaches `GROW_AT` is sized to its transfer's rate: the full write size
    /// for data that arrives at once, less for data that took 30 ms to get there.
    #[actix_rt::test]
    async fn a_flowing_buffer_is_sized_to_its_rate() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = [1u8; 16 * 1024];

        let mut fast = sink(dir.path());
        for _ in 0..=GROW_AT / chunk.len() {
            fast.write(&chunk).await.unwrap();
        }
        assert_eq!(fast.full, Some(WRITE_BUF));
        assert!(fast.buf.capacity() >= WRITE_BUF);

        let mut moderate = sink(dir.path());
        moderate.write(&chunk).await.unwrap();
        actix_rt::time::sleep(Duration::from_millis(30)).await;
        for _ in 0..GROW_AT / chunk.len() {
            moderate.write(&chunk).await.unwrap();
        }
        // 64 KiB in >= 30 ms is <= 2.2 MB/s: 250 ms of it is well under WRITE_BUF.
        let full = moderate.full.expect("sized at GROW_AT");
        assert!(full > GROW_AT && full < WRITE_BUF, "{full}");
        assert!(moderate.buf.capacity() < WRITE_BUF);
        let w = moderate.finish().await.unwrap();
        assert_eq!(w.written, (GROW_AT + chunk.len()) as u64);
    }

    /// A slowly filling buffer is written once it holds `SLOW_BUF`, long before `MAX_HOLD`,
    /// and marks the download slow; a fast one keeps filling towards a full-size write.
    #[actix_rt::test]
    async fn a_slow_buffer_is_written_at_slow_buf_a_fast_one_keeps_growing() {
        let dir = tempfile::tempdir().unwrap();
        let chunk = [7u8; 1024];

        let mut fast = sink(dir.path());
        let start = Instant::now();
        for _ in 0..SLOW_BUF / chunk.len() {
            fast.write(&chunk).await.unwrap();
        }
        if start.elapsed() < SLOW_HOLD {
            assert!(fast.pending.is_none(), "a fast buffer is not written yet");
            assert_eq!(fast.buf.len(), SLOW_BUF);
            assert!(!fast.slow());
        }

        let mut slow = sink(dir.path());
        let start = Instant::now();
        slow.write(&chunk).await.unwrap();
        actix_rt::time::sleep(SLOW_HOLD).await;
        for _ in 1..SLOW_BUF / chunk.len() {
            slow.write(&chunk).await.unwrap();
        }
        assert!(
            start.elapsed() < MAX_HOLD,
            "the machine stalled; nothing to judge"
        );
        assert!(slow.pending.is_some(), "the slow buffer went to the disk");
        assert!(slow.buf.is_empty());
        assert!(slow.slow(), "the download is now read in rounds");
        slow.write(&chunk).await.unwrap();
        slow.write_out().await.unwrap();
        assert!(
            !slow.slow(),
            "after a round the next buffer is judged afresh"
        );
        let writer = slow.finish().await.unwrap();
        assert_eq!(writer.written, (SLOW_BUF + chunk.len()) as u64);
    }
}
