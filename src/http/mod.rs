//! HTTP: sending a request through awc, following redirects ourselves, validating the response
//! framing, and mapping awc's errors to [`TransferError`].
//!
//! awc is configured (in `worker`) with redirects, decompression and its own timeouts off. This
//! module closes the holes that leaves open (see ARCHITECTURE.md): it follows redirects itself
//! (http/https only, credentials and ranges not carried across origins, bodies re-sent from the
//! source on 307/308), always asks for `Accept-Encoding: identity`, and refuses responses whose
//! body awc cannot frame.

pub(crate) mod client;

pub(crate) mod proxy;

#[cfg(feature = "rustls")]
pub(crate) mod tls;

pub(crate) mod wire;

use std::time::{Duration, SystemTime};

use awc::{
    body::BoxBody,
    error::{ConnectError, PayloadError, SendRequestError},
    http::{
        header::{self, HeaderMap, HeaderName},
        Method, StatusCode, Version,
    },
    Client, ClientResponse,
};
use url::Url;

use crate::{
    error::{Cause, TimeoutPhase, TransferError},
    event::Headers,
    redact,
    request::HttpRequest,
};
use wire::Fault;

/// Headers that never follow a redirect to another origin.
const CROSS_ORIGIN_STRIPPED: [HeaderName; 5] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::RANGE,
    header::IF_RANGE,
];

/// A response, after redirects.
pub(crate) struct Sent {
    pub(crate) response: ClientResponse,
    /// The URL that produced `response`.
    pub(crate) url: Url,
    /// Whether the request that produced `response` carried a `Range` header (one is never
    /// carried to another origin).
    pub(crate) ranged: bool,
}

/// Send `req`, following up to `max_redirects` redirects.
///
/// `body` makes a fresh request body for each hop (an upload re-reads its file from the start
/// after a 307/308), or `None`. `on_redirect` is told each new URL before it is requested.
/// `on_answer` is shown every answer that is not the final one (a redirect whose location
/// carries no credentials, an interim answer, a proxy's 407), before it is followed or refused:
/// a failure after it can tell what the server said last. The final answer is in the `Sent`.
pub(crate) async fn send(
    client: &Client,
    req: &HttpRequest,
    max_redirects: u32,
    body: &mut dyn FnMut() -> Option<BoxBody>,
    on_redirect: &dyn Fn(&Url),
    on_answer: &dyn Fn(&ClientResponse),
) -> Result<Sent, TransferError> {
    let mut url = req.url.clone();
    let mut method = req.method.clone();
    let mut with_body = true;
    let mut hops = 0u32;
    loop {
        let cross_origin = !same_origin(&url, &req.url);
        let mut creq = match uri_of(&url) {
            Some(uri) => client.request(method.clone(), uri),
            // awc refuses it when the request is sent, with its own error.
            None => client.request(method.clone(), url.as_str()),
        };
        let mut user_set_encoding = false;
        let mut ranged = false;
        for (name, value) in &req.headers {
            if cross_origin && CROSS_ORIGIN_STRIPPED.contains(name) {
                continue;
            }
            ranged |= name == header::RANGE;
            if !with_body && (name == header::CONTENT_TYPE || name == header::CONTENT_LENGTH) {
                continue;
            }
            user_set_encoding |= name == header::ACCEPT_ENCODING;
            creq = creq.append_header((name.clone(), value.clone()));
        }
        if !user_set_encoding {
            creq = creq.insert_header((
                header::ACCEPT_ENCODING,
                header::HeaderValue::from_static("identity"),
            ));
        }
        let watch = wire::Watch::default();
        // Without a body, no `Content-Length: 0` either (awc's `send()` would add it).
        let sending = match if with_body { body() } else { None } {
            Some(b) => creq.send_body(b),
            None => creq.send_body(awc::body::None::new()),
        };
        let response = wire::watched(&watch, sending).await.map_err(send_error)?;
        let status = response.status();
        if status.is_informational() || status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            on_answer(&response);
        }
        if status.is_informational() {
            // awc returns an interim answer (103 Early Hints, an unasked 100 Continue) as if it
            // were final and cannot read past it. The real answer may still arrive on that
            // connection: it must never be read as the answer to another request.
            if let Some(exchange) = watch.take() {
                exchange.poison();
            }
            return Err(TransferError::BadContent(format!(
                "an interim {status} answer came before the final one, which cannot be read"
            )));
        }
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            // A plain-http request through a proxy: the proxy's answer, not the origin's.
            if let Some((proxy, sent)) = watch.proxy() {
                return Err(proxy::Proxy::refused_credentials(&proxy, sent, 407));
            }
        }
        let location = response.headers().get(header::LOCATION);
        if !is_redirect(status) || location.is_none() {
            // A final answer (a 3xx without Location too; the caller judges its status).
            let response = wire::check_body(response, watch.take());
            // What `Outcome::Completed::url` and the status show: refused at submit and here.
            debug_assert!(!redact::has_credentials(&url));
            return Ok(Sent {
                response,
                url,
                ranged,
            });
        }
        let location = location.expect("checked above");
        let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
        let next = url.join(location.trim());
        // Shown only when its location carries no credentials: those are never shown.
        if next.as_ref().is_ok_and(|n| !redact::has_credentials(n)) {
            on_answer(&response);
        }
        drop(response); // closes that connection; the body of a redirect is not read
        hops += 1;
        if hops > max_redirects {
            return Err(TransferError::TooManyRedirects {
                limit: max_redirects,
            });
        }
        // The error quotes the location without credentials or query.
        let refused = |reason: String| TransferError::RedirectRefused {
            location: redact::raw(&location).to_string(),
            reason,
        };
        let next = next.map_err(|e| refused(format!("invalid location: {e}")))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(refused(format!(
                "scheme {:?} is not http or https",
                next.scheme()
            )));
        }
        #[cfg(not(feature = "rustls"))]
        if next.scheme() == "https" {
            return Err(refused(
                "https needs the `rustls` feature of actix-transfer".into(),
            ));
        }
        // A server's credentials for another request are not ours to send, nor to show in the
        // final URL, the events and the logs.
        if redact::has_credentials(&next) {
            return Err(refused("the location carries credentials".into()));
        }
        if status == StatusCode::SEE_OTHER
            || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
        {
            if method != Method::HEAD {
                method = Method::GET;
            }
            with_body = false;
        }
        url = next;
        on_redirect(&url);
        tracing::debug!(url = %redact::url(&url), status = status.as_u16(), hops, "following redirect");
    }
}

