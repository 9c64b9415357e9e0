//! The messages between the Engine and a transfer actor: what starts it, and how it is
//! cancelled, paused, resumed and aborted.

use std::sync::Arc;

use actix::prelude::*;

use super::Reply;
use crate::{
    config::Config, error::TransferError, event::report::Reporter, event::status::Progress,
    event::subscribers::Subscribers, event::TransferId, request::Job, throttle::Bucket,
};

/// Everything the Engine hands a worker to start a transfer (all `Send`).
pub(crate) struct Setup {
    pub(crate) id: TransferId,
    pub(crate) job: Job,
    pub(crate) cfg: Arc<Config>,
    pub(crate) subs: Arc<Subscribers>,
    pub(crate) progress: Arc<Progress>,
    /// This transfer's own bandwidth limit, and the engine's.
    pub(crate) rate: Arc<Bucket>,
    pub(crate) global_rate: Arc<Bucket>,
    pub(crate) peers: Arc<[actix_rt::ArbiterHandle]>,
    /// Where to report to the Engine, one shared by its transfers (cloning it allocates).
    pub(crate) engine: Arc<Reporter>,
    pub(crate) worker: usize,
    /// The seq of the first event this actor publishes (the Engine published `Queued`).
    pub(crate) next_seq: u64,
    /// The journal, for a download or upload of an engine that keeps one.
    #[cfg(feature = "journal")]
    pub(crate) journal: Option<Arc<crate::journal::Journal>>,
}

/// Engine → transfer: cancel (the Engine forwards [`Cancel`](crate::Cancel)), and answer with
/// this [`Reply`] once it took effect: the asker's own reply channel, answered the moment the
/// transfer ends, without the Engine (one more thread, or one more turn of a busy thread) in
/// between.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CancelTransfer(pub(crate) Reply);

/// Engine → transfer: pause (the Engine forwards [`Pause`](crate::Pause)); answered like
/// [`CancelTransfer`].
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PauseTransfer(pub(crate) Reply);

/// Engine → transfer: a paused transfer was admitted again; continue.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ResumeTransfer;

/// Engine → transfer: stop now and fail with this error (shutdown). The `.part` file stays.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct AbortTransfer(pub(crate) TransferError);
