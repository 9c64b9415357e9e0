//! The `Node` actor: reads jobs from the group, runs them on its Engine, writes results.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::oneshot;
use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{RedisError, Script};

use super::job::{now_ms, Job, ResultBase, ResultFields, Submission};
use super::{string_fields, Names, FINISH, REQUEUE, TOUCH};
use crate::{
    Cancel, Engine, EventKind, EventKinds, Outcome, Subscribe, TransferEvent, TransferId, Wait,
};

/// Why a node could not start, or a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The Redis URL could not be read.
    #[error("the Redis URL is not valid: {0}")]
    Url(#[source] RedisError),
    /// Redis could not be reached.
    #[error("cannot connect to Redis: {0}")]
    Connect(#[source] RedisError),
    /// A command failed.
    #[error("a Redis command failed: {0}")]
    Redis(#[source] RedisError),
}

/// How a node runs (every option with its default).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    redis: String,
    name: String,
    names: Names,
    max_active: usize,
    prefetch: usize,
    claim_idle: Duration,
    heartbeat: Duration,
    max_attempts: u32,
    progress_interval: Duration,
    progress_maxlen: usize,
    block: Duration,
    dir: Option<PathBuf>,
}

impl NodeConfig {
    /// A node named `name` (its consumer name in the group; unique in the fleet) on the Redis
    /// at `redis`.
    pub fn new(redis: impl Into<String>, name: impl Into<String>) -> Self {
        NodeConfig {
            redis: redis.into(),
            name: name.into(),
            names: Names::default(),
            max_active: 8,
            prefetch: 2,
            claim_idle: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
            max_attempts: 3,
            progress_interval: Duration::from_secs(1),
            progress_maxlen: 10_000,
            block: Duration::from_secs(1),
            dir: None,
        }
    }

    /// The streams and group (default: `transfer:jobs`, `transfer:results`, `transfer`).
    pub fn names(mut self, names: Names) -> Self {
        self.names = names;
        self
    }

    /// How many jobs run at once: set it to the engine's `max_active` (default 8; 0 counts
    /// as 1).
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n.max(1);
        self
    }

    /// Jobs read ahead of a free slot, waiting in the engine's queue (default 2).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// A job pending this long on a node that stopped refreshing it is claimed by another
    /// (default 30 s; at least 100 ms). The heartbeat is kept under a third of it.
    pub fn claim_idle(mut self, d: Duration) -> Self {
        self.claim_idle = d.max(Duration::from_millis(100));
        self
    }

    /// How often the node refreshes its heartbeat and the idle time of its jobs (default 2 s).
    pub fn heartbeat(mut self, d: Duration) -> Self {
        self.heartbeat = d.max(Duration::from_millis(10));
        self
    }

    /// Runs of a job in the fleet, at most: a retryable failure is queued again until then,
    /// and a job delivered this many times to nodes that stopped fails as `node_lost`
    /// (default 3; 0 counts as 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// At most one progress entry per job per interval (default 1 s).
    pub fn progress_interval(mut self, d: Duration) -> Self {
        self.progress_interval = d;
        self
    }

    /// The directory upload paths are relative to (default: the working directory).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// How long one read waits for new jobs (default 1 s): a stop waits at most this long.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d.max(Duration::from_millis(10));
        self
    }

    fn heartbeat_every(&self) -> Duration {
        self.heartbeat.min(self.claim_idle / 3)
    }
}

/// Stop taking jobs; resolves once every job the node holds has its result written.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// A job the node holds: read, not yet acknowledged.
struct Held {
    job: Option<Job>,
    deliveries: u64,
    started_ms: u64,
    transfer: Option<TransferId>,
    cancel: bool,
    url: usize,
    last_progress: Option<Instant>,
}

/// What to do with a finished job.
enum Finish {
    Result(ResultFields),
    Requeue(Vec<(String, String)>),
    /// A result for its key exists already: acknowledge only.
    Ack,
}

