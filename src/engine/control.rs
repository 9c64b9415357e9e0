//! The control messages of the [`Engine`] and how it handles them: each asks the record table,
//! then carries out what it answered.

use actix::prelude::*;

use super::{
    records::{EraseAnswer, WaitAnswer},
    reply::{ready, StopAnswer},
    Engine,
};
#[cfg(doc)]
use crate::EngineBuilder;
use crate::{
    error::{ControlError, EraseError, TransferError},
    event::status::{TransferState, TransferStatus},
    event::subscribers::{SubscribeError, SubscriptionId},
    event::{EventKinds, Outcome, TransferEvent, TransferId},
    file::sink,
    transfer::{AbortTransfer, CancelTransfer, PauseTransfer},
};

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
#[rtype(result = "Result<(), ControlError>")]
pub struct Cancel(pub TransferId);

impl Handler<Cancel> for Engine {
    type Result = StopAnswer;

    fn handle(&mut self, Cancel(id): Cancel, _ctx: &mut Self::Context) -> Self::Result {
        let (answer, effects) = self.records.cancel(id);
        self.apply(effects);
        StopAnswer::carry(answer, CancelTransfer)
    }
}

/// Pause a transfer: stop reading, close the connection, keep the `.part` file and its
/// validator, and give the admission slot to the next transfer. Replies `Ok(())` once paused
/// (also when it already was); `Err(NotActive(end))` when it ended; `Err(Unknown)`.
///
/// A `send` future dropped before the Engine handled the message pauses nothing; `do_send`
/// does not wait (see [`Cancel`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct Pause(pub TransferId);

impl Handler<Pause> for Engine {
    type Result = StopAnswer;

    fn handle(&mut self, Pause(id): Pause, _ctx: &mut Self::Context) -> Self::Result {
        let (answer, effects) = self.records.pause(id);
        self.apply(effects);
        StopAnswer::carry(answer, PauseTransfer)
    }
}

/// Resume a paused transfer: it waits for an admission slot, then continues (a download with
/// a range request from the bytes kept, when the server allows it). Replies `Ok(())` also when
/// the transfer was not paused; `Err(NotActive(end))` when it ended; `Err(Unknown)`.
///
/// A `send` future dropped before the Engine handled the message resumes nothing; `do_send`
/// does not wait (see [`Cancel`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<(), ControlError>")]
pub struct Resume(pub TransferId);

impl Handler<Resume> for Engine {
    type Result = Result<(), ControlError>;

    fn handle(&mut self, Resume(id): Resume, ctx: &mut Self::Context) -> Self::Result {
        let effects = self.records.resume(id)?;
        self.apply(effects);
        self.admit(ctx);
        Ok(())
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
        let (answer, effects) = self.records.erase(msg.id, msg.delete_files);
        self.apply(effects);
        match answer {
            EraseAnswer::Unknown => ready(Err(EraseError::Unknown)),
            EraseAnswer::Active => ready(Err(EraseError::Active)),
            EraseAnswer::AfterEnd(ended) => {
                let engine = ctx.address();
                Box::pin(async move {
                    let _ = ended.await;
                    engine.send(msg).await.unwrap_or(Err(EraseError::Unknown))
                })
            }
            EraseAnswer::Done(files) => Box::pin(async move {
                for (f, placed) in files {
                    match placed {
                        Some(id) => sink::remove_placed(f, id).await,
                        None => sink::remove_left(f).await,
                    }
                }
                Ok(())
            }),
        }
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
        self.records.status(id)
    }
}

/// Snapshots of every transfer in the given state (all of them with `List(None)`), by id.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "Vec<TransferStatus>")]
pub struct List(pub Option<TransferState>);

impl Handler<List> for Engine {
    type Result = Vec<TransferStatus>;

    fn handle(&mut self, List(filter): List, _ctx: &mut Self::Context) -> Self::Result {
        self.records.list(filter)
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
        match self.records.wait(id) {
            WaitAnswer::Unknown => ready(None),
            WaitAnswer::Now(outcome) => ready(Some(outcome)),
            WaitAnswer::Later(ended) => Box::pin(async move { ended.await.ok() }),
        }
    }
}

