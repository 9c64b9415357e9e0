//! A fleet of engines sharing work through Redis Streams (feature `redis`).
//!
//! Several processes, on one machine or many, each run an [`Engine`](crate::Engine) and a
//! [`Node`]. Jobs are entries of one Redis stream; the nodes read them as consumers of one
//! consumer group, so each job goes to one node; each node writes one entry per finished job
//! to a results stream. Nothing here is a protocol of its own: any program that can `XADD`
//! can submit jobs, and any that can `XREAD` can follow results (Valkey speaks the same).
//!
//! # Job entries (the jobs stream, default `transfer:jobs`)
//!
//! | field | meaning |
//! | --- | --- |
//! | `url` | required: the URL (http or https) |
//! | `kind` | `download` (default), `upload` or `fetch` |
//! | `path` | download: where to put the file, relative to the node's download dir (an existing file from an earlier run of the job is replaced); upload: the file to send, relative to the node's dir, without `..` |
//! | `headers` | a JSON object of request header names to string values |
//! | `priority` | a whole number; lower starts first on a node (as [`Download::priority`](crate::Download::priority)) |
//! | `mirrors` | a JSON array of URLs tried in order when `url` fails |
//! | `sha256` | download: the expected SHA-256 (hex); the file is refused when it differs |
//! | `key` | the idempotency key: at most one result is ever written per key (default: the entry id) |
//!
//! A node that queues a job again after a retryable failure adds `fleet_attempts` (how many
//! times it was queued again); producers do not set it.
//!
//! # Result entries (the results stream, default `transfer:results`)
//!
//! | field | meaning |
//! | --- | --- |
//! | `key` | the job's key |
//! | `job` | the id of the job's entry in the jobs stream |
//! | `node` | the name of the node that wrote the result |
//! | `outcome` | `completed`, `failed` or `cancelled` |
//! | `bytes` | body bytes moved |
//! | `status` | the final HTTP status, when there was one |
//! | `path` | a completed download: the file on the node that wrote the result |
//! | `sha256` | a completed download with a `sha256` field: the verified digest |
//! | `error_kind` | a failure: the [`ErrorKind`](crate::ErrorKind) name, or `invalid_job` (the entry could not be read) or `node_lost` (it was delivered to more nodes than allowed, each of which stopped) |
//! | `error` | a failure: a sentence |
//! | `attempts` | deliveries of the job in the fleet, this one included (1 when the first node to take it finished it) |
//! | `started_ms`, `ended_ms` | when this node took the job and when it ended, in milliseconds since the Unix epoch |
//!
//! # What holds
//!
//! * **One result per key.** A result is written by one Lua script that checks and sets a
//!   guard key (`<jobs>:done:<key>`), appends the result and acknowledges the job, or does
//!   nothing but acknowledge when the guard already exists (a script runs alone: nothing
//!   comes between the check and the set): a slow node finishing a job that
//!   another node claimed writes no second result.
//! * **A job is acknowledged exactly when its result exists** (or when it is queued again as a
//!   new entry, in the same script). A node that stops before writing a result leaves the job
//!   pending; a node whose result write fails (Redis down) keeps the result and writes it
//!   again, with backoff, until it is written.
//! * **Backpressure**: a node holds at most `max_active + prefetch` jobs (read and not yet
//!   acknowledged); it reads more only as jobs end.
//! * **Failures**: a node refreshes its heartbeat key (`<jobs>:node:<name>`, with a TTL) and
//!   the idle time of the jobs it holds; a job idle longer than
//!   [`NodeConfig::claim_idle`] (its node stopped or hangs) is claimed (`XAUTOCLAIM`) by a live
//!   node and run again. A permanent failure is a result; a retryable one that exhausted the
//!   node's retries is queued again up to [`NodeConfig::max_attempts`] runs in all.
//! * **Cancel** ([`Fleet::cancel`]): a guard `<jobs>:cancel:<key>` and an entry on the control
//!   stream `<jobs>:control`. The node running the job cancels it (result `cancelled`); a job not
//!   yet taken is removed by the node that takes it (result `cancelled`, the entry deleted).
//! * **Progress**: nodes append throttled entries (`key`, `job`, `node`, `bytes`, `total`) to
//!   `<jobs>:progress`, capped with `MAXLEN ~`.

