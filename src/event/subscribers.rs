//! Subscribers: who receives which transfer's events, shared by the Engine and every worker.
//!
//! Transfer actors publish straight to subscribers from their worker thread; events never pass
//! through the Engine. Who gets an event is decided when it is published; on a worker thread
//! it is sent at the end of that thread's turn (see `outbox`). Recipients are held as actix
//! holds them (a subscription keeps its actor's mailbox open, as any `Recipient` does, so
//! `Subscribe::all(Printer.start().recipient())` works) until `Unsubscribe` or until the actor
//! stops itself; events are sent without waiting on a full mailbox, so a slow or dead
//! subscriber cannot stall a transfer; its `Progress` events coalesce instead (see
//! `outbox::Window`). Stopped recipients are dropped the first time a publish finds them.
//!
//! Each subscription names the kinds of events it wants; the union of all of them is kept in
//! one atomic, which publishers read before they build an event: a kind nobody asked for is
//! never built, counted or sent (a load test that wants `Ended` only pays for no `Progress`).
//!
//! The registry also keeps each transfer's final `Ended` event, so that a subscriber to one id
//! that arrives after the end still receives it, exactly once: publishing `Ended` and
//! subscribing to an id both take the write lock, so one of them sees the other.

use std::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    Arc, RwLock,
};

use actix::Recipient;

pub(crate) use crate::event::outbox::Delivery;
use crate::event::{
    outbox::{self, Subscriber, Target, Window},
    EventKind, EventKinds, IdMap, TransferEvent, TransferId,
};

/// The handle of a subscription, returned by [`Subscribe`](crate::Subscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub(crate) u64);

/// Why [`Subscribe`](crate::Subscribe) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The recipient's actor has stopped: it could never receive an event.
    #[error("the subscriber is gone: its actor has stopped")]
    RecipientGone,
}

struct Entry {
    sid: u64,
    kinds: EventKinds,
    sub: Arc<Subscriber>,
}

#[derive(Default)]
struct Registry {
    all: Vec<Entry>,
    by_id: IdMap<Vec<Entry>>,
    ended: IdMap<TransferEvent>,
    /// How many subscriptions want each kind (bit `i` of [`EventKinds`] at index `i`).
    wanting: [u32; EventKinds::COUNT],
}

impl Registry {
    fn count(&mut self, kinds: EventKinds, added: bool) {
        for (i, n) in self.wanting.iter_mut().enumerate() {
            if kinds.bits() & (1 << i) != 0 {
                *n = if added { *n + 1 } else { n.saturating_sub(1) };
            }
        }
    }

    fn wanted(&self) -> u8 {
        (0..EventKinds::COUNT)
            .filter(|&i| self.wanting[i] > 0)
            .fold(0, |m, i| m | 1 << i)
    }
}

/// The registry; one per engine, behind an `Arc`.
#[derive(Default)]
pub(crate) struct Subscribers {
    inner: RwLock<Registry>,
    next: AtomicU64,
    /// The kinds some subscription wants (the bits of [`EventKinds`]), written under the write
    /// lock. Read without the lock before an event is built: an event published while a
    /// subscription is being added may miss it, as if it had been published just before.
    wanted: AtomicU8,
}

impl Subscribers {
    /// Whether some subscription wants events of `kind`: if not, publishing one does nothing,
    /// so it need not be built.
    pub(crate) fn wants(&self, kind: EventKinds) -> bool {
        EventKinds::from_bits(self.wanted.load(Ordering::Relaxed)).intersects(kind)
    }

    fn update(&self, reg: &mut Registry, removed: &[Entry]) {
        for e in removed {
            reg.count(e.kinds, false);
        }
        self.wanted.store(reg.wanted(), Ordering::Relaxed);
    }

    pub(crate) fn subscribe(
        &self,
        recipient: Recipient<TransferEvent>,
        only: Option<TransferId>,
        kinds: EventKinds,
    ) -> Result<SubscriptionId, SubscribeError> {
        if !recipient.connected() {
            return Err(SubscribeError::RecipientGone);
        }
        let sid = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if let Some(ended) = only.and_then(|id| reg.ended.get(&id)) {
            if kinds.contains(EventKinds::ENDED) {
                recipient.do_send(ended.clone());
            }
            return Ok(SubscriptionId(sid));
        }
        let entry = Entry {
            sid,
            kinds,
            sub: Arc::new(Subscriber {
                to: recipient,
                window: Window::default(),
            }),
        };
        match only {
            None => reg.all.push(entry),
            Some(id) => reg.by_id.entry(id).or_default().push(entry),
        }
        reg.count(kinds, true);
        self.update(&mut reg, &[]);
        Ok(SubscriptionId(sid))
    }

