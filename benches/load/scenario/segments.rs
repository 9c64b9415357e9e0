//! `segments`: one stream vs 4 segments from a server that paces each connection.

use std::{path::Path, time::Instant};

use actix_transfer::{Conflict, Download, Engine, RetryPolicy, Shutdown, Wait};

use crate::{
    bare::{curl, curl_synced},
    metrics::{flush_disks, median},
    opts::Opts,
    report::Report,
    server::PACE,
};

/// Segments where they pay off: a server that gives each connection at most `PACE` bytes
/// per second (as a distant one does: its window over its round trip). One stream, curl's and
/// ours, gets about `PACE`; K segments on K connections about K times it.
pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
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
