//! HTTP: sending a request through awc, following redirects ourselves, validating the response
//! framing, and mapping awc's errors to [`TransferError`].
//!
//! awc is configured (in `worker`) with redirects, decompression and its own timeouts off. This
//! module closes the holes that leaves open (see ARCHITECTURE.md): it follows redirects itself
//! (http/https only, credentials and ranges not carried across origins, bodies re-sent from the
//! source on 307/308), always asks for `Accept-Encoding: identity`, and refuses responses whose
//! body awc cannot frame.

pub(crate) mod client;

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
    error::{TimeoutPhase, TransferError},
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
pub(crate) async fn send(
    client: &Client,
    req: &HttpRequest,
    max_redirects: u32,
    body: &mut dyn FnMut() -> Option<BoxBody>,
    on_redirect: &dyn Fn(&Url),
) -> Result<Sent, TransferError> {
    let mut url = req.url.clone();
    let mut method = req.method.clone();
    let mut with_body = true;
    let mut hops = 0u32;
    loop {
        let cross_origin = !same_origin(&url, &req.url);
        let mut creq = client.request(method.clone(), url.as_str());
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
            creq = creq.insert_header((header::ACCEPT_ENCODING, "identity"));
        }
        let watch = wire::Watch::default();
        // Without a body, no `Content-Length: 0` either (awc's `send()` would add it).
        let sending = match if with_body { body() } else { None } {
            Some(b) => creq.send_body(b),
            None => creq.send_body(awc::body::None::new()),
        };
        let response = wire::watched(&watch, sending).await.map_err(send_error)?;
        let status = response.status();
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
        let next = url
            .join(location.trim())
            .map_err(|e| refused(format!("invalid location: {e}")))?;
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

/// Whether two http(s) URLs have the same origin (scheme, host, port), as `Url::origin`
/// compares them, without building the two `Origin`s (each allocates its host).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Response headers for events: lower-case names, lossy values, in received order.
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
pub(crate) fn send_error(err: SendRequestError) -> TransferError {
    match err {
        SendRequestError::Connect(ConnectError::Timeout) => {
            TransferError::Timeout(TimeoutPhase::Connect)
        }
        SendRequestError::Connect(e) => TransferError::Connect(e.to_string()),
        SendRequestError::Timeout => TransferError::Timeout(TimeoutPhase::Headers),
        SendRequestError::Url(e) => TransferError::InvalidRequest(e.to_string()),
        SendRequestError::Http(e) => TransferError::InvalidRequest(e.to_string()),
        SendRequestError::Send(e) => TransferError::Network(format!("sending the request: {e}")),
        SendRequestError::Response(e) => {
            use actix_http::error::ParseError;
            match e {
                ParseError::Io(e) => TransferError::Network(format!("reading the response: {e}")),
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
        SendRequestError::H2(e) => TransferError::Network(format!("HTTP/2: {e}")),
        SendRequestError::TunnelNotSupported | SendRequestError::Custom(..) => {
            TransferError::Internal(format!("awc refused the request: {err}"))
        }
        other => TransferError::Network(other.to_string()),
    }
}

/// Map awc's body error. `expected`/`received` turn a premature end into `Truncated`.
pub(crate) fn payload_error(
    err: PayloadError,
    expected: Option<u64>,
    received: u64,
) -> TransferError {
    match (Fault::of(&err), expected) {
        (Some(Fault::Excess { received }), Some(expected)) => {
            return TransferError::Truncated { expected, received }
        }
        (Some(fault), _) => return TransferError::Network(fault.to_string()),
        (None, _) => {}
    }
    match (err, expected) {
        (PayloadError::Incomplete(_), Some(expected)) => {
            TransferError::Truncated { expected, received }
        }
        (PayloadError::Incomplete(e), None) => TransferError::Network(format!(
            "the connection closed mid-body{}",
            e.map(|e| format!(": {e}")).unwrap_or_default()
        )),
        (PayloadError::Overflow, _) => TransferError::BadContent("payload overflow".into()),
        (e, _) => TransferError::Network(format!("reading the body: {e}")),
    }
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
    // A date validator parses as a date; an entity tag is quoted, so never does.
    let name = match validator.parse::<header::HttpDate>() {
        Ok(_) => header::LAST_MODIFIED,
        Err(_) => header::ETAG,
    };
    let mut named = headers.get_all(name);
    named.all(|v| v.as_bytes().trim_ascii() == validator.as_bytes())
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
}
