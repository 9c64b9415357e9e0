//! [`EngineBuilder`]: the engine's options, their defaults, and starting it.

use std::{path::PathBuf, sync::Arc, time::Duration};

use actix::prelude::*;
use awc::http::header::HeaderValue;

use super::{records::Records, Engine};
use crate::{
    config::Config, engine::admission::Admission, event::subscribers::Subscribers,
    retry::RetryPolicy, throttle::Bucket, worker::Workers,
};
#[cfg(doc)]
use crate::{Download, Erase, List, Pause, Resume, SetLimits, Status, Wait};

/// Builds and starts an [`Engine`]. Every option has a documented default.
///
/// Zero and huge values: a zero duration means "no limit" for every timeout and limit
/// (like curl's `--max-time 0`), and a huge one (up to `Duration::MAX`) saturates to a
/// deadline that never comes. Counts say what `0` does on each option.
///
/// ```no_run
/// use std::time::Duration;
/// use actix_transfer::Engine;
///
/// # #[actix_rt::main] async fn main() {
/// let engine = Engine::builder()
///     .workers(4)
///     .download_dir("/var/lib/myapp/downloads")
///     .max_active(64)
///     .max_per_host(8)
///     .idle_timeout(Duration::from_secs(20))
///     .start();
/// # let _ = engine; }
/// ```
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    cfg: Config,
    workers: usize,
    max_active: usize,
    max_per_host: Option<usize>,
    max_rate: Option<u64>,
    keep_ended: usize,
    keep_ended_bytes: u64,
    #[cfg(feature = "journal")]
    journal: JournalOptions,
    /// Subscriptions in place before the engine starts (they see the `Restored` events).
    early_subscribers: Vec<actix::Recipient<crate::TransferEvent>>,
    #[cfg(feature = "rustls")]
    tls: crate::http::tls::TlsOptions,
    proxy: crate::http::proxy::ProxyOptions,
}

/// Where the journal is (none: no journal) and how it is kept (see [`EngineBuilder::journal`]);
/// the options may come before or after the path.
#[cfg(feature = "journal")]
#[derive(Debug, Clone, Default)]
struct JournalOptions {
    path: Option<PathBuf>,
    sync: bool,
    keep: crate::journal::Keep,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            cfg: Config {
                download_dir: PathBuf::new(),
                connect_timeout: Duration::from_secs(10),
                headers_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(30),
                total_timeout: None,
                progress_interval: Duration::from_millis(100),
                max_redirects: 10,
                max_body: 16 * 1024 * 1024,
                user_agent: concat!("actix-transfer/", env!("CARGO_PKG_VERSION")).into(),
                keep_alive: Duration::from_secs(15),
                retry: RetryPolicy::default(),
                segments: 1,
                segment_threshold: 64 << 20,
                fsync: true,
                events_at_turn_end: true,
                #[cfg(feature = "rustls")]
                tls: None,
                proxies: None,
            },
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_active: 256,
            max_per_host: None,
            max_rate: None,
            keep_ended: DEFAULT_KEEP_ENDED,
            keep_ended_bytes: DEFAULT_KEEP_ENDED_BYTES,
            #[cfg(feature = "journal")]
            journal: JournalOptions::default(),
            early_subscribers: Vec::new(),
            #[cfg(feature = "rustls")]
            tls: Default::default(),
            proxy: Default::default(),
        }
    }
}