/// A `206 Partial Content` is only an answer to a request that asked for a range: anything else
/// would complete a download with part of the resource.
pub(crate) fn check_partial(sent: &Sent) -> Result<(), TransferError> {
    if sent.response.status() == StatusCode::PARTIAL_CONTENT && !sent.ranged {
        return Err(unasked_partial());
    }
    Ok(())
}

/// The error for a `206 Partial Content` that no `Range` of ours asked for.
pub(crate) fn unasked_partial() -> TransferError {
    TransferError::BadContent("206 Partial Content to a request without Range".into())
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The number of body bytes the response announces: `Some(n)` from `Content-Length` (or `0` for
/// responses without a body), `None` when the body is framed by chunked encoding, HTTP/2, or an
/// HTTP/1.0 connection close.
///
/// Fails with `BadContent` for conflicting `Content-Length` values, for `Content-Length` beside
/// `Transfer-Encoding`, and for an HTTP/1.1 body delimited only by the connection close, which
/// awc silently reads as empty (actix/actix-web#2287).
pub(crate) fn body_length(
    response: &ClientResponse,
    method: &Method,
) -> Result<Option<u64>, TransferError> {
    let status = response.status();
    if method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
    {
        return Ok(Some(0));
    }
    let headers = response.headers();
    let length = content_length(headers)?;
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    match (length, chunked) {
        (Some(_), true) => Err(TransferError::BadContent(
            "both Content-Length and Transfer-Encoding are present".into(),
        )),
        (Some(n), false) => Ok(Some(n)),
        (None, true) => Ok(None),
        (None, false) => match response.version() {
            Version::HTTP_11 => Err(TransferError::BadContent(
                "the HTTP/1.1 response has neither Content-Length nor chunked encoding; a body \
                 delimited by closing the connection cannot be read reliably"
                    .into(),
            )),
            _ => Ok(None),
        },
    }
}

/// Every `Content-Length` value must agree (RFC 9110 §8.6).
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, TransferError> {
    let mut found: Option<u64> = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let text = value
            .to_str()
            .map_err(|_| TransferError::BadContent("unreadable Content-Length".into()))?;
        for part in text.split(',') {
            let n: u64 = part.trim().parse().map_err(|_| {
                TransferError::BadContent(format!("invalid Content-Length {text:?}"))
            })?;
            match found {
                Some(m) if m != n => {
                    return Err(TransferError::BadContent(format!(
                        "conflicting Content-Length values {m} and {n}"
                    )))
                }
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// `url` as the `Uri` awc sends to, or `None` where `Uri` refuses it. The last one made on this
/// thread is kept: requests to one URL in a row (a load test, a poller) parse it once. The
/// answer depends on the text alone, and a `Uri` is shared, not copied, when cloned.
fn uri_of(url: &Url) -> Option<awc::http::Uri> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Box<str>, awc::http::Uri)>> =
            const { std::cell::RefCell::new(None) };
    }
    let kept = LAST.with_borrow(|last| match last {
        Some((text, uri)) if **text == *url.as_str() => Some(uri.clone()),
        _ => None,
    });
    if kept.is_some() {
        return kept;
    }
    let uri = awc::http::Uri::try_from(url.as_str()).ok()?;
    LAST.set(Some((url.as_str().into(), uri.clone())));
    Some(uri)
}

/// Whether two http(s) URLs have the same origin (scheme, host, port), as `Url::origin`
/// compares them, without building the two `Origin`s (each allocates its host).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Response headers for events: lower-case names, lossy values, a repeated name's values in
/// received order (awc's map keeps no order between names).
pub(crate) fn headers_of(response: &ClientResponse) -> Headers {
    Headers::from_raw(|| {
        response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
    })
}

/// Map awc's request error. A request awc (or h2 under it) refuses to build or send is never
/// a network error: trying it again cannot help, so it maps to a kind that is not retried.
/// The error under a connect or network failure stays reachable as the error's source.
pub(crate) fn send_error(err: SendRequestError) -> TransferError {
    // A proxy's failure names the proxy, not the origin.
    let err = match err {
        SendRequestError::Connect(ConnectError::Io(e)) => match proxy::error_of(e) {
            Ok(proxied) => return proxied,
            Err(e) => SendRequestError::Connect(ConnectError::Io(e)),
        },
        other => other,
    };
    match err {
        SendRequestError::Connect(ConnectError::Timeout) => {
            TransferError::Timeout(TimeoutPhase::Connect)
        }
        SendRequestError::Connect(ConnectError::Io(e)) if is_tls(&e) => {
            TransferError::Tls(Cause::with_error(io_text(&e), e))
        }
        SendRequestError::Connect(ConnectError::Io(e)) => {
            TransferError::Connect(Cause::with_error(io_text(&e), e))
        }
        SendRequestError::Connect(ConnectError::Resolver(e)) => dns_error(&*e),
        SendRequestError::Connect(ConnectError::NoRecords) => TransferError::Dns {
            cause: "the name has no address".into(),
            temporary: false,
        },
        SendRequestError::Connect(ConnectError::H2(e)) => {
            TransferError::Connect(Cause::with_error(e.to_string(), e))
        }
        // The others hold no error to keep.
        SendRequestError::Connect(e) => TransferError::Connect(e.to_string().into()),
        SendRequestError::Timeout => TransferError::Timeout(TimeoutPhase::Headers),
        SendRequestError::Url(e) => TransferError::InvalidRequest(e.to_string()),
        SendRequestError::Http(e) => TransferError::InvalidRequest(e.to_string()),
        SendRequestError::Send(e) => TransferError::Network(Cause::with_error(
            format!("sending the request: {}", io_text(&e)),
            e,
        )),
        SendRequestError::Response(e) => {
            use actix_http::error::ParseError;
            match e {
                ParseError::Io(e) => TransferError::Network(Cause::with_error(
                    format!("reading the response: {}", io_text(&e)),
                    e,
                )),
                ParseError::Incomplete => TransferError::Network(
                    "the connection closed before a complete response".into(),
                ),
                other => TransferError::BadContent(format!("malformed response: {other}")),
            }
        }
        // Only the engine's own body source fails this way (the socket's errors are `Send`).
        SendRequestError::Body(e) => {
            TransferError::Internal(format!("the request body failed: {e}"))
        }
        // h2's error of its user, a request it will not send (no peer reason, no I/O).
        SendRequestError::H2(e) if e.reason().is_none() && !e.is_io() => {
            TransferError::InvalidRequest(format!("HTTP/2 refused the request: {e}"))
        }
        SendRequestError::H2(e) => {
            TransferError::Network(Cause::with_error(format!("HTTP/2: {e}"), e))
        }
        SendRequestError::TunnelNotSupported => {
            TransferError::Internal(format!("awc refused the request: {err}"))
        }
        // awc's own text for this one puts a Debug dump first.
        SendRequestError::Custom(e, _) => {
            TransferError::Internal(format!("awc refused the request: {e}"))
        }
        other => TransferError::Network(other.to_string().into()),
    }
}

/// Map awc's body error. `expected`/`received` turn a premature end into `Truncated`, bytes
/// past the announced length into `Overlong`. The error underneath stays reachable as the
/// error's source.
pub(crate) fn payload_error(
    err: PayloadError,
    expected: Option<u64>,
    received: u64,
) -> TransferError {
    match (Fault::of(&err), expected) {
        (Some(Fault::Excess { received }), Some(expected)) => {
            return TransferError::Overlong { expected, received }
        }
        (Some(fault), _) => {
            return TransferError::Network(Cause::with_error(fault.to_string(), fault))
        }
        (None, _) => {}
    }
    match (err, expected) {
        (PayloadError::Incomplete(_), Some(expected)) => {
            TransferError::Truncated { expected, received }
        }
        (PayloadError::Incomplete(None), None) => {
            TransferError::Network("the connection closed mid-body".into())
        }
        (PayloadError::Incomplete(Some(e)), None) => TransferError::Network(Cause::with_error(
            format!("the connection closed mid-body: {}", io_text(&e)),
            e,
        )),
        (PayloadError::Overflow, _) => TransferError::BadContent("payload overflow".into()),
        (PayloadError::Io(e), _) => TransferError::Network(Cause::with_error(
            format!("reading the body: {}", io_text(&e)),
            e,
        )),
        (e, _) => TransferError::Network(Cause::with_error(format!("reading the body: {e}"), e)),
    }
}

/// Whether a connect error is the TLS handshake's: rustls's error, as tokio-rustls wraps it.
fn is_tls(e: &std::io::Error) -> bool {
    #[cfg(feature = "rustls")]
    if e.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
        return true;
    }
    let _ = e;
    false
}

/// A resolver's failure. The system resolver (`getaddrinfo`, through std) reports a temporary
/// failure (`EAI_AGAIN`) only in its text, which std does not classify: its wording on glibc,
/// musl and macOS ("Temporary failure in name resolution", "Try again"), and
/// `WSATRY_AGAIN` on Windows, count as temporary, as does an OS error under the lookup
/// (`EAI_SYSTEM`: out of descriptors, say). The error is not `Send`: its copy (OS code, or kind
/// and text) is the source.
fn dns_error(e: &(dyn std::error::Error + 'static)) -> TransferError {
    let text = e.to_string();
    let Some(io) = e.downcast_ref::<std::io::Error>() else {
        return TransferError::Dns {
            cause: text.into(),
            temporary: false,
        };
    };
    let lower = text.to_ascii_lowercase();
    let temporary = lower.contains("temporary failure")
        || lower.contains("try again")
        || match io.raw_os_error() {
            // WSATRY_AGAIN; other WSA codes name a host that does not exist or has no address.
            Some(code) if cfg!(windows) => code == 11002,
            Some(_) => true,
            None => false,
        };
    let copy = match io.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(io.kind(), text.clone()),
    };
    TransferError::Dns {
        cause: Cause::with_error(text, copy),
        temporary,
    }
}

/// The text of an I/O error under an exchange, as a sentence. rustls writes some of its
/// errors with Debug (`invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`,
/// `received fatal alert: HandshakeFailure`): those read as words here.
fn io_text(e: &std::io::Error) -> String {
    #[cfg(feature = "rustls")]
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return debug_as_words(&tls.to_string());
    }
    e.to_string()
}

