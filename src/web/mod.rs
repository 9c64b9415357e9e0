//! A control plane for an [`Engine`]: a REST API, live events, metrics and a dashboard page,
//! mounted into an actix-web application in one line (feature `web`).
//!
//! # Mounting it
//!
//! [`ControlPanel::start`] subscribes to the engine once (its event hub is an actor on the
//! calling arbiter, shared by every worker of the server); [`ControlPanel::routes`] registers
//! its routes in each worker's `App`:
//!
//! ```
//! use actix_transfer::{web::{ControlPanel, WebConfig}, Engine};
//! use actix_web::{web, App, HttpServer};
//!
//! # #[actix_rt::main]
//! # async fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::builder().download_dir(dir.path()).start();
//! let panel = ControlPanel::start(engine, WebConfig::with_token("s3cret").mount("/transfers"));
//!
//! let p = panel.clone();
//! let server = HttpServer::new(move || {
//!     App::new()
//!         .configure(p.routes()) // the one line
//!         .route("/hello", web::get().to(|| async { "the app's own route" }))
//! })
//! .workers(1)
//! .bind(("127.0.0.1", 0))?;
//! let addr = server.addrs()[0];
//! let server = server.run();
//! let handle = server.handle();
//! actix_rt::spawn(server);
//!
//! let client = awc::Client::new();
//! let res = client
//!     .get(format!("http://{addr}/transfers/api/transfers"))
//!     .bearer_auth("s3cret")
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), 200);
//!
//! // Stopping: end the event streams first, or the server waits for them.
//! panel.close().await;
//! handle.stop(true).await;
//! # Ok(())
//! # }
//! ```
//!
//! `routes()` is a `configure` function rather than a `Scope`: its routes sit beside the
//! application's own, in any order, even with the default empty mount (a `Scope` mounted at
//! `""` would answer `404` for every path of the application registered after it). Its
//! extractor settings (body limit, JSON error shape) apply to its own routes only.
//!
//! # Routes
//!
//! Under the mount point (`""` by default, see [`WebConfig::mount`]):
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /api/transfers` | `201` `{"id":N}` with `Location: <mount>/api/transfers/N`; `400` invalid |
//! | `GET /api/transfers?state=queued\|active\|paused\|ended` | an array of status objects |
//! | `GET /api/transfers/{id}` | one status object; `404` unknown |
//! | `DELETE /api/transfers/{id}` | cancel: `204`; `404` unknown; `409` ended |
//! | `POST /api/transfers/{id}/pause`, `/resume` | `204`; `404`; `409` ended |
//! | `POST /api/transfers/{id}/erase[?delete_files=true]` | `204`; `404`; `409` not ended |
//! | `PUT /api/transfers/{id}/rate` `{"bytes_per_sec":N\|null}` | `204`; `404`; `409` ended |
//! | `GET /api/events` | Server-Sent Events |
//! | `GET /api/stats` | counts by state, speeds, bytes moved |
//! | `GET /metrics` | the same and per-kind counters, Prometheus text format |
//! | `GET /` | the dashboard page (no token needed to load it; it asks for one) |
//!
//! The body of `POST /api/transfers`: `{"url": .., "kind": "download"|"upload"|"fetch",
//! "path": .., "headers": {..}, "priority": .., "rate": .., "mirrors": [..]}`, only `url`
//! required, `kind` `download` by default. `path` is a download's target, relative to the
//! engine's download directory, or an upload's source, relative to [`WebConfig::upload_dir`].
//! `rate` is bytes per second. `mirrors` are other URLs of a download's file (see
//! [`Download::mirror`](crate::Download::mirror)), each checked like `url` (an invalid one is
//! `400`, one the URL policy refuses `403`); other kinds refuse them with `400`.
//!
//! A status object: `{"id", "kind", "state": "queued"|"active"|"paused"|"ended", "url",
//! "path", "bytes", "total", "speed" (bytes/s), "eta" (seconds or null)}` plus, once ended,
//! `"outcome": "completed"|"failed"|"cancelled"` and, when failed, `"error": {"kind",
//! "message"}`. Speed and ETA are the hub's estimate over the last few progress events.
//!
//! # Errors
//!
//! Every error, including a malformed body, a wrong content type, a body over the limit and
//! an unknown route under `/api`, is JSON: `{"error": {"kind": .., "message": ..}}`. The kinds
//! are the engine's ([`ErrorKind`](crate::ErrorKind): `invalid_request`, `unsafe_path`, ..)
//! and `unknown` (`404`), `not_active` (`409`, with `"ended": "completed"|"failed"|
//! "cancelled"`), `active` (`409`, erase of a running transfer), `unauthorized` (`401`),
//! `forbidden` (`403`: an upload with no upload dir, or a URL the policy refused),
//! `body_too_large` (`413`), `unsupported_media_type` (`415`),
//! `not_found` and `method_not_allowed` (routes), `too_many_clients` and `unavailable`
//! (`503`).
//!
//! # Live events
//!
//! `GET /api/events` sends one frame per [`TransferEvent`](crate::TransferEvent): `id: N` (a
//! counter of the hub, from 1) and `data: <JSON>`, the same JSON that `examples/transfer.rs
//! --json` prints. The hub keeps the last [`WebConfig::sse_buffer`] frames (1,024 by default):
//! a client that reconnects with `Last-Event-ID: N` first receives every kept frame after `N`;
//! when frames after `N` were already dropped from the buffer (or `N` is from before a
//! restart), it first receives `event: gap` with `data: {"last_seen":N,"oldest_kept":M}`, so
//! a gap is announced, never silent. A comment line (`: keep-alive`) goes out every
//! [`WebConfig::keep_alive`] (15 s). A client that cannot keep up (its queue of
//! [`WebConfig::sse_buffer`] + 256 frames is full) or went away is dropped: it reconnects
//! with `Last-Event-ID` and loses nothing the buffer still holds.
//!
//! # Security
//!
//! * **Token**: every `/api` and `/metrics` request needs `Authorization: Bearer <token>`,
//!   compared in constant time; otherwise `401` and nothing changes. Only
//!   [`WebConfig::without_auth`] turns this off: for a panel behind an authenticating proxy, or
//!   on a loopback-only development server. The page never puts the token in a URL: it keeps
//!   it in the tab's `sessionStorage` and sends it as a header, also for the event stream
//!   (a `fetch` stream, as `EventSource` cannot send headers).
//! * **Paths**: a download's `path` goes through the engine's checks (relative, inside the
//!   download directory: `400 unsafe_path` otherwise). An upload reads only files under
//!   [`WebConfig::upload_dir`] (canonicalised, so no `..` or symlink leads out: `400
//!   unsafe_path`); with no upload dir, uploads are refused (`403 forbidden`): a control
//!   plane must never send arbitrary files of the server.
//! * **Server-side request forgery**: whoever holds the token makes the server send requests,
//!   from inside its network, to any URL: cloud metadata endpoints (`169.254.169.254`), admin
//!   interfaces on `localhost`, the intranet. A panel reachable beyond the machine should set a
//!   [`WebConfig::url_policy`], such as [`deny_private_networks`], which refuses (`403
//!   forbidden`) URLs whose host is, or resolves to, a loopback, private, link-local or
//!   otherwise non-public address. It checks the submitted URL when it is submitted: it does
//!   not see redirects (the engine follows them), nor a name that resolves differently when
//!   the engine connects (DNS rebinding). For those, filter egress at the network level too.
//! * **Bounds**: request bodies ([`WebConfig::max_body`], 64 KiB), event-stream clients
//!   ([`WebConfig::max_sse_clients`], 64) and each client's queue are bounded; the hub's
//!   per-transfer speed samples are kept for live transfers only.
//! * **CORS**: none unless [`WebConfig::allow_origin`] names an origin.
//! * **Logs**: the module's tracing prints the request path and status, never a query string,
//!   a header or a submitted URL's query or credentials.
//!
//! # Stopping
//!
//! An event stream never ends by itself, and actix-web's graceful stop waits (up to its
//! `shutdown_timeout`, 30 s by default) for every open response. Call [`ControlPanel::close`]
//! before stopping the server: it ends every event stream and refuses new ones, so the
//! server stops at once. `examples/transfer.rs --serve` does so on Ctrl-C and SIGTERM.

mod api;
mod auth;
mod error;
mod hub;
mod policy;

use std::{path::PathBuf, sync::Arc, time::Duration};

use actix::prelude::*;
use actix_web::web;

use crate::{Engine, Subscribe};

pub use policy::deny_private_networks;
pub use url::Url;

/// A URL policy: `Err(reason)` refuses a submitted URL (see [`WebConfig::url_policy`]).
pub type UrlPolicy = Arc<dyn Fn(&Url) -> Result<(), String> + Send + Sync>;

/// What the control plane allows and where it lives. Start from [`WebConfig::with_token`] (or,
/// deliberately, [`WebConfig::without_auth`]).
#[derive(Clone)]
pub struct WebConfig {
    token: Option<String>,
    mount: String,
    max_body: usize,
    max_sse_clients: usize,
    sse_buffer: usize,
    keep_alive: Duration,
    upload_dir: Option<PathBuf>,
    url_policy: Option<UrlPolicy>,
    allow_origin: Option<String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("mount", &self.mount)
            .field("max_body", &self.max_body)
            .field("max_sse_clients", &self.max_sse_clients)
            .field("sse_buffer", &self.sse_buffer)
            .field("keep_alive", &self.keep_alive)
            .field("upload_dir", &self.upload_dir)
            .field("url_policy", &self.url_policy.as_ref().map(|_| "fn"))
            .field("allow_origin", &self.allow_origin)
            .finish()
    }
}

