//! `files`: many small downloads to files, against bare awc.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use actix_transfer::{Download, Shutdown};
use futures::StreamExt;

use crate::{
    bare::{bare_client, bare_download},
    engine::engine_with,
    metrics::median,
    opts::Opts,
    report::Report,
};

pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let n: usize = if o.quick { 500 } else { 2_000 };
    let url = format!("{base}/bytes/16384");
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for round in 0..o.rounds {
        let sub = dir.join(format!("files-{round}"));
        std::fs::create_dir_all(&sub).unwrap();
        let (engine, ends, _a) = engine_with(&sub, 256).await;
        let start = Instant::now();
        for i in 0..n {
            engine
                .send(Download::new(&url).to(format!("e{i}")))
                .await
                .unwrap()
                .unwrap();
        }
        ends.wait_for(n, Duration::from_secs(300)).await;
        ours.push(n as f64 / start.elapsed().as_secs_f64());
        engine.send(Shutdown).await.unwrap();

        let client = bare_client();
        let start = Instant::now();
        futures::stream::iter(0..n)
            .map(|i| {
                let (client, url, path) = (client.clone(), url.clone(), sub.join(format!("b{i}")));
                async move { bare_download(&client, &url, &path).await }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
        bare.push(n as f64 / start.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&sub);
    }
    let (ours, bare) = (median(ours), median(bare));
    report.add(
        "files",
        &format!("{n} x 16 KiB to files: actix-transfer"),
        ours,
        "/s",
    );
    report.add(
        "files",
        &format!("{n} x 16 KiB to files: bare awc"),
        bare,
        "/s",
    );
    report.ratio(
        "files",
        "files/s vs bare awc",
        "awc",
        ours / bare,
        0.95,
        true,
    );
}
