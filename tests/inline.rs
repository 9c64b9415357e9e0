//! `workers(0)`: no worker threads; transfers run on the engine's own arbiter, and everything
//! the other layouts do works the same there (downloads, segments, uploads, fetches, cancel,
//! shutdown that leaves the caller's arbiter running).
//!
//! One test in this file: it counts this process's threads, which other tests running beside
//! it would change.

// The shared support tree of tests/it; this binary uses a small part of it.
#[allow(dead_code, unused_imports)]
#[path = "it/support/mod.rs"]
mod support;

use support::ranged;

use actix_transfer::*;
use support::*;

/// Arbiter threads of this process (named `actix-rt|system:N|arbiter:M`, shown truncated to
/// 15 bytes in /proc), which is what engine workers are.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("actix-rt|system"))
        .count()
}

#[actix_rt::test]
async fn an_inline_engine_runs_every_kind_of_transfer_on_its_own_arbiter() {
    let server = server();
    let ranged = ranged::start(ranged::content(3 << 20, 7));

    // Layouts: `workers(3)` runs three threads, gone after its shutdown; `workers(0)` none.
    // (A fetch from each server first, so that their own threads are up before counting.)
    let threaded = Engine::builder().workers(3).start();
    for url in [server.url("/bytes/10"), format!("{}/file", ranged.url)] {
        let id = threaded.send(Fetch::get(url)).await.unwrap().unwrap();
        let outcome = threaded.send(Wait(id)).await.unwrap().unwrap();
        assert!(outcome.is_completed(), "{outcome:?}");
    }
    let with_workers = threads();
    threaded.send(Shutdown).await.unwrap();
    let start = std::time::Instant::now();
    while threads() != with_workers - 3 {
        assert!(start.elapsed() < LIMIT, "the 3 worker threads never ended");
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let base = threads();
    let rig = rig_with(|b| b.workers(0)).await;
    assert_eq!(threads(), base, "an inline engine starts no arbiter thread");

    // A download, a segmented download, an upload and a fetch.
    let plain = rig
        .submit(Download::new(server.url("/bytes/300000")).to("plain.bin"))
        .await;
    let segmented = rig
        .submit(
            Download::new(format!("{}/file", ranged.url))
                .to("segmented.bin")
                .segments(3),
        )
        .await;
    let src = rig.dir.path().join("source.bin");
    std::fs::write(&src, pattern(100_000)).unwrap();
    let upload = rig.submit(Upload::new(server.url("/upload"), &src)).await;
    let fetch = rig.submit(Fetch::get(server.url("/bytes/5000"))).await;

    let read = |o: &Outcome| std::fs::read(o.path().unwrap_or_else(|| panic!("{o:?}"))).unwrap();
    assert_eq!(read(&rig.wait(plain).await), pattern(300_000));
    assert_eq!(
        read(&rig.wait(segmented).await),
        ranged::content(3 << 20, 7)
    );
    let ranges = ranged.seen().iter().filter(|s| s.range.is_some()).count();
    assert_eq!(ranges, 2, "segments 1 and 2 were range requests");
    assert!(rig.wait(upload).await.is_completed());
    assert_eq!(server.state.uploads.lock().unwrap()[0].3, pattern(100_000));
    assert_eq!(
        rig.wait(fetch).await.body().map(|b| b.to_vec()),
        Some(pattern(5000))
    );

    // Cancel mid-body: Ok, one Ended(Cancelled), no .part left.
    let slow = rig
        .submit(Download::new(server.url("/slow/10000000")).to("slow.bin"))
        .await;
    rig.events
        .until_kind(slow, |k| matches!(k, EventKind::Progress { bytes_transferred, .. } if *bytes_transferred > 0))
        .await;
    assert_eq!(rig.engine.send(Cancel(slow)).await.unwrap(), Ok(()));
    assert!(matches!(
        rig.events.ended(slow)[..],
        [Outcome::Cancelled { .. }]
    ));
    assert!(
        !rig.files().iter().any(|f| f.starts_with("slow")),
        "{:?}",
        rig.files()
    );

    // Shutdown stops the engine, not the arbiter it ran on: this test goes on, and a new
    // inline engine on the same arbiter works.
    rig.engine.send(Shutdown).await.unwrap();
    let again = rig_with(|b| b.workers(0)).await;
    let id = again.submit(Fetch::get(server.url("/bytes/10"))).await;
    assert!(again.wait(id).await.is_completed());
}
