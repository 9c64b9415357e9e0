//! The transfer actor: one per transfer, on a worker thread, owning its stream from the first
//! byte to the `Ended` event, through retries, pauses and resumes.
//!
//! The actor runs its I/O as *attempts*: each is a future (see `download`, `upload`, `fetch`)
//! wrapped in [`futures::future::Abortable`] and spawned into the actor's own context, so the
//! actor keeps answering messages while bytes flow. A [`Cancel`](crate::Cancel) or
//! [`Pause`](crate::Pause) aborts the attempt: the abort flag is checked before the I/O future
//! is polled again, so not one more byte is read or written, and actix drops the future
//! (closing the connection, so it never returns to the pool) before the attempt's completion
//! runs. Then the write in flight, if any, is awaited (the `.part` length is now exactly what
//! is on disk), and only then is the `.part` removed or kept, the event published and the
//! request answered: reply and event always agree.
//!
//! What happens next at each step (the phases, the stop requests, retry-or-fail) is decided by
//! [`Lifecycle`](lifecycle::Lifecycle), plain data with no actix in it; this actor carries out
//! its decisions with spawns, timers and abort handles.
//!
//! *Finishing* is not abortable: a cancel arriving then is answered `NotActive` with the real
//! end once it is known. Exactly one `Ended`: [`TransferActor::finish`] is the only place that
//! publishes it, it runs at most once, and `stopped()` calls it with a `Panicked` error if the
//! actor stops any other way (a panic in the actor).
//!
//! Here `ctx` is the actix `Context`, as in every actor; the state shared with the attempt
//! futures (an `Rc<Ctx>`) is `shared`.

mod body;
mod ctx;
mod download;
mod fetch;
mod lifecycle;
mod messages;
mod mirrors;
mod reply;
mod segmented;
mod tick;
mod time;
mod upload;

use std::{fs::File, rc::Rc, sync::Arc, time::Instant};

use actix::{fut::wrap_future, prelude::*};
use awc::Client;
use bytes::Bytes;
use futures::future::{select, AbortHandle, Abortable, Aborted, Either};
use tracing::Instrument;

pub(crate) use body::{BodyReader, ChunkYield};
pub(crate) use ctx::Ctx;
use lifecycle::{Failure, Lifecycle, Next, OnStop, Rules, Stop};
pub(crate) use messages::{AbortTransfer, CancelTransfer, PauseTransfer, ResumeTransfer, Setup};
pub(crate) use reply::Reply;

use crate::event::report::{Finished, Left, Parked, Reporter};
use crate::{
    error::{ControlError, EndState, TimeoutPhase, TransferError},
    event::outbox,
    event::status::TransferState,
    event::{EventKind, Headers, Outcome, Output, TransferEvent},
    file::policy::Partial,
    file::sink::{self, Writer},
    request::JobKind,
};

/// The outcome of a transfer whose result is `output`.
fn completed(bytes: u64, status: u16, headers: Headers, url: String, output: Output) -> Outcome {
    Outcome::Completed {
        bytes,
        status,
        headers,
        url,
        output,
    }
}

/// What an attempt produced when its body was complete.
pub(crate) enum Done {
    /// A download: the verified `.part` file, all writes landed.
    File {
        file: File,
        bytes: u64,
        status: u16,
        headers: Headers,
        url: String,
    },
    /// A fetch or upload: the response body.
    Memory {
        body: Bytes,
        bytes: u64,
        status: u16,
        headers: Headers,
        url: String,
    },
}

/// The transfer actor.
pub(crate) struct TransferActor {
    shared: Rc<Ctx>,
    engine: Arc<Reporter>,
    worker: usize,
    life: Lifecycle,
    /// The attempt in flight (phase `Running`).
    attempt: Option<AbortHandle>,
    /// The timer that ends a backoff (phase `Backoff`).
    backoff: Option<SpawnHandle>,
    cancel_replies: Vec<Reply>,
    pause_replies: Vec<Reply>,
    kept_part: Option<std::path::PathBuf>,
    /// The completed file's identity, once placed.
    placed: Option<crate::file::sink::FileId>,
    span: tracing::Span,
    /// With a journal: the end is decided, its record is being committed, and `Ended` goes
    /// out once it is (requests arriving meanwhile are answered with it).
    #[cfg(feature = "journal")]
    ending: Option<Outcome>,
}