/// `text` with its Debug names as lower-case words: a CamelCase name (`InvalidContentType`:
/// "invalid content type"), nested tuple variants by their innermost name
/// (`Other(OtherError(CaUsedAsEndEntity))`: "ca used as end entity"), a struct variant by its
/// name alone (`NameContext { .. }`: "name context"), a tuple variant around a value by its
/// name and the value (`DnsName("a.test")`: `dns name "a.test"`, `IpAddress(10.0.0.1)`: "ip
/// address 10.0.0.1", as webpki lists a certificate's names). Other text is kept.
#[cfg_attr(not(feature = "rustls"), allow(dead_code))]
fn debug_as_words(text: &str) -> String {
    let b = text.as_bytes();
    let ident_end = |i: usize| {
        (i..b.len())
            .find(|&j| !b[j].is_ascii_alphanumeric())
            .unwrap_or(b.len())
    };
    // The end of the balanced group that opens at `i` with `open`, if it closes.
    let group_end = |i: usize, open: u8, close: u8| {
        let mut depth = 0usize;
        for (j, &c) in b.iter().enumerate().skip(i) {
            if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
        }
        None
    };
    let camel = |w: &[u8]| {
        w.windows(2)
            .any(|p| p[0].is_ascii_lowercase() && p[1].is_ascii_uppercase())
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let starts_word =
            b[i].is_ascii_uppercase() && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        if !starts_word {
            let next = (i + 1..=b.len())
                .find(|&j| text.is_char_boundary(j))
                .unwrap_or(b.len());
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let end = ident_end(i);
        let mut name = &b[i..end];
        let mut next = end;
        // The value a tuple variant holds, written after its name.
        let mut value = None;
        if b.get(end) == Some(&b'(') {
            // Tuple variants: `A(B(C))`, when nothing but names and parentheses is inside.
            if let Some(close) = group_end(end, b'(', b')') {
                let inner = &b[end..close];
                let names = inner.split(|c| *c == b'(' || *c == b')');
                if inner
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'(' || *c == b')')
                    && names
                        .filter(|w| !w.is_empty())
                        .all(|w| w[0].is_ascii_uppercase())
                {
                    let mut innermost = inner.split(|c| *c == b'(' || *c == b')');
                    name = innermost.rfind(|w| !w.is_empty()).unwrap_or(name);
                    next = close;
                } else if !inner[1..inner.len() - 1]
                    .iter()
                    .any(|c| b"(){}".contains(c))
                {
                    // `Name(value)`: one plain value (a quoted string, an address, a number).
                    value = Some(&text[end + 1..close - 1]);
                    next = close;
                }
            }
        } else if b[end..].starts_with(b" {") && camel(name) {
            if let Some(close) = group_end(end + 1, b'{', b'}') {
                next = close;
            }
        }
        if next == end && !camel(name) {
            out.push_str(&text[i..end]);
        } else {
            for (k, &c) in name.iter().enumerate() {
                let upper_after_lower =
                    k > 0 && c.is_ascii_uppercase() && name[k - 1].is_ascii_lowercase();
                let acronym_end = k > 0
                    && c.is_ascii_uppercase()
                    && name[k - 1].is_ascii_uppercase()
                    && name.get(k + 1).is_some_and(u8::is_ascii_lowercase);
                if upper_after_lower || acronym_end {
                    out.push(' ');
                }
                out.push(c.to_ascii_lowercase() as char);
            }
            if let Some(value) = value {
                out.push(' ');
                out.push_str(value);
            }
        }
        i = next;
    }
    out
}

