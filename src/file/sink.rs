//! File writing: the `.part` file of a download, written off the arbiter thread.
//!
//! Chunks from the network (at most 32 KiB each) are coalesced into large buffers and each
//! buffer is written by one job on the file-I/O threads (`blocking`), one job in flight at a
//! time, while the next buffer fills: the arbiter thread never touches the disk. Buffers grow
//! with the data and get their size (about 250 ms of the transfer's data, 64 KiB to 1 MiB) only
//! once data flows fast; while data arrives, bytes wait at most `MAX_HOLD` in memory (the
//! check runs as each chunk lands: a stream that stops holds its last bytes until the next
//! chunk, the end, or a stop, whose drain lands them). A trickling transfer's buffer is
//! released after each write; once the sink calls a download slow (its data comes at less
//! than `SLOW_RATE`), its reader lets the bytes gather in the socket and hands them over in
//! rounds (`download::read_slowly`), each written at once. Queued, stalled and slow transfers
//! so cost little memory; fast ones reuse two sized buffers.
//!
//! Completion is atomic: the `.part` length is checked against the bytes received, the file is
//! `sync_all`ed, moved into place (no-clobber unless the policy is `Overwrite`) and the directory
//! is synced. A file under the final name is therefore always complete (with `fsync(false)`,
//! for every process, though not across a power cut). A file that will be synced has its
//! writeback started every 8 MiB as it grows (`sync_file_range`, Linux; each segment of a
//! segmented download does the same for its range), so the final sync waits for the last few
//! MiB, not the whole file.
//!
//! A `.part` file belongs to the one transfer that created it: it is created exclusively and
//! locked (`flock`, which other processes see too) for the transfer's life, written only
//! through that handle (never reopened by name), and moved into place, or removed, only while
//! its name still leads to that same file (device and inode). See [`prepare_part`].