impl TransferActor {
    pub(crate) fn new(setup: Setup, client: Client) -> Self {
        let kind = match setup.job.kind {
            JobKind::Download(_) => "download",
            JobKind::Upload { .. } => "upload",
            JobKind::Fetch { .. } => "fetch",
        };
        let span = tracing::debug_span!(
            "transfer",
            id = setup.id.get(),
            kind,
            url = %crate::redact::url(&setup.job.request.url)
        );
        let now = Instant::now();
        // The transfer's own total timeout, else the engine's; zero is no limit.
        let total = match setup.job.timeouts.total {
            Some(own) => Some(own).filter(|d| !d.is_zero()),
            None => setup.cfg.total_timeout,
        };
        let deadline = total.and_then(|t| time::deadline(now, t));
        let (engine, worker) = (Arc::clone(&setup.engine), setup.worker);
        TransferActor {
            shared: Rc::new(Ctx::new(setup, client, now)),
            engine,
            worker,
            life: Lifecycle::new(deadline),
            attempt: None,
            backoff: None,
            cancel_replies: Vec::new(),
            pause_replies: Vec::new(),
            kept_part: None,
            placed: None,
            span,
            #[cfg(feature = "journal")]
            ending: None,
        }
    }

    /// Record the start; then a download restored from the journal whose file is already in
    /// place completes, any other download opens its `.part` ([`Self::open_part`]), and the
    /// rest start.
    fn prepare(&mut self, ctx: &mut Context<Self>) {
        #[cfg(feature = "journal")]
        let restore = self.shared.job.restore.clone();
        #[cfg(feature = "journal")]
        let started = {
            let started = self.shared.journal_acked(|| crate::journal::Changes {
                state: Some(TransferState::Active),
                started_ms: Some(Some(crate::journal::now_ms())),
                ..Default::default()
            });
            if let Some(error) = restore.as_ref().and_then(|r| r.fail.clone()) {
                return self.end_failed(error, false, ctx);
            }
            started
        };
        let JobKind::Download(_) = &self.shared.job.kind else {
            return self.start_attempt(ctx);
        };
        // No `.part` is created before the transfer's row is committed (the journal's one
        // queue commits the row before this change): a crash never leaves a `.part` behind
        // that the next start cannot know.
        #[cfg(feature = "journal")]
        if let Some(started) = started {
            ctx.spawn(wrap_future(started).map(|res, act: &mut Self, ctx| {
                if let Err(error) = res {
                    tracing::warn!(parent: &act.span, %error, "the journal did not record the start");
                }
                act.prepare_download(ctx);
            }));
            return;
        }
        self.prepare_download(ctx);
    }

    /// Downloads: find a file a previous process already placed (restored from the journal),
    /// else open the `.part`.
    fn prepare_download(&mut self, ctx: &mut Context<Self>) {
        #[cfg(feature = "journal")]
        let restore = self.shared.job.restore.clone();
        #[cfg(feature = "journal")]
        if let Some((target, id)) = restore
            .as_ref()
            .and_then(|r| r.path.clone().zip(r.part_file))
        {
            // The file may already be in place: moved there by a process that stopped
            // before the journal recorded the end.
            let (id, len) = (
                sink::FileId::from_raw(id),
                restore.and_then(|r| r.expected_len),
            );
            let found = crate::file::blocking::run(move || sink::find_placed(&target, id, len));
            ctx.spawn(wrap_future(found).map(move |found, act: &mut Self, ctx| {
                match found.ok().flatten() {
                    Some((path, bytes)) => act.placed_before(path, bytes, id, ctx),
                    None => act.open_part(ctx),
                }
            }));
            return;
        }
        self.open_part(ctx);
    }

