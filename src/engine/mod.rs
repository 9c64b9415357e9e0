//! The Engine: the supervisor actor that validates transfers, assigns ids, admits them to
//! workers, routes control messages to the owning transfer actor, and keeps the record of
//! every transfer's state and outcome.
//!
//! The Engine is never on the per-chunk path: bytes and progress events go from the transfer
//! actor to the file and to subscribers directly; the Engine hears from a transfer when it
//! starts and when it ends, and reads its byte counters from shared atomics for [`Status`].

//!
//! What happens to a transfer's record is decided by the record table (`records.rs`), a plain
//! type whose transitions return what to do; the Engine's handlers ask it and carry that out.
//! `builder.rs` holds the options, `control.rs` the control messages and their handlers,
//! `reply.rs` the answer of `Cancel` and `Pause`, `admission.rs` the order of the queue.

mod admission;
mod builder;
mod control;
#[cfg(feature = "journal")]
pub(crate) mod journaled;
mod records;
mod reply;

use std::sync::Arc;

use actix::prelude::*;
use actix_rt::ArbiterHandle;

use crate::{
    config::Config,
    error::TransferError,
    event::report::{FinishedBatch, Parked, Reporter},
    event::subscribers::{Delivery, Subscribers},
    event::{EventKind, TransferId},
    request::{Download, Fetch, Job, Upload},
    throttle::Bucket,
    transfer::{ResumeTransfer, Setup, TransferActor},
    worker::Workers,
};
#[cfg(doc)]
use crate::{ControlError, EraseError, Outcome, SubscriptionId, TransferStatus};
#[cfg(feature = "journal")]
pub use builder::JournalError;
pub use builder::{EngineBuilder, StartError};
pub use control::{
    Cancel, EngineState, EngineStatus, Erase, JournalState, List, Pause, Resume, SetLimits,
    SetRate, Shutdown, Status, Subscribe, Unsubscribe, Wait,
};
use records::{Effects, Records, Started};

/// The supervisor actor. Start it with [`Engine::builder`]; talk to it with messages.
///
/// | message | reply |
/// |---|---|
/// | [`Download`], [`Upload`], [`Fetch`] | `Result<TransferId, TransferError>`, at once |
/// | [`Cancel`] | `Result<(), ControlError>`, after the stream stopped |
/// | [`Pause`] / [`Resume`] | `Result<(), ControlError>` |
/// | [`Status`] | `Option<TransferStatus>` |
/// | [`List`] | `Vec<TransferStatus>` |
/// | [`Wait`] | `Option<Outcome>`, when the transfer ends |
/// | [`Erase`] | `Result<(), EraseError>` |
/// | [`Subscribe`] / [`Unsubscribe`] | `Result<SubscriptionId, SubscribeError>` / `bool` |
/// | [`SetLimits`] | `()` |
/// | [`EngineStatus`] | [`EngineState`]: the journal's state, transfers by state |
/// | [`Shutdown`] | `()`, once every transfer ended and the workers stopped |
pub struct Engine {
    cfg: Arc<Config>,
    workers: Workers,
    subs: Arc<Subscribers>,
    /// Every transfer's record, the admission queue, and what is kept of ended transfers.
    records: Records<Addr<TransferActor>>,
    /// Transfer actors alive (active, paused, or resumed and waiting for a slot).
    live: usize,
    /// `Some` once a shutdown began: the replies to send when it is done.
    shutdown: Option<Vec<futures::channel::oneshot::Sender<()>>>,
    global_rate: Arc<Bucket>,
    /// See [`Engine::shared_address`].
    shared_addr: std::sync::Weak<Reporter>,
    /// Every worker, for transfers that spread over several (segmented downloads).
    peers: Arc<[ArbiterHandle]>,
    /// The journal, when the engine keeps one.
    #[cfg(feature = "journal")]
    journal: Option<journaled::EngineJournal>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("transfers", &self.records.len())
            .field("active", &self.records.admission().active())
            .field("queued", &self.records.admission().queued())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder with the default settings.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Record a validated job, publish `Queued`, and admit what can run. With a journal, a
    /// download or upload is answered once its row is committed (`source_mtime_ns`: an
    /// upload's source file, recorded to tell whether it changed before a restart).
    fn submit(
        &mut self,
        job: Job,
        #[allow(unused_variables)] source_mtime_ns: Option<i64>,
        ctx: &mut Context<Self>,
    ) -> SubmitAnswer {
        if self.shutdown.is_some() {
            return SubmitAnswer::now(Err(TransferError::Shutdown));
        }
        #[cfg(feature = "journal")]
        let row = match &self.journal {
            Some(j) => {
                if let Some(first) = j.journal.failure() {
                    let e = crate::journal::JournalError::Failed(first);
                    return SubmitAnswer::now(Err(journaled::refused(&e)));
                }
                journaled::row_of(self.records.next_id(), &job, source_mtime_ns)
            }
            None => None,
        };
        let (id, effects) = self.records.submit(job);
        // The insert is queued before the transfer's actor exists: the journal's one queue
        // keeps every later write of this transfer behind it. A transfer with no row (a
        // fetch) has its id reserved instead, a block at a time.
        #[cfg(feature = "journal")]
        let ack = self.journal.as_mut().and_then(|j| match row {
            Some(row) => Some(j.journal.insert(row)),
            None => j.reserve(id.get()),
        });
        self.apply(effects);
        self.admit(ctx);
        #[cfg(feature = "journal")]
        if let Some(ack) = ack {
            return SubmitAnswer(Submitted::Journaled(id, ack));
        }
        SubmitAnswer::now(Ok(id))
    }

