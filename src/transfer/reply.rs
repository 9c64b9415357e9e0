//! The answer to a stop request, sent by the transfer actor straight to the asker.

use std::sync::Arc;

use crate::{
    error::{ControlError, EndState},
    event::status::Progress,
};

/// The answer to a [`Cancel`](crate::Cancel) or [`Pause`](crate::Pause), sent by the
/// transfer's actor straight into the asker's reply channel (the Engine only passed it on), so
/// no thread hop and no task turn stands between the stop and the asker. An answer dropped
/// unsent (the actor went away) says how the transfer ended.
pub(crate) struct Reply {
    tx: Option<actix::dev::OneshotSender<Result<(), ControlError>>>,
    progress: Arc<Progress>,
}

impl Reply {
    pub(crate) fn new(
        tx: Option<actix::dev::OneshotSender<Result<(), ControlError>>>,
        progress: Arc<Progress>,
    ) -> Self {
        Reply { tx, progress }
    }

    pub(crate) fn send(mut self, answer: Result<(), ControlError>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(answer);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let end = self
                .progress
                .state()
                .end_state()
                .unwrap_or(EndState::Failed);
            let _ = tx.send(Err(ControlError::NotActive(end)));
        }
    }
}
