//! The life of one transfer as plain data: its phase, the stop request waiting for the next
//! stop point, its attempts and its total deadline. Every method decides and returns what to
//! do; the actor (`transfer/mod.rs`) carries it out (spawns, timers, aborts, files, events).
//! No actix here, so every phase × input pair is tested below without a socket.
//!
//! ```text
//! Preparing ─▶ Running ─▶ Settling ─┬─▶ Backoff ─▶ Running ...   (retryable failure)
//!                 │                 ├─▶ Paused ──▶ Running ...   (Pause, then Resume)
//!                 ▼                 └─▶ Finishing ─▶ Ended       (cancel, final failure)
//!             Finishing ─▶ Ended                                 (body complete: verify, rename)
//! ```
//!
//! A *stop point* is a moment when no I/O runs: the `.part` is prepared, or an attempt
//! stopped and its write in flight landed. A stop requested while I/O runs waits for the next
//! one; the attempt is aborted so that it comes at once.

use std::time::{Duration, Instant};

use awc::http::Method;

use super::time::later;
use crate::{
    error::{EndState, TimeoutPhase, TransferError},
    retry::RetryPolicy,
};

/// A request to stop the transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Pause,
    Cancel,
    /// Stop and fail with this error (shutdown).
    Fail(TransferError),
}

/// Where a transfer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Creating the `.part` file (not abortable: the file would be created anyway).
    Preparing,
    /// An attempt is in flight.
    Running,
    /// An attempt stopped; waiting for its write in flight before deciding what is next.
    Settling,
    /// Waiting before the next attempt, or for the total deadline.
    Backoff(Wake),
    /// Paused: no connection, the writer kept, waiting for the Engine's `ResumeTransfer`.
    Paused,
    /// The end is decided; cleaning up or moving the file into place.
    Finishing,
    /// `Ended` was published.
    Ended(EndState),
}

/// What the end of a backoff brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The next attempt.
    Retry,
    /// The end: the next attempt would have started past the total deadline.
    Deadline,
}

/// What to do about a stop request, now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OnStop {
    /// Abort the attempt in flight; the stop takes effect at the stop point after it.
    Abort,
    /// Recorded: it takes effect at the next stop point (no I/O to abort now).
    Later,
    /// Cancel the backoff timer, then do this.
    CancelBackoff(Next),
    /// The transfer is paused: do this now.
    Now(Next),
    /// The transfer is paused already: answer the pause at once.
    AnswerPause,
    /// Nothing: an earlier request wins, or the end is already decided.
    Ignore,
}

/// What comes next, decided at a stop point, by retry-or-fail or at the end of a backoff.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Start the next attempt.
    Attempt,
    /// End cancelled.
    EndCancelled,
    /// End failed; `delete`: remove the `.part` whatever the policy says (a checksum mismatch).
    EndFailed { error: TransferError, delete: bool },
    /// Pause: keep the writer, give the admission slot back, answer the pause requests.
    Park,
    /// The attempt failed: decide with [`Lifecycle::retry_or_fail`].
    RetryOrFail(TransferError),
    /// Publish `Retrying`, wait `delay`, then ask [`Lifecycle::backoff_over`].
    Backoff {
        delay: Duration,
        error: TransferError,
    },
    /// Wait this long, then ask [`Lifecycle::backoff_over`] (it ends at the total deadline).
    WaitForDeadline(Duration),
}

/// The retry policy as it applies to one transfer.
pub(crate) struct Rules<'a> {
    pub(crate) policy: &'a RetryPolicy,
    /// The transfer's own limit, else the policy's.
    pub(crate) max_attempts: u32,
    pub(crate) method: &'a Method,
    /// Varies the backoff's jitter per transfer.
    pub(crate) seed: u64,
}

/// What the failed attempt left besides its error.
pub(crate) struct Failure {
    pub(crate) error: TransferError,
    /// The attempt was segmented: one single-stream retry is owed, whatever the error (a
    /// server whose ranges misbehave may still serve the whole file).
    pub(crate) segment_fallback: bool,
    /// The `Retry-After` of the failed response.
    pub(crate) retry_after: Option<Duration>,
}

