//! The Engine: the supervisor actor that validates transfers, assigns ids, admits them to
//! workers, routes control messages to the owning transfer actor, and keeps the record of
//! every transfer's state and outcome.
//!
//! The Engine is never on the per-chunk path: bytes and progress events go from the transfer
//! actor to the file and to subscribers directly; the Engine hears from a transfer when it
//! starts and when it ends, and reads its byte counters from shared atomics for [`Status`].

mod admission;

use std::{collections::VecDeque, path::PathBuf, sync::Arc, time::Duration};

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use futures::channel::oneshot;

use crate::{
    config::Config,
    error::{CancelError, EndState, EraseError, TransferError},
    event::report::{FinishedBatch, Parked, Reporter},
    event::status::{Progress, TransferKind, TransferState, TransferStatus},
    event::subscribers::{Delivery, Subscribers, SubscriptionId},
    event::{EventKind, IdMap, Outcome, Output, TransferEvent, TransferId},
    file::sink,
    request::{Download, Fetch, Job, JobKind, Upload},
    retry::RetryPolicy,
    throttle::Bucket,
    transfer::{
        AbortTransfer, CancelTransfer, PauseTransfer, Reply, ResumeTransfer, Setup, TransferActor,
    },
    worker::Workers,
};
use admission::{Admission, Host, QueueKey};

/// Builds and starts an [`Engine`]. Every option has a documented default.
///
/// Zero and huge values: a zero duration means "no limit" for every timeout and limit
/// (like curl's `--max-time 0`), and a huge one (up to `Duration::MAX`) saturates to a
/// deadline that never comes. Counts say what `0` does on each option.
///
/// ```no_run
/// use std::time::Duration;
/// use actix_transfer::Engine;
///
/// # #[actix_rt::main] async fn main() {
/// let engine = Engine::builder()
///     .workers(4)
///     .download_dir("/var/lib/myapp/downloads")
///     .max_active(64)
///     .max_per_host(8)
///     .idle_timeout(Duration::from_secs(20))
///     .start();
/// # let _ = engine; }
/// ```
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    cfg: Config,
    workers: usize,
    max_active: usize,
    max_per_host: Option<usize>,
    max_rate: Option<u64>,
    keep_ended: usize,
    keep_ended_bytes: u64,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            cfg: Config {
                download_dir: PathBuf::new(),
                connect_timeout: Duration::from_secs(10),
                headers_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(30),
                total_timeout: None,
                progress_interval: Duration::from_millis(100),
                max_redirects: 10,
                max_body: 16 * 1024 * 1024,
                user_agent: concat!("actix-transfer/", env!("CARGO_PKG_VERSION")).into(),
                keep_alive: Duration::from_secs(15),
                retry: RetryPolicy::default(),
                segments: 1,
                segment_threshold: 64 << 20,
                fsync: true,
                events_at_turn_end: true,
            },
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_active: 256,
            max_per_host: None,
            max_rate: None,
            keep_ended: DEFAULT_KEEP_ENDED,
            keep_ended_bytes: DEFAULT_KEEP_ENDED_BYTES,
        }
    }
}

