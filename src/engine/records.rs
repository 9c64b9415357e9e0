//! The record table: every transfer the Engine knows, where it is in its life, and the
//! decisions that move it along. Plain data, no actor in it: each transition changes the table
//! and returns what the Engine must do about it (publish an event, start or resume an actor,
//! forward a request to an actor, answer an asker or a waiter, forget a subscription). The
//! Engine carries that out and decides nothing itself.
//!
//! # Transitions
//!
//! A record's slot moves only through these, each a method of [`Records`]:
//!
//! * [`submit`](Records::submit): a new record, `Queued` (publishes `Queued`);
//! * [`start_next`](Records::start_next): admitted, `Queued` → `Active` (launches a new actor,
//!   handing it the record's event counter, or resumes a paused one);
//! * [`pause`](Records::pause): `Queued` → `Paused` here; `Active` is forwarded to its actor;
//! * [`parked`](Records::parked): the actor paused, `Active` → `Paused`;
//! * [`resume`](Records::resume): `Paused` → `Queued`;
//! * [`cancel`](Records::cancel) and [`shutdown`](Records::shutdown): a transfer with no actor
//!   ends here, `Queued`/`Paused` → `Ended`; one with an actor is forwarded to it;
//! * [`finished`](Records::finished): the actor ended, any → `Ended`;
//! * [`erase`](Records::erase), and retention past `keep_ended` / `keep_ended_bytes` when a
//!   record ends: `Ended` → forgotten.
//!
//! Everything else (`status`, `list`, `wait`, `set_rate`) reads. The durable journal will
//! write each transition as it happens: a transition is one call here, so one journal entry.
//!
//! # One writer per fact
//!
//! The state a record shares with its actor ([`Progress`]) is written by the actor alone; the
//! table never writes it. [`state`](Record::state) answers every question about where a
//! transfer is (`Status`, `List`, `SetRate` and the control messages): ended if the slot says
//! so, or if the actor already set an end state (its `Ended` event may be out while its report
//! is on the way here), else what the slot says. A transfer's events are published by the table
//! until its first actor starts, and by that actor from then on: the counter of the next `seq`
//! goes to the actor in [`Launch::next_seq`] and the table publishes nothing more for it.
//!
//! The table is generic over the handle of a transfer's actor (`Addr<TransferActor>` in the
//! Engine, a number in the tests below).

use std::{collections::VecDeque, path::PathBuf, sync::Arc, time::SystemTime};

use futures::channel::oneshot;

use super::admission::{Admission, Host, Place, QueueKey};
use crate::{
    error::ControlError,
    event::report::Left,
    event::status::{Progress, TransferKind, TransferState, TransferStatus},
    event::{EventKind, IdMap, Outcome, Output, TransferEvent, TransferId},
    file::sink::FileId,
    request::{Job, JobKind},
    throttle::Bucket,
};

/// Every transfer's record, the admission queue, and the retention of ended records.
pub(crate) struct Records<A> {
    map: IdMap<Record<A>>,
    admission: Admission,
    /// Where downloads are written (a record shows its target under it).
    download_dir: PathBuf,
    next_id: u64,
    /// How many ended records to keep (see `EngineBuilder::keep_ended`).
    keep_ended: usize,
    /// How many bytes of bodies they may hold (see `EngineBuilder::keep_ended_bytes`).
    keep_ended_bytes: u64,
    /// Bytes of bodies the ended records hold.
    ended_bytes: u64,
    /// Ended ids, oldest first (may still hold ids erased since; they are skipped).
    ended: VecDeque<TransferId>,
    /// Records in the `Ended` slot.
    ended_count: usize,
}

struct Record<A> {
    kind: TransferKind,
    url: String,
    path: Option<PathBuf>,
    host: Host,
    priority: i32,
    progress: Arc<Progress>,
    rate: Arc<Bucket>,
    slot: Slot<A>,
    waiters: Vec<oneshot::Sender<Outcome>>,
    /// The seq of the next event the table publishes for this transfer; `None` once its first
    /// actor took the counter over.
    seq: Option<u64>,
    /// A `.part` file the transfer left behind (kept on failure or shutdown).
    left: Option<Left>,
    /// When it was submitted (`List` by time).
    created: SystemTime,
}

/// Where a transfer is, as the table knows it.
enum Slot<A> {
    /// WaitAnswer for an admission slot under `key`.
    Queued {
        key: QueueKey,
        runner: Runner<A>,
    },
    /// Its actor runs it, holding an admission slot.
    Active(A),
    /// Paused: no admission slot.
    Paused(Runner<A>),
    Ended(Outcome),
}

/// What runs a waiting transfer once it is admitted.
enum Runner<A> {
    /// A transfer that never ran: a new actor, for this job.
    New(Box<Job>),
    /// A paused transfer: its actor continues.
    Actor(A),
}

/// What a transition asks the Engine to do, in this order: answer the waiters, publish the
/// event, forget the subscriptions of forgotten records.
#[must_use]
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// `Wait`s (and erases waiting for an end) to answer with this outcome.
    pub(crate) answer: Option<(Vec<oneshot::Sender<Outcome>>, Outcome)>,
    /// An event of a transfer that has no actor publishing its events (its seq set here).
    pub(crate) event: Option<TransferEvent>,
    /// Records dropped (erased, or past the retention limits).
    pub(crate) forgotten: Vec<TransferId>,
}

/// What a new actor needs from the table to run a transfer it admitted.
#[derive(Debug)]
pub(crate) struct Launch {
    pub(crate) job: Job,
    /// The state the actor shares with the table (it alone writes it).
    pub(crate) progress: Arc<Progress>,
    pub(crate) rate: Arc<Bucket>,
    /// The seq of the actor's first event: from here on the actor alone publishes the
    /// transfer's events.
    pub(crate) next_seq: u64,
}

/// What [`Records::start_next`] started.
#[derive(Debug, PartialEq)]
pub(crate) enum Started<A> {
    /// A new actor, from the `launch` callback.
    Launched,
    /// A paused actor: tell it to continue.
    Resume(A),
}

/// The answer to a control request (`Cancel`, `Pause`).
#[derive(Debug)]
pub(crate) enum ControlAnswer<A> {
    /// Answer the asker now.
    Now(Result<(), ControlError>),
    /// Pass the request to the transfer's actor, which answers once it took effect; the
    /// progress says how the transfer ended if the actor went away without answering.
    Forward(A, Arc<Progress>),
}

/// The answer to an erase.
#[derive(Debug)]
pub(crate) enum EraseAnswer {
    Unknown,
    /// Not ended: cancel it first.
    Active,
    /// Ended, its actor's report still on the way here: erase once it arrived (never answer
    /// `Active` after `Ended`).
    AfterEnd(oneshot::Receiver<Outcome>),
    /// Forgotten; the files to remove, if asked to.
    Done(Vec<(PathBuf, Option<FileId>)>),
}

/// The answer to a wait.
#[derive(Debug)]
pub(crate) enum WaitAnswer {
    Unknown,
    Now(Outcome),
    Later(oneshot::Receiver<Outcome>),
}

