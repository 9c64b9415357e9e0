//! The reply plumbing of [`Cancel`](crate::Cancel) and [`Pause`](crate::Pause): answered at
//! once, or by the transfer's actor, which gets the asker's own reply channel.

use std::sync::Arc;

use actix::prelude::*;

use super::{records::ControlAnswer, Engine};
use crate::{
    error::ControlError,
    event::status::Progress,
    transfer::{Reply, TransferActor},
};

/// The Engine's answer to [`Cancel`](crate::Cancel) and [`Pause`](crate::Pause): given at
/// once, or by the transfer's actor, which gets the asker's reply channel and answers once the
/// stop took effect (one thread hop fewer than answering through the Engine). What a `send` of
/// either message resolves to is `Result<(), ControlError>`; this type only appears as the
/// handlers' `Result` (public for that, and not exported: no one names it).
pub struct StopAnswer(Answer);

enum Answer {
    Now(Result<(), ControlError>),
    Forward {
        /// Sends the transfer its message, carrying the reply.
        send: Box<dyn FnOnce(Reply)>,
        /// For the answer of a transfer that went away without one.
        progress: Arc<Progress>,
    },
}

impl std::fmt::Debug for StopAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Answer::Now(answer) => f.debug_tuple("StopAnswer").field(answer).finish(),
            Answer::Forward { .. } => f.write_str("StopAnswer(forwarded)"),
        }
    }
}

impl<M> actix::dev::MessageResponse<Engine, M> for StopAnswer
where
    M: Message<Result = Result<(), ControlError>>,
{
    fn handle(
        self,
        _ctx: &mut Context<Engine>,
        tx: Option<actix::dev::OneshotSender<Result<(), ControlError>>>,
    ) {
        match self.0 {
            Answer::Now(answer) => {
                // Sent from a task of its own, as actix sends a `ResponseFuture`'s result: the
                // answers of a burst (cancelling many queued transfers) then go out after the
                // Engine's mailbox turn, and the asker wakes once for many. Sent at once, each
                // would wake it on its own.
                actix_rt::spawn(async move {
                    if let Some(tx) = tx {
                        let _ = tx.send(answer);
                    }
                });
            }
            Answer::Forward { send, progress } => send(Reply::new(tx, progress)),
        }
    }
}

/// Pass the asker's reply channel to the transfer's actor in a `msg`; it answers once the stop
/// took effect (or, gone already, its dropped `Reply` answers with how the transfer ended).
fn forward<M>(addr: Addr<TransferActor>, msg: fn(Reply) -> M, progress: Arc<Progress>) -> StopAnswer
where
    M: Message<Result = ()> + Send + 'static,
    TransferActor: Handler<M>,
{
    StopAnswer(Answer::Forward {
        send: Box::new(move |reply| addr.do_send(msg(reply))),
        progress,
    })
}

impl StopAnswer {
    /// Carry out the record table's answer: give it now, or forward the request to the
    /// transfer's actor in a `msg`.
    pub(super) fn carry<M>(answer: ControlAnswer<Addr<TransferActor>>, msg: fn(Reply) -> M) -> Self
    where
        M: Message<Result = ()> + Send + 'static,
        TransferActor: Handler<M>,
    {
        match answer {
            ControlAnswer::Now(answer) => StopAnswer(Answer::Now(answer)),
            ControlAnswer::Forward(addr, progress) => forward(addr, msg, progress),
        }
    }
}

pub(super) fn ready<T: 'static>(v: T) -> ResponseFuture<T> {
    Box::pin(async move { v })
}
