//! The transfer actor: one per transfer, on a worker thread, owning its stream from the first
//! byte to the `Ended` event, through retries, pauses and resumes.
//!
//! The actor runs its I/O as *attempts*: each is a future (see `download`, `upload`, `fetch`)
//! wrapped in [`futures::future::Abortable`] and spawned into the actor's own context, so the
//! actor keeps answering messages while bytes flow. A [`Cancel`](crate::Cancel) or
//! [`Pause`](crate::Pause) aborts the attempt: the abort flag is checked before the I/O future
//! is polled again, so not one more byte is read or written, and actix drops the future
//! (closing the connection, so it never returns to the pool) before the attempt's completion
//! runs. Then the write in flight, if any, is awaited (the `.part` length is now exactly what
//! is on disk), and only then is the `.part` removed or kept, the event published and the
//! request answered: reply and event always agree.
//!
//! The life of a transfer, as phases:
//!
//! ```text
//! Preparing ─▶ Running ─▶ Settling ─┬─▶ Backoff ─▶ Running ...   (retryable failure)
//!                 │                 ├─▶ Paused ──▶ Running ...   (Pause, then Resume)
//!                 ▼                 └─▶ Finishing ─▶ Ended       (cancel, final failure)
//!             Finishing ─▶ Ended                                 (body complete: verify, rename)
//! ```
//!
//! *Finishing* is not abortable: a cancel arriving then is answered `NotActive` with the real
//! end once it is known. Exactly one `Ended`: [`TransferActor::finish`] is the only place that
//! publishes it, it runs at most once, and `stopped()` calls it with a `Panicked` error if the
//! actor stops any other way (a panic in the actor).

mod download;
mod fetch;

mod segmented;
mod upload;

use std::{
    cell::{Cell, RefCell},
    fs::File,
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use actix::{fut::wrap_future, prelude::*};
use awc::{Client, ClientResponse};
use bytes::Bytes;
use futures::{
    channel::oneshot,
    future::{select, AbortHandle, Abortable, Aborted, Either},
    FutureExt, StreamExt,
};
use tracing::Instrument;

use crate::event::report::{Finished, Parked, Reporter};
use crate::{
    config::Config,
    error::{CancelError, EndState, TimeoutPhase, TransferError},
    event::outbox,
    event::status::{Progress, TransferState},
    event::subscribers::{Delivery, Subscribers},
    event::{EventKind, Headers, Outcome, Output, TransferEvent, TransferId},
    file::policy::Partial,
    file::sink::{self, Drain, Placement, Writer},
    http,
    request::{Job, JobKind},
    throttle::Bucket,
};

/// Everything the Engine hands a worker to start a transfer (all `Send`).
pub(crate) struct Setup {
    pub(crate) id: TransferId,
    pub(crate) job: Job,
    pub(crate) cfg: Arc<Config>,
    pub(crate) subs: Arc<Subscribers>,
    pub(crate) progress: Arc<Progress>,
    /// This transfer's own bandwidth limit, and the engine's.
    pub(crate) rate: Arc<Bucket>,
    pub(crate) global_rate: Arc<Bucket>,
    pub(crate) peers: Arc<[actix_rt::ArbiterHandle]>,
    /// Where to report to the Engine, one shared by its transfers (cloning it allocates).
    pub(crate) engine: Arc<Reporter>,
    pub(crate) worker: usize,
    /// The seq of the first event this actor publishes (the Engine published `Queued`).
    pub(crate) next_seq: u64,
}

/// Engine → transfer: cancel (the Engine forwards [`Cancel`](crate::Cancel)), and answer with
/// this [`Reply`] once it took effect: the asker's own reply channel, answered the moment the
/// transfer ends, without the Engine (one more thread, or one more turn of a busy thread) in
/// between.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CancelTransfer(pub(crate) Reply);

/// Engine → transfer: pause (the Engine forwards [`Pause`](crate::Pause)); answered like
/// [`CancelTransfer`].
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PauseTransfer(pub(crate) Reply);

/// Engine → transfer: a paused transfer was admitted again; continue.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ResumeTransfer;

/// Engine → transfer: stop now and fail with this error (shutdown). The `.part` file stays.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AbortTransfer(pub(crate) TransferError);

/// Why the running attempt is being stopped.
#[derive(Debug, Clone)]
enum Stop {
    Pause,
    Cancel,
    Fail(TransferError),
}

enum Phase {
    /// Creating the `.part` file (not abortable: the file would be created anyway).
    Preparing,
    /// An attempt is in flight.
    Running(AbortHandle),
    /// An attempt stopped; waiting for its write in flight before deciding what is next.
    Settling,
    /// Waiting before the next attempt.
    Backoff(SpawnHandle),
    /// Paused: no connection, the writer kept, waiting for the Engine's `ResumeTransfer`.
    Paused,
    /// The end is decided; cleaning up or moving the file into place.
    Finishing,
    /// `Ended` was published.
    Ended(EndState),
}

/// The outcome of a transfer whose result is `output`.
fn completed(bytes: u64, status: u16, url: String, output: Output) -> Outcome {
    Outcome::Completed {
        bytes,
        status,
        url,
        output,
    }
}

/// What an attempt produced when its body was complete.
pub(crate) enum Done {
    /// A download: the verified `.part` file, all writes landed.
    File {
        file: File,
        bytes: u64,
        status: u16,
        url: String,
    },
    /// A fetch or upload: the response body.
    Memory {
        body: Bytes,
        bytes: u64,
        status: u16,
        url: String,
    },
}

/// What the idle/headers watchdog is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// A connection and then the response headers, since `since` (the attempt's start).
    Request,
    /// The response headers, since `since` (the end of an upload body).
    Headers,
    /// The next body byte in either direction, since `since`.
    Body,
}

