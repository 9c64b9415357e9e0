//! The transfer actor: one per transfer, on a worker thread, owning its stream from the first
//! byte to the `Ended` event.
//!
//! The actor runs its I/O as one *attempt*: a future (see `download`, `upload`, `fetch`) wrapped
//! in [`futures::future::Abortable`] and spawned into the actor's own context, so the actor keeps
//! answering messages while bytes flow. A [`Cancel`](crate::Cancel) aborts the attempt: the
//! abort flag is checked before the I/O future is polled again, so not one more byte is read or
//! written, and actix drops the future (closing the connection, so it never returns to the
//! pool) before the attempt's completion runs. Only then is the `.part` file removed, the
//! `Ended(Cancelled)` event published and the cancel answered: reply and event always agree.
//!
//! A finished body enters *finishing* (verify, sync, rename): that step is not abortable, and a
//! cancel arriving during it is answered `NotActive` with the real end once it is done.
//!
//! Exactly one `Ended`: [`TransferActor::finish`] is the only place that publishes it, it runs at
//! most once, and `stopped()` calls it with an `Internal` error if the actor stops any other way
//! (a panic in the actor).

mod download;
mod fetch;
mod upload;

use std::{
    cell::{Cell, RefCell},
    fs::File,
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
    time::Instant,
};

use actix::{fut::wrap_future, prelude::*};
use awc::{Client, ClientResponse};
use bytes::Bytes;
use futures::{
    channel::oneshot,
    future::{select, AbortHandle, Abortable, Either},
    StreamExt,
};
use tracing::Instrument;

use crate::{
    engine::Config,
    error::{CancelError, EndState, TimeoutPhase, TransferError},
    event::{EventKind, Headers, Outcome, Output, TransferEvent, TransferId},
    http,
    request::{Job, JobKind},
    sink::{self, Drain, Placement},
    status::{Progress, TransferState},
    subscribers::Subscribers,
};

/// Everything the Engine hands a worker to start a transfer (all `Send`).
pub(crate) struct Setup {
    pub(crate) id: TransferId,
    pub(crate) job: Job,
    pub(crate) cfg: Arc<Config>,
    pub(crate) subs: Arc<Subscribers>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) engine: Recipient<Finished>,
    pub(crate) worker: usize,
    /// The seq of the first event this actor publishes (the Engine published `Queued`).
    pub(crate) next_seq: u64,
}

/// Told to the Engine once a transfer's `Ended` event was published.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Finished {
    pub(crate) id: TransferId,
    pub(crate) outcome: Outcome,
    pub(crate) worker: usize,
}

/// Engine → transfer: cancel (the Engine forwards [`Cancel`](crate::Cancel)).
#[derive(Message)]
#[rtype(result = "Result<(), CancelError>")]
pub(crate) struct CancelTransfer;

/// Engine → transfer: stop now and fail with this error (shutdown). The `.part` file stays.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AbortTransfer(pub(crate) TransferError);

/// Why an attempt was aborted.
#[derive(Debug, Clone)]
enum Stop {
    Cancel,
    Fail(TransferError),
}

enum Phase {
    /// Creating the `.part` file (not abortable: the file would be created anyway).
    Preparing,
    /// An attempt is in flight.
    Running(AbortHandle),
    /// The outcome is decided; cleaning up or moving the file into place.
    Finishing,
    /// `Ended` was published.
    Ended(EndState),
}

/// What an attempt produced when its body was complete.
pub(crate) enum Done {
    /// A download: the `.part` file, all writes landed.
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
    /// The response headers, since `since`.
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
    seq: Cell<u64>,
    bytes: Cell<u64>,
    estimated: Cell<Option<u64>>,
    next_progress: Cell<Instant>,
    emitted: Cell<Option<u64>>,
    wait: Cell<Wait>,
    since: Cell<Instant>,
    /// The sleeping watchdog, woken when `wait` changes (its deadline may now be earlier).
    rearm: RefCell<Option<Waker>>,
    placement: RefCell<Option<Placement>>,
    part_file: RefCell<Option<File>>,
    drain: Drain,
    /// An error from our own side of a request body (reading the upload file).
    body_error: RefCell<Option<TransferError>>,
}

