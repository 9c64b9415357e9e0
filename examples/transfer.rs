//! Download URLs concurrently with a progress bar each; Ctrl-C cancels everything cleanly, or
//! with `--journal` stops everything so that the next run continues.
//!
//! ```text
//! cargo run --release --example transfer -- [--dir DIR] [--json] [-H 'Name: value']... URL...
//! cargo run --release --example transfer -- -o NAME URL
//! cargo run --release --example transfer -- --journal FILE [--dir DIR] [--json] [URL...]
//! cargo run --release --example transfer            # a demo against a loopback server
//! cargo run --release --example transfer -- --serve 127.0.0.1:8080 [--token T] [--journal FILE]
//! ```
//!
//! - `--dir DIR`: where files go (default: the current directory; the demo uses a temp dir).
//! - `--json`: no bars; one JSON object per event per line on stdout (`queued` and `restored`
//!   lines also carry the transfer's `url`).
//! - `--journal FILE`: keep the transfers in an SQLite journal. With URLs, they are added to it
//!   and run; without, every unfinished transfer recorded in `FILE` continues. Ctrl-C (or
//!   SIGTERM) then stops everything resumably, and so does a crash: the next run with the same
//!   journal continues from the bytes on disk.
//! - `-H/--header 'Name: value'` (repeatable): a request header for every URL.
//! - `-o/--output NAME`: the file name, for exactly one URL.
//! - `--ca-cert FILE`: trust the certificates of this PEM file too (a private CA, a
//!   self-signed server), beside the bundled roots.
//! - `--proxy URL`: send every request through this HTTP proxy. Otherwise `http_proxy`,
//!   `https_proxy`, `all_proxy` and `no_proxy` (or upper case) apply, except in the demo.
//! - `--serve ADDR`: a download manager: run the engine and serve its control plane (REST API,
//!   live events, metrics, the dashboard page) on `ADDR` until Ctrl-C or SIGTERM. Prints the
//!   URL to open; without `--token` it makes a random token and prints it. When `ADDR` is not
//!   loopback only (`0.0.0.0:8080`, a LAN address), URLs whose host is or resolves to a
//!   loopback, private or link-local address are refused (`403`), so that whoever holds the
//!   token cannot make the server request its own network.
//!
//! `RUST_LOG` sets what is logged (`RUST_LOG=actix_transfer=debug`), on stderr, above the bars.
//!
//! Exit code: 0 when every transfer completed (in the demo: when every transfer ended as the
//! demo expects, including the one it cancels and the one that gets a 404), 1 otherwise, 2 for
//! bad options, 130 on Ctrl-C or SIGTERM. With `--serve`, which runs until it is stopped: 0
//! once Ctrl-C or SIGTERM stopped it cleanly, 1 if it cannot listen or the server failed, 2 for
//! bad options.

#[path = "shared/mod.rs"]
mod shared;
use shared::stop_signal;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use actix::prelude::*;
use actix_transfer::{
    Cancel, Download, EndState, Engine, EngineBuilder, EventKind, Outcome, Output, Resume,
    Shutdown, Status, TransferError, TransferEvent, TransferId, TransferState,
};
use clap::{CommandFactory, Parser};
use futures::{channel::oneshot, future::Either};
use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};