impl WebConfig {
    fn new(token: Option<String>) -> Self {
        WebConfig {
            token,
            mount: String::new(),
            max_body: 64 * 1024,
            max_sse_clients: 64,
            sse_buffer: 1024,
            keep_alive: Duration::from_secs(15),
            upload_dir: None,
            url_policy: None,
            allow_origin: None,
        }
    }

    /// Every `/api` and `/metrics` request must carry `Authorization: Bearer <token>`. An empty
    /// token matches no request (everything is refused).
    pub fn with_token(token: impl Into<String>) -> Self {
        WebConfig::new(Some(token.into()))
    }

    /// No authentication at all: anyone who reaches the server controls the engine. Only for a
    /// panel behind an authenticating proxy or on a loopback-only development server.
    pub fn without_auth() -> Self {
        WebConfig::new(None)
    }

    /// Where the routes live: `"/transfers"` gives `/transfers/api/..`, `/transfers/metrics`
    /// and the page at `/transfers/`. Default `""` (the root). A trailing `/` is ignored.
    pub fn mount(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        let path = path.trim_end_matches('/');
        self.mount = match path {
            "" => String::new(),
            p if p.starts_with('/') => p.to_owned(),
            p => format!("/{p}"),
        };
        self
    }

    /// The largest request body accepted, in bytes (`413` past it). Default 64 KiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Event-stream clients connected at once (`503 too_many_clients` past it). Default 64.
    pub fn max_sse_clients(mut self, n: usize) -> Self {
        self.max_sse_clients = n;
        self
    }