    /// Downloads: create the `.part` file off-thread (or re-adopt the one a restored
    /// transfer kept), then start.
    fn open_part(&mut self, ctx: &mut Context<Self>) {
        #[cfg(feature = "journal")]
        let restore = self.shared.job.restore.clone();
        let JobKind::Download(opts) = &self.shared.job.kind else {
            return self.start_attempt(ctx);
        };
        let dir = self.shared.cfg.download_dir.clone();
        let (target, conflict) = (opts.target.clone(), opts.conflict);
        let hashed = opts.expect_sha256.is_some();
        let fsync = opts.fsync.unwrap_or(self.shared.cfg.fsync);
        #[cfg(feature = "journal")]
        if let Some(restore) = restore {
            // The validator pins the bytes kept to one version of the resource; a hashed
            // download cannot continue its digest from a file, so it starts from zero.
            if !hashed {
                *self.shared.download.validator.borrow_mut() = restore.validator.clone();
            }
            *self.shared.download.resume_url.borrow_mut() = restore
                .final_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .filter(|u| *u != self.shared.job.request.url);
            let kept = restore.path.clone();
            let job = crate::file::blocking::run(move || {
                if let Some((p, f, len)) =
                    kept.as_deref().map(sink::adopt_part).transpose()?.flatten()
                {
                    let mut writer = Writer::new(f, hashed).write_behind(fsync);
                    writer.written = len;
                    return Ok(Some((p, writer)));
                }
                // Named after its response: no `.part` until the response's head arrives.
                let Some(target) = target else {
                    return Ok(None);
                };
                // Its `.part` created but not recorded when its process died: take it back,
                // so that the download keeps its name.
                if let Some((p, f)) = sink::adopt_empty_orphan(&dir, &target)? {
                    return Ok(Some((p, Writer::new(f, hashed).write_behind(fsync))));
                }
                sink::prepare_part(&dir, &target, conflict)
                    .map(|(p, f)| Some((p, Writer::new(f, hashed).write_behind(fsync))))
            });
            return self.prepared(job, ctx);
        }
        // Named after its response: the `.part` is created once its head arrived (download.rs).
        let Some(target) = target else {
            return self.start_attempt(ctx);
        };
        let job = crate::file::blocking::run(move || {
            sink::prepare_part(&dir, &target, conflict)
                .map(|(p, f)| Some((p, Writer::new(f, hashed).write_behind(fsync))))
        });
        self.prepared(job, ctx);
    }

    /// A restored download whose file a previous process already moved into place: it
    /// completes without a request (its `Ended` committed before it is published, once).
    #[cfg(feature = "journal")]
    fn placed_before(
        &mut self,
        path: std::path::PathBuf,
        bytes: u64,
        id: sink::FileId,
        ctx: &mut Context<Self>,
    ) {
        tracing::debug!(parent: &self.span, path = %path.display(), "found in place after a restart");
        self.shared.set_bytes(bytes);
        self.life.body_complete();
        self.placed = Some(id);
        let job = &self.shared.job;
        let url = (job.restore.as_ref().and_then(|r| r.final_url.clone()))
            .unwrap_or_else(|| job.request.url.to_string());
        let outcome = completed(bytes, 200, Headers::default(), url, Output::File(path));
        self.end(outcome, ctx);
    }

