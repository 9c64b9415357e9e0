//! The Engine: the supervisor actor that validates transfers, assigns ids, admits them to
//! workers, routes control messages to the owning transfer actor, and keeps the record of
//! every transfer's state and outcome.
//!
//! The Engine is never on the per-chunk path: bytes and progress events go from the transfer
//! actor to the file and to subscribers directly; the Engine hears from a transfer when it
//! starts and when it ends, and reads its byte counters from shared atomics for [`Status`].

use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use actix::prelude::*;
use futures::channel::oneshot;

use crate::{
    error::{CancelError, EndState, TransferError},
    event::{EventKind, Outcome, TransferEvent, TransferId},
    request::{Download, Fetch, Job, JobKind, Upload},
    status::{Progress, TransferKind, TransferState, TransferStatus},
    subscribers::{Subscribers, SubscriptionId},
    transfer::{AbortTransfer, CancelTransfer, Finished, Setup, TransferActor},
    worker::{self, Workers},
};

/// The engine's settings, fixed at start (limits can change at run time with [`SetLimits`]).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) download_dir: PathBuf,
    pub(crate) connect_timeout: Duration,
    pub(crate) headers_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) progress_interval: Duration,
    pub(crate) max_redirects: u32,
    pub(crate) max_body: u64,
    pub(crate) user_agent: String,
    pub(crate) keep_alive: Duration,
}

/// Builds and starts an [`Engine`]. Every option has a documented default.
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
            },
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_active: 256,
            max_per_host: None,
        }
    }
}

impl EngineBuilder {
    /// Worker threads (arbiters) that run transfers. Default: the number of available cores.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Where downloads are written; targets are relative to it. Created if missing.
    /// Default: the current directory when the engine starts.
    pub fn download_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.download_dir = dir.into();
        self
    }

    /// Transfers running at once; more wait in a queue (FIFO within priority). Default 256.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n.max(1);
        self
    }

    /// Transfers running at once against one `host:port`. Default: no per-host limit.
    pub fn max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = Some(n.max(1));
        self
    }

    /// Bound on establishing a TCP (and TLS) connection. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }

    /// Bound on waiting for response headers, from the start of a request (downloads, fetches)
    /// or from the last byte of an upload body. Default 30 s.
    pub fn headers_timeout(mut self, d: Duration) -> Self {
        self.cfg.headers_timeout = d;
        self
    }

    /// Bound on a body making no progress: fails when no byte moves, in either direction, for
    /// this long. A slow but moving transfer is never cut. Default 30 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle_timeout = d;
        self
    }

    /// An overall deadline for each transfer, headers and body included. Default: none.
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.cfg.total_timeout = Some(d);
        self
    }

    /// Least time between two `Progress` events of one transfer (one more is always sent when
    /// the body is done). Default 100 ms.
    pub fn progress_interval(mut self, d: Duration) -> Self {
        self.cfg.progress_interval = d;
        self
    }

    /// Redirects followed before failing with `TooManyRedirects`. Default 10; 0 follows none.
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.cfg.max_redirects = n;
        self
    }

    /// Cap on a response body kept in memory (fetches, upload replies). Default 16 MiB.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.cfg.max_body = bytes;
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
        let cfg = Arc::new(self.cfg);
        let workers = Workers::start(self.workers, &cfg);
        Engine {
            cfg,
            workers,
            subs: Arc::new(Subscribers::default()),
            records: HashMap::new(),
            queue: BTreeMap::new(),
            active: 0,
            per_host: HashMap::new(),
            max_active: self.max_active,
            max_per_host: self.max_per_host,
            next_id: 0,
            shutdown: None,
        }
        .start()
    }
}

type QueueKey = (Reverse<i32>, u64);

enum Slot {
    Queued { job: Box<Job>, key: QueueKey },
    Active { addr: Addr<TransferActor> },
    Ended(Outcome),
}

struct Record {
    kind: TransferKind,
    url: String,
    path: Option<PathBuf>,
    host: String,
    progress: Arc<Progress>,
    slot: Slot,
    waiters: Vec<oneshot::Sender<Outcome>>,
}