    pub(crate) fn unsubscribe(&self, sub: SubscriptionId) -> bool {
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let removed = remove_where(&mut reg, |e| e.sid == sub.0);
        self.update(&mut reg, &removed);
        !removed.is_empty()
    }

    /// Publish a non-final event.
    pub(crate) fn publish(&self, event: TransferEvent, when: Delivery) {
        debug_assert!(!matches!(event.kind, EventKind::Ended(_)));
        if !self.wants(EventKinds::of(&event.kind)) {
            return;
        }
        let dead = {
            let reg = self.inner.read().unwrap_or_else(|e| e.into_inner());
            let own = reg.by_id.get(&event.id).into_iter().flatten();
            deliver(reg.all.iter().chain(own), event, when)
        };
        if dead {
            self.prune();
        }
    }

    /// Publish the final event and remember it for late per-id subscribers.
    pub(crate) fn publish_ended(&self, event: TransferEvent, when: Delivery) {
        debug_assert!(matches!(event.kind, EventKind::Ended(_)));
        let dead = {
            // Addressed under the write lock (sending never waits), so that a subscription
            // to this id either is served here or finds the remembered event.
            let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let own = reg.by_id.remove(&event.id).unwrap_or_default();
            if !own.is_empty() {
                self.update(&mut reg, &own);
            }
            reg.ended.insert(event.id, event.clone());
            deliver(reg.all.iter().chain(own.iter()), event, when)
        };
        if dead {
            self.prune();
        }
    }

    /// Forget a transfer's remembered final event (when the engine erases it).
    pub(crate) fn forget(&self, id: TransferId) {
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        reg.ended.remove(&id);
        if let Some(own) = reg.by_id.remove(&id) {
            self.update(&mut reg, &own);
        }
    }

    fn prune(&self) {
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let removed = remove_where(&mut reg, |e| !e.sub.to.connected());
        self.update(&mut reg, &removed);
    }
}

/// Take the entries that match out of the registry.
fn remove_where(reg: &mut Registry, gone: impl Fn(&Entry) -> bool) -> Vec<Entry> {
    let mut removed = Vec::new();
    let mut sift = |v: &mut Vec<Entry>| {
        let mut i = 0;
        while i < v.len() {
            if gone(&v[i]) {
                removed.push(v.swap_remove(i));
            } else {
                i += 1;
            }
        }
    };
    sift(&mut reg.all);
    reg.by_id.retain(|_, v| {
        sift(v);
        !v.is_empty()
    });
    removed
}

fn send(to: Target, event: TransferEvent, when: Delivery) {
    match when {
        Delivery::Now => outbox::dispatch(to, event),
        Delivery::EndOfTurn => outbox::event(to, event),
    }
}

/// Send to every live target that wants it without waiting (the last one gets `event`
/// itself, the others a clone); true when some subscriber is gone.
///
/// An `Ended` also goes, as a mere notice, to the windows of subscribers that want `Progress`
/// but not `Ended`: the transfer's coalesced `Progress` kept aside for them is then dropped.
fn deliver<'a>(
    targets: impl Iterator<Item = &'a Entry>,
    event: TransferEvent,
    when: Delivery,
) -> bool {
    let kind = EventKinds::of(&event.kind);
    let notice = kind == EventKinds::ENDED;
    let mut dead = false;
    let mut previous: Option<Target> = None;
    for e in targets {
        let wanted = e.kinds.contains(kind);
        let window_only = notice && e.kinds.contains(EventKinds::PROGRESS);
        if !(wanted || window_only) {
            continue;
        }
        if !e.sub.to.connected() {
            dead = true;
            continue;
        }
        let target = Target {
            sub: Arc::clone(&e.sub),
            wanted,
        };
        if let Some(p) = previous.replace(target) {
            send(p, event.clone(), when);
        }
    }
    if let Some(last) = previous {
        send(last, event, when);
    }
    dead
}
