//! The fleet (feature `redis`): nodes sharing jobs through a real `redis-server`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_transfer::fleet::{Drain, Fleet, JobSpec, Names, Node, NodeConfig};
use actix_transfer::*;

use crate::support::redis::RedisServer;
use crate::support::{pattern, server, LIMIT};

type Entry = HashMap<String, String>;

/// Poll `cond` every 10 ms until it holds, for at most `limit`.
async fn until_within<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The test's own connection; the redis crate's default response timeout (500 ms) is too
/// short for reading thousands of results on a busy machine.
async fn conn(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(LIMIT));
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// Every entry of `stream`, with its fields.
async fn entries(c: &mut redis::aio::MultiplexedConnection, stream: &str) -> Vec<Entry> {
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(c)
        .await
        .unwrap();
    reply
        .ids
        .into_iter()
        .map(|e| {
            e.map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    redis::Value::BulkString(b) => Some((k, String::from_utf8(b).unwrap())),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// How many results were written.
async fn written(c: &mut redis::aio::MultiplexedConnection) -> usize {
    redis::cmd("XLEN")
        .arg(Names::default().results)
        .query_async(c)
        .await
        .unwrap()
}

async fn results(c: &mut redis::aio::MultiplexedConnection) -> Vec<Entry> {
    entries(c, &Names::default().results).await
}

/// Jobs pending in the group: in all, and on `consumer`.
async fn pending(c: &mut redis::aio::MultiplexedConnection, consumer: &str) -> (usize, usize) {
    let names = Names::default();
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(&names.jobs)
        .arg(&names.group)
        .query_async(c)
        .await
        .unwrap();
    let redis::Value::Array(items) = summary else {
        panic!("XPENDING answered {summary:?}")
    };
    let total = match &items[0] {
        redis::Value::Int(n) => *n as usize,
        other => panic!("XPENDING count {other:?}"),
    };
    let mine = match &items[3] {
        redis::Value::Array(consumers) => consumers
            .iter()
            .find_map(|c| match c {
                redis::Value::Array(pair) if pair.len() == 2 => {
                    let name = redis::from_redis_value::<String>(pair[0].clone()).ok()?;
                    let n = redis::from_redis_value::<String>(pair[1].clone()).ok()?;
                    (name == consumer).then(|| n.parse().unwrap())
                }
                _ => None,
            })
            .unwrap_or(0),
        _ => 0,
    };
    (total, mine)
}

/// The one result for each key; fails on a key with two.
fn by_key(results: &[Entry]) -> HashMap<String, Entry> {
    let mut out = HashMap::new();
    for r in results {
        let prev = out.insert(r["key"].clone(), r.clone());
        assert!(
            prev.is_none(),
            "two results for key {}: {prev:?} and {r:?}",
            r["key"]
        );
    }
    out
}

fn engine(dir: &Path, max_active: usize) -> Addr<Engine> {
    Engine::builder()
        .workers(1)
        .max_active(max_active)
        .download_dir(dir)
        .retry(RetryPolicy::never())
        .start()
}

fn config(redis: &RedisServer, name: &str, max_active: usize) -> NodeConfig {
    NodeConfig::new(redis.url(), name)
        .max_active(max_active)
        .block(Duration::from_millis(100))
}

async fn fleet(redis: &RedisServer) -> Fleet {
    Fleet::connect(&redis.url(), Names::default())
        .await
        .unwrap()
}

#[actix_rt::test]
async fn every_job_gets_exactly_one_result_and_its_file_is_byte_exact() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine(dir.path(), 4), config(&redis, "n1", 4))
        .await
        .unwrap();
    let client = fleet(&redis).await;
    let sizes: Vec<usize> = (0..40).map(|i| 1 + i * 997).collect();
    for (i, n) in sizes.iter().enumerate() {
        let job = JobSpec::download(srv.url(&format!("/bytes/{n}")))
            .key(format!("k{i}"))
            .path(format!("f/{i}.bin"));
        client.submit(&job).await.unwrap();
    }
    // One bad job: a result that says why, not a lost entry.
    client
        .submit(&JobSpec::default().key("bad").field("kind", "download"))
        .await
        .unwrap();
    let mut c = conn(&redis).await;
    let want = sizes.len() + 1;
    until_within("every job has a result", LIMIT, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= want }
    })
    .await;
    let all = by_key(&results(&mut c).await);
    assert_eq!(all.len(), sizes.len() + 1);
    for (i, n) in sizes.iter().enumerate() {
        let r = &all[&format!("k{i}")];
        assert_eq!(r["outcome"], "completed", "{r:?}");
        assert_eq!(r["node"], "n1");
        assert_eq!(r["bytes"], n.to_string());
        assert_eq!(r["status"], "200");
        assert_eq!(r["attempts"], "1");
        assert_eq!(std::fs::read(&r["path"]).unwrap(), pattern(*n), "{i}");
    }
    assert_eq!(all["bad"]["outcome"], "failed");
    assert_eq!(all["bad"]["error_kind"], "invalid_job");
    assert!(all["bad"]["error"].contains("url"), "{:?}", all["bad"]);
    // Nothing pending, nothing left in the jobs stream.
    assert_eq!(pending(&mut c, "n1").await, (0, 0));
    let left: usize = redis::cmd("XLEN")
        .arg(Names::default().jobs)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0);
    node.send(Drain).await.unwrap();
}

