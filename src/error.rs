//! Errors: why a transfer was refused or failed, and why a control message was refused.

use std::{fmt, io, sync::Arc};

/// Why a transfer was refused at submit, or why it failed.
///
/// One variant per cause, in the spirit of the WebExtensions `InterruptReason` list. Match on the
/// variant for details, or on [`TransferError::kind`] for a plain, copyable code. The error is
/// `Clone + Send + Sync + 'static`: it travels in events to any number of subscribers.
///
/// [`Display`](fmt::Display) is a sentence for people; [`source`](std::error::Error::source)
/// is the error underneath, when there was one (the `std::io::Error` of a failed file
/// operation or connection, awc's error of a failed exchange): downcast it to read its
/// [`io::ErrorKind`] or OS error code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferError {
    /// The request is malformed: bad URL, unsupported scheme, bad header, missing upload file.
    /// Refused at submit, before any I/O.
    InvalidRequest(String),

    /// The target file name is absolute, contains `..`, an empty or dot-edged component, or
    /// resolves outside the download directory. Refused before any request is sent.
    UnsafePath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The TCP connection could not be established (refused, unreachable, reset while
    /// connecting).
    Connect(Cause),

    /// A deadline passed; the phase says which one.
    Timeout(TimeoutPhase),

    /// The connection failed while the request or the body was in flight.
    Network(Cause),

    /// The server answered with a status that is not a success (and the transfer did not opt
    /// to accept any status).
    Server {
        /// The HTTP status code.
        status: u16,
    },

    /// The body ended before the length the server announced.
    Truncated {
        /// Bytes announced by `Content-Length` / `Content-Range`.
        expected: u64,
        /// Bytes actually received.
        received: u64,
    },

    /// The body went on past the length the server announced (retried as
    /// [`Truncated`](TransferError::Truncated) is: the next answer may be well framed).
    Overlong {
        /// Bytes announced by `Content-Length` / `Content-Range`.
        expected: u64,
        /// Bytes received when the excess was seen (more than `expected`).
        received: u64,
    },

    /// The response is malformed: conflicting lengths, an unframed body, a bad `Content-Range`.
    BadContent(String),

    /// More redirects than the configured limit (a loop ends here too).
    TooManyRedirects {
        /// The configured limit.
        limit: u32,
    },

    /// A redirect that the engine refuses to follow (unsupported scheme, credentials in the
    /// `Location`, missing `Location`, or a body that cannot be re-sent).
    RedirectRefused {
        /// The `Location` header as sent, without credentials (`***@` in their place), query
        /// or fragment.
        location: String,
        /// Why it was refused.
        reason: String,
    },

    /// An in-memory body passed its cap.
    BodyTooLarge {
        /// The cap in bytes.
        limit: u64,
    },

    /// A file operation failed; `kind` classifies the OS reason.
    File {
        /// Which class of failure.
        kind: FileErrorKind,
        /// What the engine was doing (`"creating"`, `"writing"`, ...).
        op: &'static str,
        /// The OS error (its text, and the `io::Error` itself when there was one).
        cause: Cause,
    },

    /// The downloaded body does not have the size the download expected
    /// ([`Download::expect_size`](crate::Download::expect_size)). The `.part` file is removed;
    /// nothing is renamed into place.
    SizeMismatch {
        /// The expected size in bytes.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },

    /// The downloaded bytes do not match the expected digest
    /// ([`Download::expect_sha256`](crate::Download::expect_sha256)). The `.part` file is
    /// removed; nothing is renamed into place.
    ChecksumMismatch {
        /// The digest: `"sha256"`.
        what: &'static str,
        /// The expected value.
        expected: String,
        /// What was received.
        actual: String,
    },

    /// A retry could only restart from zero, and the download asked to be resumable only
    /// (the server ignored the range, answered with a bad `Content-Range`, or has no validator).
    CannotResume(String),

    /// The engine was shut down while the transfer was queued or active. A download's `.part`
    /// file is kept.
    Shutdown,

    /// The journal (see [`EngineBuilder::journal`](crate::EngineBuilder::journal)) failed
    /// (disk full, I/O error) and the engine refuses new transfers: it could not promise to
    /// remember them. Transfers already running go on.
    Journal(Cause),

    /// The engine found one of its own invariants broken (a bug in the engine): a state it
    /// should never be in, or a request awc refused to build for a reason the engine should
    /// have ruled out.
    Internal(String),

    /// A part of the engine stopped before it finished its work (a bug in the engine, or in
    /// code it runs): a file job or a segment panicked, or the transfer's actor stopped
    /// without ending the transfer. Unlike [`Internal`](TransferError::Internal), nothing was
    /// found inconsistent; the work was lost.
    Panicked(String),

    /// The TLS handshake failed: the server's certificate is not trusted (unknown issuer,
    /// expired, not valid for the host name), or client and server share no protocol version
    /// or cipher suite. Never retried by default: the same server gives the same answer until
    /// someone changes its certificate or the engine's
    /// [roots](crate::EngineBuilder::add_root_certificate). The source is the `io::Error`
    /// holding the `rustls::Error`.
    Tls(Cause),

    /// The host name could not be resolved to an address.
    Dns {
        /// The resolver's error (its `io::Error`, kind and text, when it gave one).
        cause: Cause,
        /// Whether the resolver called the failure temporary (`EAI_AGAIN`: no answer from a
        /// name server): retried. A name that does not exist or has no address (`NXDOMAIN`,
        /// `EAI_NONAME`, `EAI_NODATA`), or a failure of a kind the resolver did not say, is
        /// not: asking again at once gets the same answer.
        temporary: bool,
    },

    /// A failure of an earlier transfer as the journal recorded it (see
    /// [`EngineBuilder::journal`](crate::EngineBuilder::journal)): its kind and its message,
    /// as they were. The details of the variant and the error underneath are not kept, so a
    /// [`Status`](crate::Status), [`List`](crate::List) or [`Wait`](crate::Wait) that answers
    /// from the journal, for a transfer whose record the engine no longer holds in memory,
    /// gives this instead. Match on [`kind`](TransferError::kind).
    Recorded {
        /// The kind of the original error.
        kind: ErrorKind,
        /// Its message (its `Display`), as it was.
        message: String,
    },
    /// The HTTP proxy (see [`EngineBuilder::proxy`](crate::EngineBuilder::proxy)) failed: it
    /// could not be reached or found, closed the connection, asked for credentials or refused
    /// them (`407`), or refused the `CONNECT` tunnel to the origin. The message names the
    /// proxy (never its credentials), not the origin.
    Proxy {
        /// The proxy, as `http://host:port`.
        proxy: String,
        /// The status the proxy answered, when it answered one (`407`; `403` or `502` to a
        /// `CONNECT`).
        status: Option<u16>,
        /// What happened (its `io::Error`, when there was one, is the error's source).
        cause: Cause,
        /// Whether trying again may help: a proxy that could not be reached or closed the
        /// connection, or a `CONNECT` answered with a status a server's answer would be
        /// retried for (`502`, `503`, `504`, ...). Never a `407`, nor a proxy name that does
        /// not exist.
        retryable: bool,
    },
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TransferError as E;
        match self {
            E::InvalidRequest(msg) => write!(f, "invalid request: {msg}"),
            E::UnsafePath { path, reason } => write!(f, "unsafe path {path:?}: {reason}"),
            E::Connect(cause) => write!(f, "could not connect: {cause}"),
            E::Timeout(phase) => write!(f, "timed out ({phase})"),
            E::Network(cause) => write!(f, "network error: {cause}"),
            E::Server { status } => write!(f, "server answered {status}"),
            E::Truncated { expected, received } => {
                write!(
                    f,
                    "body truncated: expected {expected} bytes, received {received}"
                )
            }
            E::Overlong { expected, received } => write!(
                f,
                "body longer than announced: expected {expected} bytes, received {received}"
            ),
            E::BadContent(msg) => write!(f, "bad content: {msg}"),
            E::TooManyRedirects { limit } => write!(f, "too many redirects (limit {limit})"),
            E::RedirectRefused { location, reason } => {
                write!(f, "redirect to {location:?} refused: {reason}")
            }
            E::BodyTooLarge { limit } => write!(f, "body larger than the limit of {limit} bytes"),
            E::File { kind, op, cause } => write!(f, "file error ({kind}) while {op}: {cause}"),
            E::SizeMismatch { expected, actual } => {
                write!(f, "size mismatch: expected {expected}, got {actual}")
            }
            E::ChecksumMismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what} mismatch: expected {expected}, got {actual}"),
            E::CannotResume(msg) => write!(f, "cannot resume: {msg}"),
            E::Shutdown => f.write_str("the engine shut down"),
            E::Journal(cause) => write!(f, "the journal refused the transfer: {cause}"),
            E::Internal(msg) | E::Panicked(msg) => write!(f, "internal error: {msg}"),
            E::Tls(cause) => write!(f, "TLS handshake failed: {cause}"),
            E::Dns { cause, .. } => write!(f, "could not resolve the host name: {cause}"),
            E::Recorded { message, .. } => f.write_str(message),
            E::Proxy { proxy, cause, .. } => write!(f, "the proxy {proxy} {cause}"),
        }
    }
}

