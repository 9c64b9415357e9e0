//! What a transfer reports to its Engine: its end and its pauses, through a [`Reporter`].
//!
//! A transfer holds no address of the Engine's: it reports through recipients of these
//! messages alone, so the transfer (and the outbox that batches its ends) does not depend on
//! the Engine.

use actix::prelude::*;

use crate::event::{Outcome, TransferId};

/// A transfer ended; its `Ended` event was published (unless `resumable`). Reported to the Engine in a
/// [`FinishedBatch`].
pub(crate) struct Finished {
    pub(crate) id: TransferId,
    pub(crate) outcome: Outcome,
    pub(crate) worker: usize,
    /// What it left on disk, for `Erase`.
    pub(crate) left: Option<Left>,
    /// Stopped by a shutdown and kept resumable by the journal: no `Ended` was published
    /// (the next start publishes it), and waiters are let go unanswered.
    pub(crate) resumable: bool,
}

/// What an ended download left on disk, for `Erase { delete_files }` to remove: only ever the
/// file this transfer wrote, never one another download put under the same name since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Left {
    /// The `.part` file, kept on failure or shutdown.
    Part(std::path::PathBuf),
    /// The completed file (its path is the outcome's): the file it was when placed.
    Placed(crate::file::sink::FileId),
}

/// Transfer → Engine: the transfers of one worker that ended during one turn of its event
/// loop. One message for many: under load, a worker thread's transfers end together, and
/// each cross-thread message costs an allocation freed on the other thread, a queue push and
/// often a wake-up.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FinishedBatch(pub(crate) Vec<Finished>);

/// Transfer → Engine: the transfer is paused and gives up its admission slot.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Parked {
    pub(crate) id: TransferId,
}

/// Where the transfers of one engine report to it. One is shared by all its running transfers
/// behind an `Arc` (see `Engine::shared_address`): building one boxes two senders, and the
/// outbox tells engines apart by that `Arc`.
pub(crate) struct Reporter {
    /// Where [`FinishedBatch`]es go (sent by the outbox).
    pub(crate) finished: Recipient<FinishedBatch>,
    /// Where [`Parked`] goes.
    pub(crate) parked: Recipient<Parked>,
}