/// Download URLs concurrently with a progress bar each; Ctrl-C cancels everything cleanly
/// (with --journal: stops everything resumably, and the next run continues).
///
/// Without a URL (and without --serve or --journal): a demo against a loopback server.
#[derive(Parser, Debug)]
#[command(
    name = "transfer",
    after_help = "RUST_LOG sets what is logged (RUST_LOG=actix_transfer=debug).\n\
                  Exit code: 0 when every transfer completed, 1 otherwise, 2 for bad options, \
                  130 on Ctrl-C or SIGTERM (with --serve: 0 once stopped cleanly)."
)]
struct Args {
    /// Where files go (default: the current directory; the demo uses a temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// No bars; one JSON object per event per line on stdout.
    #[arg(long, conflicts_with = "serve")]
    json: bool,
    /// Keep the transfers in this SQLite journal: without URLs, continue every unfinished one
    /// it records; Ctrl-C, SIGTERM or a crash leave them resumable by the next run.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// A request header for every URL (repeatable).
    #[arg(
        short = 'H',
        long = "header",
        value_name = "NAME: VALUE",
        value_parser = parse_header,
        requires = "urls"
    )]
    headers: Vec<(String, String)>,
    /// The file's name (inside --dir), for exactly one URL.
    #[arg(short = 'o', long, value_name = "NAME", requires = "urls")]
    output: Option<String>,
    /// Run the engine and serve its control plane (REST API, live events, metrics, the
    /// dashboard page) on ADDR until Ctrl-C or SIGTERM. Beyond loopback, URLs into private
    /// networks are refused.
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

