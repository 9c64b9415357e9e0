//! The load bench: actix-transfer against a bare awc client doing the same work in the same
//! process (and curl, when installed), interleaved round by round, against a loopback server
//! running in a child process (so the client's CPU time is its own).
//!
//! ```text
//! cargo bench --bench load                       # everything, full sizes
//! cargo bench --bench load -- --quick            # small sizes (the CI smoke run)
//! cargo bench --bench load -- --scenario small,cancel --rounds 5 --json out.json
//! ```
//!
//! Scenarios: `file` (one large download to a file), `segments` (one stream vs 4 segments
//! from a server that paces each connection, as distant servers do), `small` (4 KiB fetches
//! into memory at 64 and 256 in flight), `files` (small downloads to files), `upload` (one
//! large upload), `open` (thousands of open slow transfers: memory, then cancel them all; each
//! side in a fresh child process, so that neither inherits the other's heap), `queue`
//! (100,000 downloads waiting for an admission slot: memory each, submit time, cancel them
//! all; also in a child process), `cancel` (cancel latency under load), `rate` (a global
//! bandwidth limit: achieved rate over 5 s).
//!
//! `small` and `cancel` run the engine with one worker thread and inline (`workers(0)`);
//! segmented downloads use two workers, everything else one. `small` feeds the engine two
//! ways: all 10,000 submitted at once for its admission to start 64 (or 256) at a time, and a
//! closed loop (the caller keeps 64 in flight with `Fetch` + `Wait`, as bare awc's
//! `buffer_unordered(64)` does; its latencies compare with bare awc's request times).
//!
//! It prints a table of absolute figures and ratios, with PASS/MISS against the targets
//! (never failing on a miss), and writes the same as JSON (`target/load-bench.json` unless
//! `--json PATH`). Timings are never asserted anywhere.
//!
//! The `file` figures depend on the page cache: right after a large build (or a CI clone) the
//! single-stream writer pays for reclaiming pages and measured 760-930 MB/s instead of
//! 1,470-1,750. For comparable runs start from a clean cache (`sync; echo 3 >
//! /proc/sys/vm/drop_caches` as root); bare awc and curl are barely affected either way.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_transfer::*;
use futures::StreamExt;

// ---------------------------------------------------------------------------------------------
// Options

struct Opts {
    quick: bool,
    rounds: usize,
    scenarios: Vec<String>,
    json: PathBuf,
}

const ALL: [&str; 9] = [
    "file", "segments", "small", "files", "upload", "open", "queue", "cancel", "rate",
];

fn opts() -> Opts {
    let mut o = Opts {
        quick: false,
        rounds: 0,
        scenarios: ALL.iter().map(|s| s.to_string()).collect(),
        json: PathBuf::from("target/load-bench.json"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--rounds" => o.rounds = args.next().and_then(|n| n.parse().ok()).unwrap_or(3),
            "--scenario" => {
                o.scenarios = args
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            }
            "--json" => o.json = args.next().map(PathBuf::from).unwrap_or(o.json),
            _ => {} // cargo bench passes `--bench`; ignore what we do not know
        }
    }
    if o.rounds == 0 {
        o.rounds = if o.quick { 1 } else { 3 };
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The server, in a child process: `load --serve` prints its port and serves until stdin closes.

fn serve() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let block = web::Bytes::from(vec![0x5au8; 64 * 1024]);
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let block = block.clone();
            App::new()
                .app_data(web::PayloadConfig::new(usize::MAX))
                .route("/bytes/{n}", {
                    let block = block.clone();
                    web::get().to(move |req: actix_web::HttpRequest, n: web::Path<u64>| {
                        let block = block.clone();
                        async move { ranged(&req, *n, block, None) }
                    })
                })
                .route(
                    "/paced/{n}",
                    web::get().to(move |req: actix_web::HttpRequest, n: web::Path<u64>| {
                        let block = block.clone();
                        async move { ranged(&req, *n, block, Some(PACE)) }
                    }),
                )
                .route(
                    "/slow/{n}",
                    web::get().to(|n: web::Path<u64>| async move {
                        // 1 KiB every 50 ms: open for a long time, a trickle of bytes.
                        let n = *n;
                        let body = futures::stream::unfold(0u64, move |sent| async move {
                            if sent >= n {
                                return None;
                            }
                            actix_rt::time::sleep(Duration::from_millis(50)).await;
                            let len = (n - sent).min(1024);
                            Some((
                                Ok::<_, std::io::Error>(web::Bytes::from(vec![1u8; len as usize])),
                                sent + len,
                            ))
                        });
                        HttpResponse::Ok().no_chunking(n).streaming(body)
                    }),
                )
                .route(
                    "/upload",
                    web::put().to(|mut body: web::Payload| async move {
                        let mut n = 0usize;
                        while let Some(Ok(c)) = body.next().await {
                            n += c.len();
                        }
                        HttpResponse::Ok().body(n.to_string())
                    }),
                )
        })
        .workers(1)
        // Longer than either client's pool keeps an idle connection: the server never closes
        // one just as a client reuses it (awc reports that race as `Connect(Disconnected)`).
        .keep_alive(std::time::Duration::from_secs(300))
        .backlog(8192)
        .max_connections(100_000)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
        println!("{}", server.addrs()[0].port());
        std::io::stdout().flush().unwrap();
        // Exit when the parent closes our stdin (or dies).
        std::thread::spawn(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            std::process::exit(0);
        });
        let _ = server.run().await;
    });
}

/// Bytes per second of each `/paced` response: what one connection gets from a distant
/// server (its window over its round trip), where segments pay off.
const PACE: f64 = 32.0 * 1024.0 * 1024.0;

