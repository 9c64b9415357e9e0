//! Download URLs concurrently with a progress bar each; Ctrl-C cancels everything cleanly.
//!
//! ```text
//! cargo run --release --example transfer -- [--dir DIR] [--json] [--ca-cert FILE] URL...
//! cargo run --release --example transfer            # a demo against a loopback server
//! cargo run --release --example transfer -- --serve 127.0.0.1:8080 [--token T] [--dir DIR]
//! ```
//!
//! - `--dir DIR`: where files go (default: the current directory; the demo uses a temp dir).
//! - `--json`: no bars; one JSON object per event per line on stdout.
//! - `--ca-cert FILE`: trust the certificates of this PEM file too (a private CA, a
//!   self-signed server), beside the bundled roots.
//! - `--proxy URL`: send every request through this HTTP proxy. Otherwise `http_proxy`,
//!   `https_proxy`, `all_proxy` and `no_proxy` (or upper case) apply, except in the demo.
//! - `--serve ADDR`: a download manager: run the engine and serve its control plane (REST API,
//!   live events, metrics, the dashboard page) on `ADDR` until Ctrl-C or SIGTERM. Prints the
//!   URL to open; without `--token` it makes a random token and prints it.
//!
//! `RUST_LOG` sets what is logged (`RUST_LOG=actix_transfer=debug`).
//!
//! Exit code: 0 when every transfer completed (in the demo: when every transfer ended as the
//! demo expects, including the one it cancels and the one that gets a 404), 1 otherwise, 130
//! on Ctrl-C.

use std::{collections::HashMap, path::PathBuf, process::ExitCode, time::Duration};

use actix::prelude::*;
use actix_transfer::{
    Cancel, Download, EndState, Engine, EngineBuilder, EventKind, Outcome, Subscribe,
    TransferError, TransferEvent, TransferId,
};
use clap::Parser;
use futures::{channel::oneshot, future::Either};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Download URLs concurrently with a progress bar each; Ctrl-C cancels everything cleanly.
///
/// Without a URL (and without --serve): a demo against a loopback server.
#[derive(Parser, Debug)]
#[command(
    name = "transfer",
    after_help = "RUST_LOG sets what is logged (RUST_LOG=actix_transfer=debug).\n\
                  Exit code: 0 when every transfer completed, 1 otherwise, 2 for bad options, \
                  130 on Ctrl-C."
)]
struct Args {
    /// Where files go (default: the current directory; the demo uses a temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// No bars; one JSON object per event per line on stdout.
    #[arg(long, conflicts_with = "serve")]
    json: bool,
    /// Run the engine and serve its control plane (REST API, live events, metrics, the
    /// dashboard page) on ADDR until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "ADDR", conflicts_with = "urls")]
    serve: Option<String>,
    /// The control plane's token (default: a random one, printed).
    #[arg(long, value_name = "T", requires = "serve")]
    token: Option<String>,
    /// Trust the certificates of this PEM file too (a private CA, a self-signed server),
    /// beside the bundled roots.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Another URL of the file (repeatable; with exactly one URL): retries go round robin over
    /// the URL and its mirrors, and a segmented download spreads its ranges over them.
    #[arg(long, value_name = "URL")]
    mirror: Vec<String>,
    /// Send every request through this HTTP proxy (http://[user:password@]host:port).
    /// Without it, http_proxy, https_proxy, all_proxy and no_proxy (or upper case) apply,
    /// except in the demo, whose server is on loopback.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// The URLs to download.
    #[arg(value_name = "URL")]
    urls: Vec<String>,
}

