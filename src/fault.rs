//! Crash points for the journal's crash tests. Built only with the hidden, non-default
//! feature `__fault-injection` (not an API); without it [`point`] is empty. A test's child
//! process sets `ACTIX_TRANSFER_FAULT` to a point's name, and the process kills itself with
//! `SIGKILL` the first time it reaches that point: a crash exactly there.

/// Where a crash can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// A download's `.part` is created; the journal has not recorded it yet.
    PartCreated,
    /// A download's `.part` is created and recorded in the journal; nothing is written yet.
    PartRecorded,
    /// A completed download was moved into place; the journal has not recorded the end.
    Placed,
}

/// The variable that arms a crash point (by its name).
#[cfg(feature = "__fault-injection")]
pub(crate) const ENV: &str = "ACTIX_TRANSFER_FAULT";

impl Point {
    #[cfg_attr(not(feature = "__fault-injection"), allow(dead_code))]
    fn name(self) -> &'static str {
        match self {
            Point::PartCreated => "part-created",
            Point::PartRecorded => "part-recorded",
            Point::Placed => "placed",
        }
    }
}

/// Crash here if the environment arms `at`.
#[cfg(feature = "__fault-injection")]
pub(crate) fn point(at: Point) {
    if std::env::var(ENV).is_ok_and(|v| v == at.name()) {
        tracing::warn!(point = at.name(), "injected crash");
        // SAFETY: signals this process; no memory of ours is involved.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// Crash points are not built in.
#[cfg(not(feature = "__fault-injection"))]
#[inline(always)]
pub(crate) fn point(_at: Point) {}