/// A fleet node: one consumer of the group, running jobs on its [`Engine`].
///
/// Start it with [`Node::start`]; stop it with [`Drain`].
pub struct Node {
    engine: Addr<Engine>,
    cfg: Arc<NodeConfig>,
    conn: ConnectionManager,
    reader: ConnectionManager,
    control: ConnectionManager,
    finish: Script,
    requeue: Script,
    touch: Script,
    held: HashMap<String, Held>,
    by_key: HashMap<String, String>,
    by_transfer: HashMap<TransferId, String>,
    reading: bool,
    claiming: bool,
    stopping: bool,
    read_failures: u32,
    claim_cursor: String,
    control_last: Option<String>,
    unwritten: VecDeque<(String, Finish)>,
    flushing: bool,
    write_failures: u32,
    drained: Vec<oneshot::Sender<()>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.cfg.name)
            .field("held", &self.held.len())
            .finish()
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50u64.saturating_mul(1 << failures.min(6))).min(Duration::from_secs(2))
}

impl Node {
    /// Connect to Redis, join the group (creating the stream and the group when missing) and
    /// start the node on the current arbiter.
    pub async fn start(engine: Addr<Engine>, cfg: NodeConfig) -> Result<Addr<Node>, FleetError> {
        let client = redis::Client::open(cfg.redis.as_str()).map_err(FleetError::Url)?;
        let manager = |timeout: Option<Duration>| {
            ConnectionManagerConfig::new()
                .set_max_delay(Duration::from_secs(2))
                .set_number_of_retries(usize::MAX)
                .set_response_timeout(timeout)
                .set_connection_timeout(Some(Duration::from_secs(2)))
        };
        let conn = ConnectionManager::new_with_config(
            client.clone(),
            manager(Some(Duration::from_secs(5))),
        )
        .await
        .map_err(FleetError::Connect)?;
        // Blocking reads wait up to `block` for an answer: they get connections of their own,
        // so that no command waits behind them.
        let blocking = Some(cfg.block + Duration::from_secs(5));
        let reader = ConnectionManager::new_with_config(client.clone(), manager(blocking))
            .await
            .map_err(FleetError::Connect)?;
        let control = ConnectionManager::new_with_config(client, manager(blocking))
            .await
            .map_err(FleetError::Connect)?;
        let mut c = conn.clone();
        create_group(&mut c, &cfg.names).await?;
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(cfg.names.control())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .map_err(FleetError::Redis)?;
        let control_last = Some(
            reply
                .ids
                .first()
                .map_or_else(|| "0-0".to_string(), |e| e.id.clone()),
        );
        Ok(Node {
            engine,
            cfg: Arc::new(cfg),
            conn,
            reader,
            control,
            finish: Script::new(FINISH),
            requeue: Script::new(REQUEUE),
            touch: Script::new(TOUCH),
            held: HashMap::new(),
            by_key: HashMap::new(),
            by_transfer: HashMap::new(),
            reading: false,
            claiming: false,
            stopping: false,
            read_failures: 0,
            claim_cursor: "0-0".into(),
            control_last,
            unwritten: VecDeque::new(),
            flushing: false,
            write_failures: 0,
            drained: Vec::new(),
        }
        .start())
    }

    fn room(&self) -> usize {
        (self.cfg.max_active + self.cfg.prefetch).saturating_sub(self.held.len())
    }

