//! Shared test support: an actix-web server on 127.0.0.1 with bodies a test can recompute,
//! slow bodies that record what they sent and whether the client went away, an upload sink and
//! an echo; and an event recorder with bounded waits.

pub mod hostile;
pub mod proxy;
pub mod ranged;
mod recorder;
pub mod redis;

pub use recorder::{Drained, Events, Recorder};

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_transfer::*;
use actix_web::{http::header, web, App, HttpRequest, HttpResponse, HttpServer};
use futures::StreamExt;

/// The longest any test waits for anything.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A message for people (an error's `Display`) carries no Debug fragments.
pub fn assert_sentence(message: &str) {
    assert!(!message.trim().is_empty(), "an empty message");
    for fragment in [
        "Some(", "None", "Os {", "Custom {", "kind:", "Error(", "{ ", "Other(", "Error {", "Kind(",
    ] {
        assert!(!message.contains(fragment), "{fragment:?} in: {message}");
    }
}

/// Deterministic content of `n` bytes, the body every test server serves and every test
/// recomputes: byte `i` depends on `i` alone (so any range of a body can be recomputed) and the
/// sequence has no short period (so a body shifted, reordered or cut and joined differs).
pub fn pattern(n: usize) -> Vec<u8> {
    content(n, 0x5a)
}

/// [`pattern`] under another `salt`: a different body of the same length, as a file that changed
/// on its server.
pub fn content(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ salt)
        .collect()
}

/// One slow response as the server saw it.
#[derive(Default, Debug)]
pub struct SlowConn {
    /// Body bytes handed to the connection so far.
    pub sent: AtomicU64,
    /// The body stream was dropped before its end: the client went away.
    pub dropped: AtomicBool,
    finished: AtomicBool,
}

/// Marks the connection dropped unless the body ran to its end.
struct DropGuard(Arc<SlowConn>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        if !self.0.finished.load(SeqCst) {
            self.0.dropped.store(true, SeqCst);
        }
    }
}

/// (method, content-length header, transfer-encoding header, body).
pub type Uploaded = (String, Option<String>, Option<String>, Vec<u8>);

#[derive(Default)]
pub struct ServerState {
    /// Every request, by path.
    pub requests: Mutex<Vec<String>>,
    pub count: AtomicUsize,
    pub slow: Mutex<Vec<Arc<SlowConn>>>,
    pub uploads: Mutex<Vec<Uploaded>>,
    /// The HTTP version of every request, in arrival order.
    pub versions: Mutex<Vec<actix_web::http::Version>>,
    /// Connections accepted (after the TLS handshake, over TLS).
    pub connections: AtomicUsize,
}

pub struct Server {
    pub base: String,
    pub state: Arc<ServerState>,
    handle: actix_web::dev::ServerHandle,
}

impl Server {
    /// Stop the server and wait until its connections are closed.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> usize {
        self.state.count.load(SeqCst)
    }

    /// The most recent slow response (bounded wait until one exists).
    pub async fn last_slow(&self) -> Arc<SlowConn> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.state.slow.lock().unwrap().last() {
                return Arc::clone(c);
            }
            assert!(start.elapsed() < LIMIT, "no slow request arrived");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Serve `app` (a control panel's routes, say) on a loopback port in the current actix
/// System, with one worker and no signal handling: its base URL and the server's handle.
pub fn serve_app<F>(app: F) -> (String, actix_web::dev::ServerHandle)
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let srv = HttpServer::new(move || App::new().configure(app.clone()))
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
    let base = format!("http://{}", srv.addrs()[0]);
    let srv = srv.run();
    let handle = srv.handle();
    actix_rt::spawn(srv);
    (base, handle)
}

/// Start the test server in the current actix System.
pub fn server() -> Server {
    serve(None)
}

/// [`server`] over TLS with `config` (`https://127.0.0.1:port`), offering h2 and http/1.1 by
/// ALPN.
#[cfg(feature = "rustls")]
pub fn tls_server(config: rustls::ServerConfig) -> Server {
    serve(Some(config))
}