/// The validator to pin a resume with (`If-Range`), if the response has a strong one: a range
/// asked for with a weak validator may be served from another version of the file, and spliced
/// onto the bytes on disk.
///
/// RFC 9110 §13.1.5: a client must not send a weak entity tag in `If-Range`, nor a date when
/// it has an entity tag for the representation, nor a date that is not strong. So: the ETag
/// if the response has one and it is not weak; with a weak (or unreadable, or repeated) ETag,
/// nothing. Without an ETag, `Last-Modified` if it is strong by §8.8.2.2: at least one second
/// before the response's `Date` (two versions written within the second it names would share
/// it). A response without `Date` gives a client no way to deduce that, so its date counts as
/// weak: §8.8.2.2 makes a date weak unless strength can be deduced.
pub(crate) fn validator(response: &ClientResponse) -> Option<String> {
    validator_of(response.headers())
}

fn validator_of(headers: &HeaderMap) -> Option<String> {
    let mut etags = headers.get_all(header::ETAG);
    if let Some(etag) = etags.next() {
        let etag = etag.to_str().ok()?.trim();
        let strong = etags.next().is_none() && !etag.is_empty() && !etag.starts_with("W/");
        return strong.then(|| etag.to_owned());
    }
    let modified = headers.get(header::LAST_MODIFIED)?.to_str().ok()?.trim();
    let date = headers.get(header::DATE)?.to_str().ok()?;
    let at = |v: &str| {
        v.trim()
            .parse::<header::HttpDate>()
            .ok()
            .map(SystemTime::from)
    };
    let strong = at(date)? >= at(modified)? + Duration::from_secs(1);
    strong.then(|| modified.to_owned())
}