/// `total` bytes of 0x5a, honouring `Range: bytes=a-b` (or `a-`, so segments work), with an
/// ETag; `pace`: at most that many bytes per second.
fn ranged(
    req: &actix_web::HttpRequest,
    total: u64,
    block: actix_web::web::Bytes,
    pace: Option<f64>,
) -> actix_web::HttpResponse {
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                total - 1
            } else {
                b.parse().ok()?
            };
            (a <= b && b < total).then_some((a, b))
        });
    let (start, end) = range.unwrap_or((0, total.saturating_sub(1)));
    let len = if total == 0 { 0 } else { end - start + 1 };
    let began = Instant::now();
    let body = futures::stream::unfold(0u64, move |off| {
        let block = block.clone();
        async move {
            if off >= len {
                return None;
            }
            if let Some(rate) = pace {
                let due = began + Duration::from_secs_f64(off as f64 / rate);
                actix_rt::time::sleep_until(due.into()).await;
            }
            let n = (len - off).min(block.len() as u64) as usize;
            Some((Ok::<_, std::io::Error>(block.slice(..n)), off + n as u64))
        }
    });
    let mut resp = match range {
        Some(_) => {
            let mut r = actix_web::HttpResponse::PartialContent();
            r.insert_header(("content-range", format!("bytes {start}-{end}/{total}")));
            r
        }
        None => actix_web::HttpResponse::Ok(),
    };
    resp.insert_header(("etag", "\"bench\""))
        .insert_header(("accept-ranges", "bytes"))
        .no_chunking(len)
        .streaming(body)
}

struct ServerProcess {
    child: Child,
    base: String,
}