    /// Carry out what a transition of the record table asks for, in its order: answer the
    /// waiters, publish the event (of a transfer with no actor publishing its events), forget
    /// the subscriptions of the records dropped.
    fn apply(&mut self, effects: Effects) {
        #[cfg(feature = "journal")]
        if let Some(j) = &self.journal {
            if let Some(changes) = effects.event.as_ref().and_then(journaled::table_changes) {
                let id = effects.event.as_ref().map_or(0, |e| e.id.get());
                let ack = j.journal.update(id, changes);
                if let Some(EventKind::Ended(_)) = effects.event.as_ref().map(|e| &e.kind) {
                    // An `Ended` is in the journal before anyone hears of it.
                    let subs = Arc::clone(&self.subs);
                    actix_rt::spawn(async move {
                        if let Err(error) = ack.await {
                            tracing::error!(%error, "the journal did not record an end");
                        }
                        carry_out(&subs, effects);
                    });
                    return;
                }
                drop(ack);
            }
        }
        carry_out(&self.subs, effects);
    }
    /// Start waiting transfers while slots are free (see `admission`): a new actor on a worker
    /// for a transfer that never ran, or its actor resumed.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_some() {
            return;
        }
        loop {
            let started = self.records.start_next(|id, launch| {
                self.live += 1;
                #[cfg(feature = "journal")]
                let journal = self
                    .journal
                    .as_ref()
                    .filter(|_| !matches!(launch.job.kind, crate::request::JobKind::Fetch { .. }))
                    .map(|j| Arc::clone(&j.journal));
                self.workers.spawn(|worker| Setup {
                    id,
                    job: launch.job,
                    cfg: Arc::clone(&self.cfg),
                    subs: Arc::clone(&self.subs),
                    progress: launch.progress,
                    rate: launch.rate,
                    global_rate: Arc::clone(&self.global_rate),
                    peers: Arc::clone(&self.peers),
                    engine: Self::shared_address(&mut self.shared_addr, ctx),
                    worker,
                    next_seq: launch.next_seq,
                    #[cfg(feature = "journal")]
                    journal,
                })
            });
            match started {
                None => break,
                Some(Started::Launched) => {}
                Some(Started::Resume(addr)) => addr.do_send(ResumeTransfer),
            }
        }
        self.workers.flush();
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

    fn maybe_finish_shutdown(&mut self, ctx: &mut Context<Self>) {
        if self.live == 0 {
            if let Some(replies) = self.shutdown.as_mut() {
                self.workers.stop();
                let replies = std::mem::take(replies);
                ctx.stop();
                #[cfg(feature = "journal")]
                if let Some(j) = self.journal.take() {
                    // The journal is closed (its file unlocked, for the next engine) before
                    // the shutdown is answered; the transfers' last handles go as they stop.
                    let closed = crate::file::blocking::run(move || {
                        let mut journal = j.journal;
                        for _ in 0..500 {
                            match Arc::try_unwrap(journal) {
                                Ok(only) => return only.close(),
                                Err(shared) => journal = shared,
                            }
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        tracing::warn!("the journal is still in use at shutdown");
                    });
                    actix_rt::spawn(async move {
                        let _ = closed.await;
                        for r in replies {
                            let _ = r.send(());
                        }
                    });
                    return;
                }
                for r in replies {
                    let _ = r.send(());
                }
            }
        }
    }
}