impl std::error::Error for TransferError {
    /// The error underneath: the `io::Error` of a file operation or connection, awc's error
    /// of an exchange. Downcast it (`downcast_ref::<std::io::Error>()`) to read its kind.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TransferError::Connect(cause)
            | TransferError::Network(cause)
            | TransferError::File { cause, .. }
            | TransferError::Journal(cause)
            | TransferError::Tls(cause)
            | TransferError::Dns { cause, .. }
            | TransferError::Proxy { cause, .. } => cause.error(),
            _ => None,
        }
    }
}

impl TransferError {
    /// The plain code of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TransferError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            TransferError::UnsafePath { .. } => ErrorKind::UnsafePath,
            TransferError::Connect(_) => ErrorKind::Connect,
            TransferError::Timeout(_) => ErrorKind::Timeout,
            TransferError::Network(_) => ErrorKind::Network,
            TransferError::Server { .. } => ErrorKind::Server,
            TransferError::Truncated { .. } => ErrorKind::Truncated,
            TransferError::Overlong { .. } => ErrorKind::Overlong,
            TransferError::BadContent(_) => ErrorKind::BadContent,
            TransferError::TooManyRedirects { .. } => ErrorKind::TooManyRedirects,
            TransferError::RedirectRefused { .. } => ErrorKind::RedirectRefused,
            TransferError::BodyTooLarge { .. } => ErrorKind::BodyTooLarge,
            TransferError::File { .. } => ErrorKind::File,
            TransferError::SizeMismatch { .. } => ErrorKind::SizeMismatch,
            TransferError::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            TransferError::CannotResume(_) => ErrorKind::CannotResume,
            TransferError::Shutdown => ErrorKind::Shutdown,
            TransferError::Journal(_) => ErrorKind::Journal,
            TransferError::Internal(_) => ErrorKind::Internal,
            TransferError::Panicked(_) => ErrorKind::Panicked,
            TransferError::Tls(_) => ErrorKind::Tls,
            TransferError::Dns { .. } => ErrorKind::Dns,
            TransferError::Recorded { kind, .. } => *kind,
            TransferError::Proxy { .. } => ErrorKind::Proxy,
        }
    }

    /// Whether trying the same transfer again may succeed: connection failures, timeouts,
    /// temporary DNS failures, bodies shorter or longer than announced and `408`, `429`, `5xx`
    /// statuses (except `501`, `505`). Never a TLS failure (an untrusted certificate, a name
    /// it does not cover) nor a host name that does not exist. A proxy's failure as its
    /// `retryable` says (never a `407`).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransferError::Dns { temporary, .. } => *temporary,
            TransferError::Proxy { retryable, .. } => *retryable,
            TransferError::Connect(_)
            | TransferError::Timeout(_)
            | TransferError::Network(_)
            | TransferError::Truncated { .. }
            | TransferError::Overlong { .. } => true,
            TransferError::Server { status } => {
                matches!(*status, 408 | 429)
                    || ((500..600).contains(status) && !matches!(*status, 501 | 505))
            }
            TransferError::File { kind, .. } => *kind == FileErrorKind::Transient,
            _ => false,
        }
    }

    /// Whether this is a timeout of any phase.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TransferError::Timeout(_))
    }

    /// The HTTP status, for [`TransferError::Server`].
    pub fn status(&self) -> Option<u16> {
        match self {
            TransferError::Server { status } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        TransferError::InvalidRequest(msg.into())
    }

    pub(crate) fn unsafe_path(path: impl Into<String>, reason: impl Into<String>) -> Self {
        TransferError::UnsafePath {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A failed file operation, keeping the `io::Error` as its source.
    pub(crate) fn file(op: &'static str, err: io::Error) -> Self {
        TransferError::File {
            kind: FileErrorKind::from_io(&err),
            op,
            cause: Cause::io(err),
        }
    }

    /// A failed file operation whose `io::Error` must go on elsewhere too: the source is a
    /// copy that keeps its OS code (so its kind and text), or else its kind and text.
    pub(crate) fn file_copy(op: &'static str, err: &io::Error) -> Self {
        let copy = match err.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(err.kind(), err.to_string()),
        };
        TransferError::file(op, copy)
    }
}

/// The error underneath a [`TransferError`]: its text, as the error's message shows it, and
/// the error itself when there was one (reachable through
/// [`TransferError`]'s [`source`](std::error::Error::source)).
///
/// Cheap to clone (the error is shared). Two causes are equal when their texts are, and so are
/// the [`io::ErrorKind`]s of their errors, if any: an error from the OS and one built from a
/// string with the same text are equal only if they have the same kind.
#[derive(Clone)]
pub struct Cause {
    text: String,
    error: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Cause {
    /// A cause known only by its text (no error underneath).
    pub fn new(text: impl Into<String>) -> Self {
        Cause {
            text: text.into(),
            error: None,
        }
    }

    /// A cause with `text` for people and `error` underneath.
    pub(crate) fn with_error(
        text: impl Into<String>,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Cause {
            text: text.into(),
            error: Some(Arc::new(error)),
        }
    }

    /// An `io::Error`, with its own text.
    pub(crate) fn io(err: io::Error) -> Self {
        Cause::with_error(err.to_string(), err)
    }

    /// The text, as the error's message shows it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The error underneath, if there was one.
    pub fn error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }

    /// The `io::Error` underneath, if the error is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.error()?.downcast_ref::<io::Error>()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Cause");
        d.field("text", &self.text);
        if let Some(error) = &self.error {
            d.field("error", error);
        }
        d.finish()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        let kind = |c: &Cause| c.io_error().map(io::Error::kind);
        self.text == other.text && kind(self) == kind(other)
    }
}

