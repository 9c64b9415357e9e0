//! An actor-based HTTP transfer engine for actix: downloads to files, uploads from files and
//! requests into memory, started from any actor, with progress events and a cancel that
//! really stops the bytes.
//!
//! # The shape
//!
//! * [`Engine`] is a supervisor actor. Send it a [`Download`], [`Upload`] or [`Fetch`]; it
//!   validates the request (URL, scheme, headers, target path) before any I/O, answers at once
//!   with a [`TransferId`] or a [`TransferError`], and starts **one actor per transfer** on one
//!   of its worker threads, each of which owns one `awc` client and its connection pool (or,
//!   with [`EngineBuilder::workers`]`(0)`, on the engine's own arbiter).
//! * [`Cancel`] routes to the transfer's actor, which aborts its stream (no byte is read or
//!   written after the reply), closes the connection, removes the `.part` file and replies
//!   `Ok(())`; or `Err(ControlError::NotActive(end))` when the transfer had already ended, or
//!   `Err(ControlError::Unknown)` for an id the engine never issued.
//! * [`Subscribe`] an actor to receive [`TransferEvent`]s: `Queued`, `Began`, throttled
//!   `Progress`, and **exactly one** `Ended` with the [`Outcome`], last, for every transfer.
//! * [`Status`], [`List`] and [`Wait`] answer from the Engine's records; [`Shutdown`] stops
//!   everything gracefully.
//!
//! # Example: another actor that downloads, watches and cancels
//!
//! ```
//! use actix::prelude::*;
//! use actix_transfer::{Cancel, Download, Engine, EventKind, Outcome, Subscribe, TransferEvent};
//! # use actix_web::{web, App, HttpServer};
//!
//! /// An actor of the application: it asks for a download and cancels it if it is too big.
//! struct Fetcher {
//!     engine: Addr<Engine>,
//!     done: Option<futures::channel::oneshot::Sender<Outcome>>,
//! }
//!
//! impl Actor for Fetcher {
//!     type Context = Context<Self>;
//! }
//!
//! impl Handler<TransferEvent> for Fetcher {
//!     type Result = ();
//!     fn handle(&mut self, ev: TransferEvent, ctx: &mut Context<Self>) {
//!         match ev.kind {
//!             // Refuse anything over 1 MiB as soon as its size is known.
//!             EventKind::Began { bytes_estimated: Some(n), .. } if n > 1 << 20 => {
//!                 let engine = self.engine.clone();
//!                 ctx.spawn(async move { let _ = engine.send(Cancel(ev.id)).await; }.into_actor(self));
//!             }
//!             EventKind::Ended(outcome) => {
//!                 if let Some(tx) = self.done.take() { let _ = tx.send(outcome); }
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//!
//! # #[actix_rt::main]
//! # async fn main() -> std::io::Result<()> {
//! # let server = HttpServer::new(|| App::new().route("/small.txt", web::get().to(|| async { "hello" })))
//! #     .workers(1).bind(("127.0.0.1", 0))?;
//! # let addr = server.addrs()[0];
//! # let server = server.run();
//! # let handle = server.handle();
//! # actix_rt::spawn(server);
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::builder().download_dir(dir.path()).start();
//!
//! let (tx, rx) = futures::channel::oneshot::channel();
//! let fetcher = Fetcher { engine: engine.clone(), done: Some(tx) }.start();
//! // The subscription keeps `fetcher` listening until it unsubscribes or stops itself.
//! engine
//!     .send(Subscribe::all(fetcher.clone().recipient()))
//!     .await
//!     .unwrap() // the mailbox answered
//!     .expect("the fetcher is running");
//!
//! let id = engine
//!     .send(Download::new(format!("http://{addr}/small.txt")))
//!     .await
//!     .unwrap()                // the mailbox answered
//!     .expect("valid request"); // the engine accepted it
//! let outcome = rx.await.unwrap();
//! assert!(outcome.is_completed());
//! assert_eq!(std::fs::read(outcome.path().unwrap())?, b"hello");
//! # let _ = id;
//! # handle.stop(true).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Example: a load test
//!
//! Keep a number of requests in flight, the next one submitted as soon as one ends, and read
//! each outcome with [`Wait`]. `examples/loadtest.rs` is the same as an actor with a report
//! (requests/s, latency percentiles, errors by kind), and `benches/load/` measures the
//! engine against bare awc and curl. With [`EngineBuilder::workers`]`(0)` every transfer runs
//! on the caller's arbiter, the cheapest layout per request when one core is enough.
//!
//! ```
//! use actix_transfer::{Engine, Fetch, RetryPolicy, Wait};
//! use futures::StreamExt;
//! # use actix_web::{web, App, HttpServer};
//!
//! # #[actix_rt::main]
//! # async fn main() -> std::io::Result<()> {
//! # let server = HttpServer::new(|| App::new().route("/ping", web::get().to(|| async { "pong" })))
//! #     .workers(1).bind(("127.0.0.1", 0))?;
//! # let addr = server.addrs()[0];
//! # let server = server.run();
//! # let handle = server.handle();
//! # actix_rt::spawn(server);
//! let engine = Engine::builder()
//!     .max_active(32)
//!     .retry(RetryPolicy::never()) // a load test reports failures instead of retrying them
//!     .start();
//! let url = format!("http://{addr}/ping");
//! let (engine, url) = (&engine, url.as_str());
//! let bodies: Vec<usize> = futures::stream::iter(0..500)
//!     .map(|_| async move {
//!         let id = engine.send(Fetch::get(url)).await.unwrap().expect("a valid request");
//!         let outcome = engine.send(Wait(id)).await.unwrap().expect("a known id");
//!         outcome.body().map_or(0, |b| b.len())
//!     })
//!     .buffer_unordered(32) // 32 in flight
//!     .collect()
//!     .await;
//! assert_eq!(bodies, vec![4; 500]);
//! # handle.stop(true).await;
//! # Ok(())
//! # }
//! ```
//!
//! # Threads, blocking and cancel safety
//!
//! No file I/O runs on an arbiter thread: `.part` files are written in coalesced writes of up
//! to 1 MiB on the crate's file-I/O threads, one in flight per transfer. The Engine is not on
//! the per-chunk path. Dropping a reply future does not cancel a transfer; only [`Cancel`] (or
//! [`Shutdown`]) does, and a `Cancel` whose `send` future is dropped before the Engine handled
//! it is discarded by actix: to cancel without waiting, `do_send` it (see [`Cancel`]). A download's final file name only ever holds a complete, length-checked
//! and synced file (not synced with [`Download::fsync`]`(false)`: complete for every process,
//! not across a power cut).
//!
//! # Known limits
//!
//! awc ends a chunked body cut by the peer exactly as it ends a complete one, and it drops
//! bytes sent past a `Content-Length`. Over plain `http` the engine's own connections watch
//! their bytes and close both holes; what remains:
//!
//! * **https**: the socket carries TLS records, so those wire checks are off. A peer that closes
//!   the TCP connection mid-body without TLS `close_notify` is reported by rustls as an error
//!   (a failure, as it should be); a peer that sends `close_notify` before the last chunk of a
//!   chunked body cannot be told from one that finished. Bodies with a `Content-Length` are
//!   always checked, over http and https alike, and an expected size or SHA-256
//!   ([`Download::expect_size`], [`Download::expect_sha256`]) closes the gap for chunked ones.
//! * **Bytes past `Content-Length`** fail the transfer as `Overlong` when they arrive with the
//!   end of the body (in the same read). Bytes that arrive later are not attributed to the
//!   finished transfer, whose file holds exactly the announced length. awc's pool drops a
//!   connection with unread bytes when it next hands it out, so they do not reach another
//!   request, unless they arrive after that request was already sent on it: they are then read
//!   as the start of its answer (which then fails to parse, or is that answer).
//! * **Interim answers**: awc takes a `1xx` (such as `103 Early Hints`) for the final answer
//!   and cannot read past it; such a transfer fails with `BadContent` and its connection is
//!   never used again.
//! * HTTP/1.1 bodies framed only by closing the connection are refused with `BadContent` (awc
//!   would read them as empty); HTTP/1.0 ones are read to the close, with an unknown length.
//! * With the `rustls` feature, the application must not enable a second rustls crypto
//!   provider (aws-lc-rs) without installing a process default: rustls then panics when a
//!   worker builds its client (rustls/rustls#1877).
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod config;
mod engine;
mod error;
mod event;
#[cfg(feature = "journal")]
mod fault;
mod file;
#[cfg(feature = "redis")]
pub mod fleet;
mod handle;
mod http;
mod input;
#[cfg(feature = "journal")]
mod journal;
mod redact;
mod request;
mod retry;
mod throttle;
mod transfer;
#[cfg(feature = "web")]
pub mod web;
mod worker;

