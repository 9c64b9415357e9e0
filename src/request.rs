//! The three kinds of transfer, as messages to the [`Engine`](crate::Engine).
//!
//! Each is a builder and a message whose reply is `Result<TransferId, TransferError>`. The
//! Engine validates it before any I/O (URL and scheme, header names and values, target path)
//! and answers at once; the transfer itself runs later on a worker.

use std::{path::PathBuf, time::Duration};

use actix::Message;
use awc::http::{
    header::{HeaderName, HeaderValue},
    Method,
};
use bytes::Bytes;
use url::Url;

use crate::{
    error::TransferError,
    event::TransferId,
    file::{
        path,
        policy::{Conflict, Partial},
    },
    input::{self, IntoHeaderName, IntoHeaderValue, IntoMethod, IntoUrl},
    redact,
};

/// Download options, as validated.
#[derive(Debug, Clone)]
pub(crate) struct DownloadOptions {
    /// `None`: named after the response (see [`path::file_name`]), once its head arrives.
    pub(crate) target: Option<PathBuf>,
    pub(crate) conflict: Conflict,
    pub(crate) expect_size: Option<u64>,
    /// Lower-case hex.
    pub(crate) expect_sha256: Option<String>,
    pub(crate) resumable_only: bool,
    pub(crate) on_cancel: Partial,
    pub(crate) on_failure: Partial,
    /// Ranges fetched in parallel; `None`: the engine's default.
    pub(crate) segments: Option<u32>,
    /// Flush the file to the disk before it is complete; `None`: the engine's default.
    pub(crate) fsync: Option<bool>,
    /// Other URLs of the same file, tried after the request's own, round robin.
    pub(crate) mirrors: Vec<Url>,
}

/// A transfer's own timeouts; each `None` is the engine's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) headers: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    /// `Some(Duration::ZERO)`: no limit, whatever the engine's.
    pub(crate) total: Option<Duration>,
}

/// Download a URL with GET into a file under the engine's download directory.
///
/// The body goes to `<name>.part`, which is renamed to `<name>` only after its length was
/// verified against the response. Without [`Download::to`], the name is chosen from the
/// response as browsers choose it: the `Content-Disposition` file name (`filename*`, RFC 8187,
/// before `filename`), else the last path segment of the URL that answered (after redirects),
/// else `download`. Such a name is always made safe: separators, control and invisible
/// characters and `<>:"|?*` become `_`, leading and trailing dots and spaces go, a name
/// Windows reserves (`CON`, `NUL.txt`, `COM1`...) gets a leading `_`, and a long one is cut
/// (keeping its extension); it is a file directly in the download dir. The path reported
/// ([`TransferStatus::path`](crate::TransferStatus::path), the outcome's) is always the real
/// one, `Uniquify`'s ` (1)` included.
///
/// ```
/// use actix_transfer::{Conflict, Download};
/// let d = Download::new("http://127.0.0.1:8080/file.bin")
///     .to("incoming/file.bin")
///     .header("authorization", "Bearer token")
///     .conflict(Conflict::Overwrite);
/// # let _ = d;
/// ```
///
/// Typed inputs of the `http` crate (1.x) and [`url::Url`] work as strings do (see
/// [`IntoUrl`], [`IntoHeaderName`], [`IntoHeaderValue`]):
///
/// ```
/// use actix_transfer::Download;
/// use http::header::{self, HeaderMap, HeaderValue};
///
/// let uri: http::Uri = "http://127.0.0.1:8080/file.bin".parse().unwrap();
/// let mut more = HeaderMap::new();
/// more.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
/// let d = Download::new(uri)
///     .header(header::ACCEPT, "x")
///     .header("x-request-id", HeaderValue::from_static("42"))
///     .headers(more)
///     .idle_timeout(std::time::Duration::from_secs(5))
///     .max_attempts(3);
/// # let _ = d;
/// ```
#[derive(Debug, Clone)]
pub struct Download {
    pub(crate) url: String,
    pub(crate) target: Option<String>,
    pub(crate) headers: Vec<(String, Bytes)>,
    pub(crate) conflict: Conflict,
    pub(crate) priority: i32,
    pub(crate) expect_size: Option<u64>,
    pub(crate) expect_sha256: Option<String>,
    pub(crate) resumable_only: bool,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) on_cancel: Partial,
    pub(crate) on_failure: Partial,
    pub(crate) max_rate: Option<u64>,
    pub(crate) segments: Option<u32>,
    pub(crate) fsync: Option<bool>,
    pub(crate) timeouts: Timeouts,
    pub(crate) mirrors: Vec<String>,
}