impl EngineBuilder {
    /// Worker threads (arbiters) that run transfers. Default: the number of available cores.
    ///
    /// `0` starts no threads: transfers run on the arbiter that starts the engine, beside the
    /// Engine itself. Nothing then crosses a thread per transfer, which makes each transfer
    /// cheaper than with one worker thread; choose it when that arbiter has time to spare (it
    /// must not run blocking code) and one core is enough for the traffic.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Where downloads are written; targets are relative to it. Created if missing.
    /// Default: the current directory when the engine starts.
    pub fn download_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.download_dir = dir.into();
        self
    }

    /// Transfers running at once; more wait in a queue (FIFO within priority). `0` counts as
    /// 1. Default 256.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n.max(1);
        self
    }

    /// Transfers running at once against one `host:port` (`0` counts as 1). Default: no
    /// per-host limit.
    pub fn max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = Some(n.max(1));
        self
    }

    /// Limit all transfers together to `bytes_per_sec` (token bucket; change it at run time
    /// with [`SetLimits`]). Each transfer may have its own limit too. `0`: no limit. Default:
    /// unlimited.
    pub fn max_rate(mut self, bytes_per_sec: u64) -> Self {
        self.max_rate = Some(bytes_per_sec);
        self
    }

    /// Bound on establishing a TCP (and TLS) connection. Zero: no limit. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }

    /// Bound on waiting for response headers once connected: for downloads and fetches the
    /// deadline is the attempt's start plus the connect timeout plus this; for uploads, the last
    /// byte of the body plus this (with either timeout zero, downloads and fetches have no
    /// such deadline). Zero: no limit. Default 30 s.
    pub fn headers_timeout(mut self, d: Duration) -> Self {
        self.cfg.headers_timeout = d;
        self
    }

    /// Bound on a body making no progress: fails when no byte moves, in either direction, for
    /// this long. A slow but moving transfer is never cut. Zero: no limit. Default 30 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle_timeout = d;
        self
    }

    /// An overall deadline for each transfer, counted from its start (when it leaves the
    /// queue): every attempt, and the backoff between them, included. The attempt running at
    /// the deadline is stopped and the transfer fails with
    /// [`Timeout(Total)`](crate::TimeoutPhase::Total), never retried; a backoff that would end
    /// past the deadline is not slept, the transfer ends at the deadline. Time spent paused
    /// does not count: the clock stops at [`Pause`] and goes on at [`Resume`]. Zero: no limit.
    /// Default: none.
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.cfg.total_timeout = Some(d).filter(|d| !d.is_zero());
        self
    }

    /// Least time between two `Progress` events of one transfer (one more is always sent when
    /// the body is done). Zero: no minimum, an event for every chunk. Default 100 ms.
    pub fn progress_interval(mut self, d: Duration) -> Self {
        self.cfg.progress_interval = d;
        self
    }

    /// Redirects followed before failing with `TooManyRedirects`. Default 10; 0 follows none;
    /// at most 100 (more is cut to 100, so a redirect loop always ends).
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.cfg.max_redirects = n.min(MAX_REDIRECTS);
        self
    }

    /// Cap on a response body kept in memory (fetches, upload replies). Default 16 MiB.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.cfg.max_body = bytes;
        self
    }

    /// How failed attempts are retried (downloads resume from the bytes on disk). Default:
    /// [`RetryPolicy::default`], 5 attempts with exponential backoff from 1 s.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.cfg.retry = policy;
        self
    }

    /// Segmented downloads by default: files of at least `threshold` bytes are fetched as `k`
    /// ranges in parallel when the server allows it (see [`Download::segments`]; `0` counts
    /// as 1, more than 16 as 16). Default: off (`k` = 1).
    pub fn segments(mut self, k: u32, threshold: u64) -> Self {
        self.cfg.segments = k.max(1);
        self.cfg.segment_threshold = threshold;
        self
    }

    /// Whether finished downloads are flushed to the disk before they are complete, unless a
    /// download says otherwise (see [`Download::fsync`]). Default: on.
    pub fn fsync(mut self, on: bool) -> Self {
        self.cfg.fsync = on;
        self
    }

    /// Ended transfers whose record (status, outcome, remembered `Ended` event, and a fetch's
    /// body) the engine keeps for [`Status`], [`Wait`], [`List`] and late subscribers. Past
    /// this many, the oldest ended one is forgotten as if [`Erase`]d (its files stay): an
    /// engine that runs for months, or a load test of millions of requests, stays bounded.
    /// Default 10,000; `usize::MAX` keeps everything until erased; `0` keeps only the one that
    /// ended last (a record is never forgotten as it ends). See also
    /// [`keep_ended_bytes`](Self::keep_ended_bytes).
    pub fn keep_ended(mut self, n: usize) -> Self {
        self.keep_ended = n;
        self
    }

    /// Bytes of response bodies (of fetches and upload replies) the ended records may hold
    /// together. Past this, the oldest ended records are forgotten as with
    /// [`keep_ended`](Self::keep_ended), though never the one that just ended: 10,000 records
    /// of 1 MiB bodies would otherwise hold 10 GiB after every subscriber and waiter has had
    /// its copy. Default 256 MiB; `u64::MAX` bounds them by count alone.
    pub fn keep_ended_bytes(mut self, bytes: u64) -> Self {
        self.keep_ended_bytes = bytes;
        self
    }

    /// The `User-Agent` header. Default `actix-transfer/<version>`.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.cfg.user_agent = ua.into();
        self
    }

    /// Start the engine (and its worker threads) on the current arbiter.
    ///
    /// Must be called inside a running actix `System` (`#[actix_web::main]`,
    /// `#[actix_rt::main]`, `System::new().block_on(..)`).
    pub fn start(mut self) -> Addr<Engine> {
        if self.cfg.download_dir.as_os_str().is_empty() {
            self.cfg.download_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        }
        self.cfg.events_at_turn_end = self.workers > 0;
        let cfg = Arc::new(self.cfg);
        let workers = Workers::start(self.workers, &cfg);
        let peers = workers.handles();
        Engine {
            cfg,
            workers,
            subs: Arc::new(Subscribers::default()),
            records: IdMap::default(),
            admission: Admission::new(self.max_active, self.max_per_host),
            global_rate: Arc::new(Bucket::new(self.max_rate)),
            shared_addr: std::sync::Weak::new(),
            peers,
            live: 0,
            next_id: 0,
            keep_ended: self.keep_ended,
            keep_ended_bytes: self.keep_ended_bytes,
            ended_bytes: 0,
            ended: VecDeque::new(),
            ended_count: 0,
            shutdown: None,
        }
        .start()
    }
}

/// What starts when a waiting transfer is admitted.
enum Waiting {
    /// A transfer that never ran: a new actor.
    New(Box<Job>),
    /// A paused transfer: its actor continues.
    Resume(Addr<TransferActor>),
}

enum Slot {
    Queued { what: Waiting, key: QueueKey },
    Active { addr: Addr<TransferActor> },
    Paused(Waiting),
    Ended(Outcome),
}

impl Slot {
    /// Move the slot out to build the one that replaces it; every caller assigns the new slot
    /// before it returns, so the stand-in left here for that moment is never seen.
    fn take(&mut self) -> Slot {
        std::mem::replace(self, Slot::Ended(Outcome::Cancelled { bytes: 0 }))
    }
}