/// `Name: value`, as curl takes it: a token (RFC 9110), a colon, the value (surrounding blanks
/// trimmed).
fn parse_header(s: &str) -> Result<(String, String), String> {
    let Some((name, value)) = s.split_once(':') else {
        return Err("a header is 'Name: value', with a colon".into());
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!(
            "{name:?} is not a header name: a name is letters, digits and !#$%&'*+-.^_`|~"
        ));
    }
    let value = value.trim_matches([' ', '\t']);
    if value.chars().any(|c| c.is_ascii_control() && c != '\t') {
        return Err(format!("the value of {name} has a control character"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// The engine's options that come from the command line, or why they are wrong.
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
    // Not in the demo: its server is on loopback, and a machine's http_proxy would break it.
    if !args.urls.is_empty() || args.serve.is_some() || args.journal.is_some() {
        builder = builder.proxy_from_env();
    }
    if let Some(url) = &args.proxy {
        builder = builder.proxy(url);
    }
    if let Some(path) = &args.journal {
        builder = builder.journal(path);
    }
    Ok(builder)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.output.is_some() && args.urls.len() != 1 {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "-o/--output names one file: give exactly one URL",
            )
            .exit();
    }
    let builder = match engine_builder(&args) {
        Ok(b) => b,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let bars = MultiProgress::new();
    if args.json {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(AboveBars(bars.clone()))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let code = match args.serve.clone() {
        Some(addr) => {
            actix_rt::System::new().block_on(serve::run(addr, args.token, args.dir, builder))
        }
        None => actix_rt::System::new().block_on(run(args, builder, bars)),
    };
    ExitCode::from(code)
}

/// Log lines go to stderr above the bars (the bars are hidden while one is written), so that a
/// redraw never overwrites them.
#[derive(Clone)]
struct AboveBars(MultiProgress);

impl std::io::Write for AboveBars {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AboveBars {
    type Writer = AboveBars;
    fn make_writer(&'a self) -> AboveBars {
        self.clone()
    }
}

/// One transfer as the display knows it.
struct Line {
    name: String,
    url: String,
    bar: Option<ProgressBar>,
    /// The end the demo expects; `None` outside the demo (completed is expected).
    expect: Option<EndState>,
    /// Demo: cancel this one once this many bytes arrived.
    cancel_after: Option<u64>,
    /// Bytes moved (or on disk), as last heard.
    bytes: u64,
}

impl Line {
    fn new(name: String, url: String) -> Self {
        Line {
            name,
            url,
            bar: None,
            expect: None,
            cancel_after: None,
            bytes: 0,
        }
    }
}

/// Receives every event: draws bars or prints JSON, cancels the demo's victim, and reports
/// when every transfer has ended.
struct Display {
    /// Set once the engine started (the display subscribes before, to see `Restored`).
    engine: Option<Addr<Engine>>,
    json: bool,
    lines: HashMap<TransferId, Line>,
    /// Events of transfers not tracked yet, until every submission was answered: a `Queued`
    /// (or `Restored`) comes before the id is known here, and is shown with its URL.
    pending: HashMap<TransferId, Vec<TransferEvent>>,
    /// Transfers restored from the journal, with their bytes on disk, in order.
    restored: Vec<(TransferId, TransferState, u64)>,
    /// Every outcome seen.
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
        bar.set_style(style(END));
        match outcome {
            Outcome::Completed { bytes, .. } => {
                if bar.length().is_none() {
                    bar.set_length(*bytes);
                }
                bar.set_position(bar.length().unwrap_or(*bytes));
                bar.finish_with_message("done");
            }
            Outcome::Failed {
                error: TransferError::Shutdown,
                ..
            } => bar.abandon_with_message("stopped"),
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

    /// One JSON line per event; `queued` and `restored` also carry the URL (added last, so
    /// that every line keeps the event's own field order).
    fn print_json(&self, ev: &TransferEvent) {
        let mut text = serde_json::to_string(ev).expect("events serialise");
        if let (EventKind::Queued | EventKind::Restored { .. }, Some(line)) =
            (&ev.kind, self.lines.get(&ev.id))
        {
            if text.ends_with('}') {
                text.pop();
                let url = serde_json::to_string(&line.url).expect("a string serialises");
                text.push_str(&format!(",\"url\":{url}}}"));
            }
        }
        println!("{text}");
    }

    fn apply(&mut self, ev: TransferEvent, ctx: &mut Context<Self>) {
        if self.json {
            self.print_json(&ev);
        }
        if let EventKind::Ended(outcome) = &ev.kind {
            self.outcomes.insert(ev.id, outcome.clone());
        }
        let Some(line) = self.lines.get_mut(&ev.id) else {
            return;
        };
        match &ev.kind {
            EventKind::Restored { bytes_on_disk, .. } => {
                line.bytes = *bytes_on_disk;
                if let Some(bar) = &line.bar {
                    // The journal's figure: it may lag behind the `.part` (the resume
                    // continues from the file's own length).
                    bar.set_message(match bytes_on_disk {
                        0 => "restored".to_owned(),
                        n => format!("restored, {} on disk", Size(*n)),
                    });
                }
            }
            EventKind::Began {
                bytes_estimated, ..
            } => {
                if let Some(bar) = &line.bar {
                    match bytes_estimated {
                        Some(n) => {
                            bar.set_style(style(BAR));
                            bar.set_length(*n);
                        }
                        None => bar.set_style(style(SPINNER)),
                    }
                    bar.set_message("");
                }
                // The file's real name (a server's Content-Disposition, a redirect, a
                // conflict's " (1)"), once the engine has chosen it.
                if let (Some(engine), Some(bar)) = (self.engine.clone(), line.bar.clone()) {
                    let id = ev.id;
                    ctx.spawn(
                        async move {
                            if let Ok(Some(status)) = engine.send(Status(id)).await {
                                if let Some(name) = status.path.as_deref().and_then(file_name) {
                                    bar.set_prefix(fit(&name, NAME_WIDTH));
                                }
                            }
                        }
                        .into_actor(self),
                    );
                }
            }
            EventKind::Progress {
                bytes_transferred,
                bytes_estimated,
            } => {
                line.bytes = *bytes_transferred;
                if let Some(bar) = &line.bar {
                    if bar.length().is_none() {
                        if let Some(n) = bytes_estimated {
                            bar.set_style(style(BAR));
                            bar.set_length(*n);
                        }
                    }
                    let resumed = bar.position() == 0 && *bytes_transferred > 0;
                    bar.set_position(*bytes_transferred);
                    if resumed {
                        // The bytes a resume starts from arrived earlier, not in this moment:
                        // the speed and ETA count from here (the tick records the position,
                        // which it does only while no steady ticker runs; the reset forgets
                        // the jump to it).
                        bar.disable_steady_tick();
                        bar.tick();
                        bar.reset_eta();
                        bar.enable_steady_tick(TICK);
                    }
                }
                if line.cancel_after.is_some_and(|n| *bytes_transferred >= n) {
                    line.cancel_after = None;
                    let (id, bar) = (ev.id, line.bar.clone());
                    let json = self.json;
                    if let Some(engine) = self.engine.clone() {
                        ctx.spawn(
                            async move {
                                let text = match engine.send(Cancel(id)).await {
                                    Ok(reply) => format!("demo: Cancel({id}) answered {reply:?}"),
                                    Err(e) => format!("demo: Cancel({id}) not delivered: {e}"),
                                };
                                match (json, bar) {
                                    (false, Some(bar)) if !bar.is_hidden() => bar.println(text),
                                    _ => eprintln!("{text}"),
                                }
                            }
                            .into_actor(self),
                        );
                    }
                }
            }
            EventKind::Retrying { attempt, error, .. } => {
                if let Some(bar) = &line.bar {
                    bar.set_style(style(END));
                    bar.set_message(format!("retry {attempt}: {error}"));
                }
            }
            EventKind::Paused { bytes_transferred } => {
                line.bytes = *bytes_transferred;
                if let Some(bar) = &line.bar {
                    bar.set_style(style(END));
                    bar.set_message("paused");
                }
            }
            EventKind::Ended(outcome) => {
                if let Outcome::Completed {
                    output: Output::File(path),
                    ..
                } = outcome
                {
                    if let (Some(bar), Some(name)) = (&line.bar, file_name(path)) {
                        bar.set_prefix(fit(&name, NAME_WIDTH));
                    }
                }
                line.bytes = outcome.bytes().max(line.bytes);
                Self::finish_bar(line, outcome);
                self.check_done();
            }
            _ => {}
        }
    }
}

/// Every submission was answered; `n` transfers are tracked.
#[derive(Message)]
#[rtype(result = "()")]
struct Expect(usize);

impl Handler<Expect> for Display {
    type Result = ();
    fn handle(&mut self, Expect(n): Expect, ctx: &mut Context<Self>) {
        self.expected = Some(n);
        // Events of transfers that are not ours (none in this program): shown as they are.
        for (_, events) in std::mem::take(&mut self.pending) {
            for ev in events {
                self.apply(ev, ctx);
            }
        }
        self.check_done();
    }
}

/// The engine started.
#[derive(Message)]
#[rtype(result = "()")]
struct Started(Addr<Engine>);

impl Handler<Started> for Display {
    type Result = ();
    fn handle(&mut self, Started(engine): Started, _: &mut Context<Self>) {
        self.engine = Some(engine);
    }
}

/// Registers a transfer with the display, and shows the events it already had.
#[derive(Message)]
#[rtype(result = "()")]
struct Track(TransferId, Line);

impl Handler<Track> for Display {
    type Result = ();
    fn handle(&mut self, Track(id, line): Track, ctx: &mut Context<Self>) {
        self.lines.insert(id, line);
        for ev in self.pending.remove(&id).unwrap_or_default() {
            self.apply(ev, ctx);
        }
        self.check_done();
    }
}

/// The transfers the journal restored (their `Restored` events arrived before the engine
/// answered anything else).
#[derive(Message)]
#[rtype(result = "Vec<(TransferId, TransferState, u64)>")]
struct RestoredIds;

impl Handler<RestoredIds> for Display {
    type Result = MessageResult<RestoredIds>;
    fn handle(&mut self, _: RestoredIds, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.restored.clone())
    }
}

/// The outcome and bytes of every tracked transfer, and the end the demo expects; every bar
/// still running stops (a transfer a journaled shutdown keeps resumable has no `Ended`, and
/// its bar's ticker would draw it again under the summary).
#[derive(Message)]
#[rtype(result = "HashMap<TransferId, (Option<Outcome>, u64, Option<EndState>)>")]
struct Report;

impl Handler<Report> for Display {
    type Result = MessageResult<Report>;
    fn handle(&mut self, _: Report, _: &mut Context<Self>) -> Self::Result {
        for bar in self.lines.values().filter_map(|l| l.bar.as_ref()) {
            if !bar.is_finished() {
                bar.set_style(style(END));
                bar.abandon_with_message("stopped");
            }
        }
        MessageResult(
            self.lines
                .iter()
                .map(|(id, l)| (*id, (self.outcomes.get(id).cloned(), l.bytes, l.expect)))
                .collect(),
        )
    }
}

impl Handler<TransferEvent> for Display {
    type Result = ();

    fn handle(&mut self, ev: TransferEvent, ctx: &mut Context<Self>) {
        if let EventKind::Restored {
            state,
            bytes_on_disk,
        } = &ev.kind
        {
            self.restored.push((ev.id, *state, *bytes_on_disk));
        }
        if self.expected.is_none() && !self.lines.contains_key(&ev.id) {
            self.pending.entry(ev.id).or_default().push(ev);
            return;
        }
        self.apply(ev, ctx);
    }
}

/// How often a bar redraws (its spinner turns) without news.
const TICK: Duration = Duration::from_millis(120);

/// Names are cut to this many columns: every bar fits 80 columns.
const NAME_WIDTH: usize = 20;
// 20 + 1 + 20 + 1 + 17 + 1 + 10 + 1 + 8 = 79 columns.
const BAR: &str = "{prefix} [{bar:18}] {size} {speed} {eta}";
const END: &str = "{prefix} [{bar:18}] {size} {wide_msg}";
const WAITING: &str = "{prefix} {spinner} {wide_msg}";
const SPINNER: &str = "{prefix} {spinner} {done:>8} (size unknown) {speed} {wide_msg}";

/// A bar style, with the compact keys that keep it narrow: `size` (`done/total`), `done`,
/// `speed` and `eta`.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .with_key("size", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let total = s.len().map_or("?".to_owned(), |n| Size(n).to_string());
            let _ = write!(w, "{:>8}/{total:<8}", Size(s.pos()).to_string());
        })
        .with_key("done", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}", Size(s.pos()));
        })
        .with_key("speed", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:>10}", format!("{}/s", Size(s.per_sec() as u64)));
        })
        .with_key("eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
            let eta = match s.len() {
                Some(len) if s.pos() < len && s.per_sec() >= 1.0 => {
                    format!("eta {:#}", indicatif::HumanDuration(s.eta()))
                }
                _ => String::new(),
            };
            let _ = write!(w, "{eta:<8}");
        })
}