    /// The `.part` is ready (or could not be): start, or fail.
    fn prepared(
        &mut self,
        job: crate::file::blocking::Pending<
            Result<Option<(sink::Placement, Writer)>, TransferError>,
        >,
        ctx: &mut Context<Self>,
    ) {
        ctx.spawn(wrap_future(job).map(|res, act: &mut Self, ctx| {
            match res.unwrap_or_else(|e| Err(e.into())) {
                Ok(None) => act.stop_point(None, ctx),
                Ok(Some((placement, writer))) => {
                    let download = &act.shared.download;
                    act.shared.set_bytes(writer.written);
                    act.shared.progress.set_path(placement.target.clone());
                    #[cfg(feature = "journal")]
                    crate::fault::point(crate::fault::Point::PartCreated);
                    #[cfg(feature = "journal")]
                    let recorded = act.shared.record_part(&placement);
                    *download.placement.borrow_mut() = Some(placement);
                    *download.writer.borrow_mut() = Some(writer);
                    #[cfg(feature = "journal")]
                    if let Some(recorded) = recorded {
                        // Nothing is written into the `.part` before the journal knows it.
                        ctx.spawn(wrap_future(recorded).map(|res, act: &mut Self, ctx| {
                            if let Err(error) = res {
                                tracing::warn!(parent: &act.span, %error, "the journal did not record the .part");
                            }
                            crate::fault::point(crate::fault::Point::PartRecorded);
                            act.stop_point(None, ctx);
                        }));
                        return;
                    }
                    act.stop_point(None, ctx);
                }
                Err(error) => act.stop_point(Some(error), ctx),
            }
        }));
    }

    fn start_attempt(&mut self, ctx: &mut Context<Self>) {
        let total = self.life.start_attempt();
        // Now, not in the attempt's future: one aborted before its first poll has no answer
        // either, and must not show the previous attempt's.
        self.shared.forget_response();
        let (handle, registration) = AbortHandle::new_pair();
        let shared = Rc::clone(&self.shared);
        let io = async move {
            shared.await_request();
            shared.retry_after.set(None);
            let run = std::pin::pin!(async {
                match &shared.job.kind {
                    // Boxed: a download's state is the largest by far, and unboxed it would
                    // size every attempt's future, a fetch's too, which is moved several times
                    // before its first poll.
                    JobKind::Download(opts) => Box::pin(download::run(&shared, opts)).await,
                    JobKind::Upload {
                        body,
                        size,
                        max_body,
                    } => upload::run(&shared, body, *size, *max_body).await,
                    JobKind::Fetch { .. } => fetch::run(&shared).await,
                }
            });
            let watchdog = std::pin::pin!(Rc::clone(&shared).watchdog());
            let guarded = async {
                match select(run, watchdog).await {
                    Either::Left((res, _)) => res,
                    Either::Right((err, _)) => Err(err),
                }
            };
            match total {
                Some(at) => {
                    actix_rt::time::timeout(at.saturating_duration_since(Instant::now()), guarded)
                        .await
                        .unwrap_or(Err(TransferError::Timeout(TimeoutPhase::Total)))
                }
                None => guarded.await,
            }
        };
        self.attempt = Some(handle);
        // No subscriber wants the span: the attempt's polls need not enter it.
        let io = if self.span.is_disabled() {
            Either::Left(io)
        } else {
            Either::Right(io.instrument(self.span.clone()))
        };
        ctx.spawn(
            wrap_future(Abortable::new(io, registration))
                .map(|res, act: &mut Self, ctx| act.attempt_done(res, ctx)),
        );
    }

    /// An attempt ended: aborted, failed, or its body is complete. The I/O future has been
    /// dropped by now (actix drops a mapped future before the closure runs).
    fn attempt_done(
        &mut self,
        res: Result<Result<Done, TransferError>, Aborted>,
        ctx: &mut Context<Self>,
    ) {
        self.attempt = None;
        match res {
            Ok(Ok(done)) => self.complete(done, ctx),
            Ok(Err(error)) => {
                tracing::debug!(parent: &self.span, %error, attempt = self.life.attempts(), "attempt failed");
                self.quiesce(Some(error), ctx);
            }
            Err(Aborted) => self.quiesce(None, ctx),
        }
    }