/// State shared by the actor and its attempt futures (one thread, so `Rc` and `Cell`).
pub(crate) struct Ctx {
    pub(crate) id: TransferId,
    pub(crate) job: Job,
    pub(crate) cfg: Arc<Config>,
    pub(crate) client: Client,
    progress: Arc<Progress>,
    subs: Arc<Subscribers>,
    rate: Arc<Bucket>,
    global_rate: Arc<Bucket>,
    /// Every worker, and the index of this transfer's own (segmented downloads).
    pub(crate) peers: Arc<[actix_rt::ArbiterHandle]>,
    pub(crate) worker: usize,
    /// Fired when a segment and its writes are gone; awaited before any stop takes effect.
    quiescence: RefCell<Vec<oneshot::Receiver<()>>>,
    /// A segmented attempt failed: later attempts are single streams.
    pub(crate) no_segments: Cell<bool>,
    /// The attempt that just failed was segmented: one single-stream retry is owed, whatever
    /// the error (a server whose ranges misbehave may still serve the whole file).
    pub(crate) segment_fallback: Cell<bool>,
    seq: Cell<u64>,
    bytes: Cell<u64>,
    estimated: Cell<Option<u64>>,
    next_progress: Cell<Instant>,
    emitted: Cell<Option<u64>>,
    began: Cell<bool>,
    wait: Cell<Wait>,
    since: Cell<Instant>,
    /// The sleeping watchdog, woken when `wait` changes (its deadline may now be earlier).
    rearm: RefCell<Option<Waker>>,
    placement: RefCell<Option<Placement>>,
    /// The `.part` file between attempts (downloads).
    writer: RefCell<Option<Writer>>,
    drain: Drain,
    /// Downloads: the `If-Range` validator of the file being written, when the server gave one.
    pub(crate) validator: RefCell<Option<String>>,
    /// Downloads: the URL that answered with `validator` when a redirect led there. A resume
    /// is asked of it directly (as Chrome does): through the redirect, its `Range` and
    /// `If-Range` would be stripped on the way to another origin.
    pub(crate) resume_url: RefCell<Option<url::Url>>,
    /// Downloads: the server's range support proved broken; never send `Range` again.
    pub(crate) no_ranges: Cell<bool>,
    /// The `Retry-After` of the last failed response.
    pub(crate) retry_after: Cell<Option<Duration>>,
    /// An error from our own side of a request body (reading the upload file).
    body_error: RefCell<Option<TransferError>>,
}

impl Ctx {
    fn delivery(&self) -> Delivery {
        if self.cfg.events_at_turn_end {
            Delivery::EndOfTurn
        } else {
            Delivery::Now
        }
    }