impl Download {
    /// Download `url` (http or https): a string, a [`url::Url`] or an [`http::Uri`] (see
    /// [`IntoUrl`]).
    pub fn new(url: impl IntoUrl) -> Self {
        Download {
            url: url.into_url_string(),
            target: None,
            headers: Vec::new(),
            conflict: Conflict::default(),
            priority: 0,
            expect_size: None,
            expect_sha256: None,
            resumable_only: false,
            max_attempts: None,
            on_cancel: Partial::Delete,
            on_failure: Partial::Keep,
            max_rate: None,
            segments: None,
            fsync: None,
            timeouts: Timeouts::default(),
            mirrors: Vec::new(),
        }
    }

    /// Another URL of the same file (http or https; checked at submit like the first). When an
    /// attempt fails in a way a retry would address, the next attempt goes to the next URL,
    /// round robin over the first URL and its mirrors (the retry policy still bounds the
    /// attempts: give it at least one per URL). A partly written file continues from another
    /// mirror only when that mirror's strong validator (ETag or Last-Modified) and length are
    /// the ones the bytes on disk came with; otherwise the file starts again from zero, so its
    /// bytes always come from one version. A segmented download spreads its ranges over the
    /// URLs (as aria2 does); a mirror whose validator or length disagrees with the first
    /// response is dropped for the rest of the transfer, its ranges fetched from the URL that
    /// gave that response. The request headers go to every mirror, credentials included: name
    /// only mirrors that may see them.
    ///
    /// ```
    /// use actix_transfer::Download;
    /// let d = Download::new("https://a.example/os.iso")
    ///     .mirror("https://b.example/pub/os.iso")
    ///     .mirrors(["https://c.example/os.iso", "https://d.example/os.iso"]);
    /// # let _ = d;
    /// ```
    pub fn mirror(mut self, url: impl IntoUrl) -> Self {
        self.mirrors.push(url.into_url_string());
        self
    }

    /// Several [`mirror`](Self::mirror)s at once, in order.
    pub fn mirrors<I>(mut self, urls: I) -> Self
    where
        I: IntoIterator,
        I::Item: IntoUrl,
    {
        self.mirrors
            .extend(urls.into_iter().map(IntoUrl::into_url_string));
        self
    }

    /// Fetch the file as `k` byte ranges in parallel, each on its own connection and worker
    /// (`1` forces a single stream, and `0` counts as 1; at most 16: more is cut to 16; default:
    /// the engine's setting). Used only when the server
    /// gives a length, `Accept-Ranges: bytes` and a validator, each range is at least 1 MiB,
    /// and no SHA-256 is expected (the digest is computed in order while streaming); otherwise
    /// the download is a single stream. One transfer, one event stream either way.
    pub fn segments(mut self, k: u32) -> Self {
        self.segments = Some(k.max(1));
        self
    }

    /// Whether the finished file is flushed to the disk (`fsync` of the file, and of its
    /// directory after the rename) before the download is complete. Default: the engine's
    /// setting, itself on by default: a file under its final name is then complete even after
    /// a power cut or a kernel crash. Off, the file is just as complete and verified for every
    /// process at once (its bytes are in the page cache), but a power cut soon after may leave
    /// it short; Chromium, aria2, curl and grab do not flush either. On Linux the flush costs
    /// little: the disk writes start while the file downloads (every 8 MiB), so the final
    /// sync waits for the last few MiB only.
    pub fn fsync(mut self, on: bool) -> Self {
        self.fsync = Some(on);
        self
    }

    /// Limit this transfer to `bytes_per_sec` (the engine's global limit applies too; `0`: no
    /// limit of its own). Change it while it runs with [`SetRate`](crate::SetRate).
    pub fn max_rate(mut self, bytes_per_sec: u64) -> Self {
        self.max_rate = Some(bytes_per_sec);
        self
    }

    /// Fail with `SizeMismatch` (and remove the `.part`) unless the body has exactly this
    /// many bytes; checked against the announced length before any byte is written, and
    /// against the bytes received at the end.
    pub fn expect_size(mut self, bytes: u64) -> Self {
        self.expect_size = Some(bytes);
        self
    }