#[cfg(not(feature = "rustls"))]
type ServerConfig = std::convert::Infallible;
#[cfg(feature = "rustls")]
type ServerConfig = rustls::ServerConfig;

fn serve(tls: Option<ServerConfig>) -> Server {
    let state = Arc::new(ServerState::default());
    let data = web::Data::from(Arc::clone(&state));
    let on_connect = Arc::clone(&state);
    let srv = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap_fn(|req, srv| {
                let state = req.app_data::<web::Data<ServerState>>().unwrap().clone();
                state.count.fetch_add(1, SeqCst);
                state.requests.lock().unwrap().push(req.path().to_owned());
                state.versions.lock().unwrap().push(req.version());
                actix_web::dev::Service::call(srv, req)
            })
            .route("/bytes/{n}", web::get().to(bytes))
            .route("/chunked/{n}", web::get().to(chunked))
            .route("/slow/{n}", web::get().to(slow))
            .route("/status/{code}", web::to(status))
            .route("/upload", web::put().to(upload))
            .route("/upload", web::post().to(upload))
            .route("/echo", web::to(echo))
            .route("/created", web::put().to(created))
    })
    .workers(1)
    .on_connect(move |_, _| {
        on_connect.connections.fetch_add(1, SeqCst);
    })
    .disable_signals();
    let (srv, scheme) = match tls {
        None => (srv.bind(("127.0.0.1", 0)), "http"),
        #[cfg(feature = "rustls")]
        Some(config) => (srv.bind_rustls_0_23(("127.0.0.1", 0), config), "https"),
        #[cfg(not(feature = "rustls"))]
        Some(never) => match never {},
    };
    let srv = srv.expect("bind 127.0.0.1");
    let base = format!("{scheme}://{}", srv.addrs()[0]);
    let srv = srv.run();
    let handle = srv.handle();
    actix_rt::spawn(srv);
    Server {
        base,
        state,
        handle,
    }
}

async fn bytes(n: web::Path<usize>) -> HttpResponse {
    HttpResponse::Ok().body(pattern(*n))
}

/// A body without Content-Length (chunked), in 8 KiB pieces.
async fn chunked(n: web::Path<usize>) -> HttpResponse {
    let body = pattern(*n);
    let pieces: Vec<web::Bytes> = body.chunks(8192).map(web::Bytes::copy_from_slice).collect();
    HttpResponse::Ok().streaming(futures::stream::iter(pieces).map(Ok::<_, std::io::Error>))
}

/// `n` bytes with a Content-Length, 4 KiB every 5 ms; records what it sent.
async fn slow(n: web::Path<usize>, state: web::Data<ServerState>) -> HttpResponse {
    let conn = Arc::new(SlowConn::default());
    state.slow.lock().unwrap().push(Arc::clone(&conn));
    let total = *n;
    let guard = DropGuard(Arc::clone(&conn));
    let body = futures::stream::unfold((0usize, guard), move |(off, guard)| async move {
        if off >= total {
            guard.0.finished.store(true, SeqCst);
            return None;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
        let len = (total - off).min(4096);
        let chunk = web::Bytes::from(pattern(off + len)[off..].to_vec());
        guard.0.sent.fetch_add(len as u64, SeqCst);
        Some((Ok::<_, std::io::Error>(chunk), (off + len, guard)))
    });
    HttpResponse::Ok().no_chunking(total as u64).streaming(body)
}

async fn status(code: web::Path<u16>) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(*code).unwrap())
        .body("an error page that must never be saved")
}

async fn upload(
    req: HttpRequest,
    mut body: web::Payload,
    state: web::Data<ServerState>,
) -> HttpResponse {
    let mut got = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => got.extend_from_slice(&c),
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    let h = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let reply = format!("{} {}", got.len(), sha256_hex(&got));
    state.uploads.lock().unwrap().push((
        req.method().to_string(),
        h(header::CONTENT_LENGTH),
        h(header::TRANSFER_ENCODING),
        got,
    ));
    HttpResponse::Ok().body(reply)
}