impl Ctx {
    fn publish(&self, kind: EventKind) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.subs.publish(TransferEvent {
            id: self.id,
            seq,
            kind,
        });
    }

    /// Publish `Began` and record the estimate.
    pub(crate) fn began(&self, status: Option<u16>, headers: Headers, estimated: Option<u64>) {
        self.estimated.set(estimated);
        self.progress.set_estimated(estimated);
        self.publish(EventKind::Began {
            status,
            headers,
            bytes_estimated: estimated,
        });
        self.next_progress
            .set(Instant::now() + self.cfg.progress_interval);
    }

    /// Count `n` body bytes moved: the per-chunk hot path.
    pub(crate) fn moved(&self, n: usize) {
        let bytes = self.bytes.get() + n as u64;
        self.bytes.set(bytes);
        self.progress.set_transferred(bytes);
        let now = Instant::now();
        self.since.set(now);
        if now >= self.next_progress.get() {
            self.next_progress.set(now + self.cfg.progress_interval);
            self.emit_progress();
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

    /// Start counting from zero again (an upload body re-sent after a redirect).
    pub(crate) fn reset_bytes(&self) {
        self.bytes.set(0);
        self.progress.set_transferred(0);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.get()
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

    /// An awc send error, unless our own body source failed first (then that error).
    pub(crate) fn take_body_error(&self) -> Option<TransferError> {
        self.body_error.borrow_mut().take()
    }

    /// The `.part` file made by the preparing step (downloads).
    pub(crate) fn take_part_file(&self) -> Option<File> {
        self.part_file.borrow_mut().take()
    }

    pub(crate) fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Fails when no byte moved for the idle timeout during a body, or the headers did not come
    /// within the headers timeout. Never ends otherwise.
    async fn watchdog(self: Rc<Self>) -> TransferError {
        loop {
            let (limit, phase) = match self.wait.get() {
                Wait::Headers => (self.cfg.headers_timeout, TimeoutPhase::Headers),
                Wait::Body => (self.cfg.idle_timeout, TimeoutPhase::Idle),
            };
            let deadline = self.since.get() + limit;
            if Instant::now() >= deadline {
                return TransferError::Timeout(phase);
            }
            // Sleep until the deadline, or until the phase changes (a shorter limit may apply).
            let mut armed = false;
            let rearmed = futures::future::poll_fn(|cx| {
                if armed && self.rearm.borrow().is_none() {
                    return Poll::Ready(());
                }
                armed = true;
                *self.rearm.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            });
            select(
                Box::pin(actix_rt::time::sleep_until(deadline.into())),
                Box::pin(rearmed),
            )
            .await;
            self.rearm.borrow_mut().take();
        }
    }
}

/// Reads a response body chunk by chunk: counts bytes, maps errors, checks the length at the
/// end, and yields to the actor's mailbox every few chunks so a cancel is seen promptly.
pub(crate) struct BodyReader {
    response: ClientResponse,
    expected: Option<u64>,
    received: u64,
    counted: bool,
    chunks: u32,
}

/// Chunks read between two yields to the mailbox (tokio would otherwise run ~128 per turn).
const CHUNKS_PER_YIELD: u32 = 16;

impl BodyReader {
    /// `counted`: whether these bytes are the transfer's progress (not for an upload's reply).
    pub(crate) fn new(response: ClientResponse, expected: Option<u64>, counted: bool) -> Self {
        BodyReader {
            response,
            expected,
            received: 0,
            counted,
            chunks: 0,
        }
    }

    pub(crate) async fn next(&mut self, ctx: &Ctx) -> Result<Option<Bytes>, TransferError> {
        self.chunks += 1;
        if self.chunks % CHUNKS_PER_YIELD == 0 {
            actix_rt::task::yield_now().await;
        }
        match self.response.next().await {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if let Some(expected) = self.expected {
                    if self.received > expected {
                        return Err(TransferError::Truncated {
                            expected,
                            received: self.received,
                        });
                    }
                }
                if self.counted {
                    ctx.moved(chunk.len());
                } else {
                    ctx.since.set(Instant::now());
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(http::payload_error(e, self.expected, self.received)),
            None => {
                if let Some(expected) = self.expected {
                    if expected != self.received {
                        return Err(TransferError::Truncated {
                            expected,
                            received: self.received,
                        });
                    }
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
        let mut buf = bytes::BytesMut::with_capacity(self.expected.unwrap_or(0) as usize);
        while let Some(chunk) = self.next(ctx).await? {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(TransferError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

/// The transfer actor.
pub(crate) struct TransferActor {
    ctx: Rc<Ctx>,
    engine: Recipient<Finished>,
    worker: usize,
    phase: Phase,
    stop: Option<Stop>,
    cancel_replies: Vec<oneshot::Sender<Result<(), CancelError>>>,
    span: tracing::Span,
}

impl TransferActor {
    pub(crate) fn new(setup: Setup, client: Client) -> Self {
        let kind = match setup.job.kind {
            JobKind::Download { .. } => "download",
            JobKind::Upload { .. } => "upload",
            JobKind::Fetch { .. } => "fetch",
        };
        let span = tracing::debug_span!(
            "transfer",
            id = setup.id.get(),
            kind,
            url = %setup.job.request.url
        );
        let now = Instant::now();
        let ctx = Ctx {
            id: setup.id,
            job: setup.job,
            cfg: setup.cfg,
            client,
            progress: setup.progress,
            subs: setup.subs,
            seq: Cell::new(setup.next_seq),
            bytes: Cell::new(0),
            estimated: Cell::new(None),
            next_progress: Cell::new(now),
            emitted: Cell::new(None),
            wait: Cell::new(Wait::Headers),
            since: Cell::new(now),
            rearm: RefCell::new(None),
            placement: RefCell::new(None),
            part_file: RefCell::new(None),
            drain: Drain::default(),
            body_error: RefCell::new(None),
        };
        TransferActor {
            ctx: Rc::new(ctx),
            engine: setup.engine,
            worker: setup.worker,
            phase: Phase::Preparing,
            stop: None,
            cancel_replies: Vec::new(),
            span,
        }
    }

    /// Downloads: create the `.part` file off-thread, then start.
    fn prepare(&mut self, ctx: &mut Context<Self>) {
        let JobKind::Download { target, conflict } = &self.ctx.job.kind else {
            return self.start_attempt(ctx);
        };
        let (dir, target, conflict) =
            (self.ctx.cfg.download_dir.clone(), target.clone(), *conflict);
        let job =
            actix_rt::task::spawn_blocking(move || sink::prepare_part(&dir, &target, conflict));
        ctx.spawn(wrap_future(job).map(|res, act: &mut Self, ctx| {
            let res = res.unwrap_or_else(|e| {
                Err(TransferError::Internal(format!(
                    "preparing job failed: {e}"
                )))
            });
            match res {
                Ok((placement, file)) => {
                    *act.ctx.placement.borrow_mut() = Some(placement);
                    *act.ctx.part_file.borrow_mut() = Some(file);
                    match act.stop.take() {
                        None => act.start_attempt(ctx),
                        Some(stop) => act.stopped_early(stop, ctx),
                    }
                }
                Err(e) => {
                    let stop = act.stop.take();
                    let outcome = match stop {
                        Some(Stop::Cancel) => Outcome::Cancelled { bytes: 0 },
                        _ => Outcome::Failed { bytes: 0, error: e },
                    };
                    act.end(outcome, ctx);
                }
            }
        }));
    }

    fn start_attempt(&mut self, ctx: &mut Context<Self>) {
        let (handle, registration) = AbortHandle::new_pair();
        let c = Rc::clone(&self.ctx);
        let total = self.ctx.cfg.total_timeout;
        let io = async move {
            c.await_headers();
            let run = Box::pin(async {
                match &c.job.kind {
                    JobKind::Download { .. } => download::run(&c).await,
                    JobKind::Upload { file, size } => upload::run(&c, file, *size).await,
                    JobKind::Fetch { .. } => fetch::run(&c).await,
                }
            });
            let guarded = async {
                match select(run, Box::pin(Rc::clone(&c).watchdog())).await {
                    Either::Left((res, _)) => res,
                    Either::Right((err, _)) => Err(err),
                }
            };
            match total {
                Some(t) => actix_rt::time::timeout(t, guarded)
                    .await
                    .unwrap_or(Err(TransferError::Timeout(TimeoutPhase::Total))),
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

    /// An attempt ended: aborted (`Err(Aborted)`), failed, or its body is complete. The I/O
    /// future has been dropped by now (actix drops a mapped future before the closure runs).
    fn attempt_done(
        &mut self,
        res: Result<Result<Done, TransferError>, futures::future::Aborted>,
        ctx: &mut Context<Self>,
    ) {
        self.phase = Phase::Finishing;
        match res {
            Err(_aborted) => {
                let stop = self.stop.take().unwrap_or(Stop::Cancel);
                self.stopped_early(stop, ctx);
            }
            Ok(Err(error)) => {
                tracing::debug!(parent: &self.span, %error, "attempt failed");
                let bytes = self.ctx.bytes();
                self.settle_then_end(Outcome::Failed { bytes, error }, false, ctx);
            }
            Ok(Ok(Done::Memory {
                body,
                bytes,
                status,
                url,
            })) => self.end(
                Outcome::Completed {
                    bytes,
                    status,
                    url,
                    output: Output::Body(body),
                },
                ctx,
            ),
            Ok(Ok(Done::File {
                file,
                bytes,
                status,
                url,
            })) => {
                let placement = self.ctx.placement.borrow().clone();
                let (placement, conflict) = match (placement, &self.ctx.job.kind) {
                    (Some(p), JobKind::Download { conflict, .. }) => (p, *conflict),
                    _ => {
                        return self.end(
                            Outcome::Failed {
                                bytes,
                                error: TransferError::Internal("download without placement".into()),
                            },
                            ctx,
                        )
                    }
                };
                let job = actix_rt::task::spawn_blocking(move || {
                    sink::finalize(file, &placement, conflict, bytes)
                });
                ctx.spawn(wrap_future(job).map(move |res, act: &mut Self, ctx| {
                    let outcome = match res {
                        Ok(Ok(path)) => Outcome::Completed {
                            bytes,
                            status,
                            url,
                            output: Output::File(path),
                        },
                        Ok(Err(error)) => Outcome::Failed { bytes, error },
                        Err(e) => Outcome::Failed {
                            bytes,
                            error: TransferError::Internal(format!("finalizing job failed: {e}")),
                        },
                    };
                    act.end(outcome, ctx);
                }));
            }
        }
    }

    /// End after a cancel or an abort, once any abandoned write has landed.
    fn stopped_early(&mut self, stop: Stop, ctx: &mut Context<Self>) {
        self.phase = Phase::Finishing;
        let bytes = self.ctx.bytes();
        match stop {
            Stop::Cancel => self.settle_then_end(Outcome::Cancelled { bytes }, true, ctx),
            Stop::Fail(error) => self.settle_then_end(Outcome::Failed { bytes, error }, false, ctx),
        }
    }

    /// Wait for abandoned writes, remove the `.part` when asked (or when it is empty: no body
    /// byte arrived), then end.
    fn settle_then_end(&mut self, outcome: Outcome, remove_part: bool, ctx: &mut Context<Self>) {
        let remove_part = remove_part || self.ctx.bytes() == 0;
        let drain = self.ctx.drain();
        let part = self.ctx.placement.borrow().as_ref().map(|p| p.part.clone());
        // The preparing step's file, if no attempt took it, is closed here.
        drop(self.ctx.take_part_file());
        let work = async move {
            drain.settle().await;
            if remove_part {
                if let Some(part) = part {
                    sink::remove_part(part).await;
                }
            }
        };
        ctx.spawn(wrap_future(work).map(move |(), act: &mut Self, ctx| act.end(outcome, ctx)));
    }

    fn end(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        self.finish(outcome);
        ctx.stop();
    }

    /// Publish `Ended`, answer pending cancels, tell the Engine. Runs at most once.
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
        c.subs.publish_ended(TransferEvent {
            id: c.id,
            seq,
            kind: EventKind::Ended(outcome.clone()),
        });
        tracing::debug!(parent: &self.span, outcome = %end, bytes = outcome.bytes(), "ended");
        for (i, tx) in self.cancel_replies.drain(..).enumerate() {
            let reply = if i == 0 && end == EndState::Cancelled {
                Ok(())
            } else {
                Err(CancelError::NotActive(end))
            };
            let _ = tx.send(reply);
        }
        self.engine.do_send(Finished {
            id: c.id,
            outcome,
            worker: self.worker,
        });
    }

    /// Request a stop of the running attempt (or of the preparing step, when it is done).
    fn request_stop(&mut self, stop: Stop) {
        match &self.phase {
            Phase::Running(handle) => {
                if self.stop.is_none() {
                    self.stop = Some(stop);
                    handle.abort();
                }
            }
            Phase::Preparing => {
                if self.stop.is_none() {
                    self.stop = Some(stop);
                }
            }
            Phase::Finishing | Phase::Ended(_) => {}
        }
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
            let bytes = self.ctx.bytes();
            self.finish(Outcome::Failed {
                bytes,
                error: TransferError::Internal("the transfer actor stopped unexpectedly".into()),
            });
        }
    }
}

impl Handler<CancelTransfer> for TransferActor {
    type Result = ResponseFuture<Result<(), CancelError>>;

    fn handle(&mut self, _: CancelTransfer, _ctx: &mut Self::Context) -> Self::Result {
        if let Phase::Ended(end) = self.phase {
            return Box::pin(async move { Err(CancelError::NotActive(end)) });
        }
        let (tx, rx) = oneshot::channel();
        self.cancel_replies.push(tx);
        self.request_stop(Stop::Cancel);
        let fallback = Arc::clone(&self.ctx.progress);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(CancelError::NotActive(
                    fallback.state().end_state().unwrap_or(EndState::Failed),
                ))
            })
        })
    }
}

impl Handler<AbortTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, msg: AbortTransfer, _ctx: &mut Self::Context) {
        self.request_stop(Stop::Fail(msg.0));
    }
}
