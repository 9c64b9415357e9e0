//! The engine's settings, as the Engine, its workers and every transfer read them.

use std::{path::PathBuf, time::Duration};

use crate::retry::RetryPolicy;

/// The engine's settings, fixed at start (limits can change at run time with
/// [`SetLimits`](crate::SetLimits)).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) download_dir: PathBuf,
    pub(crate) connect_timeout: Duration,
    pub(crate) headers_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) total_timeout: Option<Duration>,
    pub(crate) progress_interval: Duration,
    pub(crate) max_redirects: u32,
    pub(crate) max_body: u64,
    pub(crate) user_agent: String,
    pub(crate) keep_alive: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) segments: u32,
    pub(crate) segment_threshold: u64,
    pub(crate) fsync: bool,
    /// Transfers run on worker threads (not `workers(0)`): their events go out at the end of
    /// each turn of their thread (see `subscribers::Delivery`).
    pub(crate) events_at_turn_end: bool,
    /// The TLS config of every worker's connector, built at start (`http::tls`).
    #[cfg(feature = "rustls")]
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// The proxies every worker's connector goes through, chosen at start (`http::proxy`).
    pub(crate) proxies: Option<std::sync::Arc<crate::http::proxy::Proxies>>,
}