    /// Take back the `.part` writer once its write in flight landed (and every segment is
    /// gone), then go on from the stop point.
    fn quiesce(&mut self, error: Option<TransferError>, ctx: &mut Context<Self>) {
        self.life.settling();
        let download = &self.shared.download;
        let drain = download.drain();
        // Bytes still buffered are landed for whatever may continue from the file (a retry, a
        // resume, a kept `.part`), not for a cancel that removes it.
        let discarded =
            self.life.cancel_pending() && self.partial_policy(|o| o.on_cancel) == Partial::Delete;
        let segments = download.take_quiescence();
        let quiet = async move {
            // Segments on other workers stop reading and writing before anything else happens.
            for rx in segments {
                let _ = rx.await;
            }
            drain.reclaim(!discarded).await
        };
        ctx.spawn(wrap_future(quiet).map(move |writer, act: &mut Self, ctx| {
            if let Some(w) = writer {
                *act.shared.download.writer.borrow_mut() = Some(w);
            }
            act.stop_point(error, ctx);
        }));
    }

    /// No I/O runs: carry out what the lifecycle decides.
    fn stop_point(&mut self, error: Option<TransferError>, ctx: &mut Context<Self>) {
        let next = self.life.stop_point(error, Instant::now());
        self.carry_out(next, ctx);
    }

    fn carry_out(&mut self, next: Next, ctx: &mut Context<Self>) {
        match next {
            Next::Attempt => self.start_attempt(ctx),
            Next::EndCancelled => self.end_cancelled(ctx),
            Next::EndFailed { error, delete } => self.end_failed(error, delete, ctx),
            Next::Park => self.park(ctx),
            Next::RetryOrFail(error) => {
                let shared = &self.shared;
                let policy = &shared.cfg.retry;
                let rules = Rules {
                    policy,
                    max_attempts: shared.job.max_attempts.unwrap_or(policy.max_attempts),
                    method: &shared.job.request.method,
                    seed: shared.id.get(),
                };
                let failure = Failure {
                    error,
                    segment_fallback: shared.download.segment_fallback.replace(false),
                    retry_after: shared.retry_after.get(),
                };
                let life = &mut self.life;
                let next = self
                    .span
                    .in_scope(|| life.retry_or_fail(failure, &rules, Instant::now()));
                self.carry_out(next, ctx);
            }
            Next::Backoff { delay, error } => {
                // A retry addresses this failure: it goes to the next mirror, if any.
                self.shared.next_source();
                #[cfg(feature = "journal")]
                {
                    let attempts = self.life.attempts();
                    self.shared.journal(|| crate::journal::Changes {
                        attempts: Some(attempts),
                        ..Default::default()
                    });
                }
                self.shared.publish(EventKind::Retrying {
                    attempt: self.life.attempts(),
                    delay,
                    error,
                });
                self.backoff = Some(ctx.run_later(delay, Self::backoff_over));
            }
            Next::WaitForDeadline(left) => {
                self.backoff = Some(ctx.run_later(left, Self::backoff_over));
            }
        }
    }

    fn backoff_over(&mut self, ctx: &mut Context<Self>) {
        self.backoff = None;
        if let Some(next) = self.life.backoff_over() {
            self.carry_out(next, ctx);
        }
    }

    /// The body is complete: downloads are moved into place (not abortable), the rest end now.
    fn complete(&mut self, done: Done, ctx: &mut Context<Self>) {
        self.life.body_complete();
        let (file, bytes, status, headers, url) = match done {
            Done::Memory {
                body,
                bytes,
                status,
                headers,
                url,
            } => {
                let output = Output::Body(body);
                return self.end(completed(bytes, status, headers, url, output), ctx);
            }
            Done::File {
                file,
                bytes,
                status,
                headers,
                url,
            } => (file, bytes, status, headers, url),
        };
        let placement = self.shared.download.placement.borrow().clone();
        let (Some(placement), JobKind::Download(opts)) = (placement, &self.shared.job.kind) else {
            let error = TransferError::Internal("download without placement".into());
            return self.end_failed(error, false, ctx);
        };
        let (conflict, fsync) = (opts.conflict, opts.fsync.unwrap_or(self.shared.cfg.fsync));
        let job = crate::file::blocking::run(move || {
            sink::finalize(file, &placement, conflict, bytes, fsync)
        });
        ctx.spawn(
            wrap_future(job).map(move |res, act: &mut Self, ctx| match res {
                Ok(Ok((path, id))) => {
                    #[cfg(feature = "journal")]
                    crate::fault::point(crate::fault::Point::Placed);
                    act.placed = Some(id);
                    let output = Output::File(path);
                    act.end(completed(bytes, status, headers, url, output), ctx)
                }
                Ok(Err((error, file))) => {
                    // The file comes back so that its removal happens while it is still held.
                    let mut writer = Writer::new(file, false);
                    writer.written = bytes;
                    *act.shared.download.writer.borrow_mut() = Some(writer);
                    act.end_failed(error, false, ctx)
                }
                Err(e) => act.end_failed(e.into(), false, ctx),
            }),
        );
    }