    /// Fail with `ChecksumMismatch` (and remove the `.part`) unless the body's SHA-256 is this
    /// (64 hex digits; checked at submit). The digest is computed while the file is written,
    /// across resumes, never by reading the file again.
    pub fn expect_sha256(mut self, hex: impl Into<String>) -> Self {
        self.expect_sha256 = Some(hex.into());
        self
    }

    /// Fail with `CannotResume` instead of restarting from zero when a retry or a resume
    /// cannot continue from the bytes on disk.
    pub fn resumable_only(mut self) -> Self {
        self.resumable_only = true;
        self
    }

    /// Attempts before giving up, the first included (`0` counts as 1; default: the engine's
    /// retry policy).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// What to do with the `.part` file on cancel (default [`Partial::Delete`]).
    pub fn on_cancel(mut self, p: Partial) -> Self {
        self.on_cancel = p;
        self
    }

    /// What to do with the `.part` file when the download finally fails (default
    /// [`Partial::Keep`]; a checksum mismatch always deletes it).
    pub fn on_failure(mut self, p: Partial) -> Self {
        self.on_failure = p;
        self
    }

    /// The target path, relative to the download directory (`a/b.bin`). Absolute paths, `..`,
    /// empty and dot-edged components, control characters and invisible or bidirectional
    /// formatting characters (U+202E, U+200B, U+FEFF, U+2028, ...) are refused with
    /// `UnsafePath`, and so is a file name longer than 250 bytes (its `.part` file must fit the
    /// 255-byte limit of file systems; under `Uniquify`, ` (k)` is made room for by cutting
    /// the name). Without a target the name comes from the response (see [`Download`]), cut
    /// to fit and with such characters replaced by `_`.
    pub fn to(mut self, relative_path: impl Into<String>) -> Self {
        self.target = Some(relative_path.into());
        self
    }

    /// Add a request header. Headers the engine owns are refused at submit with
    /// `InvalidRequest`: `Expect`, `Host`, `Content-Length`, `Transfer-Encoding`, `TE`,
    /// `Connection`, `Keep-Alive`, `Proxy-Connection` and `Upgrade`.
    pub fn header(mut self, name: impl IntoHeaderName, value: impl IntoHeaderValue) -> Self {
        self.headers
            .push((name.into_name_string(), value.into_value_bytes()));
        self
    }

    /// Add every header of `map` (the `http` crate's, 1.x), as [`header`](Self::header) adds
    /// one.
    pub fn headers(mut self, map: ::http::HeaderMap) -> Self {
        self.headers.extend(input::header_pairs(map));
        self
    }

    /// What to do when the target exists (default [`Conflict::Uniquify`]).
    pub fn conflict(mut self, conflict: Conflict) -> Self {
        self.conflict = conflict;
        self
    }

    /// Admission priority: higher starts first when transfers queue (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// This transfer's bound on waiting for the response headers (as
    /// [`EngineBuilder::headers_timeout`](crate::EngineBuilder::headers_timeout) says; zero:
    /// no limit). Default: the engine's. Connecting is bounded by the engine's connect timeout.
    pub fn headers_timeout(mut self, d: Duration) -> Self {
        self.timeouts.headers = Some(d);
        self
    }

    /// This transfer's bound on a body making no progress (as
    /// [`EngineBuilder::idle_timeout`](crate::EngineBuilder::idle_timeout) says; zero: no
    /// limit). Default: the engine's.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.timeouts.idle = Some(d);
        self
    }

    /// This transfer's overall deadline, every attempt and backoff included (as
    /// [`EngineBuilder::total_timeout`](crate::EngineBuilder::total_timeout) says; zero: no
    /// limit, whatever the engine's). Default: the engine's.
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.timeouts.total = Some(d);
        self
    }

    /// All of a transfer's own timeouts at once (a transfer restored from the journal).
    #[cfg(feature = "journal")]
    pub(crate) fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }
}

impl Message for Download {
    type Result = Result<TransferId, TransferError>;
}

