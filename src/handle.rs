//! [`EngineHandle`]: the engine as a `Send + Sync + Clone` value with async methods, its
//! events as a [`Stream`], and an engine on a thread of its own for programs that are not
//! actix programs (`#[tokio::main]`, or no async runtime at all).
//!
//! The handle speaks only the Engine's public messages. Events reach a stream through one
//! small forwarding actor per stream, subscribed with [`Subscribe`] like any other subscriber,
//! which puts them in a bounded channel.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use actix::{prelude::*, WeakAddr};
use actix_rt::ArbiterHandle;
use futures::{channel::mpsc, channel::oneshot, SinkExt, Stream};

#[cfg(doc)]
use crate::{Cancel, Cause};
use crate::{
    ControlError, Download, Engine, EngineBuilder, EngineState, EngineStatus, Erase, EraseError,
    EventKind, Fetch, List, Outcome, Pause, Resume, SetLimits, SetRate, Shutdown, StartError,
    Status, Subscribe, SubscriptionId, TransferError, TransferEvent, TransferId, TransferState,
    TransferStatus, Unsubscribe, Upload, Wait,
};

/// Events a stream holds for its reader before it drops `Progress` (see [`EventStream`]).
pub const EVENT_BUFFER: usize = 256;

/// How often a forwarding actor, and the thread of a spawned engine, check that the engine
/// still runs: actix has no notice of another actor's stop, so they look.
const LIVENESS: Duration = Duration::from_millis(100);

/// The engine as a value: `Send + Sync + Clone`, with an async method for every message, usable
/// from any thread and any async runtime (the replies are plain futures).
///
/// Make one from an engine started in an actix program with [`EngineHandle::new`], or start
/// an engine on a thread of its own with [`EngineHandle::spawn`] (no actix `System` needed).
///
/// # Errors
///
/// Each method answers as its message does, with one more case: when the engine has stopped
/// (after [`shutdown`](Self::shutdown), or its `System` stopped), submissions fail with
/// [`TransferError::Shutdown`], [`erase`](Self::erase) with [`EraseError::Stopped`], and every
/// other method with [`ControlError::Stopped`].
///
/// # Dropping a future
///
/// [`cancel`](Self::cancel), [`pause`](Self::pause), [`resume`](Self::resume),
/// [`set_rate`](Self::set_rate), [`set_limits`](Self::set_limits) and
/// [`shutdown`](Self::shutdown) act once called, whether or not their future is awaited or
/// dropped (their message is sent when the method is called, and its answer awaited on the
/// engine's arbiter): dropping the future only loses the answer. The other methods act when
/// first polled, and a submission whose future is dropped before the engine handled it
/// submits nothing.
///
/// # Example: inside an actix program
///
/// ```
/// use actix_transfer::{ControlError, Engine, EngineHandle, Fetch, TransferError};
///
/// # #[actix_rt::main]
/// # async fn main() {
/// let engine = EngineHandle::new(Engine::builder().workers(1).start());
/// // A clone for another task, thread or runtime.
/// let other = engine.clone();
/// let refused = other.fetch(Fetch::get("ftp://example.com/")).await;
/// assert!(matches!(refused, Err(TransferError::InvalidRequest(_))));
/// assert_eq!(engine.list(None).await.map(|all| all.len()), Ok(0));
///
/// engine.shutdown().await;
/// // A stopped engine says so.
/// let gone = engine.fetch(Fetch::get("http://127.0.0.1:9/")).await;
/// assert_eq!(gone, Err(TransferError::Shutdown));
/// assert_eq!(engine.list(None).await, Err(ControlError::Stopped));
/// # }
/// ```
#[derive(Clone)]
pub struct EngineHandle {
    engine: Addr<Engine>,
    /// Where the forwarding actors of the streams run, and where the answers of the control
    /// messages are awaited.
    arbiter: ArbiterHandle,
    /// Set for an engine started by [`EngineHandle::spawn`]: shuts it down when the last
    /// handle is dropped.
    owner: Option<Arc<Owner>>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("running", &self.engine.connected())
            .field("spawned", &self.owner.is_some())
            .finish_non_exhaustive()
    }
}