struct Record {
    kind: TransferKind,
    url: String,
    path: Option<PathBuf>,
    host: Host,
    priority: i32,
    progress: Arc<Progress>,
    rate: Arc<Bucket>,
    slot: Slot,
    waiters: Vec<oneshot::Sender<Outcome>>,
    /// The next seq the Engine itself would publish with (before an actor exists).
    seq: u64,
    /// A `.part` file the transfer left behind (kept on failure or shutdown).
    kept_part: Option<PathBuf>,
}

impl Record {
    /// Bytes of the response body an ended fetch (or upload reply) holds here.
    fn body_bytes(&self) -> u64 {
        match &self.slot {
            Slot::Ended(Outcome::Completed {
                output: Output::Body(body),
                ..
            }) => body.len() as u64,
            _ => 0,
        }
    }

    /// How the transfer ended, if it has: its slot says so, or (its actor's report still on
    /// the way here, while its `Ended` event may be out already) the state it shares with its
    /// actor, which the actor sets before it publishes `Ended`. Control messages answer by
    /// this, so no answer contradicts an `Ended` event already delivered.
    fn ended(&self) -> Option<EndState> {
        match &self.slot {
            Slot::Ended(o) => Some(o.end_state()),
            _ => self.progress.state().end_state(),
        }
    }

    /// Where the transfer is: ended as [`Record::ended`] says, else as its slot says. Every
    /// message that reports or depends on the state (`Status`, `List`, `SetRate`, the control
    /// messages) goes by this or by `ended`, so none contradicts another.
    fn state(&self) -> TransferState {
        if let Some(end) = self.ended() {
            return end.into();
        }
        match &self.slot {
            Slot::Queued { .. } => TransferState::Queued,
            Slot::Active { .. } => TransferState::Active,
            Slot::Paused(_) => TransferState::Paused,
            Slot::Ended(o) => o.end_state().into(),
        }
    }
}

/// The most redirects a transfer follows, whatever [`EngineBuilder::max_redirects`] says:
/// twice curl's default (50), five times Chrome's (20).
const MAX_REDIRECTS: u32 = 100;

/// Ended records kept by default (see [`EngineBuilder::keep_ended`]).
const DEFAULT_KEEP_ENDED: usize = 10_000;

/// Bytes of bodies ended records hold by default (see [`EngineBuilder::keep_ended_bytes`]).
const DEFAULT_KEEP_ENDED_BYTES: u64 = 256 << 20;

/// The supervisor actor. Start it with [`Engine::builder`]; talk to it with messages.
///
/// | message | reply |
/// |---|---|
/// | [`Download`], [`Upload`], [`Fetch`] | `Result<TransferId, TransferError>`, at once |
/// | [`Cancel`] | `Result<(), CancelError>`, after the stream stopped |
/// | [`Pause`] / [`Resume`] | `Result<(), CancelError>` |
/// | [`Status`] | `Option<TransferStatus>` |
/// | [`List`] | `Vec<TransferStatus>` |
/// | [`Wait`] | `Option<Outcome>`, when the transfer ends |
/// | [`Erase`] | `Result<(), EraseError>` |
/// | [`Subscribe`] / [`Unsubscribe`] | `SubscriptionId` / `bool` |
/// | [`SetLimits`] | `()` |
/// | [`Shutdown`] | `()`, once every transfer ended and the workers stopped |
pub struct Engine {
    cfg: Arc<Config>,
    workers: Workers,
    subs: Arc<Subscribers>,
    records: IdMap<Record>,
    admission: Admission,
    /// Transfer actors alive (active, paused, or resumed and waiting for a slot).
    live: usize,
    /// How many ended records to keep (see [`EngineBuilder::keep_ended`]).
    keep_ended: usize,
    /// How many bytes of bodies they may hold (see [`EngineBuilder::keep_ended_bytes`]).
    keep_ended_bytes: u64,
    /// Bytes of bodies the ended records hold.
    ended_bytes: u64,
    /// Ended ids, oldest first (may still hold ids erased since; they are skipped).
    ended: VecDeque<TransferId>,
    /// Records in the `Ended` slot.
    ended_count: usize,
    next_id: u64,
    /// `Some` once a shutdown began: the replies to send when it is done.
    shutdown: Option<Vec<oneshot::Sender<()>>>,
    global_rate: Arc<Bucket>,
    /// See [`Engine::shared_address`].
    shared_addr: std::sync::Weak<Reporter>,
    /// Every worker, for transfers that spread over several (segmented downloads).
    peers: Arc<[ArbiterHandle]>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("transfers", &self.records.len())
            .field("active", &self.admission.active())
            .field("queued", &self.admission.queued())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder with the default settings.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Record a validated job, publish `Queued`, and admit what can run.
    fn submit(&mut self, job: Job, ctx: &mut Context<Self>) -> Result<TransferId, TransferError> {
        if self.shutdown.is_some() {
            return Err(TransferError::Shutdown);
        }
        self.next_id += 1;
        let id = TransferId::new(self.next_id).expect("ids start at 1");
        let (kind, path) = match &job.kind {
            JobKind::Download(opts) => (
                TransferKind::Download,
                Some(self.cfg.download_dir.join(&opts.target)),
            ),
            JobKind::Upload { file, .. } => (TransferKind::Upload, Some(file.clone())),
            JobKind::Fetch { .. } => (TransferKind::Fetch, None),
        };
        let key = Admission::key(job.priority, id);
        let host = self.admission.host(&job.request.url);
        let record = Record {
            kind,
            url: job.request.url.as_str().to_owned(),
            path,
            host: Arc::clone(&host),
            priority: job.priority,
            progress: Arc::new(Progress::new()),
            rate: Arc::new(Bucket::new(job.max_rate)),
            slot: Slot::Queued {
                what: Waiting::New(Box::new(job)),
                key,
            },
            waiters: Vec::new(),
            seq: 0,
            kept_part: None,
        };
        self.records.insert(id, record);
        self.admission.enqueue(&host, key, id);
        self.publish(id, EventKind::Queued);
        self.admit(ctx);
        Ok(id)
    }