#[actix_rt::test]
async fn a_slow_node_finishing_a_reclaimed_job_writes_no_second_result() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Node A is slow (a 64 KiB/s engine) and refreshes its jobs rarely: to the fleet it looks
    // stopped, so B claims its job after B's short idle time.
    let slow_engine = Engine::builder()
        .workers(1)
        .download_dir(dir_a.path())
        .max_rate(64 * 1024)
        .retry(RetryPolicy::never())
        .start();
    let a = Node::start(
        slow_engine,
        config(&redis, "a", 1)
            .claim_idle(Duration::from_secs(60))
            .heartbeat(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let client = fleet(&redis).await;
    let n = 160 * 1024;
    client
        .submit(
            &JobSpec::download(srv.url(&format!("/slow/{n}")))
                .key("once")
                .path("x"),
        )
        .await
        .unwrap();
    let mut c = conn(&redis).await;
    until_within("A took the job", LIMIT, || {
        let mut c = c.clone();
        async move { pending(&mut c, "a").await.1 == 1 }
    })
    .await;
    let b = Node::start(
        engine(dir_b.path(), 1),
        config(&redis, "b", 1).claim_idle(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    until_within("B wrote the result", LIMIT, || {
        let mut c = c.clone();
        async move { written(&mut c).await > 0 }
    })
    .await;
    // A finishes its run of the job too (Drain resolves once its end was written).
    actix_rt::time::timeout(LIMIT, a.send(Drain))
        .await
        .expect("A ended its job")
        .unwrap();
    let all = results(&mut c).await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["node"], "b");
    assert_eq!(all[0]["attempts"], "2");
    assert_eq!(std::fs::read(&all[0]["path"]).unwrap(), pattern(n));
    assert_eq!(pending(&mut c, "a").await, (0, 0));
    b.send(Drain).await.unwrap();
}

#[actix_rt::test]
async fn a_fleet_cancel_stops_a_running_job_and_removes_a_waiting_one() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    // One slot and no prefetch: the second job waits in the stream.
    let node = Node::start(
        engine(dir.path(), 1),
        config(&redis, "n1", 1)
            .prefetch(0)
            .progress_interval(Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let client = fleet(&redis).await;
    client
        .submit(
            &JobSpec::download(srv.url("/slow/50000000"))
                .key("running")
                .path("r"),
        )
        .await
        .unwrap();
    client
        .submit(
            &JobSpec::download(srv.url("/bytes/777"))
                .key("waiting")
                .path("w"),
        )
        .await
        .unwrap();
    let mut c = conn(&redis).await;
    // The first is running when its progress reaches the fleet's progress stream.
    until_within("the first job reports progress", LIMIT, || {
        let mut c = c.clone();
        async move {
            entries(&mut c, &Names::default().progress())
                .await
                .iter()
                .any(|p| p["key"] == "running" && p["bytes"] != "0")
        }
    })
    .await;
    assert_eq!(
        pending(&mut c, "n1").await,
        (1, 1),
        "the second job is not taken"
    );
    client.cancel("waiting").await.unwrap();
    client.cancel("running").await.unwrap();
    until_within("both have results", LIMIT, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= 2 }
    })
    .await;
    let all = by_key(&results(&mut c).await);
    assert_eq!(all["running"]["outcome"], "cancelled");
    assert_eq!(all["waiting"]["outcome"], "cancelled");
    assert!(
        !srv.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|p| p == "/bytes/777"),
        "the waiting job was never requested"
    );
    assert_eq!(
        crate::support::files(dir.path()),
        Vec::<std::path::PathBuf>::new()
    );
    let left: usize = redis::cmd("XLEN")
        .arg(Names::default().jobs)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 0, "the cancelled waiting job was removed");
    node.send(Drain).await.unwrap();
}

