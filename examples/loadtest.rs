//! A load generator for HTTP services, built on the engine: closed loop (keep `C` requests in
//! flight) or open loop (start requests on a fixed schedule), with latency percentiles from an
//! HDR histogram, the statuses that came back, transport errors by kind, and a live line a
//! second.
//!
//! ```text
//! cargo run --release --example loadtest -- [OPTIONS] [URL]...
//! cargo run --release --example loadtest                     # against a loopback server of its own
//! cargo run --release --example loadtest -- -c 64 -z 10s http://127.0.0.1:8080/
//! cargo run --release --example loadtest -- -q 2000 -z 30s http://127.0.0.1:8080/
//! cargo run --release --example loadtest -- -m POST -H 'content-type: application/json' \
//!     -d '{"q": 1}' -n 5000 http://127.0.0.1:8080/api
//! cargo run --release --example loadtest -- --url-file urls.txt -z 1m
//! ```
//!
//! Options (`--help` lists them too):
//! - `URL...`: the URLs, taken in turn (round robin). No URL and no `--url-file`: a loopback
//!   server of the generator's own, `GET /bytes/4096`.
//! - `--url-file FILE`: a weighted list, one `WEIGHT URL` a line (a line with a URL alone has
//!   weight 1; blank lines and lines starting with `#` are skipped). URLs are interleaved in
//!   proportion to their weights (smooth weighted round robin, so `3 /a` and `1 /b` go
//!   `a a b a`, not `a a a b`). Weights live in a file because a URL may hold any character
//!   (`URL@weight` would clash with `http://user@host/`).
//! - `-n, --requests N`: requests in all. Default 10,000 unless `-z` is given.
//! - `-z, --duration D`: stop after `D` (`500ms`, `10s`, `1m`, `1h`, `1m30s`, or plain seconds).
//!   Given both `-n` and `-z`, the run stops at whichever comes first. At the end of the
//!   duration, requests still in flight are abandoned and reported as unfinished (like wrk);
//!   they count neither as responses nor as errors.
//! - `-c, --concurrency C`: requests in flight at most (default 64). The report gives
//!   `min(C, N)`.
//! - `-q, --rate R`: open loop. Request `i` is scheduled at `i / R` seconds after the start
//!   (`R` per second overall), whatever the server does, and its latency is measured from that
//!   scheduled time, not from when it could be sent: a server that stalls for a second shows
//!   the stall in every request that was due during it (the coordinated-omission correction of
//!   wrk2 and oha's `--latency-correction`). `C` still caps requests in flight; a request due
//!   while every slot is busy waits for one, its latency counted from its scheduled time.
//!   Without `-q` the loop is closed: each latency is from submission to the end.
//! - `-m, --method M`: the method (default `GET`, or `POST` when a body is given).
//! - `-H, --header 'Name: value'`: a request header; repeat for more.
//! - `-d, --body STRING` / `--body-file FILE`: the request body (sent with `Content-Length`; add
//!   a `content-type` header yourself).
//! - `--workers W`: the engine's worker threads. Default 0: every request runs on the main
//!   thread, beside the generator, which is the cheapest per request (nothing crosses a thread);
//!   give more when one core cannot keep up with the traffic.
//! - `--json`: the report as one JSON object on stdout, with a per-second series (responses,
//!   errors and p99 latency of each second).
//!
//! What is counted: a request that got a response counts as a response with its status,
//! whatever the status (a 404 is a status, not an error; the engine is asked to accept any
//! status). A request that got no response counts as a transport error, by kind (`connect`,
//! `timeout`, `network`, ...). Latency percentiles (p50, p90, p99, p99.9, p99.99, max) are of
//! the responses, in an HDR histogram (3 significant digits, memory bounded for any run
//! length). Responses per second and attempts per second are reported apart, so a refused
//! connection never looks like a fast server. Once a second a line goes to stderr with that
//! second's responses, errors and p99 latency.
//!
//! Exit code: 0 when every request ended with a response and at least one of them was a 2xx;
//! 1 when a transport error happened or no response was a 2xx (the report says which); 2 for
//! bad options, or a request the engine refuses before sending it (an invalid URL or header);
//! 130 on Ctrl-C, after printing the report so far.
//!
//! The generator is an actor subscribed to the engine's events: it submits [`Fetch`]es, and
//! from its `Handler<TransferEvent>` takes note of each `Ended` and starts the next request.
//! Failed requests are not retried: a load test reports them.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    net::SocketAddr,
    ops::Range,
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_transfer::{
    Engine, EventKind, EventKinds, Fetch, Outcome, RetryPolicy, Shutdown, Subscribe, TransferError,
    TransferEvent, TransferId,
};
use bytes::Bytes;
use clap::{CommandFactory, Parser};
use futures::channel::oneshot;
use hdrhistogram::Histogram;

/// The command line, as clap reads it.
#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    about = "Load-test HTTP services: closed loop (-c) or open loop on a schedule (-q), \
             with HDR latency percentiles, statuses and transport errors.",
    after_help = "With no URL and no --url-file, runs against a loopback server of its own.\n\
                  Exit code: 0 when every request got a response and at least one was a 2xx; \
                  1 on a transport error or when no response was a 2xx; 2 on bad options; \
                  130 on Ctrl-C."
)]
struct Args {
    /// URLs, taken in turn (round robin).
    #[arg(value_name = "URL")]
    urls: Vec<String>,

    /// A weighted list of URLs: one `WEIGHT URL` a line (weight 1 when omitted; `#` comments).
    #[arg(long, value_name = "FILE", conflicts_with = "urls")]
    url_file: Option<PathBuf>,

    /// Requests in all [default: 10000 unless -z is given].
    #[arg(short = 'n', long, value_name = "N", value_parser = parse_count)]
    requests: Option<u64>,

    /// Requests in flight at most.
    #[arg(short, long, value_name = "C", default_value = "64", value_parser = parse_count)]
    concurrency: u64,

    /// Stop after this long (500ms, 10s, 1m, 1m30s); with -n, whichever comes first.
    #[arg(short = 'z', long, value_name = "D", value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Open loop: start R requests a second on a fixed schedule; latency from each scheduled time.
    #[arg(short = 'q', long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,

    /// The request method [default: GET, or POST with a body].
    #[arg(short, long, value_name = "M")]
    method: Option<String>,