/// Upload a file, or bytes in memory, as the body of a PUT (default) or POST, with
/// `Content-Length`.
///
/// A file must exist when the message is sent (checked off-thread before the id is
/// assigned); it is streamed from the disk, never held in memory. `Began` is published before
/// connecting, with the body size; progress counts body bytes handed to the connection. The
/// response body is kept in memory up to the body cap.
///
/// ```
/// use actix_transfer::Upload;
/// let u = Upload::new("http://127.0.0.1:8080/put/here", "/tmp/report.pdf")
///     .post()
///     .header("content-type", "application/pdf");
/// let b = Upload::bytes("http://127.0.0.1:8080/put/there", &b"{\"q\": 1}"[..])
///     .header("content-type", "application/json");
/// # let _ = (u, b);
/// ```
#[derive(Debug, Clone)]
pub struct Upload {
    pub(crate) url: String,
    pub(crate) body: UploadBody,
    pub(crate) method: Method,
    pub(crate) max_body: Option<u64>,
    pub(crate) headers: Vec<(String, Bytes)>,
    pub(crate) priority: i32,
    pub(crate) max_rate: Option<u64>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) timeouts: Timeouts,
}

impl Upload {
    /// PUT the file at `file` to `url` (a string, a [`url::Url`] or an [`http::Uri`]).
    pub fn new(url: impl IntoUrl, file: impl Into<PathBuf>) -> Self {
        Upload::of(url, UploadBody::File(file.into()))
    }

    /// PUT `body`, held in memory, to `url`. It is sent again whole on each attempt (and on a
    /// 307 or 308 redirect). An engine with a journal does not record it (its bytes live in
    /// this process only), as it records no fetch.
    pub fn bytes(url: impl IntoUrl, body: impl Into<Bytes>) -> Self {
        Upload::of(url, UploadBody::Bytes(body.into()))
    }

    fn of(url: impl IntoUrl, body: UploadBody) -> Self {
        Upload {
            url: url.into_url_string(),
            body,
            method: Method::PUT,
            max_body: None,
            headers: Vec::new(),
            priority: 0,
            max_rate: None,
            max_attempts: None,
            timeouts: Timeouts::default(),
        }
    }

    /// Limit this upload to `bytes_per_sec` (the engine's global limit applies too; `0`: no
    /// limit of its own).
    pub fn max_rate(mut self, bytes_per_sec: u64) -> Self {
        self.max_rate = Some(bytes_per_sec);
        self
    }

    /// Cap the response body in memory (default: the engine's `max_body`, 16 MiB). A longer
    /// body fails the transfer with `BodyTooLarge` as soon as the cap is passed.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Use POST instead of PUT.
    pub fn post(mut self) -> Self {
        self.method = Method::POST;
        self
    }

    /// Add a request header. Headers the engine owns are refused at submit with
    /// `InvalidRequest`: `Expect`, `Host`, `Content-Length`, `Transfer-Encoding`, `TE`,
    /// `Connection`, `Keep-Alive`, `Proxy-Connection` and `Upgrade`.
    pub fn header(mut self, name: impl IntoHeaderName, value: impl IntoHeaderValue) -> Self {
        self.headers
            .push((name.into_name_string(), value.into_value_bytes()));
        self
    }

    /// Add every header of `map` (the `http` crate's, 1.x), as [`header`](Self::header) adds
    /// one.
    pub fn headers(mut self, map: ::http::HeaderMap) -> Self {
        self.headers.extend(input::header_pairs(map));
        self
    }

    /// Admission priority: higher starts first when transfers queue (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// This transfer's bound on waiting for the response headers (as
    /// [`EngineBuilder::headers_timeout`](crate::EngineBuilder::headers_timeout) says; zero:
    /// no limit). Default: the engine's. Connecting is bounded by the engine's connect timeout.
    pub fn headers_timeout(mut self, d: Duration) -> Self {
        self.timeouts.headers = Some(d);
        self
    }

    /// This transfer's bound on a body making no progress (as
    /// [`EngineBuilder::idle_timeout`](crate::EngineBuilder::idle_timeout) says; zero: no
    /// limit). Default: the engine's.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.timeouts.idle = Some(d);
        self
    }

    /// This transfer's overall deadline, every attempt and backoff included (as
    /// [`EngineBuilder::total_timeout`](crate::EngineBuilder::total_timeout) says; zero: no
    /// limit, whatever the engine's). Default: the engine's.
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.timeouts.total = Some(d);
        self
    }

    /// All of a transfer's own timeouts at once (a transfer restored from the journal).
    #[cfg(feature = "journal")]
    pub(crate) fn timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// Attempts before giving up, the first included (`0` counts as 1; default: the engine's
    /// retry policy).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }
}

impl Message for Upload {
    type Result = Result<TransferId, TransferError>;
}

