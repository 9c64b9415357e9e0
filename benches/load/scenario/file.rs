//! `file`: one large download to a file, against bare awc and curl, with and without the flush
//! to disk, and in 4 segments.

use std::{path::Path, process::Command, time::Instant};

use actix::Addr;
use actix_transfer::{Conflict, Download, Engine, Shutdown, Wait};

use crate::{
    bare::{bare_client, bare_download, curl, curl_synced, timed_command},
    engine::engine_with,
    metrics::{flush_disks, median},
    opts::Opts,
    report::Report,
};

pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
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
            // Timed before the file is removed (unlinking a large file takes a noticeable
            // time), as bare awc's and curl's runs are.
            let rate = size as f64 / start.elapsed().as_secs_f64() / 1e6;
            let _ = std::fs::remove_file(out.path().unwrap());
            rate
        }
    };
    let download = |engine: Addr<Engine>, segments: u32, name: String| {
        download_with(engine, segments, name, true)
    };
    // One untimed download first: right after a build the page cache is full of its files,
    // and whoever writes the first large file pays for evicting them (round 0 would measure
    // that, not the engine).
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
