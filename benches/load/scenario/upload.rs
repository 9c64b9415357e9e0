//! `upload`: one large upload, against bare awc and `curl -T`.

use std::{path::Path, process::Command, time::Instant};

use actix_transfer::{Upload, Wait};

use crate::{
    bare::{bare_client, curl, timed_command, tokio_file_stream},
    engine::engine_with,
    metrics::median,
    opts::Opts,
    report::Report,
};

pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let size: u64 = if o.quick { 16 << 20 } else { 100 << 20 };
    let src = dir.join("upload.bin");
    std::fs::write(&src, vec![0x33u8; size as usize]).unwrap();
    let url = format!("{base}/upload");
    let (engine, _ends, _a) = engine_with(dir, 16).await;
    let client = bare_client();
    let (mut ours, mut bare, mut curls) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        let start = Instant::now();
        let id = engine.send(Upload::new(&url, &src)).await.unwrap().unwrap();
        let out = engine.send(Wait(id)).await.unwrap().unwrap();
        assert_eq!(
            out.body().map(|b| b.to_vec()),
            Some(size.to_string().into_bytes())
        );
        ours.push(size as f64 / start.elapsed().as_secs_f64() / 1e6);

        let start = Instant::now();
        let file = tokio_file_stream(src.clone());
        let mut resp = client
            .put(&url)
            .send_body(awc::body::SizedStream::new(size, file))
            .await
            .expect("bare upload");
        assert_eq!(resp.body().await.unwrap(), size.to_string().as_bytes());
        bare.push(size as f64 / start.elapsed().as_secs_f64() / 1e6);

        if let Some(curl) = curl() {
            if let Some(t) =
                timed_command(Command::new(curl).args(["-s", "-T"]).arg(&src).arg(&url))
            {
                curls.push(size as f64 / t.as_secs_f64() / 1e6);
            }
        }
    }
    let (ours, bare) = (median(ours), median(bare));
    report.add(
        "upload",
        &format!("{} MiB upload: actix-transfer", size >> 20),
        ours,
        "MB/s",
    );
    report.add(
        "upload",
        &format!("{} MiB upload: bare awc", size >> 20),
        bare,
        "MB/s",
    );
    report.ratio(
        "upload",
        "upload vs bare awc",
        "awc",
        ours / bare,
        0.95,
        true,
    );
    if !curls.is_empty() {
        let c = median(curls);
        report.add(
            "upload",
            &format!("{} MiB upload: curl -T", size >> 20),
            c,
            "MB/s",
        );
        report.ratio("upload", "upload vs curl -T", "curl", ours / c, 1.2, true);
    }
    let _ = std::fs::remove_file(&src);
}
