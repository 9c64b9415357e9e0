//! The event recorder: an actor that keeps every event it receives, in arrival order, and
//! [`Events`], the view a test reads them through, with bounded waits.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_transfer::{Engine, EventKind, Outcome, Subscribe, TransferEvent, TransferId};

use super::LIMIT;

/// The events a [`Recorder`] received, in arrival order; clones share them.
#[derive(Clone, Default)]
pub struct Events {
    seen: Arc<Mutex<Vec<TransferEvent>>>,
    /// The recorder [`Events::subscribe`] started, held here because subscriptions are weak.
    _recorder: Option<Addr<Recorder>>,
}

/// The actor that fills an [`Events`].
pub struct Recorder {
    seen: Arc<Mutex<Vec<TransferEvent>>>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<TransferEvent> for Recorder {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, _: &mut Context<Self>) {
        self.seen.lock().unwrap().push(ev);
    }
}

/// Answered once the recorder handled every event queued before it in its mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drained;

impl Handler<Drained> for Recorder {
    type Result = ();
    fn handle(&mut self, _: Drained, _: &mut Context<Self>) {}
}

impl Events {
    /// Start a recorder filling these events; the caller subscribes it (and keeps it alive).
    pub fn recorder(&self) -> Addr<Recorder> {
        Recorder {
            seen: Arc::clone(&self.seen),
        }
        .start()
    }

    /// Events recorded from every transfer of `engine` (a bounded subscription); the recorder
    /// lives as long as the returned value.
    pub async fn subscribe(engine: &Addr<Engine>) -> Events {
        let mut events = Events::default();
        let recorder = events.recorder();
        actix_rt::time::timeout(
            LIMIT,
            engine.send(Subscribe::all(recorder.clone().recipient())),
        )
        .await
        .unwrap_or_else(|_| panic!("no subscription within {LIMIT:?}"))
        .expect("the engine is alive")
        .expect("the recorder is alive");
        events._recorder = Some(recorder);
        events
    }

    pub fn all(&self) -> Vec<TransferEvent> {
        self.seen.lock().unwrap().clone()
    }

    pub fn of(&self, id: TransferId) -> Vec<TransferEvent> {
        self.all().into_iter().filter(|e| e.id == id).collect()
    }

    /// The kinds of `id`'s events, in order.
    pub fn kinds(&self, id: TransferId) -> Vec<EventKind> {
        self.of(id).into_iter().map(|e| e.kind).collect()
    }

    /// Bounded wait until one of `id`'s events matches; returns it.
    pub async fn until_kind(&self, id: TransferId, what: impl Fn(&EventKind) -> bool) -> EventKind {
        self.until("a matching event", |evs| {
            evs.iter().any(|e| e.id == id && what(&e.kind))
        })
        .await;
        self.kinds(id).into_iter().find(|k| what(k)).unwrap()
    }

    pub fn ended(&self, id: TransferId) -> Vec<Outcome> {
        self.of(id)
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Ended(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    /// Bounded wait until `pred` holds for the recorded events.
    pub async fn until(&self, what: &str, pred: impl Fn(&[TransferEvent]) -> bool) {
        let start = Instant::now();
        loop {
            if pred(&self.all()) {
                return;
            }
            assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Bounded wait for the `Ended` of `id`.
    pub async fn until_ended(&self, id: TransferId) -> Outcome {
        self.until("an Ended event", |evs| {
            evs.iter()
                .any(|e| e.id == id && matches!(e.kind, EventKind::Ended(_)))
        })
        .await;
        self.ended(id).remove(0)
    }
}