/// The engine's options that come from the command line (`--ca-cert`), or why they are wrong.
fn engine_builder(args: &Args) -> Result<EngineBuilder, String> {
    if !args.mirror.is_empty() && args.urls.len() != 1 {
        return Err("--mirror needs exactly one URL to download".into());
    }
    let mut builder = Engine::builder();
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path)
            .map_err(|e| format!("--ca-cert: cannot read {}: {e}", path.display()))?;
        builder = builder.add_root_certificate(&pem);
    }
    if !args.urls.is_empty() || args.serve.is_some() {
        builder = builder.proxy_from_env();
    }
    if let Some(url) = &args.proxy {
        builder = builder.proxy(url);
    }
    Ok(builder)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let builder = match engine_builder(&args) {
        Ok(b) => b,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let code = match args.serve.clone() {
        Some(addr) => {
            actix_rt::System::new().block_on(serve::run(addr, args.token, args.dir, builder))
        }
        None => actix_rt::System::new().block_on(run(args, builder)),
    };
    ExitCode::from(code)
}

/// One transfer as the display knows it.
struct Line {
    name: String,
    bar: Option<ProgressBar>,
    /// The end the demo expects; `None` outside the demo (completed is expected).
    expect: Option<EndState>,
    /// Demo: cancel this one once this many bytes arrived.
    cancel_after: Option<u64>,
}

/// Receives every event: draws bars or prints JSON, cancels the demo's victim, and reports
/// when every transfer has ended.
struct Display {
    engine: Addr<Engine>,
    json: bool,
    lines: HashMap<TransferId, Line>,
    /// Every outcome seen, tracked or not yet (a fast transfer may end before it is tracked).
    outcomes: HashMap<TransferId, Outcome>,
    /// How many transfers will be tracked, once every submission was answered.
    expected: Option<usize>,
    all_ended: Option<oneshot::Sender<()>>,
}

impl Actor for Display {
    type Context = Context<Self>;
}

impl Display {
    fn finish_bar(line: &Line, outcome: &Outcome) {
        let Some(bar) = &line.bar else { return };
        match outcome {
            Outcome::Completed { .. } => bar.finish_with_message("done"),
            Outcome::Failed { error, .. } => bar.abandon_with_message(format!("failed: {error}")),
            _ => bar.abandon_with_message("cancelled"),
        }
    }

    fn check_done(&mut self) {
        let done = self.expected == Some(self.lines.len())
            && self.lines.keys().all(|id| self.outcomes.contains_key(id));
        if done {
            if let Some(tx) = self.all_ended.take() {
                let _ = tx.send(());
            }
        }
    }
}

/// Every submission was answered; `0` transfers were accepted.
#[derive(Message)]
#[rtype(result = "()")]
struct Expect(usize);

impl Handler<Expect> for Display {
    type Result = ();
    fn handle(&mut self, Expect(n): Expect, _: &mut Context<Self>) {
        self.expected = Some(n);
        self.check_done();
    }
}

/// Registers a transfer with the display (sent before its events can matter).
#[derive(Message)]
#[rtype(result = "()")]
struct Track(TransferId, Line);

/// Resolves once every tracked transfer ended.
#[derive(Message)]
#[rtype(result = "HashMap<TransferId, Outcome>")]
struct Outcomes;

impl Handler<Track> for Display {
    type Result = ();
    fn handle(&mut self, Track(id, line): Track, _: &mut Context<Self>) {
        if let Some(outcome) = self.outcomes.get(&id) {
            Self::finish_bar(&line, outcome);
        }
        self.lines.insert(id, line);
        self.check_done();
    }
}

impl Handler<Outcomes> for Display {
    type Result = MessageResult<Outcomes>;
    fn handle(&mut self, _: Outcomes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.outcomes.clone())
    }
}

const BAR: &str = "{prefix:>16} [{bar:32}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}";
const WAITING: &str = "{prefix:>16} {spinner} {msg}";
const SPINNER: &str = "{prefix:>16} {spinner} {bytes:>10} (size unknown) {bytes_per_sec:>12} {msg}";

impl Handler<TransferEvent> for Display {
    type Result = ();