    /// A request header, `Name: value`; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header)]
    headers: Vec<(String, String)>,

    /// The request body.
    #[arg(short = 'd', long, value_name = "STRING", conflicts_with = "body_file")]
    body: Option<String>,

    /// The request body, read from a file.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,

    /// The engine's worker threads (0: every request on the main thread, the cheapest).
    #[arg(long, value_name = "W", default_value = "0")]
    workers: usize,

    /// Print the report as one JSON object (with a per-second series).
    #[arg(long)]
    json: bool,

    /// Only run the built-in loopback server on ADDR until Ctrl-C (for comparisons).
    #[arg(long, value_name = "ADDR", hide = true, conflicts_with_all = ["urls", "url_file"])]
    serve: Option<SocketAddr>,
}

/// A URL and its share of the requests.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    url: String,
    weight: u32,
}

/// What to run, checked.
#[derive(Debug, Clone)]
struct Plan {
    /// Empty: the built-in loopback server.
    targets: Vec<Target>,
    method: String,
    headers: Vec<(String, String)>,
    body: Option<Bytes>,
    /// Requests in all (`None`: until the deadline).
    limit: Option<u64>,
    duration: Option<Duration>,
    concurrency: u64,
    rate: Option<f64>,
    workers: usize,
    json: bool,
    /// Print the line a second on stderr.
    live: bool,
}

const DEFAULT_REQUESTS: u64 = 10_000;

impl Plan {
    fn from_args(args: Args) -> Result<Plan, String> {
        let targets = match &args.url_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the URL file {}: {e}", path.display()))?;
                parse_url_file(&text)
                    .map_err(|e| format!("in the URL file {}: {e}", path.display()))?
            }
            None => args
                .urls
                .iter()
                .map(|url| Target {
                    url: url.clone(),
                    weight: 1,
                })
                .collect(),
        };
        let body = match (&args.body, &args.body_file) {
            (Some(s), _) => Some(Bytes::from(s.clone())),
            (None, Some(path)) => {
                Some(Bytes::from(std::fs::read(path).map_err(|e| {
                    format!("cannot read the body file {}: {e}", path.display())
                })?))
            }
            (None, None) => None,
        };
        let method = args
            .method
            .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
        let limit = match (args.requests, args.duration) {
            (None, None) => Some(DEFAULT_REQUESTS),
            (n, _) => n,
        };
        Ok(Plan {
            targets,
            method,
            headers: args.headers,
            body,
            limit,
            duration: args.duration,
            concurrency: args.concurrency,
            rate: args.rate,
            workers: args.workers,
            json: args.json,
            live: true,
        })
    }

    /// The concurrency a run can reach: no more than its requests.
    fn effective_concurrency(&self) -> u64 {
        self.concurrency.min(self.limit.unwrap_or(u64::MAX))
    }
}

fn parse_count(s: &str) -> Result<u64, String> {
    let n: u64 = s
        .replace('_', "")
        .parse()
        .map_err(|_| format!("expected a whole number, got {s:?}"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .replace('_', "")
        .parse()
        .map_err(|_| format!("expected requests per second, got {s:?}"))?;
    if !(r.is_finite() && r > 0.0 && r <= 1e9) {
        return Err("must be more than 0 and at most 1e9 requests per second".into());
    }
    Ok(r)
}

/// `500ms`, `10s`, `1.5s`, `2m`, `1h`, `1m30s`, or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 500ms, 10s, 1m or 1m30s, got {s:?}");
    let s = s.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return positive(secs, s);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    positive(total, s)
}

fn positive(secs: f64, s: &str) -> Result<Duration, String> {
    if !(secs.is_finite() && secs > 0.0) || secs > 1e9 {
        return Err(format!("the duration must be more than zero, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `Name: value`.
fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected 'Name: value', got {s:?}")),
    }
}

/// Lines of `WEIGHT URL` or `URL`; blank lines and `#` comments skipped.
fn parse_url_file(text: &str) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (first, second) = (words.next(), words.next());
        let target = match (first, second, words.next()) {
            (Some(url), None, _) => Target {
                url: url.to_owned(),
                weight: 1,
            },
            (Some(weight), Some(url), None) => match weight.parse::<u32>() {
                Ok(w) if w > 0 => Target {
                    url: url.to_owned(),
                    weight: w,
                },
                _ => {
                    return Err(format!(
                        "line {}: the weight must be a whole number from 1, got {weight:?}",
                        i + 1
                    ))
                }
            },
            _ => return Err(format!("line {}: expected 'WEIGHT URL' or 'URL'", i + 1)),
        };
        targets.push(target);
    }
    if targets.is_empty() {
        return Err("no URL in it".into());
    }
    Ok(targets)
}

/// Smooth weighted round robin (as nginx balances upstreams): each pick adds every weight to
/// its target's credit and takes the target with the most, which then pays the total. Over
/// each cycle of `sum(weights)` picks, every target is picked exactly `weight` times, spread
/// out; with equal weights it is plain round robin.
#[derive(Debug)]
struct Picker {
    weights: Vec<i64>,
    credit: Vec<i64>,
    total: i64,
}

impl Picker {
    fn new(weights: impl IntoIterator<Item = u32>) -> Picker {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        Picker {
            credit: vec![0; weights.len()],
            total: weights.iter().sum(),
            weights,
        }
    }

    fn next(&mut self) -> usize {
        if self.weights.len() == 1 {
            return 0;
        }
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.credit[i] += self.weights[i];
            if self.credit[i] > self.credit[best] {
                best = i;
            }
        }
        self.credit[best] -= self.total;
        best
    }
}

/// When requests start: the decisions of both loops, apart from the actor that carries them
/// out (so the schedule's arithmetic is tested without a socket).
#[derive(Debug)]
struct Starter {
    /// Open loop: nanoseconds between two scheduled starts. `None`: closed loop.
    period_ns: Option<u64>,
    /// Requests in all (`u64::MAX`: until the deadline).
    limit: u64,
    /// Requests started so far (the index of the next one).
    started: u64,
    /// Open loop: requests whose scheduled time has come (started or waiting for a slot).
    due: u64,
}

impl Starter {
    fn new(rate: Option<f64>, limit: Option<u64>) -> Starter {
        Starter {
            period_ns: rate.map(|r| ((1e9 / r).round() as u64).max(1)),
            limit: limit.unwrap_or(u64::MAX),
            started: 0,
            due: 0,
        }
    }