impl<A: Clone> Records<A> {
    pub(crate) fn new(
        admission: Admission,
        download_dir: PathBuf,
        keep_ended: usize,
        keep_ended_bytes: u64,
    ) -> Self {
        Records {
            map: IdMap::default(),
            admission,
            download_dir,
            next_id: 0,
            keep_ended,
            keep_ended_bytes,
            ended_bytes: 0,
            ended: VecDeque::new(),
            ended_count: 0,
        }
    }

    /// Transfers known (any state).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Change the admission limits (see `SetLimits`); queued transfers may then start.
    pub(crate) fn set_limits(
        &mut self,
        max_active: Option<usize>,
        max_per_host: Option<Option<usize>>,
    ) {
        let map = &self.map;
        self.admission.set_limits(max_active, max_per_host, || {
            map.iter().filter_map(Record::place)
        });
    }

    /// Transition: a validated job becomes a `Queued` record with the next id.
    pub(crate) fn submit(&mut self, job: Job) -> (TransferId, Effects) {
        self.next_id += 1;
        let id = TransferId::new(self.next_id).expect("ids start at 1");
        let (kind, path) = match &job.kind {
            JobKind::Download(opts) => (
                TransferKind::Download,
                opts.target.as_ref().map(|t| self.download_dir.join(t)),
            ),
            JobKind::Upload { body, .. } => (TransferKind::Upload, body.file().cloned()),
            JobKind::Fetch { .. } => (TransferKind::Fetch, None),
        };
        let key = Admission::key(job.priority, id);
        let host = self.admission.host(&job.request.url);
        let mut record = Record {
            kind,
            url: job.request.url.as_str().to_owned(),
            path,
            host: Arc::clone(&host),
            priority: job.priority,
            progress: Arc::new(Progress::new()),
            rate: Arc::new(Bucket::new(job.max_rate)),
            slot: Slot::Queued {
                key,
                runner: Runner::New(Box::new(job)),
            },
            waiters: Vec::new(),
            seq: Some(0),
            left: None,
            created: SystemTime::now(),
        };
        let event = record.event(id, EventKind::Queued);
        self.map.insert(id, record);
        self.admission.enqueue(&host, key, id);
        (
            id,
            Effects {
                event,
                ..Effects::default()
            },
        )
    }