/// Whether a `206` answering a request pinned by `validator` (from [`validator`]) is of that
/// version: its own validator of the same kind, if it names one, must be the same. A server
/// that honours `Range` but not `If-Range` answers with another version's bytes under that
/// version's ETag (or date).
pub(crate) fn same_version(headers: &HeaderMap, validator: &str) -> bool {
    let mut named = headers.get_all(validator_header(validator));
    named.all(|v| v.as_bytes().trim_ascii() == validator.as_bytes())
}

/// Whether `headers` name the version `validator` pins themselves (see [`same_version`]): what
/// a server other than the one that gave the validator (a mirror) must do, since not denying a
/// version is no word that it has that one.
pub(crate) fn names_version(headers: &HeaderMap, validator: &str) -> bool {
    headers.contains_key(validator_header(validator)) && same_version(headers, validator)
}

/// The header a validator comes from: a date parses as a date; an entity tag is quoted, so
/// never does.
fn validator_header(validator: &str) -> header::HeaderName {
    match validator.parse::<header::HttpDate>() {
        Ok(_) => header::LAST_MODIFIED,
        Err(_) => header::ETAG,
    }
}

/// Point `request` at `to`, dropping the headers that never go to another origin than the
/// request's own (credentials, and the caller's ranges): a request sent straight to where
/// a redirect led must not carry what the redirect would have stripped.
pub(crate) fn retarget(request: &mut HttpRequest, to: &Url) {
    if !same_origin(&request.url, to) {
        request
            .headers
            .retain(|(name, _)| !CROSS_ORIGIN_STRIPPED.contains(name));
    }
    request.url = to.clone();
}