    /// The scheduled start of request `i`, from the start of the run (open loop).
    fn scheduled(&self, i: u64) -> Option<Duration> {
        self.period_ns
            .map(|p| Duration::from_nanos(i.saturating_mul(p)))
    }

    /// The requests to start now, `elapsed` into the run with `free` slots: all of them in a
    /// closed loop; in an open loop, those whose time has come, oldest first.
    fn take(&mut self, elapsed: Duration, free: u64) -> Range<u64> {
        let first = self.started;
        let until = match self.period_ns {
            None => self.limit,
            Some(p) => {
                let due = (elapsed.as_nanos() / u128::from(p)).saturating_add(1);
                self.due = u64::try_from(due).unwrap_or(u64::MAX).min(self.limit);
                self.due
            }
        };
        self.started = until.min(first.saturating_add(free));
        first..self.started
    }

    /// When the next request falls due (open loop, and while any is left to schedule).
    fn next_due(&self) -> Option<Duration> {
        if self.due >= self.limit {
            return None;
        }
        self.scheduled(self.due)
    }

    /// Requests due under the schedule that have not started (every slot was busy).
    fn waiting(&self) -> u64 {
        self.due.saturating_sub(self.started)
    }

    fn all_started(&self) -> bool {
        self.started >= self.limit
    }
}

/// Latencies in microseconds, from 1 µs to an hour (longer ones count as an hour).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// What came back, over the whole run and in the current second.
struct Stats {
    latency: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    /// Transport errors by kind, with the first error of each kind.
    errors: BTreeMap<&'static str, (u64, String)>,
    bytes: u64,
    second: Second,
    series: Vec<SecondRow>,
}

/// The running second.
struct Second {
    latency: Histogram<u64>,
    responses: u64,
    errors: u64,
}

/// One second of the run, as reported.
#[derive(Debug, Clone, PartialEq)]
struct SecondRow {
    /// The end of the interval, in seconds from the start.
    at: f64,
    responses: u64,
    errors: u64,
    p99_ms: Option<f64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            latency: histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            bytes: 0,
            second: Second {
                latency: histogram(),
                responses: 0,
                errors: 0,
            },
            series: Vec::new(),
        }
    }

    fn record(&mut self, latency: Duration, outcome: &Outcome) {
        match outcome {
            Outcome::Completed { status, bytes, .. } => {
                let us = micros(latency);
                self.latency.saturating_record(us);
                self.second.latency.saturating_record(us);
                self.second.responses += 1;
                *self.statuses.entry(*status).or_default() += 1;
                self.bytes += bytes;
            }
            Outcome::Failed { error, .. } => self.error(error),
            // Nothing here cancels; counted all the same.
            Outcome::Cancelled { .. } => {
                self.second.errors += 1;
                self.errors.entry("cancelled").or_default().0 += 1;
            }
            _ => self.second.errors += 1,
        }
    }

    fn error(&mut self, error: &TransferError) {
        self.second.errors += 1;
        let e = self
            .errors
            .entry(error.kind().as_str())
            .or_insert_with(|| (0, error.to_string()));
        e.0 += 1;
    }

    fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    fn responses_2xx(&self) -> u64 {
        self.statuses.range(200..300).map(|(_, n)| n).sum()
    }

    /// Close the running second at `at` seconds from the start.
    fn close_second(&mut self, at: f64) -> SecondRow {
        let s = &mut self.second;
        let row = SecondRow {
            at,
            responses: s.responses,
            errors: s.errors,
            p99_ms: (s.responses > 0).then(|| s.latency.value_at_quantile(0.99) as f64 / 1e3),
        };
        s.latency.reset();
        s.responses = 0;
        s.errors = 0;
        self.series.push(row.clone());
        row
    }
}

/// Why the run stopped.
#[derive(Debug, Clone, PartialEq)]
enum Stop {
    /// Every request ended.
    Done,
    /// `--duration` passed.
    Deadline,
    /// Ctrl-C.
    Interrupted,
    /// The engine refused a request before sending it (an invalid URL or header).
    Refused(String),
    /// The engine went away.
    EngineGone,
}

/// A finished run.
struct Report {
    stop: Stop,
    elapsed: Duration,
    stats: Stats,
    /// Requests in flight when the run stopped (abandoned).
    unfinished: u64,
    /// Requests due under the schedule that never got a slot before the run stopped.
    not_started: u64,
}

impl Report {
    fn responses_per_sec(&self) -> f64 {
        self.stats.responses() as f64 / self.secs()
    }

    fn attempts_per_sec(&self) -> f64 {
        (self.stats.responses() + self.stats.error_count()) as f64 / self.secs()
    }

    fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Why the run did not succeed, if it did not.
    fn verdict(&self) -> Option<String> {
        match &self.stop {
            Stop::Refused(why) => return Some(format!("the engine refused a request: {why}")),
            Stop::EngineGone => return Some("the engine stopped during the run".into()),
            _ => {}
        }
        let (responses, errors) = (self.stats.responses(), self.stats.error_count());
        if responses == 0 && errors == 0 {
            Some("no request ended: nothing succeeded".into())
        } else if responses == 0 {
            Some("no response at all: every request that ended failed".into())
        } else if self.stats.responses_2xx() == 0 {
            Some("no request succeeded: not one response was a 2xx".into())
        } else if errors > 0 {
            Some(format!("{errors} request(s) got no response"))
        } else {
            None
        }
    }

    fn exit_code(&self) -> u8 {
        match self.stop {
            Stop::Interrupted => 130,
            Stop::Refused(_) => 2,
            _ if self.verdict().is_some() => 1,
            _ => 0,
        }
    }

    fn latency_ms(&self, q: f64) -> f64 {
        self.stats.latency.value_at_quantile(q) as f64 / 1e3
    }

    fn print(&self, plan: &Plan, targets: &[Target]) {
        if plan.json {
            println!("{}", self.json(plan, targets));
        } else {
            print!("{}", self.text(plan, targets));
        }
    }

