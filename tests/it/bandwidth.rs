//! Bandwidth limits: per transfer, global, and changed at run time. A limit is a ceiling a
//! transfer reaches: the tests at the end measure the rate over a window in the middle of a
//! body, from a loopback server far faster than the limit.

use crate::ranged;
use crate::support;

use std::time::{Duration, Instant};

use actix_transfer::*;
use ranged::content;
use support::{wait, LIMIT};

#[actix_rt::test]
async fn a_transfer_limit_bounds_its_rate() {
    let body = content(300_000, 1);
    let server = ranged::start(body.clone());
    let engine = Engine::builder().workers(1).start();
    let start = Instant::now();
    let id = engine
        .send(Fetch::get(format!("{}/file", server.url)).max_rate(200_000))
        .await
        .unwrap()
        .unwrap();
    let outcome = wait(&engine, id).await;
    let elapsed = start.elapsed();
    assert_eq!(outcome.body().unwrap().as_ref(), &body[..]);
    // 300 kB at 200 kB/s from an empty bucket: 1.5 s; allow for the final chunk's debt.
    assert!(elapsed >= Duration::from_millis(1200), "{elapsed:?}");
}

#[actix_rt::test]
async fn the_global_limit_is_shared_by_all_transfers() {
    let body = content(100_000, 2);
    let server = ranged::start(body.clone());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .workers(2)
        .download_dir(dir.path())
        .max_rate(300_000)
        .start();
    let start = Instant::now();
    let mut ids = Vec::new();
    for i in 0..4 {
        let d = Download::new(format!("{}/file", server.url)).to(format!("f{i}"));
        ids.push(engine.send(d).await.unwrap().unwrap());
    }
    for id in ids {
        let outcome = wait(&engine, id).await;
        assert_eq!(std::fs::read(outcome.path().unwrap()).unwrap(), body);
    }
    let elapsed = start.elapsed();
    // 400 kB at 300 kB/s together: at least ~1.33 s.
    assert!(elapsed >= Duration::from_millis(1100), "{elapsed:?}");
}