    /// The id of the next [`submit`](Self::submit).
    #[cfg_attr(not(feature = "journal"), allow(dead_code))]
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id + 1
    }

    /// Transition: a transfer restored from the journal becomes a record under its own id,
    /// `Queued` (or `Paused` when `paused`), its events numbered from `seq` (publishes
    /// `Restored`). Ids issued later continue past `max_id`.
    #[cfg(feature = "journal")]
    pub(crate) fn restore(
        &mut self,
        id: TransferId,
        job: Job,
        paused: bool,
        seq: u64,
        restored: EventKind,
    ) -> Effects {
        self.next_id = self.next_id.max(id.get());
        let (kind, path) = match &job.kind {
            JobKind::Download(opts) => (
                TransferKind::Download,
                opts.target.as_ref().map(|t| self.download_dir.join(t)),
            ),
            JobKind::Upload { body, .. } => (TransferKind::Upload, body.file().cloned()),
            JobKind::Fetch { .. } => (TransferKind::Fetch, None),
        };
        let key = Admission::key(job.priority, id);
        let host = self.admission.host(&job.request.url);
        let (url, priority, rate) = (
            job.request.url.as_str().to_owned(),
            job.priority,
            Arc::new(Bucket::new(job.max_rate)),
        );
        let runner = Runner::New(Box::new(job));
        let slot = if paused {
            Slot::Paused(runner)
        } else {
            self.admission.enqueue(&host, key, id);
            Slot::Queued { key, runner }
        };
        let progress = Arc::new(Progress::new());
        if let EventKind::Restored { bytes_on_disk, .. } = &restored {
            progress.set_transferred(*bytes_on_disk);
        }
        let mut record = Record {
            kind,
            url,
            path,
            host,
            priority,
            progress,
            rate,
            slot,
            waiters: Vec::new(),
            seq: Some(seq),
            left: None,
            created: SystemTime::now(),
        };
        let event = record.event(id, restored);
        self.map.insert(id, record);
        Effects {
            event,
            ..Effects::default()
        }
    }

    /// Ids issued from now on are past `max_id`.
    #[cfg(feature = "journal")]
    pub(crate) fn skip_ids(&mut self, max_id: u64) {
        self.next_id = self.next_id.max(max_id);
    }

    /// Transition: admit the next waiting transfer if a slot is free, `Queued` → `Active`. A
    /// transfer that never ran gets its actor from `launch`, and the table hands it the
    /// record's event counter: from then on it publishes none of the transfer's events.
    pub(crate) fn start_next(
        &mut self,
        mut launch_actor: impl FnMut(TransferId, Launch) -> A,
    ) -> Option<Started<A>> {
        loop {
            let id = self.admission.next()?;
            let Some(mut record) = self.map.remove(&id) else {
                continue;
            };
            // The slot is consumed by value, and the record put back with the next one.
            let started = match record.slot {
                Slot::Queued {
                    runner: Runner::New(job),
                    ..
                } => {
                    let next_seq = record.seq.take().unwrap_or(0);
                    let launch = Launch {
                        job: *job,
                        progress: Arc::clone(&record.progress),
                        rate: Arc::clone(&record.rate),
                        next_seq,
                    };
                    record.slot = Slot::Active(launch_actor(id, launch));
                    Some(Started::Launched)
                }
                Slot::Queued {
                    runner: Runner::Actor(actor),
                    ..
                } => {
                    record.slot = Slot::Active(actor.clone());
                    Some(Started::Resume(actor))
                }
                // Admission holds queued transfers alone; should another come out, it gives
                // its slot back.
                other => {
                    self.admission.release(&record.host);
                    record.slot = other;
                    None
                }
            };
            self.map.insert(id, record);
            if started.is_some() {
                return started;
            }
        }
    }

    /// Transition: cancel. A transfer with an actor is forwarded to it; one without ends here,
    /// `Cancelled`.
    pub(crate) fn cancel(&mut self, id: TransferId) -> (ControlAnswer<A>, Effects) {
        let Some(record) = self.map.get(&id) else {
            return (
                ControlAnswer::Now(Err(ControlError::Unknown)),
                Effects::default(),
            );
        };
        if let Some(end) = record.state().end_state() {
            return (
                ControlAnswer::Now(Err(ControlError::NotActive(end))),
                Effects::default(),
            );
        }
        match record.actor() {
            Some(actor) => (
                ControlAnswer::Forward(actor.clone(), Arc::clone(&record.progress)),
                Effects::default(),
            ),
            None => (
                ControlAnswer::Now(Ok(())),
                self.end_without_actor(id, Outcome::cancelled_unanswered(0)),
            ),
        }
    }

    /// Transition: pause. An active transfer is forwarded to its actor (which reports
    /// [`parked`](Self::parked)); a queued one gives up its place, `Queued` → `Paused`.
    pub(crate) fn pause(&mut self, id: TransferId) -> (ControlAnswer<A>, Effects) {
        let Some(mut record) = self.map.remove(&id) else {
            return (
                ControlAnswer::Now(Err(ControlError::Unknown)),
                Effects::default(),
            );
        };
        let mut effects = Effects::default();
        let control = match record.state().end_state() {
            Some(end) => ControlAnswer::Now(Err(ControlError::NotActive(end))),
            None => match record.slot {
                Slot::Queued { key, runner } => {
                    self.admission.remove(&record.host, key);
                    record.slot = Slot::Paused(runner);
                    effects.event = record.event(
                        id,
                        EventKind::Paused {
                            bytes_transferred: 0,
                        },
                    );
                    ControlAnswer::Now(Ok(()))
                }
                Slot::Active(ref actor) => {
                    ControlAnswer::Forward(actor.clone(), Arc::clone(&record.progress))
                }
                Slot::Paused(_) | Slot::Ended(_) => ControlAnswer::Now(Ok(())),
            },
        };
        self.map.insert(id, record);
        (control, effects)
    }

    /// Transition: the actor paused, `Active` → `Paused`; its admission slot is free.
    pub(crate) fn parked(&mut self, id: TransferId) {
        let Some(record) = self.map.get_mut(&id) else {
            return;
        };
        let Slot::Active(actor) = &record.slot else {
            return;
        };
        record.slot = Slot::Paused(Runner::Actor(actor.clone()));
        self.admission.release(&record.host);
    }

    /// Transition: resume, `Paused` → `Queued` (nothing to do for a queued or active one).
    pub(crate) fn resume(&mut self, id: TransferId) -> Result<Effects, ControlError> {
        let mut record = self.map.remove(&id).ok_or(ControlError::Unknown)?;
        let result = match record.state().end_state() {
            Some(end) => Err(ControlError::NotActive(end)),
            None => match record.slot {
                Slot::Paused(runner) => {
                    let key = Admission::key(record.priority, id);
                    record.slot = Slot::Queued { key, runner };
                    self.admission.enqueue(&record.host, key, id);
                    Ok(Effects {
                        event: record.event(id, EventKind::Resumed),
                        ..Effects::default()
                    })
                }
                other => {
                    record.slot = other;
                    Ok(Effects::default())
                }
            },
        };
        self.map.insert(id, record);
        result
    }

    /// Transition: the actor ended (its `Ended` event is out), any → `Ended`.
    pub(crate) fn finished(
        &mut self,
        id: TransferId,
        outcome: Outcome,
        left: Option<Left>,
    ) -> Effects {
        let Some(record) = self.map.get_mut(&id) else {
            return Effects::default();
        };
        if let Slot::Ended(_) = record.slot {
            // One report per actor, and an ended record has none: never counted twice.
            return Effects::default();
        }
        let answer = record.answer(&outcome);
        record.left = left;
        match std::mem::replace(&mut record.slot, Slot::Ended(outcome)) {
            Slot::Active(_) => self.admission.release(&record.host),
            Slot::Queued { key, .. } => self.admission.remove(&record.host, key),
            Slot::Paused(_) | Slot::Ended(_) => {}
        }
        Effects {
            answer,
            event: None,
            forgotten: self.retire(id),
        }
    }

    /// Transition: end a transfer that has no actor (queued or paused before it ever ran);
    /// the table publishes its `Ended`. Nothing for any other.
    fn end_without_actor(&mut self, id: TransferId, outcome: Outcome) -> Effects {
        let Some(record) = self.map.get_mut(&id) else {
            return Effects::default();
        };
        match &record.slot {
            Slot::Queued {
                runner: Runner::New(_),
                key,
            } => self.admission.remove(&record.host, *key),
            Slot::Paused(Runner::New(_)) => {}
            _ => return Effects::default(),
        }
        let answer = record.answer(&outcome);
        record.slot = Slot::Ended(outcome.clone());
        let event = record.event(id, EventKind::Ended(outcome));
        Effects {
            answer,
            event,
            forgotten: self.retire(id),
        }
    }

    /// Transition: shut down. Every transfer with no actor ends here as `outcome` (one
    /// [`Effects`] each); returns them and the actors to abort. One of a kind that `kept`
    /// names stops without an end: the journal keeps it for the next start, which publishes
    /// its one `Ended`; its waiters are let go unanswered.
    pub(crate) fn shutdown(
        &mut self,
        outcome: &Outcome,
        kept: impl Fn(TransferKind) -> bool,
    ) -> (Vec<Effects>, Vec<A>) {
        let unstarted = self.admission.waiting().into_iter().chain(
            self.map
                .iter()
                .filter(|(_, r)| matches!(r.slot, Slot::Paused(Runner::New(_))))
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
        );
        let ended = unstarted
            .map(|id| {
                let keep = self.map.get(&id).is_some_and(|r| kept(r.kind));
                let mut effects = self.end_without_actor(id, outcome.clone());
                if keep {
                    effects.event = None;
                    effects.answer = None;
                }
                effects
            })
            .collect();
        let actors = self
            .map
            .values()
            .filter_map(Record::actor)
            .cloned()
            .collect();
        (ended, actors)
    }

    /// Transition: erase an ended record (forgotten, with the files it left if asked).
    pub(crate) fn erase(&mut self, id: TransferId, delete_files: bool) -> (EraseAnswer, Effects) {
        let Some(record) = self.map.get_mut(&id) else {
            return (EraseAnswer::Unknown, Effects::default());
        };
        let Slot::Ended(outcome) = &record.slot else {
            if record.state().is_ended() {
                let (tx, rx) = oneshot::channel();
                record.waiters.push(tx);
                return (EraseAnswer::AfterEnd(rx), Effects::default());
            }
            return (EraseAnswer::Active, Effects::default());
        };
        let files: Vec<(PathBuf, Option<FileId>)> = if !delete_files {
            Vec::new()
        } else {
            match (outcome.path(), &record.left) {
                (Some(path), Some(Left::Placed(id))) => vec![(PathBuf::from(path), Some(*id))],
                (Some(path), _) => vec![(PathBuf::from(path), None)],
                (None, Some(Left::Part(part))) => vec![(part.clone(), None)],
                (None, _) => Vec::new(),
            }
        };
        self.forget(id);
        if self.ended.len() > 2 * self.ended_count + 1024 {
            // Many erased ids wait in the eviction order: drop them.
            let map = &self.map;
            self.ended.retain(|id| map.contains_key(id));
        }
        let effects = Effects {
            forgotten: vec![id],
            ..Effects::default()
        };
        (EraseAnswer::Done(files), effects)
    }

    /// The outcome now if the record ended, else a receiver of it.
    pub(crate) fn wait(&mut self, id: TransferId) -> WaitAnswer {
        let Some(record) = self.map.get_mut(&id) else {
            return WaitAnswer::Unknown;
        };
        if let Slot::Ended(o) = &record.slot {
            return WaitAnswer::Now(o.clone());
        }
        let (tx, rx) = oneshot::channel();
        record.waiters.push(tx);
        WaitAnswer::Later(rx)
    }

    /// Change one transfer's rate limit (its bucket, shared with its actor).
    pub(crate) fn set_rate(
        &self,
        id: TransferId,
        bytes_per_sec: Option<u64>,
    ) -> Result<(), ControlError> {
        let record = self.map.get(&id).ok_or(ControlError::Unknown)?;
        if let Some(end) = record.state().end_state() {
            return Err(ControlError::NotActive(end));
        }
        record.rate.set_rate(bytes_per_sec);
        Ok(())
    }

    pub(crate) fn status(&self, id: TransferId) -> Option<TransferStatus> {
        self.map.get(&id).map(|r| r.status(id))
    }

    /// Snapshots of every transfer `keep` admits (given its snapshot and when it was
    /// submitted), by id.
    pub(crate) fn list(
        &self,
        keep: impl Fn(&TransferStatus, SystemTime) -> bool,
    ) -> Vec<TransferStatus> {
        let mut out: Vec<TransferStatus> = self
            .map
            .iter()
            .filter_map(|(id, r)| Some(r.status(*id)).filter(|s| keep(s, r.created)))
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// Records a restored transfer's time of submit, from the journal.
    #[cfg(feature = "journal")]
    pub(crate) fn set_created(&mut self, id: TransferId, created: SystemTime) {
        if let Some(r) = self.map.get_mut(&id) {
            r.created = created;
        }
    }

    /// How many transfers the table holds in each state: queued, active, paused, completed,
    /// failed, cancelled.
    pub(crate) fn counts(&self) -> [usize; 6] {
        let mut counts = [0; 6];
        for r in self.map.values() {
            counts[match r.state() {
                TransferState::Queued => 0,
                TransferState::Active => 1,
                TransferState::Paused => 2,
                TransferState::Completed => 3,
                TransferState::Failed => 4,
                TransferState::Cancelled => 5,
            }] += 1;
        }
        counts
    }

    /// Count a record that just ended; forget the oldest ended ones past `keep_ended`, and the
    /// oldest that hold a body while their bodies pass `keep_ended_bytes` (never this one).
    fn retire(&mut self, id: TransferId) -> Vec<TransferId> {
        let mut forgotten = Vec::new();
        self.ended.push_back(id);
        self.ended_count += 1;
        self.ended_bytes += self.map.get(&id).map_or(0, Record::body_bytes);
        while self.ended_count > self.keep_ended {
            let Some(old) = self.ended.pop_front() else {
                break;
            };
            if old == id {
                self.ended.push_front(old);
                break;
            }
            if matches!(self.map.get(&old), Some(r) if matches!(r.slot, Slot::Ended(_))) {
                self.forget(old);
                forgotten.push(old);
            }
        }
        while self.ended_bytes > self.keep_ended_bytes {
            let map = &self.map;
            let holder = self
                .ended
                .iter()
                .position(|old| *old != id && map.get(old).is_some_and(|r| r.body_bytes() > 0));
            let Some(old) = holder.and_then(|i| self.ended.remove(i)) else {
                break;
            };
            self.forget(old);
            forgotten.push(old);
        }
        forgotten
    }

    /// Drop an ended record (erased, or past the `keep_ended` limits).
    fn forget(&mut self, id: TransferId) {
        if let Some(record) = self.map.remove(&id) {
            self.ended_bytes -= record.body_bytes();
        }
        self.ended_count -= 1;
    }
}