/// The supervisor actor. Start it with [`Engine::builder`]; talk to it with messages.
///
/// | message | reply |
/// |---|---|
/// | [`Download`], [`Upload`], [`Fetch`] | `Result<TransferId, TransferError>`, at once |
/// | [`Cancel`] | `Result<(), CancelError>`, after the stream stopped |
/// | [`Status`] | `Option<TransferStatus>` |
/// | [`List`] | `Vec<TransferStatus>` |
/// | [`Wait`] | `Option<Outcome>`, when the transfer ends |
/// | [`Subscribe`] / [`Unsubscribe`] | `SubscriptionId` / `bool` |
/// | [`SetLimits`] | `()` |
/// | [`Shutdown`] | `()`, once every transfer ended and the workers stopped |
pub struct Engine {
    cfg: Arc<Config>,
    workers: Workers,
    subs: Arc<Subscribers>,
    records: HashMap<TransferId, Record>,
    queue: BTreeMap<QueueKey, TransferId>,
    active: usize,
    per_host: HashMap<String, usize>,
    max_active: usize,
    max_per_host: Option<usize>,
    next_id: u64,
    /// `Some` once a shutdown began: the replies to send when it is done.
    shutdown: Option<Vec<oneshot::Sender<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("transfers", &self.records.len())
            .field("active", &self.active)
            .field("queued", &self.queue.len())
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
            JobKind::Download { target, .. } => (
                TransferKind::Download,
                Some(self.cfg.download_dir.join(target)),
            ),
            JobKind::Upload { file, .. } => (TransferKind::Upload, Some(file.clone())),
            JobKind::Fetch { .. } => (TransferKind::Fetch, None),
        };
        let key = (Reverse(job.priority), id.get());
        let record = Record {
            kind,
            url: job.request.url.to_string(),
            path,
            host: job.host(),
            progress: Arc::new(Progress::new()),
            slot: Slot::Queued {
                job: Box::new(job),
                key,
            },
            waiters: Vec::new(),
        };
        self.records.insert(id, record);
        self.queue.insert(key, id);
        self.subs.publish(TransferEvent {
            id,
            seq: 0,
            kind: EventKind::Queued,
        });
        self.admit(ctx);
        Ok(id)
    }

    /// Start queued transfers while slots are free, best priority first, skipping hosts at
    /// their limit.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        while self.active < self.max_active && !self.queue.is_empty() {
            let next = self.queue.iter().find_map(|(key, id)| {
                let host = &self.records[id].host;
                let busy = self.per_host.get(host).copied().unwrap_or(0);
                (self.max_per_host.is_none_or(|max| busy < max)).then_some((*key, *id))
            });
            let Some((key, id)) = next else { break };
            self.queue.remove(&key);
            self.start_transfer(id, ctx);
        }
    }

    fn start_transfer(&mut self, id: TransferId, ctx: &mut Context<Self>) {
        let (worker, arbiter) = self.workers.pick();
        let record = self.records.get_mut(&id).expect("queued ids have records");
        let Slot::Queued { .. } = record.slot else {
            return;
        };
        let placeholder = Slot::Ended(Outcome::Cancelled { bytes: 0 });
        let Slot::Queued { job, .. } = std::mem::replace(&mut record.slot, placeholder) else {
            unreachable!()
        };
        let setup = Setup {
            id,
            job: *job,
            cfg: Arc::clone(&self.cfg),
            subs: Arc::clone(&self.subs),
            progress: Arc::clone(&record.progress),
            engine: ctx.address().recipient(),
            worker,
            next_seq: 1,
        };
        record.progress.set_state(TransferState::Active);
        let addr = TransferActor::start_in_arbiter(&arbiter, move |_| {
            TransferActor::new(setup, worker::client())
        });
        record.slot = Slot::Active { addr };
        *self.per_host.entry(record.host.clone()).or_default() += 1;
        self.active += 1;
    }

    /// End a transfer that never started (cancelled or shut down while queued).
    fn end_queued(&mut self, id: TransferId, outcome: Outcome) {
        let Some(record) = self.records.get_mut(&id) else {
            return;
        };
        if let Slot::Queued { key, .. } = record.slot {
            self.queue.remove(&key);
        } else {
            return;
        }
        record.progress.set_state(outcome.end_state().into());
        self.subs.publish_ended(TransferEvent {
            id,
            seq: 1,
            kind: EventKind::Ended(outcome.clone()),
        });
        for w in record.waiters.drain(..) {
            let _ = w.send(outcome.clone());
        }
        record.slot = Slot::Ended(outcome);
    }

    fn status_of(&self, id: TransferId, r: &Record) -> TransferStatus {
        let (state, error, path) = match &r.slot {
            Slot::Queued { .. } => (TransferState::Queued, None, r.path.clone()),
            Slot::Active { .. } => (TransferState::Active, None, r.path.clone()),
            Slot::Ended(o) => (
                TransferState::from(o.end_state()),
                o.error().cloned(),
                o.path().map(PathBuf::from).or_else(|| r.path.clone()),
            ),
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
        }
    }

    fn maybe_finish_shutdown(&mut self, ctx: &mut Context<Self>) {
        if self.active == 0 {
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
        // The file check is I/O: run it on the blocking pool, then submit.
        let path = msg.file.clone();
        let stat = actix_rt::task::spawn_blocking(move || std::fs::metadata(path));
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
                    Err(e) => return Err(TransferError::Internal(e.to_string())),
                };
                let job = msg.validate(size)?;
                act.submit(job, ctx)
            }),
        )
    }
}