use std::{
    cell::RefCell,
    fs::{File, OpenOptions},
    io::{self, Seek, SeekFrom, Write},
    mem,
    os::{
        fd::AsRawFd,
        unix::fs::{MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::{
    error::{FileErrorKind, TransferError},
    file::blocking::{self, Pending},
    file::path::{part_path, uniquified},
    file::policy::Conflict,
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

type WriteJob = Pending<(Writer, Vec<u8>, io::Result<()>)>;

/// What a dropped sink leaves behind: its writer, or the write job holding it, and the bytes
/// it had buffered but not handed off yet.
struct Abandoned {
    job: Option<WriteJob>,
    writer: Option<Writer>,
    leftover: Vec<u8>,
}

/// Where a dropped sink leaves its writer: an attempt that was aborted (cancel, pause,
/// shutdown) or failed drops its sink, and the transfer actor takes the writer back from here
/// once everything the sink had received landed on disk, to resume from exactly that.
#[derive(Default, Clone)]
pub(crate) struct Drain(Rc<RefCell<Option<Abandoned>>>);

impl Drain {
    /// Wait for the abandoned write, land the buffered bytes too when `land` (else drop them:
    /// the file is about to be removed), off-thread, and return the writer.
    pub(crate) async fn reclaim(&self, land: bool) -> Option<Writer> {
        let abandoned = self.0.borrow_mut().take()?;
        let mut writer = match (abandoned.job, abandoned.writer) {
            (Some(job), _) => {
                let (mut w, _, res) = job.await.ok()?;
                w.damaged |= res.is_err();
                w
            }
            (None, Some(w)) => w,
            (None, None) => return None,
        };
        if land && !abandoned.leftover.is_empty() && !writer.damaged {
            let buf = abandoned.leftover;
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
        self.wait_write().await?;
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
    async fn wait_write(&mut self) -> Result<(), TransferError> {
        if let Some(job) = self.pending.take() {
            let (w, buf, res) = job
                .await
                .map_err(|e| TransferError::Panicked(format!("file write job failed: {e}")))?;
            self.writer = Some(w);
            if self.reuse && buf.capacity() >= 2 * GROW_AT {
                // A sized buffer (see `GROW_AT`) that filled: data flows, keep it.
                self.spare = buf;
            }
            res.map_err(|e| TransferError::file("writing", e))?;
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
            .map_err(|e| TransferError::file("opening", e))
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
        self.wait_write().await?;
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
        .map_err(|e| TransferError::Panicked(format!("file truncate job failed: {e}")))?;
        self.writer = Some(w);
        res.map_err(|e| TransferError::file("truncating", e))
    }

    /// Write everything buffered and wait until it landed.
    pub(crate) async fn flush(&mut self) -> Result<(), TransferError> {
        if !self.buf.is_empty() {
            self.hand_off(false).await?;
        }
        self.wait_write().await
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
        let abandoned = Abandoned {
            job: self.pending.take(),
            writer: self.writer.take(),
            leftover: mem::take(&mut self.buf),
        };
        if abandoned.job.is_some() || abandoned.writer.is_some() {
            *self.drain.0.borrow_mut() = Some(abandoned);
        }
    }
}

/// The identity of a file (device and inode): what a `.part` name must still lead to before
/// the engine moves or removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The file `path` names now, without following a symlink.
    fn at(path: &Path) -> io::Result<Self> {
        path.symlink_metadata().map(|m| FileId::of(&m))
    }

    /// `(device, inode)`, as the journal records it.
    #[cfg(feature = "journal")]
    pub(crate) fn raw(self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The identity the journal recorded as [`FileId::raw`].
    #[cfg(feature = "journal")]
    pub(crate) fn from_raw((dev, ino): (u64, u64)) -> Self {
        FileId { dev, ino }
    }
}

/// The resolved places of one download.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// The name the file should get (may change at completion under `Uniquify`).
    pub(crate) target: PathBuf,
    /// The `.part` file being written.
    pub(crate) part: PathBuf,
    /// The file this transfer created at `part`: only that file is moved into place, or
    /// removed.
    pub(crate) id: FileId,
}

/// How often the claim of a `.part` name is tried again when the name changed hands while
/// it was being claimed (a concurrent cleanup of a stale `.part`).
const CLAIM_TRIES: usize = 4;

/// Create the directories and the `.part` file for `rel` under `dir`, off-thread.
///
/// Refuses a target whose parent resolves (through symlinks) outside `dir`; directories are
/// created one at a time, each after the one above it was checked, so none is ever created
/// outside `dir`.
///
/// A `.part` belongs to exactly one transfer, across processes: it is created exclusively
/// (`O_CREAT | O_EXCL | O_NOFOLLOW`, never opened if it exists) and locked (`flock`) for as
/// long as the transfer holds it open, pauses included. An existing `<name>.part`:
/// - under `Uniquify`, is left alone: the next candidate name is tried;
/// - under `Overwrite` and `Fail`, fails the download with `InUse` when another running
///   download holds it (in this process or another); an unlocked (stale) one is unlinked,
///   never truncated, and a new file is created in its place. A symbolic link or a file with
///   other hard links there is refused as `UnsafePath`: it is never written through nor
///   removed.
pub(crate) fn prepare_part(
    dir: &Path,
    rel: &Path,
    conflict: Conflict,
) -> Result<(Placement, File), TransferError> {
    let real_parent = make_dirs(dir, rel)?;
    let name = rel
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
                // Taken (by a running download or a stale file): never touched, next name.
                if let Some((f, id)) =
                    create_owned(&part).map_err(|e| TransferError::file("creating", e))?
                {
                    return Ok((
                        Placement {
                            target: cand,
                            part,
                            id,
                        },
                        f,
                    ));
                }
            }
            Err(TransferError::File {
                kind: FileErrorKind::AlreadyExists,
                op: "choosing a unique name",
                cause: format!("{MAX_UNIQUIFY} candidates taken").into(),
            })
        }
        Conflict::Overwrite | Conflict::Fail => {
            if conflict == Conflict::Fail && target.symlink_metadata().is_ok() {
                return Err(exists_error(&target));
            }
            let part = part_path(&target);
            let refuse = |reason| Err(TransferError::unsafe_path(rel.to_string_lossy(), reason));
            for _ in 0..CLAIM_TRIES {
                if let Some((f, id)) =
                    create_owned(&part).map_err(|e| TransferError::file("creating", e))?
                {
                    return Ok((Placement { target, part, id }, f));
                }
                match probe(&part).map_err(|e| TransferError::file("checking .part", e))? {
                    Found::Gone => {}
                    Found::Live => return Err(in_use(&part)),
                    Found::Stale(held, id) => {
                        remove_same(&part, id)
                            .map_err(|e| TransferError::file("removing a stale .part", e))?;
                        drop(held);
                    }
                    Found::Symlink => return refuse("the .part file is a symbolic link"),
                    Found::Linked => {
                        return refuse("the .part file has other hard links (it is another file)")
                    }
                    Found::Special => {
                        return Err(TransferError::File {
                            kind: FileErrorKind::AlreadyExists,
                            op: "creating",
                            cause: format!("{} exists and is not a regular file", part.display())
                                .into(),
                        })
                    }
                }
            }
            // The name kept changing hands: another download is claiming it.
            Err(in_use(&part))
        }
    }
}

/// Create the download directory and the directories of `rel` in it, one component at a
/// time: an existing component must be a directory, or a symlink that resolves to one inside
/// `dir`; a missing one is created (never through a symlink leading outside). Returns the
/// real path of the target's directory.
fn make_dirs(dir: &Path, rel: &Path) -> Result<PathBuf, TransferError> {
    let not_dir = |path: &Path, what: &str| TransferError::File {
        kind: FileErrorKind::NotADirectory,
        op: "creating directories",
        cause: format!("{what} {} is not a directory", path.display()).into(),
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        // `create_dir_all` reports a file in the way as "File exists": say what it is.
        if let Some(p) = dir
            .ancestors()
            .find(|p| p.metadata().is_ok_and(|m| !m.is_dir()))
        {
            let what = if p == dir {
                "the download directory"
            } else {
                "a parent of the download directory,"
            };
            return Err(not_dir(p, what));
        }
        return Err(TransferError::file("creating the download directory", e));
    }
    let real_dir = dir
        .canonicalize()
        .map_err(|e| TransferError::file("resolving the download directory", e))?;
    let outside = || {
        TransferError::unsafe_path(
            rel.to_string_lossy(),
            "resolves outside the download directory",
        )
    };
    let mut at = real_dir.clone();
    for comp in rel.parent().into_iter().flat_map(Path::components) {
        let next = at.join(comp);
        let meta = match next.symlink_metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match std::fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(TransferError::file("creating directory", e)),
                }
                next.symlink_metadata()
            }
            other => other,
        }
        .map_err(|e| TransferError::file("resolving the target directory", e))?;
        at = if meta.file_type().is_symlink() {
            let real = next
                .canonicalize()
                .map_err(|e| TransferError::file("resolving the target directory", e))?;
            if !real.starts_with(&real_dir) {
                return Err(outside());
            }
            if !real.is_dir() {
                return Err(not_dir(&next, "the target's directory"));
            }
            real
        } else if meta.is_dir() {
            next
        } else {
            return Err(not_dir(&next, "the target's directory"));
        };
    }
    // Belt and braces: the whole parent, resolved at once, is inside too.
    let real_parent = at
        .canonicalize()
        .map_err(|e| TransferError::file("resolving the target directory", e))?;
    if !real_parent.starts_with(&real_dir) {
        return Err(outside());
    }
    Ok(real_parent)
}