/// Carry out a transition's effects, in their order: answer the waiters, publish the event (of
/// a transfer with no actor publishing its events), forget the subscriptions of the records
/// dropped.
fn carry_out(subs: &Subscribers, effects: Effects) {
    if let Some((waiters, outcome)) = effects.answer {
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
    if let Some(event) = effects.event {
        if let EventKind::Ended(_) = event.kind {
            subs.publish_ended(event, Delivery::Now);
        } else {
            subs.publish(event, Delivery::Now);
        }
    }
    for id in effects.forgotten {
        subs.forget(id);
    }
}

impl Actor for Engine {
    type Context = Context<Self>;

    /// Transfers restored from a journal start (nothing waits otherwise).
    fn started(&mut self, ctx: &mut Self::Context) {
        self.admit(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.workers.stop();
    }
}

impl Handler<Download> for Engine {
    type Result = SubmitAnswer;

    fn handle(&mut self, msg: Download, ctx: &mut Self::Context) -> Self::Result {
        match msg.validate() {
            Ok(job) => self.submit(job, None, ctx),
            Err(e) => SubmitAnswer::now(Err(e)),
        }
    }
}

impl Handler<Fetch> for Engine {
    type Result = SubmitAnswer;

    fn handle(&mut self, msg: Fetch, ctx: &mut Self::Context) -> Self::Result {
        match msg.validate() {
            Ok(job) => self.submit(job, None, ctx),
            Err(e) => SubmitAnswer::now(Err(e)),
        }
    }
}

/// The Engine's answer to [`Download`], [`Upload`] and [`Fetch`]: given at once, or (with a
/// journal) once the transfer's row is committed. What a `send` resolves to is
/// `Result<TransferId, TransferError>`; this type only appears as the handlers' `Result`.
pub struct SubmitAnswer(Submitted);

enum Submitted {
    Now(Result<TransferId, TransferError>),
    #[cfg(feature = "journal")]
    Journaled(TransferId, crate::journal::Reply<()>),
}

impl std::fmt::Debug for SubmitAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Submitted::Now(answer) => f.debug_tuple("SubmitAnswer").field(answer).finish(),
            #[cfg(feature = "journal")]
            Submitted::Journaled(id, _) => write!(f, "SubmitAnswer(journaling {id})"),
        }
    }
}

impl SubmitAnswer {
    fn now(answer: Result<TransferId, TransferError>) -> Self {
        SubmitAnswer(Submitted::Now(answer))
    }

    /// The answer, once it is known. A row the journal refused cancels its transfer: the
    /// caller never learns its id, and it must not run unrecorded.
    async fn resolve(
        self,
        #[allow(unused_variables)] engine: Addr<Engine>,
    ) -> Result<TransferId, TransferError> {
        match self.0 {
            Submitted::Now(answer) => answer,
            #[cfg(feature = "journal")]
            Submitted::Journaled(id, ack) => match ack.await {
                Ok(()) => Ok(id),
                Err(e) => {
                    tracing::error!(%e, "the journal refused a transfer");
                    engine.do_send(Cancel(id));
                    Err(journaled::refused(&e))
                }
            },
        }
    }
}

