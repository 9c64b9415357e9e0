//! The control messages of the [`Engine`] and how it handles them: each asks the record table,
//! then carries out what it answered.

use std::time::SystemTime;

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
#[cfg(feature = "journal")]
use {super::journaled, crate::journal::JournalError};

/// A read of the journal's history: what it answered, or `None` (logged) when it could not
/// be read.
#[cfg(feature = "journal")]
fn history<T>(read: Result<T, JournalError>) -> Option<T> {
    read.map_err(|error| tracing::warn!(%error, "the journal could not be read"))
        .ok()
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

/// Forget an ended transfer: its record, status and remembered `Ended` event, and with a
/// [journal](EngineBuilder::journal) its row (deleted before the reply). With `delete_files`,
/// also remove what it left on disk (the completed file, or a kept `.part`), only while that
/// name still leads to the file the transfer itself wrote. `Err(Active)` for a transfer that
/// has not ended (cancel it first), `Err(Unknown)` for an id that is not (or no longer) known.
///
/// A transfer only the journal still remembers (see [`Status`]) is erased from it too; its
/// files are left alone even with `delete_files`: the journal does not record the identity of
/// the file, so the engine cannot tell whether the name still leads to the file that transfer
/// wrote. While the journal refuses writes (see [`EngineStatus`]), such a transfer cannot be
/// erased and the answer is `Err(Unknown)`.
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
        // The row goes in the same turn as the record: a later read of the journal (a
        // `Status`, a `List`) runs after it.
        #[cfg(feature = "journal")]
        let row = match (&answer, &self.journal) {
            (EraseAnswer::Unknown | EraseAnswer::Done(_), Some(j)) => {
                Some(j.journal.erase(msg.id.get()))
            }
            _ => None,
        };
        match answer {
            #[cfg(feature = "journal")]
            EraseAnswer::Unknown if row.is_some() => {
                let row = row.expect("checked");
                Box::pin(async move {
                    match row.await {
                        Ok(()) => Ok(()),
                        Err(JournalError::NoSuchTransfer(_)) => Err(EraseError::Unknown),
                        Err(error) => {
                            tracing::error!(%error, id = msg.id.get(), "the journal could not erase a transfer");
                            Err(EraseError::Unknown)
                        }
                    }
                })
            }
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
                #[cfg(feature = "journal")]
                if let Some(row) = row {
                    match row.await {
                        // A fetch (never journaled), or a row retention deleted already.
                        Ok(()) | Err(JournalError::NoSuchTransfer(_)) => {}
                        Err(error) => {
                            tracing::error!(%error, id = msg.id.get(), "the journal could not erase a transfer");
                        }
                    }
                }
                Ok(())
            }),
        }
    }
}

/// A snapshot of one transfer; `None` for an id this engine never issued (or no longer
/// remembers: see [`EngineBuilder::keep_ended`]).
///
/// With a [journal](EngineBuilder::journal), an ended transfer whose record was evicted from
/// memory, or that ended in an earlier run of the engine, is answered from the journal while
/// it keeps it (see [`EngineBuilder::journal_keep`]): as recorded, its error as
/// [`TransferError::Recorded`](crate::TransferError::Recorded). The journal is read on its
/// own thread, never on the Engine's.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<TransferStatus>")]
pub struct Status(pub TransferId);

impl Handler<Status> for Engine {
    type Result = ResponseFuture<Option<TransferStatus>>;

    fn handle(&mut self, Status(id): Status, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(status) = self.records.status(id) {
            return ready(Some(status));
        }
        #[cfg(feature = "journal")]
        if let Some(j) = &self.journal {
            let row = j.journal.get(id.get());
            let dir = self.cfg.download_dir.clone();
            return Box::pin(async move {
                let row = history(row.await)??;
                journaled::status_of(row, &dir)
            });
        }
        ready(None)
    }
}

/// Snapshots of transfers, by id: every one the engine knows ([`List::all`]), or those in one
/// state, whose URL holds a substring, or submitted in a span of time (each filter set
/// narrows the list).
///
/// With a [journal](EngineBuilder::journal), the list also holds the ended transfers that
/// only the journal still remembers (see [`Status`]), unless
/// [`without_history`](List::without_history) asks for the records in memory alone. The
/// journal is read on its own thread, never on the Engine's.
///
/// ```no_run
/// # use std::time::{Duration, SystemTime};
/// # use actix_transfer::{List, TransferState};
/// let failed_today = List::in_state(TransferState::Failed)
///     .url_contains("example.com/")
///     .created_since(SystemTime::now() - Duration::from_secs(24 * 3600));
/// let all = List::all();
/// let queued: List = Some(TransferState::Queued).into();
/// ```
#[derive(Debug, Clone, Default, Message)]
#[rtype(result = "Vec<TransferStatus>")]
pub struct List {
    state: Option<TransferState>,
    url: Option<String>,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    without_history: bool,
}

impl List {
    /// Every transfer.
    pub fn all() -> Self {
        List::default()
    }

    /// The transfers in `state`.
    pub fn in_state(state: TransferState) -> Self {
        List {
            state: Some(state),
            ..List::default()
        }
    }

    /// Only transfers whose URL (as submitted) holds `part` (case-sensitive).
    pub fn url_contains(mut self, part: impl Into<String>) -> Self {
        self.url = Some(part.into());
        self
    }

    /// Only transfers submitted at or after `t`.
    pub fn created_since(mut self, t: SystemTime) -> Self {
        self.since = Some(t);
        self
    }

    /// Only transfers submitted before `t`.
    pub fn created_before(mut self, t: SystemTime) -> Self {
        self.until = Some(t);
        self
    }

