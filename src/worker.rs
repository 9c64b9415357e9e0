//! Workers: where transfer actors run, each worker thread owning one awc `Client`.
//!
//! awc's `Client` is `!Send`, and one client per request would mean one TCP connection per
//! request, so each worker thread builds one client when it starts and every transfer actor on
//! that thread clones it (a cheap `Rc` clone), sharing its connection pool. The Engine picks the
//! least-loaded worker for each new transfer.
//!
//! With `workers(0)` there are no worker threads: transfer actors run on the Engine's own
//! arbiter and share a client the Engine built there. Nothing crosses a thread per transfer
//! (no cross-thread spawn, no cross-thread `Finished`, events delivered on one thread), which
//! is the cheapest layout when that arbiter has time to spare.

use std::sync::Arc;

use actix::{
    dev::channel::{self, AddressReceiver},
    Actor, Addr, Context,
};
use actix_rt::{Arbiter, ArbiterHandle};
use awc::Client;

use crate::{
    config::Config,
    http::client::{build_client, client, install_client},
    transfer::{Setup, TransferActor},
};

/// A transfer actor's mailbox capacity: actix's default, as `start_in_arbiter` would give.
const MAILBOX: usize = 16;

/// The workers of one engine: its own arbiter threads, or its own arbiter (inline).
pub(crate) struct Workers {
    /// The worker threads this engine started (none when inline).
    arbiters: Vec<Arbiter>,
    /// Where transfers run: the worker threads, or the Engine's own arbiter.
    handles: Vec<ArbiterHandle>,
    load: Vec<usize>,
    /// Inline: the client of the Engine's own thread, which every transfer clones.
    inline: Option<Client>,
    /// Actors to start, per worker, at the next `flush`: one cross-thread hop for all of them.
    pending: Vec<Vec<(Setup, AddressReceiver<TransferActor>)>>,
}

impl Workers {
    /// `n` worker threads, or none (`n == 0`): transfers then run on the calling arbiter.
    pub(crate) fn start(n: usize, cfg: &Arc<Config>) -> Self {
        if n == 0 {
            return Workers {
                arbiters: Vec::new(),
                handles: vec![Arbiter::current()],
                load: vec![0],
                inline: Some(build_client(cfg)),
                // Inline actors start at once: nothing is ever set aside.
                pending: Vec::new(),
            };
        }
        let arbiters: Vec<Arbiter> = (0..n)
            .map(|_| {
                let arbiter = Arbiter::new();
                let cfg = Arc::clone(cfg);
                arbiter.spawn_fn(move || {
                    install_client(&cfg);
                });
                arbiter
            })
            .collect();
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        Workers {
            load: vec![0; arbiters.len()],
            pending: arbiters.iter().map(|_| Vec::new()).collect(),
            arbiters,
            handles,
            inline: None,
        }
    }

    /// Start a transfer actor on the least-loaded worker; `setup` is told which one. Inline it
    /// starts at once; on a worker thread at the next [`Workers::flush`] (its address works
    /// from now: messages wait in its mailbox).
    pub(crate) fn spawn(&mut self, setup: impl FnOnce(usize) -> Setup) -> Addr<TransferActor> {
        let (i, _) = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .expect("at least one worker");
        self.load[i] += 1;
        let setup = setup(i);
        match &self.inline {
            Some(client) => TransferActor::new(setup, client.clone()).start(),
            None => {
                let (tx, rx) = channel::channel(MAILBOX);
                self.pending[i].push((setup, rx));
                Addr::new(tx)
            }
        }
    }

    /// Start the actors `spawn` set aside: one message to each worker that has some.
    pub(crate) fn flush(&mut self) {
        for (i, pending) in self.pending.iter_mut().enumerate() {
            if pending.is_empty() {
                continue;
            }
            let batch = std::mem::take(pending);
            self.handles[i].spawn_fn(move || {
                for (setup, rx) in batch {
                    Context::with_receiver(rx).run(TransferActor::new(setup, client()));
                }
            });
        }
    }

    /// Every worker's handle (inline: the Engine's own arbiter).
    pub(crate) fn handles(&self) -> Arc<[ArbiterHandle]> {
        self.handles.iter().cloned().collect()
    }

    /// Release a slot taken by `spawn`.
    pub(crate) fn release(&mut self, i: usize) {
        self.load[i] = self.load[i].saturating_sub(1);
    }

    pub(crate) fn stop(&mut self) {
        for a in self.arbiters.drain(..) {
            a.stop();
        }
    }
}