/// Replies with `METHOD x-test-header-value` then the request body.
async fn echo(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let tag = req
        .headers()
        .get("x-test")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let mut out = format!("{} {}\n", req.method(), tag).into_bytes();
    out.extend_from_slice(&body);
    HttpResponse::Ok().body(out)
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Submit `msg` (bounded); the engine's answer.
pub async fn submit<M>(engine: &Addr<Engine>, msg: M) -> Result<TransferId, TransferError>
where
    M: Message<Result = Result<TransferId, TransferError>> + Send + 'static,
    Engine: actix::Handler<M>,
{
    actix_rt::time::timeout(LIMIT, engine.send(msg))
        .await
        .unwrap_or_else(|_| panic!("the engine did not answer within {LIMIT:?}"))
        .expect("the engine is alive")
}

/// Wait (bounded) for a child process to exit: its status. Past [`LIMIT`] the child is killed
/// and the test fails, naming `what`.
pub async fn exit_status(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: did not exit within {LIMIT:?}");
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait (bounded) for a transfer's outcome.
pub async fn wait(engine: &Addr<Engine>, id: TransferId) -> Outcome {
    actix_rt::time::timeout(LIMIT, engine.send(Wait(id)))
        .await
        .unwrap_or_else(|_| panic!("the transfer did not end within {LIMIT:?}"))
        .expect("the engine is alive")
        .expect("the id is known")
}

/// Poll `Status(id)` until `done` holds (every 10 ms, at most [`LIMIT`]); panics otherwise.
pub async fn poll_status(
    engine: &Addr<Engine>,
    id: TransferId,
    done: impl Fn(&TransferStatus) -> bool,
) -> TransferStatus {
    let start = Instant::now();
    loop {
        let status = engine
            .send(Status(id))
            .await
            .expect("the engine is alive")
            .expect("the id is known");
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < LIMIT,
            "status never reached the condition: {status:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// An engine on a fresh temp dir, with a recorder subscribed to everything.
pub struct Rig {
    pub engine: Addr<Engine>,
    pub events: Events,
    pub recorder: Addr<Recorder>,
    pub dir: tempfile::TempDir,
}

pub async fn rig_with(builder: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let engine = builder(
        Engine::builder()
            .workers(2)
            .download_dir(dir.path())
            .progress_interval(Duration::from_millis(20))
            .retry(RetryPolicy::never()),
    )
    .start();
    let events = Events::default();
    let recorder = events.recorder();
    engine
        .send(Subscribe::all(recorder.clone().recipient()))
        .await
        .unwrap()
        .unwrap();
    Rig {
        engine,
        events,
        recorder,
        dir,
    }
}

pub async fn rig() -> Rig {
    rig_with(|b| b).await
}

impl Rig {
    pub async fn submit<M>(&self, msg: M) -> TransferId
    where
        M: Message<Result = Result<TransferId, TransferError>> + Send + 'static,
        Engine: Handler<M>,
    {
        submit(&self.engine, msg).await.expect("accepted")
    }

    pub async fn wait(&self, id: TransferId) -> Outcome {
        wait(&self.engine, id).await
    }

    /// Submit every message, then wait for each: the ids and outcomes, in submission order
    /// (all of them in flight together, as far as the engine's limits let them run).
    pub async fn run_all<M>(&self, msgs: impl IntoIterator<Item = M>) -> Vec<(TransferId, Outcome)>
    where
        M: Message<Result = Result<TransferId, TransferError>> + Send + 'static,
        Engine: Handler<M>,
    {
        let mut ids = Vec::new();
        for msg in msgs {
            ids.push(self.submit(msg).await);
        }
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            done.push((id, self.wait(id).await));
        }
        done
    }

    /// Files in the download dir (recursively, relative), sorted.
    pub fn files(&self) -> Vec<String> {
        files(self.dir.path())
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }
}

/// An upload that creates a resource, as storage servers answer: `201 Created` with its
/// `Location` and an `ETag` of the body (its SHA-256).
async fn created(body: web::Bytes) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, "/files/1"))
        .insert_header((header::ETAG, format!("\"{}\"", sha256_hex(&body))))
        .finish()
}
