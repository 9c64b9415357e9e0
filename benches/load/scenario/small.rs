//! `small`: 4 KiB fetches into memory at 64 and 256 in flight, in each layout and each way of
//! feeding the engine, against bare awc and curl.

use std::{
    collections::HashMap,
    io::Write,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use actix_transfer::{Fetch, Shutdown, TransferId, Wait};
use futures::StreamExt;

use crate::{
    bare::{bare_client, curl, timed_command},
    engine::{engine_on, LAYOUTS},
    floor::floor_fetches,
    metrics::{cpu_time, median, percentile},
    opts::Opts,
    report::Report,
};

/// How the small scenario keeps `conc` fetches in flight through the engine.
#[derive(Clone, Copy)]
enum Feed {
    /// All `n` submitted at once (each `send` awaited, as a caller would); the engine's
    /// admission (`max_active(conc)`) starts them as slots free.
    Queued,
    /// The caller keeps `conc` in flight, as bare awc's `buffer_unordered(conc)` does: a
    /// `Fetch` and then a `Wait` for its outcome, the next one when one ends.
    ClosedLoop,
}

const FEEDS: [(Feed, &str); 2] = [
    (Feed::Queued, "all queued"),
    (Feed::ClosedLoop, "closed loop"),
];

/// `n` fetches of `url`, `conc` at a time, until every `Ended` arrived: (transfers/s, client
/// CPU us per transfer, p50 ms, p99 ms from submission to `Ended`).
async fn engine_fetches(
    workers: usize,
    feed: Feed,
    dir: &Path,
    url: &str,
    n: usize,
    conc: usize,
) -> [f64; 4] {
    let (engine, ends, _a) = engine_on(workers, dir, conc).await;
    let cpu0 = cpu_time();
    let start = Instant::now();
    let mut submitted = HashMap::with_capacity(n);
    match feed {
        Feed::Queued => {
            for _ in 0..n {
                let t = Instant::now();
                let id = engine.send(Fetch::get(url)).await.unwrap().unwrap();
                submitted.insert(id, t);
            }
        }
        Feed::ClosedLoop => {
            let engine = &engine;
            let ids: Vec<(TransferId, Instant)> = futures::stream::iter(0..n)
                .map(|_| async move {
                    let t = Instant::now();
                    let id = engine.send(Fetch::get(url)).await.unwrap().unwrap();
                    let outcome = engine.send(Wait(id)).await.unwrap().expect("a known id");
                    assert!(outcome.is_completed(), "{outcome:?}");
                    (id, t)
                })
                .buffer_unordered(conc)
                .collect()
                .await;
            submitted.extend(ids);
        }
    }
    ends.wait_for(n, Duration::from_secs(300)).await;
    let elapsed = start.elapsed();
    let cpu = (cpu_time() - cpu0).as_secs_f64() * 1e6 / n as f64;
    let mut lat: Vec<Duration> = ends
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(id, end)| {
            assert_eq!(end.failure, None);
            end.at - submitted[id]
        })
        .collect();
    lat.sort();
    engine.send(Shutdown).await.unwrap();
    [
        n as f64 / elapsed.as_secs_f64(),
        cpu,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    ]
}