/// A `Content-Range: bytes start-end/total` (total may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) total: Option<u64>,
}

pub(crate) fn content_range(response: &ClientResponse) -> Option<ContentRange> {
    parse_content_range(
        response
            .headers()
            .get(header::CONTENT_RANGE)?
            .to_str()
            .ok()?,
    )
}

fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some(ContentRange { start, end, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some(ContentRange {
                start: 100,
                end: 199,
                total: Some(1000)
            })
        );
        assert_eq!(parse_content_range("bytes 0-0/*").unwrap().total, None);
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes x-1/2",
            "bytes 0-1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    /// Response headers, as (name, value) pairs.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn headers(pairs: Pairs<'_>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                awc::http::header::HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_strong_validators_pin_a_range() {
        let (old, date) = (
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:38 GMT",
        );
        let cases: [(Pairs, Option<&str>); 9] = [
            (&[("etag", "\"a\"")], Some("\"a\"")),
            (
                &[("etag", "\"a\""), ("last-modified", old), ("date", date)],
                Some("\"a\""),
            ),
            // A weak tag is never sent, nor a date beside any tag (RFC 9110 §13.1.5).
            (&[("etag", "W/\"a\"")], None),
            (
                &[("etag", "W/\"a\""), ("last-modified", old), ("date", date)],
                None,
            ),
            (&[("etag", "\"a\""), ("etag", "\"b\"")], None),
            // A date a second or more before Date is strong (§8.8.2.2); equal, or no Date, weak.
            (&[("last-modified", old), ("date", date)], Some(old)),
            (&[("last-modified", old), ("date", old)], None),
            (&[("last-modified", date), ("date", old)], None),
            (&[("last-modified", old)], None),
        ];
        for (pairs, want) in cases {
            assert_eq!(validator_of(&headers(pairs)).as_deref(), want, "{pairs:?}");
        }
        assert_eq!(
            validator_of(&headers(&[("last-modified", "yesterday"), ("date", date)])),
            None
        );
    }

    #[test]
    fn a_206_of_another_version_is_told_apart() {
        let old = "Sun, 06 Nov 1994 08:49:37 GMT";
        let cases: [(Pairs, &str, bool); 6] = [
            (&[("etag", "\"a\"")], "\"a\"", true),
            (&[("etag", "\"b\"")], "\"a\"", false),
            (&[], "\"a\"", true),
            (&[("last-modified", old)], old, true),
            (
                &[("last-modified", "Mon, 07 Nov 1994 08:49:37 GMT")],
                old,
                false,
            ),
            // Pinned by a date: an ETag the first answer did not have says nothing of it.
            (&[("etag", "\"b\""), ("last-modified", old)], old, true),
        ];
        for (pairs, validator, same) in cases {
            assert_eq!(same_version(&headers(pairs), validator), same, "{pairs:?}");
        }
    }

    #[test]
    fn retargeting_to_another_origin_drops_credentials_and_ranges() {
        let request = |url: &str| HttpRequest {
            url: Url::parse(url).unwrap(),
            method: Method::GET,
            headers: vec![
                (header::AUTHORIZATION, "Bearer x".parse().unwrap()),
                (header::COOKIE, "a=b".parse().unwrap()),
                (header::RANGE, "bytes=0-".parse().unwrap()),
                (HeaderName::from_static("x-kept"), "1".parse().unwrap()),
            ],
        };
        let mut same = request("http://a.test/x");
        retarget(&mut same, &Url::parse("http://a.test/y").unwrap());
        assert_eq!(same.headers.len(), 4);
        let mut other = request("http://a.test/x");
        let to = Url::parse("http://a.test:81/y").unwrap();
        retarget(&mut other, &to);
        assert_eq!(other.url, to);
        let names: Vec<&str> = other.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn requests_awc_refuses_are_never_retryable() {
        let refused = [
            SendRequestError::Body("the source failed".into()),
            SendRequestError::TunnelNotSupported,
            SendRequestError::Custom("x".into(), Box::new("y")),
            SendRequestError::Url(awc::error::InvalidUrl::MissingHost),
        ];
        for err in refused {
            let what = err.to_string();
            let mapped = send_error(err);
            assert!(!mapped.is_retryable(), "{what} -> {mapped:?}");
        }
        let lost = SendRequestError::Send(std::io::ErrorKind::BrokenPipe.into());
        assert!(send_error(lost).is_retryable());
    }

    #[test]
    fn same_origin_agrees_with_url_origin() {
        let urls = [
            "http://a.test/x",
            "http://a.test:80/y",
            "http://A.TEST/z",
            "https://a.test/",
            "https://a.test:443/q",
            "http://a.test:8080/",
            "http://b.test/",
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://[0:0::1]:80/",
            "http://user@a.test/",
        ];
        for a in urls {
            for b in urls {
                let (a, b) = (Url::parse(a).unwrap(), Url::parse(b).unwrap());
                assert_eq!(same_origin(&a, &b), a.origin() == b.origin(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn debug_names_in_a_message_read_as_words() {
        for (text, words) in [
            (
                "invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
                "invalid peer certificate: ca used as end entity",
            ),
            (
                "received corrupt message of type InvalidContentType",
                "received corrupt message of type invalid content type",
            ),
            (
                "received fatal alert: HandshakeFailure",
                "received fatal alert: handshake failure",
            ),
            (
                "invalid peer certificate: UnsupportedSignatureAlgorithmContext { id: [1, 2] }",
                "invalid peer certificate: unsupported signature algorithm context",
            ),
            (
                "peer is incompatible: NoTLSVersion",
                "peer is incompatible: no tls version",
            ),
            // Plain text, acronyms and capitalised words are kept.
            (
                "HTTP/2: Connection refused (os error 111) é",
                "HTTP/2: Connection refused (os error 111) é",
            ),
            ("Expired", "Expired"),
            // webpki's list of a certificate's names.
            (
                "certificate not valid for name \"127.0.0.1\"; certificate is only valid for \
                 DnsName(\"example.test\"), IpAddress(10.0.0.1) or Unsupported(0x01)",
                "certificate not valid for name \"127.0.0.1\"; certificate is only valid for dns \
                 name \"example.test\", ip address 10.0.0.1 or unsupported 0x01",
            ),
            // Around a value that is not plain, only the plain tuple inside is taken apart.
            ("Wrap(Some(\"x\") and y)", "Wrap(some \"x\" and y)"),
        ] {
            assert_eq!(debug_as_words(text), words, "{text}");
        }
    }

    /// A rustls failure under a connection reads as a sentence, and stays the source.
    #[cfg(feature = "rustls")]
    #[test]
    fn a_tls_failure_reads_as_a_sentence_and_keeps_its_source() {
        #[derive(Debug)]
        struct CaUsedAsEndEntity;
        impl std::fmt::Display for CaUsedAsEndEntity {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{self:?}") // as webpki writes its errors
            }
        }
        impl std::error::Error for CaUsedAsEndEntity {}
        let other = rustls::OtherError(std::sync::Arc::new(CaUsedAsEndEntity));
        for (tls, text) in [
            (
                rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)),
                "TLS handshake failed: invalid peer certificate: ca used as end entity",
            ),
            (
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                "TLS handshake failed: invalid peer certificate: unknown issuer",
            ),
        ] {
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
            let error = send_error(SendRequestError::Connect(ConnectError::Io(io)));
            assert_eq!(error.to_string(), text);
            assert_eq!(error.kind(), crate::ErrorKind::Tls);
            assert!(!error.is_retryable(), "{error:?}");
            let source =
                std::error::Error::source(&error).and_then(|e| e.downcast_ref::<std::io::Error>());
            assert!(
                source
                    .and_then(|e| e.get_ref())
                    .is_some_and(|e| e.is::<rustls::Error>()),
                "{error:?}"
            );
        }
    }

    /// A name that does not exist is never retried; a resolver that got no answer is.
    #[test]
    fn dns_failures_are_retried_only_when_temporary() {
        use std::io;
        let gai = |text: &str| {
            let e: Box<dyn std::error::Error> = Box::new(io::Error::other(format!(
                "failed to lookup address information: {text}"
            )));
            send_error(SendRequestError::Connect(ConnectError::Resolver(e)))
        };
        for (text, temporary) in [
            ("Name or service not known", false),
            ("No address associated with hostname", false),
            ("nodename nor servname provided, or not known", false),
            ("Name does not resolve", false),
            ("Temporary failure in name resolution", true),
            ("Try again", true),
        ] {
            let error = gai(text);
            assert_eq!(error.kind(), crate::ErrorKind::Dns, "{text}");
            assert_eq!(error.is_retryable(), temporary, "{text}");
            assert_eq!(
                error.to_string(),
                format!(
                    "could not resolve the host name: failed to lookup address information: {text}"
                )
            );
            let source = std::error::Error::source(&error)
                .and_then(|e| e.downcast_ref::<io::Error>())
                .map(io::Error::kind);
            assert_eq!(source, Some(io::ErrorKind::Other), "{text}");
        }
        let none = send_error(SendRequestError::Connect(ConnectError::NoRecords));
        assert_eq!(none.kind(), crate::ErrorKind::Dns);
        assert!(!none.is_retryable());
        assert_eq!(
            none.to_string(),
            "could not resolve the host name: the name has no address"
        );
        // A refused connection stays a connect error, retried.
        let refused = send_error(SendRequestError::Connect(ConnectError::Io(
            io::ErrorKind::ConnectionRefused.into(),
        )));
        assert_eq!(refused.kind(), crate::ErrorKind::Connect);
        assert!(refused.is_retryable());
    }

    #[test]
    fn a_kept_uri_is_the_uri_of_the_text() {
        for text in [
            "http://127.0.0.1:1/x?q=1",
            "http://127.0.0.1:1/x?q=1",
            "http://a.test/y",
            "https://[::1]:8443/%20z",
            "http://127.0.0.1:1/x?q=1",
        ] {
            let url = Url::parse(text).unwrap();
            let fresh = awc::http::Uri::try_from(url.as_str()).unwrap();
            assert_eq!(uri_of(&url), Some(fresh), "{text}");
        }
    }
}