    fn handle(&mut self, ev: TransferEvent, ctx: &mut Context<Self>) {
        if self.json {
            println!("{}", serde_json::to_string(&ev).expect("events serialise"));
        }
        if let EventKind::Ended(outcome) = &ev.kind {
            self.outcomes.insert(ev.id, outcome.clone());
        }
        let Some(line) = self.lines.get_mut(&ev.id) else {
            return;
        };
        match &ev.kind {
            EventKind::Began {
                bytes_estimated, ..
            } => {
                if let Some(bar) = &line.bar {
                    match bytes_estimated {
                        Some(n) => {
                            bar.set_style(ProgressStyle::with_template(BAR).unwrap());
                            bar.set_length(*n);
                        }
                        None => bar.set_style(ProgressStyle::with_template(SPINNER).unwrap()),
                    }
                }
            }
            EventKind::Progress {
                bytes_transferred, ..
            } => {
                if let Some(bar) = &line.bar {
                    bar.set_position(*bytes_transferred);
                    bar.tick();
                }
                if line.cancel_after.is_some_and(|n| *bytes_transferred >= n) {
                    line.cancel_after = None;
                    let (engine, id, bar) = (self.engine.clone(), ev.id, line.bar.clone());
                    let json = self.json;
                    ctx.spawn(
                        async move {
                            let text = match engine.send(Cancel(id)).await {
                                Ok(reply) => format!("demo: Cancel({id}) answered {reply:?}"),
                                Err(e) => format!("demo: Cancel({id}) not delivered: {e}"),
                            };
                            match (json, bar) {
                                (false, Some(bar)) => bar.println(text),
                                _ => eprintln!("{text}"),
                            }
                        }
                        .into_actor(self),
                    );
                }
            }
            EventKind::Retrying { attempt, error, .. } => {
                if let Some(bar) = &line.bar {
                    bar.set_message(format!("retry {attempt}: {error}"));
                }
            }
            EventKind::Ended(outcome) => {
                Self::finish_bar(line, outcome);
                self.check_done();
            }
            _ => {}
        }
    }
}

/// Start the engine from `builder`, or say (exit code 2) which option keeps it from starting.
fn start(builder: EngineBuilder, dir: &std::path::Path) -> Result<Addr<Engine>, u8> {
    builder.download_dir(dir).try_start().map_err(|e| {
        eprintln!("{e}");
        2
    })
}

async fn run(args: Args, builder: EngineBuilder) -> u8 {
    let demo = args.urls.is_empty();
    // The demo's server and its temp dir live until the end of `run`.
    let mut _server = None;
    let mut _tempdir = None;
    let dir = match (&args.dir, demo) {
        (Some(d), _) => d.clone(),
        (None, false) => std::env::current_dir().unwrap_or_else(|_| ".".into()),
        (None, true) => {
            let t = tempfile::tempdir().expect("a temp dir");
            let p = t.path().to_path_buf();
            _tempdir = Some(t);
            p
        }
    };
    let jobs: Vec<(String, Download, Line)> = if demo {
        let (server, jobs) = demo::start(args.json).await;
        _server = Some(server);
        jobs
    } else {
        args.urls
            .iter()
            .map(|u| {
                let line = Line {
                    name: short_name(u),
                    bar: None,
                    expect: None,
                    cancel_after: None,
                };
                let download = Download::new(u.clone()).mirrors(args.mirror.iter().cloned());
                (u.clone(), download, line)
            })
            .collect()
    };

    let engine = match start(builder, &dir) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let (all_tx, all_rx) = oneshot::channel();
    let display = Display {
        engine: engine.clone(),
        json: args.json,
        lines: HashMap::new(),
        outcomes: HashMap::new(),
        expected: None,
        all_ended: Some(all_tx),
    }
    .start();
    engine
        .send(Subscribe::all(display.clone().recipient()))
        .await
        .expect("engine is running")
        .expect("the display is running");

    let bars = MultiProgress::new();
    if args.json {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut rejected = 0;
    let mut ids = Vec::new();
    for (url, download, mut line) in jobs {
        let bar = bars.add(ProgressBar::new_spinner());
        bar.set_style(ProgressStyle::with_template(WAITING).unwrap());
        bar.set_prefix(line.name.clone());
        bar.enable_steady_tick(Duration::from_millis(120));
        match engine.send(download).await.expect("engine is running") {
            Ok(id) => {
                line.bar = Some(bar);
                display.send(Track(id, line)).await.unwrap();
                ids.push(id);
            }
            Err(error) => {
                bar.finish_and_clear();
                if args.json {
                    println!("{}", rejected_json(&url, &error));
                } else {
                    eprintln!("refused {url}: {error} ({})", error.kind());
                }
                rejected += 1;
            }
        }
    }
    if ids.is_empty() {
        return 1;
    }
    display.send(Expect(ids.len())).await.unwrap();

    let ctrl_c = Box::pin(actix_rt::signal::ctrl_c());
    let interrupted = matches!(
        futures::future::select(all_rx, ctrl_c).await,
        Either::Right(_)
    );
    if interrupted {
        // Ctrl-C: cancel everything, then wait for every Ended.
        for id in &ids {
            let _ = engine.send(Cancel(*id)).await;
        }
        for id in &ids {
            let _ = engine.send(actix_transfer::Wait(*id)).await;
        }
    }
    let outcomes = display.send(Outcomes).await.unwrap();
    let lines = display.send(Lines).await.unwrap();
    if !args.json {
        bars.clear().ok();
        summary(&ids, &outcomes, &dir);
    }
    if interrupted {
        return 130;
    }
    let all_as_expected = ids.iter().all(|id| {
        let expect = lines
            .get(id)
            .copied()
            .flatten()
            .unwrap_or(EndState::Completed);
        outcomes.get(id).map(|o| o.end_state()) == Some(expect)
    });
    if all_as_expected && rejected == 0 {
        0
    } else {
        1
    }
}

/// The expected end of each tracked transfer.
#[derive(Message)]
#[rtype(result = "HashMap<TransferId, Option<EndState>>")]
struct Lines;

impl Handler<Lines> for Display {
    type Result = MessageResult<Lines>;
    fn handle(&mut self, _: Lines, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.lines.iter().map(|(id, l)| (*id, l.expect)).collect())
    }
}