/// Cancel a transfer: abort its stream, remove its `.part` file, end it as `Cancelled`.
///
/// Replies `Ok(())` once no more bytes will be read or written, the connection is closed and
/// the `Ended(Cancelled)` event was published; `Err(NotActive(end))` when the transfer had
/// already ended (the race with completion is decided by the transfer itself, and the reply
/// always agrees with its `Ended` event); `Err(Unknown)` for an id this engine never issued.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), CancelError>")]
pub struct Cancel(pub TransferId);

impl Handler<Cancel> for Engine {
    type Result = ResponseFuture<Result<(), CancelError>>;

    fn handle(&mut self, Cancel(id): Cancel, _ctx: &mut Self::Context) -> Self::Result {
        let Some(record) = self.records.get(&id) else {
            return Box::pin(async { Err(CancelError::Unknown) });
        };
        match &record.slot {
            Slot::Ended(o) => {
                let end = o.end_state();
                Box::pin(async move { Err(CancelError::NotActive(end)) })
            }
            Slot::Queued { .. } => {
                self.end_queued(id, Outcome::Cancelled { bytes: 0 });
                Box::pin(async { Ok(()) })
            }
            Slot::Active { addr } => {
                let (addr, progress) = (addr.clone(), Arc::clone(&record.progress));
                Box::pin(async move {
                    match addr.send(CancelTransfer).await {
                        Ok(reply) => reply,
                        // The actor stopped after ending; its end state is in the counters.
                        Err(_) => Err(CancelError::NotActive(
                            progress.state().end_state().unwrap_or(EndState::Failed),
                        )),
                    }
                })
            }
        }
    }
}

impl Handler<Finished> for Engine {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.workers.release(msg.worker);
        if let Some(record) = self.records.get_mut(&msg.id) {
            if let Slot::Active { .. } = record.slot {
                self.active -= 1;
                if let Some(n) = self.per_host.get_mut(&record.host) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_host.remove(&record.host);
                    }
                }
            }
            for w in record.waiters.drain(..) {
                let _ = w.send(msg.outcome.clone());
            }
            record.slot = Slot::Ended(msg.outcome);
        }
        if self.shutdown.is_none() {
            self.admit(ctx);
        }
        self.maybe_finish_shutdown(ctx);
    }
}

/// A snapshot of one transfer; `None` for an id this engine never issued.
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
/// this engine never issued.
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

/// Receive [`TransferEvent`]s: of every transfer submitted from now on (`only: None`), or of one
/// transfer (`only: Some(id)`; a subscriber that arrives after that transfer ended still
/// receives its `Ended` event).
///
/// The recipient is held weakly and sent to with `do_send`: a subscription never keeps an actor
/// alive, and a slow or stopped subscriber never stalls a transfer.
#[derive(Debug, Clone, Message)]
#[rtype(result = "SubscriptionId")]
pub struct Subscribe {
    /// Who receives the events.
    pub recipient: Recipient<TransferEvent>,
    /// One transfer, or all.
    pub only: Option<TransferId>,
}

impl Subscribe {
    /// Every transfer's events.
    pub fn all(recipient: Recipient<TransferEvent>) -> Self {
        Subscribe {
            recipient,
            only: None,
        }
    }

    /// One transfer's events.
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
}

impl Handler<SetLimits> for Engine {
    type Result = ();

    fn handle(&mut self, msg: SetLimits, ctx: &mut Self::Context) {
        if let Some(n) = msg.max_active {
            self.max_active = n.max(1);
        }
        if let Some(n) = msg.max_per_host {
            self.max_per_host = n.map(|n| n.max(1));
        }
        if self.shutdown.is_none() {
            self.admit(ctx);
        }
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
            let queued: Vec<TransferId> = self.queue.values().copied().collect();
            for id in queued {
                self.end_queued(
                    id,
                    Outcome::Failed {
                        bytes: 0,
                        error: TransferError::Shutdown,
                    },
                );
            }
            for record in self.records.values() {
                if let Slot::Active { addr } = &record.slot {
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
