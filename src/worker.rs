//! Workers: the arbiter threads that run transfer actors, each owning one awc `Client`.
//!
//! awc's `Client` is `!Send`, and one client per request would mean one TCP connection per
//! request, so each worker thread builds one client when it starts and every transfer actor on
//! that thread clones it (a cheap `Rc` clone), sharing its connection pool. The Engine picks the
//! least-loaded worker for each new transfer.

use std::{cell::RefCell, sync::Arc};

use actix_rt::{Arbiter, ArbiterHandle};
use awc::{http::header, Client, Connector};

use crate::{engine::Config, wire};

thread_local! {
    static CLIENT: RefCell<Option<Client>> = const { RefCell::new(None) };
}

/// The client of the current worker thread.
///
/// Panics when called off a worker thread: transfer actors are only ever started on workers.
pub(crate) fn client() -> Client {
    CLIENT.with(|c| {
        c.borrow()
            .clone()
            .expect("transfer actors run on worker threads, which own a client")
    })
}

/// Build a worker's client: awc's redirects, timeouts, default headers and connection limit
/// off; the engine does each of those itself. Its connections are `wire::WireIo`s, which let a
/// transfer check a body's end against the bytes on the socket.
fn build_client(cfg: &Config) -> Client {
    let connector = Connector::new()
        .connector(wire::Connector::default())
        .limit(0)
        .timeout(cfg.connect_timeout)
        .conn_keep_alive(cfg.keep_alive);
    Client::builder()
        .connector(connector)
        .disable_redirects()
        .disable_timeout()
        .no_default_headers()
        .add_default_header((header::USER_AGENT, cfg.user_agent.clone()))
        .finish()
}

/// The pool of worker arbiters of one engine.
pub(crate) struct Workers {
    arbiters: Vec<Arbiter>,
    load: Vec<usize>,
}

impl Workers {
    pub(crate) fn start(n: usize, cfg: &Arc<Config>) -> Self {
        let arbiters: Vec<Arbiter> = (0..n.max(1))
            .map(|_| {
                let arbiter = Arbiter::new();
                let cfg = Arc::clone(cfg);
                arbiter.spawn_fn(move || {
                    CLIENT.with(|c| *c.borrow_mut() = Some(build_client(&cfg)));
                });
                arbiter
            })
            .collect();
        let load = vec![0; arbiters.len()];
        Workers { arbiters, load }
    }

    /// Reserve a slot on the least-loaded worker.
    pub(crate) fn pick(&mut self) -> (usize, ArbiterHandle) {
        let (i, _) = self
            .load
            .iter()
            .enumerate()
            .min_by_key(|(_, l)| **l)
            .expect("at least one worker");
        self.load[i] += 1;
        (i, self.arbiters[i].handle())
    }

    /// Every worker's handle.
    pub(crate) fn handles(&self) -> Arc<[ArbiterHandle]> {
        self.arbiters.iter().map(Arbiter::handle).collect()
    }

    /// Release a slot taken by `pick`.
    pub(crate) fn release(&mut self, i: usize) {
        self.load[i] = self.load[i].saturating_sub(1);
    }

    pub(crate) fn stop(&mut self) {
        for a in self.arbiters.drain(..) {
            a.stop();
        }
    }
}
