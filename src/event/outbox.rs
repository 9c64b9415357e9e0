//! The end of a thread's turn: what transfers send to other threads, sent together.
//!
//! A transfer on a worker thread talks to actors on other threads: its events go to
//! subscribers, its end to the Engine. Sent one at a time, each message can wake the receiving
//! thread on its own (tokio writes its eventfd, the kernel switches threads); held back to the
//! end of this thread's event-loop turn and sent one after the other, they wake it about once.
//! One task per turn sends them, after everything else that was ready on the thread.
//!
//! Order is kept: events in the order they were published, then the finished transfers, so the
//! Engine never hears of an end before that transfer's `Ended` has gone to its subscribers. An
//! answer to an asker (`Cancel`, `Pause`) goes after [`send_events`], so that the asker, too,
//! learns of an end after the subscribers.
//!
//! Sending itself never waits, for any event. `Progress` events go through the subscriber's
//! [`Window`], which keeps how many of them wait in its mailbox bounded; every other event is
//! queued whatever the mailbox holds.

use std::{cell::RefCell, sync::Arc};
use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    task::{Context, Poll},
};

use actix::{dev::RecipientRequest, Recipient};

use crate::{
    event::report::{Finished, FinishedBatch, Reporter},
    event::{EventKind, IdMap, TransferEvent, TransferId},
};

/// A subscriber as publishers reach it: its recipient and its `Progress` window, shared
/// behind one `Arc` (cloning a `Recipient` boxes its sender anew, three allocations per event).
pub(crate) struct Subscriber {
    pub(crate) to: Recipient<TransferEvent>,
    pub(crate) window: Window,
}

/// Where one event goes: a subscriber (`wanted`), or only its window (an `Ended` as a notice
/// to a subscriber that wants `Progress` but not `Ended`).
pub(crate) struct Target {
    pub(crate) sub: Arc<Subscriber>,
    pub(crate) wanted: bool,
}

/// How many of a subscriber's `Progress` events may wait in its mailbox (actix's default
/// mailbox capacity). Beyond that they coalesce.
const ROOM: usize = 16;

/// A subscriber's `Progress` events not handled yet, and those kept aside while it has no room.
///
/// A mailbox has no length anyone can read, and actix refuses a message (`try_send` fails,
/// `send` keeps it inside its request until polled again) only to the very sender whose
/// earlier message filled the mailbox. So each `Progress` goes with `send` from a sender
/// cloned for it, which is never refused (a shared one, once refused, would hold a `Progress`
/// back until after the transfer's later events, its `Ended` too, had gone), and the reply
/// tells when it was handled; the window counts the unhandled ones.
/// While `ROOM` of them wait, a new one is kept aside instead, the latest per transfer
/// (a newer one replaces it), and goes out when there is room again, at the next `Progress`
/// to this subscriber. Any other event of the same transfer drops it: that event says where
/// the transfer is (and an `Ended` is last). No other event is ever held or dropped.
#[derive(Default)]
pub(crate) struct Window {
    inner: Mutex<WindowState>,
    /// Some `Progress` is kept aside (read without the lock by every other event).
    aside: AtomicBool,
}

#[derive(Default)]
struct WindowState {
    unhandled: VecDeque<Pin<Box<RecipientRequest<TransferEvent>>>>,
    aside: IdMap<TransferEvent>,
}

impl WindowState {
    /// Forget the requests handled (a mailbox is first in, first out).
    fn settle(&mut self) {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        while let Some(front) = self.unhandled.front_mut() {
            match front.as_mut().poll(&mut cx) {
                Poll::Ready(_) => drop(self.unhandled.pop_front()),
                Poll::Pending => break,
            }
        }
    }

    fn room(&self) -> bool {
        self.unhandled.len() < ROOM
    }
}

impl Window {
    fn progress(&self, to: &Recipient<TransferEvent>, event: TransferEvent) {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        w.settle();
        w.aside.remove(&event.id);
        while w.room() {
            let Some(&id) = w.aside.keys().next() else {
                break;
            };
            if let Some(older) = w.aside.remove(&id) {
                let request = Box::pin(to.clone().send(older));
                w.unhandled.push_back(request);
            }
        }
        if w.room() {
            let request = Box::pin(to.clone().send(event));
            w.unhandled.push_back(request);
        } else {
            w.aside.insert(event.id, event);
        }
        self.aside.store(!w.aside.is_empty(), Ordering::Relaxed);
    }