/// A transfer's phase, pending stop, attempts and total deadline.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    phase: Phase,
    stop: Option<Stop>,
    attempts: u32,
    /// When `total_timeout` ends the transfer; counted from its start, without the time spent
    /// paused. `None`: no deadline.
    deadline: Option<Instant>,
    /// While paused: what was left of `deadline`.
    deadline_left: Option<Duration>,
}

impl Lifecycle {
    /// A transfer about to prepare, ending at `deadline` if it has one.
    pub(crate) fn new(deadline: Option<Instant>) -> Self {
        Lifecycle {
            phase: Phase::Preparing,
            stop: None,
            attempts: 0,
            deadline,
            deadline_left: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Attempts since the start or the last resume.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How the transfer ended, once `Ended` was published.
    pub(crate) fn ended(&self) -> Option<EndState> {
        match self.phase {
            Phase::Ended(end) => Some(end),
            _ => None,
        }
    }

    /// Whether a cancel waits for the next stop point (its bytes need not land).
    pub(crate) fn cancel_pending(&self) -> bool {
        matches!(self.stop, Some(Stop::Cancel))
    }

    /// An attempt starts; returns the total deadline it runs under.
    pub(crate) fn start_attempt(&mut self) -> Option<Instant> {
        self.attempts += 1;
        self.phase = Phase::Running;
        self.deadline
    }

    /// The attempt failed or was aborted: its write in flight lands before the stop point.
    pub(crate) fn settling(&mut self) {
        self.phase = Phase::Settling;
    }

    /// The body is complete: moving it into place is not abortable.
    pub(crate) fn body_complete(&mut self) {
        self.phase = Phase::Finishing;
    }

    /// `Ended` is being published with `end`: `false` if it already was (it runs at most once).
    pub(crate) fn end(&mut self, end: EndState) -> bool {
        if let Phase::Ended(_) = self.phase {
            return false;
        }
        self.phase = Phase::Ended(end);
        true
    }

    /// A stop is requested. Cancel and failure override a pending pause; otherwise the first
    /// request wins.
    pub(crate) fn request_stop(&mut self, stop: Stop, now: Instant) -> OnStop {
        let overrides =
            matches!(self.stop, None | Some(Stop::Pause)) && !matches!(stop, Stop::Pause);
        let takes = self.stop.is_none() || overrides;
        match self.phase {
            Phase::Running if takes => {
                self.stop = Some(stop);
                OnStop::Abort
            }
            Phase::Preparing | Phase::Settling if takes => {
                self.stop = Some(stop);
                OnStop::Later
            }
            Phase::Backoff(_) => {
                self.stop = Some(stop);
                OnStop::CancelBackoff(self.stop_point(None, now))
            }
            Phase::Paused => match stop {
                Stop::Pause => OnStop::AnswerPause,
                other => {
                    self.stop = Some(other);
                    OnStop::Now(self.stop_point(None, now))
                }
            },
            Phase::Running | Phase::Preparing | Phase::Settling => OnStop::Ignore,
            Phase::Finishing | Phase::Ended(_) => OnStop::Ignore,
        }
    }

    /// No I/O runs: a requested stop wins, then a failure (`error`) is for retry-or-fail, else
    /// the next attempt starts.
    pub(crate) fn stop_point(&mut self, error: Option<TransferError>, now: Instant) -> Next {
        match (self.stop.take(), error) {
            (Some(Stop::Cancel), _) => {
                self.phase = Phase::Finishing;
                Next::EndCancelled
            }
            (Some(Stop::Fail(error)), _) => {
                self.phase = Phase::Finishing;
                Next::EndFailed {
                    error,
                    delete: false,
                }
            }
            (Some(Stop::Pause), _) => {
                self.phase = Phase::Paused;
                // Time spent paused does not count toward the total deadline: keep what is left.
                self.deadline_left = self
                    .deadline
                    .take()
                    .map(|d| d.saturating_duration_since(now));
                Next::Park
            }
            (None, Some(error)) => Next::RetryOrFail(error),
            (None, None) => Next::Attempt,
        }
    }

    /// Retry the failed attempt after a backoff, or end the transfer.
    pub(crate) fn retry_or_fail(&mut self, failure: Failure, rules: &Rules, now: Instant) -> Next {
        let Failure {
            error,
            segment_fallback,
            retry_after,
        } = failure;
        let checksum = matches!(
            error,
            TransferError::ChecksumMismatch { .. } | TransferError::SizeMismatch { .. }
        );
        // The total deadline ends the transfer, however many attempts are left.
        let out_of_time = matches!(error, TransferError::Timeout(TimeoutPhase::Total));
        if out_of_time
            || self.attempts >= rules.max_attempts
            || self.attempts == 0
            || !(segment_fallback || rules.policy.retryable(&error, rules.method))
        {
            return self.fail(error, checksum);
        }
        // A server that asks for a longer wait than the policy allows gets no early retry.
        let Some(delay) = rules.policy.delay(self.attempts, rules.seed, retry_after) else {
            tracing::debug!("Retry-After beyond the policy; not retrying");
            return self.fail(error, checksum);
        };
        if let Some(left) = self
            .deadline
            .map(|d| d.saturating_duration_since(now))
            .filter(|left| delay >= *left)
        {
            // The next attempt would start past the deadline: end at the deadline instead.
            tracing::debug!(?delay, "backoff past the total deadline");
            self.phase = Phase::Backoff(Wake::Deadline);
            return Next::WaitForDeadline(left);
        }
        tracing::debug!(?delay, attempt = self.attempts, "retrying");
        self.phase = Phase::Backoff(Wake::Retry);
        Next::Backoff { delay, error }
    }

    fn fail(&mut self, error: TransferError, delete: bool) -> Next {
        self.phase = Phase::Finishing;
        Next::EndFailed { error, delete }
    }

    /// The backoff's timer fired: `None` when it no longer counts (the transfer moved on).
    pub(crate) fn backoff_over(&mut self) -> Option<Next> {
        match self.phase {
            Phase::Backoff(Wake::Retry) => Some(Next::Attempt),
            Phase::Backoff(Wake::Deadline) => {
                Some(self.fail(TransferError::Timeout(TimeoutPhase::Total), false))
            }
            _ => None,
        }
    }

    /// The Engine admitted the paused transfer again: `true` when it was paused, and then the
    /// next attempt is to start, with its attempts counted afresh and the rest of its deadline.
    pub(crate) fn resume(&mut self, now: Instant) -> bool {
        if self.phase != Phase::Paused {
            return false;
        }
        self.attempts = 0;
        if let Some(left) = self.deadline_left.take() {
            self.deadline = Some(later(now, left));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Phase; 8] = [
        Phase::Preparing,
        Phase::Running,
        Phase::Settling,
        Phase::Backoff(Wake::Retry),
        Phase::Backoff(Wake::Deadline),
        Phase::Paused,
        Phase::Finishing,
        Phase::Ended(EndState::Completed),
    ];

    fn retryable() -> TransferError {
        TransferError::Server { status: 503 }
    }

    fn final_error() -> TransferError {
        TransferError::Server { status: 404 }
    }

    fn total_timeout() -> TransferError {
        TransferError::Timeout(TimeoutPhase::Total)
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
            .max_attempts(3)
            .initial_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(30))
            .max_retry_after(Duration::from_secs(60))
    }

    fn rules(policy: &RetryPolicy) -> Rules<'_> {
        Rules {
            policy,
            max_attempts: policy.max_attempts,
            method: &Method::GET,
            seed: 7,
        }
    }

    fn failure(error: TransferError) -> Failure {
        Failure {
            error,
            segment_fallback: false,
            retry_after: None,
        }
    }

    /// A lifecycle brought to `phase` through its own transitions, with nothing pending.
    fn at(phase: Phase, deadline: Option<Instant>, now: Instant) -> Lifecycle {
        let mut life = Lifecycle::new(deadline);
        let running = |life: &mut Lifecycle| {
            assert_eq!(life.stop_point(None, now), Next::Attempt);
            life.start_attempt();
        };
        match phase {
            Phase::Preparing => {}
            Phase::Running => running(&mut life),
            Phase::Settling => {
                running(&mut life);
                life.settling();
            }
            Phase::Backoff(Wake::Retry) => {
                running(&mut life);
                life.settling();
                let error = retryable();
                let next = life.stop_point(Some(error.clone()), now);
                assert_eq!(next, Next::RetryOrFail(error.clone()));
                let policy = policy();
                let next = life.retry_or_fail(failure(error), &rules(&policy), now);
                assert!(matches!(next, Next::Backoff { .. }), "{next:?}");
            }
            Phase::Backoff(Wake::Deadline) => {
                assert!(deadline.is_some(), "a deadline backoff needs a deadline");
                running(&mut life);
                life.settling();
                let policy = RetryPolicy::default()
                    .initial_delay(Duration::from_secs(3600))
                    .max_delay(Duration::ZERO);
                let next = life.retry_or_fail(failure(retryable()), &rules(&policy), now);
                assert!(matches!(next, Next::WaitForDeadline(_)), "{next:?}");
            }
            Phase::Paused => {
                running(&mut life);
                assert_eq!(life.request_stop(Stop::Pause, now), OnStop::Abort);
                life.settling();
                assert_eq!(life.stop_point(None, now), Next::Park);
            }
            Phase::Finishing => {
                running(&mut life);
                life.body_complete();
            }
            Phase::Ended(end) => {
                running(&mut life);
                life.body_complete();
                assert!(life.end(end));
            }
        }
        assert_eq!(life.phase(), phase);
        life
    }

    fn deadline_for(phase: Phase, now: Instant) -> Option<Instant> {
        matches!(phase, Phase::Backoff(Wake::Deadline)).then(|| now + Duration::from_secs(60))
    }

    #[test]
    fn a_new_transfer_prepares_then_runs_its_first_attempt() {
        let now = Instant::now();
        let mut life = Lifecycle::new(Some(now + Duration::from_secs(5)));
        assert_eq!(life.phase(), Phase::Preparing);
        assert_eq!(life.attempts(), 0);
        assert_eq!(life.stop_point(None, now), Next::Attempt);
        assert_eq!(life.start_attempt(), Some(now + Duration::from_secs(5)));
        assert_eq!((life.phase(), life.attempts()), (Phase::Running, 1));
    }

    #[test]
    fn a_failed_preparation_goes_to_retry_or_fail_and_ends() {
        let now = Instant::now();
        let mut life = Lifecycle::new(None);
        let next = life.stop_point(Some(retryable()), now);
        assert_eq!(next, Next::RetryOrFail(retryable()));
        // No attempt ran: nothing to retry, however retryable the error.
        let policy = policy();
        let next = life.retry_or_fail(failure(retryable()), &rules(&policy), now);
        let error = retryable();
        assert_eq!(
            next,
            Next::EndFailed {
                error,
                delete: false
            }
        );
        assert_eq!(life.phase(), Phase::Finishing);
    }

    /// Each stop request in each phase: what is done at once, the phase after, what waits.
    #[test]
    fn every_stop_request_in_every_phase() {
        let now = Instant::now();
        let fail = Stop::Fail(TransferError::Shutdown);
        for phase in ALL {
            for stop in [Stop::Pause, Stop::Cancel, fail.clone()] {
                let mut life = at(phase, deadline_for(phase, now), now);
                let action = life.request_stop(stop.clone(), now);
                let (want, phase_after, pending) = match (phase, &stop) {
                    (Phase::Running, _) => (OnStop::Abort, phase, Some(stop.clone())),
                    (Phase::Preparing | Phase::Settling, _) => {
                        (OnStop::Later, phase, Some(stop.clone()))
                    }
                    (Phase::Backoff(_), Stop::Pause) => {
                        (OnStop::CancelBackoff(Next::Park), Phase::Paused, None)
                    }
                    (Phase::Backoff(_), Stop::Cancel) => (
                        OnStop::CancelBackoff(Next::EndCancelled),
                        Phase::Finishing,
                        None,
                    ),
                    (Phase::Backoff(_), Stop::Fail(e)) => (
                        OnStop::CancelBackoff(Next::EndFailed {
                            error: e.clone(),
                            delete: false,
                        }),
                        Phase::Finishing,
                        None,
                    ),
                    (Phase::Paused, Stop::Pause) => (OnStop::AnswerPause, Phase::Paused, None),
                    (Phase::Paused, Stop::Cancel) => {
                        (OnStop::Now(Next::EndCancelled), Phase::Finishing, None)
                    }
                    (Phase::Paused, Stop::Fail(e)) => (
                        OnStop::Now(Next::EndFailed {
                            error: e.clone(),
                            delete: false,
                        }),
                        Phase::Finishing,
                        None,
                    ),
                    (Phase::Finishing | Phase::Ended(_), _) => (OnStop::Ignore, phase, None),
                };
                assert_eq!(action, want, "{stop:?} in {phase:?}");
                assert_eq!(life.phase(), phase_after, "{stop:?} in {phase:?}");
                assert_eq!(life.stop, pending, "{stop:?} in {phase:?}");
            }
        }
    }

    /// Two requests while I/O runs: cancel and failure override a pending pause, otherwise
    /// the first wins; the later one is aborted for only when it takes over.
    #[test]
    fn override_matrix_of_two_requests() {
        let now = Instant::now();
        let fail = || Stop::Fail(TransferError::Shutdown);
        let other_fail = Stop::Fail(TransferError::Internal("second".into()));
        let cases = [
            (Stop::Pause, Stop::Pause, Stop::Pause),
            (Stop::Pause, Stop::Cancel, Stop::Cancel),
            (Stop::Pause, fail(), fail()),
            (Stop::Cancel, Stop::Pause, Stop::Cancel),
            (Stop::Cancel, Stop::Cancel, Stop::Cancel),
            (Stop::Cancel, fail(), Stop::Cancel),
            (fail(), Stop::Pause, fail()),
            (fail(), Stop::Cancel, fail()),
            (fail(), other_fail.clone(), fail()),
        ];
        for phase in [Phase::Preparing, Phase::Running, Phase::Settling] {
            let first_action = if phase == Phase::Running {
                OnStop::Abort
            } else {
                OnStop::Later
            };
            for (first, second, wins) in &cases {
                let mut life = at(phase, None, now);
                assert_eq!(life.request_stop(first.clone(), now), first_action);
                let takes_over = wins == second && first != second;
                let want = if takes_over {
                    first_action.clone_kind()
                } else {
                    OnStop::Ignore
                };
                let action = life.request_stop(second.clone(), now);
                assert_eq!(action, want, "{first:?} then {second:?} in {phase:?}");
                assert_eq!(life.stop.as_ref(), Some(wins), "{first:?} then {second:?}");
            }
        }
    }

    impl OnStop {
        fn clone_kind(&self) -> OnStop {
            match self {
                OnStop::Abort => OnStop::Abort,
                OnStop::Later => OnStop::Later,
                other => panic!("not a plain action: {other:?}"),
            }
        }
    }

    /// The stop point after an attempt, with each pending stop, with and without an error.
    #[test]
    fn stop_point_with_each_pending_stop() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(10);
        let fail = Stop::Fail(TransferError::Shutdown);
        for error in [None, Some(retryable())] {
            for stop in [
                None,
                Some(Stop::Pause),
                Some(Stop::Cancel),
                Some(fail.clone()),
            ] {
                let mut life = at(Phase::Running, Some(deadline), now);
                if let Some(stop) = &stop {
                    assert_eq!(life.request_stop(stop.clone(), now), OnStop::Abort);
                }
                life.settling();
                let later = now + Duration::from_secs(4);
                let next = life.stop_point(error.clone(), later);
                let (want, phase) = match (&stop, &error) {
                    (Some(Stop::Cancel), _) => (Next::EndCancelled, Phase::Finishing),
                    (Some(Stop::Fail(e)), _) => (
                        Next::EndFailed {
                            error: e.clone(),
                            delete: false,
                        },
                        Phase::Finishing,
                    ),
                    (Some(Stop::Pause), _) => (Next::Park, Phase::Paused),
                    (None, Some(e)) => (Next::RetryOrFail(e.clone()), Phase::Settling),
                    (None, None) => (Next::Attempt, Phase::Settling),
                };
                assert_eq!(next, want, "{stop:?} with {error:?}");
                assert_eq!(life.phase(), phase, "{stop:?} with {error:?}");
                assert_eq!(life.stop, None, "the stop is taken");
                if phase == Phase::Paused {
                    // What was left of the deadline at the pause is kept.
                    assert_eq!(life.deadline, None);
                    assert_eq!(life.deadline_left, Some(Duration::from_secs(6)));
                }
            }
        }
    }