/// Bytes in at most 8 columns: `999 B`, `1.5 KiB`, `12.3 MiB`, `123 GiB`.
struct Size(u64);

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut n = self.0 as f64;
        let mut unit = 0;
        while n >= 1000.0 && unit < UNITS.len() - 1 {
            n /= 1024.0;
            unit += 1;
        }
        match (unit, n) {
            (0, _) => write!(f, "{} B", self.0),
            (_, n) if n < 10.0 => write!(f, "{n:.2} {}", UNITS[unit]),
            (_, n) if n < 100.0 => write!(f, "{n:.1} {}", UNITS[unit]),
            (_, n) => write!(f, "{n:.0} {}", UNITS[unit]),
        }
    }
}

/// `name` in exactly `width` columns: padded, or cut with an ellipsis.
fn fit(name: &str, width: usize) -> String {
    let n = name.chars().count();
    if n <= width {
        format!("{name:<width$}")
    } else {
        let head: String = name.chars().take(width - 1).collect();
        format!("{head}…")
    }
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// What a bar shows before the engine named the file: the URL's last path segment, decoded,
/// never its query (which may hold a token); the host when the path is empty.
fn short_name(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return "download".into();
    };
    let segment = parsed
        .path_segments()
        .and_then(|mut s| s.rfind(|s| !s.is_empty()))
        .map(|s| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map_or_else(|| s.to_owned(), |(_, v)| v.into_owned())
        });
    let name = segment.or_else(|| parsed.host_str().map(str::to_owned));
    let name = name.unwrap_or_else(|| "download".into());
    // Control characters would move the cursor.
    name.chars().filter(|c| !c.is_control()).collect()
}

