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
use crate::{CancelError, EraseError, Outcome, SubscriptionId, TransferStatus};
pub use builder::{EngineBuilder, StartError};
pub use control::{
    Cancel, Erase, List, Pause, Resume, SetLimits, SetRate, Shutdown, Status, Subscribe,
    Unsubscribe, Wait,
};
use records::{Effects, Records, Started};

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
/// | [`Subscribe`] / [`Unsubscribe`] | `Result<SubscriptionId, SubscribeError>` / `bool` |
/// | [`SetLimits`] | `()` |
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

    /// Record a validated job, publish `Queued`, and admit what can run.
    fn submit(&mut self, job: Job, ctx: &mut Context<Self>) -> Result<TransferId, TransferError> {
        if self.shutdown.is_some() {
            return Err(TransferError::Shutdown);
        }
        let (id, effects) = self.records.submit(job);
        self.apply(effects);
        self.admit(ctx);
        Ok(id)
    }

    /// Carry out what a transition of the record table asks for, in its order: answer the
    /// waiters, publish the event (of a transfer with no actor publishing its events), forget
    /// the subscriptions of the records dropped.
    fn apply(&mut self, effects: Effects) {
        if let Some((waiters, outcome)) = effects.answer {
            for w in waiters {
                let _ = w.send(outcome.clone());
            }
        }
        if let Some(event) = effects.event {
            if let EventKind::Ended(_) = event.kind {
                self.subs.publish_ended(event, Delivery::Now);
            } else {
                self.subs.publish(event, Delivery::Now);
            }
        }
        for id in effects.forgotten {
            self.subs.forget(id);
        }
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
            let effects = self.records.finished(msg.id, msg.outcome, msg.kept_part);
            self.apply(effects);
        }
        self.admit(ctx);
        self.maybe_finish_shutdown(ctx);
    }
}