impl Eq for Cause {}

impl From<String> for Cause {
    fn from(text: String) -> Self {
        Cause::new(text)
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Self {
        Cause::new(text)
    }
}

/// Declares [`ErrorKind`] and its snake_case names in one list, so that the name `as_str`
/// gives and the name serde writes and reads cannot drift apart.
macro_rules! error_kinds {
    ($($(#[$doc:meta])* $kind:ident => $name:literal,)*) => {
        /// The plain code of a [`TransferError`]: what to match on or log. With the `serde`
        /// feature it serialises as its [`as_str`](ErrorKind::as_str) name (`"truncated"`,
        /// `"too_many_redirects"`, ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $($(#[$doc])* $kind,)*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            #[cfg_attr(not(any(test, feature = "serde")), allow(dead_code))]
            pub(crate) const ALL: &'static [ErrorKind] = &[$(ErrorKind::$kind,)*];

            /// Every name, in declaration order.
            #[cfg_attr(not(any(test, feature = "serde")), allow(dead_code))]
            const NAMES: &'static [&'static str] = &[$($name,)*];

            /// The snake_case name, as serialised.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$kind => $name,)*
                }
            }
        }
    };
}

error_kinds! {
    /// [`TransferError::InvalidRequest`].
    InvalidRequest => "invalid_request",
    /// [`TransferError::UnsafePath`].
    UnsafePath => "unsafe_path",
    /// [`TransferError::Connect`].
    Connect => "connect",
    /// [`TransferError::Timeout`].
    Timeout => "timeout",
    /// [`TransferError::Network`].
    Network => "network",
    /// [`TransferError::Server`].
    Server => "server",
    /// [`TransferError::Truncated`].
    Truncated => "truncated",
    /// [`TransferError::BadContent`].
    BadContent => "bad_content",
    /// [`TransferError::TooManyRedirects`].
    TooManyRedirects => "too_many_redirects",
    /// [`TransferError::RedirectRefused`].
    RedirectRefused => "redirect_refused",
    /// [`TransferError::BodyTooLarge`].
    BodyTooLarge => "body_too_large",
    /// [`TransferError::File`].
    File => "file",
    /// [`TransferError::ChecksumMismatch`].
    ChecksumMismatch => "checksum_mismatch",
    /// [`TransferError::CannotResume`].
    CannotResume => "cannot_resume",
    /// [`TransferError::Shutdown`].
    Shutdown => "shutdown",
    /// [`TransferError::Internal`].
    Internal => "internal",
    /// [`TransferError::Overlong`].
    Overlong => "overlong",
    /// [`TransferError::SizeMismatch`].
    SizeMismatch => "size_mismatch",
    /// [`TransferError::Panicked`].
    Panicked => "panicked",
    /// [`TransferError::Journal`].
    Journal => "journal",
    /// [`TransferError::Tls`].
    Tls => "tls",
    /// [`TransferError::Dns`].
    Dns => "dns",
    /// [`TransferError::Proxy`].
    Proxy => "proxy",
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which deadline passed, for [`TransferError::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TimeoutPhase {
    /// Establishing the TCP/TLS connection.
    Connect,
    /// Waiting for the response headers after the request was sent.
    Headers,
    /// No byte moved in either direction for the idle timeout, during a body.
    Idle,
    /// The optional overall deadline of the transfer, every attempt and backoff included
    /// ([`total_timeout`](crate::EngineBuilder::total_timeout)). Never retried.
    Total,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutPhase::Connect => "connect",
            TimeoutPhase::Headers => "response headers",
            TimeoutPhase::Idle => "idle",
            TimeoutPhase::Total => "total",
        })
    }
}

/// The class of a [`TransferError::File`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum FileErrorKind {
    /// Permission denied or a read-only file system.
    AccessDenied,
    /// The disk (or quota) is full.
    NoSpace,
    /// A path component is too long.
    NameTooLong,
    /// The target exists and the conflict policy is `Fail`.
    AlreadyExists,
    /// The target's `.part` file belongs to another download that is still running (in this
    /// process or another), or it was replaced or removed while this download wrote it: a
    /// `.part` file is only ever written, and moved into place, by the download that created it.
    InUse,
    /// The download directory, or a directory on the way to the target, is not a directory.
    NotADirectory,
    /// The file to upload, or a directory, does not exist.
    NotFound,
    /// Interrupted or would-block: trying again may work.
    Transient,
    /// Anything else.
    Failed,
}

impl FileErrorKind {
    pub(crate) fn from_io(err: &io::Error) -> Self {
        use io::ErrorKind as K;
        match err.kind() {
            K::PermissionDenied | K::ReadOnlyFilesystem => FileErrorKind::AccessDenied,
            K::StorageFull | K::QuotaExceeded => FileErrorKind::NoSpace,
            K::InvalidFilename => FileErrorKind::NameTooLong,
            K::AlreadyExists => FileErrorKind::AlreadyExists,
            K::NotFound => FileErrorKind::NotFound,
            K::NotADirectory => FileErrorKind::NotADirectory,
            K::Interrupted | K::WouldBlock | K::TimedOut => FileErrorKind::Transient,
            _ => match err.raw_os_error() {
                Some(28) | Some(122) => FileErrorKind::NoSpace, // ENOSPC, EDQUOT
                Some(36) => FileErrorKind::NameTooLong,         // ENAMETOOLONG
                Some(20) => FileErrorKind::NotADirectory,       // ENOTDIR
                Some(13) | Some(1) | Some(30) => FileErrorKind::AccessDenied,
                _ => FileErrorKind::Failed,
            },
        }
    }
}

impl fmt::Display for FileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileErrorKind::AccessDenied => "access denied",
            FileErrorKind::NoSpace => "no space",
            FileErrorKind::NameTooLong => "name too long",
            FileErrorKind::AlreadyExists => "already exists",
            FileErrorKind::InUse => "in use",
            FileErrorKind::NotADirectory => "not a directory",
            FileErrorKind::NotFound => "not found",
            FileErrorKind::Transient => "transient",
            FileErrorKind::Failed => "failed",
        })
    }
}

/// How a transfer ended: the payload of [`ControlError::NotActive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum EndState {
    /// Every byte arrived and was verified.
    Completed,
    /// It failed; see its `Ended` event for the error.
    Failed,
    /// It was cancelled.
    Cancelled,
}

impl fmt::Display for EndState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndState::Completed => "completed",
            EndState::Failed => "failed",
            EndState::Cancelled => "cancelled",
        })
    }
}

