//! Bandwidth limits: per transfer, global, and changed at run time. Elapsed time is only ever
//! checked from below (a limited transfer cannot be faster than its limit allows); how close
//! to the limit it runs is measured by the load bench.

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
        Err(CancelError::NotActive(EndState::Completed))
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