    /// Read new jobs while there is room.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.reading || self.stopping || self.room() == 0 {
            return;
        }
        self.reading = true;
        let mut conn = self.reader.clone();
        let cmd = {
            let mut c = redis::cmd("XREADGROUP");
            c.arg("GROUP")
                .arg(&self.cfg.names.group)
                .arg(&self.cfg.name)
                .arg("COUNT")
                .arg(self.room())
                .arg("BLOCK")
                .arg(self.cfg.block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.cfg.names.jobs)
                .arg(">");
            c
        };
        ctx.spawn(
            async move { cmd.query_async::<Option<StreamReadReply>>(&mut conn).await }
                .into_actor(self)
                .map(|res, act, ctx| {
                    act.reading = false;
                    match res {
                        Ok(reply) => {
                            act.read_failures = 0;
                            // Taken even while stopping: they are pending on this node now.
                            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                                act.take(entry, 1, ctx);
                            }
                            act.pump(ctx);
                            act.check_drained();
                        }
                        Err(e) => {
                            act.check_drained();
                            act.read_failures += 1;
                            tracing::warn!(node = %act.cfg.name, error = %e, "reading jobs failed; retrying");
                            if e.code() == Some("NOGROUP") {
                                let mut c = act.conn.clone();
                                let names = act.cfg.names.clone();
                                actix::spawn(async move {
                                    let _ = create_group(&mut c, &names).await;
                                });
                            }
                            ctx.run_later(backoff(act.read_failures), |act, ctx| act.pump(ctx));
                        }
                    }
                }),
        );
    }

    /// Take one entry: check its guards, then run it.
    fn take(&mut self, entry: StreamId, deliveries: u64, ctx: &mut Context<Self>) {
        let id = entry.id.clone();
        if self.held.contains_key(&id) {
            return;
        }
        let fields: HashMap<String, String> = string_fields(&entry.map).into_iter().collect();
        let parsed = Job::parse(&id, &fields);
        let key = match &parsed {
            Ok(j) => j.key.clone(),
            Err(b) => b.key.clone(),
        };
        let mut held = Held {
            job: None,
            deliveries,
            started_ms: now_ms(),
            transfer: None,
            cancel: false,
            url: 0,
            last_progress: None,
        };
        match parsed {
            Err(bad) => {
                self.held.insert(id.clone(), held);
                let r = self.base(&id, &key).failed("invalid_job", bad.reason);
                self.write(id, Finish::Result(r), ctx);
                return;
            }
            Ok(job) => held.job = Some(job),
        }
        if deliveries > u64::from(self.cfg.max_attempts) {
            self.held.insert(id.clone(), held);
            let r = self.base(&id, &key).failed(
                "node_lost",
                format!("the job was delivered {deliveries} times to nodes that stopped before it ended"),
            );
            self.write(id, Finish::Result(r), ctx);
            return;
        }
        self.held.insert(id.clone(), held);
        self.by_key.insert(key.clone(), id.clone());
        self.check(id, key, 0, ctx);
    }

    /// Check a held job's guards (done, cancelled), then run it. A check that fails (Redis
    /// stopped, a connection lost) is made again while the job stays held: it is pending on
    /// this node, and only this node's refresh keeps another one from running it too.
    fn check(&mut self, id: String, key: String, failures: u32, ctx: &mut Context<Self>) {
        let mut conn = self.conn.clone();
        let (done, cancelled) = (self.cfg.names.done(&key), self.cfg.names.cancelled(&key));
        ctx.spawn(
            async move {
                redis::pipe()
                    .exists(done)
                    .exists(cancelled)
                    .query_async::<(bool, bool)>(&mut conn)
                    .await
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok((true, _)) => act.write(id, Finish::Ack, ctx),
                Ok((false, cancelled)) => {
                    let cancel = cancelled || act.held.get(&id).is_some_and(|h| h.cancel);
                    if cancel {
                        let r = act.base(&id, &key).fields("cancelled");
                        act.write(id, Finish::Result(r), ctx);
                    } else {
                        act.submit(id, ctx);
                    }
                }
                Err(e) => {
                    let failures = failures.saturating_add(1);
                    tracing::warn!(node = %act.cfg.name, job = %id, error = %e, "checking a job failed; checking again");
                    ctx.run_later(backoff(failures), move |act, ctx| {
                        if act.held.contains_key(&id) {
                            act.check(id, key, failures, ctx);
                        }
                    });
                }
            }),
        );
    }

    fn base(&self, id: &str, key: &str) -> ResultBase {
        let h = self.held.get(id);
        ResultBase {
            key: key.to_string(),
            job: id.to_string(),
            node: self.cfg.name.clone(),
            attempts: h.map_or(1, |h| {
                h.deliveries + h.job.as_ref().map_or(0, |j| u64::from(j.requeued))
            }),
            started_ms: h.map_or_else(now_ms, |h| h.started_ms),
        }
    }

    fn release(&mut self, id: &str) {
        if let Some(h) = self.held.remove(id) {
            if let Some(t) = h.transfer {
                self.by_transfer.remove(&t);
            }
            if let Some(job) = h.job {
                if self.by_key.get(&job.key).is_some_and(|e| e == id) {
                    self.by_key.remove(&job.key);
                }
            }
        }
        self.check_drained();
    }

    /// Submit the held job to the engine (its `url`-th URL) and wait for its end.
    fn submit(&mut self, id: String, ctx: &mut Context<Self>) {
        let Some(h) = self.held.get(&id) else { return };
        let Some(job) = h.job.clone() else { return };
        let engine = self.engine.clone();
        let submission = job.submission(h.url, self.cfg.dir.as_deref());
        ctx.spawn(
            async move {
                let sub = submission?;
                let sent = match sub {
                    Submission::Download(d) => engine.send(d).await,
                    Submission::Upload(u) => engine.send(u).await,
                    Submission::Fetch(f) => engine.send(f).await,
                };
                sent.unwrap_or(Err(crate::TransferError::Shutdown))
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(transfer) => {
                    let cancel = match act.held.get_mut(&id) {
                        Some(h) => {
                            h.transfer = Some(transfer);
                            h.cancel
                        }
                        None => false,
                    };
                    act.by_transfer.insert(transfer, id.clone());
                    if cancel {
                        act.engine.do_send(Cancel(transfer));
                    }
                    let engine = act.engine.clone();
                    ctx.spawn(
                        async move { engine.send(Wait(transfer)).await.ok().flatten() }
                            .into_actor(act)
                            .map(move |outcome, act, ctx| {
                                let outcome = outcome.unwrap_or_else(|| {
                                    Outcome::failed_unanswered(0, crate::TransferError::Shutdown, 0)
                                });
                                act.ended(id, transfer, outcome, ctx)
                            }),
                    );
                }
                Err(error) => act.ended_with(id, Outcome::failed_unanswered(0, error, 0), ctx),
            }),
        );
    }

    fn ended(
        &mut self,
        id: String,
        transfer: TransferId,
        outcome: Outcome,
        ctx: &mut Context<Self>,
    ) {
        self.by_transfer.remove(&transfer);
        if let Some(h) = self.held.get_mut(&id) {
            h.transfer = None;
        }
        self.ended_with(id, outcome, ctx);
    }

    /// Decide what a job's end means for the fleet: a result, a mirror, or a new entry.
    fn ended_with(&mut self, id: String, outcome: Outcome, ctx: &mut Context<Self>) {
        let Some(h) = self.held.get_mut(&id) else {
            return;
        };
        let Some(job) = h.job.clone() else { return };
        if let Outcome::Failed { error, .. } = &outcome {
            if !h.cancel && h.url + 1 < job.urls.len() {
                h.url += 1;
                self.submit(id, ctx);
                return;
            }
            if !h.cancel && error.is_retryable() && job.requeued + 1 < self.cfg.max_attempts {
                self.write(id, Finish::Requeue(job.requeue_fields()), ctx);
                return;
            }
        }
        let r = ResultFields::of_outcome(self.base(&id, &job.key), &outcome, job.sha256.as_deref());
        self.write(id, Finish::Result(r), ctx);
    }

    /// Write what a finished job leaves (result and acknowledgement in one script); kept and
    /// written again with backoff while Redis does not answer.
    fn write(&mut self, id: String, finish: Finish, ctx: &mut Context<Self>) {
        self.unwritten.push_back((id, finish));
        self.flush(ctx);
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return;
        }
        let Some((id, finish)) = self.unwritten.pop_front() else {
            return;
        };
        self.flushing = true;
        let names = &self.cfg.names;
        let key = self
            .held
            .get(&id)
            .and_then(|h| h.job.as_ref().map(|j| j.key.clone()))
            .or_else(|| match &finish {
                Finish::Result(r) => Some(r.key.clone()),
                _ => None,
            })
            .unwrap_or_else(|| id.clone());
        let (script, keys, args) = match &finish {
            Finish::Result(r) => {
                let mut args = vec![names.group.clone(), id.clone()];
                for (k, v) in r.pairs() {
                    args.push(k.to_string());
                    args.push(v);
                }
                let keys = vec![names.done(&key), names.results.clone(), names.jobs.clone()];
                (self.finish.clone(), keys, args)
            }
            Finish::Requeue(fields) => {
                let mut args = vec![names.group.clone(), id.clone()];
                for (k, v) in fields {
                    args.push(k.clone());
                    args.push(v.clone());
                }
                (
                    self.requeue.clone(),
                    vec![names.jobs.clone(), names.done(&key)],
                    args,
                )
            }
            // The guard exists: the script only acknowledges.
            Finish::Ack => {
                let keys = vec![names.done(&key), names.results.clone(), names.jobs.clone()];
                (
                    self.finish.clone(),
                    keys,
                    vec![names.group.clone(), id.clone()],
                )
            }
        };
        let mut conn = self.conn.clone();
        let fut = async move { invoke(&script, &keys, &args, &mut conn).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.flushing = false;
            match res {
                Ok(_) => {
                    act.write_failures = 0;
                    act.release(&id);
                    act.pump(ctx);
                    act.flush(ctx);
                }
                Err(e) => {
                    act.write_failures += 1;
                    tracing::warn!(node = %act.cfg.name, error = %e, "writing a result failed; retrying");
                    act.unwritten.push_front((id, finish));
                    ctx.run_later(backoff(act.write_failures), |act, ctx| act.flush(ctx));
                }
            }
        }));
    }

    /// Heartbeat, and keep the held jobs from looking idle.
    fn beat(&mut self, _ctx: &mut Context<Self>) {
        let mut conn = self.conn.clone();
        let ttl = (self.cfg.claim_idle.as_millis() as u64).max(1);
        let hb = self.cfg.names.heartbeat(&self.cfg.name);
        let script = self.touch.clone();
        let keys = vec![self.cfg.names.jobs.clone()];
        let mut args = vec![self.cfg.names.group.clone(), self.cfg.name.clone()];
        args.extend(self.held.keys().cloned());
        let touch = (args.len() > 2).then_some((script, keys, args));
        let fut = async move {
            let _: Result<(), _> = redis::cmd("SET")
                .arg(hb)
                .arg(now_ms())
                .arg("PX")
                .arg(ttl)
                .query_async(&mut conn)
                .await;
            if let Some((script, keys, args)) = touch {
                let _ = invoke(&script, &keys, &args, &mut conn).await;
            }
        };
        actix::spawn(fut);
    }

    /// Claim jobs idle too long on nodes that stopped.
    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.claiming || self.stopping || self.room() == 0 {
            return;
        }
        self.claiming = true;
        let mut conn = self.conn.clone();
        let names = self.cfg.names.clone();
        let me = self.cfg.name.clone();
        let idle = self.cfg.claim_idle.as_millis() as u64;
        let cursor = self.claim_cursor.clone();
        let count = self.room();
        ctx.spawn(
            async move {
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(&names.jobs)
                    .arg(&names.group)
                    .arg(&me)
                    .arg(idle)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await?;
                // How many times each was delivered (the claim counts as one).
                let mut pipe = redis::pipe();
                for e in &reply.claimed {
                    pipe.cmd("XPENDING")
                        .arg(&names.jobs)
                        .arg(&names.group)
                        .arg(&e.id)
                        .arg(&e.id)
                        .arg(1);
                }
                let counts: Vec<redis::streams::StreamPendingCountReply> = if reply.claimed.is_empty() {
                    Vec::new()
                } else {
                    pipe.query_async(&mut conn).await?
                };
                Ok::<_, RedisError>((reply, counts))
            }
            .into_actor(self)
            .map(|res, act, ctx| {
                act.claiming = false;
                match res {
                    Ok((reply, counts)) => {
                        act.claim_cursor = reply.next_stream_id.clone();
                        for (entry, c) in reply.claimed.into_iter().zip(counts) {
                            let n = c.ids.first().map_or(2, |p| p.times_delivered as u64);
                            tracing::info!(node = %act.cfg.name, job = %entry.id, deliveries = n, "claimed a job from a stopped node");
                            act.take(entry, n, ctx);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(node = %act.cfg.name, error = %e, "claiming jobs failed");
                    }
                }
            }),
        );
    }

    /// Follow the control stream: cancels by key.
    fn follow_control(&mut self, ctx: &mut Context<Self>) {
        let Some(last) = self.control_last.clone() else {
            return;
        };
        let mut conn = self.control.clone();
        let stream = self.cfg.names.control();
        let block = self.cfg.block.as_millis() as usize;
        ctx.spawn(
            async move {
                let opts = redis::streams::StreamReadOptions::default()
                    .count(100)
                    .block(block);
                redis::AsyncCommands::xread_options::<_, _, Option<StreamReadReply>>(
                    &mut conn,
                    &[&stream],
                    &[&last],
                    &opts,
                )
                .await
            }
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok(reply) => {
                    for e in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                        let fields = string_fields(&e.map);
                        act.control_last = Some(e.id);
                        for (k, v) in fields {
                            if k == "cancel" {
                                act.cancel_key(&v);
                            }
                        }
                    }
                    if !act.stopping || !act.held.is_empty() {
                        act.follow_control(ctx);
                    }
                }
                Err(_) => {
                    ctx.run_later(backoff(4), |act, ctx| act.follow_control(ctx));
                }
            }),
        );
    }

    fn cancel_key(&mut self, key: &str) {
        let Some(id) = self.by_key.get(key) else {
            return;
        };
        if let Some(h) = self.held.get_mut(id) {
            h.cancel = true;
            if let Some(t) = h.transfer {
                self.engine.do_send(Cancel(t));
            }
        }
    }

    fn check_drained(&mut self) {
        if self.stopping && !self.reading && self.held.is_empty() && self.unwritten.is_empty() {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
        }
    }
}