/// Why a control message ([`Cancel`](crate::Cancel), [`Pause`](crate::Pause),
/// [`Resume`](crate::Resume), [`SetRate`](crate::SetRate), and the [`EngineHandle`]'s control
/// methods) was refused. (Named `CancelError` before it served every control message.)
///
/// [`EngineHandle`]: crate::EngineHandle
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ControlError {
    /// The transfer already ended, in the given way; nothing was changed.
    #[error("transfer is not active: already {0}")]
    NotActive(EndState),
    /// This engine never issued that id, or no longer remembers it: it was erased, or it
    /// ended longer ago than the last [`keep_ended`](crate::EngineBuilder::keep_ended) endings.
    #[error("unknown transfer id")]
    Unknown,
    /// The engine has stopped (answered by an [`EngineHandle`](crate::EngineHandle)).
    #[error("the engine has stopped")]
    Stopped,
}

/// Why [`Erase`](crate::Erase) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum EraseError {
    /// The transfer has not ended: cancel it first.
    #[error("transfer is still active")]
    Active,
    /// This engine never issued that id (or it was erased already).
    #[error("unknown transfer id")]
    Unknown,
    /// The engine has stopped (answered by an [`EngineHandle`](crate::EngineHandle)).
    #[error("the engine has stopped")]
    Stopped,
}