/// The owner of a spawned engine, shared by its handles.
struct Owner {
    engine: Addr<Engine>,
    arbiter: ArbiterHandle,
}

impl Drop for Owner {
    fn drop(&mut self) {
        let engine = self.engine.clone();
        self.arbiter.spawn(async move {
            let _ = engine.send(Shutdown).await;
        });
    }
}

impl EngineHandle {
    /// A handle of an engine started in this actix program.
    ///
    /// Call it on an actix arbiter (where the engine was started, for instance): the streams'
    /// forwarding actors run on this arbiter, and the answers of the control messages are
    /// awaited there. Dropping the handle does not stop the engine.
    ///
    /// # Panics
    ///
    /// Outside an actix arbiter (as `Actor::start` does). Use [`EngineHandle::spawn`] there.
    pub fn new(engine: Addr<Engine>) -> Self {
        EngineHandle {
            engine,
            arbiter: Arbiter::current(),
            owner: None,
        }
    }

    /// Start an engine on a thread of its own, with its own actix `System`, and return its
    /// handle: for programs that are not actix programs, such as `#[tokio::main]` ones, or
    /// that have no async runtime at all. It returns once the engine started (or failed to).
    ///
    /// The engine belongs to its handles: when the last clone of the handle is dropped, it
    /// shuts down (as with [`shutdown`](Self::shutdown): active transfers end
    /// `Failed(Shutdown)`, a download's `.part` file is kept). The thread ends when the engine
    /// has stopped, however it stopped. The engine's worker threads are started as with
    /// [`EngineBuilder::try_start`].
    ///
    /// Errors: what `try_start` refuses, or [`StartError::Thread`] when the thread could not be
    /// started.
    ///
    /// ```
    /// use actix_transfer::{Engine, EngineHandle, Fetch, TransferError};
    ///
    /// #[tokio::main]
    /// async fn main() {
    ///     let engine = EngineHandle::spawn(Engine::builder().workers(1)).expect("started");
    ///     // No actix System here: the engine runs on its own thread.
    ///     let refused = engine.fetch(Fetch::get("not a url")).await;
    ///     assert!(matches!(refused, Err(TransferError::InvalidRequest(_))));
    ///     engine.shutdown().await;
    /// }
    /// ```
    pub fn spawn(builder: EngineBuilder) -> Result<EngineHandle, StartError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("actix-transfer".into())
            .spawn(move || {
                System::new().block_on(async move {
                    let engine = match builder.try_start() {
                        Ok(engine) => engine,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let weak = engine.downgrade();
                    let _ = tx.send(Ok((engine, Arbiter::current())));
                    stopped(weak).await;
                });
            })
            .map_err(|e| StartError::Thread(crate::Cause::io(e)))?;
        let (engine, arbiter) = rx.recv().map_err(|_| {
            StartError::Thread(crate::Cause::new(
                "the engine's thread ended before the engine started",
            ))
        })??;
        let owner = Arc::new(Owner {
            engine: engine.clone(),
            arbiter: arbiter.clone(),
        });
        Ok(EngineHandle {
            engine,
            arbiter,
            owner: Some(owner),
        })
    }

    /// The engine's address, to send it messages directly (for instance `do_send`).
    pub fn addr(&self) -> &Addr<Engine> {
        &self.engine
    }

    /// Submit a download ([`Download`]); its id, or why it was refused.
    pub async fn download(&self, download: Download) -> Result<TransferId, TransferError> {
        self.engine
            .send(download)
            .await
            .unwrap_or(Err(TransferError::Shutdown))
    }

    /// Submit an upload ([`Upload`]); its id, or why it was refused.
    pub async fn upload(&self, upload: Upload) -> Result<TransferId, TransferError> {
        self.engine
            .send(upload)
            .await
            .unwrap_or(Err(TransferError::Shutdown))
    }

    /// Submit a fetch ([`Fetch`]); its id, or why it was refused.
    pub async fn fetch(&self, fetch: Fetch) -> Result<TransferId, TransferError> {
        self.engine
            .send(fetch)
            .await
            .unwrap_or(Err(TransferError::Shutdown))
    }