    fn end_cancelled(&mut self, ctx: &mut Context<Self>) {
        let keep = self.partial_policy(|o| o.on_cancel) == Partial::Keep;
        let (status, headers) = self.shared.last_response();
        let outcome = Outcome::Cancelled {
            bytes: self.shared.bytes(),
            status,
            headers,
        };
        self.cleanup_then_end(outcome, !keep, ctx);
    }

    /// Fail for good; the `.part` is removed when the policy (or a checksum mismatch) says so.
    fn end_failed(&mut self, error: TransferError, force_delete: bool, ctx: &mut Context<Self>) {
        let empty = self
            .shared
            .download
            .writer
            .borrow()
            .as_ref()
            .is_some_and(|w| w.written == 0);
        // An empty .part holds nothing to resume from: it is never kept.
        let delete =
            force_delete || empty || self.partial_policy(|o| o.on_failure) == Partial::Delete;
        let (status, headers) = self.shared.last_response();
        let outcome = Outcome::Failed {
            bytes: self.shared.bytes(),
            error,
            attempts: self.life.attempts(),
            status,
            headers,
        };
        self.cleanup_then_end(outcome, delete, ctx);
    }

    fn partial_policy(
        &self,
        pick: impl Fn(&crate::request::DownloadOptions) -> Partial,
    ) -> Partial {
        match &self.shared.job.kind {
            JobKind::Download(opts) => pick(opts),
            _ => Partial::Delete,
        }
    }

    /// Close the `.part` file, remove it when asked (off-thread), then end.
    fn cleanup_then_end(&mut self, outcome: Outcome, remove_part: bool, ctx: &mut Context<Self>) {
        let download = &self.shared.download;
        let held = download.writer.borrow_mut().take().map(|w| w.file);
        let placement = download.placement.borrow().clone();
        if !remove_part {
            self.kept_part = placement.as_ref().map(|p| p.part.clone());
        }
        match placement.filter(|_| remove_part) {
            Some(placement) => {
                // The file stays open (and locked) until its name is gone.
                ctx.spawn(
                    wrap_future(sink::remove_part(placement, held))
                        .map(move |(), act: &mut Self, ctx| act.end(outcome, ctx)),
                );
            }
            None => {
                drop(held);
                self.end(outcome, ctx)
            }
        }
    }

    /// Pause: keep the writer, give the admission slot back, answer the pause requests.
    fn park(&mut self, _ctx: &mut Context<Self>) {
        if let Some(w) = self.shared.download.writer.borrow().as_ref() {
            // What counts now is what is on disk.
            self.shared.set_bytes(if w.damaged { 0 } else { w.written });
        }
        let bytes = self.shared.bytes();
        #[cfg(feature = "journal")]
        self.shared.journal(|| crate::journal::Changes {
            state: Some(TransferState::Paused),
            bytes_on_disk: Some(bytes),
            ..Default::default()
        });
        self.shared.progress.set_state(TransferState::Paused);
        self.shared.progress.set_can_resume(self.can_resume());
        self.shared.publish(EventKind::Paused {
            bytes_transferred: bytes,
        });
        // `Paused` goes to the subscribers before the Engine or the asker hear of it.
        outbox::send_events();
        self.engine.parked.do_send(Parked { id: self.shared.id });
        for tx in self.pause_replies.drain(..) {
            tx.send(Ok(()));
        }
    }

