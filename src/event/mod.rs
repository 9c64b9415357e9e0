//! Events: what a transfer publishes to its subscribers, and how it ended.

pub(crate) mod outbox;
pub(crate) mod report;
pub(crate) mod status;
pub(crate) mod subscribers;

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasherDefault, Hasher},
    num::NonZeroU64,
    path::PathBuf,
    sync::Arc,
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

/// Response headers: names in lower case, values decoded lossily where they are not UTF-8. The
/// values of a repeated name keep the order they were received in; the order between names is
/// not the server's (awc keeps a response's headers in a hash map). Shared: every subscriber's
/// copy of a `Began` event points at the same headers, and all of them live in one block of
/// text.
///
/// ```
/// use actix_transfer::Headers;
///
/// let headers: Headers = [("content-type", "text/plain"), ("set-cookie", "a=1"), ("set-cookie", "b=2")]
///     .into_iter()
///     .collect();
/// assert_eq!(headers.get("Content-Type"), Some("text/plain"));
/// assert_eq!(headers.get_all("set-cookie").collect::<Vec<_>>(), ["a=1", "b=2"]);
/// assert_eq!(headers.len(), 3);
/// for (name, value) in &headers {
///     println!("{name}: {value}");
/// }
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Option<Arc<HeaderText>>);

/// The text of every header, and where each name and value ends in it.
#[derive(PartialEq, Eq)]
struct HeaderText {
    text: Box<str>,
    ends: Box<[(u32, u32)]>,
}

impl Headers {
    /// Every `(name, value)` pair, in the order kept (see [`Headers`]; also
    /// `for (name, value) in &headers`).
    pub fn iter(&self) -> HeaderIter<'_> {
        let (text, ends): (&str, &[(u32, u32)]) = match &self.0 {
            Some(h) => (&h.text, &h.ends),
            None => ("", &[]),
        };
        HeaderIter {
            text,
            ends: ends.iter(),
            name_start: 0,
        }
    }

    /// The value of the first header called `name` (ASCII case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The values of every header called `name` (ASCII case-insensitive), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// How many headers there are (a repeated name counts each time).
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |h| h.ends.len())
    }

    /// No headers at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// From raw pairs: names lower-cased, values decoded lossily (one allocation for all the
    /// text). Totals past 4 GiB cannot come from a response and are cut short.
    pub(crate) fn from_raw<'a, I>(pairs: impl Fn() -> I) -> Self
    where
        I: Iterator<Item = (&'a str, &'a [u8])>,
    {
        let (count, size) = pairs().fold((0, 0), |(c, s), (n, v)| (c + 1, s + n.len() + v.len()));
        if count == 0 {
            return Headers(None);
        }
        let mut text = String::with_capacity(size);
        let mut ends = Vec::with_capacity(count);
        for (name, value) in pairs() {
            // A lossy value may grow: each bad byte becomes a 3-byte U+FFFD.
            if text.len() + name.len() + 3 * value.len() > u32::MAX as usize {
                break;
            }
            let start = text.len();
            text.push_str(name);
            text[start..].make_ascii_lowercase();
            let name_end = text.len() as u32;
            match std::str::from_utf8(value) {
                Ok(value) => text.push_str(value),
                Err(_) => text.push_str(&String::from_utf8_lossy(value)),
            }
            ends.push((name_end, text.len() as u32));
        }
        Headers(Some(Arc::new(HeaderText {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        })))
    }
}

