//! `fleet`: jobs through Redis Streams (`actix_transfer::fleet`) against a local `redis-server`:
//! 4 KiB jobs through one node vs the same submitted to a local Engine, and 1, 2 and 3 nodes
//! (each an engine with its own worker thread, in this process) on a server that paces each
//! connection, where throughput should grow with the nodes. Skipped, with a note, when
//! `redis-server` is not installed.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use actix::Addr;
use actix_transfer::fleet::{Drain, Names, Node, NodeConfig};
use actix_transfer::{Engine, Fetch, RetryPolicy, Shutdown, Wait};

use crate::{metrics::median, opts::Opts, report::Report, server::PACE};

// The tests' support, shared rather than copied (its restart is for the tests alone).
#[path = "../../../tests/it/support/redis.rs"]
#[allow(dead_code)]
mod redis_server;

fn engine(dir: &Path, max_active: usize) -> Addr<Engine> {
    Engine::builder()
        .workers(1)
        .download_dir(dir)
        .max_active(max_active)
        .retry(RetryPolicy::never())
        .progress_interval(Duration::from_millis(250))
        // The local side waits for each fetch once all are submitted.
        .keep_ended(usize::MAX)
        .start()
}

/// Add `jobs` (field lists) to a fresh jobs stream and wait until `n` results exist: jobs/s.
async fn through_redis(
    conn: &mut redis::aio::MultiplexedConnection,
    jobs: Vec<Vec<(String, String)>>,
) -> f64 {
    let names = Names::default();
    let n = jobs.len();
    let start = Instant::now();
    let mut pipe = redis::pipe();
    for fields in jobs {
        pipe.cmd("XADD").arg(&names.jobs).arg("*");
        for (k, v) in fields {
            pipe.arg(k).arg(v);
        }
        pipe.ignore();
    }
    pipe.query_async::<()>(conn).await.unwrap();
    loop {
        let done: usize = redis::cmd("XLEN")
            .arg(&names.results)
            .query_async(conn)
            .await
            .unwrap();
        if done >= n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the fleet stalled"
        );
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Stop the nodes, then clear everything for the next run (results, guards, the group).
async fn clear(conn: &mut redis::aio::MultiplexedConnection, nodes: Vec<Addr<Node>>) {
    for node in nodes {
        node.send(Drain).await.unwrap();
    }
    redis::cmd("FLUSHALL")
        .query_async::<()>(conn)
        .await
        .unwrap();
}

async fn nodes(redis: &str, dirs: &[tempfile::TempDir], max_active: usize) -> Vec<Addr<Node>> {
    let mut out = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let cfg = NodeConfig::new(redis, format!("bench{i}"))
            .max_active(max_active)
            .prefetch(max_active.div_ceil(4))
            .block(Duration::from_millis(100));
        out.push(
            Node::start(engine(d.path(), max_active), cfg)
                .await
                .unwrap(),
        );
    }
    out
}

pub async fn run(o: &Opts, base: &str, _dir: &Path, report: &mut Report) {
    let installed = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        println!("fleet: skipped, redis-server is not installed (apt-get install redis-server)");
        return;
    }
    let server = redis_server::RedisServer::start().unwrap();
    let url = server.url();
    let mut conn = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let n = if o.quick { 500 } else { 5000 };
    let small = format!("{base}/bytes/4096");
    let (mut local, mut fleet) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        // The same fetches submitted to a local Engine, 64 at a time.
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 64);
        let start = Instant::now();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(e.send(Fetch::get(&small)).await.unwrap().unwrap());
        }
        for id in ids {
            let out = e.send(Wait(id)).await.unwrap().unwrap();
            assert!(out.is_completed(), "{out:?}");
        }
        local.push(n as f64 / start.elapsed().as_secs_f64());
        e.send(Shutdown).await.unwrap();

        // Through Redis: one node, 64 at a time.
        let dirs = [tempfile::tempdir().unwrap()];
        let ns = nodes(&url, &dirs, 64).await;
        let jobs = (0..n)
            .map(|_| {
                vec![
                    ("url".into(), small.clone()),
                    ("kind".into(), "fetch".into()),
                ]
            })
            .collect();
        fleet.push(through_redis(&mut conn, jobs).await);
        clear(&mut conn, ns).await;
    }
    let (local, fleet) = (median(local), median(fleet));
    report.add(
        "fleet",
        "4 KiB fetches, local Engine (64 active)",
        local,
        "jobs/s",
    );
    report.add(
        "fleet",
        "4 KiB jobs through Redis, 1 node (64 active)",
        fleet,
        "jobs/s",
    );
    report.ratio(
        "fleet",
        "through Redis / local",
        "local",
        fleet / local,
        0.5,
        true,
    );

    // Paced downloads: each node runs 2 at a time, each connection at `PACE`.
    let size: u64 = if o.quick { 2 << 20 } else { 8 << 20 };
    let jobs = if o.quick { 24 } else { 96 };
    let mut per_nodes = Vec::new();
    for k in 1..=3 {
        let mut rates = Vec::new();
        for round in 0..o.rounds {
            let dirs: Vec<tempfile::TempDir> =
                (0..k).map(|_| tempfile::tempdir().unwrap()).collect();
            let ns = nodes(&url, &dirs, 2).await;
            let list = (0..jobs)
                .map(|i| {
                    vec![
                        ("url".into(), format!("{base}/paced/{size}")),
                        ("path".into(), format!("p{round}-{i}")),
                    ]
                })
                .collect();
            rates.push(through_redis(&mut conn, list).await);
            clear(&mut conn, ns).await;
        }
        let r = median(rates);
        per_nodes.push(r);
        report.add(
            "fleet",
            &format!(
                "{} MiB paced at {} MiB/s per connection, {k} node(s) x 2 active",
                size >> 20,
                PACE as u64 >> 20
            ),
            r,
            "jobs/s",
        );
    }
    report.ratio(
        "fleet",
        "3 nodes / 1 node (paced)",
        "1 node",
        per_nodes[2] / per_nodes[0],
        2.5,
        true,
    );
    drop(server);
}
