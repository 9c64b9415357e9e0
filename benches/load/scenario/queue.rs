//! `queue`: many downloads waiting for an admission slot: memory each, submit time, cancel them
//! all; in a child process.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use actix_transfer::{Cancel, Download, Shutdown, Status, TransferState};

use crate::{engine::engine_with, metrics::rss, opts::Opts, recorder::Drained, report::Report};

/// `queue`: many transfers waiting for an admission slot (one slot, held by a slow download),
/// in a fresh child process (`load --queue-side N BASE`) for the same reason as `open`.
pub async fn run(o: &Opts, base: &str, _dir: &Path, report: &mut Report) {
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
pub async fn queue_side(n: usize, base: &str) -> serde_json::Value {
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