    /// Whether a resume would continue from the bytes kept, rather than from zero.
    fn can_resume(&self) -> bool {
        let download = &self.shared.download;
        let writer_ok = download
            .writer
            .borrow()
            .as_ref()
            .is_some_and(|w| w.written > 0 && !w.damaged);
        writer_ok && download.validator.borrow().is_some() && !download.no_ranges.get()
    }

    fn end(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        #[cfg(feature = "journal")]
        if let Some(journal) = self.shared.journal.clone() {
            // The end is decided now, and announced once the journal holds it.
            if !self.life.end(outcome.end_state()) {
                return;
            }
            let kept = self.kept_part.as_ref().map(|_| self.shared.bytes());
            let changes = crate::journal::ended_changes(&outcome, kept);
            let ack = journal.update(self.shared.id.get(), changes);
            self.ending = Some(outcome);
            ctx.spawn(wrap_future(ack).map(|res, act: &mut Self, ctx| {
                if let Err(error) = res {
                    tracing::error!(parent: &act.span, %error, "the journal did not record the end");
                }
                if let Some(outcome) = act.ending.take() {
                    act.announce(outcome);
                }
                ctx.stop();
            }));
            return;
        }
        self.finish(outcome);
        ctx.stop();
    }

    /// Decide the end and announce it. Runs at most once.
    fn finish(&mut self, outcome: Outcome) {
        if !self.life.end(outcome.end_state()) {
            return;
        }
        self.announce(outcome);
    }

    /// Publish `Ended`, answer pending requests, tell the Engine.
    fn announce(&mut self, outcome: Outcome) {
        let end = outcome.end_state();
        let c = &self.shared;
        c.progress.set_transferred(outcome.bytes());
        let (error, path) = (outcome.error(), outcome.path());
        if error.is_some() || path.is_some() {
            // A `Status` answered before the Engine hears of this end shows it whole.
            c.progress
                .ended_with(error.cloned(), path.map(std::path::PathBuf::from));
        }
        c.progress.set_state(TransferState::from(end));
        // A shutdown that the journal keeps resumable is no end: the next start publishes
        // the one `Ended` of this transfer.
        #[cfg(feature = "journal")]
        let suspended = c.journal.is_some() && crate::journal::kept_resumable(&outcome);
        #[cfg(not(feature = "journal"))]
        let suspended = false;
        if !suspended {
            let seq = c.seq.get();
            c.seq.set(seq + 1);
            c.subs.publish_ended(
                TransferEvent {
                    id: c.id,
                    seq,
                    kind: EventKind::Ended(outcome.clone()),
                },
                c.delivery(),
            );
        }
        tracing::debug!(parent: &self.span, outcome = %end, bytes = outcome.bytes(), suspended, "ended");
        if !self.cancel_replies.is_empty() || !self.pause_replies.is_empty() {
            // The asker learns of the end after the subscribers do.
            outbox::send_events();
        }
        for (i, tx) in self.cancel_replies.drain(..).enumerate() {
            let reply = if i == 0 && end == EndState::Cancelled {
                Ok(())
            } else {
                Err(ControlError::NotActive(end))
            };
            tx.send(reply);
        }
        for tx in self.pause_replies.drain(..) {
            tx.send(Err(ControlError::NotActive(end)));
        }
        outbox::finished(
            &self.engine,
            Finished {
                id: c.id,
                outcome,
                worker: self.worker,
                left: match (self.kept_part.take(), self.placed.take()) {
                    (Some(part), _) => Some(Left::Part(part)),
                    (None, Some(id)) => Some(Left::Placed(id)),
                    (None, None) => None,
                },
                resumable: suspended,
            },
            c.delivery(),
        );
    }

    /// The end of a transfer whose actor stopped any other way than through [`Self::end`].
    fn unexpected_end(&self) -> Outcome {
        let (status, headers) = self.shared.last_response();
        Outcome::Failed {
            bytes: self.shared.bytes(),
            error: TransferError::Panicked("the transfer actor stopped unexpectedly".into()),
            attempts: self.life.attempts(),
            status,
            headers,
        }
    }

