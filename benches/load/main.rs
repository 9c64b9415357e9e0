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
//! Scenarios: `file` (one large download to a file), `segments` (one stream vs 4 segments from
//! a server that paces each connection, as distant servers do), `small` (4 KiB fetches into
//! memory at 64 and 256 in flight), `files` (small downloads to files), `upload` (one large
//! upload), `open` (thousands of open slow transfers: memory, then cancel them all; each side
//! in a fresh child process, so that neither inherits the other's heap), `queue` (100,000
//! downloads waiting for an admission slot: memory each, submit time, cancel them all; also in
//! a child process), `cancel` (cancel latency under load: p50, p99, p99.9, with how busy the
//! machine was meanwhile, and less the time the asking thread waited for a CPU), `rate` (a
//! global bandwidth limit: achieved rate over 5 s), `journal` (the durable journal on vs off:
//! small downloads to files, one large download, open transfers, a start on a long history;
//! needs the `journal` feature), `loadgen` (the load generator, examples/loadtest.rs, against
//! wrk and oha at 64 connections: requests/s and client CPU per request; and its p99 under a
//! server's 1 s stall, closed loop vs a rate schedule), `fleet` (jobs through Redis Streams vs
//! a local Engine, and 1, 2, 3 nodes on a paced server; skipped when `redis-server` is
//! missing).
//!
//! `small` also runs the floor of the contract (`floor`): a supervisor that spawns one actor
//! per request, which sends one end event and one report back, and nothing else, in each
//! layout (the actors on the caller's thread, or on one worker thread). Its CPU per request
//! over bare awc's is what an actor per transfer costs by itself, and with one worker what
//! the handoffs between the two threads add. `loadgen` runs bare awc beside the generator
//! (one thread, 64 loops of one request after another), the ceiling of a generator on awc.
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
//! Rows that time something (MB/s, transfers/s, requests/s, latencies, submit and cancel times,
//! and the ratios built on them) and the CPU per transfer or request need a quiet machine:
//! other processes on the same cores slow each side unevenly and inflate CPU time through
//! contention, and interleaving the rounds only evens out slow drift. `cancel` prints the
//! machine's busy and stolen CPU and its load average beside its latencies, to tell a noisy
//! run, and each latency less the time the asking thread spent waiting for a CPU (its own load
//! keeps a 2-core machine's cores busy, and that wait is most of its tail). The memory rows
//! (`open`'s and `queue`'s RSS), the bytes counted after a cancel's reply, the `rate` rows (a
//! limit well below what loopback carries) and `loadgen`'s p99 under a stall on a rate schedule
//! (a second of stall dwarfs the noise) hold on a busy machine too.
//!
//! The `file` figures depend on the page cache: right after a large build (or a CI clone) the
//! single-stream writer pays for reclaiming pages and runs markedly slower. For comparable runs
//! start from a clean cache (`sync; echo 3 > /proc/sys/vm/drop_caches` as root); bare awc and
//! curl are barely affected either way.
//!
//! Layout: `opts` (the command line), `server` (the child server process and its endpoints),
//! `metrics` (CPU time, RSS, percentiles), `report`, `recorder` (the `Ended` recorder),
//! `engine` (the engine under test), `bare` (the bare awc and curl baselines), `floor` (the
//! actor-per-request floor) and `scenario/`,
//! one file per scenario, which use those and never each other.

mod bare;
mod engine;
mod floor;
mod metrics;
mod opts;
mod recorder;
mod report;
mod scenario;
mod server;

use std::time::Instant;

use metrics::flush_disks;
use opts::{opts, ALL};
use report::Report;
use server::{serve, ServerProcess};

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        return serve();
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--open-side") {
        return scenario::open::open_side(&args[i + 1..]);
    }
    if let Some(i) = args.iter().position(|a| a == "--journal-open-side") {
        return scenario::journal::open_side(&args[i + 1..]);
    }
    if let Some(i) = args.iter().position(|a| a == "--queue-side") {
        let (n, base) = (args[i + 1].parse().unwrap(), args[i + 2].clone());
        let out = actix_rt::System::new()
            .block_on(async move { scenario::queue::queue_side(n, &base).await });
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
                "file" => scenario::file::run(&o, &server.base, dir.path(), &mut report).await,
                "segments" => {
                    scenario::segments::run(&o, &server.base, dir.path(), &mut report).await
                }
                "small" => scenario::small::run(&o, &server.base, dir.path(), &mut report).await,
                "files" => scenario::files::run(&o, &server.base, dir.path(), &mut report).await,
                "upload" => scenario::upload::run(&o, &server.base, dir.path(), &mut report).await,
                "open" => scenario::open::run(&o, &server.base, dir.path(), &mut report).await,
                "queue" => scenario::queue::run(&o, &server.base, dir.path(), &mut report).await,
                "cancel" => scenario::cancel::run(&o, &server.base, dir.path(), &mut report).await,
                "rate" => scenario::rate::run(&o, &server.base, dir.path(), &mut report).await,
                "journal" => {
                    scenario::journal::run(&o, &server.base, dir.path(), &mut report).await
                }
                "loadgen" => {
                    scenario::loadgen::run(&o, &server.base, dir.path(), &mut report).await
                }
                "fleet" => scenario::fleet::run(&o, &server.base, dir.path(), &mut report).await,
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
