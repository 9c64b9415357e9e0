//! The event hub: one actor per control panel, subscribed to every event of the engine. It
//! numbers the events and keeps the last ones for reconnecting clients, fans them out to the
//! event-stream clients, and keeps what the API cannot ask the engine: recent speeds and
//! per-kind counters.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::web::Bytes;
use futures::channel::mpsc;

use super::WebConfig;
use crate::{EndState, Engine, EventKind, Status, TransferEvent, TransferId, TransferKind};

/// Frames a client may have queued beyond a full replay before it counts as too slow.
const CLIENT_SLACK: usize = 256;
/// Progress samples kept per transfer for its speed.
const SAMPLES: usize = 8;
/// Samples older than this do not count: a stalled transfer's speed falls to 0.
const WINDOW: Duration = Duration::from_secs(5);
/// Live transfers tracked at most; beyond, new ones get no speed (and are not counted).
const MAX_TRACKED: usize = 100_000;

/// Per-kind counters, indexed by [`kind_index`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub(crate) started: [u64; 3],
    /// `[kind][completed, failed, cancelled]`.
    pub(crate) ended: [[u64; 3]; 3],
    pub(crate) bytes: [u64; 3],
}

pub(crate) const KINDS: [TransferKind; 3] = [
    TransferKind::Download,
    TransferKind::Upload,
    TransferKind::Fetch,
];

pub(crate) fn kind_index(k: TransferKind) -> usize {
    match k {
        TransferKind::Download => 0,
        TransferKind::Upload => 1,
        TransferKind::Fetch => 2,
    }
}

fn end_index(e: EndState) -> usize {
    match e {
        EndState::Completed => 0,
        EndState::Failed => 1,
        EndState::Cancelled => 2,
    }
}

/// What the hub knows of one live transfer.
#[derive(Default)]
struct Track {
    kind: Option<TransferKind>,
    samples: VecDeque<(Instant, u64)>,
    last_bytes: u64,
    /// Bytes moved before the kind was known.
    pending_bytes: u64,
    started: bool,
    ended: Option<EndState>,
}

impl Track {
    fn speed(&self, now: Instant) -> f64 {
        let recent = self
            .samples
            .iter()
            .skip_while(|(t, _)| now.duration_since(*t) > WINDOW);
        let mut it = recent.clone();
        let (Some(first), Some(last)) = (it.next(), recent.last()) else {
            return 0.0;
        };
        let dt = last.0.duration_since(first.0).as_secs_f64();
        if dt <= 0.0 || now.duration_since(last.0) > WINDOW / 2 {
            return 0.0;
        }
        last.1.saturating_sub(first.1) as f64 / dt
    }
}

pub(crate) struct Hub {
    engine: Addr<Engine>,
    next_id: u64,
    ring: VecDeque<(u64, Bytes)>,
    ring_cap: usize,
    clients: Vec<mpsc::Sender<Bytes>>,
    max_clients: usize,
    keep_alive: Duration,
    closed: bool,
    tracks: HashMap<TransferId, Track>,
    counters: Counters,
}

impl Hub {
    pub(crate) fn new(engine: Addr<Engine>, config: &WebConfig) -> Self {
        Hub {
            engine,
            next_id: 1,
            ring: VecDeque::with_capacity(config.sse_buffer.min(4096)),
            ring_cap: config.sse_buffer,
            clients: Vec::new(),
            max_clients: config.max_sse_clients,
            keep_alive: config.keep_alive,
            closed: false,
            tracks: HashMap::new(),
            counters: Counters::default(),
        }
    }

    fn broadcast(&mut self, frame: &Bytes) {
        let before = self.clients.len();
        self.clients
            .retain_mut(|c| c.try_send(frame.clone()).is_ok());
        let dropped = before - self.clients.len();
        if dropped > 0 {
            tracing::debug!(dropped, "event-stream clients gone or too slow: dropped");
        }
    }

    /// Count what `track` has seen once its kind is known; forget it once ended.
    fn settle(&mut self, id: TransferId) {
        let Some(track) = self.tracks.get_mut(&id) else {
            return;
        };
        let Some(kind) = track.kind else { return };
        let k = kind_index(kind);
        if track.started {
            self.counters.started[k] += 1;
            track.started = false;
        }
        self.counters.bytes[k] += std::mem::take(&mut track.pending_bytes);
        if let Some(end) = track.ended {
            self.counters.ended[k][end_index(end)] += 1;
            self.tracks.remove(&id);
        }
    }

