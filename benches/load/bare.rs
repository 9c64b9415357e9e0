//! The baselines the engine is measured against: a bare awc client doing the same work in the
//! same process, and curl (when installed) in its own.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;

use crate::metrics::flush_disks;

pub fn bare_client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .disable_timeout()
        .finish()
}

/// Bare awc: stream to a file with 256 KiB writes on the blocking pool, one in flight.
pub async fn bare_download(client: &awc::Client, url: &str, path: &Path) -> u64 {
    let mut resp = client.get(url).send().await.expect("bare request");
    let mut file = Some(std::fs::File::create(path).unwrap());
    let mut buf = Vec::with_capacity(256 * 1024);
    let mut n = 0u64;
    let mut pending: Option<actix_rt::task::JoinHandle<std::fs::File>> = None;
    let flush = |buf: Vec<u8>, f: std::fs::File| {
        actix_rt::task::spawn_blocking(move || {
            let mut f = f;
            f.write_all(&buf).unwrap();
            f
        })
    };
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.expect("bare body");
        n += chunk.len() as u64;
        buf.extend_from_slice(&chunk);
        if buf.len() >= 256 * 1024 {
            if let Some(p) = pending.take() {
                file = Some(p.await.unwrap());
            }
            let full = std::mem::replace(&mut buf, Vec::with_capacity(256 * 1024));
            pending = Some(flush(full, file.take().unwrap()));
        }
    }
    if let Some(p) = pending.take() {
        file = Some(p.await.unwrap());
    }
    let f = flush(buf, file.take().unwrap()).await.unwrap();
    f.sync_all().unwrap();
    n
}

pub fn curl() -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("command -v curl")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// `curl -o path url`, then fsync the file (GNU `sync FILE`), timed together after an untimed
/// flush of the disks; the file is removed after.
pub fn curl_synced(curl: &Path, path: &Path, url: &str) -> Option<Duration> {
    flush_disks();
    let t = timed_command(
        Command::new("sh")
            .args(["-c", "\"$0\" -s -o \"$1\" \"$2\" && sync \"$1\""])
            .arg(curl)
            .arg(path)
            .arg(url),
    );
    let _ = std::fs::remove_file(path);
    t
}

pub fn timed_command(cmd: &mut Command) -> Option<Duration> {
    let start = Instant::now();
    let ok = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then(|| start.elapsed())
}

/// The bare baseline's file body: 256 KiB reads on the blocking pool.
pub fn tokio_file_stream(
    path: PathBuf,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures::stream::try_unfold(Some(std::fs::File::open(path).unwrap()), |f| async move {
        let Some(mut f) = f else { return Ok(None) };
        let (f, chunk) = actix_rt::task::spawn_blocking(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 256 * 1024];
            let n = f.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((f, buf))
        })
        .await
        .unwrap()?;
        if chunk.is_empty() {
            Ok(None)
        } else {
            Ok(Some((bytes::Bytes::from(chunk), Some(f))))
        }
    })
}