#[cfg(feature = "journal")]
pub use engine::JournalError;
pub use engine::{
    Cancel, Engine, EngineBuilder, EngineState, EngineStatus, Erase, JournalState, List, Pause,
    Resume, SetLimits, SetRate, Shutdown, StartError, Status, Subscribe, Unsubscribe, Wait,
};
pub use error::{
    Cause, ControlError, EndState, EraseError, ErrorKind, FileErrorKind, TimeoutPhase,
    TransferError,
};
pub use event::status::{TransferKind, TransferState, TransferStatus};
pub use event::subscribers::{SubscribeError, SubscriptionId};
pub use event::{
    EventKind, EventKinds, HeaderIter, Headers, Outcome, Output, TransferEvent, TransferId,
};
pub use file::policy::{Conflict, Partial};
pub use handle::{EngineHandle, EventStream, EVENT_BUFFER};
pub use input::{IntoHeaderName, IntoHeaderValue, IntoMethod, IntoUrl};
pub use request::{Download, Fetch, Upload};
pub use retry::RetryPolicy;

#[cfg(test)]
mod assert_send {
    fn is_send_sync<T: Send + Sync + 'static>() {}
    fn is_send<T: Send + 'static>() {}

    #[test]
    fn public_types_cross_threads() {
        is_send_sync::<super::TransferError>();
        is_send_sync::<super::ControlError>();
        is_send_sync::<super::TransferEvent>();
        is_send_sync::<super::Outcome>();
        is_send_sync::<super::TransferStatus>();
        is_send::<super::Download>();
        is_send::<super::Upload>();
        is_send::<super::Fetch>();
        is_send::<super::Subscribe>();
    }
}

/// The README's tour compiles (`cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