/// The `(name, value)` pairs of [`Headers`], in the order kept.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, (u32, u32)>,
    name_start: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let &(name_end, value_end) = self.ends.next()?;
        let (name, value) = (self.name_start as usize, name_end as usize);
        self.name_start = value_end;
        Some((
            &self.text[name..value],
            &self.text[value..value_end as usize],
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for HeaderIter<'_> {}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = HeaderIter<'a>;

    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    /// Headers from `(name, value)` pairs (names are lower-cased), for instance to build events
    /// in a subscriber's own tests.
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let pairs: Vec<(N, V)> = pairs.into_iter().collect();
        Headers::from_raw(|| {
            pairs
                .iter()
                .map(|(n, v)| (n.as_ref(), v.as_ref().as_bytes()))
        })
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Headers {
    /// As a sequence of `[name, value]` pairs.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// One event of one transfer, delivered to every matching subscriber.
///
/// For each transfer, `seq` counts its events from 0, `kind` runs
/// `Queued` → `Began` → `Progress`* → `Ended`, and exactly one `Ended` is sent, last. A
/// subscriber sees gaps in `seq` where it asked for some kinds only, and where its `Progress`
/// events coalesced (see [`Subscribe`](crate::Subscribe)); otherwise none.
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
    /// The engine restored this transfer from its journal at start (see
    /// [`EngineBuilder::journal`](crate::EngineBuilder::journal)): the first event of a
    /// transfer after a restart. Its `seq` jumps past every number the transfer's events had
    /// before the restart; the next ones follow on from it.
    Restored {
        /// Where it was when the last process ended: `Queued`, `Active` (it continues) or
        /// `Paused` (it stays paused until resumed).
        state: crate::TransferState,
        /// Bytes of a download's `.part` file as found on disk at the restore (0 when there
        /// is none to continue): the figure its `Range` continues from when it has a
        /// validator to resume with, even when the journal recorded fewer (progress is not
        /// journaled per chunk). An upload's is the figure the journal recorded.
        bytes_on_disk: u64,
    },
    /// The transfer ended. Always the last event, exactly once.
    Ended(Outcome),
}

/// A set of event kinds, to subscribe to some of them only (see
/// [`Subscribe::kinds`](crate::Subscribe::kinds)).
///
/// ```
/// use actix_transfer::EventKinds;
///
/// let wanted = EventKinds::BEGAN | EventKinds::ENDED;
/// assert!(wanted.contains(EventKinds::ENDED));
/// assert!(!wanted.contains(EventKinds::PROGRESS));
/// assert!(EventKinds::ALL.contains(wanted));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventKinds(u8);

impl EventKinds {
    /// No kind at all.
    pub const NONE: Self = EventKinds(0);
    /// [`EventKind::Queued`].
    pub const QUEUED: Self = EventKinds(1);
    /// [`EventKind::Began`].
    pub const BEGAN: Self = EventKinds(1 << 1);
    /// [`EventKind::Progress`].
    pub const PROGRESS: Self = EventKinds(1 << 2);
    /// [`EventKind::Retrying`].
    pub const RETRYING: Self = EventKinds(1 << 3);
    /// [`EventKind::Paused`].
    pub const PAUSED: Self = EventKinds(1 << 4);
    /// [`EventKind::Resumed`].
    pub const RESUMED: Self = EventKinds(1 << 5);
    /// [`EventKind::Ended`].
    pub const ENDED: Self = EventKinds(1 << 6);
    /// [`EventKind::Restored`].
    pub const RESTORED: Self = EventKinds(1 << 7);
    /// Every kind (the default of a subscription).
    pub const ALL: Self = EventKinds(u8::MAX);
    /// How many kinds there are (one bit each).
    pub(crate) const COUNT: usize = 8;

    /// The kind of `kind`, as a set of one.
    pub fn of(kind: &EventKind) -> Self {
        match kind {
            EventKind::Queued => Self::QUEUED,
            EventKind::Began { .. } => Self::BEGAN,
            EventKind::Progress { .. } => Self::PROGRESS,
            EventKind::Retrying { .. } => Self::RETRYING,
            EventKind::Paused { .. } => Self::PAUSED,
            EventKind::Resumed => Self::RESUMED,
            EventKind::Ended(_) => Self::ENDED,
            EventKind::Restored { .. } => Self::RESTORED,
        }
    }

    /// Every kind in `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Some kind is in both.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// The kinds in either.
    pub const fn union(self, other: Self) -> Self {
        EventKinds(self.0 | other.0)
    }

    /// No kind at all.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    pub(crate) const fn from_bits(bits: u8) -> Self {
        EventKinds(bits & Self::ALL.0)
    }
}

impl Default for EventKinds {
    /// [`EventKinds::ALL`].
    fn default() -> Self {
        Self::ALL
    }
}

impl std::ops::BitOr for EventKinds {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        self.union(other)
    }
}

impl std::ops::BitOrAssign for EventKinds {
    fn bitor_assign(&mut self, other: Self) {
        *self = self.union(other);
    }
}