/// A request whose response body is kept in memory, up to a cap.
///
/// ```
/// use actix_transfer::Fetch;
/// let f = Fetch::new("POST", "http://127.0.0.1:8080/api")
///     .body("{\"q\": 1}")
///     .header("content-type", "application/json")
///     .accept_any_status()
///     .max_body(64 * 1024);
/// # let _ = f;
/// ```
#[derive(Debug, Clone)]
pub struct Fetch {
    pub(crate) url: String,
    pub(crate) method: String,
    pub(crate) headers: Vec<(String, Bytes)>,
    pub(crate) body: Option<Bytes>,
    pub(crate) any_status: bool,
    pub(crate) max_body: Option<u64>,
    pub(crate) priority: i32,
    pub(crate) max_rate: Option<u64>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) timeouts: Timeouts,
}

impl Fetch {
    /// A GET of `url` (a string, a [`url::Url`] or an [`http::Uri`]).
    pub fn get(url: impl IntoUrl) -> Self {
        Fetch::new("GET", url)
    }

    /// A request with any method (`"GET"`, `"POST"`, `"DELETE"`, ..., or an [`http::Method`]).
    pub fn new(method: impl IntoMethod, url: impl IntoUrl) -> Self {
        Fetch {
            url: url.into_url_string(),
            method: method.into_method_string(),
            headers: Vec::new(),
            body: None,
            any_status: false,
            max_body: None,
            priority: 0,
            max_rate: None,
            max_attempts: None,
            timeouts: Timeouts::default(),
        }
    }

    /// Limit this transfer to `bytes_per_sec` (the engine's global limit applies too; `0`: no
    /// limit of its own).
    pub fn max_rate(mut self, bytes_per_sec: u64) -> Self {
        self.max_rate = Some(bytes_per_sec);
        self
    }

    /// The request body, sent with `Content-Length`.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Add a request header. Headers the engine owns are refused at submit with
    /// `InvalidRequest`: `Expect`, `Host`, `Content-Length`, `Transfer-Encoding`, `TE`,
    /// `Connection`, `Keep-Alive`, `Proxy-Connection` and `Upgrade`.
    pub fn header(mut self, name: impl IntoHeaderName, value: impl IntoHeaderValue) -> Self {
        self.headers
            .push((name.into_name_string(), value.into_value_bytes()));
        self
    }

    /// Add every header of `map` (the `http` crate's, 1.x), as [`header`](Self::header) adds
    /// one.
    pub fn headers(mut self, map: ::http::HeaderMap) -> Self {
        self.headers.extend(input::header_pairs(map));
        self
    }

    /// Complete with any status instead of failing with `Server { status }` on non-2xx.
    pub fn accept_any_status(mut self) -> Self {
        self.any_status = true;
        self
    }

    /// Cap the response body in memory (default: the engine's `max_body`, 16 MiB). A longer body
    /// fails the transfer with `BodyTooLarge` as soon as the cap is passed.
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.max_body = Some(bytes);
        self
    }

    /// Admission priority: higher starts first when transfers queue (default 0).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// This transfer's bound on waiting for the response headers (as
    /// [`EngineBuilder::headers_timeout`](crate::EngineBuilder::headers_timeout) says; zero:
    /// no limit). Default: the engine's. Connecting is bounded by the engine's connect timeout.
    pub fn headers_timeout(mut self, d: Duration) -> Self {
        self.timeouts.headers = Some(d);
        self
    }

    /// This transfer's bound on a body making no progress (as
    /// [`EngineBuilder::idle_timeout`](crate::EngineBuilder::idle_timeout) says; zero: no
    /// limit). Default: the engine's.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.timeouts.idle = Some(d);
        self
    }

    /// This transfer's overall deadline, every attempt and backoff included (as
    /// [`EngineBuilder::total_timeout`](crate::EngineBuilder::total_timeout) says; zero: no
    /// limit, whatever the engine's). Default: the engine's.
    pub fn total_timeout(mut self, d: Duration) -> Self {
        self.timeouts.total = Some(d);
        self
    }

    /// Attempts before giving up, the first included (`0` counts as 1; default: the engine's
    /// retry policy).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }
}

impl Message for Fetch {
    type Result = Result<TransferId, TransferError>;
}

/// A request as validated: what the transfer actor sends.
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    pub(crate) url: Url,
    pub(crate) method: Method,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