    /// Publish an event of a transfer that has no actor running its events (queued).
    fn publish(&mut self, id: TransferId, kind: EventKind) {
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        let seq = record.seq;
        record.seq += 1;
        let event = TransferEvent { id, seq, kind };
        if let EventKind::Ended(_) = event.kind {
            self.subs.publish_ended(event, Delivery::Now);
        } else {
            self.subs.publish(event, Delivery::Now);
        }
    }

    /// Start waiting transfers while slots are free (see `admission`).
    fn admit(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_some() {
            return;
        }
        while let Some(id) = self.admission.next() {
            self.start_transfer(id, ctx);
        }
        self.workers.flush();
    }

    fn start_transfer(&mut self, id: TransferId, ctx: &mut Context<Self>) {
        let record = self.records.get_mut(&id).expect("queued ids have records");
        let Slot::Queued { what, .. } = record.slot.take() else {
            unreachable!("only queued transfers are admitted")
        };
        let addr = match what {
            Waiting::New(job) => {
                self.live += 1;
                self.workers.spawn(|worker| Setup {
                    id,
                    job: *job,
                    cfg: Arc::clone(&self.cfg),
                    subs: Arc::clone(&self.subs),
                    progress: Arc::clone(&record.progress),
                    rate: Arc::clone(&record.rate),
                    global_rate: Arc::clone(&self.global_rate),
                    peers: Arc::clone(&self.peers),
                    engine: Self::shared_address(&mut self.shared_addr, ctx),
                    worker,
                    next_seq: record.seq,
                })
            }
            Waiting::Resume(addr) => {
                addr.do_send(ResumeTransfer);
                addr
            }
        };
        record.progress.set_state(TransferState::Active);
        record.slot = Slot::Active { addr };
    }

    /// End a transfer that has no actor (queued or paused before it ever ran).
    fn end_without_actor(&mut self, id: TransferId, outcome: Outcome) {
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        match &record.slot {
            Slot::Queued {
                what: Waiting::New(_),
                key,
            } => {
                self.admission.remove(&record.host, *key);
            }
            Slot::Paused(Waiting::New(_)) => {}
            _ => return,
        }
        record.progress.set_state(outcome.end_state().into());
        for w in record.waiters.drain(..) {
            let _ = w.send(outcome.clone());
        }
        record.slot = Slot::Ended(outcome.clone());
        self.publish(id, EventKind::Ended(outcome));
        self.retire(id);
    }

    /// The address the running transfers share, as a [`Reporter`] (held by them alone: while
    /// none runs, it is dropped and the Engine holds no address of its own).
    fn shared_address(
        shared: &mut std::sync::Weak<Reporter>,
        ctx: &Context<Self>,
    ) -> Arc<Reporter> {
        shared.upgrade().unwrap_or_else(|| {
            let addr = ctx.address();
            let reporter = Arc::new(Reporter {
                finished: addr.clone().recipient(),
                parked: addr.recipient(),
            });
            *shared = Arc::downgrade(&reporter);
            reporter
        })
    }

    /// Count a record that just ended; forget the oldest ended ones past `keep_ended`, and the
    /// oldest that hold a body while their bodies pass `keep_ended_bytes` (never this one).
    fn retire(&mut self, id: TransferId) {
        self.ended.push_back(id);
        self.ended_count += 1;
        self.ended_bytes += self.records.get(&id).map_or(0, Record::body_bytes);
        while self.ended_count > self.keep_ended {
            let Some(old) = self.ended.pop_front() else {
                break;
            };
            if old == id {
                self.ended.push_front(old);
                break;
            }
            if matches!(self.records.get(&old), Some(r) if matches!(r.slot, Slot::Ended(_))) {
                self.forget(old);
            }
        }
        while self.ended_bytes > self.keep_ended_bytes {
            let records = &self.records;
            let holder = self
                .ended
                .iter()
                .position(|old| *old != id && records.get(old).is_some_and(|r| r.body_bytes() > 0));
            let Some(old) = holder.and_then(|i| self.ended.remove(i)) else {
                break;
            };
            self.forget(old);
        }
    }

    /// Drop an ended record (erased, or past the `keep_ended` limits).
    fn forget(&mut self, id: TransferId) {
        if let Some(record) = self.records.remove(&id) {
            self.ended_bytes -= record.body_bytes();
        }
        self.subs.forget(id);
        self.ended_count -= 1;
    }