/// Create `part` exclusively and lock it: the new file is this transfer's alone for as long
/// as the returned handle (or a clone of it) is open. `Ok(None)`: the name is taken, or it
/// changed hands between the creation and the lock (a concurrent cleanup removed it).
fn create_owned(part: &Path) -> io::Result<Option<(File, FileId)>> {
    let file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(part)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let id = FileId::of(&meta);
    if !try_lock(&file, libc::LOCK_EX)? {
        // Someone is probing it right now (and may remove it): not ours to keep.
        remove_same(part, id)?;
        return Ok(None);
    }
    let named = FileId::at(part).ok() == Some(id);
    if !named || !meta.is_file() || meta.nlink() != 1 {
        return Ok(None);
    }
    Ok(Some((file, id)))
}

/// What is at an existing `.part` name.
enum Found {
    /// Nothing any more.
    Gone,
    /// A regular file that a running download holds locked.
    Live,
    /// A regular file nobody holds: the leftover of a download that ended or died. Returned
    /// open and locked (shared), so no download can claim it while it is removed.
    Stale(File, FileId),
    /// A symbolic link.
    Symlink,
    /// A regular file with other hard links: another file, reachable from elsewhere.
    Linked,
    /// A directory, FIFO, socket or device.
    Special,
}

/// Look at an existing `.part` without changing it (opened read-only, non-blocking, not
/// following a symlink, only once it is known to be a regular file).
fn probe(part: &Path) -> io::Result<Found> {
    let meta = match part.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Gone),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(Found::Symlink);
    }
    if !meta.is_file() {
        return Ok(Found::Special);
    }
    if meta.nlink() != 1 {
        return Ok(Found::Linked);
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(part)
    {
        Ok(f) => f,
        // Gone or replaced since the look: look again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Gone),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Found::Gone),
        Err(e) => return Err(e),
    };
    let id = FileId::of(&file.metadata()?);
    if id != FileId::of(&meta) {
        return Ok(Found::Gone);
    }
    // Shared: a probe needs only read access, and any owner's exclusive lock excludes it.
    if !try_lock(&file, libc::LOCK_SH)? {
        return Ok(Found::Live);
    }
    Ok(Found::Stale(file, id))
}