fn summary(ids: &[TransferId], outcomes: &HashMap<TransferId, Outcome>, dir: &std::path::Path) {
    println!("\nsaved under {}", dir.display());
    for id in ids {
        match outcomes.get(id) {
            Some(Outcome::Completed { bytes, output, .. }) => {
                println!("  #{id} completed, {bytes} bytes: {output:?}")
            }
            Some(Outcome::Failed { error, bytes, .. }) => {
                println!(
                    "  #{id} failed after {bytes} bytes: {error} ({})",
                    error.kind()
                )
            }
            Some(Outcome::Cancelled { bytes }) => println!("  #{id} cancelled after {bytes} bytes"),
            _ => println!("  #{id} did not end"),
        }
    }
}

fn rejected_json(url: &str, error: &TransferError) -> String {
    serde_json::json!({ "event": "rejected", "url": url, "error": error }).to_string()
}

fn short_name(url: &str) -> String {
    let name = url.rsplit('/').find(|s| !s.is_empty()).unwrap_or(url);
    name.chars().take(16).collect()
}

/// The demo: a loopback server with files of several kinds, and what each should become.
mod demo {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use futures::StreamExt;

    pub(super) async fn start(
        json: bool,
    ) -> (actix_web::dev::ServerHandle, Vec<(String, Download, Line)>) {
        let server = HttpServer::new(|| {
            App::new()
                .route(
                    "/small.txt",
                    web::get().to(|| async { "hello from actix-transfer\n" }),
                )
                .route(
                    "/medium.bin",
                    web::get().to(|| async { HttpResponse::Ok().body(pattern(4 << 20)) }),
                )
                .route(
                    "/large.bin",
                    web::get().to(|| async { HttpResponse::Ok().body(pattern(48 << 20)) }),
                )
                .route("/streamed.bin", web::get().to(streamed))
                .route("/slow.bin", web::get().to(slow))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind 127.0.0.1");
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        if !json {
            println!("demo: serving on {base}");
        }
        let line = |name: &str, expect: EndState, cancel_after: Option<u64>| Line {
            name: name.into(),
            bar: None,
            expect: Some(expect),
            cancel_after,
        };
        use EndState::*;
        // (path, per-transfer rate limit, expected end, cancel after this many bytes)
        let plan: [(&str, Option<u64>, EndState, Option<u64>); 6] = [
            ("small.txt", None, Completed, None),
            ("medium.bin", Some(4 << 20), Completed, None),
            ("large.bin", Some(24 << 20), Completed, None),
            ("streamed.bin", None, Completed, None),
            ("slow.bin", None, Cancelled, Some(1 << 20)),
            ("missing.bin", None, Failed, None),
        ];
        let jobs = plan
            .into_iter()
            .map(|(path, rate, expect, cancel_after)| {
                let url = format!("{base}/{path}");
                let mut d = Download::new(url.clone());
                if let Some(r) = rate {
                    d = d.max_rate(r);
                }
                (url, d, line(path, expect, cancel_after))
            })
            .collect();
        (handle, jobs)
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// 2 MiB in 64 chunks, chunked encoding: the size is unknown until the end.
    async fn streamed() -> HttpResponse {
        let chunks = futures::stream::iter(0..64).then(|_| async {
            actix_rt::time::sleep(Duration::from_millis(15)).await;
            Ok::<_, std::io::Error>(web::Bytes::from(pattern(32 * 1024)))
        });
        HttpResponse::Ok().streaming(chunks)
    }

    /// 16 MiB at about 2 MiB/s, with a length: the demo cancels it after 1 MiB.
    async fn slow() -> HttpResponse {
        let chunks = futures::stream::iter(0..512).then(|_| async {
            actix_rt::time::sleep(Duration::from_millis(15)).await;
            Ok::<_, std::io::Error>(web::Bytes::from(pattern(32 * 1024)))
        });
        HttpResponse::Ok().no_chunking(16 << 20).streaming(chunks)
    }
}

/// `--serve`: the engine and its control plane until Ctrl-C or SIGTERM.
mod serve {
    use std::path::PathBuf;

    use actix_transfer::{
        web::{ControlPanel, WebConfig},
        EngineBuilder, Shutdown,
    };
    use actix_web::{App, HttpServer};

    /// 128 random bits, hex.
    fn random_token() -> Result<String, String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random token: {e}"))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub(super) async fn run(
        addr: String,
        token: Option<String>,
        dir: Option<PathBuf>,
        builder: EngineBuilder,
    ) -> u8 {
        let token = match token.map_or_else(random_token, Ok) {
            Ok(t) if !t.is_empty() => t,
            Ok(_) => {
                eprintln!("--token must not be empty");
                return 2;
            }
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        };
        let dir = dir.unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| ".".into()));
        let engine = match super::start(builder, &dir) {
            Ok(e) => e,
            Err(code) => return code,
        };
        let panel = ControlPanel::start(engine.clone(), WebConfig::with_token(token.clone()));
        let p = panel.clone();
        let server = match HttpServer::new(move || App::new().configure(p.routes()))
            .disable_signals()
            .bind(&addr)
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot listen on {addr}: {e}");
                return 1;
            }
        };
        for a in server.addrs() {
            println!("open http://{a}/ (token: {token})");
        }
        println!("downloads go to {}; Ctrl-C stops", dir.display());
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(async move {
            stop_signal().await;
            // End the event streams first: a graceful stop would otherwise wait for them.
            panel.close().await;
            handle.stop(true).await;
        });
        let served = server.await;
        engine.send(Shutdown).await.ok();
        match served {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("server failed: {e}");
                1
            }
        }
    }

    /// Ctrl-C, or SIGTERM on unix.
    async fn stop_signal() {
        #[cfg(unix)]
        {
            use actix_rt::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                let ctrl_c = Box::pin(actix_rt::signal::ctrl_c());
                let term = Box::pin(term.recv());
                futures::future::select(ctrl_c, term).await;
                return;
            }
        }
        let _ = actix_rt::signal::ctrl_c().await;
    }
}