    /// Another event of transfer `id` goes out: its `Progress` kept aside is dropped.
    fn supersede(&self, id: TransferId) {
        if self.aside.load(Ordering::Relaxed) {
            let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            w.aside.remove(&id);
            self.aside.store(!w.aside.is_empty(), Ordering::Relaxed);
        }
    }
}

impl Drop for Window {
    /// A dropped request withdraws its message (actix skips a message whose asker is gone):
    /// the `Progress` events still in the mailbox are awaited to the end instead.
    fn drop(&mut self) {
        let w = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        w.settle();
        if w.unhandled.is_empty() {
            return;
        }
        let unhandled = std::mem::take(&mut w.unhandled);
        if let Some(arbiter) = actix_rt::Arbiter::try_current() {
            arbiter.spawn(async move {
                for request in unhandled {
                    let _ = request.await;
                }
            });
        }
    }
}

/// Send `event` to `to` now: a `Progress` through its window, any other at once.
pub(crate) fn dispatch(to: Target, event: TransferEvent) {
    let Subscriber { to: r, window } = &*to.sub;
    if let EventKind::Progress { .. } = event.kind {
        if to.wanted {
            window.progress(r, event);
        }
        return;
    }
    window.supersede(event.id);
    if to.wanted {
        r.do_send(event);
    }
}

/// When events go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Sent at once.
    Now,
    /// Sent at the end of this thread's event-loop turn, with the other messages of that turn:
    /// a transfer on a worker thread publishes to subscribers on other threads.
    EndOfTurn,
}

#[derive(Default)]
struct Outbox {
    /// Events held back, in publishing order.
    events: Vec<(Target, TransferEvent)>,
    /// Finished transfers, per engine. An engine's transfers all share one `Arc` of its
    /// [`Reporter`] (a new one is made only once none is left), so the `Arc` tells engines apart.
    finished: Vec<(Arc<Reporter>, Vec<Finished>)>,
    /// The task that sends all this at the end of the turn is spawned.
    scheduled: bool,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

/// Send `event` to `to` at the end of this turn.
pub(crate) fn event(to: Target, event: TransferEvent) {
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.events.push((to, event));
        schedule(&mut o);
    });
}

/// Report `done` to `engine`: at once, or at the end of this turn in one [`FinishedBatch`]
/// with every other transfer of this thread and engine that ends before then. (A transfer on
/// the Engine's own thread reports at once: its events went at once too, and a message to an
/// actor on the same thread wakes no other thread.)
pub(crate) fn finished(engine: &Arc<Reporter>, done: Finished, when: Delivery) {
    if when == Delivery::Now {
        engine.finished.do_send(FinishedBatch(vec![done]));
        return;
    }
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        match o.finished.iter_mut().find(|(e, _)| Arc::ptr_eq(e, engine)) {
            Some((_, batch)) => batch.push(done),
            None => o.finished.push((Arc::clone(engine), vec![done])),
        }
        schedule(&mut o);
    });
}

/// Send the events held back now (before answering an asker).
pub(crate) fn send_events() {
    let mut events = OUTBOX.with(|o| std::mem::take(&mut o.borrow_mut().events));
    for (to, event) in events.drain(..) {
        dispatch(to, event);
    }
    // Give the list back, so that its room serves the next turn.
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        if o.events.is_empty() {
            o.events = events;
        }
    });
}

fn schedule(o: &mut Outbox) {
    if o.scheduled {
        return;
    }
    o.scheduled = true;
    actix_rt::spawn(async {
        // Whatever else is ready on this thread runs first (and may publish or finish too).
        actix_rt::task::yield_now().await;
        let mut finished = OUTBOX.with(|o| {
            let mut o = o.borrow_mut();
            o.scheduled = false;
            std::mem::take(&mut o.finished)
        });
        send_events();
        for (engine, batch) in finished.drain(..) {
            engine.finished.do_send(FinishedBatch(batch));
        }
        // Give the list back, as `send_events` does.
        OUTBOX.with(|o| {
            let mut o = o.borrow_mut();
            if o.finished.is_empty() {
                o.finished = finished;
            }
        });
    });
}