impl ServerProcess {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Measurements

/// CPU time of this process (user + system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// One line of the report.
#[derive(Clone)]
struct Row {
    scenario: String,
    metric: String,
    value: f64,
    unit: &'static str,
    /// (against, ratio, target, higher is better)
    ratio: Option<(String, f64, f64, bool)>,
}

#[derive(Default)]
struct Report(Vec<Row>);

impl Report {
    fn add(&mut self, scenario: &str, metric: &str, value: f64, unit: &'static str) {
        self.0.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit,
            ratio: None,
        });
    }

    /// A ratio `ours / theirs` with a target (`higher`: ratio ≥ target passes, else ≤).
    fn ratio(
        &mut self,
        scenario: &str,
        metric: &str,
        against: &str,
        ratio: f64,
        target: f64,
        higher: bool,
    ) {
        self.0.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value: ratio,
            unit: "x",
            ratio: Some((against.into(), ratio, target, higher)),
        });
    }

    /// An absolute figure with a target.
    fn target(
        &mut self,
        scenario: &str,
        metric: &str,
        value: f64,
        unit: &'static str,
        target: f64,
        higher: bool,
    ) {
        self.0.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit,
            ratio: Some(("target".into(), value, target, higher)),
        });
    }

    fn print(&self) {
        let w = self
            .0
            .iter()
            .map(|r| r.metric.len())
            .max()
            .unwrap_or(0)
            .max(46);
        println!(
            "\n{:<8} {:<w$} {:>14} {:<5} target",
            "scenario", "metric", "value", "unit"
        );
        for r in &self.0 {
            let verdict = match &r.ratio {
                Some((_, v, t, higher)) => {
                    let pass = if *higher { v >= t } else { v <= t };
                    format!(
                        "{} {}{}",
                        if pass { "PASS" } else { "MISS" },
                        if *higher { ">=" } else { "<=" },
                        t
                    )
                }
                None => String::new(),
            };
            println!(
                "{:<8} {:<w$} {:>14.3} {:<5} {}",
                r.scenario, r.metric, r.value, r.unit, verdict
            );
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.0
                .iter()
                .map(|r| {
                    let mut o = serde_json::json!({
                        "scenario": r.scenario, "metric": r.metric, "value": r.value, "unit": r.unit,
                    });
                    if let Some((against, _, target, higher)) = &r.ratio {
                        let pass = if *higher { r.value >= *target } else { r.value <= *target };
                        o["against"] = against.clone().into();
                        o["target"] = (*target).into();
                        o["pass"] = pass.into();
                    }
                    o
                })
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Collects Ended events with their arrival time.
#[derive(Clone, Default)]
struct Ends(Arc<Mutex<HashMap<TransferId, (Instant, Outcome)>>>);

struct EndsActor(Ends);
impl Actor for EndsActor {
    type Context = Context<Self>;
}
impl Handler<TransferEvent> for EndsActor {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, _: &mut Context<Self>) {
        if let EventKind::Ended(o) = ev.kind {
            self.0 .0.lock().unwrap().insert(ev.id, (Instant::now(), o));
        }
    }
}

/// Answered once every event queued before it in the recorder's mailbox was handled.
#[derive(Message)]
#[rtype(result = "()")]
struct Drained;

impl Handler<Drained> for EndsActor {
    type Result = ();
    fn handle(&mut self, _: Drained, _: &mut Context<Self>) {}
}

impl Ends {
    async fn wait_for(&self, n: usize, limit: Duration) {
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

async fn engine_with(dir: &Path, max_active: usize) -> (Addr<Engine>, Ends, Addr<EndsActor>) {
    engine_on(1, dir, max_active).await
}

/// An engine with `workers` worker threads (0: inline, on this arbiter) and a subscriber
/// that records every `Ended`.
async fn engine_on(
    workers: usize,
    dir: &Path,
    max_active: usize,
) -> (Addr<Engine>, Ends, Addr<EndsActor>) {
    let engine = Engine::builder()
        .workers(workers)
        .download_dir(dir)
        .max_active(max_active)
        .retry(RetryPolicy::never())
        .progress_interval(Duration::from_millis(250))
        .start();
    let ends = Ends::default();
    let actor = EndsActor(ends.clone()).start();
    engine
        .send(Subscribe::all(actor.clone().recipient()))
        .await
        .unwrap();
    (engine, ends, actor)
}

fn bare_client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .disable_timeout()
        .finish()
}

/// Bare awc: stream to a file with 256 KiB writes on the blocking pool, one in flight.
async fn bare_download(client: &awc::Client, url: &str, path: &Path) -> u64 {
    let mut resp = client.get(url).send().await.expect("bare request");
    let mut file = Some(std::fs::File::create(path).unwrap());
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut n = 0u64;
    let mut pending: Option<actix_rt::task::JoinHandle<std::fs::File>> = None;
    let flush = |buf: Vec<u8>, f: std::fs::File| {
        actix_rt::task::spawn_blocking(move || {
            let mut f = f;
            f.write_all(&buf).unwrap();
            f
        })
    };
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.expect("bare body");
        n += chunk.len() as u64;
        buf.extend_from_slice(&chunk);
        if buf.len() >= 256 * 1024 {
            if let Some(p) = pending.take() {
                file = Some(p.await.unwrap());
            }
            let full = std::mem::replace(&mut buf, Vec::with_capacity(256 * 1024));
            pending = Some(flush(full, file.take().unwrap()));
        }
    }
    if let Some(p) = pending.take() {
        file = Some(p.await.unwrap());
    }
    let f = flush(buf, file.take().unwrap()).await.unwrap();
    f.sync_all().unwrap();
    n
}

fn curl() -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("command -v curl")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Write back every dirty page (untimed), so that a measurement does not pay for the disk
/// work of the one before it.
fn flush_disks() {
    let _ = Command::new("sync").status();
}

/// `curl -o path url`, then fsync the file (GNU `sync FILE`), timed together after an untimed
/// flush of the disks; the file is removed after.
fn curl_synced(curl: &Path, path: &Path, url: &str) -> Option<Duration> {
    flush_disks();
    let t = timed_command(
        Command::new("sh")
            .args(["-c", "\"$0\" -s -o \"$1\" \"$2\" && sync \"$1\""])
            .arg(curl)
            .arg(path)
            .arg(url),
    );
    let _ = std::fs::remove_file(path);
    t
}

fn timed_command(cmd: &mut Command) -> Option<Duration> {
    let start = Instant::now();
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then(|| start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async fn scenario_file(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let size: u64 = if o.quick { 64 << 20 } else { 1 << 30 };
    let url = format!("{base}/bytes/{size}");
    let (engine, _ends, _a) = engine_with(dir, 16).await;
    // Segments spread over workers: this engine gets two.
    let two = Engine::builder().workers(2).download_dir(dir).start();
    let client = bare_client();
    let (mut ours, mut bare, mut curls, mut segmented) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut curls_synced, mut unsynced) = (Vec::new(), Vec::new());
    let download_with = |engine: Addr<Engine>, segments: u32, name: String, fsync: bool| {
        let url = url.clone();
        async move {
            flush_disks();
            let start = Instant::now();
            let d = Download::new(&url)
                .to(name)
                .conflict(Conflict::Overwrite)
                .segments(segments)
                .fsync(fsync);
            let id = engine.send(d).await.unwrap().unwrap();
            let out = engine.send(Wait(id)).await.unwrap().unwrap();
            assert!(out.is_completed(), "{out:?}");
            // Timed before the file is removed (unlinking 1 GiB takes ~0.25 s on ext4), as
            // bare awc's and curl's runs are.
            let rate = size as f64 / start.elapsed().as_secs_f64() / 1e6;
            let _ = std::fs::remove_file(out.path().unwrap());
            rate
        }
    };
    let download = |engine: Addr<Engine>, segments: u32, name: String| {
        download_with(engine, segments, name, true)
    };
    // One untimed download first: right after a build the page cache is full of its files,
    // and whoever writes 1 GiB first pays for evicting them (the engine, in round 0, measured
    // ~480 MB/s there against ~850 in every later run).
    download(engine.clone(), 1, "warm-up".into()).await;
    for round in 0..o.rounds {
        // Whoever writes first after the previous round's files meets the disk's leftover
        // writeback: the engine and bare awc take turns at going first.
        let bare_first = round % 2 == 1;
        let bare_run = || async {
            let path = dir.join(format!("bare-{round}"));
            flush_disks();
            let start = Instant::now();
            assert_eq!(bare_download(&client, &url, &path).await, size);
            let rate = size as f64 / start.elapsed().as_secs_f64() / 1e6;
            let _ = std::fs::remove_file(&path);
            rate
        };
        if bare_first {
            bare.push(bare_run().await);
        }
        ours.push(download(engine.clone(), 1, format!("engine-{round}")).await);
        if !bare_first {
            bare.push(bare_run().await);
        }
        segmented.push(download(two.clone(), 4, format!("segmented-{round}")).await);
        // Without the flush to disk: the same work as `curl -o`.
        unsynced.push(download_with(engine.clone(), 1, format!("unsynced-{round}"), false).await);

        if let Some(curl) = curl() {
            let path = dir.join(format!("curl-{round}"));
            flush_disks();
            if let Some(t) =
                timed_command(Command::new(&curl).args(["-s", "-o"]).arg(&path).arg(&url))
            {
                curls.push(size as f64 / t.as_secs_f64() / 1e6);
            }
            let _ = std::fs::remove_file(&path);
            // The same, then fsync the file: what the engine does before a download is
            // complete, and bare awc here too.
            if let Some(t) = curl_synced(&curl, &path, &url) {
                curls_synced.push(size as f64 / t.as_secs_f64() / 1e6);
            }
        }
    }
    let (ours, bare) = (median(ours), median(bare));
    let label = format!("{} MiB to a file", size >> 20);
    report.add("file", &format!("{label}: actix-transfer"), ours, "MB/s");
    report.add(
        "file",
        &format!("{label}: bare awc, 256 KiB writes"),
        bare,
        "MB/s",
    );
    report.ratio(
        "file",
        "actix-transfer / bare awc",
        "awc",
        ours / bare,
        1.0,
        true,
    );
    let unsynced = median(unsynced);
    report.add(
        "file",
        &format!("{label}: actix-transfer, fsync(false)"),
        unsynced,
        "MB/s",
    );
    let curl_median = (!curls.is_empty()).then(|| median(curls));
    if let Some(c) = curl_median {
        report.add("file", &format!("{label}: curl -o"), c, "MB/s");
        report.ratio(
            "file",
            "fsync(false) / curl -o (no flush)",
            "curl",
            unsynced / c,
            1.2,
            true,
        );
    }
    let seg = median(segmented);
    report.add(
        "file",
        &format!("{label}: 4 segments, 2 workers"),
        seg,
        "MB/s",
    );
    if !curls_synced.is_empty() {
        let c = median(curls_synced);
        report.add(
            "file",
            &format!("{label}: curl -o, then sync FILE"),
            c,
            "MB/s",
        );
        report.ratio(
            "file",
            "actix-transfer / (curl -o + sync)",
            "curl+fsync",
            ours / c,
            1.2,
            true,
        );
        // On raw loopback one stream already takes what the server sends: segments pay off
        // against distant servers (the `segments` scenario). Both sides here flush the file.
        report.ratio(
            "file",
            "segmented / (curl -o + sync), loopback",
            "curl+fsync",
            seg / c,
            1.5,
            true,
        );
    }
    two.send(Shutdown).await.unwrap();
}

/// Segments where they pay off: a server that gives each connection at most `PACE` bytes
/// per second (as a distant one does: its window over its round trip). One stream, curl's and
/// ours, gets about `PACE`; K segments on K connections about K times it.
async fn scenario_segments(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let size: u64 = if o.quick { 16 << 20 } else { 128 << 20 };
    let url = format!("{base}/paced/{size}");
    let engine = Engine::builder()
        .workers(2)
        .download_dir(dir)
        .retry(RetryPolicy::never())
        .start();
    let (mut single, mut segmented, mut curls) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..o.rounds {
        for (k, into) in [(1u32, &mut single), (4, &mut segmented)] {
            flush_disks();
            let start = Instant::now();
            let d = Download::new(&url)
                .to(format!("paced-{k}-{round}"))
                .conflict(Conflict::Overwrite)
                .segments(k);
            let id = engine.send(d).await.unwrap().unwrap();
            let out = engine.send(Wait(id)).await.unwrap().unwrap();
            assert!(out.is_completed(), "{out:?}");
            into.push(size as f64 / start.elapsed().as_secs_f64() / 1e6);
            let _ = std::fs::remove_file(out.path().unwrap());
        }
        if let Some(curl) = curl() {
            let path = dir.join(format!("paced-curl-{round}"));
            if let Some(t) = curl_synced(&curl, &path, &url) {
                curls.push(size as f64 / t.as_secs_f64() / 1e6);
            }
        }
    }
    engine.send(Shutdown).await.unwrap();
    let label = format!(
        "{} MiB, {} MiB/s per connection",
        size >> 20,
        PACE as u64 >> 20
    );
    let (single, segmented) = (median(single), median(segmented));
    report.add("segments", &format!("{label}: one stream"), single, "MB/s");
    report.add(
        "segments",
        &format!("{label}: 4 segments"),
        segmented,
        "MB/s",
    );
    if !curls.is_empty() {
        let c = median(curls);
        report.add("segments", &format!("{label}: curl -o + sync"), c, "MB/s");
        report.ratio(
            "segments",
            "one stream / curl",
            "curl",
            single / c,
            1.0,
            true,
        );
        report.ratio(
            "segments",
            "4 segments / curl",
            "curl",
            segmented / c,
            1.5,
            true,
        );
    }
}

/// The two layouts the small scenario compares with bare awc: one worker thread beside the
/// caller's arbiter, and inline on it (`workers(0)`, like bare awc on its one thread).
const LAYOUTS: [(usize, &str); 2] = [(1, "1 worker"), (0, "inline")];

/// How the small scenario keeps `conc` fetches in flight through the engine.
#[derive(Clone, Copy)]
enum Feed {
    /// All `n` submitted at once (each `send` awaited, as a caller would); the engine's
    /// admission (`max_active(conc)`) starts them as slots free.
    Queued,
    /// The caller keeps `conc` in flight, as bare awc's `buffer_unordered(conc)` does: a
    /// `Fetch` and then a `Wait` for its outcome, the next one when one ends.
    ClosedLoop,
}

const FEEDS: [(Feed, &str); 2] = [
    (Feed::Queued, "all queued"),
    (Feed::ClosedLoop, "closed loop"),
];

/// `n` fetches of `url`, `conc` at a time, until every `Ended` arrived: (transfers/s, client
/// CPU us per transfer, p50 ms, p99 ms from submission to `Ended`).
async fn engine_fetches(
    workers: usize,
    feed: Feed,
    dir: &Path,
    url: &str,
    n: usize,
    conc: usize,
) -> [f64; 4] {
    let (engine, ends, _a) = engine_on(workers, dir, conc).await;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut submitted = HashMap::with_capacity(n);
    match feed {
        Feed::Queued => {
            for _ in 0..n {
                let t = Instant::now();
                let id = engine.send(Fetch::get(url)).await.unwrap().unwrap();
                submitted.insert(id, t);
            }
        }
        Feed::ClosedLoop => {
            let engine = &engine;
            let ids: Vec<(TransferId, Instant)> = futures::stream::iter(0..n)
                .map(|_| async move {
                    let t = Instant::now();
                    let id = engine.send(Fetch::get(url)).await.unwrap().unwrap();
                    let outcome = engine.send(Wait(id)).await.unwrap().expect("a known id");
                    assert!(outcome.is_completed(), "{outcome:?}");
                    (id, t)
                })
                .buffer_unordered(conc)
                .collect()
                .await;
            submitted.extend(ids);
        }
    }
    ends.wait_for(n, Duration::from_secs(300)).await;
    let elapsed = start.elapsed();
    let cpu = (cpu_time() - cpu0).as_secs_f64() * 1e6 / n as f64;
    let mut lat: Vec<Duration> = ends
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(id, (at, o))| {
            assert!(o.is_completed(), "{o:?}");
            *at - submitted[id]
        })
        .collect();
    lat.sort();
    engine.send(Shutdown).await.unwrap();
    [
        n as f64 / elapsed.as_secs_f64(),
        cpu,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    ]
}

async fn scenario_small(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let n: usize = if o.quick { 2_000 } else { 10_000 };
    let url = format!("{base}/bytes/4096");
    for conc in [64usize, 256] {
        // Per (layout, feed): [transfers/s, cpu, p50, p99] of each round.
        let variants: Vec<(usize, Feed, String)> = LAYOUTS
            .iter()
            .flat_map(|(workers, layout)| {
                FEEDS
                    .iter()
                    .map(move |(feed, how)| (*workers, *feed, format!("{layout}, {how}")))
            })
            .collect();
        let mut ours: Vec<Vec<[f64; 4]>> = vec![Vec::new(); variants.len()];
        let (mut bare, mut cpu_bare, mut lat_bare) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..o.rounds {
            for (i, (workers, feed, _)) in variants.iter().enumerate() {
                ours[i].push(engine_fetches(*workers, *feed, dir, &url, n, conc).await);
            }

            let client = bare_client();
            let cpu0 = cpu_time();
            let start = Instant::now();
            let (client, url) = (&client, url.as_str());
            let mut times: Vec<Duration> = futures::stream::iter(0..n)
                .map(|_| async move {
                    let t = Instant::now();
                    let mut r = client.get(url).send().await.expect("bare");
                    assert_eq!(r.body().await.expect("bare body").len(), 4096);
                    t.elapsed()
                })
                .buffer_unordered(conc)
                .collect()
                .await;
            bare.push(n as f64 / start.elapsed().as_secs_f64());
            cpu_bare.push((cpu_time() - cpu0).as_secs_f64() * 1e6 / n as f64);
            times.sort();
            lat_bare.push([
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
            ]);
        }
        let bare = median(bare);
        let s = format!("{n} x 4 KiB @{conc}");
        report.add("small", &format!("{s}: bare awc"), bare, "/s");
        for (k, p) in ["p50", "p99"].iter().enumerate() {
            report.add(
                "small",
                &format!("@{conc} bare awc {p} request time"),
                median(lat_bare.iter().map(|l| l[k]).collect()),
                "ms",
            );
        }
        report.add(
            "small",
            &format!("@{conc} bare awc CPU per transfer"),
            median(cpu_bare),
            "us",
        );
        let curl_rate = curl().and_then(|curl| {
            let list = dir.join("urls.txt");
            let mut f = std::fs::File::create(&list).unwrap();
            for _ in 0..n {
                writeln!(f, "url = \"{url}\"\noutput = \"/dev/null\"").unwrap();
            }
            let conc_s = conc.to_string();
            let t = timed_command(
                Command::new(curl)
                    .args(["-s", "--parallel", "--parallel-max", &conc_s, "-K"])
                    .arg(&list),
            )?;
            Some(n as f64 / t.as_secs_f64())
        });
        if let Some(c) = curl_rate {
            report.add("small", &format!("{s}: curl --parallel"), c, "/s");
        }
        for (i, (_, _, layout)) in variants.iter().enumerate() {
            let col = |k: usize| median(ours[i].iter().map(|r| r[k]).collect());
            let rate = col(0);
            let m = |what: &str| format!("@{conc} {layout}: {what}");
            report.add(
                "small",
                &format!("{s}: actix-transfer, {layout}"),
                rate,
                "/s",
            );
            report.ratio(
                "small",
                &m("transfers/s vs bare awc"),
                "awc",
                rate / bare,
                0.95,
                true,
            );
            if let Some(c) = curl_rate {
                report.ratio(
                    "small",
                    &m("transfers/s vs curl"),
                    "curl",
                    rate / c,
                    2.5,
                    true,
                );
            }
            report.target(
                "small",
                &m("client CPU per transfer"),
                col(1),
                "us",
                30.0,
                false,
            );
            report.add("small", &m("p50 submit->Ended"), col(2), "ms");
            report.add("small", &m("p99 submit->Ended"), col(3), "ms");
        }
    }
}

async fn scenario_files(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let n: usize = if o.quick { 500 } else { 2_000 };
    let url = format!("{base}/bytes/16384");
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let sub = dir.join(format!("files-{round}"));
        std::fs::create_dir_all(&sub).unwrap();
        let (engine, ends, _a) = engine_with(&sub, 256).await;
        let start = Instant::now();
        for i in 0..n {
            engine
                .send(Download::new(&url).to(format!("e{i}")))
                .await
                .unwrap()
                .unwrap();
        }
        ends.wait_for(n, Duration::from_secs(300)).await;
        ours.push(n as f64 / start.elapsed().as_secs_f64());
        engine.send(Shutdown).await.unwrap();

        let client = bare_client();
        let start = Instant::now();
        futures::stream::iter(0..n)
            .map(|i| {
                let (client, url, path) = (client.clone(), url.clone(), sub.join(format!("b{i}")));
                async move { bare_download(&client, &url, &path).await }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
        bare.push(n as f64 / start.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&sub);
    }
    let (ours, bare) = (median(ours), median(bare));
    report.add(
        "files",
        &format!("{n} x 16 KiB to files: actix-transfer"),
        ours,
        "/s",
    );
    report.add(
        "files",
        &format!("{n} x 16 KiB to files: bare awc"),
        bare,
        "/s",
    );
    report.ratio(
        "files",
        "files/s vs bare awc",
        "awc",
        ours / bare,
        0.95,
        true,
    );
}

async fn scenario_upload(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let size: u64 = if o.quick { 16 << 20 } else { 100 << 20 };
    let src = dir.join("upload.bin");
    std::fs::write(&src, vec![0x33u8; size as usize]).unwrap();
    let url = format!("{base}/upload");
    let (engine, _ends, _a) = engine_with(dir, 16).await;
    let client = bare_client();
    let (mut ours, mut bare, mut curls) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        let start = Instant::now();
        let id = engine.send(Upload::new(&url, &src)).await.unwrap().unwrap();
        let out = engine.send(Wait(id)).await.unwrap().unwrap();
        assert_eq!(
            out.body().map(|b| b.to_vec()),
            Some(size.to_string().into_bytes())
        );
        ours.push(size as f64 / start.elapsed().as_secs_f64() / 1e6);

        let start = Instant::now();
        let file = tokio_file_stream(src.clone());
        let mut resp = client
            .put(&url)
            .send_body(awc::body::SizedStream::new(size, file))
            .await
            .expect("bare upload");
        assert_eq!(resp.body().await.unwrap(), size.to_string().as_bytes());
        bare.push(size as f64 / start.elapsed().as_secs_f64() / 1e6);

        if let Some(curl) = curl() {
            if let Some(t) =
                timed_command(Command::new(curl).args(["-s", "-T"]).arg(&src).arg(&url))
            {
                curls.push(size as f64 / t.as_secs_f64() / 1e6);
            }
        }
    }
    let (ours, bare) = (median(ours), median(bare));
    report.add(
        "upload",
        &format!("{} MiB upload: actix-transfer", size >> 20),
        ours,
        "MB/s",
    );
    report.add(
        "upload",
        &format!("{} MiB upload: bare awc", size >> 20),
        bare,
        "MB/s",
    );
    report.ratio(
        "upload",
        "upload vs bare awc",
        "awc",
        ours / bare,
        0.95,
        true,
    );
    if !curls.is_empty() {
        let c = median(curls);
        report.add(
            "upload",
            &format!("{} MiB upload: curl -T", size >> 20),
            c,
            "MB/s",
        );
        report.ratio("upload", "upload vs curl -T", "curl", ours / c, 1.2, true);
    }
    let _ = std::fs::remove_file(&src);
}

/// The bare baseline's file body: 256 KiB reads on the blocking pool.
fn tokio_file_stream(
    path: PathBuf,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::try_unfold(Some(std::fs::File::open(path).unwrap()), |f| async move {
        let Some(mut f) = f else { return Ok(None) };
        let (f, chunk) = actix_rt::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 256 * 1024];
            let n = f.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((f, buf))
        })
        .await
        .unwrap()?;
        if chunk.is_empty() {
            Ok(None)
        } else {
            Ok(Some((bytes::Bytes::from(chunk), Some(f))))
        }
    })
}