/// Where an upload's body comes from.
#[derive(Debug, Clone)]
pub(crate) enum UploadBody {
    /// A file, streamed from the disk.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
}

impl UploadBody {
    /// The file, when the body is one.
    pub(crate) fn file(&self) -> Option<&PathBuf> {
        match self {
            UploadBody::File(path) => Some(path),
            UploadBody::Bytes(_) => None,
        }
    }
}

/// What a transfer does with the response, as validated.
#[derive(Debug, Clone)]
pub(crate) enum JobKind {
    Download(Box<DownloadOptions>),
    Upload {
        body: UploadBody,
        size: u64,
        max_body: Option<u64>,
    },
    Fetch {
        body: Option<Bytes>,
        any_status: bool,
        max_body: Option<u64>,
    },
}

/// A validated transfer, ready for a worker.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) request: HttpRequest,
    pub(crate) kind: JobKind,
    pub(crate) priority: i32,
    /// Overrides the engine's retry policy's attempt count.
    pub(crate) max_attempts: Option<u32>,
    /// Bytes per second, this transfer alone.
    pub(crate) max_rate: Option<u64>,
    /// Override the engine's timeouts.
    pub(crate) timeouts: Timeouts,
    /// A transfer restored from the journal: where it was when the last process ended.
    #[cfg(feature = "journal")]
    pub(crate) restore: Option<Box<Restore>>,
}

/// What a transfer restored from the journal continues from (see `engine::journaled`).
#[cfg(feature = "journal")]
#[derive(Debug, Clone, Default)]
pub(crate) struct Restore {
    /// Downloads: the file name chosen before the restart (its `.part` is re-adopted).
    pub(crate) path: Option<PathBuf>,
    /// The `If-Range` validator of the `.part`, as `http::validator` gives it.
    pub(crate) validator: Option<String>,
    /// The URL that gave it, after redirects.
    pub(crate) final_url: Option<String>,
    /// Downloads: the identity of the `.part` created for `path`, and the length the
    /// response announced: a file with that identity under its final name was placed.
    pub(crate) part_file: Option<(u64, u64)>,
    pub(crate) expected_len: Option<u64>,
    /// Uploads whose source file changed since the submit: fail with this at once.
    pub(crate) fail: Option<crate::error::TransferError>,
}

/// Parse and check an absolute http(s) URL.
///
/// A refusal quotes the URL without credentials or query ([`redact::raw`]).
///
/// The last URL accepted on this thread is kept with its parse: a load test or a poller
/// submits the same URL again and again, and the `url` crate's parse (host serialization,
/// IDNA) costs more than the rest of a submit. The answer depends on the text alone, so a
/// copy of the kept parse is the same answer.
pub(crate) fn parse_url(raw: &str) -> Result<Url, TransferError> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Box<str>, Url)>> = const { std::cell::RefCell::new(None) };
    }
    let kept = LAST.with_borrow(|last| match last {
        Some((text, url)) if **text == *raw => Some(url.clone()),
        _ => None,
    });
    if let Some(url) = kept {
        return Ok(url);
    }
    let url = parse_url_afresh(raw)?;
    LAST.set(Some((raw.into(), url.clone())));
    Ok(url)
}

