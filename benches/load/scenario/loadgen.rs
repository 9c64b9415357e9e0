//! `loadgen`: the load generator (examples/loadtest.rs, run as a user runs it: a child process
//! with `--workers 0 --json`) against wrk (`-t1`, one thread as the generator's) and oha when
//! installed, at the same 64 connections for the same duration against the bench's server:
//! requests/s and client CPU per request (each client's CPU from `getrusage` of the children,
//! around its run), and their ratios. Then, against a server that stalls for 1 s once, the
//! generator's p99 in a closed loop (the stall hides in the few requests it held) and on a
//! rate schedule (`-q`: every request due during the stall shows it), beside what the
//! schedule's arithmetic predicts.
//!
//! Beside them, bare awc in this process on one thread (`CONNECTIONS` loops, each a request
//! after the other, for the same duration): what a generator built on awc could reach with no
//! engine, actor or event per request, the ceiling the generator is measured under.
//!
//! The generator is the binary of `cargo build --profile bench --example loadtest`, built by the
//! scenario when it is missing or older than the bench; a client that is not installed is
//! skipped with a note.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;

use crate::{
    bare::bare_client,
    metrics::{children_cpu_time, cpu_time, median},
    opts::Opts,
    report::Report,
};

/// Connections (requests in flight) of every client.
const CONNECTIONS: u32 = 64;
/// The server's one stall.
const STALL: Duration = Duration::from_secs(1);
/// Requests per second of the open-loop run: well below what loopback carries, so that the
/// backlog of the stall drains in a moment.
const RATE: f64 = 2000.0;

/// One client run: requests/s, client CPU per request (us), and the raw output.
struct Run {
    rate: f64,
    cpu_us: f64,
    out: String,
}

/// Run `cmd` to its end; its requests/s and request count are read from its stdout by `read`.
fn measure(cmd: &mut Command, read: impl Fn(&str) -> Option<(f64, f64)>) -> Option<Run> {
    let cpu0 = children_cpu_time();
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    let cpu = children_cpu_time() - cpu0;
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rate, requests) = read(&out)?;
    Some(Run {
        rate,
        cpu_us: cpu.as_secs_f64() * 1e6 / requests.max(1.0),
        out,
    })
}

/// Bare awc on this thread: `CONNECTIONS` loops of one GET after another for `secs`.
async fn bare_awc(url: &str, secs: u64) -> Run {
    let client = bare_client();
    let (client, end) = (&client, Instant::now() + Duration::from_secs(secs));
    let (cpu0, start) = (cpu_time(), Instant::now());
    let requests: u64 = futures::stream::iter(0..CONNECTIONS)
        .map(|_| async move {
            let mut done = 0;
            while Instant::now() < end {
                let mut r = client.get(url).send().await.expect("bare awc");
                r.body().await.expect("bare awc body");
                done += 1;
            }
            done
        })
        .buffer_unordered(CONNECTIONS as usize)
        .fold(0, |all, done| async move { all + done })
        .await;
    let (cpu, elapsed) = (cpu_time() - cpu0, start.elapsed());
    Run {
        rate: requests as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / requests.max(1) as f64,
        out: String::new(),
    }
}

fn installed(name: &str) -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The generator's binary next to this bench's, built when it is missing or older than this
/// bench (a bench run never rebuilds it otherwise).
fn generator() -> Option<PathBuf> {
    // This bench runs as target/<dir>/deps/load-<hash>; examples are in target/<dir>/examples.
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("examples").join("loadtest");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&bin).is_none_or(|b| modified(&exe).is_some_and(|e| b < e)) {
        println!(
            "loadgen: building the generator (cargo build --profile bench --example loadtest)"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--profile",
                "bench",
                "--example",
                "loadtest",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .is_ok_and(|s| s.success());
        if !built {
            return None;
        }
    }
    bin.exists().then_some(bin)
}

fn json(out: &str) -> Option<serde_json::Value> {
    serde_json::from_str(out.trim()).ok()
}

/// The generator's requests/s and responses, from its `--json` report.
fn read_generator(out: &str) -> Option<(f64, f64)> {
    let v = json(out)?;
    Some((v["responses_per_sec"].as_f64()?, v["responses"].as_f64()?))
}

/// wrk's `Requests/sec:` and `N requests in`.
fn read_wrk(out: &str) -> Option<(f64, f64)> {
    let rate = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))?
        .trim()
        .parse()
        .ok()?;
    let requests = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))?
        .0
        .trim()
        .parse()
        .ok()?;
    Some((rate, requests))
}

/// oha's JSON summary (`--output-format json`): requests/s, and requests = rate x total time.
fn read_oha(out: &str) -> Option<(f64, f64)> {
    let v = json(out)?;
    let rate = v["summary"]["requestsPerSec"].as_f64()?;
    Some((rate, rate * v["summary"]["total"].as_f64()?))
}

fn latency(out: &str, p: &str) -> f64 {
    json(out)
        .and_then(|v| v["latency_ms"][p].as_f64())
        .unwrap_or(f64::NAN)
}