/// `open`, one side per fresh process: the RSS a side grows by depends on what the heap held
/// before (freed memory is reused), so neither side may run after the other or after another
/// scenario. The child (`load --open-side awc|engine N URL`) prints one JSON line.
async fn scenario_open(o: &Opts, base: &str, _dir: &Path, report: &mut Report) {
    let n: usize = if o.quick { 500 } else { 5_000 };
    let url = format!("{base}/slow/100000000");
    let side = |which: &str| {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--open-side", which, &n.to_string(), &url])
            .stderr(Stdio::inherit())
            .output()
            .expect("run an open side");
        assert!(out.status.success(), "the {which} side of `open` failed");
        let line = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str::<serde_json::Value>(line.trim()).expect("one JSON line")
    };
    let bare = side("awc");
    let ours = side("engine");
    let bare_per = bare["rss_per"].as_f64().unwrap();
    let ours_per = ours["rss_per"].as_f64().unwrap();
    let cancel_all_ms = ours["cancel_all_ms"].as_f64().unwrap();
    report.add(
        "open",
        &format!("{n} open slow downloads: RSS per transfer"),
        ours_per / 1024.0,
        "KiB",
    );
    report.add(
        "open",
        &format!("{n} open bare awc requests: RSS per request"),
        bare_per / 1024.0,
        "KiB",
    );
    report.target(
        "open",
        "RSS per transfer over bare awc",
        (ours_per - bare_per) / 1000.0,
        "KB",
        8.0,
        false,
    );
    report.target(
        "open",
        &format!("cancel all {n}: until every Ended"),
        cancel_all_ms,
        "ms",
        300.0,
        false,
    );
    report.add(
        "open",
        "RSS after cancelling all",
        ours["rss_after"].as_f64().unwrap() / (1 << 20) as f64,
        "MiB",
    );
}