    fn publish(&self, kind: EventKind) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.subs.publish(
            TransferEvent {
                id: self.id,
                seq,
                kind,
            },
            self.delivery(),
        );
    }

    /// Record the estimate and publish `Began` the first time (with the `headers`, built only
    /// then); after a retry or resume, publish a `Progress` with where the transfer continues
    /// from instead.
    pub(crate) fn began(
        &self,
        status: Option<u16>,
        headers: impl FnOnce() -> Headers,
        estimated: Option<u64>,
    ) {
        self.estimated.set(estimated);
        self.progress.set_estimated(estimated);
        if self.began.replace(true) {
            self.emit_progress();
        } else {
            self.publish(EventKind::Began {
                status,
                headers: headers(),
                bytes_estimated: estimated,
            });
        }
        self.next_progress
            .set(later(Instant::now(), self.cfg.progress_interval));
    }

    /// The total announced by the response that started this transfer, if any.
    pub(crate) fn estimated_total(&self) -> Option<u64> {
        self.estimated.get().filter(|_| self.began.get())
    }

    /// Count `n` body bytes moved: the per-chunk hot path.
    pub(crate) fn moved(&self, n: usize) {
        let bytes = self.bytes.get() + n as u64;
        self.bytes.set(bytes);
        self.progress.set_transferred(bytes);
        let now = Instant::now();
        self.since.set(now);
        if now >= self.next_progress.get() {
            self.next_progress
                .set(later(now, self.cfg.progress_interval));
            self.emit_progress();
        }
    }

    /// Segmented downloads: `sum` bytes landed across all segments. Moves the idle deadline when
    /// it grew, and publishes a throttled `Progress`.
    pub(crate) fn segments_moved(&self, sum: u64) {
        if sum > self.bytes.get() {
            let grown = (sum - self.bytes.get()) as usize;
            self.moved(grown);
        }
    }

    /// Await this `rx` before a stop takes effect (a segment on another worker).
    pub(crate) fn watch_quiescence(&self, rx: oneshot::Receiver<()>) {
        self.quiescence.borrow_mut().push(rx);
    }

    /// Pay for `n` bytes under the bandwidth limits: sleep off any debt before the next chunk.
    /// Throttling is not a stall: the idle deadline moves past the sleep.
    pub(crate) async fn throttle(&self, n: usize) {
        let wait = self.rate.take(n).max(self.global_rate.take(n));
        if !wait.is_zero() {
            self.since.set(Instant::now() + wait);
            actix_rt::time::sleep(wait).await;
        }
    }

    /// The body is done: one last `Progress` unless the last one already said it.
    pub(crate) fn body_done(&self) {
        if self.emitted.get() != Some(self.bytes.get()) {
            self.emit_progress();
        }
    }

    fn emit_progress(&self) {
        let bytes = self.bytes.get();
        self.emitted.set(Some(bytes));
        self.publish(EventKind::Progress {
            bytes_transferred: bytes,
            bytes_estimated: self.estimated.get(),
        });
    }

    /// Set the byte count (a resume continues from the bytes on disk; a restart from zero).
    pub(crate) fn set_bytes(&self, n: u64) {
        self.bytes.set(n);
        self.progress.set_transferred(n);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// The watchdog now waits for a connection and the response headers.
    pub(crate) fn await_request(&self) {
        self.wait_for(Wait::Request);
    }

    /// The watchdog now waits for the response headers.
    pub(crate) fn await_headers(&self) {
        self.wait_for(Wait::Headers);
    }

    /// The watchdog now waits for body bytes (idle timeout).
    pub(crate) fn await_body(&self) {
        self.wait_for(Wait::Body);
    }

    fn wait_for(&self, wait: Wait) {
        self.wait.set(wait);
        self.since.set(Instant::now());
        if let Some(watchdog) = self.rearm.borrow_mut().take() {
            watchdog.wake();
        }
    }

    pub(crate) fn redirected(&self, url: &url::Url) {
        self.progress.set_final_url(url.as_str());
    }

    pub(crate) fn set_body_error(&self, e: TransferError) {
        *self.body_error.borrow_mut() = Some(e);
    }

    /// Our own body source's error, if it failed (it explains the send error awc reports).
    pub(crate) fn take_body_error(&self) -> Option<TransferError> {
        self.body_error.borrow_mut().take()
    }

    /// The `.part` writer (downloads), taken by the attempt that writes to it.
    pub(crate) fn take_writer(&self) -> Result<Writer, TransferError> {
        self.writer
            .borrow_mut()
            .take()
            .ok_or_else(|| TransferError::Internal("download attempt without its .part".into()))
    }

    pub(crate) fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Note a failed response's `Retry-After` for the backoff.
    pub(crate) fn note_retry_after(&self, response: &ClientResponse) {
        self.retry_after
            .set(crate::retry::retry_after(response.headers()));
    }

    /// Fails when no byte moved for the idle timeout during a body, or the headers did not come
    /// within the headers timeout. Never ends otherwise. A zero timeout is no limit, and one
    /// too long to be a point in time never passes.
    async fn watchdog(self: Rc<Self>) -> TransferError {
        // One timer for the attempt, moved to each new deadline.
        let mut sleep = std::pin::pin!(actix_rt::time::sleep_until(Instant::now().into()));
        loop {
            let (limit, phase) = match self.wait.get() {
                // Connecting has its own timeout (awc's connector reports it as Connect); with
                // either timeout off, this wait has no limit.
                Wait::Request => {
                    let (connect, headers) = (self.cfg.connect_timeout, self.cfg.headers_timeout);
                    let limit = if connect.is_zero() || headers.is_zero() {
                        Duration::ZERO
                    } else {
                        connect.saturating_add(headers)
                    };
                    (limit, TimeoutPhase::Headers)
                }
                Wait::Headers => (self.cfg.headers_timeout, TimeoutPhase::Headers),
                Wait::Body => (self.cfg.idle_timeout, TimeoutPhase::Idle),
            };
            let deadline = deadline(self.since.get(), limit);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return TransferError::Timeout(phase);
            }
            // Sleep until the deadline, or until the phase changes (a shorter limit may apply):
            // `wait_for` takes the registered waker out of `rearm` and wakes it.
            if let Some(deadline) = deadline {
                sleep.as_mut().reset(deadline.into());
            }
            let mut armed = false;
            futures::future::poll_fn(|cx| {
                if armed && self.rearm.borrow().is_none() {
                    return Poll::Ready(());
                }
                if deadline.is_some() && std::future::Future::poll(sleep.as_mut(), cx).is_ready() {
                    return Poll::Ready(());
                }
                armed = true;
                *self.rearm.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            self.rearm.borrow_mut().take();
        }
    }
}

/// When a limit of `limit` counted from `since` passes: `None` when it never does, because
/// the limit is zero (the engine's timeouts read zero as "no limit") or too long to be a point
/// in time (a huge timeout saturates instead of overflowing).
fn deadline(since: Instant, limit: Duration) -> Option<Instant> {
    if limit.is_zero() {
        None
    } else {
        since.checked_add(limit)
    }
}

/// `now + d`, saturating at a point so far ahead that it is never reached.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_AHEAD))
        .unwrap_or(now)
}

