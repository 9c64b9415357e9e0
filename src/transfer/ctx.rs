//! `Ctx`: the state a transfer actor shares with its attempt futures, and the watchdog that
//! bounds an attempt's waits.

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use awc::{Client, ClientResponse};
use futures::channel::oneshot;

use super::{
    mirrors::Sources,
    time::{deadline, later},
    Setup,
};
use crate::{
    config::Config,
    error::{TimeoutPhase, TransferError},
    event::status::Progress,
    event::subscribers::{Delivery, Subscribers},
    event::{EventKind, EventKinds, Headers, TransferEvent, TransferId},
    file::sink::{Drain, Placement, Writer},
    request::{HttpRequest, Job, JobKind},
    throttle::Bucket,
};

/// What the idle/headers watchdog is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// A connection and then the response headers, since `since` (the attempt's start).
    Request,
    /// The response headers, since `since` (the end of an upload body).
    Headers,
    /// The next body byte in either direction, since `since`.
    Body,
}

/// State shared by the actor and its attempt futures (one thread, so `Rc` and `Cell`).
pub(crate) struct Ctx {
    // What the transfer is, fixed for its life.
    pub(crate) id: TransferId,
    pub(crate) job: Job,
    pub(crate) cfg: Arc<Config>,
    pub(crate) client: Client,
    pub(super) progress: Arc<Progress>,
    pub(super) subs: Arc<Subscribers>,
    pub(super) rate: Arc<Bucket>,
    pub(super) global_rate: Arc<Bucket>,
    /// Every worker, and the index of this transfer's own (segmented downloads).
    pub(crate) peers: Arc<[actix_rt::ArbiterHandle]>,
    pub(crate) worker: usize,
    // Its events and progress, written by its one attempt at a time.
    pub(super) seq: Cell<u64>,
    bytes: Cell<u64>,
    estimated: Cell<Option<u64>>,
    next_progress: Cell<Instant>,
    emitted: Cell<Option<u64>>,
    began: Cell<bool>,
    // The watchdog's wait.
    awaiting: Cell<Awaiting>,
    /// When the current wait began (moved on by every byte, and past a bandwidth sleep).
    pub(super) since: Cell<Instant>,
    /// The sleeping watchdog, woken when `awaiting` changes (its deadline may now be earlier).
    rearm: RefCell<Option<Waker>>,
    // What the last attempt found out, for the next decision.
    /// The `Retry-After` of the last failed response.
    pub(crate) retry_after: Cell<Option<Duration>>,
    /// The status and headers of the current attempt's last answer: its final response, or
    /// the redirect or interim answer a failure came after. What a failed or cancelled outcome
    /// shows of the server's answer.
    response: RefCell<Option<(u16, Headers)>>,
    /// An error from our own side of a request body (reading the upload file).
    body_error: RefCell<Option<TransferError>>,
    /// What only a download has: its file and what the server taught about resuming it.
    pub(crate) download: DownloadState,
    /// The journal, for a download or upload of an engine that keeps one.
    #[cfg(feature = "journal")]
    pub(crate) journal: Option<Arc<crate::journal::Journal>>,
}

/// A download's state across attempts: the `.part` file and how the server's ranges behave.
#[derive(Default)]
pub(crate) struct DownloadState {
    /// Where the `.part` is and where it goes.
    pub(super) placement: RefCell<Option<Placement>>,
    /// The `.part` file between attempts.
    pub(super) writer: RefCell<Option<Writer>>,
    /// Made by the first who asks (a fetch never does unless stopped mid-way).
    drain: std::cell::OnceCell<Drain>,
    /// Fired when a segment and its writes are gone; awaited before any stop takes effect.
    quiescence: RefCell<Vec<oneshot::Receiver<()>>>,
    /// The `If-Range` validator of the file being written, when the server gave one.
    pub(crate) validator: RefCell<Option<String>>,
    /// The URL that answered with `validator` when a redirect led there. A resume is asked of
    /// it directly (as Chrome does): through the redirect, its `Range` and `If-Range` would be
    /// stripped on the way to another origin.
    pub(crate) resume_url: RefCell<Option<url::Url>>,
    /// The source (the request's URL or a mirror) that gave `validator` and `resume_url`.
    pub(crate) resume_source: Cell<usize>,
    /// The request's URL and its mirrors: which one the next request goes to.
    pub(crate) sources: RefCell<Sources>,
    /// The server's range support proved broken; never send `Range` again.
    pub(crate) no_ranges: Cell<bool>,
    /// A segmented attempt failed: later attempts are single streams.
    pub(crate) no_segments: Cell<bool>,
    /// The attempt that just failed was segmented: one single-stream retry is owed, whatever
    /// the error (a server whose ranges misbehave may still serve the whole file).
    pub(crate) segment_fallback: Cell<bool>,
}