fn parse_url_afresh(raw: &str) -> Result<Url, TransferError> {
    let shown = redact::raw(raw);
    let url = Url::parse(raw.trim())
        .map_err(|e| TransferError::invalid(format!("invalid URL {shown:?}: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        // Not the scheme by name: in `user:password@host`, it is the user name.
        _ => {
            return Err(TransferError::invalid(format!(
                "unsupported scheme in {shown:?}: only http and https"
            )))
        }
    }
    #[cfg(not(feature = "rustls"))]
    if url.scheme() == "https" {
        return Err(TransferError::invalid(
            "https needs the `rustls` feature of actix-transfer",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TransferError::invalid(format!("no host in URL {shown:?}")));
    }
    if redact::has_credentials(&url) {
        return Err(TransferError::invalid(
            "credentials in the URL are not supported: use an authorization header",
        ));
    }
    Ok(url)
}

/// Whether `s` is a token (RFC 9110 §5.6.2): what a header name or a method must be. The
/// `http` crate's header names let `"` through, so the rule is checked here, not left to it.
fn is_token(s: &str) -> bool {
    const PUNCTUATION: &[u8] = b"!#$%&'*+-.^_`|~";
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || PUNCTUATION.contains(&b))
}

/// Names must be tokens; values are what `HeaderValue::from_str` takes, RFC 9110's field
/// values: visible ASCII, space, tab and bytes above 127 (obs-text), never CR, LF, NUL, another
/// control or DEL.
fn parse_headers(raw: &[(String, Bytes)]) -> Result<Vec<(HeaderName, HeaderValue)>, TransferError> {
    raw.iter()
        .map(|(k, v)| {
            let name = Some(k)
                .filter(|k| is_token(k))
                .and_then(|k| HeaderName::from_bytes(k.as_bytes()).ok())
                .ok_or_else(|| {
                    TransferError::invalid(format!(
                        "invalid header name {k:?}: a name is letters, digits and !#$%&'*+-.^_`|~"
                    ))
                })?;
            let value = HeaderValue::from_bytes(v)
                .map_err(|_| TransferError::invalid(format!("invalid value for header {k:?}")))?;
            Ok((name, value))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(refuse_owned_headers)
}

/// Request headers the engine (or awc under it) owns, with the reason each is refused.
const OWNED_HEADERS: [(&str, &str); 9] = [
    // awc refuses it on a request without a body, and would hold a body back until a
    // `100 Continue` that many servers never send.
    ("expect", "the engine sends no `100-continue` requests"),
    // awc would send it instead of the URL's host on HTTP/1.1 (to every origin a redirect
    // leads to), and drops it on HTTP/2.
    ("host", "the host comes from the URL"),
    // awc frames the body itself and drops these, or sends them beside its own framing.
    (
        "content-length",
        "the engine frames the request body itself",
    ),
    (
        "transfer-encoding",
        "the engine frames the request body itself",
    ),
    ("te", "the engine chooses the transfer codings"),
    // Connection management belongs to the pool; HTTP/2 forbids all of these.
    ("connection", "connections are managed by the engine"),
    ("keep-alive", "connections are managed by the engine"),
    ("proxy-connection", "connections are managed by the engine"),
    ("upgrade", "the engine does not switch protocols"),
];

/// Refuse the headers the engine owns (see [`OWNED_HEADERS`]): sent, each would be dropped,
/// contradict what the engine sends, or make awc refuse the request after submit.
fn refuse_owned_headers(
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<Vec<(HeaderName, HeaderValue)>, TransferError> {
    for (name, _) in &headers {
        if let Some((_, why)) = OWNED_HEADERS.iter().find(|(n, _)| name == *n) {
            return Err(TransferError::invalid(format!(
                "the {name} header cannot be set: {why}"
            )));
        }
    }
    Ok(headers)
}

impl Download {
    pub(crate) fn validate(&self) -> Result<Job, TransferError> {
        let url = parse_url(&self.url)?;
        let target = self
            .target
            .as_deref()
            .map(path::validate_target)
            .transpose()?;
        let expect_sha256 = match &self.expect_sha256 {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(hex.to_ascii_lowercase())
            }
            Some(hex) => {
                return Err(TransferError::invalid(format!(
                    "expected SHA-256 {hex:?} is not 64 hex digits"
                )))
            }
            None => None,
        };
        Ok(Job {
            request: HttpRequest {
                url,
                method: Method::GET,
                headers: parse_headers(&self.headers)?,
            },
            kind: JobKind::Download(Box::new(DownloadOptions {
                target,
                conflict: self.conflict,
                expect_size: self.expect_size,
                expect_sha256,
                resumable_only: self.resumable_only,
                on_cancel: self.on_cancel,
                on_failure: self.on_failure,
                segments: self.segments,
                fsync: self.fsync,
                mirrors: self
                    .mirrors
                    .iter()
                    .map(|m| {
                        parse_url(m).map_err(|e| match e {
                            TransferError::InvalidRequest(why) => {
                                TransferError::invalid(format!("mirror: {why}"))
                            }
                            other => other,
                        })
                    })
                    .collect::<Result<_, _>>()?,
            })),
            priority: self.priority,
            max_attempts: self.max_attempts,
            max_rate: self.max_rate,
            timeouts: self.timeouts,
            #[cfg(feature = "journal")]
            restore: None,
        })
    }
}

impl Upload {
    /// Everything but the file check, which needs I/O (`size`: the file's; a body in memory
    /// has its own).
    pub(crate) fn validate(&self, size: u64) -> Result<Job, TransferError> {
        Ok(Job {
            request: HttpRequest {
                url: parse_url(&self.url)?,
                method: self.method.clone(),
                headers: parse_headers(&self.headers)?,
            },
            kind: JobKind::Upload {
                size: match &self.body {
                    UploadBody::Bytes(b) => b.len() as u64,
                    UploadBody::File(_) => size,
                },
                body: self.body.clone(),
                max_body: self.max_body,
            },
            priority: self.priority,
            max_attempts: self.max_attempts,
            max_rate: self.max_rate,
            timeouts: self.timeouts,
            #[cfg(feature = "journal")]
            restore: None,
        })
    }
}

impl Fetch {
    pub(crate) fn validate(&self) -> Result<Job, TransferError> {
        let method = Some(&self.method)
            .filter(|m| is_token(m))
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or_else(|| TransferError::invalid(format!("invalid method {:?}", self.method)))?;
        Ok(Job {
            request: HttpRequest {
                url: parse_url(&self.url)?,
                method,
                headers: parse_headers(&self.headers)?,
            },
            kind: JobKind::Fetch {
                body: self.body.clone(),
                any_status: self.any_status,
                max_body: self.max_body,
            },
            priority: self.priority,
            max_attempts: self.max_attempts,
            max_rate: self.max_rate,
            timeouts: self.timeouts,
            #[cfg(feature = "journal")]
            restore: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "",
            "not a url",
            "ftp://127.0.0.1/x",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "http://",
            "http://user:pw@127.0.0.1/",
        ] {
            assert!(
                matches!(parse_url(bad), Err(TransferError::InvalidRequest(_))),
                "{bad:?} accepted"
            );
        }
        assert!(parse_url("http://127.0.0.1:1/x").is_ok());
    }

    #[test]
    fn refuses_bad_headers() {
        let d = Download::new("http://127.0.0.1/x").header("bad name", "v");
        assert!(matches!(
            d.validate(),
            Err(TransferError::InvalidRequest(_))
        ));
        let d = Download::new("http://127.0.0.1/x").header("x-ok", "line\nbreak");
        assert!(matches!(
            d.validate(),
            Err(TransferError::InvalidRequest(_))
        ));
        let f = Fetch::new("BAD METHOD", "http://127.0.0.1/x");
        assert!(matches!(
            f.validate(),
            Err(TransferError::InvalidRequest(_))
        ));
    }

    #[test]
    fn names_and_methods_are_tokens() {
        let tchar = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        for b in 0..=255u8 {
            let s = String::from_utf8_lossy(&[b]).into_owned();
            assert_eq!(is_token(&s), tchar.contains(&s) && b < 128, "byte {b:#x}");
        }
        for good in ["x", "Content-Type", "x-!#$%&'*+-.^_`|~", "GET", "M-SEARCH"] {
            assert!(is_token(good), "{good:?}");
        }
        for bad in ["", "x\"", "a b", "a:b", "(x)", "x,y", "x/y", "é", "x\u{7f}"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        for (name, value, ok) in [
            ("x-ok", "", true),
            ("x-ok", " spaced\tand tabbed ", true),
            ("x-ok", "~!\"#", true),
            ("x-\"", "v", false),
            ("x-ok", "cr\r", false),
            ("x-ok", "lf\n", false),
            ("x-ok", "nul\0", false),
            ("x-ok", "bell\u{7}", false),
            ("x-ok", "del\u{7f}", false),
            ("x-ok", "é", true),
        ] {
            let got = parse_headers(&[(name.into(), value.into())]);
            assert_eq!(got.is_ok(), ok, "{name:?}: {value:?}");
        }
    }

    #[test]
    fn a_kept_parse_answers_as_a_fresh_one() {
        let texts = [
            "http://127.0.0.1:1/x",
            "http://127.0.0.1:1/x",
            " http://127.0.0.1:1/x",
            "http://Example.COM/a b?q#f",
            "http://Example.COM/a b?q#f",
            "not a url",
            "http://127.0.0.1:1/x",
            "http://user:pw@127.0.0.1/",
            "http://user:pw@127.0.0.1/",
        ];
        for text in texts {
            let (kept, fresh) = (parse_url(text), parse_url_afresh(text));
            match (kept, fresh) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text:?}"),
                (a, b) => panic!("{text:?}: {a:?} vs {b:?}"),
            }
        }
    }
}
