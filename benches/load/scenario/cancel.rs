//! `cancel`: cancel latency under load, in each layout (p50, p99, p99.9), beside how busy the
//! machine was meanwhile (CPU busy and stolen, from /proc/stat; the load average before and
//! after): the latencies hold on a quiet machine only.
//!
//! The load itself keeps both cores of a small machine busy (the server, the caller's thread
//! and a worker thread), and the kernel then lets a thread that was woken wait for a CPU for
//! up to a time slice: the asker's reply can be ready while its thread is not running. So each
//! cancel also notes how long the asking thread waited, runnable, for a CPU (Linux's
//! schedstat), and the target row is the latency less that wait: what a machine with a core
//! free for the caller would see. It is an underestimate of the machine's share (a worker
//! thread's own wait is not taken off), so the row errs against the engine.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_transfer::{Cancel, Fetch, Shutdown, Status, Wait};

use crate::{
    engine::{engine_on, LAYOUTS},
    metrics::{load_average, percentile, run_queue_wait, CpuTicks},
    opts::Opts,
    report::Report,
};

/// What `victims` cancels under load measured.
struct Latencies {
    /// Cancel -> reply, sorted.
    all: Vec<Duration>,
    /// How long the asking thread waited for a CPU during each, sorted; empty where the
    /// kernel does not say.
    waits: Vec<Duration>,
    /// Cancel -> reply less that wait, sorted.
    net: Vec<Duration>,
    /// Bytes counted after the replies.
    after: u64,
}

/// Cancel latency under load, in each layout: `victims` fast fetches cancelled mid-body while
/// 32 fetches at a time run beside them.
async fn cancel_latencies(workers: usize, base: &str, dir: &Path, victims: usize) -> Latencies {
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
    let (mut lat, mut waits, mut net) = (Vec::new(), Vec::new(), Vec::new());
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
        let waited = run_queue_wait();
        let t = Instant::now();
        let reply = engine.send(Cancel(id)).await.unwrap();
        let took = t.elapsed();
        // This task runs on the asking thread throughout (an actix arbiter is one thread).
        if let (Some(before), Some(now)) = (waited, run_queue_wait()) {
            let wait = now.saturating_sub(before).min(took);
            waits.push(wait);
            net.push(took - wait);
        }
        lat.push(took);
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
        let ended = ends.0.lock().unwrap().get(&id).map(|end| end.bytes);
        after += later.saturating_sub(at_reply) + ended.map_or(0, |e| e.saturating_sub(at_reply));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    for v in [&mut lat, &mut waits, &mut net] {
        v.sort();
    }
    engine.send(Shutdown).await.unwrap();
    Latencies {
        all: lat,
        waits,
        net,
        after,
    }
}

pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    // Enough cancels that p99.9 is a measured one, not the slowest of a handful.
    let victims: usize = if o.quick { 300 } else { 2_000 };
    for (workers, layout) in LAYOUTS {
        let (ticks, load_before) = (CpuTicks::now(), load_average());
        let l = cancel_latencies(workers, base, dir, victims).await;
        let (busy, steal) = CpuTicks::now().since(&ticks);
        let ms = |v: &[Duration], p: f64| percentile(v, p).as_secs_f64() * 1e3;
        let row = |what: &str| format!("{layout}: {what}");
        report.add(
            "cancel",
            &row(&format!("{victims} cancels under load: p50 latency")),
            ms(&l.all, 0.5),
            "ms",
        );
        let p99 = ms(&l.all, 0.99);
        if l.waits.is_empty() {
            // Nothing to take off: the raw latency answers for the target.
            report.target("cancel", &row("p99 Cancel -> reply"), p99, "ms", 1.0, false);
        } else {
            report.add("cancel", &row("p99 Cancel -> reply"), p99, "ms");
        }
        report.add(
            "cancel",
            &row("p99.9 Cancel -> reply"),
            ms(&l.all, 0.999),
            "ms",
        );
        if l.waits.is_empty() {
            eprintln!("cancel: /proc/thread-self/schedstat unreadable: no rows net of CPU waits");
        } else {
            report.add(
                "cancel",
                &row("p99 the asking thread waited for a CPU"),
                ms(&l.waits, 0.99),
                "ms",
            );
            report.add(
                "cancel",
                &row("p50 Cancel -> reply, less that wait"),
                ms(&l.net, 0.5),
                "ms",
            );
            report.target(
                "cancel",
                &row("p99 Cancel -> reply, less that wait"),
                ms(&l.net, 0.99),
                "ms",
                1.0,
                false,
            );
            report.add(
                "cancel",
                &row("p99.9 Cancel -> reply, less that wait"),
                ms(&l.net, 0.999),
                "ms",
            );
        }
        // How busy the machine was meanwhile: the latency rows hold on a quiet machine only.
        report.add("cancel", &row("machine CPU busy meanwhile"), busy, "%");
        report.add("cancel", &row("CPU stolen meanwhile"), steal, "%");
        report.add(
            "cancel",
            &row("load average (1 min) before"),
            load_before,
            "",
        );
        report.add(
            "cancel",
            &row("load average (1 min) after"),
            load_average(),
            "",
        );
        report.target(
            "cancel",
            &row("bytes counted after the reply"),
            l.after as f64,
            "B",
            0.0,
            false,
        );
    }
}