impl DownloadState {
    /// The `.part` writer, taken by the attempt that writes to it.
    pub(crate) fn take_writer(&self) -> Result<Writer, TransferError> {
        self.writer
            .borrow_mut()
            .take()
            .ok_or_else(|| TransferError::Internal("download attempt without its .part".into()))
    }

    pub(crate) fn drain(&self) -> Drain {
        self.drain.get_or_init(Drain::default).clone()
    }

    /// Await this `rx` before a stop takes effect (a segment on another worker).
    pub(crate) fn watch_quiescence(&self, rx: oneshot::Receiver<()>) {
        self.quiescence.borrow_mut().push(rx);
    }

    /// What to await before a stop takes effect: every segment gone.
    pub(super) fn take_quiescence(&self) -> Vec<oneshot::Receiver<()>> {
        std::mem::take(&mut *self.quiescence.borrow_mut())
    }
}

impl Ctx {
    /// The state of a transfer starting `now`, whose first event is number `seq`.
    pub(super) fn new(setup: Setup, client: Client, now: Instant) -> Self {
        let mirrors = match &setup.job.kind {
            JobKind::Download(opts) => opts.mirrors.len(),
            _ => 0,
        };
        Ctx {
            id: setup.id,
            job: setup.job,
            cfg: setup.cfg,
            client,
            progress: setup.progress,
            subs: setup.subs,
            rate: setup.rate,
            global_rate: setup.global_rate,
            peers: setup.peers,
            worker: setup.worker,
            seq: Cell::new(setup.next_seq),
            bytes: Cell::new(0),
            estimated: Cell::new(None),
            next_progress: Cell::new(now),
            emitted: Cell::new(None),
            began: Cell::new(false),
            awaiting: Cell::new(Awaiting::Request),
            since: Cell::new(now),
            rearm: RefCell::new(None),
            retry_after: Cell::new(None),
            response: RefCell::new(None),
            body_error: RefCell::new(None),
            download: DownloadState {
                sources: RefCell::new(Sources::new(1 + mirrors)),
                ..DownloadState::default()
            },
            #[cfg(feature = "journal")]
            journal: setup.journal,
        }
    }

    /// The URL of source `i`: the request's own (0) or a mirror's.
    pub(crate) fn source_url(&self, i: usize) -> &url::Url {
        match &self.job.kind {
            JobKind::Download(opts) if i > 0 => opts.mirrors.get(i - 1),
            _ => None,
        }
        .unwrap_or(&self.job.request.url)
    }

    /// The request as sent to source `i`: the caller's, at that source's URL. The caller
    /// named the mirrors, so its headers go to each of them.
    pub(crate) fn source_request(&self, i: usize) -> HttpRequest {
        let mut request = self.job.request.clone();
        if i > 0 {
            request.url = self.source_url(i).clone();
        }
        request
    }

    /// A retry is decided: its attempt goes to the next source (a no-op without mirrors).
    pub(crate) fn next_source(&self) {
        let mut sources = self.download.sources.borrow_mut();
        if sources.len() > 1 {
            let i = sources.advance();
            tracing::debug!(
                source = i,
                url = %crate::redact::url(self.source_url(i)),
                "the next attempt goes to the next mirror"
            );
        }
    }