/// Start the engine from `builder`, or say (exit code 2) which option keeps it from starting.
fn start(builder: EngineBuilder, dir: &Path) -> Result<Addr<Engine>, u8> {
    builder.download_dir(dir).try_start().map_err(|e| {
        eprintln!("{e}");
        2
    })
}

/// A bar for one transfer, under the others.
fn new_bar(bars: &MultiProgress, name: &str) -> ProgressBar {
    let bar = bars.add(ProgressBar::new_spinner());
    bar.set_style(style(WAITING));
    bar.set_prefix(fit(name, NAME_WIDTH));
    bar.set_message("waiting");
    bar.enable_steady_tick(TICK);
    bar
}

async fn run(args: Args, builder: EngineBuilder, bars: MultiProgress) -> u8 {
    let demo = args.urls.is_empty() && args.journal.is_none();
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
                let mut download = Download::new(u.clone());
                for (name, value) in &args.headers {
                    download = download.header(name.clone(), value.clone());
                }
                let name = match &args.output {
                    Some(name) => {
                        download = download.to(name.clone());
                        name.clone()
                    }
                    None => short_name(u),
                };
                download = download.mirrors(args.mirror.iter().cloned());
                (u.clone(), download, Line::new(name, u.clone()))
            })
            .collect()
    };

    let (all_tx, all_rx) = oneshot::channel();
    let display = Display {
        engine: None,
        json: args.json,
        lines: HashMap::new(),
        pending: HashMap::new(),
        restored: Vec::new(),
        outcomes: HashMap::new(),
        expected: None,
        all_ended: Some(all_tx),
    }
    .start();
    // Subscribed before the start: it sees the `Restored` event of every transfer the journal
    // brings back.
    let builder = builder.subscriber(display.clone().recipient());
    let engine = match start(builder, &dir) {
        Ok(e) => e,
        Err(code) => return code,
    };
    display.send(Started(engine.clone())).await.unwrap();

    let mut ids = Vec::new();
    for (id, state, bytes) in display.send(RestoredIds).await.unwrap() {
        let status = engine.send(Status(id)).await.ok().flatten();
        let url = status.as_ref().map(|s| s.url.clone()).unwrap_or_default();
        let name = status
            .as_ref()
            .and_then(|s| s.path.as_deref().and_then(file_name))
            .unwrap_or_else(|| short_name(&url));
        let mut line = Line::new(name, url);
        line.bytes = bytes;
        line.bar = Some(new_bar(&bars, &line.name));
        display.send(Track(id, line)).await.unwrap();
        if state == TransferState::Paused {
            // Every unfinished transfer continues, paused ones too.
            let _ = engine.send(Resume(id)).await;
        }
        ids.push(id);
    }
    let mut rejected = 0;
    for (url, download, mut line) in jobs {
        let bar = new_bar(&bars, &line.name);
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
                    bars.suspend(|| eprintln!("refused {url}: {error} ({})", error.kind()));
                }
                rejected += 1;
            }
        }
    }
    if ids.is_empty() {
        if let (Some(journal), 0) = (&args.journal, rejected) {
            if !args.json {
                println!("nothing to resume in {}", journal.display());
            }
            engine.send(Shutdown).await.ok();
            return 0;
        }
        return 1;
    }
    display.send(Expect(ids.len())).await.unwrap();

    let interrupted = matches!(
        futures::future::select(all_rx, Box::pin(stop_signal())).await,
        Either::Right(_)
    );
    if interrupted {
        if args.journal.is_some() {
            // Stop resumably: the journal keeps every unfinished transfer, `.part` files
            // stay, and the next run continues them.
            engine.send(Shutdown).await.ok();
        } else {
            // Cancel everything, then wait for every Ended.
            for id in &ids {
                let _ = engine.send(Cancel(*id)).await;
            }
            for id in &ids {
                let _ = engine.send(actix_transfer::Wait(*id)).await;
            }
        }
    } else if args.journal.is_some() {
        // Everything ended: close the journal cleanly.
        engine.send(Shutdown).await.ok();
    }
    let report = display.send(Report).await.unwrap();
    if !args.json {
        bars.clear().ok();
        let dir = if demo && args.dir.is_none() {
            None
        } else {
            Some(dir.as_path())
        };
        summary(&ids, &report, dir, args.journal.as_deref());
    }
    if interrupted {
        return 130;
    }
    let all_as_expected = ids.iter().all(|id| {
        let (outcome, _, expect) = &report[id];
        outcome.as_ref().map(Outcome::end_state) == Some(expect.unwrap_or(EndState::Completed))
    });
    if all_as_expected && rejected == 0 {
        0
    } else {
        1
    }
}

