//! `open`: thousands of open slow transfers: memory, then cancel them all; each side in a fresh
//! child process.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use actix_transfer::{Cancel, Download, List, Shutdown, TransferState};
use futures::StreamExt;

use crate::{bare::bare_client, engine::engine_with, metrics::rss, opts::Opts, report::Report};

/// `open`, one side per fresh process: the RSS a side grows by depends on what the heap held
/// before (freed memory is reused), so neither side may run after the other or after another
/// scenario. The child (`load --open-side awc|engine N URL`) prints one JSON line.
pub async fn run(o: &Opts, base: &str, _dir: &Path, report: &mut Report) {
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
            .send(List::in_state(TransferState::Active))
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
pub fn open_side(args: &[String]) {
    let (which, n, url) = (args[0].clone(), args[1].parse().unwrap(), args[2].clone());
    let out = actix_rt::System::new().block_on(async move {
        match which.as_str() {
            "awc" => open_bare(n, &url).await,
            _ => open_engine(n, &url).await,
        }
    });
    println!("{out}");
}