    /// Cancel a transfer (see [`Cancel`]); acts even if the future is dropped.
    pub fn cancel(
        &self,
        id: TransferId,
    ) -> impl Future<Output = Result<(), ControlError>> + Send + 'static {
        let answer = self.act(crate::Cancel(id));
        async move { answer.await.unwrap_or(Err(ControlError::Stopped)) }
    }

    /// Pause a transfer (see [`Pause`]); acts even if the future is dropped.
    pub fn pause(
        &self,
        id: TransferId,
    ) -> impl Future<Output = Result<(), ControlError>> + Send + 'static {
        let answer = self.act(Pause(id));
        async move { answer.await.unwrap_or(Err(ControlError::Stopped)) }
    }

    /// Resume a paused transfer (see [`Resume`]); acts even if the future is dropped.
    pub fn resume(
        &self,
        id: TransferId,
    ) -> impl Future<Output = Result<(), ControlError>> + Send + 'static {
        let answer = self.act(Resume(id));
        async move { answer.await.unwrap_or(Err(ControlError::Stopped)) }
    }

    /// Change one transfer's bandwidth limit (see [`SetRate`]); acts even if the future is
    /// dropped.
    pub fn set_rate(
        &self,
        id: TransferId,
        bytes_per_sec: Option<u64>,
    ) -> impl Future<Output = Result<(), ControlError>> + Send + 'static {
        let answer = self.act(SetRate { id, bytes_per_sec });
        async move { answer.await.unwrap_or(Err(ControlError::Stopped)) }
    }

    /// Change the admission limits (see [`SetLimits`]); acts even if the future is dropped.
    pub fn set_limits(
        &self,
        limits: SetLimits,
    ) -> impl Future<Output = Result<(), ControlError>> + Send + 'static {
        let answer = self.act(limits);
        async move { answer.await.ok_or(ControlError::Stopped) }
    }

    /// Shut the engine down gracefully (see [`Shutdown`]) and wait until it has; at once when
    /// it had stopped already. Acts even if the future is dropped.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let answer = self.act(Shutdown);
        async move {
            let _ = answer.await;
        }
    }

    /// A snapshot of one transfer (see [`Status`]); `Err(Unknown)` for an id the engine never
    /// issued or no longer remembers.
    pub async fn status(&self, id: TransferId) -> Result<TransferStatus, ControlError> {
        match self.engine.send(Status(id)).await {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err(ControlError::Unknown),
            Err(_) => Err(ControlError::Stopped),
        }
    }

    /// Snapshots of every transfer in the given state, or of all with `None` (see [`List`]).
    pub async fn list(
        &self,
        state: Option<TransferState>,
    ) -> Result<Vec<TransferStatus>, ControlError> {
        self.query(List::from(state)).await
    }

    /// Snapshots of the transfers a [`List`] selects (by state, URL, time).
    pub async fn query(&self, list: List) -> Result<Vec<TransferStatus>, ControlError> {
        self.engine
            .send(list)
            .await
            .map_err(|_| ControlError::Stopped)
    }

    /// The engine's own state: its journal's, and its transfers by state (see
    /// [`EngineStatus`]).
    pub async fn engine_status(&self) -> Result<EngineState, ControlError> {
        self.engine
            .send(EngineStatus)
            .await
            .map_err(|_| ControlError::Stopped)
    }

    /// The transfer's outcome, once it ends (at once if it has; see [`Wait`]). `Err(Unknown)`
    /// for an id the engine never issued or no longer remembers.
    pub async fn wait(&self, id: TransferId) -> Result<Outcome, ControlError> {
        match self.engine.send(Wait(id)).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => Err(ControlError::Unknown),
            Err(_) => Err(ControlError::Stopped),
        }
    }

    /// Forget an ended transfer, and with `delete_files` remove its file (see [`Erase`]).
    pub async fn erase(&self, id: TransferId, delete_files: bool) -> Result<(), EraseError> {
        self.engine
            .send(Erase { id, delete_files })
            .await
            .unwrap_or(Err(EraseError::Stopped))
    }

    /// The events of every transfer, from now on, as a stream (see [`EventStream`] for what
    /// it holds and when it ends). Subscribed when this returns: a transfer submitted after
    /// that is seen from its `Queued`.
    ///
    /// ```
    /// use actix_transfer::{Engine, EngineHandle, EventKind, Fetch, RetryPolicy};
    /// use futures::StreamExt;
    ///
    /// # #[actix_rt::main]
    /// # async fn main() {
    /// let engine = Engine::builder().workers(1).retry(RetryPolicy::never()).start();
    /// let engine = EngineHandle::new(engine);
    /// let mut events = engine.events().await.expect("the engine runs");
    /// // Port 9 of the loopback (discard) most likely refuses: the fetch fails at once.
    /// let id = engine.fetch(Fetch::get("http://127.0.0.1:9/")).await.unwrap();
    /// let mut kinds = Vec::new();
    /// while let Some(event) = events.next().await {
    ///     assert_eq!(event.id, id);
    ///     let end = matches!(event.kind, EventKind::Ended(_));
    ///     kinds.push(event.kind);
    ///     if end {
    ///         break;
    ///     }
    /// }
    /// assert_eq!(kinds[0], EventKind::Queued);
    /// assert!(matches!(kinds.last(), Some(EventKind::Ended(_))));
    /// # }
    /// ```
    pub async fn events(&self) -> Result<EventStream, ControlError> {
        self.subscribe(None).await
    }

    /// The events of one transfer, from now on (or its `Ended`, when it has ended), as a
    /// stream that ends after that transfer's `Ended`. `Err(Unknown)` for an id the engine
    /// never issued or no longer remembers.
    pub async fn events_of(&self, id: TransferId) -> Result<EventStream, ControlError> {
        let stream = self.subscribe(Some(id)).await?;
        // Asked after subscribing: a transfer the engine knows now either has ended (and the
        // subscription got its remembered `Ended`) or will send its `Ended` to it.
        self.status(id).await?;
        Ok(stream)
    }

    async fn subscribe(&self, only: Option<TransferId>) -> Result<EventStream, ControlError> {
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        let weak = self.engine.downgrade();
        let forwarder = Forwarder::start_in_arbiter(&self.arbiter, move |_| Forwarder {
            tx,
            engine: weak,
            subscription: None,
            one: only.is_some(),
        });
        let recipient = forwarder.clone().recipient();
        let msg = match only {
            Some(id) => Subscribe::one(recipient, id),
            None => Subscribe::all(recipient),
        };
        // The forwarder was started just now: a refusal means the engine (or its arbiter) is
        // gone, like a mailbox error.
        let Ok(Ok(subscription)) = self.engine.send(msg).await else {
            forwarder.do_send(Close);
            return Err(ControlError::Stopped);
        };
        forwarder.do_send(Subscribed(subscription));
        Ok(EventStream {
            rx,
            forwarder,
            subscription,
            engine: self.engine.downgrade(),
        })
    }

    /// Send `msg` now and await its answer on the engine's arbiter, so that dropping the
    /// returned future loses only the answer (actix drops a message whose asker went away).
    /// `None` when the engine has stopped.
    fn act<M>(&self, msg: M) -> impl Future<Output = Option<M::Result>> + Send + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Engine: Handler<M>,
    {
        let request = self.engine.send(msg);
        let (tx, rx) = oneshot::channel();
        self.arbiter.spawn(async move {
            if let Ok(answer) = request.await {
                let _ = tx.send(answer);
            }
        });
        async move { rx.await.ok() }
    }
}

