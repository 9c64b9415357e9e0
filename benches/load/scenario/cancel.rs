//! `cancel`: cancel latency under load, in each layout (p50, p99, p99.9), beside how busy the
//! machine was meanwhile (CPU busy and stolen, from /proc/stat; the load average before and
//! after): the latencies hold on a quiet machine only.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_transfer::{Cancel, Fetch, Shutdown, Status, Wait};

use crate::{
    engine::{engine_on, LAYOUTS},
    metrics::{load_average, percentile, CpuTicks},
    opts::Opts,
    report::Report,
};

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
        let ended = ends.0.lock().unwrap().get(&id).map(|end| end.bytes);
        after += later.saturating_sub(at_reply) + ended.map_or(0, |e| e.saturating_sub(at_reply));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    lat.sort();
    engine.send(Shutdown).await.unwrap();
    (lat, after)
}

pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    // Enough cancels that p99.9 is a measured one, not the slowest of a handful.
    let victims: usize = if o.quick { 300 } else { 2_000 };
    for (workers, layout) in LAYOUTS {
        let (ticks, load_before) = (CpuTicks::now(), load_average());
        let (lat, after) = cancel_latencies(workers, base, dir, victims).await;
        let (busy, steal) = CpuTicks::now().since(&ticks);
        let ms = |p: f64| percentile(&lat, p).as_secs_f64() * 1e3;
        report.add(
            "cancel",
            &format!("{layout}: {victims} cancels under load: p50 latency"),
            ms(0.5),
            "ms",
        );
        report.target(
            "cancel",
            &format!("{layout}: p99 Cancel -> reply"),
            ms(0.99),
            "ms",
            1.0,
            false,
        );
        report.add(
            "cancel",
            &format!("{layout}: p99.9 Cancel -> reply"),
            ms(0.999),
            "ms",
        );
        // How busy the machine was meanwhile: the latency rows hold on a quiet machine only.
        report.add(
            "cancel",
            &format!("{layout}: machine CPU busy meanwhile"),
            busy,
            "%",
        );
        report.add(
            "cancel",
            &format!("{layout}: CPU stolen meanwhile"),
            steal,
            "%",
        );
        report.add(
            "cancel",
            &format!("{layout}: load average (1 min) before"),
            load_before,
            "",
        );
        report.add(
            "cancel",
            &format!("{layout}: load average (1 min) after"),
            load_average(),
            "",
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
