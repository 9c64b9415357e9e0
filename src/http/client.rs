//! The awc `Client` a thread owns, reached through this module alone.
//!
//! awc's `Client` is `!Send`: each worker thread builds one when it starts (inline, the Engine
//! builds one on its own arbiter), and every transfer on that thread shares its connection pool.

use std::cell::RefCell;

use awc::{http::header, Client, Connector};

use crate::{config::Config, http::wire};

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
pub(crate) fn build_client(cfg: &Config) -> Client {
    let connector = Connector::new();
    #[cfg(feature = "rustls")]
    let connector = match &cfg.tls {
        Some(tls) => connector.rustls_0_23(std::sync::Arc::clone(tls)),
        None => connector,
    };
    let connector = connector
        .connector(wire::Connector::new(
            cfg.proxies.clone(),
            cfg.connect_timeout,
        ))
        .limit(0)
        // Zero means no limit; to awc it means a timer that fires at its next tick.
        .timeout(match cfg.connect_timeout {
            d if d.is_zero() => std::time::Duration::MAX,
            d => d,
        })
        .conn_keep_alive(cfg.keep_alive);
    Client::builder()
        .connector(connector)
        .disable_redirects()
        .disable_timeout()
        .no_default_headers()
        .add_default_header((header::USER_AGENT, cfg.user_agent.clone()))
        .finish()
}

/// Build the client of the current thread (a worker thread, as it starts), which [`client`]
/// then returns.
pub(crate) fn install_client(cfg: &Config) {
    CLIENT.with(|c| *c.borrow_mut() = Some(build_client(cfg)));
}