/// The bare awc side of `open`: `n` open requests, each reading its trickle.
async fn open_bare(n: usize, url: &str) -> serde_json::Value {
    let client = bare_client();
    let before = rss();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..n {
        let (client, url, stop) = (client.clone(), url.to_owned(), Arc::clone(&stop));
        handles.push(actix_rt::spawn(async move {
            let mut r = client.get(&url).send().await.expect("bare slow");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if r.next().await.is_none() {
                    break;
                }
            }
        }));
    }
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let bare_per = (rss().saturating_sub(before)) as f64 / n as f64;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in handles {
        h.abort();
    }
    serde_json::json!({ "rss_per": bare_per })
}

/// The engine side of `open`: `n` slow downloads, RSS once bytes flow, then cancel them all.
async fn open_engine(n: usize, url: &str) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, ends, _a) = engine_with(tmp.path(), n).await;
    let before = rss();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            engine
                .send(Download::new(url).to(format!("slow-{i}")))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // Wait (bounded) until every transfer has bytes flowing.
    let start = Instant::now();
    loop {
        let active = engine
            .send(List(Some(TransferState::Active)))
            .await
            .unwrap();
        if active.iter().filter(|s| s.bytes_transferred > 0).count() == n
            || start.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let ours_per = (rss().saturating_sub(before)) as f64 / n as f64;
    let start = Instant::now();
    let cancels = futures::future::join_all(ids.iter().map(|id| engine.send(Cancel(*id)))).await;
    ends.wait_for(n, Duration::from_secs(120)).await;
    let cancel_all = start.elapsed();
    assert!(
        cancels.iter().all(|r| matches!(r, Ok(Ok(())))),
        "every cancel answered Ok"
    );
    engine.send(Shutdown).await.unwrap();
    serde_json::json!({
        "rss_per": ours_per,
        "cancel_all_ms": cancel_all.as_secs_f64() * 1e3,
        "rss_after": rss() as f64,
    })
}

