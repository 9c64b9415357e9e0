//! Events: what a transfer publishes to its subscribers, and how it ended.

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasherDefault, Hasher},
    num::NonZeroU64,
    path::PathBuf,
    time::Duration,
};

use bytes::Bytes;

use crate::error::{EndState, TransferError};

/// The id of a transfer: non-zero, assigned by the [`Engine`](crate::Engine) in increasing
/// order, never reused within one engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct TransferId(NonZeroU64);

impl TransferId {
    /// The id as a number. Ids start at 1.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// An id from a number (for instance one parsed from a URL path); `None` for 0.
    pub fn new(n: u64) -> Option<Self> {
        NonZeroU64::new(n).map(TransferId)
    }
}

/// A map keyed by transfer ids. Ids are numbers the engine issues in sequence, not input anyone
/// else chooses, so they need no SipHash: one multiplication spreads them over the table.
pub(crate) type IdMap<V> = HashMap<TransferId, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`] (Fibonacci hashing of the id).
#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Response headers as `(lower-case name, value)` pairs, in the order received. Values that
/// are not valid UTF-8 are decoded lossily. Shared: every subscriber's copy of a `Began`
/// event points at the same list (a slice: `iter()`, `contains()`, indexing).
pub type Headers = std::sync::Arc<[(String, String)]>;

/// One event of one transfer, delivered to every matching subscriber.
///
/// For each transfer, `seq` counts from 0 with no gaps, `kind` runs
/// `Queued` → `Began` → `Progress`* → `Ended`, and exactly one `Ended` is sent, last.
#[derive(Debug, Clone, PartialEq, actix::Message)]
#[rtype(result = "()")]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct TransferEvent {
    /// The transfer.
    pub id: TransferId,
    /// Position of this event in the transfer's stream, from 0.
    pub seq: u64,
    /// What happened.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub kind: EventKind,
}

/// What happened, in a [`TransferEvent`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "event", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum EventKind {
    /// The engine accepted the transfer; it waits for a slot (or starts at once).
    Queued,
    /// Downloads and fetches: the response headers arrived and were accepted.
    /// Uploads: the body is about to be sent (`status` is `None`, `headers` empty).
    Began {
        /// The response status, when there is a response yet.
        status: Option<u16>,
        /// The response headers (empty for uploads).
        headers: Headers,
        /// Bytes this transfer expects to move: the response length for downloads and fetches,
        /// the body size for uploads; `None` when unknown (no fabricated totals).
        bytes_estimated: Option<u64>,
    },
    /// Bytes moved. Throttled to one per progress interval, plus one when the body is done.
    Progress {
        /// Bytes moved so far (body bytes on the wire).
        bytes_transferred: u64,
        /// As in `Began`.
        bytes_estimated: Option<u64>,
    },
    /// An attempt failed with a retryable error; the next starts after `delay`. A download
    /// resumes from the bytes on disk when the server allows it, otherwise it restarts from
    /// zero: the next `Progress` then counts from there (an upload always restarts).
    Retrying {
        /// The attempt that failed, from 1.
        attempt: u32,
        /// The wait before the next attempt (backoff with jitter, or the server's Retry-After).
        #[cfg_attr(
            feature = "serde",
            serde(rename = "delay_ms", serialize_with = "as_millis")
        )]
        delay: Duration,
        /// Why the attempt failed.
        error: TransferError,
    },
    /// The transfer was paused: its connection is closed, a download's `.part` file is kept.
    Paused {
        /// Bytes kept.
        bytes_transferred: u64,
    },
    /// A paused transfer was admitted again and continues (a download with a range request).
    Resumed,
    /// The transfer ended. Always the last event, exactly once.
    Ended(Outcome),
}

/// How a transfer ended: the payload of the `Ended` event and of [`Wait`](crate::Wait).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Every byte arrived and was verified; a download's file is in place.
    Completed {
        /// Body bytes moved (downloaded, uploaded, or fetched).
        bytes: u64,
        /// The final response status.
        status: u16,
        /// The final URL, after redirects.
        url: String,
        /// Where the result is.
        output: Output,
    },
    /// The transfer failed. A download's final file was not created.
    Failed {
        /// Body bytes moved before the failure.
        bytes: u64,
        /// Why (the last attempt's error).
        error: TransferError,
        /// Attempts made (0 when it failed before any request, e.g. at shutdown while queued).
        attempts: u32,
    },
    /// The transfer was cancelled; a download's `.part` file was removed.
    Cancelled {
        /// Body bytes moved before the cancel.
        bytes: u64,
    },
}

/// Where a completed transfer's result is.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// A download: the verified file, renamed into place.
    File(PathBuf),
    /// A fetch or an upload: the response body, in memory (at most the body cap).
    Body(Bytes),
}

impl Outcome {
    /// Completed, failed or cancelled.
    pub fn end_state(&self) -> EndState {
        match self {
            Outcome::Completed { .. } => EndState::Completed,
            Outcome::Failed { .. } => EndState::Failed,
            Outcome::Cancelled { .. } => EndState::Cancelled,
        }
    }

    /// Body bytes moved.
    pub fn bytes(&self) -> u64 {
        match self {
            Outcome::Completed { bytes, .. }
            | Outcome::Failed { bytes, .. }
            | Outcome::Cancelled { bytes } => *bytes,
        }
    }

    /// Whether the transfer completed.
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed { .. })
    }

    /// The error, when it failed.
    pub fn error(&self) -> Option<&TransferError> {
        match self {
            Outcome::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The downloaded file, when a download completed.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Outcome::Completed {
                output: Output::File(p),
                ..
            } => Some(p),
            _ => None,
        }
    }

    /// The response body, when a fetch or upload completed.
    pub fn body(&self) -> Option<&Bytes> {
        match self {
            Outcome::Completed {
                output: Output::Body(b),
                ..
            } => Some(b),
            _ => None,
        }
    }
}

#[cfg(feature = "serde")]
fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[cfg(feature = "serde")]
mod serde_impl {
    use super::{Outcome, Output};
    use serde::ser::{Serialize, SerializeMap, Serializer};

    /// `{"outcome": "completed"|"failed"|"cancelled", "bytes": n, ...}` with `status`, `url` and
    /// `path` (or `body_len`) when completed, `error` when failed.
    impl Serialize for Outcome {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("outcome", &self.end_state())?;
            m.serialize_entry("bytes", &self.bytes())?;
            match self {
                Outcome::Completed {
                    status,
                    url,
                    output,
                    ..
                } => {
                    m.serialize_entry("status", status)?;
                    m.serialize_entry("url", url)?;
                    match output {
                        Output::File(p) => m.serialize_entry("path", p)?,
                        Output::Body(b) => m.serialize_entry("body_len", &b.len())?,
                    }
                }
                Outcome::Failed {
                    error, attempts, ..
                } => {
                    m.serialize_entry("error", error)?;
                    m.serialize_entry("attempts", attempts)?;
                }
                Outcome::Cancelled { .. } => {}
            }
            m.end()
        }
    }
}