#[actix_rt::test]
async fn a_node_never_holds_more_than_its_limit_plus_prefetch() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let (limit, prefetch) = (2, 1);
    let node = Node::start(
        engine(dir.path(), limit),
        config(&redis, "n1", limit).prefetch(prefetch),
    )
    .await
    .unwrap();
    let client = fleet(&redis).await;
    let jobs = 16;
    for i in 0..jobs {
        client
            .submit(
                &JobSpec::download(srv.url("/slow/40960"))
                    .key(format!("k{i}"))
                    .path(format!("{i}")),
            )
            .await
            .unwrap();
    }
    let mut c = conn(&redis).await;
    let (mut most, start) = (0, Instant::now());
    loop {
        let (_, mine) = pending(&mut c, "n1").await;
        assert!(mine <= limit + prefetch, "{mine} jobs pending on the node");
        most = most.max(mine);
        if written(&mut c).await == jobs {
            break;
        }
        assert!(start.elapsed() < LIMIT, "the jobs did not end");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(most, limit + prefetch, "the node filled its room");
    let all = by_key(&results(&mut c).await);
    assert!(all.values().all(|r| r["outcome"] == "completed"));
    node.send(Drain).await.unwrap();
}

#[actix_rt::test]
async fn a_node_reconnects_after_a_redis_restart_and_loses_nothing() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine(dir.path(), 4), config(&redis, "n1", 4))
        .await
        .unwrap();
    let client = fleet(&redis).await;
    let jobs = 60;
    for i in 0..jobs {
        client
            .submit(
                &JobSpec::download(srv.url("/slow/20480"))
                    .key(format!("k{i}"))
                    .path(format!("{i}")),
            )
            .await
            .unwrap();
    }
    let mut c = conn(&redis).await;
    until_within("some results are written", LIMIT, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= 5 }
    })
    .await;
    let before = results(&mut c).await;
    redis.stop();
    // While Redis is down, running transfers end and their results wait in the node.
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let mut c = conn(&redis).await;
    until_within("every job has a result after the restart", LIMIT, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= jobs }
    })
    .await;
    let after = results(&mut c).await;
    let all = by_key(&after);
    assert_eq!(all.len(), jobs);
    for r in &before {
        assert!(
            after.contains(r),
            "a result written before the restart was lost: {r:?}"
        );
    }
    for r in all.values() {
        assert_eq!(r["outcome"], "completed", "{r:?}");
        assert_eq!(std::fs::read(&r["path"]).unwrap(), pattern(20480));
    }
    assert_eq!(pending(&mut c, "n1").await, (0, 0));
    node.send(Drain).await.unwrap();
}