    fn account(&mut self, ev: &TransferEvent, ctx: &mut Context<Self>) {
        if !self.tracks.contains_key(&ev.id) {
            if self.tracks.len() >= MAX_TRACKED {
                return;
            }
            self.tracks.insert(ev.id, Track::default());
            let (engine, id) = (self.engine.clone(), ev.id);
            ctx.spawn(
                async move { engine.send(Status(id)).await.ok().flatten() }
                    .into_actor(self)
                    .map(move |status, hub: &mut Hub, _| match status {
                        Some(s) => {
                            if let Some(t) = hub.tracks.get_mut(&id) {
                                t.kind = Some(s.kind);
                            }
                            hub.settle(id);
                        }
                        None => {
                            hub.tracks.remove(&id);
                        }
                    }),
            );
        }
        let track = self.tracks.get_mut(&ev.id).expect("inserted above");
        let moved = |track: &mut Track, bytes: u64| {
            let delta = if bytes >= track.last_bytes {
                bytes - track.last_bytes
            } else {
                bytes // restarted from zero
            };
            track.last_bytes = bytes;
            track.pending_bytes += delta;
        };
        match &ev.kind {
            EventKind::Queued if ev.seq == 0 => track.started = true,
            EventKind::Progress {
                bytes_transferred, ..
            } => {
                moved(track, *bytes_transferred);
                if track.samples.len() == SAMPLES {
                    track.samples.pop_front();
                }
                track
                    .samples
                    .push_back((Instant::now(), *bytes_transferred));
            }
            EventKind::Paused { bytes_transferred } => {
                // What landed since the last `Progress` counts too: a resume may start over.
                moved(track, *bytes_transferred);
                track.samples.clear();
            }
            EventKind::Retrying { .. } => track.samples.clear(),
            EventKind::Ended(outcome) => {
                moved(track, outcome.bytes());
                track.ended = Some(outcome.end_state());
            }
            _ => {}
        }
        self.settle(ev.id);
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.keep_alive, |hub, _| {
            hub.broadcast(&Bytes::from_static(b": keep-alive\n\n"));
        });
    }
}

impl Handler<TransferEvent> for Hub {
    type Result = ();

    fn handle(&mut self, ev: TransferEvent, ctx: &mut Context<Self>) {
        self.account(&ev, ctx);
        let json = match serde_json::to_string(&ev) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(id = %ev.id, error = %e, "event not serialisable: skipped");
                return;
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let frame = Bytes::from(format!("id: {id}\ndata: {json}\n\n"));
        if self.ring.len() == self.ring_cap {
            self.ring.pop_front();
        }
        self.ring.push_back((id, frame.clone()));
        self.broadcast(&frame);
    }
}

/// A new event-stream client, which saw every frame up to `last_event_id` (if it says so).
#[derive(Message)]
#[rtype(result = "Result<mpsc::Receiver<Bytes>, Refused>")]
pub(crate) struct Join {
    pub(crate) last_event_id: Option<u64>,
}

/// Why [`Join`] was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    TooMany(usize),
    Closed,
}

impl Handler<Join> for Hub {
    type Result = Result<mpsc::Receiver<Bytes>, Refused>;

    fn handle(&mut self, join: Join, _: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Err(Refused::Closed);
        }
        // Forget clients that went away since the last frame, before counting.
        self.clients.retain(|c| !c.is_closed());
        if self.clients.len() >= self.max_clients {
            return Err(Refused::TooMany(self.max_clients));
        }
        let (mut tx, rx) = mpsc::channel(self.ring_cap + CLIENT_SLACK);
        let mut send = |b: Bytes| {
            let _ = tx.try_send(b);
        };
        send(Bytes::from_static(b"retry: 1000\n\n"));
        if let Some(last) = join.last_event_id {
            let oldest_kept = self.ring.front().map_or(self.next_id, |(id, _)| *id);
            if last + 1 < oldest_kept || last >= self.next_id {
                let gap = serde_json::json!({ "last_seen": last, "oldest_kept": oldest_kept });
                send(Bytes::from(format!("event: gap\ndata: {gap}\n\n")));
            }
            let from = if last >= self.next_id { 0 } else { last };
            for (_, frame) in self.ring.iter().filter(|(id, _)| *id > from) {
                send(frame.clone());
            }
        }
        self.clients.push(tx);
        Ok(rx)
    }
}

/// End every event stream and refuse new ones.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Close;

impl Handler<Close> for Hub {
    type Result = ();

    fn handle(&mut self, _: Close, _: &mut Context<Self>) {
        self.closed = true;
        self.clients.clear();
    }
}

/// Stop the hub: its control panel is gone (the engine's subscription to it ends with it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

impl Handler<Stop> for Hub {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        self.clients.clear();
        ctx.stop();
    }
}

/// What the hub knows for the API: speeds of live transfers and the counters.
#[derive(Message)]
#[rtype(result = "Snapshot")]
pub(crate) struct Snap;

#[derive(Debug, Default, MessageResponse)]
pub(crate) struct Snapshot {
    pub(crate) speeds: HashMap<TransferId, f64>,
    pub(crate) counters: Counters,
    pub(crate) clients: usize,
}

impl Handler<Snap> for Hub {
    type Result = Snapshot;

    fn handle(&mut self, _: Snap, _: &mut Context<Self>) -> Snapshot {
        let now = Instant::now();
        self.clients.retain(|c| !c.is_closed());
        Snapshot {
            speeds: self
                .tracks
                .iter()
                .map(|(id, t)| (*id, t.speed(now)))
                .filter(|(_, s)| *s > 0.0)
                .collect(),
            counters: self.counters.clone(),
            clients: self.clients.len(),
        }
    }
}