    /// Source `i` disagreed with the file being written (another validator or length): never
    /// ask it again during this transfer.
    pub(crate) fn drop_source(&self, i: usize, why: &str) {
        if self.download.sources.borrow_mut().drop_source(i) {
            tracing::warn!(
                source = i,
                url = %crate::redact::url(self.source_url(i)),
                why,
                "mirror dropped for the rest of the transfer"
            );
        }
    }

    /// Record a transition in the journal, if the engine keeps one (nothing waits for it).
    #[cfg(feature = "journal")]
    pub(crate) fn journal(&self, changes: impl FnOnce() -> crate::journal::Changes) {
        if let Some(journal) = &self.journal {
            drop(journal.update(self.id.get(), changes()));
        }
    }

    /// Like [`journal`](Self::journal), and the commit's acknowledgement to wait for. `None`
    /// without a journal.
    #[cfg(feature = "journal")]
    pub(crate) fn journal_acked(
        &self,
        changes: impl FnOnce() -> crate::journal::Changes,
    ) -> Option<crate::journal::Reply<()>> {
        Some(self.journal.as_ref()?.update(self.id.get(), changes()))
    }

    /// The `.part` this download writes into: its final name and its identity, to be
    /// committed before any byte is written into it, so that no crash leaves a `.part` with
    /// data the next start does not know, and a file found under its final name after a
    /// crash is known to be this one (see `sink::find_placed`). `None` without a journal.
    #[cfg(feature = "journal")]
    pub(crate) fn record_part(
        &self,
        placement: &crate::file::sink::Placement,
    ) -> Option<crate::journal::Reply<()>> {
        let changes = crate::journal::Changes {
            path: Some(Some(placement.target.clone())),
            part_file: Some(Some(placement.id.raw())),
            ..Default::default()
        };
        Some(self.journal.as_ref()?.update(self.id.get(), changes))
    }

    /// A download's response was accepted: record what a resume after a restart needs (the
    /// file's name, the validator and the URL that gave it), committed before the body is
    /// written: a `.part` holding bytes always has its validator in the journal, and a
    /// restart continues it with `If-Range`. A segmented file has holes: no validator is
    /// recorded for it, so a restart fetches it from zero.
    #[cfg(feature = "journal")]
    pub(crate) async fn journal_began(&self, segmented: bool, total: Option<u64>) {
        let Some(journal) = &self.journal else {
            return;
        };
        let changes = {
            let validator = self
                .download
                .validator
                .borrow()
                .clone()
                .filter(|_| !segmented);
            let is_etag = validator.as_deref().is_some_and(|v| v.starts_with('"'));
            let (etag, modified) = match validator {
                Some(v) if is_etag => (Some(v), None),
                Some(v) => (None, Some(v)),
                None => (None, None),
            };
            crate::journal::Changes {
                final_url: Some(
                    self.download
                        .resume_url
                        .borrow()
                        .as_ref()
                        .map(|u| u.as_str().to_owned()),
                ),
                path: Some(
                    self.download
                        .placement
                        .borrow()
                        .as_ref()
                        .map(|p| p.target.clone()),
                ),
                etag: Some(etag),
                last_modified: Some(modified),
                expected_len: Some(total),
                ..Default::default()
            }
        };
        if let Err(error) = journal.update(self.id.get(), changes).await {
            // The journal fails alone: the transfer goes on (a restart then starts it over).
            tracing::warn!(id = self.id.get(), %error, "the journal did not record a response");
        }
    }

    pub(super) fn delivery(&self) -> Delivery {
        if self.cfg.events_at_turn_end {
            Delivery::EndOfTurn
        } else {
            Delivery::Now
        }
    }

    /// Publish a non-final event, if some subscription wants its kind (else it is not
    /// counted in `seq` either).
    pub(super) fn publish(&self, kind: EventKind) {
        if !self.subs.wants(EventKinds::of(&kind)) {
            return;
        }
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        self.subs.publish(
            TransferEvent {
                id: self.id,
                seq,
                kind,
            },
            self.delivery(),
        );
    }

