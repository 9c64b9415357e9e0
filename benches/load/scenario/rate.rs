//! `rate`: a global bandwidth limit: the achieved rate against it.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use actix::Addr;
use actix_transfer::{Cancel, Engine, Fetch, SetLimits, Shutdown, Status, TransferId};

use crate::{engine::engine_with, opts::Opts, report::Report};

/// A global bandwidth limit shared by 4 downloads: the achieved rate over the measured window
/// vs the limit.
pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let secs = if o.quick { 2.0 } else { 5.0 };
    let limit: u64 = 4 << 20;
    let (engine, _ends, _a) = engine_with(dir, 16).await;
    engine
        .send(SetLimits {
            max_rate: Some(Some(limit)),
            ..SetLimits::default()
        })
        .await
        .unwrap();
    let url = format!("{base}/bytes/{}", 1u64 << 34);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            engine
                .send(Fetch::get(&url).max_body(u64::MAX))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let total = |engine: Addr<Engine>, ids: Vec<TransferId>| async move {
        let mut sum = 0;
        for id in ids {
            sum += engine
                .send(Status(id))
                .await
                .unwrap()
                .unwrap()
                .bytes_transferred;
        }
        sum
    };
    actix_rt::time::sleep(Duration::from_millis(500)).await; // past the first burst
    let (b0, t0) = (total(engine.clone(), ids.clone()).await, Instant::now());
    actix_rt::time::sleep(Duration::from_secs_f64(secs)).await;
    let rate = (total(engine.clone(), ids.clone()).await - b0) as f64 / t0.elapsed().as_secs_f64();
    for id in &ids {
        let _ = engine.send(Cancel(*id)).await;
    }
    report.target(
        "rate",
        &format!("global limit {} MiB/s, 4 transfers", limit >> 20),
        rate / limit as f64,
        "x",
        0.9,
        true,
    );
    report.target(
        "rate",
        "global limit: not exceeded",
        rate / limit as f64,
        "x",
        1.1,
        false,
    );
    engine.send(Shutdown).await.unwrap();
}
