//! The event recorder: an actor subscribed to an engine that notes every `Ended` with its
//! arrival time. Self-contained (actix and the crate's events only).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_transfer::{EventKind, TransferEvent, TransferId};

/// What the scenarios read of one `Ended`. The outcome itself (a fetch's body with it) is
/// dropped on arrival, as a load test that counts outcomes does and as the bare awc baseline
/// drops each body: kept, 10,000 bodies would be the caller's memory growth, charged to the
/// engine's CPU per request.
#[derive(Debug, Clone)]
pub struct End {
    pub at: Instant,
    /// Bytes the transfer counted at its end.
    pub bytes: u64,
    /// The outcome, described, unless it completed.
    pub failure: Option<String>,
}

/// Collects Ended events with their arrival time.
#[derive(Clone, Default)]
pub struct Ends(pub Arc<Mutex<HashMap<TransferId, End>>>);

pub struct EndsActor(pub Ends);
impl Actor for EndsActor {
    type Context = Context<Self>;
}
impl Handler<TransferEvent> for EndsActor {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, _: &mut Context<Self>) {
        if let EventKind::Ended(o) = ev.kind {
            let end = End {
                at: Instant::now(),
                bytes: o.bytes(),
                failure: (!o.is_completed()).then(|| format!("{o:?}")),
            };
            self.0 .0.lock().unwrap().insert(ev.id, end);
        }
    }
}

/// Answered once every event queued before it in the recorder's mailbox was handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drained;

impl Handler<Drained> for EndsActor {
    type Result = ();
    fn handle(&mut self, _: Drained, _: &mut Context<Self>) {}
}

impl Ends {
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let start = Instant::now();
        while self.0.lock().unwrap().len() < n {
            assert!(
                start.elapsed() < limit,
                "only {} of {n} transfers ended",
                self.0.lock().unwrap().len()
            );
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
