//! Bandwidth limits: token buckets, one global per engine and one per transfer, whose rates
//! can change at run time.
//!
//! A transfer takes tokens for every chunk it moves and sleeps off any debt before reading (or
//! sending) the next one, so the socket is not read while over the limit and TCP flow control
//! slows the sender. A bucket holds at most 100 ms of tokens (and at least 64 KiB), so a
//! transfer that was idle cannot burst far past its rate.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Mutex,
    },
    time::{Duration, Instant},
};

/// The least burst, so one 32 KiB network chunk (or a small upload read) always fits a debt
/// that is paid back quickly.
const MIN_BURST: f64 = 64.0 * 1024.0;

#[derive(Debug)]
pub(crate) struct Bucket {
    /// Bytes per second; 0 means unlimited.
    rate: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(rate: Option<u64>) -> Self {
        Bucket {
            rate: AtomicU64::new(rate.unwrap_or(0)),
            state: Mutex::new(State {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    /// Change the rate; `None` lifts the limit. A debt owed under the old rate is forgiven.
    pub(crate) fn set_rate(&self, rate: Option<u64>) {
        self.rate.store(rate.unwrap_or(0), Relaxed);
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.tokens = st.tokens.max(0.0);
        st.last = Instant::now();
    }

    pub(crate) fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Relaxed)).filter(|r| *r > 0)
    }

    /// How long until the debt owed now is paid (zero when there is none).
    pub(crate) fn debt(&self) -> Duration {
        let Some(rate) = self.rate() else {
            return Duration::ZERO;
        };
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let owed = -st.tokens - st.last.elapsed().as_secs_f64() * rate as f64;
        Duration::from_secs_f64(owed.max(0.0) / rate as f64)
    }

    /// Take `n` bytes' worth of tokens; returns how long to wait before moving more.
    pub(crate) fn take(&self, n: usize) -> Duration {
        let Some(rate) = self.rate() else {
            return Duration::ZERO;
        };
        let rate = rate as f64;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let burst = (rate / 10.0).max(MIN_BURST);
        st.tokens = (st.tokens + now.duration_since(st.last).as_secs_f64() * rate).min(burst);
        st.last = now;
        st.tokens -= n as f64;
        if st.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-st.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let b = Bucket::new(None);
        assert_eq!(b.take(1 << 30), Duration::ZERO);
    }

    #[test]
    fn debt_is_paid_at_the_rate() {
        let b = Bucket::new(Some(100_000));
        // The bucket starts empty: 50 kB must wait about 0.5 s.
        let wait = b.take(50_000);
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        b.set_rate(None);
        assert_eq!(b.take(50_000), Duration::ZERO);
        b.set_rate(Some(1_000_000));
        let wait = b.take(100_000);
        assert!(
            wait <= Duration::from_millis(100),
            "debt forgiven on a rate change: {wait:?}"
        );
    }

    #[test]
    fn the_debt_is_what_is_left_to_pay() {
        let b = Bucket::new(Some(100_000));
        assert_eq!(b.debt(), Duration::ZERO, "nothing taken, nothing owed");
        let wait = b.take(50_000);
        let debt = b.debt();
        assert!(debt <= wait && debt > wait / 2, "{debt:?} of {wait:?}");
        b.set_rate(None);
        assert_eq!(b.debt(), Duration::ZERO, "no limit, no debt");
    }
}