    fn text(&self, plan: &Plan, targets: &[Target]) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let stats = &self.stats;
        let (responses, errors) = (stats.responses(), stats.error_count());
        let what = match targets {
            [one] => one.url.clone(),
            many => format!("{} URLs", many.len()),
        };
        let pace = match plan.rate {
            Some(r) => format!(
                "{} a second on a schedule, at most {} in flight",
                num(r),
                plan.effective_concurrency()
            ),
            None => format!("{} at a time", plan.effective_concurrency()),
        };
        let stopped = match &self.stop {
            Stop::Done => String::new(),
            Stop::Deadline => ", stopped at the deadline".into(),
            Stop::Interrupted => ", interrupted".into(),
            Stop::Refused(_) | Stop::EngineGone => ", aborted".into(),
        };
        let _ = writeln!(
            out,
            "{} {} to {what}, {pace}, in {:.3} s{stopped}",
            thousands(responses + errors),
            if responses + errors == 1 {
                "request"
            } else {
                "requests"
            },
            self.secs()
        );
        if targets.len() > 1 {
            for t in targets {
                let _ = writeln!(out, "  weight {}: {}", t.weight, t.url);
            }
        }
        let statuses: Vec<String> = stats
            .statuses
            .iter()
            .map(|(s, n)| format!("{} x {s}", thousands(*n)))
            .collect();
        let statuses = if statuses.is_empty() {
            String::new()
        } else {
            format!(" ({})", statuses.join(", "))
        };
        let _ = writeln!(
            out,
            "  responses: {}{statuses}; transport errors: {}",
            thousands(responses),
            thousands(errors)
        );
        for (kind, (count, first)) in &stats.errors {
            let _ = writeln!(
                out,
                "    {} x {kind}, the first: {first}",
                thousands(*count)
            );
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                out,
                "  unfinished when the run stopped: {}",
                thousands(self.unfinished)
            );
        }
        if self.not_started > 0 {
            let _ = writeln!(
                out,
                "  due under the schedule but never started (no free slot): {}",
                thousands(self.not_started)
            );
        }
        let _ = writeln!(
            out,
            "  {} responses/s ({} attempts/s), {:.1} MB/s of response bodies",
            num(self.responses_per_sec()),
            num(self.attempts_per_sec()),
            stats.bytes as f64 / self.secs() / 1e6
        );
        if responses > 0 {
            let from = if plan.rate.is_some() {
                "from the scheduled start"
            } else {
                "from submission"
            };
            let _ = writeln!(
                out,
                "  latency {from}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, p99.99 {:.2} ms, max {:.2} ms",
                self.latency_ms(0.5),
                self.latency_ms(0.9),
                self.latency_ms(0.99),
                self.latency_ms(0.999),
                self.latency_ms(0.9999),
                stats.latency.max() as f64 / 1e3
            );
        }
        if let Some(why) = self.verdict() {
            let _ = writeln!(out, "  {why}");
        }
        out
    }

    fn json(&self, plan: &Plan, targets: &[Target]) -> serde_json::Value {
        let stats = &self.stats;
        let errors: BTreeMap<&str, serde_json::Value> = stats
            .errors
            .iter()
            .map(|(k, (n, first))| (*k, serde_json::json!({ "count": n, "first": first })))
            .collect();
        let latency = (stats.responses() > 0).then(|| {
            serde_json::json!({
                "from": if plan.rate.is_some() { "schedule" } else { "submission" },
                "p50": self.latency_ms(0.5),
                "p90": self.latency_ms(0.9),
                "p99": self.latency_ms(0.99),
                "p99.9": self.latency_ms(0.999),
                "p99.99": self.latency_ms(0.9999),
                "max": stats.latency.max() as f64 / 1e3,
                "mean": stats.latency.mean() / 1e3,
            })
        });
        let series: Vec<serde_json::Value> = stats
            .series
            .iter()
            .map(|r| {
                serde_json::json!({
                    "at_s": r.at, "responses": r.responses, "errors": r.errors, "p99_ms": r.p99_ms,
                })
            })
            .collect();
        let stop = match &self.stop {
            Stop::Done => "done",
            Stop::Deadline => "deadline",
            Stop::Interrupted => "interrupted",
            Stop::Refused(_) => "refused",
            Stop::EngineGone => "engine_gone",
        };
        serde_json::json!({
            "urls": targets.iter().map(|t| serde_json::json!({ "url": t.url, "weight": t.weight })).collect::<Vec<_>>(),
            "method": plan.method,
            "concurrency": plan.effective_concurrency(),
            "rate": plan.rate,
            "requests_limit": plan.limit,
            "duration_s": plan.duration.map(|d| d.as_secs_f64()),
            "stopped": stop,
            "seconds": self.secs(),
            "responses": stats.responses(),
            "errors": stats.error_count(),
            "unfinished": self.unfinished,
            "not_started": self.not_started,
            "responses_per_sec": self.responses_per_sec(),
            "attempts_per_sec": self.attempts_per_sec(),
            "body_bytes": stats.bytes,
            "body_bytes_per_sec": stats.bytes as f64 / self.secs(),
            "latency_ms": latency,
            "statuses": stats.statuses,
            "errors_by_kind": errors,
            "series": series,
            "verdict": self.verdict(),
            "exit_code": self.exit_code(),
        })
    }
}

/// `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate: whole numbers with separators from 100 up, two decimals below.
fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x >= 100.0 {
        thousands(x.round() as u64)
    } else {
        format!("{x:.2}")
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // RUST_LOG=actix_transfer=debug shows the engine's log on stderr (the report is on stdout).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some(addr) = args.serve {
        return serve_until_ctrl_c(addr);
    }
    let plan = match Plan::from_args(args) {
        Ok(plan) => plan,
        Err(msg) => Args::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit(),
    };
    actix_rt::System::new().block_on(async move {
        let ctrl_c = async {
            if actix_rt::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let (targets, report) = run(&plan, ctrl_c).await;
        report.print(&plan, &targets);
        ExitCode::from(report.exit_code())
    })
}