    /// Ask the transfer to stop: at once where no I/O runs, else by aborting the attempt (the
    /// stop then takes effect once its write in flight landed).
    fn request_stop(&mut self, stop: Stop, ctx: &mut Context<Self>) {
        match self.life.request_stop(stop, Instant::now()) {
            OnStop::Abort => {
                if let Some(attempt) = &self.attempt {
                    attempt.abort();
                }
            }
            OnStop::Later | OnStop::Ignore => {}
            OnStop::CancelBackoff(next) => {
                if let Some(timer) = self.backoff.take() {
                    ctx.cancel_future(timer);
                }
                self.carry_out(next, ctx);
            }
            OnStop::Now(next) => self.carry_out(next, ctx),
            OnStop::AnswerPause => {
                for tx in self.pause_replies.drain(..) {
                    tx.send(Ok(()));
                }
            }
        }
    }

    /// Request a cancel or a pause, and reply once it took effect (or with how the transfer
    /// ended instead).
    fn stop_with_reply(&mut self, stop: Stop, reply: Reply, ctx: &mut Context<Self>) {
        #[cfg(feature = "journal")]
        if self.ending.is_some() {
            // Answered with the end once it is announced, never before.
            match stop {
                Stop::Pause => self.pause_replies.push(reply),
                _ => self.cancel_replies.push(reply),
            }
            return;
        }
        if let Some(end) = self.life.ended() {
            reply.send(Err(ControlError::NotActive(end)));
            return;
        }
        match stop {
            Stop::Pause => self.pause_replies.push(reply),
            _ => self.cancel_replies.push(reply),
        }
        self.request_stop(stop, ctx);
    }
}

impl Actor for TransferActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(parent: &self.span, "started");
        self.prepare(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        #[cfg(feature = "journal")]
        if let Some(journal) = self.shared.journal.clone() {
            // Torn down (a panic, its arbiter stopped) before the end was announced: the
            // context runs no more futures, so the commit is awaited here, on this dying
            // thread, and the end is announced only once the journal holds it.
            let id = self.shared.id.get();
            if let Some(outcome) = self.ending.take() {
                // Its write is queued: an empty write behind it commits after it.
                if let Err(error) = journal.write(Vec::new()).wait() {
                    tracing::error!(parent: &self.span, %error, "the journal did not record the end");
                }
                self.announce(outcome);
            } else if self.life.ended().is_none() {
                let outcome = self.unexpected_end();
                let kept = self.kept_part.as_ref().map(|_| self.shared.bytes());
                let changes = crate::journal::ended_changes(&outcome, kept);
                if let Err(error) = journal.update(id, changes).wait() {
                    tracing::error!(parent: &self.span, %error, "the journal did not record the end");
                }
                self.finish(outcome);
            }
            return;
        }
        if self.life.ended().is_none() {
            let outcome = self.unexpected_end();
            self.finish(outcome);
        }
    }
}

impl Handler<CancelTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, CancelTransfer(reply): CancelTransfer, ctx: &mut Self::Context) {
        self.stop_with_reply(Stop::Cancel, reply, ctx);
    }
}

impl Handler<PauseTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, PauseTransfer(reply): PauseTransfer, ctx: &mut Self::Context) {
        self.stop_with_reply(Stop::Pause, reply, ctx);
    }
}

impl Handler<ResumeTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, _: ResumeTransfer, ctx: &mut Self::Context) {
        if self.life.resume(Instant::now()) {
            #[cfg(feature = "journal")]
            self.shared.journal(|| crate::journal::Changes {
                state: Some(TransferState::Active),
                ..Default::default()
            });
            self.shared.progress.set_state(TransferState::Active);
            self.shared.publish(EventKind::Resumed);
            self.start_attempt(ctx);
        }
    }
}

impl Handler<AbortTransfer> for TransferActor {
    type Result = ();

    fn handle(&mut self, msg: AbortTransfer, ctx: &mut Self::Context) {
        self.request_stop(Stop::Fail(msg.0), ctx);
    }
}