/// Receive [`TransferEvent`]s: of every transfer (`only: None`), or of one transfer
/// (`only: Some(id)`); of every kind, or of the [`kinds`](Subscribe::kinds) asked for.
///
/// A subscription receives every event published after the Engine handled `Subscribe`, and
/// none published before. Added while a transfer runs, it receives that transfer's events from
/// the middle of its stream (the first one it gets is not `Queued` and its `seq` is above 0),
/// up to and including its `Ended`. To see a transfer from its `Queued`, subscribe to all
/// and await the reply before submitting it. One exception: a subscriber to one id that
/// arrives after that transfer ended still receives its `Ended` event (if it asked for `Ended`).
///
/// Events of a kind no subscription asked for are not built at all: a subscriber that only
/// counts endings should ask for [`EventKinds::ENDED`] alone.
///
/// Replies `Err(RecipientGone)` when the recipient's actor has already stopped.
///
/// The recipient is held weakly: a subscription never keeps an actor alive (keep its `Addr`
/// somewhere, or it stops and receives nothing: `Subscribe::all(Printer.start().recipient())`
/// subscribes an actor that stops as soon as the Engine lets go of the message).
///
/// # A slow subscriber
///
/// Sending never waits, so a slow or stopped subscriber never stalls a transfer, and its
/// mailbox holds a bounded number of `Progress` events: while 16 of them (actix's default
/// mailbox capacity) wait unhandled, newer ones coalesce, the latest per transfer is kept
/// aside and goes out once there is room, at the next `Progress` to this subscriber, unless
/// another event of that transfer went out first (it says where the transfer is). Every other
/// event (`Queued`, `Began`, `Retrying`, `Paused`, `Resumed`, `Ended`) is always delivered, in
/// order; a subscriber slower than the transfers it follows should ask for fewer kinds.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<SubscriptionId, SubscribeError>")]
pub struct Subscribe {
    /// Who receives the events.
    pub recipient: Recipient<TransferEvent>,
    /// One transfer, or all.
    pub only: Option<TransferId>,
    /// The kinds of events it receives.
    pub kinds: EventKinds,
}

impl Subscribe {
    /// The events of every transfer, published from now on: from their `Queued` for
    /// transfers submitted after this, from the middle of their stream for those already
    /// queued or running.
    pub fn all(recipient: Recipient<TransferEvent>) -> Self {
        Subscribe {
            recipient,
            only: None,
            kinds: EventKinds::ALL,
        }
    }

    /// The events of one transfer, published from now on (or its `Ended`, if it has ended).
    pub fn one(recipient: Recipient<TransferEvent>, id: TransferId) -> Self {
        Subscribe {
            recipient,
            only: Some(id),
            kinds: EventKinds::ALL,
        }
    }

    /// Only events of these kinds (every kind by default).
    ///
    /// ```no_run
    /// # use actix::Recipient;
    /// # use actix_transfer::{EventKinds, Subscribe, TransferEvent};
    /// # fn endings(r: Recipient<TransferEvent>) -> Subscribe {
    /// Subscribe::all(r).kinds(EventKinds::ENDED)
    /// # }
    /// ```
    pub fn kinds(mut self, kinds: EventKinds) -> Self {
        self.kinds = kinds;
        self
    }
}

impl Handler<Subscribe> for Engine {
    type Result = Result<SubscriptionId, SubscribeError>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        self.subs.subscribe(msg.recipient, msg.only, msg.kinds)
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
        self.records.set_limits(msg.max_active, msg.max_per_host);
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
#[rtype(result = "Result<(), ControlError>")]
pub struct SetRate {
    /// The transfer.
    pub id: TransferId,
    /// Bytes per second, or `None` for no limit of its own.
    pub bytes_per_sec: Option<u64>,
}

impl Handler<SetRate> for Engine {
    type Result = Result<(), ControlError>;

    fn handle(&mut self, msg: SetRate, _ctx: &mut Self::Context) -> Self::Result {
        self.records.set_rate(msg.id, msg.bytes_per_sec)
    }
}

/// Stop gracefully: refuse new transfers (`Shutdown`), end queued ones and abort active ones
/// as `Failed(Shutdown)` (a download's `.part` file is kept), wait for every `Ended`, stop the
/// workers and the Engine, then reply.
///
/// With a [journal](crate::EngineBuilder::journal), downloads and uploads do not end: each
/// stops where it is (a running download's write in flight lands, its `.part` is kept) and
/// stays in the journal as it was (queued, active or paused), for the next start to restore.
/// Their `Ended` belongs to that next start, so this process publishes none for them: a
/// subscriber hears nothing more of them, and a [`Wait`] for one answers no outcome (`None`,
/// or a mailbox error once the Engine has stopped), as for an engine that no longer runs.
/// Fetches are not journaled: they end as `Failed(Shutdown)` as without a journal.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Engine {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = futures::channel::oneshot::channel();
        let first = self.shutdown.is_none();
        self.shutdown.get_or_insert_with(Vec::new).push(tx);
        if first {
            let outcome = Outcome::Failed {
                bytes: 0,
                error: TransferError::Shutdown,
                attempts: 0,
            };
            // With a journal, a download or upload stops resumable: no `Ended` now.
            #[cfg(feature = "journal")]
            let journaled = self.journal.is_some();
            #[cfg(not(feature = "journal"))]
            let journaled = false;
            let kept = |kind| journaled && kind != crate::event::status::TransferKind::Fetch;
            let (ended, actors) = self.records.shutdown(&outcome, kept);
            for effects in ended {
                self.apply(effects);
            }
            for addr in actors {
                addr.do_send(AbortTransfer(TransferError::Shutdown));
            }
        }
        self.maybe_finish_shutdown(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