pub async fn run(o: &Opts, base: &str, _dir: &Path, report: &mut Report) {
    let secs: u64 = if o.quick { 3 } else { 5 };
    let url = format!("{base}/bytes/4096");
    let Some(gen) = generator() else {
        println!(
            "loadgen: the generator could not be built (cargo build --example loadtest); skipped"
        );
        return;
    };
    let (wrk, oha) = (installed("wrk"), installed("oha"));
    if wrk.is_none() {
        println!("loadgen: wrk is not installed; its rows are skipped");
    }
    if oha.is_none() {
        println!("loadgen: oha is not installed; its rows are skipped");
    }
    let (c, d) = (CONNECTIONS.to_string(), format!("{secs}s"));
    let generator_run = |url: &str, rate: Option<f64>| {
        let mut cmd = Command::new(&gen);
        cmd.args(["--workers", "0", "--json", "-c", &c, "-z", &d]);
        if let Some(r) = rate {
            cmd.args(["-q", &r.to_string()]);
        }
        measure(cmd.arg(url), read_generator)
    };
    // Interleaved round by round: (rate, cpu) of each client.
    let (mut ours, mut theirs_wrk, mut theirs_oha) = (Vec::new(), Vec::new(), Vec::new());
    let mut bare = Vec::new();
    for _ in 0..o.rounds {
        if let Some(r) = generator_run(&url, None) {
            ours.push((r.rate, r.cpu_us));
        }
        let r = bare_awc(&url, secs).await;
        bare.push((r.rate, r.cpu_us));
        if let Some(wrk) = &wrk {
            if let Some(r) = measure(
                Command::new(wrk).args(["-t1", "-c", &c, "-d", &d, &url]),
                read_wrk,
            ) {
                theirs_wrk.push((r.rate, r.cpu_us));
            }
        }
        if let Some(oha) = &oha {
            if let Some(r) = measure(
                Command::new(oha).args([
                    "--no-tui",
                    "--output-format",
                    "json",
                    "-c",
                    &c,
                    "-z",
                    &d,
                    &url,
                ]),
                read_oha,
            ) {
                theirs_oha.push((r.rate, r.cpu_us));
            }
        }
    }
    let med = |v: &[(f64, f64)], k: usize| {
        median(v.iter().map(|r| if k == 0 { r.0 } else { r.1 }).collect())
    };
    let s = format!("@{CONNECTIONS} for {secs} s");
    if ours.is_empty() {
        println!("loadgen: the generator gave no report; skipped");
        return;
    }
    let (rate, cpu) = (med(&ours, 0), med(&ours, 1));
    report.add(
        "loadgen",
        &format!("{s}: generator (--workers 0) requests/s"),
        rate,
        "/s",
    );
    report.add(
        "loadgen",
        &format!("{s}: generator CPU per request"),
        cpu,
        "us",
    );
    let (bare_rate, bare_cpu) = (med(&bare, 0), med(&bare, 1));
    report.add(
        "loadgen",
        &format!("{s}: bare awc (one thread, no engine) requests/s"),
        bare_rate,
        "/s",
    );
    report.add(
        "loadgen",
        &format!("{s}: bare awc CPU per request"),
        bare_cpu,
        "us",
    );
    report.add(
        "loadgen",
        &format!("{s}: generator CPU per request vs bare awc"),
        cpu / bare_cpu,
        "x",
    );
    for (name, runs, target) in [("wrk -t1", &theirs_wrk, 0.7), ("oha", &theirs_oha, 0.7)] {
        if runs.is_empty() {
            continue;
        }
        let (their_rate, their_cpu) = (med(runs, 0), med(runs, 1));
        report.add(
            "loadgen",
            &format!("{s}: bare awc requests/s vs {name}"),
            bare_rate / their_rate,
            "x",
        );
        report.add(
            "loadgen",
            &format!("{s}: {name} requests/s"),
            their_rate,
            "/s",
        );
        report.add(
            "loadgen",
            &format!("{s}: {name} CPU per request"),
            their_cpu,
            "us",
        );
        report.ratio(
            "loadgen",
            &format!("{s}: generator requests/s vs {name}"),
            name,
            rate / their_rate,
            target,
            true,
        );
        report.add(
            "loadgen",
            &format!("{s}: generator CPU per request vs {name}"),
            cpu / their_cpu,
            "x",
        );
    }

    // A server that stalls once for 1 s, in a closed loop and on a schedule. Each run has its
    // own stall (a fresh key).
    let stall_ms = STALL.as_millis();
    let closed = generator_run(&format!("{base}/stall-once/{stall_ms}/closed"), None);
    let open = generator_run(&format!("{base}/stall-once/{stall_ms}/open"), Some(RATE));
    if let Some(r) = &closed {
        for p in ["p99", "p99.9", "max"] {
            report.add(
                "loadgen",
                &format!("stall 1 s, closed loop @{CONNECTIONS}: {p} latency"),
                latency(&r.out, p),
                "ms",
            );
        }
    }
    if let Some(r) = &open {
        // The stall comes with the first request: the `RATE x STALL` requests due during it
        // wait until its end, from 1 s down to 0, a `STALL / secs` share of the run's requests.
        // The 1% slowest of the run are then the first `0.01 x secs / STALL` of them, which
        // waited `STALL x (1 - 0.01 x secs / STALL)` or more.
        let stall = STALL.as_secs_f64();
        let predicted = 1e3 * stall * (1.0 - 0.01 * secs as f64 / stall);
        let p99 = latency(&r.out, "p99");
        report.add(
            "loadgen",
            &format!("stall 1 s, -q {RATE} @{CONNECTIONS}: p99 latency (from schedule)"),
            p99,
            "ms",
        );
        report.add(
            "loadgen",
            &format!("stall 1 s, -q {RATE}: p99 the schedule predicts"),
            predicted,
            "ms",
        );
        report.ratio(
            "loadgen",
            "stall 1 s: -q p99 vs the schedule's prediction",
            "schedule",
            p99 / predicted,
            0.9,
            true,
        );
    }
}