    /// Event frames kept for clients that reconnect with `Last-Event-ID`. Default 1,024.
    pub fn sse_buffer(mut self, frames: usize) -> Self {
        self.sse_buffer = frames.max(1);
        self
    }

    /// How often an idle event stream gets a keep-alive comment (and gone clients are
    /// noticed). Default 15 s.
    pub fn keep_alive(mut self, every: Duration) -> Self {
        self.keep_alive = every.max(Duration::from_millis(10));
        self
    }

    /// The directory uploads may read from; without one, uploads through the API are refused.
    pub fn upload_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.upload_dir = Some(dir.into());
        self
    }

    /// Called with every submitted URL before it reaches the engine (on a blocking thread, so
    /// it may resolve names); `Err(reason)` refuses it with `403 forbidden`. See
    /// [`deny_private_networks`] and the module's security notes.
    pub fn url_policy(
        mut self,
        policy: impl Fn(&Url) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.url_policy = Some(Arc::new(policy));
        self
    }

    /// Let a page of this origin (`"https://ui.example"`) call the API from a browser: answers
    /// preflights and adds `Access-Control-Allow-Origin` for that exact origin. Default: none.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.allow_origin = Some(origin.into());
        self
    }
}

/// The control plane of one engine: its event hub and configuration. Cheap to clone; build it
/// once with [`ControlPanel::start`] and mount it in every worker's `App` with
/// [`ControlPanel::routes`].
#[derive(Clone)]
pub struct ControlPanel {
    shared: web::Data<api::Shared>,
}

impl std::fmt::Debug for ControlPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPanel")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl ControlPanel {
    /// Start the event hub on the current arbiter and subscribe it to every event of
    /// `engine`. Must be called inside an actix `System`.
    pub fn start(engine: Addr<Engine>, config: WebConfig) -> Self {
        let hub = hub::Hub::new(engine.clone(), &config).start();
        engine.do_send(Subscribe::all(hub.clone().recipient()));
        ControlPanel {
            shared: web::Data::new(api::Shared {
                engine,
                hub,
                config,
            }),
        }
    }

    /// The routes, to pass to [`App::configure`](actix_web::App::configure):
    /// `App::new().configure(panel.routes())`.
    pub fn routes(&self) -> impl FnOnce(&mut web::ServiceConfig) + 'static {
        let shared = self.shared.clone();
        move |cfg| api::configure(cfg, shared)
    }

    /// End every event stream and refuse new ones (`503`), so that a server stopping
    /// gracefully does not wait for them. The API and the page keep working.
    pub async fn close(&self) {
        let _ = self.shared.hub.send(hub::Close).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control panel dropped (with every app it was mounted in) stops its event hub: the
    /// engine's subscription does not keep it, and its buffer, alive.
    #[actix_rt::test]
    async fn a_dropped_panel_stops_its_hub() {
        let engine = crate::Engine::builder().start();
        let panel = ControlPanel::start(engine.clone(), WebConfig::without_auth());
        let hub = panel.shared.hub.clone();
        // The hub answers while the panel lives.
        assert!(hub.send(hub::Snap).await.is_ok());
        drop(panel);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while hub.connected() {
            assert!(
                std::time::Instant::now() < deadline,
                "the hub still runs after its panel was dropped"
            );
            actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        engine.send(crate::Shutdown).await.unwrap();
    }
}