impl<M> actix::dev::MessageResponse<Engine, M> for SubmitAnswer
where
    M: Message<Result = Result<TransferId, TransferError>>,
{
    fn handle(
        self,
        #[allow(unused_variables)] ctx: &mut Context<Engine>,
        tx: Option<actix::dev::OneshotSender<Result<TransferId, TransferError>>>,
    ) {
        match self.0 {
            Submitted::Now(answer) => {
                if let Some(tx) = tx {
                    let _ = tx.send(answer);
                }
            }
            #[cfg(feature = "journal")]
            journaled @ Submitted::Journaled(..) => {
                let answer = SubmitAnswer(journaled).resolve(ctx.address());
                actix_rt::spawn(async move {
                    let answer = answer.await;
                    if let Some(tx) = tx {
                        let _ = tx.send(answer);
                    }
                });
            }
        }
    }
}

impl Handler<Upload> for Engine {
    type Result = ResponseActFuture<Self, Result<TransferId, TransferError>>;

    fn handle(&mut self, msg: Upload, ctx: &mut Self::Context) -> Self::Result {
        let Some(file) = msg.body.file().cloned() else {
            // Bytes in memory: nothing to check but the request.
            let answer = match msg.validate(0) {
                Ok(job) => self.submit(job, None, ctx),
                Err(e) => SubmitAnswer::now(Err(e)),
            };
            return Box::pin(actix::fut::wrap_future(answer.resolve(ctx.address())));
        };
        // The file check is I/O: run it on a file-I/O thread, then submit.
        let path = file.clone();
        let stat = crate::file::blocking::run(move || std::fs::metadata(path));
        Box::pin(
            actix::fut::wrap_future(stat)
                .map(move |meta, act: &mut Self, ctx| {
                    let shown = file.display();
                    let (size, mtime) = match meta {
                        Ok(Ok(m)) if m.is_file() => (m.len(), mtime_ns(&m)),
                        Ok(Ok(_)) => {
                            return SubmitAnswer::now(Err(TransferError::invalid(format!(
                                "upload source {shown} is not a regular file"
                            ))))
                        }
                        Ok(Err(e)) => {
                            return SubmitAnswer::now(Err(TransferError::invalid(format!(
                                "upload source {shown} cannot be read: {e}"
                            ))))
                        }
                        Err(e) => return SubmitAnswer::now(Err(e.into())),
                    };
                    match msg.validate(size) {
                        Ok(job) => act.submit(job, mtime, ctx),
                        Err(e) => SubmitAnswer::now(Err(e)),
                    }
                })
                .then(|answer, _act: &mut Self, ctx| {
                    actix::fut::wrap_future(answer.resolve(ctx.address()))
                }),
        )
    }
}

/// A file's modification time (recorded for an upload with a journal).
fn mtime_ns(#[allow(unused_variables)] meta: &std::fs::Metadata) -> Option<i64> {
    #[cfg(feature = "journal")]
    return journaled::mtime_ns(meta);
    #[cfg(not(feature = "journal"))]
    None
}

impl Handler<Parked> for Engine {
    type Result = ();

    fn handle(&mut self, Parked { id }: Parked, ctx: &mut Self::Context) {
        self.records.parked(id);
        self.admit(ctx);
    }
}

impl Handler<FinishedBatch> for Engine {
    type Result = ();

    fn handle(&mut self, FinishedBatch(batch): FinishedBatch, ctx: &mut Self::Context) {
        for msg in batch {
            self.workers.release(msg.worker);
            self.live -= 1;
            let mut effects = self.records.finished(msg.id, msg.outcome, msg.left);
            if msg.resumable {
                effects.answer = None;
            }
            self.apply(effects);
        }
        #[cfg(feature = "journal")]
        if let Some(j) = &self.journal {
            drop(j.journal.keep(j.keep, crate::journal::now_ms()));
        }
        self.admit(ctx);
        self.maybe_finish_shutdown(ctx);
    }
}
