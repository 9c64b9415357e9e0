//! A closed-loop load test of one URL: keep `C` requests in flight until `N` have ended, then
//! print the rate, the latency percentiles and what came back.
//!
//! ```text
//! cargo run --release --example loadtest -- [--requests N] [--concurrency C] [--workers W] [--json] URL
//! cargo run --release --example loadtest     # against a loopback server of its own
//! ```
//!
//! - `--requests N`: how many requests in all (default 10,000).
//! - `--concurrency C`: how many at a time (default 64).
//! - `--workers W`: the engine's worker threads (default: one per core; `0` runs every transfer
//!   on the main thread, the cheapest per request when one core is enough).
//! - `--json`: the report as one JSON object.
//!
//! The generator is an actor: it submits the first `C` [`Fetch`]es, and from its
//! `Handler<TransferEvent>` submits the next one each time one ends, so exactly `C` are in
//! flight and each latency is from submission to `Ended`. Failed requests are not retried:
//! a load test reports them. Exit code 0 when every request completed with a 2xx status.

use std::{
    collections::{BTreeMap, HashMap},
    process::ExitCode,
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_transfer::{
    Engine, EventKind, Fetch, Outcome, RetryPolicy, Shutdown, Subscribe, TransferError,
    TransferEvent, TransferId,
};
use futures::channel::oneshot;

struct Args {
    requests: usize,
    concurrency: usize,
    workers: Option<usize>,
    json: bool,
    url: Option<String>,
}

const USAGE: &str =
    "usage: loadtest [--requests N] [--concurrency C] [--workers W] [--json] [URL]\n\
                     (no URL: against a loopback server of its own)";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        requests: 10_000,
        concurrency: 64,
        workers: None,
        json: false,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    let number = |it: &mut dyn Iterator<Item = String>, what: &str| -> Result<usize, String> {
        it.next()
            .and_then(|s| s.replace('_', "").parse().ok())
            .ok_or(format!("{what} needs a number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--requests" => args.requests = number(&mut it, "--requests")?,
            "--concurrency" => args.concurrency = number(&mut it, "--concurrency")?.max(1),
            "--workers" => args.workers = Some(number(&mut it, "--workers")?),
            "--json" => args.json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            url if args.url.is_none() => args.url = Some(url.to_owned()),
            _ => return Err(format!("one URL only\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    actix_rt::System::new().block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let (url, server) = match args.url.clone() {
        Some(url) => (url, None),
        None => {
            let (base, handle) = serve_locally();
            (format!("{base}/bytes/4096"), Some(handle))
        }
    };
    let mut builder = Engine::builder()
        .max_active(args.concurrency)
        .retry(RetryPolicy::never())
        // Progress events are not needed here: one a second at most.
        .progress_interval(Duration::from_secs(1));
    if let Some(w) = args.workers {
        builder = builder.workers(w);
    }
    let engine = builder.start();

    let (done_tx, done_rx) = oneshot::channel();
    let load = Load {
        engine: engine.clone(),
        url: url.clone(),
        to_submit: args.requests,
        ended: 0,
        requests: args.requests,
        started: Instant::now(),
        in_flight: HashMap::new(),
        ended_early: HashMap::new(),
        stats: Stats::default(),
        done: Some(done_tx),
    }
    .start();
    engine
        .send(Subscribe::all(load.clone().recipient()))
        .await
        .expect("the engine runs");
    load.do_send(Begin(args.concurrency));
    let stats = match done_rx.await {
        Ok(stats) => stats,
        Err(_) => {
            eprintln!("the load generator stopped early");
            return ExitCode::FAILURE;
        }
    };
    let _ = engine.send(Shutdown).await;
    if let Some(server) = server {
        server.stop(false).await;
    }
    let all_2xx = stats.completed_2xx() == args.requests;
    stats.print(&url, args.concurrency, args.json);
    if all_2xx {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the requests came back with.
#[derive(Default)]
struct Stats {
    elapsed: Duration,
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
    /// Failures by error kind, with the first error of each kind.
    errors: BTreeMap<&'static str, (usize, String)>,
    /// Requests the engine refused at submission (an invalid URL refuses them all), and why.
    rejected: usize,
    rejection: Option<String>,
    bytes: u64,
}

impl Stats {
    fn record(&mut self, latency: Duration, outcome: &Outcome) {
        self.latencies.push(latency);
        match outcome {
            Outcome::Completed { status, bytes, .. } => {
                *self.statuses.entry(*status).or_default() += 1;
                self.bytes += bytes;
            }
            Outcome::Failed { error, .. } => self.error(error),
            // Nothing here cancels; counted as an error all the same.
            _ => self.errors.entry("cancelled").or_default().0 += 1,
        }
    }

    fn error(&mut self, error: &TransferError) {
        let e = self
            .errors
            .entry(error.kind().as_str())
            .or_insert_with(|| (0, error.to_string()));
        e.0 += 1;
    }

    fn completed(&self) -> usize {
        self.statuses.values().sum()
    }

    fn completed_2xx(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        // `latencies` is sorted by `print`.
        let n = self.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.latencies[i].as_secs_f64() * 1e3
    }

    fn print(mut self, url: &str, concurrency: usize, json: bool) {
        self.latencies.sort();
        let ended = self.latencies.len();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let (completed, failed) = (self.completed(), ended - self.completed());
        let rate = ended as f64 / secs;
        if json {
            let errors: BTreeMap<&str, serde_json::Value> = self
                .errors
                .iter()
                .map(|(k, (n, first))| (*k, serde_json::json!({ "count": n, "first": first })))
                .collect();
            let report = serde_json::json!({
                "url": url,
                "concurrency": concurrency,
                "completed": completed,
                "failed": failed,
                "rejected": self.rejected,
                "rejection": self.rejection,
                "seconds": secs,
                "requests_per_sec": rate,
                "body_bytes_per_sec": self.bytes as f64 / secs,
                "latency_ms": {
                    "p50": self.percentile_ms(0.5),
                    "p90": self.percentile_ms(0.9),
                    "p99": self.percentile_ms(0.99),
                    "max": self.percentile_ms(1.0),
                },
                "statuses": self.statuses,
                "errors": errors,
            });
            println!("{report}");
            return;
        }
        println!(
            "{} requests to {url}, {concurrency} at a time, in {secs:.2} s",
            ended + self.rejected
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{n} x {s}"))
            .collect();
        let statuses = if statuses.is_empty() {
            String::new()
        } else {
            format!(" ({})", statuses.join(", "))
        };
        println!("  completed {completed}{statuses}, failed {failed}");
        for (kind, (count, first)) in &self.errors {
            println!("    {count} x {kind}, the first: {first}");
        }
        if let Some(why) = &self.rejection {
            println!("  refused before sending: {} ({why})", self.rejected);
        }
        if ended == 0 {
            return;
        }
        println!(
            "  {rate:.0} requests/s, {:.1} MB/s of bodies",
            self.bytes as f64 / secs / 1e6
        );
        println!(
            "  latency, submitted to ended: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.percentile_ms(0.5),
            self.percentile_ms(0.9),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0)
        );
    }
}

/// The load generator: keeps its share of requests in flight, one more for each that ends.
struct Load {
    engine: Addr<Engine>,
    url: String,
    /// Requests not submitted yet.
    to_submit: usize,
    /// Requests that ended (or were refused at submission).
    ended: usize,
    requests: usize,
    started: Instant,
    in_flight: HashMap<TransferId, Instant>,
    /// `Ended` events that arrived before the answer to their submission (the two travel on
    /// different channels), with their arrival time.
    ended_early: HashMap<TransferId, (Instant, Outcome)>,
    stats: Stats,
    done: Option<oneshot::Sender<Stats>>,
}

impl Actor for Load {
    type Context = Context<Self>;
}

/// Start: submit this many requests at once.
#[derive(Message)]
#[rtype(result = "()")]
struct Begin(usize);

impl Handler<Begin> for Load {
    type Result = ();
    fn handle(&mut self, Begin(n): Begin, ctx: &mut Context<Self>) {
        self.started = Instant::now();
        for _ in 0..n {
            self.submit(ctx);
        }
        self.check_done();
    }
}

impl Handler<TransferEvent> for Load {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, ctx: &mut Context<Self>) {
        let EventKind::Ended(outcome) = ev.kind else {
            return;
        };
        let now = Instant::now();
        match self.in_flight.remove(&ev.id) {
            Some(submitted) => self.ended(now - submitted, &outcome, ctx),
            None => {
                self.ended_early.insert(ev.id, (now, outcome));
            }
        }
    }
}

impl Load {
    fn submit(&mut self, ctx: &mut Context<Self>) {
        if self.to_submit == 0 {
            return;
        }
        self.to_submit -= 1;
        let submitted = Instant::now();
        self.engine
            .send(Fetch::get(&self.url))
            .into_actor(self)
            .map(move |answer, act, ctx| match answer {
                Ok(Ok(id)) => match act.ended_early.remove(&id) {
                    Some((at, outcome)) => act.ended(at - submitted, &outcome, ctx),
                    None => {
                        act.in_flight.insert(id, submitted);
                    }
                },
                Ok(Err(error)) => {
                    // Refused before any I/O (an invalid URL): every other request would be too.
                    act.stats.rejected += 1 + act.to_submit;
                    act.stats.rejection.get_or_insert_with(|| error.to_string());
                    act.ended += 1 + act.to_submit;
                    act.to_submit = 0;
                    act.check_done();
                }
                Err(_) => ctx.stop(),
            })
            .spawn(ctx);
    }

    fn ended(&mut self, latency: Duration, outcome: &Outcome, ctx: &mut Context<Self>) {
        self.stats.record(latency, outcome);
        self.ended += 1;
        self.submit(ctx);
        self.check_done();
    }

    fn check_done(&mut self) {
        if self.ended >= self.requests {
            if let Some(tx) = self.done.take() {
                let mut stats = std::mem::take(&mut self.stats);
                stats.elapsed = self.started.elapsed();
                let _ = tx.send(stats);
            }
        }
    }
}

/// A loopback server for the demo: `GET /bytes/{n}` answers `n` bytes.
fn serve_locally() -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let server = HttpServer::new(|| {
        App::new().route(
            "/bytes/{n}",
            web::get().to(|n: web::Path<usize>| async move {
                HttpResponse::Ok().body(vec![0x5a; (*n).min(64 << 20)])
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind 127.0.0.1");
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (base, handle)
}