/// What became of each transfer. `dir`: where the files are (`None` for the demo's temp dir,
/// which is gone when this is read).
fn summary(
    ids: &[TransferId],
    report: &HashMap<TransferId, (Option<Outcome>, u64, Option<EndState>)>,
    dir: Option<&Path>,
    journal: Option<&Path>,
) {
    match dir {
        Some(dir) => println!("\nsaved under {}", dir.display()),
        None => println!("\nthe demo's files were in a temporary directory, now removed"),
    }
    for id in ids {
        let (outcome, bytes, _) = &report[id];
        match outcome {
            Some(Outcome::Completed { bytes, output, .. }) => {
                let name = match output {
                    Output::File(path) => file_name(path).unwrap_or_default(),
                    _ => String::new(),
                };
                println!("  #{id} completed, {bytes} bytes: {name}")
            }
            Some(Outcome::Failed {
                error: TransferError::Shutdown,
                ..
            })
            | None
                if journal.is_some() =>
            {
                println!(
                    "  #{id} stopped at {bytes} bytes; continue with --journal {}",
                    journal.unwrap_or(Path::new("")).display()
                )
            }
            Some(Outcome::Failed { error, bytes, .. }) => {
                println!(
                    "  #{id} failed after {bytes} bytes: {error} ({})",
                    error.kind()
                )
            }
            Some(Outcome::Cancelled { bytes, .. }) => {
                println!("  #{id} cancelled after {bytes} bytes")
            }
            _ => println!("  #{id} did not end"),
        }
    }
}