/// Child entry: `load --open-side awc|engine N URL`.
fn open_side(args: &[String]) {
    let (which, n, url) = (args[0].clone(), args[1].parse().unwrap(), args[2].clone());
    let out = actix_rt::System::new().block_on(async move {
        match which.as_str() {
            "awc" => open_bare(n, &url).await,
            _ => open_engine(n, &url).await,
        }
    });
    println!("{out}");
}

/// `queue`: many transfers waiting for an admission slot (one slot, held by a slow download),
/// in a fresh child process (`load --queue-side N BASE`) for the same reason as `open`.
async fn scenario_queue(o: &Opts, base: &str, _dir: &Path, report: &mut Report) {
    let n: usize = if o.quick { 10_000 } else { 100_000 };
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--queue-side", &n.to_string(), base])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the queue side");
    assert!(out.status.success(), "the queue side failed");
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    report.add(
        "queue",
        &format!("{n} queued downloads: RSS per queued transfer"),
        v["rss_per"].as_f64().unwrap() / 1024.0,
        "KiB",
    );
    report.add(
        "queue",
        "submit, per transfer",
        v["submit_us"].as_f64().unwrap(),
        "us",
    );
    report.add(
        "queue",
        &format!("cancel all {n} queued: until every Ended"),
        v["cancel_all_ms"].as_f64().unwrap(),
        "ms",
    );
}