/// Far enough ahead to be never, near enough to be a point in time on every platform.
const FAR_AHEAD: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Lets the rest of a thread run between two chunks of one body: the other transfers there,
/// and the transfer's own mailbox, where a `Cancel` may wait. Tokio alone would let a task run
/// 128 reads (~4 MiB) per turn, and with N fast transfers on a thread a message then waits
/// N such turns (12 ms at p99 with 33 transfers in the load bench; 0.5 ms when yielding every
/// chunk). A yield costs ~1,900 instructions (~0.5 us), against ~20 us to read and copy a
/// 32 KiB chunk; the first read of a body does not yield, so a small fetch pays nothing.
#[derive(Default)]
pub(crate) struct ChunkYield {
    started: bool,
}

impl ChunkYield {
    pub(crate) async fn before_read(&mut self) {
        if self.started {
            actix_rt::task::yield_now().await;
        }
        self.started = true;
    }
}

/// Reads a response body chunk by chunk: counts bytes, maps errors, checks the length at the
/// end, and yields to the rest of its thread between chunks, so a cancel is seen promptly.
pub(crate) struct BodyReader {
    response: ClientResponse,
    /// Bytes this response announced.
    expected: Option<u64>,
    received: u64,
    /// Bytes already on disk before this response (a resume): reported in `Truncated` and
    /// `Overlong`.
    base: u64,
    counted: bool,
    yields: ChunkYield,
}

impl BodyReader {
    /// `counted`: whether these bytes are the transfer's progress (not for an upload's reply).
    pub(crate) fn new(response: ClientResponse, expected: Option<u64>, counted: bool) -> Self {
        BodyReader {
            response,
            expected,
            received: 0,
            base: 0,
            counted,
            yields: ChunkYield::default(),
        }
    }

    /// This body continues a file that already holds `base` bytes.
    pub(crate) fn after(mut self, base: u64) -> Self {
        self.base = base;
        self
    }

    fn truncated(&self, expected: u64) -> TransferError {
        self.rebased(TransferError::Truncated {
            expected,
            received: self.received,
        })
    }

    /// An error of this body in terms of the whole file: `Truncated` and `Overlong` count the
    /// bytes before it.
    fn rebased(&self, error: TransferError) -> TransferError {
        match error {
            TransferError::Truncated { expected, received } => TransferError::Truncated {
                expected: self.base + expected,
                received: self.base + received,
            },
            TransferError::Overlong { expected, received } => TransferError::Overlong {
                expected: self.base + expected,
                received: self.base + received,
            },
            other => other,
        }
    }

    pub(crate) async fn next(&mut self, ctx: &Ctx) -> Result<Option<Bytes>, TransferError> {
        self.yields.before_read().await;
        let item = self.response.next().await;
        self.accept(ctx, item).await
    }

    /// The next chunk only if the connection has it without waiting (`None`: it would wait).
    /// A slow download reads this way after letting its bytes gather in the socket.
    pub(crate) async fn ready(
        &mut self,
        ctx: &Ctx,
    ) -> Option<Result<Option<Bytes>, TransferError>> {
        // Polling a stream once and dropping the `next()` future loses nothing.
        let item = self.response.next().now_or_never()?;
        Some(self.accept(ctx, item).await)
    }