/// `Fleet::results` with a wait longer than the redis crate's default response timeout
/// (500 ms) waits for the result instead of failing with "timed out" (what
/// `fleet results --follow` did while no job ended), and returns nothing when none came.
#[actix_rt::test]
async fn reading_results_waits_as_long_as_asked() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let client = fleet(&redis).await;
    let empty = client
        .results("0", 10, Some(Duration::from_millis(1200)))
        .await
        .expect("a wait with no result is not an error");
    assert!(empty.is_empty(), "{empty:?}");
    // A result written while the reader waits (Redis counts it among its blocked clients) is
    // returned by that read.
    let writer = {
        let mut c = conn(&redis).await;
        async move {
            until_within("the reader waits in Redis", LIMIT, || {
                let mut c = c.clone();
                async move {
                    let info: String = redis::cmd("INFO")
                        .arg("clients")
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    info.lines()
                        .find_map(|l| l.strip_prefix("blocked_clients:"))
                        .is_some_and(|n| n.trim() != "0")
                }
            })
            .await;
            let _: String = redis::cmd("XADD")
                .arg(Names::default().results)
                .arg("*")
                .arg("key")
                .arg("k")
                .query_async(&mut c)
                .await
                .unwrap();
        }
    };
    let (read, ()) = futures::join!(client.results("0", 10, Some(LIMIT)), writer);
    let read = read.expect("the wait ends with the result");
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].1, vec![("key".to_string(), "k".to_string())]);
}

/// How many times Redis refused `EXISTS` (the node's guard check) since the ACL log began.
async fn refused_checks(c: &mut redis::aio::MultiplexedConnection) -> i64 {
    let log: Vec<HashMap<String, redis::Value>> =
        redis::cmd("ACL").arg("LOG").query_async(c).await.unwrap();
    log.iter()
        .filter(|e| {
            e.get("object")
                .and_then(|o| redis::from_redis_value::<String>(o.clone()).ok())
                .is_some_and(|o| o == "exists")
        })
        .filter_map(|e| redis::from_redis_value::<i64>(e.get("count")?.clone()).ok())
        .sum()
}

/// A job read just before Redis stopped answering: its guard check fails, and the node checks
/// again while it keeps the job (and keeps it from looking idle), instead of dropping it to be
/// claimed again. Redis refusing `EXISTS` for a while (an ACL rule) stands in for the outage,
/// so the failure lands exactly between the read and the check.
#[actix_rt::test]
async fn a_job_whose_guard_check_failed_is_checked_again_and_runs_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&redis, "n1", 1).claim_idle(Duration::from_millis(300));
    let node = Node::start(engine(dir.path(), 1), cfg).await.unwrap();
    let mut c = conn(&redis).await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-exists")
        .query_async(&mut c)
        .await
        .unwrap();
    let client = fleet(&redis).await;
    client
        .submit(&JobSpec::download(srv.url("/bytes/4096")).key("k").path("k"))
        .await
        .unwrap();
    // Refused three times: longer than the claim idle time, had the node let go of the job.
    until_within("the node's check was refused three times", LIMIT, || {
        let mut c = c.clone();
        async move { refused_checks(&mut c).await >= 3 }
    })
    .await;
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("+exists")
        .query_async(&mut c)
        .await
        .unwrap();
    until_within("the job has its result", LIMIT, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= 1 }
    })
    .await;
    let all = by_key(&results(&mut c).await);
    assert_eq!(all["k"]["outcome"], "completed", "{:?}", all["k"]);
    assert_eq!(all["k"]["attempts"], "1", "delivered once: {:?}", all["k"]);
    assert_eq!(std::fs::read(&all["k"]["path"]).unwrap(), pattern(4096));
    assert_eq!(pending(&mut c, "n1").await, (0, 0));
    node.send(Drain).await.unwrap();
}

/// The environment of the child mode of `three_nodes_one_killed_every_job_ends_once`.
const CHILD_REDIS: &str = "ACTIX_TRANSFER_TEST_FLEET_REDIS";
const CHILD_NAME: &str = "ACTIX_TRANSFER_TEST_FLEET_NAME";
const CHILD_DIR: &str = "ACTIX_TRANSFER_TEST_FLEET_DIR";