    /// The actor of a transfer, if one runs (active, paused, or resumed and waiting).
    fn actor_of(record: &Record) -> Option<&Addr<TransferActor>> {
        match &record.slot {
            Slot::Active { addr }
            | Slot::Paused(Waiting::Resume(addr))
            | Slot::Queued {
                what: Waiting::Resume(addr),
                ..
            } => Some(addr),
            _ => None,
        }
    }

    fn status_of(&self, id: TransferId, r: &Record) -> TransferStatus {
        let state = r.state();
        let (error, path) = match &r.slot {
            Slot::Ended(o) => (
                o.error().cloned(),
                o.path().map(PathBuf::from).or_else(|| r.path.clone()),
            ),
            _ => (None, r.path.clone()),
        };
        TransferStatus {
            id,
            kind: r.kind,
            state,
            url: r.url.clone(),
            final_url: r.progress.final_url(),
            path,
            bytes_transferred: match &r.slot {
                Slot::Ended(o) => o.bytes(),
                _ => r.progress.transferred(),
            },
            bytes_estimated: r.progress.estimated(),
            error,
            can_resume: state == TransferState::Paused && r.progress.can_resume(),
        }
    }

    fn maybe_finish_shutdown(&mut self, ctx: &mut Context<Self>) {
        if self.live == 0 {
            if let Some(replies) = self.shutdown.as_mut() {
                self.workers.stop();
                for r in replies.drain(..) {
                    let _ = r.send(());
                }
                ctx.stop();
            }
        }
    }
}

impl Actor for Engine {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.workers.stop();
    }
}

impl Handler<Download> for Engine {
    type Result = Result<TransferId, TransferError>;

    fn handle(&mut self, msg: Download, ctx: &mut Self::Context) -> Self::Result {
        let job = msg.validate()?;
        self.submit(job, ctx)
    }
}

impl Handler<Fetch> for Engine {
    type Result = Result<TransferId, TransferError>;

    fn handle(&mut self, msg: Fetch, ctx: &mut Self::Context) -> Self::Result {
        let job = msg.validate()?;
        self.submit(job, ctx)
    }
}

impl Handler<Upload> for Engine {
    type Result = ResponseActFuture<Self, Result<TransferId, TransferError>>;

    fn handle(&mut self, msg: Upload, _ctx: &mut Self::Context) -> Self::Result {
        // The file check is I/O: run it on a file-I/O thread, then submit.
        let path = msg.file.clone();
        let stat = crate::file::blocking::run(move || std::fs::metadata(path));
        Box::pin(
            actix::fut::wrap_future(stat).map(move |meta, act: &mut Self, ctx| {
                let shown = msg.file.display();
                let size = match meta {
                    Ok(Ok(m)) if m.is_file() => m.len(),
                    Ok(Ok(_)) => {
                        return Err(TransferError::invalid(format!(
                            "upload source {shown} is not a regular file"
                        )))
                    }
                    Ok(Err(e)) => {
                        return Err(TransferError::invalid(format!(
                            "upload source {shown} cannot be read: {e}"
                        )))
                    }
                    Err(e) => return Err(e.into()),
                };
                let job = msg.validate(size)?;
                act.submit(job, ctx)
            }),
        )
    }
}

/// The Engine's answer to [`Cancel`] and [`Pause`]: given at once, or by the transfer's actor,
/// which gets the asker's reply channel and answers once the stop took effect (one thread hop
/// fewer than answering through the Engine). What a `send` of either message resolves to is
/// `Result<(), CancelError>`; this type only appears as the handlers' `Result`.
pub struct StopAnswer(Answer);

enum Answer {
    Now(Result<(), CancelError>),
    Forward {
        /// Sends the transfer its message, carrying the reply.
        send: Box<dyn FnOnce(Reply)>,
        /// For the answer of a transfer that went away without one.
        progress: Arc<Progress>,
    },
}

impl StopAnswer {
    fn now(answer: Result<(), CancelError>) -> Self {
        StopAnswer(Answer::Now(answer))
    }
}

impl std::fmt::Debug for StopAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Answer::Now(answer) => f.debug_tuple("StopAnswer").field(answer).finish(),
            Answer::Forward { .. } => f.write_str("StopAnswer(forwarded)"),
        }
    }
}

impl<M> actix::dev::MessageResponse<Engine, M> for StopAnswer
where
    M: Message<Result = Result<(), CancelError>>,
{
    fn handle(
        self,
        _ctx: &mut Context<Engine>,
        tx: Option<actix::dev::OneshotSender<Result<(), CancelError>>>,
    ) {
        match self.0 {
            Answer::Now(answer) => {
                // Sent from a task of its own, as actix sends a `ResponseFuture`'s result: the
                // answers of a burst (cancelling many queued transfers) then go out after the
                // Engine's mailbox turn, and the asker wakes once for many. Sent at once, each
                // would wake it on its own.
                actix_rt::spawn(async move {
                    if let Some(tx) = tx {
                        let _ = tx.send(answer);
                    }
                });
            }
            Answer::Forward { send, progress } => send(Reply::new(tx, progress)),
        }
    }
}

/// Pass the asker's reply channel to the transfer's actor in a `msg`; it answers once the stop
/// took effect (or, gone already, its dropped `Reply` answers with how the transfer ended).
fn forward<M>(
    addr: &Addr<TransferActor>,
    msg: fn(Reply) -> M,
    progress: Arc<Progress>,
) -> StopAnswer
where
    M: Message<Result = ()> + Send + 'static,
    TransferActor: Handler<M>,
{
    let addr = addr.clone();
    StopAnswer(Answer::Forward {
        send: Box::new(move |reply| addr.do_send(msg(reply))),
        progress,
    })
}