mod job;
mod node;

pub use node::{Drain, FleetError, Node, NodeConfig};

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

/// The Lua script that writes a result and acknowledges its job in one step.
///
/// KEYS: done guard, results stream, jobs stream. ARGV: group, entry id, then the result's
/// field/value pairs. Returns the result's entry id, or `false` when a result for the key
/// already existed (the job is acknowledged all the same: its result exists).
///
/// A script is not rolled back when a command in it fails: the result is appended before the
/// guard is set (a failed `XADD` leaves nothing behind, and the node writes again), and the
/// acknowledgement cannot fail the script (`pcall`: a group or stream that vanished, as after
/// a restart without persistence, leaves nothing to acknowledge).
const FINISH: &str = r#"
local id = false
if redis.call('EXISTS', KEYS[1]) == 0 then
  id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.pcall('XACK', KEYS[3], ARGV[1], ARGV[2])
redis.pcall('XDEL', KEYS[3], ARGV[2])
return id
"#;

/// The Lua script that queues a job again (a retryable failure) and acknowledges the old entry.
///
/// KEYS: jobs stream, done guard. ARGV: group, entry id, then the new entry's pairs. Does not
/// queue when a result for the key exists.
const REQUEUE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
end
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.pcall('XDEL', KEYS[1], ARGV[2])
return 1
"#;

/// The Lua script that keeps a node's jobs from being claimed: it resets their idle time, but
/// only for those still pending on this node (never taking back one another node claimed).
///
/// KEYS: jobs stream. ARGV: group, consumer, entry ids.
const TOUCH: &str = r#"
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  end
end
return 1
"#;

/// The names of a fleet's streams and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The jobs stream (default `transfer:jobs`); the other keys are named after it.
    pub jobs: String,
    /// The results stream (default `transfer:results`).
    pub results: String,
    /// The consumer group (default `transfer`).
    pub group: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            jobs: "transfer:jobs".into(),
            results: "transfer:results".into(),
            group: "transfer".into(),
        }
    }
}

impl Names {
    pub(crate) fn done(&self, key: &str) -> String {
        format!("{}:done:{key}", self.jobs)
    }
    pub(crate) fn cancelled(&self, key: &str) -> String {
        format!("{}:cancel:{key}", self.jobs)
    }
    /// The control stream, where cancels go.
    pub fn control(&self) -> String {
        format!("{}:control", self.jobs)
    }
    /// The capped progress stream.
    pub fn progress(&self) -> String {
        format!("{}:progress", self.jobs)
    }
    pub(crate) fn heartbeat(&self, node: &str) -> String {
        format!("{}:node:{node}", self.jobs)
    }
}

/// A job to submit, with the fields of the format above.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobSpec {
    fields: Vec<(String, String)>,
}

impl JobSpec {
    /// A download of `url`.
    pub fn download(url: impl Into<String>) -> Self {
        JobSpec {
            fields: vec![("url".into(), url.into())],
        }
    }

    /// Any field of the job format (`kind`, `path`, `headers`, `priority`, `mirrors`, `sha256`,
    /// `key`); a field set twice keeps the last value.
    pub fn field(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.fields.retain(|(n, _)| *n != name);
        self.fields.push((name, value.into()));
        self
    }

    /// The idempotency key.
    pub fn key(self, key: impl Into<String>) -> Self {
        self.field("key", key)
    }

    /// The file's path under the node's download dir.
    pub fn path(self, path: impl Into<String>) -> Self {
        self.field("path", path)
    }

    /// The fields, in the order they are written.
    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
}