    /// Record the estimate and publish `Began` the first time (with the `headers`, built only
    /// then); after a retry or resume, publish a `Progress` with where the transfer continues
    /// from instead.
    pub(crate) fn began(
        &self,
        status: Option<u16>,
        headers: impl FnOnce() -> Headers,
        estimated: Option<u64>,
    ) {
        self.estimated.set(estimated);
        self.progress.set_estimated(estimated);
        if self.began.replace(true) {
            self.emit_progress();
        } else if self.subs.wants(EventKinds::BEGAN) {
            self.publish(EventKind::Began {
                status,
                headers: headers(),
                bytes_estimated: estimated,
            });
        }
        self.next_progress
            .set(later(Instant::now(), self.cfg.progress_interval));
    }

    /// The total announced by the response that started this transfer, if any.
    pub(crate) fn estimated_total(&self) -> Option<u64> {
        self.estimated.get().filter(|_| self.began.get())
    }

    /// Count `n` body bytes moved: the per-chunk hot path.
    pub(crate) fn moved(&self, n: usize) {
        let bytes = self.bytes.get() + n as u64;
        self.bytes.set(bytes);
        self.progress.set_transferred(bytes);
        let now = Instant::now();
        self.since.set(now);
        if now >= self.next_progress.get() {
            self.next_progress
                .set(later(now, self.cfg.progress_interval));
            self.emit_progress();
        }
    }

    /// Segmented downloads: `sum` bytes landed across all segments. Moves the idle deadline when
    /// it grew, and publishes a throttled `Progress`.
    pub(crate) fn segments_moved(&self, sum: u64) {
        if sum > self.bytes.get() {
            let grown = (sum - self.bytes.get()) as usize;
            self.moved(grown);
        }
    }

    /// Pay for `n` bytes under the bandwidth limits: sleep off any debt before the next chunk.
    /// Throttling is not a stall: the idle deadline moves past the sleep.
    pub(crate) async fn throttle(&self, n: usize) {
        let wait = self.rate.take(n).max(self.global_rate.take(n));
        if !wait.is_zero() {
            self.since.set(Instant::now() + wait);
            actix_rt::time::sleep(wait).await;
        }
    }

    /// The body is done: one last `Progress` unless the last one already said it.
    pub(crate) fn body_done(&self) {
        if self.emitted.get() != Some(self.bytes.get()) {
            self.emit_progress();
        }
    }

    fn emit_progress(&self) {
        let bytes = self.bytes.get();
        self.emitted.set(Some(bytes));
        self.publish(EventKind::Progress {
            bytes_transferred: bytes,
            bytes_estimated: self.estimated.get(),
        });
    }