impl EngineBuilder {
    /// Worker threads (arbiters) that run transfers. Default: the number of available cores.
    ///
    /// `0` starts no threads: transfers run on the arbiter that starts the engine, beside the
    /// Engine itself. Nothing then crosses a thread per transfer, which makes each transfer
    /// cheaper than with one worker thread; choose it when that arbiter has time to spare (it
    /// must not run blocking code) and one core is enough for the traffic.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Where downloads are written; targets are relative to it. Created if missing.
    /// Default: the current directory when the engine starts.
    pub fn download_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.download_dir = dir.into();
        self
    }

    /// Transfers running at once; more wait in a queue (FIFO within priority). `0` counts as
    /// 1. Default 256.
    pub fn max_active(mut self, n: usize) -> Self {
        self.max_active = n.max(1);
        self
    }

    /// Transfers running at once against one `host:port` (`0` counts as 1). Default: no
    /// per-host limit.
    pub fn max_per_host(mut self, n: usize) -> Self {
        self.max_per_host = Some(n.max(1));
        self
    }

    /// Limit all transfers together to `bytes_per_sec` (token bucket; change it at run time
    /// with [`SetLimits`]). Each transfer may have its own limit too. `0`: no limit. Default:
    /// unlimited.
    pub fn max_rate(mut self, bytes_per_sec: u64) -> Self {
        self.max_rate = Some(bytes_per_sec);
        self
    }

    /// Bound on establishing a TCP (and TLS) connection. Zero: no limit. Default 10 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.cfg.connect_timeout = d;
        self
    }

    /// Bound on waiting for response headers once connected: for downloads and fetches the
    /// deadline is the attempt's start plus the connect timeout plus this; for uploads, the last
    /// byte of the body plus this (with either timeout zero, downloads and fetches have no
    /// such deadline). Zero: no limit. Default 30 s.
    pub fn headers_timeout(mut self, d: Duration) -> Self {
        self.cfg.headers_timeout = d;
        self
    }

    /// Bound on a body making no progress: fails when no byte moves, in either direction, for
    /// this long. A slow but moving transfer is never cut. Zero: no limit. Default 30 s.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.idle_timeout = d;
        self
    }

    /// An overall deadline for each transfer, counted from its start (when it leaves the
    /// queue): every attempt, and the backoff between them, included. The attempt running at
    /// the deadline is stopped and the transfer fails with
    /// [`Timeout(Total)`](crate::TimeoutPhase::Total), never retried; a backoff that would end
    /// past the deadline is not slept, the transfer ends at the deadline. Time spent paused
    /// does not count: the clock stops at [`Pause`] and goes on at [`Resume`]. Zero: no limit.
    /// Default: none.
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.cfg.total_timeout = Some(d).filter(|d| !d.is_zero());
        self
    }

    /// Least time between two `Progress` events of one transfer (one more is always sent when
    /// the body is done). Zero: no minimum, an event for every chunk. Default 100 ms.
    pub fn progress_interval(mut self, d: Duration) -> Self {
        self.cfg.progress_interval = d;
        self
    }

    /// Redirects followed before failing with `TooManyRedirects`. Default 10; 0 follows none;
    /// at most 100 (more is cut to 100, so a redirect loop always ends).
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.cfg.max_redirects = n.min(MAX_REDIRECTS);
        self
    }

    /// Cap on a response body kept in memory (fetches, upload replies). Default 16 MiB.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.cfg.max_body = bytes;
        self
    }

    /// How failed attempts are retried (downloads resume from the bytes on disk). Default:
    /// [`RetryPolicy::default`], 5 attempts with exponential backoff from 1 s.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.cfg.retry = policy;
        self
    }

    /// Segmented downloads by default: files of at least `threshold` bytes are fetched as `k`
    /// ranges in parallel when the server allows it (see [`Download::segments`]; `0` counts
    /// as 1, more than 16 as 16). Default: off (`k` = 1).
    pub fn segments(mut self, k: u32, threshold: u64) -> Self {
        self.cfg.segments = k.max(1);
        self.cfg.segment_threshold = threshold;
        self
    }

    /// Whether finished downloads are flushed to the disk before they are complete, unless a
    /// download says otherwise (see [`Download::fsync`]). Default: on.
    pub fn fsync(mut self, on: bool) -> Self {
        self.cfg.fsync = on;
        self
    }

    /// Ended transfers whose record (status, outcome, remembered `Ended` event, and a fetch's
    /// body) the engine keeps for [`Status`], [`Wait`], [`List`] and late subscribers. Past
    /// this many, the oldest ended one is forgotten as if [`Erase`]d (its files stay): an
    /// engine that runs for months, or a load test of millions of requests, stays bounded.
    /// Default 1,000, as many as aria2 keeps (`--max-download-result`): enough to look back at
    /// what just ended, and few enough that their memory stays in cache (each record is freed
    /// when a later one ends, and the more are kept the colder it is by then, which a busy
    /// engine pays for on every transfer). `usize::MAX` keeps everything until erased; `0`
    /// keeps only the one that ended last (a record is never forgotten as it ends). With a
    /// [journal](Self::journal), `Status`, `List` and `Wait` find older ones there. See also
    /// [`keep_ended_bytes`](Self::keep_ended_bytes).
    pub fn keep_ended(mut self, n: usize) -> Self {
        self.keep_ended = n;
        self
    }

    /// Bytes of response bodies (of fetches and upload replies) the ended records may hold
    /// together. Past this, the oldest ended records are forgotten as with
    /// [`keep_ended`](Self::keep_ended), though never the one that just ended: 1,000 records
    /// of 1 MiB bodies would otherwise hold 1 GiB after every subscriber and waiter has had
    /// its copy. Default 256 MiB; `u64::MAX` bounds them by count alone.
    pub fn keep_ended_bytes(mut self, bytes: u64) -> Self {
        self.keep_ended_bytes = bytes;
        self
    }

    /// The `User-Agent` header. Default `actix-transfer/<version>`. A header value: no control
    /// characters such as a line break ([`try_start`](Self::try_start) refuses them).
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.cfg.user_agent = ua.into();
        self
    }

    /// Receive the events of every transfer from the moment the engine starts, as
    /// [`Subscribe::all`](crate::Subscribe::all) would, but in place before the first event:
    /// with a [`journal`](Self::journal), it sees the `Restored` event of every transfer the
    /// start restores (a `Subscribe` sent after the start may come too late for them).
    pub fn subscriber(mut self, recipient: actix::Recipient<crate::TransferEvent>) -> Self {
        self.early_subscribers.push(recipient);
        self
    }

    /// Keep every accepted [`Download`] and [`Upload`](crate::Upload) in a journal, an SQLite
    /// file at `path` (created with mode 0600: request headers may hold credentials), so that
    /// transfers survive a restart or a crash: ids are never reused, an accepted transfer is
    /// in the journal before its id is answered, an `Ended` is in it before anyone hears of
    /// it, and the next start restores every transfer that had not ended (queued ones queue
    /// again, running ones resume from their `.part`, paused ones stay paused), each
    /// announcing itself with a `Restored` event. [`Fetch`](crate::Fetch)es are not journaled:
    /// their bodies live in memory. [`try_start`](Self::try_start) opens it, and refuses a
    /// file it cannot read (never deleting or changing it). Feature `journal`. Default: none.
    ///
    /// Exactly one `Ended` per transfer, across restarts: a [`Shutdown`](crate::Shutdown)
    /// publishes no `Ended` for the transfers the journal keeps (the next start does; see
    /// there what subscribers and waiters of the stopping process see), and a crash anywhere
    /// (killed mid-body, between the rename into place and the journal's commit, before the
    /// first byte of a new `.part`) neither downloads a finished file again nor places it
    /// twice: a `.part`'s name and identity are in the journal before a byte is written into
    /// it, and a file found under its final name with that identity is recorded as completed
    /// without a request.
    #[cfg(feature = "journal")]
    pub fn journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal.path = Some(path.into());
        self
    }

    /// Fsync every journal commit (durable across a power cut, not only a crash of the
    /// process). Default: off (WAL with `synchronous=NORMAL`). Applies to the
    /// [`journal`](Self::journal), given before or after this.
    #[cfg(feature = "journal")]
    pub fn journal_sync(mut self, on: bool) -> Self {
        self.journal.sync = on;
        self
    }

    /// How many ended transfers the journal keeps, and for how long: the oldest past `count`
    /// and those that ended more than `age` ago are deleted from it (their files stay), at
    /// start and as transfers end. Until then [`Status`](crate::Status),
    /// [`List`](crate::List) and [`Wait`](crate::Wait) answer for them from the journal, also
    /// after a restart and after [`keep_ended`](Self::keep_ended) dropped them from memory.
    /// Default: 10,000 and 90 days. Applies to the [`journal`](Self::journal), given before
    /// or after this.
    #[cfg(feature = "journal")]
    pub fn journal_keep(mut self, count: u64, age: Duration) -> Self {
        self.journal.keep = crate::journal::Keep { count, age };
        self
    }

    /// Trust `pem`'s certificates as roots, beside the bundled Mozilla roots (and the
    /// operating system's, with the `native-roots` feature): a company's private CA, a
    /// self-signed test server. `pem` holds one or more `CERTIFICATE` sections (other sections
    /// are skipped); call it again to add more. Text that holds no readable certificate makes
    /// [`try_start`](Self::try_start) fail with [`StartError::InvalidOption`], naming this
    /// option. Not with [`tls_config`](Self::tls_config), whose roots are its own (`try_start`
    /// refuses the two together).
    ///
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured only with the `native-roots` feature:
    /// when either is set, `rustls-native-certs` reads the roots from there in place of the
    /// operating system's store (the bundled roots and the added ones still count).
    #[cfg(feature = "rustls")]
    pub fn add_root_certificate(mut self, pem: &[u8]) -> Self {
        self.tls.add_root_pem(pem);
        self
    }

    /// Use this rustls config for every https connection, instead of the engine's own: to
    /// present a client certificate, pin a server's key with a custom verifier, or choose the
    /// roots, versions and cipher suites. When its `alpn_protocols` is empty the engine offers
    /// `h2` and `http/1.1` (HTTP/2 when the server speaks it); a list of its own is kept as it
    /// is. Build it on the crypto provider your program uses (the engine's own config uses
    /// `ring`): rustls cannot pick one when two are linked in and none is given.
    ///
    /// Default: the engine's own config, which trusts the bundled Mozilla roots, the
    /// operating system's (feature `native-roots`), and those given to
    /// [`add_root_certificate`](Self::add_root_certificate).
    #[cfg(feature = "rustls")]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls.set_config(config);
        self
    }

    /// Send every request, `http` and `https`, through the HTTP proxy at `url`:
    /// `http://[user:password@]host[:port]` (`http://` may be left out; the port defaults to
    /// 80; user and password percent-encoded). An `https` request goes through a `CONNECT`
    /// tunnel, over which TLS runs to the origin (the origin's name and certificate are
    /// checked as without a proxy); an `http` request is sent to the proxy with its absolute
    /// URL. Credentials go in `Proxy-Authorization: Basic`, to the proxy alone; they never
    /// appear in errors, events or logs. Only `http://` proxies: a URL of another scheme (TLS
    /// to the proxy, SOCKS), or one that does not parse, makes [`try_start`](Self::try_start)
    /// fail with [`StartError::InvalidOption`] naming this option.
    ///
    /// Wins over the environment's proxies ([`proxy_from_env`](Self::proxy_from_env));
    /// `NO_PROXY` still applies to it when that is enabled. A proxy's failure is a
    /// [`TransferError::Proxy`](crate::TransferError::Proxy), naming the proxy: it could not
    /// be reached (retried, as a refused connection is), did not open the tunnel within the
    /// [connect timeout](Self::connect_timeout) (retried), asked for credentials or refused
    /// them (`407`, never retried), or refused the tunnel. Default: no proxy.
    ///
    /// Limits: `Basic` credentials only (no Digest, NTLM or Negotiate). A `401` to a plain
    /// `http` request is the origin's answer, even from a proxy that answers wrong
    /// credentials so (tinyproxy does; to a `CONNECT` it is the proxy's).
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy.set(url.into());
        self
    }

    /// Use the proxies the environment names, as curl does: `http_proxy` for `http` URLs,
    /// `https_proxy` for `https` ones, `all_proxy` for either when its own is not set; each
    /// read in lower case first, then in upper case (`HTTP_PROXY` in upper case is ignored when
    /// `REQUEST_METHOD` is set: in a CGI program, a client's request header sets it). Empty
    /// values count as unset. `no_proxy`/`NO_PROXY` lists the hosts reached directly: names
    /// separated by commas, each matching itself and the names under it (`example.com` and
    /// `.example.com` match `a.example.com`, never `badexample.com`), IP addresses and CIDR
    /// blocks (`10.0.0.0/8`), each with an optional `:port` (`[::1]:8080`); `*` alone matches
    /// every host. The variables are read once, by [`try_start`](Self::try_start); a proxy URL
    /// there that [`proxy`](Self::proxy) would refuse makes it fail, naming the variable.
    /// Default: off (the environment is not read).
    pub fn proxy_from_env(mut self) -> Self {
        self.proxy.read_env();
        self
    }

    /// Start the engine (and its worker threads) on the current arbiter, or say which option
    /// keeps it from starting (checked before any thread starts).
    ///
    /// Must be called inside a running actix `System` (`#[actix_web::main]`,
    /// `#[actix_rt::main]`, `System::new().block_on(..)`).
    pub fn try_start(mut self) -> Result<Addr<Engine>, StartError> {
        if HeaderValue::from_str(&self.cfg.user_agent).is_err() {
            return Err(StartError::InvalidOption {
                option: "user_agent",
                reason: format!(
                    "{:?} holds a control character (such as a line break), which a header \
                     value cannot",
                    self.cfg.user_agent
                ),
            });
        }
        #[cfg(feature = "rustls")]
        {
            let tls = std::mem::take(&mut self.tls).build();
            self.cfg.tls =
                Some(tls.map_err(|(option, reason)| StartError::InvalidOption { option, reason })?);
        }
        self.cfg.proxies = self
            .proxy
            .build(|name| std::env::var(name).ok())
            .map_err(|(option, reason)| StartError::InvalidOption { option, reason })?;
        if self.cfg.download_dir.as_os_str().is_empty() {
            self.cfg.download_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        }
        self.cfg.events_at_turn_end = self.workers > 0;
        // The journal opens (and is read) before any thread starts: a journal the engine
        // cannot read stops the start with nothing else done.
        #[cfg(feature = "journal")]
        let journal = match &self.journal.path {
            Some(path) => Some(
                super::journaled::open(path, self.journal.sync, self.journal.keep)
                    .map_err(|e| StartError::Journal(JournalError(e)))?,
            ),
            None => None,
        };
        let cfg = Arc::new(self.cfg);
        let subs = Arc::new(Subscribers::default());
        for recipient in self.early_subscribers {
            subs.subscribe(recipient, None, crate::EventKinds::ALL)
                .map_err(|e| StartError::InvalidOption {
                    option: "subscriber",
                    reason: e.to_string(),
                })?;
        }
        #[allow(unused_mut)]
        let mut records = Records::new(
            Admission::new(self.max_active, self.max_per_host),
            cfg.download_dir.clone(),
            self.keep_ended,
            self.keep_ended_bytes,
        );
        #[cfg(feature = "journal")]
        let journal = journal.map(|opened| opened.restore(&mut records, &subs));
        let workers = Workers::start(self.workers, &cfg);
        let peers = workers.handles();
        Ok(Engine {
            records,
            cfg,
            workers,
            subs,
            global_rate: Arc::new(Bucket::new(self.max_rate)),
            shared_addr: std::sync::Weak::new(),
            peers,
            live: 0,
            shutdown: None,
            #[cfg(feature = "journal")]
            journal,
        }
        .start())
    }

    /// Start the engine (and its worker threads) on the current arbiter.
    ///
    /// Must be called inside a running actix `System` (`#[actix_web::main]`,
    /// `#[actix_rt::main]`, `System::new().block_on(..)`).
    ///
    /// # Panics
    ///
    /// When [`try_start`](Self::try_start) would fail: an option the engine cannot run with
    /// (such as a [`user_agent`](Self::user_agent) with a line break). Options that come from
    /// outside the program are better started with `try_start`.
    pub fn start(self) -> Addr<Engine> {
        match self.try_start() {
            Ok(engine) => engine,
            Err(e) => panic!("the engine cannot start: {e}"),
        }
    }
}