/// A client of a fleet: submits jobs, cancels them, reads results. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    conn: ConnectionManager,
    /// For reads that block (`results` with a wait): no response timeout of its own, the
    /// server answers when the wait ends, and no other command queues behind such a read.
    blocking: ConnectionManager,
    names: Names,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").field("names", &self.names).finish()
    }
}

/// How long a cancel guard lasts: a cancel for a job nobody takes within a week is forgotten.
const CANCEL_TTL_SECS: u64 = 7 * 24 * 3600;

impl Fleet {
    /// Connect to the Redis at `url` (`redis://host:port/db`).
    pub async fn connect(url: &str, names: Names) -> Result<Fleet, FleetError> {
        let client = redis::Client::open(url).map_err(FleetError::Url)?;
        let config = |response: Option<std::time::Duration>| {
            redis::aio::ConnectionManagerConfig::new()
                .set_response_timeout(response)
                .set_connection_timeout(Some(std::time::Duration::from_secs(5)))
        };
        // The redis crate's default response timeout (500 ms) fails a busy server's answer and
        // any read that waits for a result longer than that.
        let conn = ConnectionManager::new_with_config(
            client.clone(),
            config(Some(std::time::Duration::from_secs(5))),
        )
        .await
        .map_err(FleetError::Connect)?;
        let blocking = ConnectionManager::new_with_config(client, config(None))
            .await
            .map_err(FleetError::Connect)?;
        Ok(Fleet {
            conn,
            blocking,
            names,
        })
    }

    /// The names this client uses.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Append a job; returns its entry id.
    pub async fn submit(&self, job: &JobSpec) -> Result<String, FleetError> {
        let mut conn = self.conn.clone();
        conn.xadd(&self.names.jobs, "*", job.fields())
            .await
            .map_err(FleetError::Redis)
    }

    /// Cancel the job with `key` wherever it is: the node running it cancels it, or the node
    /// that takes it later writes a `cancelled` result without running it.
    pub async fn cancel(&self, key: &str) -> Result<(), FleetError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.names.cancelled(key))
            .arg(1)
            .arg("EX")
            .arg(CANCEL_TTL_SECS)
            .ignore()
            .cmd("XADD")
            .arg(self.names.control())
            .arg("MAXLEN")
            .arg("~")
            .arg(10_000)
            .arg("*")
            .arg("cancel")
            .arg(key)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(FleetError::Redis)
    }

    /// Up to `count` result entries after entry id `after` (`0` for the first), waiting up to
    /// `block` for one when there are none yet (`None`: do not wait). Each is the entry id and
    /// its fields.
    pub async fn results(
        &self,
        after: &str,
        count: usize,
        block: Option<std::time::Duration>,
    ) -> Result<Vec<(String, Vec<(String, String)>)>, FleetError> {
        let mut opts = redis::streams::StreamReadOptions::default().count(count);
        if let Some(b) = block {
            // At least 1 ms: `BLOCK 0` waits forever.
            opts = opts.block(usize::try_from(b.as_millis()).unwrap_or(usize::MAX).max(1));
        }
        let mut conn = if block.is_some() {
            self.blocking.clone()
        } else {
            self.conn.clone()
        };
        let reply: Option<redis::streams::StreamReadReply> = conn
            .xread_options(&[&self.names.results], &[after], &opts)
            .await
            .map_err(FleetError::Redis)?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| (e.id, string_fields(&e.map)))
            .collect())
    }
}

/// The string fields of an entry, sorted by name (binary values are read as UTF-8, lossily).
pub(crate) fn string_fields(
    map: &std::collections::HashMap<String, redis::Value>,
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = map
        .iter()
        .filter_map(|(k, v)| match v {
            redis::Value::BulkString(b) => Some((k.clone(), String::from_utf8_lossy(b).into())),
            redis::Value::SimpleString(s) => Some((k.clone(), s.clone())),
            redis::Value::Int(i) => Some((k.clone(), i.to_string())),
            _ => None,
        })
        .collect();
    v.sort();
    v
}