    #[test]
    fn a_completed_body_finishes_and_later_stops_are_ignored() {
        let now = Instant::now();
        let mut life = at(Phase::Running, None, now);
        life.body_complete();
        assert_eq!(life.phase(), Phase::Finishing);
        assert_eq!(life.request_stop(Stop::Cancel, now), OnStop::Ignore);
        assert_eq!(life.ended(), None);
    }

    #[test]
    fn a_cancel_racing_a_complete_body_is_left_pending_and_ignored() {
        let now = Instant::now();
        let mut life = at(Phase::Running, None, now);
        assert_eq!(life.request_stop(Stop::Cancel, now), OnStop::Abort);
        assert!(life.cancel_pending());
        life.body_complete();
        assert_eq!(life.phase(), Phase::Finishing);
        assert_eq!(life.request_stop(Stop::Pause, now), OnStop::Ignore);
    }

    #[test]
    fn finish_runs_at_most_once() {
        let now = Instant::now();
        let mut life = at(Phase::Finishing, None, now);
        assert_eq!(life.ended(), None);
        assert!(life.end(EndState::Cancelled));
        assert_eq!(life.ended(), Some(EndState::Cancelled));
        assert!(!life.end(EndState::Failed), "a second end is refused");
        assert_eq!(life.ended(), Some(EndState::Cancelled));
    }