/// Run the plan until its end, its deadline, or `interrupt`; the URLs it ran against (the
/// built-in server's when the plan has none) and the report.
async fn run(plan: &Plan, interrupt: impl Future<Output = ()> + 'static) -> (Vec<Target>, Report) {
    let (targets, server) = if plan.targets.is_empty() {
        let server = serve_locally(("127.0.0.1", 0));
        let url = format!("{}/bytes/4096", server.base);
        (vec![Target { url, weight: 1 }], Some(server.handle))
    } else {
        (plan.targets.clone(), None)
    };
    let engine = Engine::builder()
        .max_active(usize::try_from(plan.effective_concurrency()).unwrap_or(usize::MAX))
        .retry(RetryPolicy::never())
        // Progress events are not needed here: one a second at most.
        .progress_interval(Duration::from_secs(1))
        // The report comes from the events; the engine need not remember ended requests.
        .keep_ended(0)
        .workers(plan.workers)
        .start();

    let fetches = targets
        .iter()
        .map(|t| {
            let mut f = Fetch::new(plan.method.clone(), t.url.clone()).accept_any_status();
            for (name, value) in &plan.headers {
                f = f.header(name.clone(), value.clone());
            }
            if let Some(body) = &plan.body {
                f = f.body(body.clone());
            }
            f
        })
        .collect();
    let (done_tx, done_rx) = oneshot::channel();
    let load = Load {
        engine: engine.clone(),
        fetches,
        picker: Picker::new(targets.iter().map(|t| t.weight)),
        starter: Starter::new(plan.rate, plan.limit),
        concurrency: plan.concurrency,
        duration: plan.duration,
        live: plan.live,
        start: Instant::now(),
        ended: 0,
        in_flight: HashMap::new(),
        ended_early: HashMap::new(),
        stats: Stats::new(),
        wake: None,
        last_second: Duration::ZERO,
        done: Some(done_tx),
    }
    .start();
    // Only `Ended` counts here: no other event is built for this run.
    let endings = Subscribe::all(load.clone().recipient()).kinds(EventKinds::ENDED);
    if let Ok(Ok(_)) = engine.send(endings).await {
        load.do_send(Begin);
    } else {
        load.do_send(Finish(Stop::EngineGone));
    }
    let stopper = load.clone();
    actix_rt::spawn(async move {
        interrupt.await;
        stopper.do_send(Finish(Stop::Interrupted));
    });
    let report = done_rx.await.unwrap_or_else(|_| Report {
        stop: Stop::EngineGone,
        elapsed: Duration::ZERO,
        stats: Stats::new(),
        unfinished: 0,
        not_started: 0,
    });
    // Abandoned requests end as `Failed(Shutdown)`, which nobody counts any more. Bounded:
    // after Ctrl-C the signal no longer stops the process.
    let _ = actix_rt::time::timeout(Duration::from_secs(5), engine.send(Shutdown)).await;
    if let Some(server) = server {
        server.stop(false).await;
    }
    (targets, report)
}

/// The load generator: starts requests as the `Starter` says, notes each `Ended`.
struct Load {
    engine: Addr<Engine>,
    /// One request per target, cloned for each request.
    fetches: Vec<Fetch>,
    picker: Picker,
    starter: Starter,
    concurrency: u64,
    duration: Option<Duration>,
    live: bool,
    start: Instant,
    /// Requests that ended (with a response or an error).
    ended: u64,
    /// When each request in flight counts from (its submission, or its scheduled start).
    in_flight: HashMap<TransferId, Instant>,
    /// `Ended` events that arrived before the answer to their submission (the two travel on
    /// different channels), with their arrival time.
    ended_early: HashMap<TransferId, (Instant, Outcome)>,
    stats: Stats,
    /// The timer for the next scheduled start (open loop).
    wake: Option<SpawnHandle>,
    /// The end of the last second reported.
    last_second: Duration,
    /// Taken when the run stops; nothing is counted after that.
    done: Option<oneshot::Sender<Report>>,
}

impl Actor for Load {
    type Context = Context<Self>;
}

/// Start the run.
#[derive(Message)]
#[rtype(result = "()")]
struct Begin;

/// Stop the run and send the report.
#[derive(Message)]
#[rtype(result = "()")]
struct Finish(Stop);

impl Handler<Begin> for Load {
    type Result = ();
    fn handle(&mut self, _: Begin, ctx: &mut Context<Self>) {
        self.start = Instant::now();
        if let Some(d) = self.duration {
            ctx.run_later(d, |act, ctx| act.finish(Stop::Deadline, ctx));
        }
        ctx.run_interval(Duration::from_secs(1), |act, _| act.tick());
        self.pump(ctx);
    }
}

impl Handler<Finish> for Load {
    type Result = ();
    fn handle(&mut self, Finish(stop): Finish, ctx: &mut Context<Self>) {
        self.finish(stop, ctx);
    }
}

impl Handler<TransferEvent> for Load {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, ctx: &mut Context<Self>) {
        let EventKind::Ended(outcome) = ev.kind else {
            return;
        };
        if self.done.is_none() {
            return;
        }
        let now = Instant::now();
        match self.in_flight.remove(&ev.id) {
            Some(from) => self.ended(now.saturating_duration_since(from), &outcome, ctx),
            None => {
                self.ended_early.insert(ev.id, (now, outcome));
            }
        }
    }
}

impl Load {
    fn in_flight(&self) -> u64 {
        self.starter.started - self.ended
    }

