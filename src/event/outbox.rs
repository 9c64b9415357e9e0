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

use std::{cell::RefCell, sync::Arc};

use actix::Recipient;

use crate::{
    event::report::{Finished, FinishedBatch, Reporter},
    event::TransferEvent,
};

#[derive(Default)]
struct Outbox {
    /// Events held back, in publishing order.
    events: Vec<(Recipient<TransferEvent>, TransferEvent)>,
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
pub(crate) fn event(to: Recipient<TransferEvent>, event: TransferEvent) {
    OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.events.push((to, event));
        schedule(&mut o);
    });
}

/// Report `done` to `engine` at the end of this turn, in one [`FinishedBatch`] with every other
/// transfer of this thread and engine that ends before then.
pub(crate) fn finished(engine: &Arc<Reporter>, done: Finished) {
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
        to.do_send(event);
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
        let finished = OUTBOX.with(|o| {
            let mut o = o.borrow_mut();
            o.scheduled = false;
            std::mem::take(&mut o.finished)
        });
        send_events();
        for (engine, batch) in finished {
            engine.finished.do_send(FinishedBatch(batch));
        }
    });
}