/// Not a test of its own: one node process of `three_nodes_one_killed_every_job_ends_once`,
/// which runs this test binary again with `CHILD_REDIS` set. It runs a node until killed.
#[actix_rt::test]
#[ignore = "a node process of three_nodes_one_killed_every_job_ends_once"]
async fn child_fleet_node() {
    let (Ok(url), Ok(name), Ok(dir)) = (
        std::env::var(CHILD_REDIS),
        std::env::var(CHILD_NAME),
        std::env::var(CHILD_DIR),
    ) else {
        return;
    };
    let engine = Engine::builder()
        .workers(1)
        .max_active(16)
        .download_dir(&dir)
        .retry(RetryPolicy::never())
        .start();
    let cfg = NodeConfig::new(url, name)
        .max_active(16)
        .prefetch(8)
        .claim_idle(Duration::from_secs(1))
        .heartbeat(Duration::from_millis(200))
        .block(Duration::from_millis(200));
    let _node = Node::start(engine, cfg).await.unwrap();
    println!("FLEET-NODE-READY");
    // Until the parent kills this process.
    actix_rt::time::sleep(Duration::from_secs(300)).await;
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_rt::test]
async fn three_nodes_one_killed_every_job_ends_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<Kill> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            Kill(
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "fleet::child_fleet_node",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_REDIS, redis.url())
                    .env(CHILD_NAME, format!("node{i}"))
                    .env(CHILD_DIR, d.path())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // Small jobs, and every 25th a paced large one (about half a second each).
    let jobs = 3000;
    let size = |i: usize| {
        if i.is_multiple_of(25) {
            384 * 1024
        } else {
            1 + (i * 131) % 16384
        }
    };
    let url = |i: usize| {
        if i.is_multiple_of(25) {
            srv.url(&format!("/slow/{}", size(i)))
        } else {
            srv.url(&format!("/bytes/{}", size(i)))
        }
    };
    let mut c = conn(&redis).await;
    let mut pipe = redis::pipe();
    for i in 0..jobs {
        pipe.cmd("XADD")
            .arg(Names::default().jobs)
            .arg("*")
            .arg("url")
            .arg(url(i))
            .arg("key")
            .arg(format!("k{i}"))
            .arg("path")
            .arg(format!("{}/{i}", i % 10))
            .ignore();
    }
    pipe.query_async::<()>(&mut c).await.unwrap();
    until_within("a third of the jobs ended", LIMIT * 2, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= jobs / 3 }
    })
    .await;
    // node1 dies with jobs in flight: its pending jobs must be claimed by the others.
    let (_, held) = pending(&mut c, "node1").await;
    let victim = &mut nodes[1].0;
    victim.kill().unwrap();
    victim.wait().unwrap();
    until_within("every job ended", LIMIT * 4, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= jobs }
    })
    .await;
    let all = by_key(&results(&mut c).await);
    assert_eq!(all.len(), jobs);
    for i in 0..jobs {
        let r = &all[&format!("k{i}")];
        assert_eq!(r["outcome"], "completed", "{r:?}");
        assert_eq!(
            std::fs::read(&r["path"]).unwrap(),
            pattern(size(i)),
            "job {i}"
        );
    }
    let claimed = all.values().filter(|r| r["attempts"] != "1").count();
    assert_eq!(
        pending(&mut c, "node0").await.0,
        0,
        "nothing is left pending"
    );
    eprintln!("node1 held {held} jobs when killed; {claimed} jobs ran again elsewhere");
}