    /// Start what the starter allows now, and set the timer for the next scheduled start.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.done.is_none() {
            return;
        }
        let now = Instant::now();
        let free = self.concurrency.saturating_sub(self.in_flight());
        let open = self.starter.period_ns.is_some();
        for i in self.starter.take(now - self.start, free) {
            let from = match self.starter.scheduled(i) {
                Some(at) if open => self.start + at,
                _ => now,
            };
            self.submit(from, ctx);
        }
        if self.wake.is_none() {
            if let Some(at) = self.starter.next_due() {
                let delay = (self.start + at).saturating_duration_since(Instant::now());
                self.wake = Some(ctx.run_later(delay, |act, ctx| {
                    act.wake = None;
                    act.pump(ctx);
                }));
            }
        }
        if self.starter.all_started() && self.ended == self.starter.started {
            self.finish(Stop::Done, ctx);
        }
    }

    fn submit(&mut self, from: Instant, ctx: &mut Context<Self>) {
        let fetch = self.fetches[self.picker.next()].clone();
        self.engine
            .send(fetch)
            .into_actor(self)
            .map(move |answer, act, ctx| {
                if act.done.is_none() {
                    return;
                }
                match answer {
                    Ok(Ok(id)) => match act.ended_early.remove(&id) {
                        Some((at, outcome)) => {
                            act.ended(at.saturating_duration_since(from), &outcome, ctx)
                        }
                        None => {
                            act.in_flight.insert(id, from);
                        }
                    },
                    // Refused before any I/O: every other request would be too.
                    Ok(Err(error)) => act.finish(Stop::Refused(error.to_string()), ctx),
                    Err(_) => act.finish(Stop::EngineGone, ctx),
                }
            })
            .spawn(ctx);
    }

    fn ended(&mut self, latency: Duration, outcome: &Outcome, ctx: &mut Context<Self>) {
        self.stats.record(latency, outcome);
        self.ended += 1;
        self.pump(ctx);
    }

    /// The line a second: this second's responses, errors and p99.
    fn tick(&mut self) {
        if self.done.is_none() {
            return;
        }
        let now = self.start.elapsed();
        let row = self.stats.close_second(now.as_secs_f64());
        let span = (now - self.last_second).as_secs_f64().max(1e-9);
        self.last_second = now;
        if self.live {
            let p99 = row
                .p99_ms
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.2} ms"));
            eprintln!(
                "loadtest: {:>4.0} s: {} responses/s, {} errors, p99 {p99}, {} in flight",
                row.at,
                num(row.responses as f64 / span),
                thousands(row.errors),
                thousands(self.in_flight()),
            );
        }
    }

    fn finish(&mut self, stop: Stop, ctx: &mut Context<Self>) {
        let Some(done) = self.done.take() else {
            return;
        };
        let elapsed = self.start.elapsed();
        let mut stats = std::mem::replace(&mut self.stats, Stats::new());
        if stats.second.responses + stats.second.errors > 0 {
            stats.close_second(elapsed.as_secs_f64());
        }
        let report = Report {
            stop,
            elapsed,
            stats,
            unfinished: self.in_flight(),
            not_started: self.starter.waiting(),
        };
        let _ = done.send(report);
        ctx.stop();
    }
}

/// The loopback server, running.
struct Server {
    /// `http://127.0.0.1:PORT`.
    base: String,
    handle: actix_web::dev::ServerHandle,
    /// Whether `/freeze-once` has been asked for (set before the stall); the tests wait on it.
    #[cfg_attr(not(test), allow(dead_code))]
    frozen: Arc<AtomicBool>,
}

/// The loopback server: `GET /bytes/{n}` answers `n` bytes, `/status/{code}` answers that
/// status, `/freeze-once/{ms}` blocks the server's only thread for `ms` the first time (every
/// connection waits: a server stall) and answers at once after that.
fn serve_locally(addr: impl std::net::ToSocketAddrs) -> Server {
    use actix_web::{http::StatusCode, web, App, HttpResponse, HttpServer};
    let frozen = Arc::new(AtomicBool::new(false));
    let data = web::Data::from(frozen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/bytes/{n}",
                web::get().to(|n: web::Path<usize>| async move {
                    HttpResponse::Ok().body(vec![0x5a; (*n).min(64 << 20)])
                }),
            )
            .route(
                "/status/{code}",
                web::to(|code: web::Path<u16>| async move {
                    match StatusCode::from_u16(*code) {
                        Ok(status) => HttpResponse::build(status).finish(),
                        Err(_) => HttpResponse::BadRequest().body("not a status code"),
                    }
                }),
            )
            .route(
                "/freeze-once/{ms}",
                web::get().to(
                    |ms: web::Path<u64>, frozen: web::Data<AtomicBool>| async move {
                        if !frozen.swap(true, Ordering::SeqCst) {
                            // Deliberately blocking: the stall is the point.
                            std::thread::sleep(Duration::from_millis((*ms).min(60_000)));
                        }
                        HttpResponse::Ok().finish()
                    },
                ),
            )
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .expect("bind the loopback server's address");
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Server {
        base,
        handle,
        frozen,
    }
}