fn ready<T: 'static>(v: T) -> ResponseFuture<T> {
    Box::pin(async move { v })
}

/// Cancel a transfer: abort its stream, remove its `.part` file, end it as `Cancelled`.
///
/// Replies `Ok(())` once no more bytes will be read or written, the connection is closed and
/// the `Ended(Cancelled)` event was published; `Err(NotActive(end))` when the transfer had
/// already ended (the race with completion is decided by the transfer itself, and the reply
/// always agrees with its `Ended` event); `Err(Unknown)` for an id this engine never issued
/// (or no longer remembers: see [`EngineBuilder::keep_ended`]).
/// Queued and paused transfers can be cancelled too.
///
/// # `send` or `do_send`
///
/// Like any actix message sent with `send`, a `Cancel` acts only if the Engine handles it, and
/// actix discards, unhandled, a message whose reply future was dropped before the Engine got
/// to it: `engine.send(Cancel(id))` dropped unpolled, or in a `timeout` or `select!` that
/// gave up first, may cancel nothing. (Dropped after the Engine handled it, the cancel goes
/// on.) To cancel without waiting for the reply, use `do_send`, which has no reply to drop:
///
/// ```no_run
/// # use actix::Addr;
/// # use actix_transfer::{Cancel, Engine, TransferId};
/// # fn cancel(engine: &Addr<Engine>, id: TransferId) {
/// engine.do_send(Cancel(id)); // fire and forget: the transfer is cancelled
/// # }
/// ```
///
/// The same holds for [`Pause`], [`Resume`] and [`SetRate`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), CancelError>")]
pub struct Cancel(pub TransferId);

impl Handler<Cancel> for Engine {
    type Result = StopAnswer;

    fn handle(&mut self, Cancel(id): Cancel, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.records.get(&id) else {
            return StopAnswer::now(Err(CancelError::Unknown));
        };
        if let Some(end) = record.ended() {
            return StopAnswer::now(Err(CancelError::NotActive(end)));
        }
        match Self::actor_of(record) {
            Some(addr) => forward(addr, CancelTransfer, Arc::clone(&record.progress)),
            None => {
                self.end_without_actor(id, Outcome::Cancelled { bytes: 0 });
                StopAnswer::now(Ok(()))
            }
        }
    }
}

/// Pause a transfer: stop reading, close the connection, keep the `.part` file and its
/// validator, and give the admission slot to the next transfer. Replies `Ok(())` once paused
/// (also when it already was); `Err(NotActive(end))` when it ended; `Err(Unknown)`.
///
/// A `send` future dropped before the Engine handled the message pauses nothing; `do_send`
/// does not wait (see [`Cancel`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), CancelError>")]
pub struct Pause(pub TransferId);

impl Handler<Pause> for Engine {
    type Result = StopAnswer;

    fn handle(&mut self, Pause(id): Pause, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.records.get_mut(&id) else {
            return StopAnswer::now(Err(CancelError::Unknown));
        };
        if let Some(end) = record.ended() {
            return StopAnswer::now(Err(CancelError::NotActive(end)));
        }
        match &record.slot {
            Slot::Ended(_) => unreachable!("an ended slot is ended"),
            Slot::Paused(_) => StopAnswer::now(Ok(())),
            Slot::Active { addr } => forward(addr, PauseTransfer, Arc::clone(&record.progress)),
            Slot::Queued { key, .. } => {
                let key = *key;
                self.admission.remove(&record.host, key);
                let Slot::Queued { what, .. } = record.slot.take() else {
                    unreachable!("matched as queued")
                };
                record.progress.set_state(TransferState::Paused);
                let resumed_actor = matches!(what, Waiting::Resume(_));
                record.slot = Slot::Paused(what);
                if !resumed_actor {
                    self.publish(
                        id,
                        EventKind::Paused {
                            bytes_transferred: 0,
                        },
                    );
                }
                StopAnswer::now(Ok(()))
            }
        }
    }
}

/// Resume a paused transfer: it waits for an admission slot, then continues (a download with
/// a range request from the bytes kept, when the server allows it). Replies `Ok(())` also when
/// the transfer was not paused; `Err(NotActive(end))` when it ended; `Err(Unknown)`.
///
/// A `send` future dropped before the Engine handled the message resumes nothing; `do_send`
/// does not wait (see [`Cancel`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), CancelError>")]
pub struct Resume(pub TransferId);

impl Handler<Resume> for Engine {
    type Result = Result<(), CancelError>;

    fn handle(&mut self, Resume(id): Resume, ctx: &mut Self::Context) -> Self::Result {
        let record = self.records.get_mut(&id).ok_or(CancelError::Unknown)?;
        if let Some(end) = record.ended() {
            return Err(CancelError::NotActive(end));
        }
        match &record.slot {
            Slot::Ended(_) => unreachable!("an ended slot is ended"),
            Slot::Paused(_) => {}
            Slot::Active { .. } | Slot::Queued { .. } => return Ok(()),
        }
        let Slot::Paused(what) = record.slot.take() else {
            unreachable!("matched as paused")
        };
        let key = Admission::key(record.priority, id);
        let never_ran = matches!(what, Waiting::New(_));
        record.slot = Slot::Queued { what, key };
        record.progress.set_state(TransferState::Queued);
        self.admission.enqueue(&record.host, key, id);
        if never_ran {
            self.publish(id, EventKind::Resumed);
        }
        self.admit(ctx);
        Ok(())
    }
}