fn rejected_json(url: &str, error: &TransferError) -> String {
    serde_json::json!({ "event": "rejected", "url": url, "error": error }).to_string()
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
        let line = |name: &str, url: &str, expect: EndState, cancel_after: Option<u64>| Line {
            expect: Some(expect),
            cancel_after,
            ..Line::new(name.into(), url.into())
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
                let line = line(path, &url, expect, cancel_after);
                (url, d, line)
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
        web::{deny_private_networks, ControlPanel, WebConfig},
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
        let mut config = WebConfig::with_token(token.clone());
        // Reachable beyond this machine, the token holder would make the server request its
        // own network (server-side request forgery): cloud metadata, admin pages on
        // localhost, the intranet. An address that does not resolve is left to `bind` to
        // report.
        let exposed = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())
            .is_ok_and(|mut a| a.any(|a| !a.ip().is_loopback()));
        if exposed {
            config = config.url_policy(deny_private_networks());
        }
        let panel = ControlPanel::start(engine.clone(), config);
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
        if exposed {
            println!(
                "{addr} is not loopback only: URLs to loopback, private and link-local \
                 addresses are refused (server-side request forgery)"
            );
        }
        println!("downloads go to {}; Ctrl-C stops", dir.display());
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(async move {
            super::stop_signal().await;
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
}