    async fn accept(
        &mut self,
        ctx: &Ctx,
        item: Option<Result<Bytes, awc::error::PayloadError>>,
    ) -> Result<Option<Bytes>, TransferError> {
        match item {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if let Some(expected) = self.expected.filter(|e| self.received > *e) {
                    return Err(self.rebased(TransferError::Overlong {
                        expected,
                        received: self.received,
                    }));
                }
                if self.counted {
                    ctx.moved(chunk.len());
                    ctx.throttle(chunk.len()).await;
                } else {
                    ctx.since.set(Instant::now());
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(self.rebased(http::payload_error(e, self.expected, self.received))),
            None => {
                if let Some(expected) = self.expected.filter(|e| self.received != *e) {
                    return Err(self.truncated(expected));
                }
                if self.counted {
                    ctx.body_done();
                }
                Ok(None)
            }
        }
    }

    /// Read the rest into memory, failing with `BodyTooLarge` past `limit`.
    pub(crate) async fn collect(mut self, ctx: &Ctx, limit: u64) -> Result<Bytes, TransferError> {
        if self.expected.is_some_and(|n| n > limit) {
            return Err(TransferError::BodyTooLarge { limit });
        }
        // Reserve for the announced length only up to a point: many open transfers must not
        // each hold their whole body's worth of memory before the bytes arrive.
        let reserve = self.expected.unwrap_or(0).min(256 * 1024) as usize;
        let mut buf = bytes::BytesMut::with_capacity(reserve);
        while let Some(chunk) = self.next(ctx).await? {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(TransferError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

/// The answer to a [`Cancel`](crate::Cancel) or [`Pause`](crate::Pause), sent by the
/// transfer's actor straight into the asker's reply channel (the Engine only passed it on), so
/// no thread hop and no task turn stands between the stop and the asker. An answer dropped
/// unsent (the actor went away) says how the transfer ended.
pub(crate) struct Reply {
    tx: Option<actix::dev::OneshotSender<Result<(), CancelError>>>,
    progress: Arc<Progress>,
}

impl Reply {
    pub(crate) fn new(
        tx: Option<actix::dev::OneshotSender<Result<(), CancelError>>>,
        progress: Arc<Progress>,
    ) -> Self {
        Reply { tx, progress }
    }

    pub(crate) fn send(mut self, answer: Result<(), CancelError>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(answer);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let end = self
                .progress
                .state()
                .end_state()
                .unwrap_or(EndState::Failed);
            let _ = tx.send(Err(CancelError::NotActive(end)));
        }
    }
}

/// The transfer actor.
pub(crate) struct TransferActor {
    ctx: Rc<Ctx>,
    engine: Arc<Reporter>,
    worker: usize,
    phase: Phase,
    stop: Option<Stop>,
    attempts: u32,
    /// When `total_timeout` ends the transfer; counted from its start, without the time spent
    /// paused. `None`: no deadline.
    deadline: Option<Instant>,
    /// While paused: what was left of the deadline (see [`TransferActor::deadline`]).
    deadline_left: Option<Duration>,
    cancel_replies: Vec<Reply>,
    pause_replies: Vec<Reply>,
    kept_part: Option<std::path::PathBuf>,
    span: tracing::Span,
}

impl TransferActor {
    pub(crate) fn new(setup: Setup, client: Client) -> Self {
        let kind = match setup.job.kind {
            JobKind::Download(_) => "download",
            JobKind::Upload { .. } => "upload",
            JobKind::Fetch { .. } => "fetch",
        };
        let span = tracing::debug_span!(
            "transfer",
            id = setup.id.get(),
            kind,
            url = %crate::redact::url(&setup.job.request.url)
        );
        let now = Instant::now();
        let setup_deadline = setup.cfg.total_timeout.and_then(|t| deadline(now, t));
        let ctx = Ctx {
            id: setup.id,
            job: setup.job,
            cfg: setup.cfg,
            client,
            progress: setup.progress,
            subs: setup.subs,
            rate: setup.rate,
            global_rate: setup.global_rate,
            peers: setup.peers,
            worker: setup.worker,
            quiescence: RefCell::new(Vec::new()),
            no_segments: Cell::new(false),
            segment_fallback: Cell::new(false),
            seq: Cell::new(setup.next_seq),
            bytes: Cell::new(0),
            estimated: Cell::new(None),
            next_progress: Cell::new(now),
            emitted: Cell::new(None),
            began: Cell::new(false),
            wait: Cell::new(Wait::Request),
            since: Cell::new(now),
            rearm: RefCell::new(None),
            placement: RefCell::new(None),
            writer: RefCell::new(None),
            drain: Drain::default(),
            validator: RefCell::new(None),
            resume_url: RefCell::new(None),
            no_ranges: Cell::new(false),
            retry_after: Cell::new(None),
            body_error: RefCell::new(None),
        };
        TransferActor {
            ctx: Rc::new(ctx),
            engine: setup.engine,
            worker: setup.worker,
            phase: Phase::Preparing,
            stop: None,
            attempts: 0,
            deadline: setup_deadline,
            deadline_left: None,
            cancel_replies: Vec::new(),
            pause_replies: Vec::new(),
            kept_part: None,
            span,
        }
    }

    /// Downloads: create the `.part` file off-thread, then start.
    fn prepare(&mut self, ctx: &mut Context<Self>) {
        let JobKind::Download(opts) = &self.ctx.job.kind else {
            return self.start_attempt(ctx);
        };
        let dir = self.ctx.cfg.download_dir.clone();
        let (target, conflict) = (opts.target.clone(), opts.conflict);
        let hashed = opts.expect_sha256.is_some();
        let fsync = opts.fsync.unwrap_or(self.ctx.cfg.fsync);
        let job = crate::file::blocking::run(move || {
            sink::prepare_part(&dir, &target, conflict)
                .map(|(p, f)| (p, Writer::new(f, hashed).write_behind(fsync)))
        });
        ctx.spawn(wrap_future(job).map(|res, act: &mut Self, ctx| {
            match res.unwrap_or_else(|e| Err(e.into())) {
                Ok((placement, writer)) => {
                    *act.ctx.placement.borrow_mut() = Some(placement);
                    *act.ctx.writer.borrow_mut() = Some(writer);
                    act.after_stop_point(None, ctx);
                }
                Err(error) => act.after_stop_point(Some(error), ctx),
            }
        }));
    }

    fn start_attempt(&mut self, ctx: &mut Context<Self>) {
        self.attempts += 1;
        let (handle, registration) = AbortHandle::new_pair();
        let c = Rc::clone(&self.ctx);
        let total = self.deadline;
        let io = async move {
            c.await_request();
            c.retry_after.set(None);
            let run = std::pin::pin!(async {
                match &c.job.kind {
                    JobKind::Download(opts) => download::run(&c, opts).await,
                    JobKind::Upload { file, size } => upload::run(&c, file, *size).await,
                    JobKind::Fetch { .. } => fetch::run(&c).await,
                }
            });
            let watchdog = std::pin::pin!(Rc::clone(&c).watchdog());
            let guarded = async {
                match select(run, watchdog).await {
                    Either::Left((res, _)) => res,
                    Either::Right((err, _)) => Err(err),
                }
            };
            match total {
                Some(at) => {
                    actix_rt::time::timeout(at.saturating_duration_since(Instant::now()), guarded)
                        .await
                        .unwrap_or(Err(TransferError::Timeout(TimeoutPhase::Total)))
                }
                None => guarded.await,
            }
        }
        .instrument(self.span.clone());
        self.phase = Phase::Running(handle);
        ctx.spawn(
            wrap_future(Abortable::new(io, registration))
                .map(|res, act: &mut Self, ctx| act.attempt_done(res, ctx)),
        );
    }

    /// An attempt ended: aborted, failed, or its body is complete. The I/O future has been
    /// dropped by now (actix drops a mapped future before the closure runs).
    fn attempt_done(
        &mut self,
        res: Result<Result<Done, TransferError>, Aborted>,
        ctx: &mut Context<Self>,
    ) {
        match res {
            Ok(Ok(done)) => self.complete(done, ctx),
            Ok(Err(error)) => {
                tracing::debug!(parent: &self.span, %error, attempt = self.attempts, "attempt failed");
                self.settle(Some(error), ctx);
            }
            Err(Aborted) => self.settle(None, ctx),
        }
    }

    /// Take back the `.part` writer once its write in flight landed, then go on.
    fn settle(&mut self, error: Option<TransferError>, ctx: &mut Context<Self>) {
        self.phase = Phase::Settling;
        let drain = self.ctx.drain();
        // Bytes still buffered are landed for whatever may continue from the file (a retry, a
        // resume, a kept `.part`), not for a cancel that removes it.
        let discarded = matches!(self.stop, Some(Stop::Cancel))
            && self.partial_policy(|o| o.on_cancel) == Partial::Delete;
        let segments = std::mem::take(&mut *self.ctx.quiescence.borrow_mut());
        let quiet = async move {
            // Segments on other workers stop reading and writing before anything else happens.
            for rx in segments {
                let _ = rx.await;
            }
            drain.reclaim(!discarded).await
        };
        ctx.spawn(wrap_future(quiet).map(move |writer, act: &mut Self, ctx| {
            if let Some(w) = writer {
                *act.ctx.writer.borrow_mut() = Some(w);
            }
            act.after_stop_point(error, ctx);
        }));
    }

    /// Decide what comes next at a point where no I/O runs: a requested stop wins, then a
    /// failure is retried or ends the transfer, else the next attempt starts.
    fn after_stop_point(&mut self, error: Option<TransferError>, ctx: &mut Context<Self>) {
        match (self.stop.take(), error) {
            (Some(Stop::Cancel), _) => self.end_cancelled(ctx),
            (Some(Stop::Fail(error)), _) => self.end_failed(error, false, ctx),
            (Some(Stop::Pause), _) => self.park(ctx),
            (None, Some(error)) => self.retry_or_fail(error, ctx),
            (None, None) => self.start_attempt(ctx),
        }
    }

    fn retry_or_fail(&mut self, error: TransferError, ctx: &mut Context<Self>) {
        let policy = &self.ctx.cfg.retry;
        let max = self.ctx.job.max_attempts.unwrap_or(policy.max_attempts);
        let checksum = matches!(
            error,
            TransferError::ChecksumMismatch { .. } | TransferError::SizeMismatch { .. }
        );
        let fallback = self.ctx.segment_fallback.replace(false);
        // The total deadline ends the transfer, however many attempts are left.
        let out_of_time = matches!(error, TransferError::Timeout(TimeoutPhase::Total));
        if out_of_time
            || self.attempts >= max
            || self.attempts == 0
            || !(fallback || policy.retryable(&error, &self.ctx.job.request.method))
        {
            return self.end_failed(error, checksum, ctx);
        }
        // A server that asks for a longer wait than the policy allows gets no early retry.
        let Some(delay) =
            policy.delay(self.attempts, self.ctx.id.get(), self.ctx.retry_after.get())
        else {
            tracing::debug!(parent: &self.span, "Retry-After beyond the policy; not retrying");
            return self.end_failed(error, checksum, ctx);
        };
        if let Some(left) = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .filter(|left| delay >= *left)
        {
            // The next attempt would start past the deadline: end at the deadline instead.
            tracing::debug!(parent: &self.span, ?delay, "backoff past the total deadline");
            let handle = ctx.run_later(left, |act, ctx| {
                if let Phase::Backoff(_) = act.phase {
                    act.end_failed(TransferError::Timeout(TimeoutPhase::Total), false, ctx);
                }
            });
            self.phase = Phase::Backoff(handle);
            return;
        }
        tracing::debug!(parent: &self.span, ?delay, attempt = self.attempts, "retrying");
        self.ctx.publish(EventKind::Retrying {
            attempt: self.attempts,
            delay,
            error,
        });
        let handle = ctx.run_later(delay, |act, ctx| {
            if let Phase::Backoff(_) = act.phase {
                act.start_attempt(ctx);
            }
        });
        self.phase = Phase::Backoff(handle);
    }

    /// The body is complete: downloads are moved into place (not abortable), the rest end now.
    fn complete(&mut self, done: Done, ctx: &mut Context<Self>) {
        self.phase = Phase::Finishing;
        let (file, bytes, status, url) = match done {
            Done::Memory {
                body,
                bytes,
                status,
                url,
            } => {
                let output = Output::Body(body);
                return self.end(completed(bytes, status, url, output), ctx);
            }
            Done::File {
                file,
                bytes,
                status,
                url,
            } => (file, bytes, status, url),
        };
        let placement = self.ctx.placement.borrow().clone();
        let (Some(placement), JobKind::Download(opts)) = (placement, &self.ctx.job.kind) else {
            let error = TransferError::Internal("download without placement".into());
            return self.end_failed(error, false, ctx);
        };
        let (conflict, fsync) = (opts.conflict, opts.fsync.unwrap_or(self.ctx.cfg.fsync));
        let job = crate::file::blocking::run(move || {
            sink::finalize(file, &placement, conflict, bytes, fsync)
        });
        ctx.spawn(
            wrap_future(job).map(move |res, act: &mut Self, ctx| match res {
                Ok(Ok(path)) => act.end(completed(bytes, status, url, Output::File(path)), ctx),
                Ok(Err((error, file))) => {
                    // The file comes back so that its removal happens while it is still held.
                    let mut writer = Writer::new(file, false);
                    writer.written = bytes;
                    *act.ctx.writer.borrow_mut() = Some(writer);
                    act.end_failed(error, false, ctx)
                }
                Err(e) => act.end_failed(e.into(), false, ctx),
            }),
        );
    }

    fn end_cancelled(&mut self, ctx: &mut Context<Self>) {
        let keep = self.partial_policy(|o| o.on_cancel) == Partial::Keep;
        let outcome = Outcome::Cancelled {
            bytes: self.ctx.bytes(),
        };
        self.cleanup_then_end(outcome, !keep, ctx);
    }

    /// Fail for good; the `.part` is removed when the policy (or a checksum mismatch) says so.
    fn end_failed(&mut self, error: TransferError, force_delete: bool, ctx: &mut Context<Self>) {
        let empty = self
            .ctx
            .writer
            .borrow()
            .as_ref()
            .is_some_and(|w| w.written == 0);
        // An empty .part holds nothing to resume from: it is never kept.
        let delete =
            force_delete || empty || self.partial_policy(|o| o.on_failure) == Partial::Delete;
        let outcome = Outcome::Failed {
            bytes: self.ctx.bytes(),
            error,
            attempts: self.attempts,
        };
        self.cleanup_then_end(outcome, delete, ctx);
    }

    fn partial_policy(
        &self,
        pick: impl Fn(&crate::request::DownloadOptions) -> Partial,
    ) -> Partial {
        match &self.ctx.job.kind {
            JobKind::Download(opts) => pick(opts),
            _ => Partial::Delete,
        }
    }

    /// Close the `.part` file, remove it when asked (off-thread), then end.
    fn cleanup_then_end(&mut self, outcome: Outcome, remove_part: bool, ctx: &mut Context<Self>) {
        self.phase = Phase::Finishing;
        let held = self.ctx.writer.borrow_mut().take().map(|w| w.file);
        let placement = self.ctx.placement.borrow().clone();
        if !remove_part {
            self.kept_part = placement.as_ref().map(|p| p.part.clone());
        }
        match placement.filter(|_| remove_part) {
            Some(placement) => {
                // The file stays open (and locked) until its name is gone.
                ctx.spawn(
                    wrap_future(sink::remove_part(placement, held))
                        .map(move |(), act: &mut Self, ctx| act.end(outcome, ctx)),
                );
            }
            None => {
                drop(held);
                self.end(outcome, ctx)
            }
        }
    }

    /// Pause: keep the writer, give the admission slot back, answer the pause requests.
    fn park(&mut self, _ctx: &mut Context<Self>) {
        self.phase = Phase::Paused;
        // Time spent paused does not count toward the total deadline: keep what is left.
        self.deadline_left = self
            .deadline
            .take()
            .map(|d| d.saturating_duration_since(Instant::now()));
        if let Some(w) = self.ctx.writer.borrow().as_ref() {
            // What counts now is what is on disk.
            self.ctx.set_bytes(if w.damaged { 0 } else { w.written });
        }
        let bytes = self.ctx.bytes();
        self.ctx.progress.set_state(TransferState::Paused);
        self.ctx.progress.set_can_resume(self.can_resume());
        self.ctx.publish(EventKind::Paused {
            bytes_transferred: bytes,
        });
        // `Paused` goes to the subscribers before the Engine or the asker hear of it.
        outbox::send_events();
        self.engine.parked.do_send(Parked { id: self.ctx.id });
        for tx in self.pause_replies.drain(..) {
            tx.send(Ok(()));
        }
    }

    /// Whether a resume would continue from the bytes kept, rather than from zero.
    fn can_resume(&self) -> bool {
        let c = &self.ctx;
        let writer_ok = c
            .writer
            .borrow()
            .as_ref()
            .is_some_and(|w| w.written > 0 && !w.damaged);
        writer_ok && c.validator.borrow().is_some() && !c.no_ranges.get()
    }

    fn end(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        self.finish(outcome);
        ctx.stop();
    }

    /// Publish `Ended`, answer pending requests, tell the Engine. Runs at most once.
    fn finish(&mut self, outcome: Outcome) {
        if let Phase::Ended(_) = self.phase {
            return;
        }
        let end = outcome.end_state();
        self.phase = Phase::Ended(end);
        let c = &self.ctx;
        c.progress.set_transferred(outcome.bytes());
        c.progress.set_state(TransferState::from(end));
        let seq = c.seq.get();
        c.seq.set(seq + 1);
        c.subs.publish_ended(
            TransferEvent {
                id: c.id,
                seq,
                kind: EventKind::Ended(outcome.clone()),
            },
            c.delivery(),
        );
        tracing::debug!(parent: &self.span, outcome = %end, bytes = outcome.bytes(), "ended");
        if !self.cancel_replies.is_empty() || !self.pause_replies.is_empty() {
            // The asker learns of the end after the subscribers do.
            outbox::send_events();
        }
        for (i, tx) in self.cancel_replies.drain(..).enumerate() {
            let reply = if i == 0 && end == EndState::Cancelled {
                Ok(())
            } else {
                Err(CancelError::NotActive(end))
            };
            tx.send(reply);
        }
        for tx in self.pause_replies.drain(..) {
            tx.send(Err(CancelError::NotActive(end)));
        }
        outbox::finished(
            &self.engine,
            Finished {
                id: c.id,
                outcome,
                worker: self.worker,
                kept_part: self.kept_part.take(),
            },
        );
    }

    /// Ask the transfer to stop: at once where no I/O runs, else by aborting the attempt (the
    /// stop then takes effect once its write in flight landed). Cancel and failure override a
    /// pending pause; otherwise the first request wins.
    fn request_stop(&mut self, stop: Stop, ctx: &mut Context<Self>) {
        let overrides =
            matches!(self.stop, None | Some(Stop::Pause)) && !matches!(stop, Stop::Pause);
        match &self.phase {
            Phase::Running(handle) => {
                if self.stop.is_none() || overrides {
                    handle.abort();
                    self.stop = Some(stop);
                }
            }
            Phase::Preparing | Phase::Settling => {
                if self.stop.is_none() || overrides {
                    self.stop = Some(stop);
                }
            }
            Phase::Backoff(handle) => {
                ctx.cancel_future(*handle);
                self.stop = Some(stop);
                self.after_stop_point(None, ctx);
            }
            Phase::Paused => match stop {
                Stop::Pause => {
                    for tx in self.pause_replies.drain(..) {
                        tx.send(Ok(()));
                    }
                }
                other => {
                    self.stop = Some(other);
                    self.after_stop_point(None, ctx);
                }
            },
            Phase::Finishing | Phase::Ended(_) => {}
        }
    }

    /// Request a cancel or a pause, and reply once it took effect (or with how the transfer
    /// ended instead).
    fn stop_with_reply(&mut self, stop: Stop, reply: Reply, ctx: &mut Context<Self>) {
        if let Phase::Ended(end) = self.phase {
            reply.send(Err(CancelError::NotActive(end)));
            return;
        }
        match stop {
            Stop::Pause => self.pause_replies.push(reply),
            _ => self.cancel_replies.push(reply),
        }
        self.request_stop(stop, ctx);
    }
}

impl Actor for TransferActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(parent: &self.span, "started");
        self.prepare(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if !matches!(self.phase, Phase::Ended(_)) {
            self.finish(Outcome::Failed {
                bytes: self.ctx.bytes(),
                error: TransferError::Panicked("the transfer actor stopped unexpectedly".into()),
                attempts: self.attempts,
            });
        }
    }
}

impl Handler<CancelTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, CancelTransfer(reply): CancelTransfer, ctx: &mut Self::Context) {
        self.stop_with_reply(Stop::Cancel, reply, ctx);
    }
}

impl Handler<PauseTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, PauseTransfer(reply): PauseTransfer, ctx: &mut Self::Context) {
        self.stop_with_reply(Stop::Pause, reply, ctx);
    }
}

impl Handler<ResumeTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, _: ResumeTransfer, ctx: &mut Self::Context) {
        if let Phase::Paused = self.phase {
            self.attempts = 0;
            if let Some(left) = self.deadline_left.take() {
                self.deadline = Some(later(Instant::now(), left));
            }
            self.ctx.progress.set_state(TransferState::Active);
            self.ctx.publish(EventKind::Resumed);
            self.start_attempt(ctx);
        }
    }
}

impl Handler<AbortTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, msg: AbortTransfer, ctx: &mut Self::Context) {
        self.request_stop(Stop::Fail(msg.0), ctx);
    }
}