impl Handler<Parked> for Engine {
    type Result = ();

    fn handle(&mut self, Parked { id }: Parked, ctx: &mut Self::Context) {
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        let Slot::Active { addr } = &record.slot else {
            return;
        };
        record.slot = Slot::Paused(Waiting::Resume(addr.clone()));
        self.admission.release(&record.host);
        self.admit(ctx);
    }
}

impl Handler<FinishedBatch> for Engine {
    type Result = ();

    fn handle(&mut self, FinishedBatch(batch): FinishedBatch, ctx: &mut Self::Context) {
        for msg in batch {
            self.workers.release(msg.worker);
            self.live -= 1;
            let Some(record) = self.records.get_mut(&msg.id) else {
                continue;
            };
            for w in record.waiters.drain(..) {
                let _ = w.send(msg.outcome.clone());
            }
            let slot = std::mem::replace(&mut record.slot, Slot::Ended(msg.outcome));
            record.kept_part = msg.kept_part;
            match slot {
                Slot::Active { .. } => self.admission.release(&record.host),
                Slot::Queued { key, .. } => self.admission.remove(&record.host, key),
                _ => {}
            }
            self.retire(msg.id);
        }
        self.admit(ctx);
        self.maybe_finish_shutdown(ctx);
    }
}

/// Forget an ended transfer: its record, status and remembered `Ended` event. With
/// `delete_files`, also remove what it left on disk (the completed file, or a kept `.part`).
/// `Err(Active)` for a transfer that has not ended (cancel it first), `Err(Unknown)` for an id
/// that is not (or no longer) known.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), EraseError>")]
pub struct Erase {
    /// The transfer.
    pub id: TransferId,
    /// Also remove its file.
    pub delete_files: bool,
}

impl Handler<Erase> for Engine {
    type Result = ResponseFuture<Result<(), EraseError>>;

    fn handle(&mut self, msg: Erase, ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.records.get_mut(&msg.id) else {
            return ready(Err(EraseError::Unknown));
        };
        let Slot::Ended(outcome) = &record.slot else {
            if record.ended().is_some() {
                // Its actor's report, with the outcome, is on the way here: erase once it
                // arrived, never answer `Active` after `Ended`.
                let (tx, rx) = oneshot::channel();
                record.waiters.push(tx);
                let engine = ctx.address();
                return Box::pin(async move {
                    let _ = rx.await;
                    engine.send(msg).await.unwrap_or(Err(EraseError::Unknown))
                });
            }
            return ready(Err(EraseError::Active));
        };
        let files: Vec<PathBuf> = if msg.delete_files {
            outcome
                .path()
                .map(PathBuf::from)
                .into_iter()
                .chain(record.kept_part.clone())
                .collect()
        } else {
            Vec::new()
        };
        self.forget(msg.id);
        if self.ended.len() > 2 * self.ended_count + 1024 {
            // Many erased ids wait in the eviction order: drop them.
            let records = &self.records;
            self.ended.retain(|id| records.contains_key(id));
        }
        Box::pin(async move {
            for f in files {
                sink::remove_left(f).await;
            }
            Ok(())
        })
    }
}

/// A snapshot of one transfer; `None` for an id this engine never issued (or no longer
/// remembers: see [`EngineBuilder::keep_ended`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<TransferStatus>")]
pub struct Status(pub TransferId);

impl Handler<Status> for Engine {
    type Result = Option<TransferStatus>;

    fn handle(&mut self, Status(id): Status, _ctx: &mut Self::Context) -> Self::Result {
        self.records.get(&id).map(|r| self.status_of(id, r))
    }
}

/// Snapshots of every transfer in the given state (all of them with `List(None)`), by id.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Vec<TransferStatus>")]
pub struct List(pub Option<TransferState>);

impl Handler<List> for Engine {
    type Result = Vec<TransferStatus>;

    fn handle(&mut self, List(filter): List, _ctx: &mut Self::Context) -> Self::Result {
        let mut out: Vec<TransferStatus> = self
            .records
            .iter()
            .map(|(id, r)| self.status_of(*id, r))
            .filter(|s| filter.is_none_or(|f| s.state == f))
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }
}

/// Resolve with the transfer's [`Outcome`] when it ends (at once if it has); `None` for an id
/// this engine never issued (or no longer remembers: see [`EngineBuilder::keep_ended`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<Outcome>")]
pub struct Wait(pub TransferId);

impl Handler<Wait> for Engine {
    type Result = ResponseFuture<Option<Outcome>>;

    fn handle(&mut self, Wait(id): Wait, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.records.get_mut(&id) else {
            return Box::pin(async { None });
        };
        if let Slot::Ended(o) = &record.slot {
            let o = o.clone();
            return Box::pin(async move { Some(o) });
        }
        let (tx, rx) = oneshot::channel();
        record.waiters.push(tx);
        Box::pin(async move { rx.await.ok() })
    }
}

