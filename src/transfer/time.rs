//! Points in time that saturate instead of overflowing: a zero limit is no limit, a huge one
//! never passes.

use std::time::{Duration, Instant};

/// When a limit of `limit` counted from `since` passes: `None` when it never does, because
/// the limit is zero (the engine's timeouts read zero as "no limit") or too long to be a point
/// in time (a huge timeout saturates instead of overflowing).
pub(crate) fn deadline(since: Instant, limit: Duration) -> Option<Instant> {
    if limit.is_zero() {
        None
    } else {
        since.checked_add(limit)
    }
}

/// `now + d`, saturating at a point so far ahead that it is never reached.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_AHEAD))
        .unwrap_or(now)
}

/// Far enough ahead to be never, near enough to be a point in time on every platform.
const FAR_AHEAD: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