/// Resolves once the engine has stopped.
async fn stopped(engine: WeakAddr<Engine>) {
    while running(&engine) {
        actix_rt::time::sleep(LIVENESS).await;
    }
}

fn running(engine: &WeakAddr<Engine>) -> bool {
    engine.upgrade().is_some_and(|e| e.connected())
}

/// The events of an engine, as a [`Stream`]: from [`EngineHandle::events`] (every transfer)
/// or [`EngineHandle::events_of`] (one transfer).
///
/// Each transfer's events come in order, as [`TransferEvent`] describes, with one exception:
/// the stream holds up to [`EVENT_BUFFER`] events its reader has not taken yet, and while it is
/// full, `Progress` events are dropped (the next `Progress`, and the `Ended` outcome, carry the
/// count; their `seq` then has gaps). Every other event waits for room, and meanwhile the
/// events behind it wait in the forwarding actor's mailbox: a reader that falls behind loses
/// progress updates, never a `Queued`, `Began`, `Retrying`, `Paused`, `Resumed` or `Ended`.
///
/// The stream ends when the engine stops (within a fraction of a second), and a stream of one
/// transfer after its `Ended`. Dropping it ends its subscription.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<TransferEvent>,
    forwarder: Addr<Forwarder>,
    subscription: SubscriptionId,
    engine: WeakAddr<Engine>,
}