async fn invoke(
    script: &Script,
    keys: &[String],
    args: &[String],
    conn: &mut ConnectionManager,
) -> Result<redis::Value, RedisError> {
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    for a in args {
        inv.arg(a);
    }
    inv.invoke_async(conn).await
}

async fn create_group(conn: &mut ConnectionManager, names: &Names) -> Result<(), FleetError> {
    let res: Result<(), RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&names.jobs)
        .arg(&names.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match res {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(FleetError::Redis(e)),
        _ => Ok(()),
    }
}

impl Actor for Node {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address().recipient();
        self.engine
            .do_send(Subscribe::all(me).kinds(EventKinds::PROGRESS));
        self.beat(ctx);
        ctx.run_interval(self.cfg.heartbeat_every(), |act, ctx| act.beat(ctx));
        let every = (self.cfg.claim_idle / 2).max(Duration::from_millis(50));
        ctx.run_interval(every, |act, ctx| act.claim(ctx));
        self.pump(ctx);
        self.follow_control(ctx);
    }
}

impl Handler<TransferEvent> for Node {
    type Result = ();

    fn handle(&mut self, ev: TransferEvent, _ctx: &mut Context<Self>) {
        let EventKind::Progress {
            bytes_transferred,
            bytes_estimated,
        } = ev.kind
        else {
            return;
        };
        let Some(id) = self.by_transfer.get(&ev.id) else {
            return;
        };
        let Some(h) = self.held.get_mut(id) else {
            return;
        };
        let now = Instant::now();
        if h.last_progress
            .is_some_and(|t| now.duration_since(t) < self.cfg.progress_interval)
        {
            return;
        }
        h.last_progress = Some(now);
        let key = h.job.as_ref().map_or_else(|| id.clone(), |j| j.key.clone());
        let mut c = redis::cmd("XADD");
        c.arg(self.cfg.names.progress())
            .arg("MAXLEN")
            .arg("~")
            .arg(self.cfg.progress_maxlen)
            .arg("*")
            .arg("key")
            .arg(key)
            .arg("job")
            .arg(id)
            .arg("node")
            .arg(&self.cfg.name)
            .arg("bytes")
            .arg(bytes_transferred);
        if let Some(t) = bytes_estimated {
            c.arg("total").arg(t);
        }
        let mut conn = self.conn.clone();
        actix::spawn(async move {
            let _: Result<(), _> = c.query_async(&mut conn).await;
        });
    }
}

impl Handler<Drain> for Node {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let (tx, rx) = oneshot::channel();
        self.drained.push(tx);
        self.check_drained();
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
