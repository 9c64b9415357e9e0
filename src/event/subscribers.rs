//! Subscribers: who receives which transfer's events, shared by the Engine and every worker.
//!
//! Transfer actors publish straight to subscribers from their worker thread; events never pass
//! through the Engine. Who gets an event is decided when it is published; on a worker thread
//! it is sent at the end of that thread's turn (see `outbox`). Recipients are stored weak (a
//! subscription never keeps an actor alive; an event held back holds its recipient until the
//! end of that turn) and sent with `do_send`, which never waits on a full mailbox, so a slow or
//! dead subscriber cannot stall a transfer. Dead recipients are dropped the first time a
//! publish finds them.
//!
//! The registry also keeps each transfer's final `Ended` event, so that a subscriber to one id
//! that arrives after the end still receives it, exactly once: publishing `Ended` and
//! subscribing to an id both take the write lock, so one of them sees the other.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    RwLock,
};

use actix::{Recipient, WeakRecipient};

use crate::event::{outbox, EventKind, IdMap, TransferEvent, TransferId};

/// The handle of a subscription, returned by [`Subscribe`](crate::Subscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub(crate) u64);

type Entry = (u64, WeakRecipient<TransferEvent>);

#[derive(Default)]
struct Registry {
    all: Vec<Entry>,
    by_id: IdMap<Vec<Entry>>,
    ended: IdMap<TransferEvent>,
}

/// The registry; one per engine, behind an `Arc`.
#[derive(Default)]
pub(crate) struct Subscribers {
    inner: RwLock<Registry>,
    next: AtomicU64,
}

impl Subscribers {
    pub(crate) fn subscribe(
        &self,
        recipient: Recipient<TransferEvent>,
        only: Option<TransferId>,
    ) -> SubscriptionId {
        let sid = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match only {
            None => reg.all.push((sid, recipient.downgrade())),
            Some(id) => {
                if let Some(ended) = reg.ended.get(&id) {
                    recipient.do_send(ended.clone());
                } else {
                    reg.by_id
                        .entry(id)
                        .or_default()
                        .push((sid, recipient.downgrade()));
                }
            }
        }
        SubscriptionId(sid)
    }

    pub(crate) fn unsubscribe(&self, sub: SubscriptionId) -> bool {
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let before = reg.all.len() + reg.by_id.values().map(Vec::len).sum::<usize>();
        reg.all.retain(|(s, _)| *s != sub.0);
        reg.by_id.retain(|_, v| {
            v.retain(|(s, _)| *s != sub.0);
            !v.is_empty()
        });
        let after = reg.all.len() + reg.by_id.values().map(Vec::len).sum::<usize>();
        before != after
    }

    /// Publish a non-final event.
    pub(crate) fn publish(&self, event: TransferEvent, when: Delivery) {
        debug_assert!(!matches!(event.kind, EventKind::Ended(_)));
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
            // Addressed under the write lock (`do_send` never waits), so that a subscription
            // to this id either is served here or finds the remembered event.
            let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
            let own = reg.by_id.remove(&event.id).unwrap_or_default();
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
        reg.by_id.remove(&id);
    }

    fn prune(&self) {
        let mut reg = self.inner.write().unwrap_or_else(|e| e.into_inner());
        reg.all.retain(|(_, w)| alive(w));
        reg.by_id.retain(|_, v| {
            v.retain(|(_, w)| alive(w));
            !v.is_empty()
        });
    }
}

fn alive(weak: &WeakRecipient<TransferEvent>) -> bool {
    weak.upgrade().is_some_and(|r| r.connected())
}

/// When events go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Sent at once.
    Now,
    /// Sent at the end of this thread's event-loop turn, with the other messages of that turn
    /// (see `outbox`): a transfer on a worker thread publishes to subscribers on other threads.
    EndOfTurn,
}

fn send(to: Recipient<TransferEvent>, event: TransferEvent, when: Delivery) {
    match when {
        Delivery::Now => to.do_send(event),
        Delivery::EndOfTurn => outbox::event(to, event),
    }
}

/// Send to every live target without waiting (the last one gets `event` itself, the others
/// a clone); true when some subscriber is gone.
fn deliver<'a>(
    targets: impl Iterator<Item = &'a Entry>,
    event: TransferEvent,
    when: Delivery,
) -> bool {
    let mut dead = false;
    let mut previous: Option<Recipient<TransferEvent>> = None;
    for (_, weak) in targets {
        match weak.upgrade() {
            Some(r) if r.connected() => {
                if let Some(p) = previous.replace(r) {
                    send(p, event.clone(), when);
                }
            }
            _ => dead = true,
        }
    }
    if let Some(last) = previous {
        send(last, event, when);
    }
    dead
}