/// Why [`EngineBuilder::try_start`] did not start the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// An option has a value the engine cannot run with.
    InvalidOption {
        /// The builder method that set it.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The journal could not be opened or read (see [`EngineBuilder::journal`]); it was left
    /// as it was, and so was the download directory.
    #[cfg(feature = "journal")]
    Journal(JournalError),
    /// The thread of an engine started with
    /// [`EngineHandle::spawn`](crate::EngineHandle::spawn) could not be started.
    Thread(crate::Cause),
}

/// Why the journal could not be opened, read or written: its message says which file and
/// what went wrong; [`source`](std::error::Error::source) is the error underneath (I/O or
/// SQLite), when there is one.
#[cfg(feature = "journal")]
#[derive(Debug, Clone)]
pub struct JournalError(pub(crate) crate::journal::JournalError);

#[cfg(feature = "journal")]
impl PartialEq for JournalError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

#[cfg(feature = "journal")]
impl Eq for JournalError {}

#[cfg(feature = "journal")]
impl std::fmt::Display for JournalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(feature = "journal")]
impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::InvalidOption { option, reason } => {
                write!(f, "invalid option {option}: {reason}")
            }
            #[cfg(feature = "journal")]
            StartError::Journal(e) => e.fmt(f),
            StartError::Thread(cause) => {
                write!(f, "the engine's thread could not be started: {cause}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "journal")]
            // Its message is this one's: the cause underneath is the I/O or SQLite error.
            StartError::Journal(e) => e.0.source(),
            StartError::InvalidOption { .. } => None,
            StartError::Thread(cause) => cause.error(),
        }
    }
}

/// The most redirects a transfer follows, whatever [`EngineBuilder::max_redirects`] says:
/// twice curl's default (50), five times Chrome's (20).
const MAX_REDIRECTS: u32 = 100;

/// Ended records kept by default (see [`EngineBuilder::keep_ended`]).
const DEFAULT_KEEP_ENDED: usize = 1_000;

/// Bytes of bodies ended records hold by default (see [`EngineBuilder::keep_ended_bytes`]).
const DEFAULT_KEEP_ENDED_BYTES: u64 = 256 << 20;