    /// Only the records the engine holds in memory, not the history of the journal.
    pub fn without_history(mut self) -> Self {
        self.without_history = true;
        self
    }

    fn admits(&self, s: &TransferStatus, created: SystemTime) -> bool {
        self.state.is_none_or(|f| s.state == f)
            && self.url.as_deref().is_none_or(|u| s.url.contains(u))
            && self.since.is_none_or(|t| created >= t)
            && self.until.is_none_or(|t| created < t)
    }
}

/// `List(None)` of earlier versions: every transfer, or those in one state.
impl From<Option<TransferState>> for List {
    fn from(state: Option<TransferState>) -> Self {
        List {
            state,
            ..List::default()
        }
    }
}

impl Handler<List> for Engine {
    type Result = ResponseFuture<Vec<TransferStatus>>;

    fn handle(&mut self, list: List, _ctx: &mut Self::Context) -> Self::Result {
        #[allow(unused_mut)]
        let mut now = self.records.list(|s, created| list.admits(s, created));
        #[cfg(feature = "journal")]
        if let Some(j) = self
            .journal
            .as_ref()
            .filter(|_| !list.without_history && list.state.is_none_or(TransferState::is_ended))
        {
            let rows = j.journal.list(crate::journal::Filter {
                state: list.state,
                url: list.url,
                since_ms: list.since.map(journaled::ms_of),
                until_ms: list.until.map(journaled::ms_of),
                ..Default::default()
            });
            let dir = self.cfg.download_dir.clone();
            return Box::pin(async move {
                let Some(rows) = history(rows.await) else {
                    return now;
                };
                let known: std::collections::HashSet<TransferId> =
                    now.iter().map(|s| s.id).collect();
                now.extend(
                    rows.into_iter()
                        .filter_map(|row| journaled::status_of(row, &dir))
                        .filter(|s| !known.contains(&s.id)),
                );
                now.sort_by_key(|s| s.id);
                now
            });
        }
        ready(now)
    }
}

/// Resolve with the transfer's [`Outcome`] when it ends (at once if it has); `None` for an id
/// this engine never issued (or no longer remembers: see [`EngineBuilder::keep_ended`]).
///
/// With a [journal](EngineBuilder::journal), an ended transfer only the journal still
/// remembers (see [`Status`]) is answered as recorded: a download's file, an upload's final
/// status (its response body and headers are not recorded: empty), the error as
/// [`TransferError::Recorded`](crate::TransferError::Recorded).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Option<Outcome>")]
pub struct Wait(pub TransferId);

impl Handler<Wait> for Engine {
    type Result = ResponseFuture<Option<Outcome>>;

    fn handle(&mut self, Wait(id): Wait, _ctx: &mut Self::Context) -> Self::Result {
        match self.records.wait(id) {
            #[cfg(feature = "journal")]
            WaitAnswer::Unknown if self.journal.is_some() => {
                let row = self
                    .journal
                    .as_ref()
                    .expect("checked")
                    .journal
                    .get(id.get());
                let dir = self.cfg.download_dir.clone();
                Box::pin(async move {
                    let row = history(row.await)??;
                    journaled::outcome_of(row, &dir)
                })
            }
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
/// The recipient is held as any actix `Recipient` is: the subscription keeps the actor's
/// mailbox open, so `Subscribe::all(Printer.start().recipient())` receives events with no
/// `Addr` kept anywhere. It lasts until [`Unsubscribe`] or until the actor stops itself
/// (`ctx.stop()`); a stopped recipient is dropped the first time an event finds it.
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
            let outcome = Outcome::failed_unanswered(0, TransferError::Shutdown, 0);
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

/// The engine's own state: whether its journal takes writes, and how many transfers it holds
/// in memory in each state.
#[derive(Debug, Clone, Copy, Default, Message)]
#[rtype(result = "EngineState")]
pub struct EngineStatus;

/// The answer to [`EngineStatus`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct EngineState {
    /// The journal's state (see [`EngineBuilder::journal`]).
    pub journal: JournalState,
    /// Transfers held in memory in each state (the ended ones: as many as
    /// [`EngineBuilder::keep_ended`] keeps; the journal's history is not counted).
    pub queued: usize,
    /// See [`queued`](EngineState::queued).
    pub active: usize,
    /// See [`queued`](EngineState::queued).
    pub paused: usize,
    /// See [`queued`](EngineState::queued).
    pub completed: usize,
    /// See [`queued`](EngineState::queued).
    pub failed: usize,
    /// See [`queued`](EngineState::queued).
    pub cancelled: usize,
}

/// Whether the engine keeps a journal, and whether it takes writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "state", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum JournalState {
    /// The engine keeps no journal.
    Off,
    /// The journal takes writes.
    Ok,
    /// The journal failed (disk full, I/O error) and takes no more writes: new downloads and
    /// uploads are refused with [`TransferError::Journal`], transfers already running go on,
    /// what was committed before stays. It stays failed until the engine is started again.
    Failed {
        /// The journal's first error, as a sentence.
        reason: String,
    },
}

impl Handler<EngineStatus> for Engine {
    type Result = MessageResult<EngineStatus>;

    fn handle(&mut self, _: EngineStatus, _ctx: &mut Self::Context) -> Self::Result {
        #[allow(unused_mut)]
        let mut journal = JournalState::Off;
        #[cfg(feature = "journal")]
        if let Some(j) = &self.journal {
            journal = match j.journal.failure() {
                None => JournalState::Ok,
                Some(first) => JournalState::Failed {
                    reason: first.to_string(),
                },
            };
        }
        let [queued, active, paused, completed, failed, cancelled] = self.records.counts();
        MessageResult(EngineState {
            journal,
            queued,
            active,
            paused,
            completed,
            failed,
            cancelled,
        })
    }
}