    #[test]
    fn an_actor_that_stops_in_any_phase_can_still_end_once() {
        let now = Instant::now();
        for phase in ALL {
            let mut life = at(phase, deadline_for(phase, now), now);
            let ended_before = life.ended();
            assert_eq!(life.end(EndState::Failed), ended_before.is_none());
            assert_eq!(life.ended(), Some(ended_before.unwrap_or(EndState::Failed)));
        }
    }

    #[test]
    fn resume_only_from_paused() {
        let now = Instant::now();
        for phase in ALL {
            let mut life = at(phase, deadline_for(phase, now), now);
            let attempts = life.attempts();
            let resumed = life.resume(now);
            assert_eq!(resumed, phase == Phase::Paused, "{phase:?}");
            assert_eq!(life.phase(), phase, "resume itself changes no phase");
            if !resumed {
                assert_eq!(life.attempts(), attempts, "{phase:?}");
            }
        }
    }

    #[test]
    fn resume_counts_attempts_afresh_and_keeps_the_rest_of_the_deadline() {
        let now = Instant::now();
        let mut life = at(Phase::Running, Some(now + Duration::from_secs(10)), now);
        assert_eq!(life.request_stop(Stop::Pause, now), OnStop::Abort);
        life.settling();
        assert_eq!(
            life.stop_point(None, now + Duration::from_secs(3)),
            Next::Park
        );
        // Paused for an hour: the deadline moves with the pause.
        let back = now + Duration::from_secs(3600);
        assert!(life.resume(back));
        assert_eq!(life.attempts(), 0);
        assert_eq!(life.start_attempt(), Some(back + Duration::from_secs(7)));
        assert_eq!((life.phase(), life.attempts()), (Phase::Running, 1));
    }