/// `--serve ADDR`: the loopback server alone, for a comparison with another client.
fn serve_until_ctrl_c(addr: SocketAddr) -> ExitCode {
    actix_rt::System::new().block_on(async move {
        let server = serve_locally(addr);
        eprintln!(
            "serving {}/bytes/{{n}}, /status/{{code}}, /freeze-once/{{ms}}; Ctrl-C stops",
            server.base
        );
        let _ = actix_rt::signal::ctrl_c().await;
        server.handle.stop(false).await;
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_plain_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("10s"), Ok(ms(10_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1_500)));
        assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
        assert_eq!(parse_duration("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_duration("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse_duration("3"), Ok(ms(3_000)));
        for bad in [
            "", "s", "10x", "0s", "0", "-1s", "1m30", "ms10", "1..5s", "inf",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn counts_and_rates_refuse_zero_and_junk() {
        assert_eq!(parse_count("10_000"), Ok(10_000));
        assert!(parse_count("0").is_err());
        assert!(parse_count("ten").is_err());
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-3", "NaN", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_name_colon_value() {
        assert_eq!(
            parse_header("X-Token:  abc: def "),
            Ok(("X-Token".into(), "abc: def".into()))
        );
        assert_eq!(parse_header("Accept:"), Ok(("Accept".into(), "".into())));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": value").is_err());
    }

    #[test]
    fn the_command_line_repeats_headers_and_refuses_two_bodies() {
        let args = Args::try_parse_from([
            "loadtest",
            "-H",
            "a: 1",
            "--header",
            "b: 2",
            "-n",
            "5",
            "-c",
            "100",
            "http://x/",
        ])
        .unwrap();
        assert_eq!(
            args.headers,
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        let plan = Plan::from_args(args).unwrap();
        assert_eq!(plan.effective_concurrency(), 5, "min(c, n)");
        assert_eq!(plan.method, "GET");

        let err = Args::try_parse_from(["loadtest", "-d", "x", "--body-file", "f"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err = Args::try_parse_from(["loadtest", "-c", "0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        let err = Args::try_parse_from(["loadtest", "--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        assert_eq!(err.exit_code(), 0, "--help is not an error");
    }

    #[test]
    fn defaults_follow_the_options_given() {
        let plan = |argv: &[&str]| {
            Plan::from_args(Args::try_parse_from([&["loadtest"], argv].concat()).unwrap()).unwrap()
        };
        assert_eq!(plan(&[]).limit, Some(DEFAULT_REQUESTS));
        assert_eq!(
            plan(&["-z", "1s"]).limit,
            None,
            "a duration alone runs until it ends"
        );
        assert_eq!(plan(&["-z", "1s", "-n", "7"]).limit, Some(7));
        assert_eq!(plan(&["-z", "1s"]).effective_concurrency(), 64);
        assert_eq!(plan(&["-d", "{}"]).method, "POST");
        assert_eq!(plan(&["-d", "{}", "-m", "PUT"]).method, "PUT");
    }

    #[test]
    fn url_files_hold_weights_and_comments() {
        let text = "# the mix\n3 http://a/\n\n  http://b/  \n1 http://c/\n";
        assert_eq!(
            parse_url_file(text).unwrap(),
            [
                Target {
                    url: "http://a/".into(),
                    weight: 3
                },
                Target {
                    url: "http://b/".into(),
                    weight: 1
                },
                Target {
                    url: "http://c/".into(),
                    weight: 1
                },
            ]
        );
        assert_eq!(
            parse_url_file("0 http://a/").unwrap_err(),
            "line 1: the weight must be a whole number from 1, got \"0\""
        );
        assert!(parse_url_file("\nx http://a/")
            .unwrap_err()
            .starts_with("line 2:"));
        assert!(parse_url_file("1 http://a/ extra")
            .unwrap_err()
            .starts_with("line 1:"));
        assert_eq!(parse_url_file("# nothing\n").unwrap_err(), "no URL in it");
    }

    #[test]
    fn the_picker_interleaves_in_proportion_to_weights() {
        let mut equal = Picker::new([1, 1, 1]);
        let picks: Vec<usize> = (0..6).map(|_| equal.next()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2], "equal weights: round robin");

        let mut weighted = Picker::new([3, 1]);
        let picks: Vec<usize> = (0..8).map(|_| weighted.next()).collect();
        assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0], "spread out, not a a a b");

        let mut mix = Picker::new([5, 2, 3]);
        let mut counts = [0; 3];
        for _ in 0..10_000 {
            counts[mix.next()] += 1;
        }
        assert_eq!(counts, [5_000, 2_000, 3_000]);
    }

    #[test]
    fn a_closed_loop_starts_what_the_slots_allow() {
        let mut s = Starter::new(None, Some(10));
        assert_eq!(s.take(Duration::ZERO, 4), 0..4);
        assert_eq!(s.take(Duration::from_secs(5), 0), 4..4);
        assert_eq!(s.take(Duration::from_secs(5), 100), 4..10);
        assert!(s.all_started());
        assert_eq!(s.next_due(), None, "a closed loop has no timer");
        assert_eq!(s.waiting(), 0);
    }

    #[test]
    fn an_open_loop_starts_on_the_schedule() {
        let ms = Duration::from_millis;
        // 1,000 a second: request i is due at i ms.
        let mut s = Starter::new(Some(1000.0), Some(100));
        assert_eq!(s.scheduled(7), Some(ms(7)));
        assert_eq!(s.take(ms(0), 64), 0..1, "request 0 is due at once");
        assert_eq!(s.next_due(), Some(ms(1)));
        assert_eq!(s.take(Duration::from_micros(999), 64), 1..1, "not due yet");
        assert_eq!(s.take(ms(5), 64), 1..6, "due at 1..=5 ms");
        // Every slot busy: the due ones wait, and go first when slots free up.
        assert_eq!(s.take(ms(20), 0), 6..6);
        assert_eq!(s.waiting(), 15);
        assert_eq!(
            s.next_due(),
            Some(ms(21)),
            "the timer keeps to the schedule"
        );
        assert_eq!(s.take(ms(20), 3), 6..9);
        assert_eq!(s.waiting(), 12);
        // The schedule ends with the requests.
        assert_eq!(s.take(ms(10_000), 1_000), 9..100);
        assert_eq!(s.next_due(), None);
        assert!(s.all_started());
        // Without -n (only -z), the schedule goes on.
        let mut endless = Starter::new(Some(0.5), None);
        assert_eq!(endless.take(Duration::from_secs(3600), u64::MAX), 0..1801);
        assert_eq!(endless.next_due(), Some(Duration::from_secs(3602)));
    }

    /// The coordinated-omission correction, in arithmetic: 1,000 requests a second, one slot,
    /// a server that answers in 0.1 ms except the first request, which takes 100 ms. Requests
    /// 1..=100 fall due during the stall and then go one after another, request `k` ending at
    /// `100 + 0.1 k` ms: `100 - 0.9 k` ms after its scheduled time. Measured from submission,
    /// only request 0 shows the stall.
    #[test]
    fn latency_from_the_schedule_shows_a_stall_in_every_request_due_during_it() {
        let mut s = Starter::new(Some(1000.0), Some(1000));
        let service = |i: u64| if i == 0 { 100_000 } else { 100 }; // µs
        let (mut now, mut from_schedule, mut from_submission) = (0u64, Vec::new(), Vec::new());
        let mut next_free = 0u64;
        for _ in 0..100_000 {
            if s.all_started() {
                break;
            }
            let started = s.take(Duration::from_micros(now), u64::from(now >= next_free));
            for i in started {
                let end = now + service(i);
                from_schedule.push(end - s.scheduled(i).unwrap().as_micros() as u64);
                from_submission.push(end - now);
                next_free = end;
            }
            // The next event: the slot frees while requests wait, or the next one falls due.
            let due = s.next_due().map_or(u64::MAX, |d| d.as_micros() as u64);
            now = if s.waiting() > 0 { next_free } else { due };
        }
        assert_eq!(from_schedule.len(), 1000);
        let slow = |v: &[u64], us: u64| v.iter().filter(|&&l| l >= us).count();
        assert_eq!(
            slow(&from_submission, 50_000),
            1,
            "the stall hides behind one request"
        );
        // 100 - 0.9 k >= 50 for k = 0..=55.
        assert_eq!(slow(&from_schedule, 50_000), 56);
        let mut sorted = from_schedule.clone();
        sorted.sort_unstable();
        // p99 is the 11th-worst, k = 10: 100 - 9 ms.
        assert_eq!(sorted[989], 91_000, "p99");
        assert_eq!(sorted[999], 100_000, "max");
    }

    fn report(statuses: &[(u16, u64)], errors: u64, stop: Stop) -> Report {
        let mut stats = Stats::new();
        for &(status, n) in statuses {
            *stats.statuses.entry(status).or_default() += n;
        }
        if errors > 0 {
            stats
                .errors
                .insert("connect", (errors, "connection refused".into()));
        }
        Report {
            stop,
            elapsed: Duration::from_secs(2),
            stats,
            unfinished: 0,
            not_started: 0,
        }
    }

    #[test]
    fn responses_and_attempts_are_rated_apart() {
        let r = report(&[(200, 300)], 700, Stop::Done);
        assert_eq!(r.responses_per_sec(), 150.0);
        assert_eq!(r.attempts_per_sec(), 500.0);
        let refused = report(&[], 90_000, Stop::Done);
        assert_eq!(
            refused.responses_per_sec(),
            0.0,
            "refusals are not responses"
        );
    }

    #[test]
    fn the_exit_code_follows_the_documented_rule() {
        assert_eq!(report(&[(200, 10)], 0, Stop::Done).exit_code(), 0);
        assert_eq!(report(&[(200, 10)], 0, Stop::Deadline).exit_code(), 0);
        assert_eq!(
            report(&[(200, 9), (404, 1)], 0, Stop::Done).exit_code(),
            0,
            "a 404 is a status"
        );
        let all_404 = report(&[(404, 10)], 0, Stop::Done);
        assert_eq!(all_404.exit_code(), 1);
        assert!(all_404
            .verdict()
            .unwrap()
            .contains("not one response was a 2xx"));
        let refused = report(&[], 10, Stop::Done);
        assert_eq!(refused.exit_code(), 1);
        assert!(refused.verdict().unwrap().contains("no response at all"));
        assert_eq!(report(&[(200, 9)], 1, Stop::Done).exit_code(), 1);
        let nothing = report(&[], 0, Stop::Deadline);
        assert_eq!(nothing.exit_code(), 1);
        assert!(nothing.verdict().unwrap().contains("nothing succeeded"));
        assert_eq!(report(&[(200, 9)], 0, Stop::Interrupted).exit_code(), 130);
        assert_eq!(report(&[], 0, Stop::Refused("bad".into())).exit_code(), 2);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(44_721), "44,721");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    // End to end, against the built-in loopback server or a closed port.

    fn plan(targets: Vec<String>) -> Plan {
        let mut plan = Plan::from_args(Args::try_parse_from(["loadtest"]).unwrap()).unwrap();
        plan.targets = targets
            .into_iter()
            .map(|url| Target { url, weight: 1 })
            .collect();
        plan.live = false;
        plan
    }

    /// Run `plan` against a loopback server of its own (`{server}` in a URL is its base),
    /// interrupted by the future `interrupt` makes of the server's freeze flag.
    fn run_plan<F>(plan: Plan, interrupt: impl FnOnce(Arc<AtomicBool>) -> F) -> Report
    where
        F: Future<Output = ()> + 'static,
    {
        actix_rt::System::new().block_on(async move {
            let server = serve_locally(("127.0.0.1", 0));
            let mut plan = plan;
            for t in &mut plan.targets {
                t.url = t.url.replace("{server}", &server.base);
            }
            let (_, report) = run(&plan, interrupt(server.frozen.clone())).await;
            server.handle.stop(false).await;
            report
        })
    }

    fn never(_: Arc<AtomicBool>) -> std::future::Pending<()> {
        std::future::pending()
    }

    #[test]
    fn every_status_is_counted_as_a_status() {
        let mut p = plan(vec![
            "{server}/bytes/16".into(),
            "{server}/status/404".into(),
        ]);
        p.workers = 1; // the default is 0: this run goes through a worker thread
        p.limit = Some(20);
        p.concurrency = 4;
        let r = run_plan(p.clone(), never);
        assert_eq!(r.stop, Stop::Done);
        assert_eq!(r.stats.statuses, BTreeMap::from([(200, 10), (404, 10)]));
        assert!(r.stats.errors.is_empty(), "{:?}", r.stats.errors);
        assert_eq!(r.stats.bytes, 160);
        assert_eq!(r.stats.latency.len(), 20);
        assert_eq!(r.exit_code(), 0);
        let json = r.json(&p, &p.targets);
        assert_eq!(json["statuses"]["404"], 10);
        assert_eq!(json["concurrency"], 4);
    }

    #[test]
    fn refused_connections_are_errors_not_responses() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut p = plan(vec![format!("http://127.0.0.1:{port}/")]);
        p.limit = Some(10);
        let r = run_plan(p.clone(), never);
        assert_eq!(r.stop, Stop::Done);
        assert_eq!(r.stats.responses(), 0);
        assert_eq!(r.stats.errors.get("connect").map(|e| e.0), Some(10));
        assert_eq!(r.responses_per_sec(), 0.0);
        assert_eq!(r.exit_code(), 1);
        let text = r.text(&p, &p.targets);
        assert!(text.contains("no response at all"), "{text}");
        assert!(text.starts_with("10 requests to"), "{text}");
    }

    #[test]
    fn an_invalid_url_is_refused_before_sending() {
        let mut p = plan(vec!["ftp://127.0.0.1/x".into()]);
        p.limit = Some(10);
        let r = run_plan(p, never);
        assert!(
            matches!(&r.stop, Stop::Refused(why) if why.contains("ftp")),
            "{:?}",
            r.stop
        );
        assert_eq!(r.exit_code(), 2);
    }

    #[test]
    fn an_interrupt_stops_the_run_and_reports_it() {
        // The server stalls on the first request: interrupted during the stall, the run has
        // requests in flight.
        let mut p = plan(vec!["{server}/freeze-once/1000".into()]);
        p.limit = Some(1_000_000);
        p.concurrency = 2;
        let r = run_plan(p, |frozen| async move {
            for _ in 0..2_000 {
                if frozen.load(Ordering::SeqCst) {
                    break;
                }
                actix_rt::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert_eq!(r.stop, Stop::Interrupted);
        assert_eq!(r.exit_code(), 130);
        assert!(r.unfinished > 0, "requests were in flight");
    }

    #[test]
    fn a_duration_alone_runs_until_its_deadline() {
        let mut p = plan(vec!["{server}/bytes/16".into()]);
        p.limit = None;
        p.duration = Some(Duration::from_millis(300));
        p.concurrency = 2;
        let r = run_plan(p, never);
        assert_eq!(r.stop, Stop::Deadline);
        assert!(r.elapsed >= Duration::from_millis(300));
        assert_eq!(r.exit_code(), 0, "{:?}", r.verdict());
    }
}