pub async fn run(o: &Opts, base: &str, dir: &Path, report: &mut Report) {
    let n: usize = if o.quick { 2_000 } else { 10_000 };
    let url = format!("{base}/bytes/4096");
    for conc in [64usize, 256] {
        // Per (layout, feed): [transfers/s, cpu, p50, p99] of each round.
        let variants: Vec<(usize, Feed, String)> = LAYOUTS
            .iter()
            .flat_map(|(workers, layout)| {
                FEEDS
                    .iter()
                    .map(move |(feed, how)| (*workers, *feed, format!("{layout}, {how}")))
            })
            .collect();
        let mut ours: Vec<Vec<[f64; 4]>> = vec![Vec::new(); variants.len()];
        let (mut bare, mut cpu_bare, mut lat_bare) = (Vec::new(), Vec::new(), Vec::new());
        // Per layout: the floor's CPU per request and transfers/s of each round.
        let mut cpu_floor: Vec<Vec<f64>> = vec![Vec::new(); LAYOUTS.len()];
        let mut rate_floor: Vec<Vec<f64>> = vec![Vec::new(); LAYOUTS.len()];
        for _ in 0..o.rounds {
            for (i, (workers, feed, _)) in variants.iter().enumerate() {
                ours[i].push(engine_fetches(*workers, *feed, dir, &url, n, conc).await);
            }

            let client = bare_client();
            let cpu0 = cpu_time();
            let start = Instant::now();
            let (client, url) = (&client, url.as_str());
            let mut times: Vec<Duration> = futures::stream::iter(0..n)
                .map(|_| async move {
                    let t = Instant::now();
                    let mut r = client.get(url).send().await.expect("bare");
                    assert_eq!(r.body().await.expect("bare body").len(), 4096);
                    t.elapsed()
                })
                .buffer_unordered(conc)
                .collect()
                .await;
            bare.push(n as f64 / start.elapsed().as_secs_f64());
            cpu_bare.push((cpu_time() - cpu0).as_secs_f64() * 1e6 / n as f64);
            times.sort();
            lat_bare.push([
                percentile(&times, 0.5).as_secs_f64() * 1e3,
                percentile(&times, 0.99).as_secs_f64() * 1e3,
            ]);

            for (k, (workers, _)) in LAYOUTS.into_iter().enumerate() {
                let (cpu0, start) = (cpu_time(), Instant::now());
                floor_fetches(workers, url, 4096, n, conc).await;
                rate_floor[k].push(n as f64 / start.elapsed().as_secs_f64());
                cpu_floor[k].push((cpu_time() - cpu0).as_secs_f64() * 1e6 / n as f64);
            }
        }
        let bare = median(bare);
        let s = format!("{n} x 4 KiB @{conc}");
        report.add("small", &format!("{s}: bare awc"), bare, "/s");
        for (k, p) in ["p50", "p99"].iter().enumerate() {
            report.add(
                "small",
                &format!("@{conc} bare awc {p} request time"),
                median(lat_bare.iter().map(|l| l[k]).collect()),
                "ms",
            );
        }
        let cpu_bare = median(cpu_bare);
        report.add(
            "small",
            &format!("@{conc} bare awc CPU per transfer"),
            cpu_bare,
            "us",
        );
        let cpu_floor: Vec<f64> = cpu_floor.into_iter().map(median).collect();
        for ((floor, rate), (_, layout)) in cpu_floor.iter().zip(rate_floor).zip(LAYOUTS) {
            report.add(
                "small",
                &format!("@{conc} floor, {layout}: transfers/s vs bare awc"),
                median(rate) / bare,
                "x",
            );
            report.add(
                "small",
                &format!("@{conc} floor (an actor per request), {layout}: CPU per transfer"),
                *floor,
                "us",
            );
            report.add(
                "small",
                &format!("@{conc} floor, {layout}: CPU per transfer vs bare awc"),
                floor / cpu_bare,
                "x",
            );
        }
        let curl_rate = curl().and_then(|curl| {
            let list = dir.join("urls.txt");
            let mut f = std::fs::File::create(&list).unwrap();
            for _ in 0..n {
                writeln!(f, "url = \"{url}\"\noutput = \"/dev/null\"").unwrap();
            }
            let conc_s = conc.to_string();
            let t = timed_command(
                Command::new(curl)
                    .args(["-s", "--parallel", "--parallel-max", &conc_s, "-K"])
                    .arg(&list),
            )?;
            Some(n as f64 / t.as_secs_f64())
        });
        if let Some(c) = curl_rate {
            report.add("small", &format!("{s}: curl --parallel"), c, "/s");
        }
        for (i, (workers, _, layout)) in variants.iter().enumerate() {
            let floor = LAYOUTS
                .iter()
                .position(|(w, _)| w == workers)
                .map(|k| cpu_floor[k]);
            let col = |k: usize| median(ours[i].iter().map(|r| r[k]).collect());
            let rate = col(0);
            let m = |what: &str| format!("@{conc} {layout}: {what}");
            report.add(
                "small",
                &format!("{s}: actix-transfer, {layout}"),
                rate,
                "/s",
            );
            report.ratio(
                "small",
                &m("transfers/s vs bare awc"),
                "awc",
                rate / bare,
                0.7,
                true,
            );
            if let Some(c) = curl_rate {
                report.ratio(
                    "small",
                    &m("transfers/s vs curl"),
                    "curl",
                    rate / c,
                    2.5,
                    true,
                );
            }
            report.target(
                "small",
                &m("client CPU per transfer"),
                col(1),
                "us",
                30.0,
                false,
            );
            report.ratio(
                "small",
                &m("client CPU per transfer vs bare awc"),
                "awc",
                col(1) / cpu_bare,
                1.5,
                false,
            );
            report.add(
                "small",
                &m("client CPU per transfer vs the floor"),
                col(1) / floor.expect("a floor for every layout"),
                "x",
            );
            report.add("small", &m("p50 submit->Ended"), col(2), "ms");
            report.add("small", &m("p99 submit->Ended"), col(3), "ms");
        }
    }
}