impl fmt::Debug for EventKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; EventKinds::COUNT] = [
            "QUEUED", "BEGAN", "PROGRESS", "RETRYING", "PAUSED", "RESUMED", "ENDED", "RESTORED",
        ];
        let names = (0..EventKinds::COUNT)
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| NAMES[i]);
        f.write_str("EventKinds(")?;
        for (n, name) in names.enumerate() {
            if n > 0 {
                f.write_str(" | ")?;
            }
            f.write_str(name)?;
        }
        f.write_str(")")
    }
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
        /// The final response's headers (an upload's `ETag` or `Location`, for instance); of a
        /// resumed download, those of the response that brought its last bytes.
        headers: Headers,
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
        /// The status of the last attempt's final response (after redirects), when one
        /// arrived: the `503` of a [`Server`](TransferError::Server) error, or the `200` of a
        /// body cut short; of a failure on a redirect (one too many, a location refused), that
        /// redirect. `None` when the last attempt failed before an answer (connect, DNS, TLS, a
        /// timeout waiting for the headers) or made no request.
        status: Option<u16>,
        /// That response's headers (its `Retry-After`, a request id to quote to the server's
        /// operators); empty with no response. A failure read back from the journal keeps its
        /// status but not its headers.
        headers: Headers,
    },
    /// The transfer was cancelled; a download's `.part` file was removed.
    Cancelled {
        /// Body bytes moved before the cancel.
        bytes: u64,
        /// The status of the last attempt's final response, when one arrived before the
        /// cancel (as for [`Failed`](Outcome::Failed)).
        status: Option<u16>,
        /// That response's headers; empty with no response, and for a cancel read back from
        /// the journal.
        headers: Headers,
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
    /// A failure no response is known of: before any request (queued, at shutdown), or
    /// told by something other than the transfer.
    pub(crate) fn failed_unanswered(bytes: u64, error: TransferError, attempts: u32) -> Self {
        Outcome::Failed {
            bytes,
            error,
            attempts,
            status: None,
            headers: Headers::default(),
        }
    }

    /// A cancel no response is known of (a transfer cancelled before it ran).
    pub(crate) fn cancelled_unanswered(bytes: u64) -> Self {
        Outcome::Cancelled {
            bytes,
            status: None,
            headers: Headers::default(),
        }
    }

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
            | Outcome::Cancelled { bytes, .. } => *bytes,
        }
    }

    /// The final response's status: always there when completed; when failed or cancelled,
    /// that of the last attempt's final response, if one arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Completed { status, .. } => Some(*status),
            Outcome::Failed { status, .. } | Outcome::Cancelled { status, .. } => *status,
        }
    }

    /// The final response's headers (see [`status`](Self::status)); empty when no response
    /// arrived.
    pub fn headers(&self) -> &Headers {
        match self {
            Outcome::Completed { headers, .. }
            | Outcome::Failed { headers, .. }
            | Outcome::Cancelled { headers, .. } => headers,
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

    /// `{"outcome": "completed"|"failed"|"cancelled", "bytes": n, "status": n|null, "headers":
    /// [[name, value], ..], ...}` with `url` and `path` (or `body_len`) when completed, `error`
    /// and `attempts` when failed. `status` is null (and `headers` empty) when no response
    /// arrived.
    impl Serialize for Outcome {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("outcome", &self.end_state())?;
            m.serialize_entry("bytes", &self.bytes())?;
            m.serialize_entry("status", &self.status())?;
            m.serialize_entry("headers", self.headers())?;
            match self {
                Outcome::Completed { url, output, .. } => {
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

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn headers_keep_order_and_repeats_lower_case_names_and_decode_lossily() {
        let raw: [(&str, &[u8]); 4] = [
            ("Content-Length", b"12"),
            ("x-odd", b"caf\xe9"),
            ("set-cookie", b"a=1"),
            ("Set-Cookie", b""),
        ];
        let h = Headers::from_raw(|| raw.iter().copied());
        let all: Vec<(&str, &str)> = (&h).into_iter().collect();
        assert_eq!(h.iter().len(), 4);
        assert_eq!(
            all,
            [
                ("content-length", "12"),
                ("x-odd", "caf\u{fffd}"),
                ("set-cookie", "a=1"),
                ("set-cookie", ""),
            ]
        );
        assert_eq!(h.get("CONTENT-length"), Some("12"));
        assert_eq!(h.get_all("set-cookie").count(), 2);
        assert_eq!(h.get("missing"), None);
        assert_eq!(format!("{h:?}"), format!("{all:?}"));
        let same: Headers = all.iter().copied().collect();
        assert_eq!(h, same);
    }

    #[test]
    fn no_headers_is_empty() {
        let h = Headers::default();
        assert!(h.is_empty());
        assert_eq!(h.iter().count(), 0);
        let none: Headers = Vec::<(String, String)>::new().into_iter().collect();
        assert_eq!(h, none);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn every_outcome_serializes_its_status_and_headers() {
        use super::{Outcome, TransferError};
        let answered = Outcome::Failed {
            bytes: 0,
            error: TransferError::Server { status: 503 },
            attempts: 1,
            status: Some(503),
            headers: [("retry-after", "7")].into_iter().collect(),
        };
        assert_eq!(
            serde_json::to_value(&answered).unwrap(),
            serde_json::json!({
                "outcome": "failed",
                "bytes": 0,
                "status": 503,
                "headers": [["retry-after", "7"]],
                "error": serde_json::to_value(TransferError::Server { status: 503 }).unwrap(),
                "attempts": 1,
            })
        );
        assert_eq!(
            serde_json::to_value(Outcome::cancelled_unanswered(5)).unwrap(),
            serde_json::json!({
                "outcome": "cancelled",
                "bytes": 5,
                "status": null,
                "headers": [],
            })
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn headers_serialize_as_name_value_pairs() {
        let h: Headers = [("a", "1"), ("b", "2")].into_iter().collect();
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"[["a","1"],["b","2"]]"#
        );
    }
}
