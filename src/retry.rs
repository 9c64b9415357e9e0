//! Retries: which failures are tried again, and how long to wait before the next attempt.

use std::{
    hash::{BuildHasher, Hasher},
    time::{Duration, SystemTime},
};

use awc::http::{header, Method};

use crate::error::{ErrorKind, TimeoutPhase, TransferError};

/// How failed attempts are retried: exponential backoff with jitter, a bound on attempts, and
/// which failures count as retryable.
///
/// The delay before attempt `n + 1` is `initial_delay · 2ⁿ⁻¹`, capped at `max_delay`, then
/// scaled by a random factor in `[0.5, 1.0]`. A `429` or `503` with a `Retry-After` header
/// waits what the server asked instead; when it asks for longer than `max_retry_after`, the
/// transfer is not retried early but fails with the server's status.
///
/// The engine's [`total_timeout`](crate::EngineBuilder::total_timeout) bounds the retries
/// too: a backoff that would end past it is not slept, and the transfer ends at the deadline.
///
/// Zero means "no limit" for `max_delay` and `max_retry_after`, as for every limit of the
/// engine; a zero `initial_delay` retries at once. Huge durations saturate.
///
/// Requests whose method is not idempotent (POST, PATCH) are retried only after failures that
/// happened before the request could reach the server (DNS, connect and TLS errors, connect
/// timeouts).
///
/// ```
/// use std::time::Duration;
/// use actix_transfer::{ErrorKind, RetryPolicy};
/// let policy = RetryPolicy::default()
///     .max_attempts(3)
///     .initial_delay(Duration::from_millis(200))
///     .retry_on(&[ErrorKind::Connect, ErrorKind::Timeout]);
/// # let _ = policy;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub(crate) max_attempts: u32,
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_retry_after: Duration,
    pub(crate) retry_on: Option<Vec<ErrorKind>>,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s initial delay, 30 s max delay, Retry-After honoured up to 60 s,
    /// retryable as [`TransferError::is_retryable`] says.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            retry_on: None,
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn never() -> Self {
        RetryPolicy::default().max_attempts(1)
    }

    /// Attempts in all, the first included (`0` counts as 1; `u32::MAX` retries for as long as
    /// the failures are retryable). Default 5.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The first backoff delay (zero: retry at once). Default 1 s.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// The largest backoff delay (zero: no cap). Default 30 s.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The longest `Retry-After` honoured. A server that asks for longer is not retried
    /// early: the transfer fails with its status (`Server { status }`). Zero: no cap.
    /// Default 60 s.
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// Retry exactly these error kinds (a `Server` kind then covers every status), instead of
    /// what [`TransferError::is_retryable`] says.
    pub fn retry_on(mut self, kinds: &[ErrorKind]) -> Self {
        self.retry_on = Some(kinds.to_vec());
        self
    }

    /// Whether `error`, from a request with `method`, may be tried again.
    pub(crate) fn retryable(&self, error: &TransferError, method: &Method) -> bool {
        let by_kind = match &self.retry_on {
            Some(kinds) => kinds.contains(&error.kind()),
            None => error.is_retryable(),
        };
        let idempotent = !matches!(*method, Method::POST | Method::PATCH);
        by_kind
            && (idempotent
                || matches!(
                    error,
                    TransferError::Dns { .. }
                        | TransferError::Connect(_)
                        | TransferError::Tls(_)
                        | TransferError::Timeout(TimeoutPhase::Connect)
                ))
    }

    /// The wait after failed attempt `attempt` (from 1); `seed` varies the jitter per transfer.
    /// `None`: the server's `Retry-After` is longer than the policy allows, so no retry.
    pub(crate) fn delay(
        &self,
        attempt: u32,
        seed: u64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if let Some(wait) = retry_after {
            let allowed = self.max_retry_after.is_zero() || wait <= self.max_retry_after;
            return allowed.then_some(wait);
        }
        let mut exp = self
            .initial_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        if !self.max_delay.is_zero() {
            exp = exp.min(self.max_delay);
        }
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(seed);
        h.write_u32(attempt);
        let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
                                                                    // Through f64 a huge delay can round past `Duration::MAX`: keep it as it is then.
        Some(Duration::try_from_secs_f64(exp.as_secs_f64() * (0.5 + unit / 2.0)).unwrap_or(exp))
    }
}

/// The `Retry-After` of a response (seconds, or an HTTP date), if any.
pub(crate) fn retry_after(headers: &awc::http::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date: header::HttpDate = value.parse().ok()?;
    let at: SystemTime = date.into();
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(1000));
        for attempt in 1..=8 {
            let full = (100u64 << (attempt - 1)).min(1000);
            let d = p.delay(attempt, 7, None).unwrap().as_millis() as u64;
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d} ms vs {full}"
            );
        }
        assert_eq!(
            p.delay(1, 7, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(p.delay(1, 7, Some(Duration::from_secs(61))), None);
        let uncapped = p.clone().max_retry_after(Duration::ZERO);
        assert_eq!(
            uncapped.delay(1, 7, Some(Duration::from_secs(500))),
            Some(Duration::from_secs(500))
        );
    }

    #[test]
    fn huge_and_zero_delays_neither_panic_nor_overflow() {
        let huge = RetryPolicy::default()
            .initial_delay(Duration::MAX)
            .max_delay(Duration::MAX);
        for attempt in [1, 2, 30, u32::MAX] {
            for seed in 0..64 {
                let d = huge.delay(attempt, seed, None).unwrap();
                assert!(d >= Duration::MAX / 3, "{d:?}");
            }
        }
        let uncapped = RetryPolicy::default()
            .initial_delay(Duration::from_secs(1))
            .max_delay(Duration::ZERO);
        assert!(uncapped.delay(10, 1, None).unwrap() >= Duration::from_secs(256));
        let at_once = RetryPolicy::default().initial_delay(Duration::ZERO);
        assert_eq!(at_once.delay(3, 1, None), Some(Duration::ZERO));
    }

    #[test]
    fn post_is_retried_only_before_sending() {
        let p = RetryPolicy::default();
        let net = TransferError::Network("reset".into());
        assert!(p.retryable(&net, &Method::GET));
        assert!(!p.retryable(&net, &Method::POST));
        assert!(p.retryable(&TransferError::Connect("refused".into()), &Method::POST));
        assert!(!p.retryable(&TransferError::Server { status: 404 }, &Method::GET));
        assert!(p.retryable(&TransferError::Server { status: 503 }, &Method::GET));
    }
}