/// Receive [`TransferEvent`]s: of every transfer (`only: None`), or of one transfer
/// (`only: Some(id)`).
///
/// A subscription receives every event published after the Engine handled `Subscribe`, and
/// none published before. Added while a transfer runs, it receives that transfer's events from
/// the middle of its stream (the first one it gets is not `Queued` and its `seq` is above 0),
/// up to and including its `Ended`. To see a transfer from its `Queued`, subscribe to all
/// and await the reply before submitting it. One exception: a subscriber to one id that
/// arrives after that transfer ended still receives its `Ended` event.
///
/// The recipient is held weakly and sent to with `do_send`: a subscription never keeps an actor
/// alive (keep its `Addr` somewhere, or it stops and receives nothing), and a slow or stopped
/// subscriber never stalls a transfer.
#[derive(Debug, Clone, Message)]
#[rtype(result = "SubscriptionId")]
pub struct Subscribe {
    /// Who receives the events.
    pub recipient: Recipient<TransferEvent>,
    /// One transfer, or all.
    pub only: Option<TransferId>,
}

impl Subscribe {
    /// The events of every transfer, published from now on: from their `Queued` for
    /// transfers submitted after this, from the middle of their stream for those already
    /// queued or running.
    pub fn all(recipient: Recipient<TransferEvent>) -> Self {
        Subscribe {
            recipient,
            only: None,
        }
    }

    /// The events of one transfer, published from now on (or its `Ended`, if it has ended).
    pub fn one(recipient: Recipient<TransferEvent>, id: TransferId) -> Self {
        Subscribe {
            recipient,
            only: Some(id),
        }
    }
}

impl Handler<Subscribe> for Engine {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.subs.subscribe(msg.recipient, msg.only))
    }
}

/// End a subscription; `false` when it was not found.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "bool")]
pub struct Unsubscribe(pub SubscriptionId);

impl Handler<Unsubscribe> for Engine {
    type Result = bool;

    fn handle(&mut self, Unsubscribe(sub): Unsubscribe, _ctx: &mut Self::Context) -> bool {
        self.subs.unsubscribe(sub)
    }
}

/// Change the admission limits at run time. `None` leaves a limit as it is; queued transfers
/// start at once if the new limits allow.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub struct SetLimits {
    /// Transfers running at once.
    pub max_active: Option<usize>,
    /// Transfers running at once per `host:port`; `Some(None)` removes the limit.
    pub max_per_host: Option<Option<usize>>,
    /// Bytes per second for all transfers together; `Some(None)` removes the limit.
    pub max_rate: Option<Option<u64>>,
}

impl Handler<SetLimits> for Engine {
    type Result = ();

    fn handle(&mut self, msg: SetLimits, ctx: &mut Self::Context) {
        self.admission.set_limits(msg.max_active, msg.max_per_host);
        if let Some(rate) = msg.max_rate {
            self.global_rate.set_rate(rate);
        }
        self.admit(ctx);
    }
}

/// Change one transfer's bandwidth limit while it runs (or waits); `None` lifts it.
/// `Err(NotActive(end))` when it ended, `Err(Unknown)` for an unknown id.
///
/// A `send` future dropped before the Engine handled the message changes nothing; `do_send`
/// does not wait (see [`Cancel`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), CancelError>")]
pub struct SetRate {
    /// The transfer.
    pub id: TransferId,
    /// Bytes per second, or `None` for no limit of its own.
    pub bytes_per_sec: Option<u64>,
}

impl Handler<SetRate> for Engine {
    type Result = Result<(), CancelError>;

    fn handle(&mut self, msg: SetRate, _ctx: &mut Self::Context) -> Self::Result {
        let record = self.records.get(&msg.id).ok_or(CancelError::Unknown)?;
        if let Some(end) = record.ended() {
            return Err(CancelError::NotActive(end));
        }
        record.rate.set_rate(msg.bytes_per_sec);
        Ok(())
    }
}

/// Stop gracefully: refuse new transfers (`Shutdown`), end queued ones and abort active ones
/// as `Failed(Shutdown)` (a download's `.part` file is kept), wait for every `Ended`, stop the
/// workers and the Engine, then reply.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Engine {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let first = self.shutdown.is_none();
        self.shutdown.get_or_insert_with(Vec::new).push(tx);
        if first {
            let queued = self.admission.waiting();
            for id in queued {
                self.end_without_actor(
                    id,
                    Outcome::Failed {
                        bytes: 0,
                        error: TransferError::Shutdown,
                        attempts: 0,
                    },
                );
            }
            let unstarted: Vec<TransferId> = self
                .records
                .iter()
                .filter(|(_, r)| matches!(r.slot, Slot::Paused(Waiting::New(_))))
                .map(|(id, _)| *id)
                .collect();
            for id in unstarted {
                self.end_without_actor(
                    id,
                    Outcome::Failed {
                        bytes: 0,
                        error: TransferError::Shutdown,
                        attempts: 0,
                    },
                );
            }
            for record in self.records.values() {
                if let Some(addr) = Self::actor_of(record) {
                    addr.do_send(AbortTransfer(TransferError::Shutdown));
                }
            }
        }
        self.maybe_finish_shutdown(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