/// Remove `path` if it still names the file `id`.
fn remove_same(path: &Path, id: FileId) -> io::Result<()> {
    match FileId::at(path) {
        Ok(now) if now == id => match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Re-adopt the `.part` of a transfer restored from the journal, whose file was to be named
/// `target`: open it without following a symbolic link, check that it is a regular file with
/// no other hard links, and lock it as its owner (`flock`, exclusive). `Ok(None)` when there is
/// no such file to adopt (gone, or not a plain file of ours: the download then starts afresh
/// through [`prepare_part`], whose rules apply to whatever is there); `InUse` when another
/// running download holds it. Returns the file and its length.
#[cfg(feature = "journal")]
pub(crate) fn adopt_part(target: &Path) -> Result<Option<(Placement, File, u64)>, TransferError> {
    let part = part_path(target);
    let err = |e| TransferError::file("reopening the kept .part", e);
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&part)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Ok(None);
    }
    if !try_lock(&file, libc::LOCK_EX).map_err(err)? {
        return Err(in_use(&part));
    }
    let id = FileId::of(&meta);
    if FileId::at(&part).ok() != Some(id) {
        return Ok(None);
    }
    // Writes append: they go on from the end of what is kept.
    let mut file = file;
    file.seek(SeekFrom::End(0)).map_err(err)?;
    let placement = Placement {
        target: target.to_owned(),
        part,
        id,
    };
    Ok(Some((placement, file, meta.len())))
}