impl<A> Record<A> {
    /// Where a record stands for admission when its queues are rebuilt: holding a slot, or
    /// waiting for one (neither when paused or ended).
    fn place<'a>((id, record): (&'a TransferId, &'a Self)) -> Option<(&'a Host, Place)> {
        let place = match record.slot {
            Slot::Active(_) => Place::Running,
            Slot::Queued { key, .. } => Place::Waiting(key, *id),
            Slot::Paused(_) | Slot::Ended(_) => return None,
        };
        Some((&record.host, place))
    }

    /// Where the transfer is: ended if its slot says so, or if its actor set an end state (the
    /// actor does so before it publishes `Ended`, and its report may still be on the way
    /// here), else as its slot says. The one answer to `Status`, `List`, `SetRate` and the
    /// control messages, so none contradicts another or an `Ended` already delivered. The
    /// table reads only end states from the shared state: queued and paused without an actor
    /// are facts of the slot.
    fn state(&self) -> TransferState {
        let slot = match &self.slot {
            Slot::Ended(o) => return o.end_state().into(),
            Slot::Queued { .. } => TransferState::Queued,
            Slot::Active(_) => TransferState::Active,
            Slot::Paused(_) => TransferState::Paused,
        };
        match self.progress.state().end_state() {
            Some(end) => end.into(),
            None => slot,
        }
    }

    /// The actor of the transfer, if one runs (active, paused, or resumed and waiting).
    fn actor(&self) -> Option<&A> {
        match &self.slot {
            Slot::Active(actor)
            | Slot::Paused(Runner::Actor(actor))
            | Slot::Queued {
                runner: Runner::Actor(actor),
                ..
            } => Some(actor),
            _ => None,
        }
    }

    /// The next event of a transfer whose events the table still publishes; `None` once its
    /// actor took the counter over.
    fn event(&mut self, id: TransferId, kind: EventKind) -> Option<TransferEvent> {
        let seq = self.seq.as_mut()?;
        let event = TransferEvent {
            id,
            seq: *seq,
            kind,
        };
        *seq += 1;
        Some(event)
    }

    /// The waiters to answer with `outcome`, if any.
    fn answer(&mut self, outcome: &Outcome) -> Option<(Vec<oneshot::Sender<Outcome>>, Outcome)> {
        (!self.waiters.is_empty()).then(|| (std::mem::take(&mut self.waiters), outcome.clone()))
    }

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

    fn status(&self, id: TransferId) -> TransferStatus {
        let state = self.state();
        // A download's path is the one its transfer placed it at, once it did (a `Uniquify`
        // name, or a name from the response); until then, the target asked for.
        let path = || self.progress.path().or_else(|| self.path.clone());
        let (error, path) = match &self.slot {
            Slot::Ended(o) => (
                o.error().cloned(),
                o.path().map(PathBuf::from).or_else(path),
            ),
            // Ended, its report still on the way here: what the transfer kept of its end.
            _ if state.is_ended() => match self.progress.end() {
                Some((error, p)) => (error.clone(), p.clone().or_else(path)),
                None => (None, path()),
            },
            _ => (None, path()),
        };
        TransferStatus {
            id,
            kind: self.kind,
            state,
            url: self.url.clone(),
            final_url: self.progress.final_url(),
            path,
            bytes_transferred: match &self.slot {
                Slot::Ended(o) => o.bytes(),
                _ => self.progress.transferred(),
            },
            bytes_estimated: self.progress.estimated(),
            error,
            can_resume: state == TransferState::Paused && self.progress.can_resume(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{error::EndState, error::TransferError, request::Fetch};

    /// The states a record can be in, as the table sees them.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum S {
        QueuedNew,
        QueuedActor,
        Active,
        PausedNew,
        PausedActor,
        Ended(EndState),
        /// Its actor set an end state (and published `Ended`); its report is on the way.
        EndedUnheard,
    }

    const ALL: [S; 9] = [
        S::QueuedNew,
        S::QueuedActor,
        S::Active,
        S::PausedNew,
        S::PausedActor,
        S::Ended(EndState::Completed),
        S::Ended(EndState::Failed),
        S::Ended(EndState::Cancelled),
        S::EndedUnheard,
    ];

    /// A table with one admission slot, and the actors it launched (an actor's handle is its
    /// transfer's id).
    struct Fx {
        t: Records<u32>,
        launched: Vec<(TransferId, Launch)>,
    }

    fn actor(id: TransferId) -> u32 {
        id.get() as u32
    }

    fn outcome(end: EndState, body: usize) -> Outcome {
        match end {
            EndState::Completed => Outcome::Completed {
                bytes: body as u64,
                status: 200,
                headers: Default::default(),
                url: "http://h.test/x".into(),
                output: Output::Body(vec![7; body].into()),
            },
            EndState::Failed => Outcome::failed_unanswered(0, TransferError::Shutdown, 1),
            EndState::Cancelled => Outcome::cancelled_unanswered(0),
        }
    }

    impl Fx {
        fn new() -> Fx {
            Fx::with(Admission::new(1, None), 100, u64::MAX)
        }

        fn with(admission: Admission, keep_ended: usize, keep_ended_bytes: u64) -> Fx {
            Fx {
                t: Records::new(
                    admission,
                    PathBuf::from("/dl"),
                    keep_ended,
                    keep_ended_bytes,
                ),
                launched: Vec::new(),
            }
        }

        fn submit(&mut self) -> TransferId {
            self.submit_to("http://h.test/x")
        }

        fn submit_to(&mut self, url: &str) -> TransferId {
            let job = Fetch::get(url).validate().unwrap();
            let (id, effects) = self.t.submit(job);
            let event = effects.event.expect("Queued is published");
            assert_eq!((event.id, event.seq), (id, 0));
            assert!(matches!(event.kind, EventKind::Queued));
            id
        }

        /// Start what can start.
        fn admit(&mut self) -> Vec<Started<u32>> {
            let mut started = Vec::new();
            let launched = &mut self.launched;
            while let Some(s) = self.t.start_next(|id, launch| {
                launched.push((id, launch));
                actor(id)
            }) {
                started.push(s);
            }
            started
        }

        fn state(&self, id: TransferId) -> TransferState {
            self.t.status(id).expect("known").state
        }

        fn progress(&self, id: TransferId) -> Arc<Progress> {
            let (_, launch) = self
                .launched
                .iter()
                .find(|(i, _)| *i == id)
                .expect("launched");
            Arc::clone(&launch.progress)
        }

        fn seq_held(&self, id: TransferId) -> Option<u64> {
            self.t.map[&id].seq
        }

        /// A record in state `s` (another transfer holds the one admission slot where `s`
        /// needs it held).
        fn in_state(s: S) -> (Fx, TransferId) {
            let mut fx = Fx::new();
            let id = match s {
                S::Active => {
                    let a = fx.submit();
                    assert_eq!(fx.admit(), vec![Started::Launched]);
                    a
                }
                S::QueuedNew => {
                    let (mut fx2, _) = Fx::in_state(S::Active);
                    let b = fx2.submit();
                    assert_eq!(fx2.admit(), vec![]);
                    fx = fx2;
                    b
                }
                S::PausedNew => {
                    let (mut fx2, b) = Fx::in_state(S::QueuedNew);
                    let (answer, effects) = fx2.t.pause(b);
                    assert!(matches!(answer, ControlAnswer::Now(Ok(()))));
                    assert!(effects.event.is_some());
                    fx = fx2;
                    b
                }
                S::PausedActor => {
                    let (mut fx2, a) = Fx::in_state(S::Active);
                    let (answer, _) = fx2.t.pause(a);
                    assert!(matches!(answer, ControlAnswer::Forward(x, _) if x == actor(a)));
                    fx2.t.parked(a);
                    fx = fx2;
                    a
                }
                S::QueuedActor => {
                    let (mut fx2, a) = Fx::in_state(S::PausedActor);
                    fx2.submit();
                    assert_eq!(fx2.admit(), vec![Started::Launched], "the freed slot");
                    let effects = fx2.t.resume(a).unwrap();
                    assert!(effects.event.is_none(), "its actor publishes Resumed");
                    assert_eq!(fx2.admit(), vec![], "the slot is taken");
                    fx = fx2;
                    a
                }
                S::Ended(end) => {
                    let (mut fx2, a) = Fx::in_state(S::Active);
                    let effects = fx2.t.finished(a, outcome(end, 5), None);
                    assert!(effects.forgotten.is_empty() && effects.event.is_none());
                    fx = fx2;
                    a
                }
                S::EndedUnheard => {
                    let (fx2, a) = Fx::in_state(S::Active);
                    // What the actor does before it publishes `Ended`.
                    let progress = fx2.progress(a);
                    progress.set_transferred(5);
                    progress.set_state(TransferState::Completed);
                    fx = fx2;
                    a
                }
            };
            assert_eq!(fx.state(id), expected_state(s), "{s:?}");
            (fx, id)
        }
    }

    fn expected_state(s: S) -> TransferState {
        match s {
            S::QueuedNew | S::QueuedActor => TransferState::Queued,
            S::Active => TransferState::Active,
            S::PausedNew | S::PausedActor => TransferState::Paused,
            S::Ended(end) => end.into(),
            S::EndedUnheard => TransferState::Completed,
        }
    }

    /// The end state a control request must answer with, if any.
    fn ended(s: S) -> Option<EndState> {
        match s {
            S::Ended(end) => Some(end),
            S::EndedUnheard => Some(EndState::Completed),
            _ => None,
        }
    }

    /// The answer given at once, if it was.
    fn now(answer: &ControlAnswer<u32>) -> Option<Result<(), ControlError>> {
        match answer {
            ControlAnswer::Now(result) => Some(*result),
            ControlAnswer::Forward(..) => None,
        }
    }

    fn has_actor(s: S) -> bool {
        matches!(
            s,
            S::QueuedActor | S::Active | S::PausedActor | S::EndedUnheard
        )
    }

    #[test]
    fn status_and_list_in_every_state() {
        for s in ALL {
            let (fx, id) = Fx::in_state(s);
            let status = fx.t.status(id).unwrap();
            assert_eq!(status.state, expected_state(s), "{s:?}");
            let listed = fx.t.list(|st, _| st.state == expected_state(s));
            assert!(listed.iter().any(|st| st.id == id), "{s:?}");
            if s == S::EndedUnheard {
                assert_eq!(status.bytes_transferred, 5, "the actor's count");
            }
        }
        assert!(Fx::new().t.status(TransferId::new(9).unwrap()).is_none());
    }

    /// A failure announced by its actor, its report not yet here: `Status` already says how it
    /// failed and where its file is, not `Failed` without an error.
    #[test]
    fn status_of_a_failure_not_yet_reported_shows_its_error_and_path() {
        let (fx, a) = Fx::in_state(S::Active);
        let progress = fx.progress(a);
        let error = TransferError::Server { status: 404 };
        progress.ended_with(Some(error.clone()), Some(PathBuf::from("/d/kept.bin")));
        progress.set_state(TransferState::Failed);
        let status = fx.t.status(a).unwrap();
        assert_eq!(status.state, TransferState::Failed);
        assert_eq!(status.error, Some(error));
        assert_eq!(status.path, Some(PathBuf::from("/d/kept.bin")));
    }

    #[test]
    fn cancel_in_every_state() {
        for s in ALL {
            let (mut fx, id) = Fx::in_state(s);
            let (answer, effects) = fx.t.cancel(id);
            match (ended(s), has_actor(s)) {
                (Some(end), _) => {
                    assert_eq!(
                        now(&answer),
                        Some(Err(ControlError::NotActive(end))),
                        "{s:?}"
                    );
                    assert!(effects.event.is_none(), "{s:?}");
                    assert_eq!(fx.state(id), expected_state(s), "{s:?}: unchanged");
                }
                (None, true) => {
                    assert!(
                        matches!(answer, ControlAnswer::Forward(a, _) if a == actor(id)),
                        "{s:?}: {answer:?}"
                    );
                    assert!(effects.event.is_none(), "{s:?}: the actor decides");
                    assert_eq!(fx.state(id), expected_state(s), "{s:?}: until it reports");
                }
                (None, false) => {
                    assert!(matches!(answer, ControlAnswer::Now(Ok(()))), "{s:?}");
                    let event = effects.event.expect("the table publishes Ended");
                    let seq = if s == S::PausedNew { 2 } else { 1 };
                    assert_eq!(event.seq, seq, "{s:?}: after Queued (and Paused)");
                    assert!(matches!(
                        event.kind,
                        EventKind::Ended(Outcome::Cancelled { .. })
                    ));
                    assert_eq!(fx.state(id), TransferState::Cancelled);
                    assert_eq!(fx.t.admission().queued(), 0, "{s:?}: out of the queue");
                }
            }
        }
        let (answer, _) = Fx::new().t.cancel(TransferId::new(9).unwrap());
        assert!(matches!(
            answer,
            ControlAnswer::Now(Err(ControlError::Unknown))
        ));
    }

    #[test]
    fn pause_in_every_state() {
        for s in ALL {
            let (mut fx, id) = Fx::in_state(s);
            let queued_before = fx.t.admission().queued();
            let (answer, effects) = fx.t.pause(id);
            match s {
                _ if ended(s).is_some() => {
                    let end = ended(s).unwrap();
                    assert_eq!(
                        now(&answer),
                        Some(Err(ControlError::NotActive(end))),
                        "{s:?}"
                    );
                    assert_eq!(fx.state(id), expected_state(s), "{s:?}");
                }
                S::Active => {
                    assert!(matches!(answer, ControlAnswer::Forward(a, _) if a == actor(id)));
                    assert!(effects.event.is_none());
                    assert_eq!(fx.state(id), TransferState::Active, "until it parks");
                }
                S::QueuedNew | S::QueuedActor => {
                    assert!(matches!(answer, ControlAnswer::Now(Ok(()))), "{s:?}");
                    assert_eq!(fx.state(id), TransferState::Paused, "{s:?}");
                    assert_eq!(fx.t.admission().queued(), queued_before - 1, "{s:?}");
                    match s {
                        S::QueuedNew => {
                            let event = effects.event.expect("published by the table");
                            assert_eq!(event.seq, 1);
                            assert!(matches!(
                                event.kind,
                                EventKind::Paused {
                                    bytes_transferred: 0
                                }
                            ));
                        }
                        _ => assert!(effects.event.is_none(), "its actor owns its events"),
                    }
                }
                S::PausedNew | S::PausedActor => {
                    assert!(matches!(answer, ControlAnswer::Now(Ok(()))), "{s:?}");
                    assert!(effects.event.is_none(), "{s:?}");
                    assert_eq!(fx.state(id), TransferState::Paused, "{s:?}");
                }
                _ => unreachable!(),
            }
        }
        let (answer, _) = Fx::new().t.pause(TransferId::new(9).unwrap());
        assert!(matches!(
            answer,
            ControlAnswer::Now(Err(ControlError::Unknown))
        ));
    }

    #[test]
    fn resume_in_every_state() {
        for s in ALL {
            let (mut fx, id) = Fx::in_state(s);
            let queued_before = fx.t.admission().queued();
            let result = fx.t.resume(id);
            match s {
                _ if ended(s).is_some() => {
                    let end = ended(s).unwrap();
                    assert!(
                        matches!(result, Err(ControlError::NotActive(e)) if e == end),
                        "{s:?}: {result:?}"
                    );
                }
                S::PausedNew | S::PausedActor => {
                    let effects = result.unwrap();
                    assert_eq!(fx.state(id), TransferState::Queued, "{s:?}");
                    assert_eq!(fx.t.admission().queued(), queued_before + 1, "{s:?}");
                    if s == S::PausedNew {
                        let event = effects.event.expect("published by the table");
                        assert_eq!(event.seq, 2, "after Queued and Paused");
                        assert!(matches!(event.kind, EventKind::Resumed));
                    } else {
                        assert!(effects.event.is_none(), "its actor publishes Resumed");
                        assert_eq!(fx.admit(), vec![Started::Resume(actor(id))]);
                        assert_eq!(fx.state(id), TransferState::Active);
                    }
                }
                S::QueuedNew | S::QueuedActor | S::Active => {
                    let effects = result.unwrap();
                    assert!(effects.event.is_none(), "{s:?}");
                    assert_eq!(fx.state(id), expected_state(s), "{s:?}: unchanged");
                    assert_eq!(fx.t.admission().queued(), queued_before, "{s:?}");
                }
                _ => unreachable!(),
            }
        }
        let result = Fx::new().t.resume(TransferId::new(9).unwrap());
        assert!(matches!(result, Err(ControlError::Unknown)));
    }

    #[test]
    fn parked_in_every_state() {
        for s in ALL {
            let (mut fx, id) = Fx::in_state(s);
            let free_before = fx.t.admission().active() == 0;
            let waiting = fx.submit();
            fx.t.parked(id);
            if matches!(s, S::Active | S::EndedUnheard) {
                // (An actor that parked, then ended: its `Parked` comes before its report.)
                let state = match s {
                    S::Active => TransferState::Paused,
                    _ => TransferState::Completed,
                };
                assert_eq!(fx.state(id), state, "{s:?}");
                assert_eq!(
                    fx.admit(),
                    vec![Started::Launched],
                    "its slot went to the next"
                );
                assert_eq!(fx.state(waiting), TransferState::Active);
            } else {
                assert_eq!(fx.state(id), expected_state(s), "{s:?}: unchanged");
                let started = fx.admit().len();
                assert_eq!(started, usize::from(free_before), "{s:?}: no slot freed");
            }
        }
    }

    #[test]
    fn finished_in_every_state_with_an_actor() {
        for s in ALL
            .into_iter()
            .filter(|s| has_actor(*s) || matches!(s, S::Ended(_)))
        {
            let (mut fx, id) = Fx::in_state(s);
            let WaitAnswer::Later(mut waiter) = fx.t.wait(id) else {
                assert!(matches!(s, S::Ended(_)), "{s:?}");
                let effects = fx.t.finished(id, outcome(EndState::Cancelled, 0), None);
                assert!(
                    effects.answer.is_none() && effects.forgotten.is_empty(),
                    "{s:?}"
                );
                assert_eq!(fx.state(id), expected_state(s), "{s:?}: ended once");
                continue;
            };
            let next = fx.submit();
            let active_before = fx.t.admission().active();
            let queued_before = fx.t.admission().queued();
            let effects = fx.t.finished(id, outcome(EndState::Cancelled, 0), None);
            let (waiters, answer) = effects.answer.expect("the waiter");
            assert_eq!(answer, Outcome::cancelled_unanswered(0));
            for w in waiters {
                w.send(answer.clone()).unwrap();
            }
            assert_eq!(waiter.try_recv().unwrap(), Some(answer), "{s:?}");
            assert!(effects.event.is_none(), "{s:?}: the actor published Ended");
            assert_eq!(fx.state(id), TransferState::Cancelled, "{s:?}");
            match s {
                S::Active | S::EndedUnheard => {
                    assert_eq!(fx.t.admission().active(), active_before - 1, "{s:?}")
                }
                S::QueuedActor => {
                    assert_eq!(fx.t.admission().queued(), queued_before - 1, "{s:?}")
                }
                _ => assert_eq!(fx.t.admission().active(), active_before, "{s:?}"),
            }
            fx.admit();
            let next_state = match s {
                // Another transfer holds the slot.
                S::QueuedActor => TransferState::Queued,
                _ => TransferState::Active,
            };
            assert_eq!(fx.state(next), next_state, "{s:?}");
        }
    }

    #[test]
    fn set_rate_in_every_state() {
        for s in ALL {
            let (fx, id) = Fx::in_state(s);
            let result = fx.t.set_rate(id, Some(1000));
            match ended(s) {
                Some(end) => assert_eq!(result, Err(ControlError::NotActive(end)), "{s:?}"),
                None => assert_eq!(result, Ok(()), "{s:?}"),
            }
        }
        let fx = Fx::new();
        let result = fx.t.set_rate(TransferId::new(9).unwrap(), None);
        assert_eq!(result, Err(ControlError::Unknown));
    }

    #[test]
    fn erase_in_every_state() {
        for s in ALL {
            let (mut fx, id) = Fx::in_state(s);
            let (answer, effects) = fx.t.erase(id, true);
            match s {
                S::Ended(_) => {
                    assert!(matches!(answer, EraseAnswer::Done(_)), "{s:?}: {answer:?}");
                    assert_eq!(effects.forgotten, vec![id], "{s:?}");
                    assert!(fx.t.status(id).is_none(), "{s:?}");
                }
                S::EndedUnheard => {
                    // Erase waits for the report rather than answer `Active` after `Ended`.
                    let EraseAnswer::AfterEnd(mut ended) = answer else {
                        panic!("{answer:?}")
                    };
                    assert!(effects.forgotten.is_empty());
                    let effects = fx.t.finished(id, outcome(EndState::Completed, 5), None);
                    let (waiters, outcome) = effects.answer.expect("the erase waits");
                    for w in waiters {
                        w.send(outcome.clone()).unwrap();
                    }
                    assert!(ended.try_recv().unwrap().is_some());
                    let (answer, effects) = fx.t.erase(id, false);
                    assert!(matches!(answer, EraseAnswer::Done(files) if files.is_empty()));
                    assert_eq!(effects.forgotten, vec![id]);
                }
                _ => {
                    assert!(matches!(answer, EraseAnswer::Active), "{s:?}: {answer:?}");
                    assert!(effects.forgotten.is_empty(), "{s:?}");
                    assert_eq!(fx.state(id), expected_state(s), "{s:?}");
                }
            }
        }
        let (answer, _) = Fx::new().t.erase(TransferId::new(9).unwrap(), false);
        assert!(matches!(answer, EraseAnswer::Unknown));
    }

    #[test]
    fn erase_lists_the_files_left() {
        let (mut fx, id) = Fx::in_state(S::Active);
        let kept = PathBuf::from("/dl/x.part");
        let failed = outcome(EndState::Failed, 0);
        let _ = fx.t.finished(id, failed, Some(Left::Part(kept.clone())));
        let (answer, _) = fx.t.erase(id, true);
        assert!(matches!(answer, EraseAnswer::Done(files) if files == vec![(kept, None)]));
    }

    #[test]
    fn wait_in_every_state() {
        for s in ALL {
            let (mut fx, id) = Fx::in_state(s);
            match (fx.t.wait(id), s) {
                (WaitAnswer::Now(o), S::Ended(end)) => assert_eq!(o.end_state(), end),
                // Not ended as the table knows it: the report (or a cancel) answers.
                (WaitAnswer::Later(_), s) if !matches!(s, S::Ended(_)) => {}
                (answer, s) => panic!("{s:?}: {answer:?}"),
            }
        }
        let mut fx = Fx::new();
        assert!(matches!(
            fx.t.wait(TransferId::new(9).unwrap()),
            WaitAnswer::Unknown
        ));
    }

    #[test]
    fn a_cancel_without_an_actor_answers_the_waiters() {
        for s in [S::QueuedNew, S::PausedNew] {
            let (mut fx, id) = Fx::in_state(s);
            let WaitAnswer::Later(_rx) = fx.t.wait(id) else {
                panic!("not ended")
            };
            let (_, effects) = fx.t.cancel(id);
            let (waiters, outcome) = effects.answer.expect("{s:?}: the waiter");
            assert_eq!(
                (waiters.len(), outcome),
                (1, Outcome::cancelled_unanswered(0))
            );
        }
    }

    #[test]
    fn shutdown_in_every_state() {
        for s in ALL {
            let (mut fx, id) = Fx::in_state(s);
            let failed = outcome(EndState::Failed, 0);
            let (ended, actors) = fx.t.shutdown(&failed, |_| false);
            let mine = ended
                .iter()
                .filter_map(|e| e.event.as_ref())
                .filter(|e| e.id == id)
                .count();
            match s {
                S::QueuedNew | S::PausedNew => {
                    assert_eq!(mine, 1, "{s:?}: the table ends it");
                    assert_eq!(fx.state(id), TransferState::Failed, "{s:?}");
                    assert!(!actors.contains(&actor(id)), "{s:?}");
                }
                S::QueuedActor | S::Active | S::PausedActor | S::EndedUnheard => {
                    assert_eq!(mine, 0, "{s:?}: its actor ends it");
                    assert!(actors.contains(&actor(id)), "{s:?}: aborted");
                }
                S::Ended(end) => {
                    assert_eq!(mine, 0, "{s:?}");
                    assert!(!actors.contains(&actor(id)), "{s:?}");
                    assert_eq!(fx.state(id), end.into());
                }
            }
        }
    }

    #[test]
    fn the_table_publishes_until_the_first_actor_takes_the_counter() {
        let mut fx = Fx::new();
        let a = fx.submit();
        assert_eq!(fx.seq_held(a), Some(1), "Queued was seq 0");
        let b = fx.submit();
        let (_, effects) = fx.t.pause(b);
        assert_eq!(effects.event.map(|e| e.seq), Some(1));
        assert_eq!(fx.t.resume(b).unwrap().event.map(|e| e.seq), Some(2));
        assert_eq!(fx.admit(), vec![Started::Launched]);
        let (id, launch) = &fx.launched[0];
        assert_eq!((*id, launch.next_seq), (a, 1));
        assert_eq!(fx.seq_held(a), None, "handed over");
        // From here on, no transition of `a` publishes.
        let (answer, effects) = fx.t.pause(a);
        assert!(matches!(answer, ControlAnswer::Forward(..)) && effects.event.is_none());
        fx.t.parked(a);
        assert_eq!(fx.admit(), vec![Started::Launched], "b");
        assert_eq!(
            fx.launched[1].1.next_seq, 3,
            "b: after Queued, Paused, Resumed"
        );
        assert!(fx.t.resume(a).unwrap().event.is_none());
        let (answer, effects) = fx.t.pause(a);
        assert!(matches!(answer, ControlAnswer::Now(Ok(()))) && effects.event.is_none());
        let (answer, effects) = fx.t.cancel(a);
        assert!(matches!(answer, ControlAnswer::Forward(..)) && effects.event.is_none());
        let effects = fx.t.finished(a, outcome(EndState::Cancelled, 0), None);
        assert!(effects.event.is_none());
    }

    #[test]
    fn the_table_never_writes_the_shared_state() {
        let mut fx = Fx::new();
        let a = fx.submit();
        fx.admit();
        let progress = fx.progress(a);
        let b = fx.submit();
        let _ = fx.t.pause(a);
        fx.t.parked(a);
        fx.admit();
        let _ = fx.t.resume(a);
        let _ = fx.t.pause(b);
        let _ = fx.t.cancel(b);
        fx.admit();
        // Only the actor writes it; it wrote nothing here.
        assert_eq!(progress.state(), TransferState::Queued);
    }

    #[test]
    fn priority_and_order_of_admission() {
        let mut fx = Fx::new();
        let a = fx.submit();
        let b = fx.submit();
        let c = fx.submit();
        assert_eq!(fx.admit(), vec![Started::Launched]);
        assert_eq!(fx.state(a), TransferState::Active);
        let _ = fx.t.finished(a, outcome(EndState::Completed, 0), None);
        fx.admit();
        assert_eq!(fx.state(b), TransferState::Active, "first in, first out");
        assert_eq!(fx.state(c), TransferState::Queued);
    }

    #[test]
    fn a_per_host_limit_set_at_run_time_counts_the_table_as_it_stands() {
        use TransferState::{Active, Queued};
        let mut fx = Fx::with(Admission::new(3, None), 100, u64::MAX);
        let (h, other) = ("http://h.test/x", "http://other.test/x");
        let [a, b, c] = [h, h, other].map(|url| fx.submit_to(url));
        fx.admit();
        let [d, e, f] = [h, other, h].map(|url| fx.submit_to(url));
        let _ = fx.t.pause(f);
        fx.t.set_limits(None, Some(Some(1)));
        assert_eq!(
            (fx.t.admission().active(), fx.t.admission().queued()),
            (3, 2)
        );
        let end = |fx: &mut Fx, id| {
            let _ = fx.t.finished(id, outcome(EndState::Completed, 0), None);
            fx.admit();
        };
        end(&mut fx, c);
        assert_eq!(
            (fx.state(d), fx.state(e)),
            (Queued, Active),
            "h runs two already"
        );
        end(&mut fx, a);
        assert_eq!(fx.state(d), Queued, "h still runs one, its limit");
        end(&mut fx, b);
        assert_eq!(fx.state(d), Active);
        fx.t.set_limits(None, Some(None));
        let _ = fx.t.resume(f).unwrap();
        fx.admit();
        assert_eq!(fx.state(f), Active, "no per-host limit: h runs two");
    }

    #[test]
    fn retention_by_count_forgets_the_oldest_and_never_the_newest() {
        for keep in [0, 2] {
            let mut fx = Fx::with(Admission::new(100, None), keep, u64::MAX);
            let ids: Vec<TransferId> = (0..4).map(|_| fx.submit()).collect();
            fx.admit();
            let mut forgotten = Vec::new();
            for id in &ids {
                let effects = fx.t.finished(*id, outcome(EndState::Completed, 1), None);
                forgotten.extend(effects.forgotten);
            }
            let kept = keep.max(1);
            assert_eq!(forgotten, ids[..4 - kept].to_vec(), "keep {keep}");
            for id in &ids[4 - kept..] {
                assert!(fx.t.status(*id).is_some(), "keep {keep}: the newest stay");
            }
            assert_eq!(fx.t.len(), kept);
        }
    }

    #[test]
    fn retention_by_bytes_forgets_the_oldest_bodies_and_never_the_newest() {
        let mut fx = Fx::with(Admission::new(100, None), 100, 10);
        let ids: Vec<TransferId> = (0..4).map(|_| fx.submit()).collect();
        fx.admit();
        // A failure holds no body and is not forgotten for bytes.
        let e = fx.t.finished(ids[0], outcome(EndState::Failed, 0), None);
        assert!(e.forgotten.is_empty());
        let e = fx.t.finished(ids[1], outcome(EndState::Completed, 6), None);
        assert!(e.forgotten.is_empty(), "6 of 10 bytes");
        let e = fx.t.finished(ids[2], outcome(EndState::Completed, 6), None);
        assert_eq!(e.forgotten, vec![ids[1]], "12 bytes: the oldest body goes");
        let e =
            fx.t.finished(ids[3], outcome(EndState::Completed, 50), None);
        assert_eq!(
            e.forgotten,
            vec![ids[2]],
            "the newest stays, alone over the limit"
        );
        assert!(fx.t.status(ids[3]).is_some());
        assert!(fx.t.status(ids[0]).is_some(), "no body, kept");
    }

    #[test]
    fn erased_ids_do_not_pile_up_in_the_retention_order() {
        let mut fx = Fx::with(Admission::new(usize::MAX, None), usize::MAX, u64::MAX);
        for _ in 0..3000 {
            let id = fx.submit();
            fx.admit();
            let _ = fx.t.finished(id, outcome(EndState::Completed, 0), None);
            let (answer, _) = fx.t.erase(id, false);
            assert!(matches!(answer, EraseAnswer::Done(_)));
        }
        assert_eq!(fx.t.len(), 0);
        assert!(fx.t.ended.len() <= 1025, "{}", fx.t.ended.len());
    }
}