/// The child side of `queue`: one slow download holds the only slot; `n` downloads queue
/// behind it. RSS per queued transfer once all are queued (and their `Queued` events
/// delivered), then cancel them all.
async fn queue_side(n: usize, base: &str) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, ends, recorder) = engine_with(tmp.path(), 1).await;
    let blocker = engine
        .send(Download::new(format!("{base}/slow/100000000")).to("blocker"))
        .await
        .unwrap()
        .unwrap();
    let url = format!("{base}/bytes/16384");
    let before = rss();
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let d = Download::new(&url).to(format!("q{i}"));
        ids.push(engine.send(d).await.unwrap().unwrap());
    }
    let submit_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let last = engine.send(Status(ids[n - 1])).await.unwrap().unwrap();
    assert_eq!(last.state, TransferState::Queued, "the slot is held");
    // Every `Queued` event went to the recorder's mailbox before its submit was answered:
    // once a message sent now is handled, the recorder has taken them all.
    recorder.send(Drained).await.unwrap();
    let rss_per = rss().saturating_sub(before) as f64 / n as f64;
    let start = Instant::now();
    for chunk in ids.chunks(10_000) {
        let replies = futures::future::join_all(chunk.iter().map(|id| engine.send(Cancel(*id))));
        assert!(
            replies.await.iter().all(|r| matches!(r, Ok(Ok(())))),
            "every queued transfer cancelled"
        );
    }
    ends.wait_for(n, Duration::from_secs(120)).await;
    let cancel_all_ms = start.elapsed().as_secs_f64() * 1e3;
    engine.send(Cancel(blocker)).await.unwrap().unwrap();
    engine.send(Shutdown).await.unwrap();
    serde_json::json!({ "rss_per": rss_per, "submit_us": submit_us, "cancel_all_ms": cancel_all_ms })
}