#[actix_rt::test]
async fn limits_change_at_run_time() {
    let body = content(2_000_000, 3);
    let server = ranged::start(body.clone());
    let engine = Engine::builder().workers(1).max_rate(50_000).start();
    let id = engine
        .send(Fetch::get(format!("{}/file", server.url)).max_rate(40_000))
        .await
        .unwrap()
        .unwrap();
    // At these rates the body would take 50 s; bounded poll until bytes flow, then lift both.
    let start = Instant::now();
    loop {
        let s = engine.send(Status(id)).await.unwrap().unwrap();
        if s.bytes_transferred > 0 {
            break;
        }
        assert!(start.elapsed() < LIMIT, "no progress");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let lift = SetRate {
        id,
        bytes_per_sec: None,
    };
    assert_eq!(engine.send(lift).await.unwrap(), Ok(()));
    engine
        .send(SetLimits {
            max_rate: Some(None),
            ..SetLimits::default()
        })
        .await
        .unwrap();
    let outcome = wait(&engine, id).await;
    assert_eq!(outcome.body().unwrap().as_ref(), &body[..]);
    assert!(start.elapsed() < LIMIT);
    assert_eq!(
        engine.send(lift).await.unwrap(),
        Err(ControlError::NotActive(EndState::Completed))
    );
}

#[actix_rt::test]
async fn a_throttled_transfer_is_not_an_idle_one() {
    // 64 KiB/s with a 300 ms idle timeout: each chunk waits longer than the idle timeout,
    // which must not count as a stall.
    let body = content(200_000, 4);
    let server = ranged::start(body.clone());
    let engine = Engine::builder()
        .workers(1)
        .idle_timeout(Duration::from_millis(300))
        .retry(RetryPolicy::never())
        .start();
    let id = engine
        .send(Fetch::get(format!("{}/file", server.url)).max_rate(64 * 1024))
        .await
        .unwrap()
        .unwrap();
    let outcome = wait(&engine, id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
}

/// How long a limited transfer runs at full rate in the tests below: the rate is measured
/// from 20% to 90% of it, so the start (connection, the empty bucket) stays out of the window.
const RUN: f64 = 2.5;

/// The rate of transfer `id` between the moments its byte count (polled every 2 ms) passed
/// `from` and `to`. A transfer counts a chunk when it arrives and then sleeps off its cost, so
/// a count is known to be paid for when the next chunk arrives: each end of the window is taken
/// at such a change, with the count before it, so the window holds whole paid chunks and the
/// time they took. Bounded by `LIMIT`.
async fn rate_between(engine: &actix::Addr<Engine>, id: TransferId, from: u64, to: u64) -> f64 {
    let start = Instant::now();
    let mut last = 0;
    let mut first = None;
    loop {
        let s = engine.send(Status(id)).await.unwrap().unwrap();
        let now = Instant::now();
        if s.bytes_transferred != last {
            match first {
                None if last >= from => first = Some((now, last)),
                Some((t0, b0)) if last >= to => {
                    return (last - b0) as f64 / (now - t0).as_secs_f64();
                }
                _ => {}
            }
            last = s.bytes_transferred;
        }
        assert!(
            !s.state.is_ended() && start.elapsed() < LIMIT,
            "the window was never complete: {s:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The rate of `id` measured over the middle of a body of `total` bytes.
async fn steady_rate(engine: &actix::Addr<Engine>, id: TransferId, total: u64) -> f64 {
    rate_between(engine, id, total / 5, total * 9 / 10).await
}

/// A limit is a ceiling the transfer reaches: within -10% and +5% of it.
fn assert_reaches(what: &str, rate: f64, limit: u64) {
    let share = rate / limit as f64;
    assert!(
        (0.90..=1.05).contains(&share),
        "{what}: {rate:.0} B/s is {:.0}% of the {limit} B/s limit",
        share * 100.0
    );
}

/// A body that takes `RUN` seconds at `rate`.
fn sized(rate: u64) -> u64 {
    (rate as f64 * RUN) as u64
}

#[actix_rt::test]
async fn a_download_reaches_its_own_limit() {
    const RATES: [u64; 4] = [256 * 1024, 1 << 20, 4 << 20, 16 << 20];
    let body = content(sized(RATES[3]) as usize, 5);
    let server = ranged::start(body.clone());
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .workers(2)
        .download_dir(dir.path())
        .fsync(false)
        .start();
    let mut ids = Vec::new();
    for rate in RATES {
        let d = Download::new(format!("{}/file", server.url))
            .to(format!("f{rate}"))
            .max_rate(rate);
        ids.push(engine.send(d).await.unwrap().unwrap());
    }
    let measured = futures::future::join_all(
        ids.iter()
            .zip(RATES)
            .map(|(id, rate)| steady_rate(&engine, *id, sized(rate))),
    )
    .await;
    for (rate, limit) in measured.into_iter().zip(RATES) {
        assert_reaches("a download's own limit", rate, limit);
    }
    for id in ids {
        let _ = engine.send(Cancel(id)).await;
    }
}

#[actix_rt::test]
async fn one_download_reaches_the_engine_limit() {
    const RATES: [u64; 2] = [1 << 20, 8 << 20];
    let body = content(sized(RATES[1]) as usize, 6);
    let server = ranged::start(body);
    let dir = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for rate in RATES {
        let engine = Engine::builder()
            .workers(1)
            .download_dir(dir.path())
            .fsync(false)
            .max_rate(rate)
            .start();
        let d = Download::new(format!("{}/file", server.url)).to(format!("g{rate}"));
        let id = engine.send(d).await.unwrap().unwrap();
        runs.push((engine, id, rate));
    }
    let measured = futures::future::join_all(
        runs.iter()
            .map(|(engine, id, rate)| steady_rate(engine, *id, sized(*rate))),
    )
    .await;
    for (rate, (_, _, limit)) in measured.into_iter().zip(&runs) {
        assert_reaches("the engine's limit", rate, *limit);
    }
}

#[actix_rt::test]
async fn a_download_reaches_a_rate_set_while_it_runs() {
    let (before, after) = (512 * 1024, 8 << 20);
    let total = sized(after) + before;
    let server = ranged::start(content(total as usize, 7));
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .workers(1)
        .download_dir(dir.path())
        .fsync(false)
        .start();
    let d = Download::new(format!("{}/file", server.url))
        .to("s")
        .max_rate(before);
    let id = engine.send(d).await.unwrap().unwrap();
    // Half a second at the first rate, then the new one.
    rate_between(&engine, id, 1, before / 2).await;
    let set = SetRate {
        id,
        bytes_per_sec: Some(after),
    };
    assert_eq!(engine.send(set).await.unwrap(), Ok(()));
    let from = engine
        .send(Status(id))
        .await
        .unwrap()
        .unwrap()
        .bytes_transferred;
    let rate = rate_between(
        &engine,
        id,
        from + sized(after) / 5,
        from + sized(after) * 4 / 5,
    )
    .await;
    assert_reaches("a rate set with SetRate", rate, after);
}

#[actix_rt::test]
async fn fetches_and_uploads_reach_their_limits() {
    let rate = 4 << 20;
    let body = content(sized(rate) as usize, 8);
    let server = ranged::start(body.clone());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("up.bin");
    std::fs::write(&src, &body).unwrap();
    let engine = Engine::builder()
        .workers(2)
        .max_body(2 * body.len() as u64)
        .start();
    let fetch = Fetch::get(format!("{}/file", server.url)).max_rate(rate);
    let fetch = engine.send(fetch).await.unwrap().unwrap();
    let upload = Upload::new(format!("{}/upload", server.url), &src).max_rate(rate);
    let upload = engine.send(upload).await.unwrap().unwrap();
    let (fetched, uploaded) = futures::future::join(
        steady_rate(&engine, fetch, sized(rate)),
        steady_rate(&engine, upload, sized(rate)),
    )
    .await;
    assert_reaches("a fetch", fetched, rate);
    assert_reaches("an upload", uploaded, rate);
}

#[actix_rt::test]
async fn a_segmented_download_reaches_its_limit_and_no_more() {
    let rate = 4 << 20;
    let total = sized(rate);
    let body = content(total as usize, 9);
    let server = ranged::start(body.clone());
    let dir = tempfile::tempdir().unwrap();
    // Segments report their bytes on the progress tick: a short one keeps the window exact.
    let engine = Engine::builder()
        .workers(2)
        .download_dir(dir.path())
        .fsync(false)
        .progress_interval(Duration::from_millis(10))
        .start();
    let d = Download::new(format!("{}/file", server.url))
        .to("seg")
        .segments(4)
        .max_rate(rate);
    let id = engine.send(d).await.unwrap().unwrap();
    let measured = steady_rate(&engine, id, total).await;
    assert_reaches("a segmented download", measured, rate);
    let outcome = wait(&engine, id).await;
    assert_eq!(std::fs::read(outcome.path().unwrap()).unwrap(), body);
    let ranges = server.seen().iter().filter(|s| s.range.is_some()).count();
    assert_eq!(ranges, 3, "the download was segmented");
}