#[actix_rt::test]
async fn a_retryable_failure_runs_again_up_to_the_count_and_a_permanent_one_never() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        engine(dir.path(), 2),
        config(&redis, "n1", 2).max_attempts(3),
    )
    .await
    .unwrap();
    let client = fleet(&redis).await;
    client
        .submit(&JobSpec::download(srv.url("/status/503")).key("busy"))
        .await
        .unwrap();
    client
        .submit(&JobSpec::download(srv.url("/status/404")).key("gone"))
        .await
        .unwrap();
    let mut c = conn(&redis).await;
    until_within("both have results", LIMIT, || {
        let mut c = c.clone();
        async move { written(&mut c).await >= 2 }
    })
    .await;
    let all = by_key(&results(&mut c).await);
    assert_eq!(all["busy"]["outcome"], "failed");
    assert_eq!(all["busy"]["status"], "503");
    assert_eq!(all["busy"]["attempts"], "3");
    assert_eq!(all["gone"]["error_kind"], "server");
    assert_eq!(all["gone"]["attempts"], "1");
    let requests = srv.state.requests.lock().unwrap().clone();
    let count = |p: &str| requests.iter().filter(|r| *r == p).count();
    assert_eq!(
        count("/status/503"),
        3,
        "a retryable failure runs 3 times in all"
    );
    assert_eq!(
        count("/status/404"),
        1,
        "a permanent failure is never run again"
    );
    assert_eq!(pending(&mut c, "n1").await, (0, 0));
    node.send(Drain).await.unwrap();
}

/// Redis lost the group (a restart without persistence, an operator's `XGROUP DESTROY`) while
/// a job ran: its result is still written once, the node lets go of the job and its reads
/// create the group again.
#[actix_rt::test]
async fn a_lost_group_does_not_stall_a_result() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine(dir.path(), 1), config(&redis, "n1", 1))
        .await
        .unwrap();
    let client = fleet(&redis).await;
    client
        .submit(
            &JobSpec::download(srv.url("/slow/409600"))
                .key("k")
                .path("k"),
        )
        .await
        .unwrap();
    let mut c = conn(&redis).await;
    until_within("the node took the job", LIMIT, || {
        let mut c = c.clone();
        async move { pending(&mut c, "n1").await.1 == 1 }
    })
    .await;
    let names = Names::default();
    let _: i64 = redis::cmd("XGROUP")
        .arg("DESTROY")
        .arg(&names.jobs)
        .arg(&names.group)
        .query_async(&mut c)
        .await
        .unwrap();
    actix_rt::time::timeout(LIMIT, node.send(Drain))
        .await
        .expect("the node let go of its job")
        .unwrap();
    let all = by_key(&results(&mut c).await);
    assert_eq!(all["k"]["outcome"], "completed");
    assert_eq!(std::fs::read(&all["k"]["path"]).unwrap(), pattern(409600));
}

/// What Ctrl-C does in `examples/fleet.rs`: a drained node takes no new job, finishes the ones
/// it holds and writes their results; the others stay in the stream for other nodes.
#[actix_rt::test]
async fn a_drained_node_finishes_what_it_holds_and_takes_nothing_more() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let srv = server();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(engine(dir.path(), 2), config(&redis, "n1", 2).prefetch(0))
        .await
        .unwrap();
    let client = fleet(&redis).await;
    for i in 0..6 {
        client
            .submit(
                &JobSpec::download(srv.url("/slow/204800"))
                    .key(format!("k{i}"))
                    .path(format!("{i}")),
            )
            .await
            .unwrap();
    }
    let mut c = conn(&redis).await;
    until_within("the node holds two jobs", LIMIT, || {
        let mut c = c.clone();
        async move { pending(&mut c, "n1").await.1 == 2 }
    })
    .await;
    actix_rt::time::timeout(LIMIT, node.send(Drain))
        .await
        .expect("the drain ended")
        .unwrap();
    let all = by_key(&results(&mut c).await);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.values().all(|r| r["outcome"] == "completed"));
    assert_eq!(pending(&mut c, "n1").await, (0, 0));
    let left: usize = redis::cmd("XLEN")
        .arg(Names::default().jobs)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left, 4, "the jobs it did not take wait for other nodes");
}