/// Cancel latency under load, in each layout: `victims` fast fetches cancelled mid-body while
/// 32 fetches at a time run beside them. The sorted latencies, and bytes counted after replies.
async fn cancel_latencies(
    workers: usize,
    base: &str,
    dir: &Path,
    victims: usize,
) -> (Vec<Duration>, u64) {
    let (engine, ends, _a) = engine_on(workers, dir, 10_000).await;
    // Background load: fast fetches all along.
    let load_url = format!("{base}/bytes/65536");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (engine, stop, url) = (engine.clone(), Arc::clone(&stop), load_url.clone());
        actix_rt::spawn(async move {
            let started = Instant::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(120)
            {
                let ids =
                    futures::future::join_all((0..32).map(|_| engine.send(Fetch::get(&url)))).await;
                for id in ids.into_iter().flatten().flatten() {
                    let _ = engine.send(Wait(id)).await;
                }
            }
        })
    };
    // Victims: fast downloads that are cancelled mid-body.
    let url = format!("{base}/bytes/{}", 1u64 << 30);
    let mut lat = Vec::new();
    let mut after = 0u64;
    for i in 0..victims {
        let id = engine
            .send(Fetch::get(&url).max_body(u64::MAX))
            .await
            .unwrap()
            .unwrap();
        let start = Instant::now();
        loop {
            let s = engine.send(Status(id)).await.unwrap().unwrap();
            if s.bytes_transferred > 0 || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            actix_rt::task::yield_now().await;
        }
        let t = Instant::now();
        let reply = engine.send(Cancel(id)).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(reply, Ok(()), "victim {i}");
        // Bytes the transfer counted at its end vs a moment later: any growth is bytes read
        // after the reply.
        let at_reply = engine
            .send(Status(id))
            .await
            .unwrap()
            .unwrap()
            .bytes_transferred;
        actix_rt::time::sleep(Duration::from_millis(2)).await;
        let later = engine
            .send(Status(id))
            .await
            .unwrap()
            .unwrap()
            .bytes_transferred;
        let ended = ends.0.lock().unwrap().get(&id).map(|(_, o)| o.bytes());
        after += later.saturating_sub(at_reply) + ended.map_or(0, |e| e.saturating_sub(at_reply));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    lat.sort();
    engine.send(Shutdown).await.unwrap();
    (lat, after)
}

async fn scenario_cancel(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let victims: usize = if o.quick { 100 } else { 500 };
    for (workers, layout) in LAYOUTS {
        let (lat, after) = cancel_latencies(workers, base, dir, victims).await;
        report.add(
            "cancel",
            &format!("{layout}: {victims} cancels under load: p50 latency"),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            "ms",
        );
        report.target(
            "cancel",
            &format!("{layout}: p99 Cancel -> reply"),
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            "ms",
            1.0,
            false,
        );
        report.target(
            "cancel",
            &format!("{layout}: bytes counted after the reply"),
            after as f64,
            "B",
            0.0,
            false,
        );
    }
}

/// Bandwidth limits: a global limit shared by 4 downloads, then a per-transfer limit changed at
/// run time; achieved rate over the measured window vs the limit.
async fn scenario_rate(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let secs = if o.quick { 2.0 } else { 5.0 };
    let limit: u64 = 4 << 20;
    let (engine, _ends, _a) = engine_with(dir, 16).await;
    engine
        .send(SetLimits {
            max_rate: Some(Some(limit)),
            ..SetLimits::default()
        })
        .await
        .unwrap();
    let url = format!("{base}/bytes/{}", 1u64 << 34);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            engine
                .send(Fetch::get(&url).max_body(u64::MAX))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let total = |engine: Addr<Engine>, ids: Vec<TransferId>| async move {
        let mut sum = 0;
        for id in ids {
            sum += engine
                .send(Status(id))
                .await
                .unwrap()
                .unwrap()
                .bytes_transferred;
        }
        sum
    };
    actix_rt::time::sleep(Duration::from_millis(500)).await; // past the first burst
    let (b0, t0) = (total(engine.clone(), ids.clone()).await, Instant::now());
    actix_rt::time::sleep(Duration::from_secs_f64(secs)).await;
    let rate = (total(engine.clone(), ids.clone()).await - b0) as f64 / t0.elapsed().as_secs_f64();
    for id in &ids {
        let _ = engine.send(Cancel(*id)).await;
    }
    report.target(
        "rate",
        &format!("global limit {} MiB/s, 4 transfers", limit >> 20),
        rate / limit as f64,
        "x",
        0.9,
        true,
    );
    report.target(
        "rate",
        "global limit: not exceeded",
        rate / limit as f64,
        "x",
        1.1,
        false,
    );
    engine.send(Shutdown).await.unwrap();
}

// ---------------------------------------------------------------------------------------------

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        return serve();
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--open-side") {
        return open_side(&args[i + 1..]);
    }
    if let Some(i) = args.iter().position(|a| a == "--queue-side") {
        let (n, base) = (args[i + 1].parse().unwrap(), args[i + 2].clone());
        let out = actix_rt::System::new().block_on(async move { queue_side(n, &base).await });
        println!("{out}");
        return;
    }
    let o = opts();
    let server = ServerProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let mut report = Report::default();
    println!(
        "load bench: {} mode, {} round(s), server {} (child process), client: engine with 1 worker (small, cancel: also inline) vs bare awc on 1 thread",
        if o.quick { "quick" } else { "full" },
        o.rounds,
        server.base
    );
    actix_rt::System::new().block_on(async {
        for s in &o.scenarios {
            flush_disks();
            let started = Instant::now();
            match s.as_str() {
                "file" => scenario_file(&o, &server.base, dir.path(), &mut report).await,
                "segments" => scenario_segments(&o, &server.base, dir.path(), &mut report).await,
                "small" => scenario_small(&o, &server.base, dir.path(), &mut report).await,
                "files" => scenario_files(&o, &server.base, dir.path(), &mut report).await,
                "upload" => scenario_upload(&o, &server.base, dir.path(), &mut report).await,
                "open" => scenario_open(&o, &server.base, dir.path(), &mut report).await,
                "queue" => scenario_queue(&o, &server.base, dir.path(), &mut report).await,
                "cancel" => scenario_cancel(&o, &server.base, dir.path(), &mut report).await,
                "rate" => scenario_rate(&o, &server.base, dir.path(), &mut report).await,
                other => eprintln!("unknown scenario {other:?}; known: {ALL:?}"),
            }
            eprintln!("scenario {s} took {:.1} s", started.elapsed().as_secs_f64());
        }
    });
    report.print();
    if let Some(parent) = o.json.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let json = serde_json::json!({
        "mode": if o.quick { "quick" } else { "full" },
        "rounds": o.rounds,
        "rows": report.json(),
    });
    std::fs::write(&o.json, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("\nwritten to {}", o.json.display());
}