#[cfg(feature = "serde")]
mod serde_impl {
    use super::{ErrorKind, TransferError};
    use serde::de::{self, Deserialize, Deserializer};
    use serde::ser::{Serialize, SerializeStruct, Serializer};

    /// As its [`ErrorKind::as_str`] name (a unit variant, as a derive would write it).
    impl Serialize for ErrorKind {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_unit_variant("ErrorKind", *self as u32, self.as_str())
        }
    }

    /// From its [`ErrorKind::as_str`] name.
    impl<'de> Deserialize<'de> for ErrorKind {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            ErrorKind::ALL
                .iter()
                .copied()
                .find(|k| k.as_str() == name)
                .ok_or_else(|| de::Error::unknown_variant(&name, ErrorKind::NAMES))
        }
    }

    /// Serialised as `{"kind": "<snake_case>", "message": "<Display>"}` plus the variant's
    /// details: `status`; `expected`/`received` (`Truncated`, `Overlong`); `expected`/`actual`
    /// (`SizeMismatch`); `phase` (`"connect"`, `"headers"`, `"idle"`,
    /// `"total"`); `file_kind` and `op`; `limit`; `location`; `path`; `temporary` (`Dns`);
    /// `proxy` and `status` (`Proxy`).
    impl Serialize for TransferError {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("TransferError", 4)?;
            st.serialize_field("kind", &self.kind())?;
            st.serialize_field("message", &self.to_string())?;
            match self {
                TransferError::Server { status } => st.serialize_field("status", status)?,
                TransferError::Truncated { expected, received }
                | TransferError::Overlong { expected, received } => {
                    st.serialize_field("expected", expected)?;
                    st.serialize_field("received", received)?;
                }
                TransferError::SizeMismatch { expected, actual } => {
                    st.serialize_field("expected", expected)?;
                    st.serialize_field("actual", actual)?;
                }
                TransferError::Timeout(phase) => st.serialize_field("phase", phase)?,
                TransferError::File { kind, op, .. } => {
                    st.serialize_field("file_kind", kind)?;
                    st.serialize_field("op", op)?;
                }
                TransferError::TooManyRedirects { limit } => st.serialize_field("limit", limit)?,
                TransferError::BodyTooLarge { limit } => st.serialize_field("limit", limit)?,
                TransferError::RedirectRefused { location, .. } => {
                    st.serialize_field("location", location)?
                }
                TransferError::UnsafePath { path, .. } => st.serialize_field("path", path)?,
                TransferError::Dns { temporary, .. } => {
                    st.serialize_field("temporary", temporary)?
                }
                TransferError::Proxy { proxy, status, .. } => {
                    st.serialize_field("proxy", proxy)?;
                    st.serialize_field("status", status)?;
                }
                _ => {}
            }
            st.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_are_classified() {
        let class = |e: io::Error| FileErrorKind::from_io(&e);
        assert_eq!(
            class(io::Error::from_raw_os_error(28)),
            FileErrorKind::NoSpace
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(122)),
            FileErrorKind::NoSpace
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(30)),
            FileErrorKind::AccessDenied
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(13)),
            FileErrorKind::AccessDenied
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(36)),
            FileErrorKind::NameTooLong
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(2)),
            FileErrorKind::NotFound
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(20)),
            FileErrorKind::NotADirectory
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(4)),
            FileErrorKind::Transient
        );
        assert_eq!(
            class(io::Error::from_raw_os_error(5)),
            FileErrorKind::Failed
        ); // EIO
    }

    /// Debug fragments a message must never carry.
    const DEBUG_FRAGMENTS: [&str; 4] = ["Some(", "Os {", "Custom {", "kind:"];

    #[test]
    fn a_file_error_keeps_its_io_error_as_the_source() {
        use std::error::Error as _;
        let error = TransferError::file("writing", io::Error::from_raw_os_error(28));
        let io = error.source().and_then(|e| e.downcast_ref::<io::Error>());
        assert_eq!(io.map(io::Error::kind), Some(io::ErrorKind::StorageFull));
        assert_eq!(io.and_then(io::Error::raw_os_error), Some(28));
        let message = error.to_string();
        assert!(
            message.starts_with("file error (no space) while writing: "),
            "{message}"
        );
        for fragment in DEBUG_FRAGMENTS {
            assert!(!message.contains(fragment), "{message}");
        }

        // A copy (for an error that must also go on elsewhere) keeps the OS code too, and an
        // error without one keeps its kind and text.
        let copy = TransferError::file_copy("reading", &io::Error::from_raw_os_error(5));
        let io = copy.source().and_then(|e| e.downcast_ref::<io::Error>());
        assert_eq!(io.and_then(io::Error::raw_os_error), Some(5));
        let custom = io::Error::new(io::ErrorKind::TimedOut, "slow disk");
        let copy = TransferError::file_copy("reading", &custom);
        let io = copy.source().and_then(|e| e.downcast_ref::<io::Error>());
        assert_eq!(io.map(io::Error::kind), Some(io::ErrorKind::TimedOut));
        assert_eq!(
            copy.to_string(),
            "file error (transient) while reading: slow disk"
        );
    }

    #[test]
    fn connect_and_network_errors_keep_their_io_error_as_the_source() {
        use std::error::Error as _;
        for (error, kind) in [
            (
                TransferError::Connect(Cause::io(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                ))),
                io::ErrorKind::ConnectionRefused,
            ),
            (
                TransferError::Network(Cause::with_error(
                    "reading the body: connection reset",
                    io::Error::from(io::ErrorKind::ConnectionReset),
                )),
                io::ErrorKind::ConnectionReset,
            ),
        ] {
            let io = error.source().and_then(|e| e.downcast_ref::<io::Error>());
            assert_eq!(io.map(io::Error::kind), Some(kind), "{error:?}");
            for fragment in DEBUG_FRAGMENTS {
                assert!(!error.to_string().contains(fragment), "{error}");
            }
        }
        // Made from text alone: no source, and equal to the same text only.
        let text = TransferError::Connect("refused".into());
        assert!(text.source().is_none());
        assert_eq!(text, TransferError::Connect(Cause::new("refused")));
        assert_ne!(text, TransferError::Connect(Cause::new("reset")));
    }

    #[test]
    fn a_cause_compares_by_text_and_io_kind_and_clones_its_error() {
        let refused = || Cause::with_error("no", io::Error::from(io::ErrorKind::ConnectionRefused));
        let reset = Cause::with_error("no", io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(refused(), refused());
        assert_ne!(refused(), reset);
        assert_ne!(refused(), Cause::new("no"));
        let copy = refused().clone();
        assert_eq!(
            copy.io_error().map(io::Error::kind),
            Some(io::ErrorKind::ConnectionRefused)
        );
        fn send_sync_static<T: Clone + Send + Sync + 'static>() {}
        send_sync_static::<TransferError>();
    }

    #[cfg(feature = "serde")]
    #[test]
    fn every_kind_serialises_as_its_name_and_back() {
        for kind in ErrorKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::json!(kind.as_str()));
            assert_eq!(serde_json::from_value::<ErrorKind>(json).unwrap(), *kind);
        }
        let names: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len(), "two kinds share a name");
        let unknown = serde_json::from_value::<ErrorKind>(serde_json::json!("nope")).unwrap_err();
        assert!(
            unknown.to_string().contains("unknown variant `nope`"),
            "{unknown}"
        );
    }
}