/// The `.part` of a restored download created by a process that died before the journal
/// recorded it. The journal records a `.part` before its first byte, so such a file is empty;
/// and no running download holds it (each holds its lock for its life). Taken back as this
/// download's, so a restart keeps the name instead of moving on to `name (1)` beside an orphan.
/// Anything else there (bytes, a link, a lock held) is left to [`prepare_part`]'s rules.
#[cfg(feature = "journal")]
pub(crate) fn adopt_empty_orphan(
    dir: &Path,
    rel: &Path,
) -> Result<Option<(Placement, File)>, TransferError> {
    let real_parent = make_dirs(dir, rel)?;
    let Some(name) = rel.file_name() else {
        return Ok(None);
    };
    match adopt_part(&real_parent.join(name)) {
        Ok(Some((placement, file, 0))) => Ok(Some((placement, file))),
        // Not ours: dropping the file releases the lock.
        Ok(_) => Ok(None),
        Err(TransferError::File {
            kind: FileErrorKind::InUse,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The length of the `.part` kept for `target` that [`adopt_part`] would take up (a regular
/// file with one link, not a symbolic link), `None` when there is none: the bytes a restored
/// download continues from. The journal does not record progress per chunk, so after a crash
/// this length, not the recorded figure, is what is on disk. Blocking.
#[cfg(feature = "journal")]
pub(crate) fn kept_part_len(target: &Path) -> Option<u64> {
    let meta = part_path(target).symlink_metadata().ok()?;
    (meta.is_file() && meta.nlink() == 1).then_some(meta.len())
}

/// The file a download restored from the journal already placed: it was moved into place
/// (the rename keeps the inode) but the process stopped before the journal recorded the end.
/// Found when `target`'s `.part` is gone and `target`, or one of its `Uniquify` names up to
/// the first free one, is a regular file with the identity `id` recorded for the `.part` (and
/// `len` bytes when the length is known). Returns its path and length. Blocking.
#[cfg(feature = "journal")]
pub(crate) fn find_placed(target: &Path, id: FileId, len: Option<u64>) -> Option<(PathBuf, u64)> {
    if part_path(target).symlink_metadata().is_ok() {
        return None;
    }
    for k in 0..MAX_UNIQUIFY {
        let cand = if k == 0 {
            target.to_owned()
        } else {
            uniquified(target, k)
        };
        let Ok(meta) = cand.symlink_metadata() else {
            // `place` takes the first free name: none past a free one is ours.
            return None;
        };
        if meta.is_file() && FileId::of(&meta) == id && len.is_none_or(|n| n == meta.len()) {
            return Some((cand, meta.len()));
        }
    }
    None
}

/// `flock(op | LOCK_NB)`: `Ok(false)` when another open file holds a conflicting lock.
fn try_lock(file: &File, op: libc::c_int) -> io::Result<bool> {
    // SAFETY: the descriptor is open for as long as `file` is borrowed; the call reads no
    // memory of ours.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        // A file system without locks: exclusive creation still protects the name.
        Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) => Ok(true),
        _ => Err(e),
    }
}

fn in_use(part: &Path) -> TransferError {
    TransferError::File {
        kind: FileErrorKind::InUse,
        op: "creating",
        cause: format!("{} is in use by another download", part.display()).into(),
    }
}

/// The `.part` name no longer leads to the file this transfer wrote.
fn replaced(part: &Path) -> TransferError {
    TransferError::File {
        kind: FileErrorKind::InUse,
        op: "placing the file",
        cause: format!(
            "{} is no longer the file this download wrote (replaced or removed by something \
             else); nothing was placed",
            part.display()
        )
        .into(),
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
        cause: format!("{} exists", p.display()).into(),
    }
}

/// Verify, sync (when `fsync`) and move a finished `.part` into place; returns the final path.
/// Off-thread. The file stays open (and locked) until it is in place; what is moved is
/// checked to be the file this transfer wrote, before the move and under its new name after.
/// On failure the file comes back, for the caller to remove or keep.
pub(crate) fn finalize(
    file: File,
    placement: &Placement,
    conflict: Conflict,
    expected_len: u64,
    fsync: bool,
) -> Result<(PathBuf, FileId), (TransferError, File)> {
    match place(&file, placement, conflict, expected_len, fsync) {
        // The open handle's identity is the placed file's: the name moved, the file did not.
        Ok(path) => match file.metadata() {
            Ok(meta) => Ok((path, FileId::of(&meta))),
            Err(e) => Err((TransferError::file("checking", e), file)),
        },
        Err(e) => Err((e, file)),
    }
}

/// Remove the completed file at `path` if it is still the file `id` (an `Erase` never removes
/// what another download placed under the same name since), off-thread.
pub(crate) async fn remove_placed(path: PathBuf, id: FileId) {
    let _ = blocking::run(move || {
        if let Err(e) = remove_same(&path, id) {
            tracing::warn!(path = %path.display(), error = %e, "could not remove file");
        }
    })
    .await;
}

fn place(
    file: &File,
    placement: &Placement,
    conflict: Conflict,
    expected_len: u64,
    fsync: bool,
) -> Result<PathBuf, TransferError> {
    let meta = file
        .metadata()
        .map_err(|e| TransferError::file("checking", e))?;
    let len = meta.len();
    if len != expected_len {
        return Err(TransferError::Internal(format!(
            "the .part file holds {len} bytes, {expected_len} were received"
        )));
    }
    if fsync {
        file.sync_all()
            .map_err(|e| TransferError::file("syncing", e))?;
    }
    let part = &placement.part;
    let ours = FileId::of(&meta);
    if ours != placement.id || FileId::at(part).ok() != Some(ours) {
        return Err(replaced(part));
    }
    let placed = match conflict {
        Conflict::Overwrite => {
            // Replaces the directory entry: a file the old target shared through a hard
            // link (or a symlink's target) is not touched.
            std::fs::rename(part, &placement.target)
                .map_err(|e| TransferError::file("renaming", e))?;
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
    if FileId::at(&placed).ok() != Some(ours) {
        // The `.part` was swapped between the check and the move.
        return Err(replaced(part));
    }
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
        Ok(()) => std::fs::remove_file(from).map_err(|e| TransferError::file("removing .part", e)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(exists_error(to)),
        Err(_) => {
            if to.symlink_metadata().is_ok() {
                return Err(exists_error(to));
            }
            std::fs::rename(from, to).map_err(|e| TransferError::file("renaming", e))
        }
    }
}

/// Ask the kernel to start writing `len` bytes at `offset` of `file` to the disk, without
/// waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Advisory: a failure only
/// leaves the work to the final `sync_all`. Blocking (it may wait for the device's queue).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
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

/// Remove this transfer's `.part` file, off-thread, if its name still leads to the file the
/// transfer created; `held`: the transfer's open handle, closed (and so unlocked) only after
/// the removal, so no other download can take the name over in between. A missing file is
/// fine.
pub(crate) async fn remove_part(placement: Placement, held: Option<File>) {
    let _ = blocking::run(move || {
        if let Err(e) = remove_same(&placement.part, placement.id) {
            tracing::warn!(path = %placement.part.display(), error = %e, "could not remove .part file");
        }
        drop(held);
    })
    .await;
}

/// Remove a file this engine left behind and no longer holds (`Erase`): a completed file, or
/// a kept `.part`, which is left alone when a running download holds it (another download
/// took the name over). Off-thread; a missing file is fine.
pub(crate) async fn remove_left(path: PathBuf) {
    let _ = blocking::run(move || {
        let res = match probe(&path) {
            Ok(Found::Stale(held, id)) => remove_same(&path, id).map(|()| drop(held)),
            Ok(Found::Live | Found::Gone | Found::Special) => Ok(()),
            // A link: removing it removes the name only.
            Ok(Found::Symlink | Found::Linked) => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "could not remove file");
        }
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

    /// A leftover `.part` that no download holds is replaced by a new file under `Overwrite`
    /// and `Fail`, never truncated or written through (whoever still has it open keeps its
    /// bytes); under `Uniquify` it is left alone and the next name is used. One that a
    /// download holds is never taken.
    #[test]
    fn a_leftover_part_is_replaced_never_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("t.part");
        for conflict in [Conflict::Overwrite, Conflict::Fail] {
            std::fs::write(&part, b"left over").unwrap();
            let old = File::open(&part).unwrap();
            let (placement, mut file) = prepare_part(dir.path(), Path::new("t"), conflict).unwrap();
            file.write_all(b"new").unwrap();
            assert_eq!(
                placement.part,
                dir.path().canonicalize().unwrap().join("t.part")
            );
            assert_eq!(std::fs::read(&part).unwrap(), b"new");
            assert_eq!(io::read_to_string(old).unwrap(), "left over");

            // Held by a running download: refused, and left as it is.
            let refused = prepare_part(dir.path(), Path::new("t"), conflict).unwrap_err();
            let TransferError::File { kind, .. } = &refused else {
                panic!("{refused:?}")
            };
            assert_eq!(*kind, FileErrorKind::InUse, "{refused}");
            assert_eq!(std::fs::read(&part).unwrap(), b"new");
            drop(file);
        }

        let (placement, _file) =
            prepare_part(dir.path(), Path::new("t"), Conflict::Uniquify).unwrap();
        assert_eq!(placement.target.file_name().unwrap(), "t (1)");
        assert_eq!(std::fs::read(&part).unwrap(), b"new");
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

    /// A file is found in place only when its `.part` is gone and it is the very file the
    /// `.part` was (same identity, and length when known), under the target or a `Uniquify`
    /// name of it up to the first free one; a file another download placed there is not.
    #[cfg(feature = "journal")]
    #[test]
    fn a_placed_file_is_found_by_the_identity_of_its_part() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.bin");
        let (placement, file) =
            prepare_part(dir.path(), Path::new("f.bin"), Conflict::Uniquify).unwrap();
        std::fs::write(&placement.part, b"12345").unwrap();
        let id = placement.id;
        assert_eq!(
            find_placed(&target, id, Some(5)),
            None,
            "the .part is still there"
        );
        // Another file took the name meanwhile: ours went to `f (1).bin`.
        std::fs::write(&target, b"other").unwrap();
        let ours = uniquified(&target, 1);
        std::fs::rename(&placement.part, &ours).unwrap();
        drop(file);
        assert_eq!(find_placed(&target, id, Some(5)), Some((ours.clone(), 5)));
        assert_eq!(find_placed(&target, id, None), Some((ours.clone(), 5)));
        assert_eq!(find_placed(&target, id, Some(6)), None, "another length");
        // Not the same file: a copy under the name is not ours.
        let copy = dir.path().join("copy");
        std::fs::write(&copy, b"12345").unwrap();
        std::fs::rename(&copy, &ours).unwrap();
        assert_eq!(find_placed(&target, id, Some(5)), None, "a copy");
    }
}