impl EventStream {
    /// The subscription behind this stream; it ends when the stream is dropped.
    pub fn subscription(&self) -> SubscriptionId {
        self.subscription
    }
}

impl Stream for EventStream {
    type Item = TransferEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.rx.size_hint()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Unsubscribed from here, so that a message sent to the engine after the drop finds
        // the subscription gone; the forwarder stops too.
        if let Some(engine) = self.engine.upgrade() {
            engine.do_send(Unsubscribe(self.subscription));
        }
        self.forwarder.do_send(Close);
    }
}

/// One stream's subscriber: forwards events into its bounded channel.
struct Forwarder {
    tx: mpsc::Sender<TransferEvent>,
    engine: WeakAddr<Engine>,
    subscription: Option<SubscriptionId>,
    /// A stream of one transfer: it ends after that transfer's `Ended`.
    one: bool,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

impl Actor for Forwarder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(LIVENESS, |act, ctx| {
            if act.tx.is_closed() || !running(&act.engine) {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let (Some(sub), Some(engine)) = (self.subscription, self.engine.upgrade()) {
            engine.do_send(Unsubscribe(sub));
        }
    }
}

impl Handler<TransferEvent> for Forwarder {
    type Result = ();

    fn handle(&mut self, event: TransferEvent, ctx: &mut Context<Self>) {
        let last = self.one && matches!(event.kind, EventKind::Ended(_));
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(e) if e.is_disconnected() => return ctx.stop(),
            Err(e) => {
                let event = e.into_inner();
                if !matches!(event.kind, EventKind::Progress { .. }) {
                    // Wait for room, and keep the events behind this one in the mailbox.
                    let mut tx = self.tx.clone();
                    let send = async move { tx.send(event).await };
                    ctx.wait(send.into_actor(self).map(move |sent, _, ctx| {
                        if sent.is_err() || last {
                            ctx.stop();
                        }
                    }));
                    return;
                }
            }
        }
        if last {
            ctx.stop();
        }
    }
}

/// The subscription a forwarder ends when it stops.
#[derive(Message)]
#[rtype(result = "()")]
struct Subscribed(SubscriptionId);

impl Handler<Subscribed> for Forwarder {
    type Result = ();

    fn handle(&mut self, Subscribed(sub): Subscribed, _ctx: &mut Context<Self>) {
        self.subscription = Some(sub);
    }
}

/// The stream was dropped.
#[derive(Message)]
#[rtype(result = "()")]
struct Close;

impl Handler<Close> for Forwarder {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    fn is_send_sync<T: Send + Sync + 'static>() {}
    fn is_send_unpin<T: Send + Unpin + 'static>() {}
    fn is_send<T: Send>(_: &T) {}

    #[test]
    fn handle_and_stream_cross_threads() {
        is_send_sync::<super::EngineHandle>();
        is_send_unpin::<super::EventStream>();
    }

    #[allow(dead_code)]
    fn futures_are_send(h: &super::EngineHandle, id: crate::TransferId) {
        is_send(&h.download(crate::Download::new("http://x/")));
        is_send(&h.upload(crate::Upload::new("http://x/", "f")));
        is_send(&h.fetch(crate::Fetch::get("http://x/")));
        is_send(&h.cancel(id));
        is_send(&h.wait(id));
        is_send(&h.status(id));
        is_send(&h.list(None));
        is_send(&h.erase(id, false));
        is_send(&h.events());
        is_send(&h.events_of(id));
        is_send(&h.shutdown());
    }
}