    /// Set the byte count (a resume continues from the bytes on disk; a restart from zero).
    pub(crate) fn set_bytes(&self, n: u64) {
        self.bytes.set(n);
        self.progress.set_transferred(n);
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// The watchdog now waits for a connection and the response headers.
    pub(crate) fn await_request(&self) {
        self.await_(Awaiting::Request);
    }

    /// The watchdog now waits for the response headers.
    pub(crate) fn await_headers(&self) {
        self.await_(Awaiting::Headers);
    }

    /// The watchdog now waits for body bytes (idle timeout).
    pub(crate) fn await_body(&self) {
        self.await_(Awaiting::Body);
    }

    fn await_(&self, awaiting: Awaiting) {
        self.awaiting.set(awaiting);
        self.since.set(Instant::now());
        if let Some(watchdog) = self.rearm.borrow_mut().take() {
            watchdog.wake();
        }
    }

    pub(crate) fn redirected(&self, url: &url::Url) {
        self.progress.set_final_url(url.as_str());
    }

    pub(crate) fn set_body_error(&self, e: TransferError) {
        *self.body_error.borrow_mut() = Some(e);
    }

    /// Our own body source's error, if it failed (it explains the send error awc reports).
    pub(crate) fn take_body_error(&self) -> Option<TransferError> {
        self.body_error.borrow_mut().take()
    }

    /// An answer arrived (the final response, or one `http::send` shows on the way):
    /// remember its head for the outcome, and return its headers.
    pub(crate) fn responded(&self, response: &ClientResponse) -> Headers {
        let headers = crate::http::headers_of(response);
        *self.response.borrow_mut() = Some((response.status().as_u16(), headers.clone()));
        headers
    }

    /// A new attempt begins: no response of it yet.
    pub(super) fn forget_response(&self) {
        self.response.borrow_mut().take();
    }

    /// The status and headers of the last attempt's last answer, if one arrived.
    pub(super) fn last_response(&self) -> (Option<u16>, Headers) {
        match &*self.response.borrow() {
            Some((status, headers)) => (Some(*status), headers.clone()),
            None => (None, Headers::default()),
        }
    }

    /// Note a failed response's `Retry-After` for the backoff.
    pub(crate) fn note_retry_after(&self, response: &ClientResponse) {
        self.retry_after
            .set(crate::retry::retry_after(response.headers()));
    }

    /// Whether every limit the watchdog may apply is either none or longer than `d`. (The
    /// first wait's, connect + headers, is none or longer whenever the headers' is.)
    fn limits_all_exceed(&self, d: Duration) -> bool {
        let none_or_over = |limit: Duration| limit.is_zero() || limit > d;
        none_or_over(self.headers_timeout()) && none_or_over(self.idle_timeout())
    }

    /// The headers timeout: the transfer's own, else the engine's.
    pub(crate) fn headers_timeout(&self) -> Duration {
        (self.job.timeouts.headers).unwrap_or(self.cfg.headers_timeout)
    }

    /// The idle timeout: the transfer's own, else the engine's.
    pub(crate) fn idle_timeout(&self) -> Duration {
        (self.job.timeouts.idle).unwrap_or(self.cfg.idle_timeout)
    }

    /// Fails when no byte moved for the idle timeout during a body, or the headers did not come
    /// within the headers timeout. Never ends otherwise. A zero timeout is no limit, and one
    /// too long to be a point in time never passes.
    ///
    /// An attempt whose every limit is longer than a tick waits for the thread's next tick
    /// before it arms its timer: most attempts end before, and never touch tokio's timer wheel
    /// (see `tick`).
    pub(super) async fn watchdog(self: Rc<Self>) -> TransferError {
        if self.limits_all_exceed(super::tick::TICK) {
            super::tick::next_tick().await;
        }
        // One timer for the attempt, moved to each new deadline.
        let mut sleep = std::pin::pin!(actix_rt::time::sleep_until(Instant::now().into()));
        loop {
            let (limit, phase) = match self.awaiting.get() {
                // Connecting has its own timeout (awc's connector reports it as Connect); with
                // either timeout off, this wait has no limit.
                Awaiting::Request => {
                    let (connect, headers) = (self.cfg.connect_timeout, self.headers_timeout());
                    let limit = if connect.is_zero() || headers.is_zero() {
                        Duration::ZERO
                    } else {
                        connect.saturating_add(headers)
                    };
                    (limit, TimeoutPhase::Headers)
                }
                Awaiting::Headers => (self.headers_timeout(), TimeoutPhase::Headers),
                Awaiting::Body => (self.idle_timeout(), TimeoutPhase::Idle),
            };
            let deadline = deadline(self.since.get(), limit);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return TransferError::Timeout(phase);
            }
            // Sleep until the deadline, or until the phase changes (a shorter limit may apply):
            // `await_` takes the registered waker out of `rearm` and wakes it.
            if let Some(deadline) = deadline {
                sleep.as_mut().reset(deadline.into());
            }
            let mut armed = false;
            futures::future::poll_fn(|cx| {
                if armed && self.rearm.borrow().is_none() {
                    return Poll::Ready(());
                }
                if deadline.is_some() && std::future::Future::poll(sleep.as_mut(), cx).is_ready() {
                    return Poll::Ready(());
                }
                armed = true;
                *self.rearm.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            self.rearm.borrow_mut().take();
        }
    }
}