    #[test]
    fn a_transfer_without_deadline_resumes_without_one() {
        let now = Instant::now();
        let mut life = at(Phase::Paused, None, now);
        assert!(life.resume(now));
        assert_eq!(life.start_attempt(), None);
    }

    #[test]
    fn backoff_over_in_every_phase() {
        let now = Instant::now();
        for phase in ALL {
            let mut life = at(phase, deadline_for(phase, now), now);
            let next = life.backoff_over();
            match phase {
                Phase::Backoff(Wake::Retry) => {
                    assert_eq!(next, Some(Next::Attempt));
                    assert_eq!(life.phase(), phase, "the attempt starts it running");
                }
                Phase::Backoff(Wake::Deadline) => {
                    let error = total_timeout();
                    let delete = false;
                    assert_eq!(next, Some(Next::EndFailed { error, delete }));
                    assert_eq!(life.phase(), Phase::Finishing);
                }
                _ => {
                    assert_eq!(next, None, "{phase:?}");
                    assert_eq!(life.phase(), phase);
                }
            }
        }
    }

    /// An attempt failed: a retryable error backs off, counting attempts, until they run out.
    #[test]
    fn retry_until_the_attempts_run_out() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Running, None, now);
        for attempt in 1..=3 {
            assert_eq!(life.attempts(), attempt);
            life.settling();
            let Next::RetryOrFail(error) = life.stop_point(Some(retryable()), now) else {
                panic!("a failure goes to retry-or-fail");
            };
            let next = life.retry_or_fail(failure(error), &rules(&policy), now);
            if attempt < 3 {
                let Next::Backoff { delay, error } = next else {
                    panic!("attempt {attempt}: {next:?}");
                };
                assert_eq!(error, retryable());
                // The first wait is the initial delay with jitter: half of it to all of it.
                if attempt == 1 {
                    assert!(delay >= Duration::from_millis(500) && delay <= Duration::from_secs(1));
                }
                assert_eq!(life.phase(), Phase::Backoff(Wake::Retry));
                assert_eq!(life.backoff_over(), Some(Next::Attempt));
                life.start_attempt();
            } else {
                let error = retryable();
                assert_eq!(
                    next,
                    Next::EndFailed {
                        error,
                        delete: false
                    }
                );
                assert_eq!(life.phase(), Phase::Finishing);
            }
        }
    }

    #[test]
    fn a_transfers_own_attempt_limit_wins() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, None, now);
        let rules = Rules {
            max_attempts: 1,
            ..rules(&policy)
        };
        let next = life.retry_or_fail(failure(retryable()), &rules, now);
        assert!(matches!(next, Next::EndFailed { .. }), "{next:?}");
    }

    #[test]
    fn an_error_not_retryable_fails_at_once() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, None, now);
        let next = life.retry_or_fail(failure(final_error()), &rules(&policy), now);
        let error = final_error();
        assert_eq!(
            next,
            Next::EndFailed {
                error,
                delete: false
            }
        );
        assert_eq!(life.phase(), Phase::Finishing);
    }

    #[test]
    fn a_post_is_retried_only_when_it_never_connected() {
        let now = Instant::now();
        let policy = policy();
        let rules = Rules {
            method: &Method::POST,
            ..rules(&policy)
        };
        let mut life = at(Phase::Settling, None, now);
        let next = life.retry_or_fail(failure(retryable()), &rules, now);
        assert!(matches!(next, Next::EndFailed { .. }), "{next:?}");
        let mut life = at(Phase::Settling, None, now);
        let refused = TransferError::Timeout(TimeoutPhase::Connect);
        let next = life.retry_or_fail(failure(refused), &rules, now);
        assert!(matches!(next, Next::Backoff { .. }), "{next:?}");
    }

    #[test]
    fn a_checksum_mismatch_fails_and_deletes_the_part() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, None, now);
        let error = TransferError::ChecksumMismatch {
            what: "sha256",
            expected: "a".into(),
            actual: "b".into(),
        };
        let next = life.retry_or_fail(failure(error.clone()), &rules(&policy), now);
        assert_eq!(
            next,
            Next::EndFailed {
                error,
                delete: true
            }
        );
    }

    #[test]
    fn a_failed_segmented_attempt_is_owed_one_single_stream_retry() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, None, now);
        let owed = Failure {
            segment_fallback: true,
            ..failure(final_error())
        };
        let next = life.retry_or_fail(owed, &rules(&policy), now);
        assert!(matches!(next, Next::Backoff { .. }), "{next:?}");
        // Only while attempts are left.
        let mut life = at(Phase::Settling, None, now);
        let rules = Rules {
            max_attempts: 1,
            ..rules(&policy)
        };
        let owed = Failure {
            segment_fallback: true,
            ..failure(final_error())
        };
        let next = life.retry_or_fail(owed, &rules, now);
        assert!(matches!(next, Next::EndFailed { .. }), "{next:?}");
    }

    #[test]
    fn the_total_deadline_is_never_retried() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, Some(now + Duration::from_secs(1)), now);
        let owed = Failure {
            segment_fallback: true,
            ..failure(total_timeout())
        };
        let next = life.retry_or_fail(owed, &rules(&policy), now);
        let error = total_timeout();
        assert_eq!(
            next,
            Next::EndFailed {
                error,
                delete: false
            }
        );
    }

    #[test]
    fn retry_after_within_the_policy_is_the_delay() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, None, now);
        let asked = Failure {
            retry_after: Some(Duration::from_secs(60)),
            ..failure(retryable())
        };
        let next = life.retry_or_fail(asked, &rules(&policy), now);
        let (delay, error) = (Duration::from_secs(60), retryable());
        assert_eq!(next, Next::Backoff { delay, error });
    }

    #[test]
    fn retry_after_beyond_the_policy_fails() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, None, now);
        let asked = Failure {
            retry_after: Some(Duration::from_secs(61)),
            ..failure(retryable())
        };
        let next = life.retry_or_fail(asked, &rules(&policy), now);
        let error = retryable();
        assert_eq!(
            next,
            Next::EndFailed {
                error,
                delete: false
            }
        );
        assert_eq!(life.phase(), Phase::Finishing);
    }

    #[test]
    fn a_backoff_past_the_deadline_waits_for_it_then_times_out() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, Some(now + Duration::from_secs(10)), now);
        let asked = Failure {
            retry_after: Some(Duration::from_secs(20)),
            ..failure(retryable())
        };
        let later = now + Duration::from_secs(4);
        let next = life.retry_or_fail(asked, &rules(&policy), later);
        assert_eq!(next, Next::WaitForDeadline(Duration::from_secs(6)));
        assert_eq!(life.phase(), Phase::Backoff(Wake::Deadline));
        let error = total_timeout();
        assert_eq!(
            life.backoff_over(),
            Some(Next::EndFailed {
                error,
                delete: false
            })
        );
        assert_eq!(life.phase(), Phase::Finishing);
    }

    #[test]
    fn a_backoff_ending_exactly_at_the_deadline_is_past_it() {
        let now = Instant::now();
        let policy = policy();
        let mut life = at(Phase::Settling, Some(now + Duration::from_secs(5)), now);
        let asked = Failure {
            retry_after: Some(Duration::from_secs(5)),
            ..failure(retryable())
        };
        let next = life.retry_or_fail(asked, &rules(&policy), now);
        assert_eq!(next, Next::WaitForDeadline(Duration::from_secs(5)));
    }

    #[test]
    fn a_pause_during_the_deadline_backoff_keeps_what_is_left() {
        let now = Instant::now();
        let mut life = at(
            Phase::Backoff(Wake::Deadline),
            Some(now + Duration::from_secs(60)),
            now,
        );
        let later = now + Duration::from_secs(20);
        let action = life.request_stop(Stop::Pause, later);
        assert_eq!(action, OnStop::CancelBackoff(Next::Park));
        assert_eq!(life.deadline_left, Some(Duration::from_secs(40)));
        assert!(life.resume(later));
        assert_eq!(life.start_attempt(), Some(later + Duration::from_secs(40)));
    }

    #[test]
    fn a_retry_after_a_resume_counts_from_one() {
        let now = Instant::now();
        let policy = RetryPolicy::default().max_attempts(2);
        let mut life = at(Phase::Paused, None, now);
        assert!(life.resume(now));
        life.start_attempt();
        life.settling();
        let next = life.retry_or_fail(failure(retryable()), &rules(&policy), now);
        assert!(matches!(next, Next::Backoff { .. }), "{next:?}");
    }
}
