//! HTTP proxies: which proxy a connection goes through, and opening it.
//!
//! awc has no proxy support, so the workers' TCP connector ([`wire::Connector`]) does it: for a
//! connection whose origin is not excluded by `NO_PROXY`, it connects to the proxy instead.
//! - `https`: it asks the proxy for a tunnel (`CONNECT host:port`, with `Proxy-Authorization`
//!   when the proxy URL has credentials) and hands the tunnel to awc, which runs TLS to the
//!   origin over it: SNI, the certificate checks and ALPN are the origin's, as without a proxy.
//! - `http`: awc writes every request line in origin form (`GET /path HTTP/1.1`); a plain-http
//!   proxy needs the absolute form. The connection rewrites each request line it carries to
//!   `GET http://host:port/path HTTP/1.1` and adds `Proxy-Authorization` after it (see
//!   [`wire::WireIo`]). awc pools connections by origin, so a connection to the proxy only
//!   ever carries requests for the one origin it was opened for.
//!
//! A proxy that cannot be reached, asks for credentials (`407`), or refuses the tunnel fails
//! the transfer with [`TransferError::Proxy`], which names the proxy, never the origin.
//!
//! [`wire::Connector`]: super::wire::Connector
//! [`wire::WireIo`]: super::wire::WireIo

use std::{
    fmt, io,
    net::IpAddr,
    pin::Pin,
    sync::Arc,
    task::{ready, Poll},
};

use actix_rt::net::TcpStream;
use actix_service::Service;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, ConnectorService as TcpConnector,
};
use awc::http::{header::HeaderValue, Uri};
use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use url::Url;

use crate::{
    error::{Cause, TransferError},
    redact,
};

/// The longest answer head to a `CONNECT` the engine reads.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// One proxy: where it is, how it is named, and the credentials it is sent.
#[derive(Clone)]
pub(crate) struct Proxy {
    /// Its host as a URL writes it (an IPv6 address in brackets) and port.
    host: String,
    port: u16,
    /// `Basic base64(user:password)`, when the proxy URL has credentials (marked sensitive).
    auth: Option<HeaderValue>,
    /// `http://host:port`: how errors and logs name it, without credentials.
    shown: Arc<str>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.shown)
            .field("credentials", &self.auth.is_some())
            .finish()
    }
}

impl Proxy {
    /// Parse `http://[user:password@]host[:port]` (`http://` may be left out, as curl allows;
    /// the port defaults to 80). Only plain-http proxies: the reason why not, as a sentence.
    pub(crate) fn parse(text: &str) -> Result<Proxy, String> {
        let text = text.trim();
        let url = if text.contains("://") {
            Url::parse(text)
        } else {
            Url::parse(&format!("http://{text}"))
        }
        .map_err(|e| format!("it is not a URL ({e})"))?;
        if url.scheme() != "http" {
            return Err(format!(
                "only http:// proxies are supported, not {}://",
                url.scheme()
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("it names no host")?
            .to_owned();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("a proxy URL has no path, query or fragment".into());
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let auth = if redact::has_credentials(&url) {
            let mut pair = percent_decode(url.username());
            pair.push(b':');
            pair.extend(percent_decode(url.password().unwrap_or_default()));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            let mut value = HeaderValue::from_str(&value).expect("base64 is a valid header value");
            value.set_sensitive(true);
            Some(value)
        } else {
            None
        };
        Ok(Proxy {
            shown: format!("http://{host}:{port}").into(),
            host,
            port,
            auth,
        })
    }

    /// How errors and logs name the proxy: `http://host:port`, never its credentials.
    pub(crate) fn shown(&self) -> &Arc<str> {
        &self.shown
    }

    /// The `Proxy-Authorization` header line (with its CRLF) to send, if any.
    pub(crate) fn auth_line(&self) -> Option<Vec<u8>> {
        self.auth.as_ref().map(|v| {
            let mut line = b"Proxy-Authorization: ".to_vec();
            line.extend_from_slice(v.as_bytes());
            line.extend_from_slice(b"\r\n");
            line
        })
    }

    /// A failure of this proxy (`status`: what it answered, if it did).
    fn failure(&self, status: Option<u16>, text: String, retryable: bool) -> Failure {
        Failure {
            proxy: self.shown.to_string(),
            status,
            text,
            retryable,
            source: None,
        }
    }

    /// The error for a `407` answer to a plain request: whether the proxy asks for
    /// credentials or refused them.
    pub(crate) fn refused_credentials(shown: &str, sent: bool, status: u16) -> TransferError {
        TransferError::Proxy {
            proxy: shown.to_owned(),
            status: Some(status),
            cause: credentials_text(sent, status).into(),
            retryable: false,
        }
    }

    /// The connect error for a proxy that did not open the way to `origin` within `timeout`
    /// (retried, as a connect timeout is).
    pub(crate) fn timed_out(
        &self,
        timeout: std::time::Duration,
        origin: &Uri,
        tunnel: bool,
    ) -> TcpConnectError {
        let what = if tunnel {
            let host = origin.host().unwrap_or_default();
            let port = origin.port_u16().unwrap_or(443);
            format!("open a tunnel to {host}:{port}")
        } else {
            "accept the connection".to_owned()
        };
        Failure {
            source: Some(io::ErrorKind::TimedOut.into()),
            ..self.failure(
                None,
                format!("did not {what} within the connect timeout ({timeout:?})"),
                true,
            )
        }
        .into_connect_error()
    }

    /// A TCP connection to the proxy; through it, with `tunnel`, a `CONNECT` tunnel to
    /// `origin` (an `https` origin, whose TLS then runs over it).
    pub(crate) async fn connect(
        &self,
        tcp: &TcpConnector,
        origin: &Uri,
        tunnel: bool,
    ) -> Result<TcpStream, TcpConnectError> {
        let target = ConnectInfo::new(format!("{}:{}", self.host, self.port));
        let connection = tcp.call(target).await.map_err(|e| {
            let (text, retryable, source) = match e {
                TcpConnectError::Io(e) => (format!("could not be reached: {e}"), true, Some(e)),
                TcpConnectError::Resolver(e) => {
                    let dns = super::dns_error(&*e);
                    (format!("could not be found: {e}"), dns.is_retryable(), None)
                }
                TcpConnectError::NoRecords => (
                    "could not be found: its name has no address".into(),
                    false,
                    None,
                ),
                other => (format!("could not be reached: {other}"), true, None),
            };
            Failure {
                source,
                ..self.failure(None, text, retryable)
            }
            .into_connect_error()
        })?;
        let (mut io, _) = connection.into_parts();
        let host = origin.host().unwrap_or_default();
        let port = origin.port_u16().unwrap_or(443);
        if !tunnel {
            tracing::debug!(proxy = %self.shown, host, port, "through a proxy");
            return Ok(io);
        }
        tracing::debug!(proxy = %self.shown, host, port, "tunnel through a proxy");
        let mut head =
            format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n").into_bytes();
        if let Some(line) = self.auth_line() {
            head.extend_from_slice(&line);
        }
        head.extend_from_slice(b"\r\n");
        let lost = |what: &str, e: io::Error| {
            let text = format!("failed while {what} CONNECT {host}:{port}: {e}");
            self.failure(None, text, true)
                .with_source(e)
                .into_connect_error()
        };
        write_all(&mut io, &head)
            .await
            .map_err(|e| lost("sending", e))?;
        let mut answer = Vec::with_capacity(512);
        let end = loop {
            if let Some(end) = head_end(&answer) {
                break end;
            }
            if answer.len() >= MAX_CONNECT_HEAD {
                return Err(self
                    .failure(
                        None,
                        format!("answered CONNECT {host}:{port} with an overlong head"),
                        false,
                    )
                    .into_connect_error());
            }
            let n = read_some(&mut io, &mut answer)
                .await
                .map_err(|e| lost("reading the answer to", e))?;
            if n == 0 {
                return Err(self
                    .failure(
                        None,
                        format!("closed the connection before answering CONNECT {host}:{port}"),
                        true,
                    )
                    .into_connect_error());
            }
        };
        let status = match status_of(&answer[..end]) {
            Some(status) => status,
            None => {
                return Err(self
                    .failure(
                        None,
                        format!("answered CONNECT {host}:{port} with something that is not HTTP"),
                        false,
                    )
                    .into_connect_error())
            }
        };
        match status.0 {
            200..=299 if end == answer.len() => Ok(io),
            200..=299 => Err(self
                .failure(
                    Some(status.0),
                    format!("sent bytes after its answer to CONNECT {host}:{port}"),
                    false,
                )
                .into_connect_error()),
            // Only the proxy answers a CONNECT: its 401 (tinyproxy's answer to wrong
            // credentials) is about credentials too.
            code @ (401 | 407) => Err(self
                .failure(
                    Some(code),
                    credentials_text(self.auth.is_some(), code),
                    false,
                )
                .into_connect_error()),
            code => {
                let retryable = TransferError::Server { status: code }.is_retryable();
                let text = format!("answered {} {} to CONNECT {host}:{port}", code, status.1);
                Err(self
                    .failure(Some(code), text.trim_end().to_owned(), retryable)
                    .into_connect_error())
            }
        }
    }
}

/// What a `401`/`407` answer means: the proxy asks for credentials, or refused them.
fn credentials_text(sent: bool, status: u16) -> String {
    let answer = match awc::http::StatusCode::from_u16(status) {
        Ok(code) => format!("{status} {}", code.canonical_reason().unwrap_or_default()),
        Err(_) => status.to_string(),
    };
    let answer = answer.trim_end();
    if sent {
        format!("refused the credentials ({answer})")
    } else {
        format!(
            "asks for credentials ({answer}); give them in the proxy URL \
             (http://user:password@host:port)"
        )
    }
}

/// Where the head in `bytes` ends (after its blank line), if it does.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = memchr::memmem::find(bytes, b"\r\n\r\n").map(|i| i + 4);
    let lf = memchr::memmem::find(bytes, b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The status code and reason of an `HTTP/1.x` head.
fn status_of(head: &[u8]) -> Option<(u16, String)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let rest = line.strip_prefix("HTTP/1.")?;
    let mut parts = rest.splitn(3, ' ');
    let _minor = parts.next()?;
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    let reason: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    (100..600).contains(&code).then_some((code, reason))
}

async fn write_all(io: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = futures::future::poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Read what is there (up to 1 KiB) onto `into`: the bytes read, 0 at the end.
async fn read_some(io: &mut TcpStream, into: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 1024];
    futures::future::poll_fn(|cx| {
        let mut buf = ReadBuf::new(&mut chunk);
        ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        into.extend_from_slice(buf.filled());
        Poll::Ready(Ok(buf.filled().len()))
    })
    .await
}

/// `%XX` sequences as bytes (a URL's user name and password are percent-encoded).
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A proxy's failure, carried through awc's connect error as the `io::Error`'s inner error,
/// and turned into [`TransferError::Proxy`] by [`error_of`].
#[derive(Debug)]
struct Failure {
    proxy: String,
    status: Option<u16>,
    text: String,
    retryable: bool,
    source: Option<io::Error>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the proxy {} {}", self.proxy, self.text)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl Failure {
    fn with_source(self, e: io::Error) -> Failure {
        Failure {
            source: Some(e),
            ..self
        }
    }

    fn into_connect_error(self) -> TcpConnectError {
        TcpConnectError::Io(io::Error::other(self))
    }
}

/// The proxy's failure under a connect error, if it is one.
pub(crate) fn error_of(e: io::Error) -> Result<TransferError, io::Error> {
    if !e.get_ref().is_some_and(|i| i.is::<Failure>()) {
        return Err(e);
    }
    let failure = e
        .into_inner()
        .and_then(|i| i.downcast::<Failure>().ok())
        .expect("checked above");
    let Failure {
        proxy,
        status,
        text,
        retryable,
        source,
    } = *failure;
    let cause = match source {
        Some(e) => Cause::with_error(text, e),
        None => Cause::new(text),
    };
    Ok(TransferError::Proxy {
        proxy,
        status,
        cause,
        retryable,
    })
}

// ----- which proxy -----

/// Hosts that are reached directly (`NO_PROXY`).
#[derive(Debug, Clone, Default)]
pub(crate) struct NoProxy {
    /// `*`: every host.
    all: bool,
    entries: Vec<(Pattern, Option<u16>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// A name and every name under it (`example.com` matches `a.example.com`, not
    /// `badexample.com`), lower-case, without leading or trailing dots.
    Domain(String),
    /// An address and prefix length (a single address: the full length).
    Net(IpAddr, u8),
}

impl NoProxy {
    /// Parse a `NO_PROXY` value as curl reads it: entries separated by commas (spaces
    /// around them ignored); `*` alone means every host; an entry is a host name or domain
    /// (a leading `.` or `*.` allowed), an IP address (IPv6 in brackets when a port follows)
    /// or a CIDR block, with an optional `:port`. Entries that are none of these are skipped.
    pub(crate) fn parse(text: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                out.all = true;
                continue;
            }
            match Self::entry(entry) {
                Some(parsed) => out.entries.push(parsed),
                None => tracing::debug!(entry, "a NO_PROXY entry that is not a host is skipped"),
            }
        }
        out
    }

    fn entry(entry: &str) -> Option<(Pattern, Option<u16>)> {
        let port = |p: &str| p.parse::<u16>().ok();
        // [v6]:port, [v6]
        if let Some(rest) = entry.strip_prefix('[') {
            let (addr, after) = rest.split_once(']')?;
            let ip: IpAddr = addr.parse().ok()?;
            let p = match after {
                "" => None,
                p => Some(port(p.strip_prefix(':')?)?),
            };
            return Some((Pattern::Net(ip, full(ip)), p));
        }
        // An address (a bare IPv6 one has colons of its own), or a CIDR block.
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return Some((Pattern::Net(ip, full(ip)), None));
        }
        if let Some((addr, bits)) = entry.split_once('/') {
            let ip: IpAddr = addr.parse().ok()?;
            let bits: u8 = bits.parse().ok().filter(|&b| b <= full(ip))?;
            return Some((Pattern::Net(ip, bits), None));
        }
        let (host, p) = match entry.rsplit_once(':') {
            Some((host, p)) => (host, Some(port(p)?)),
            None => (entry, None),
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some((Pattern::Net(ip, full(ip)), p));
        }
        let domain = host
            .strip_prefix("*.")
            .unwrap_or(host)
            .trim_start_matches('.')
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['/', '@', ' ', '*']) {
            return None;
        }
        Some((Pattern::Domain(domain), p))
    }

    /// Whether `host` (as a URI writes it: IPv6 in brackets) at `port` is reached directly.
    fn matches(&self, host: &str, port: u16) -> bool {
        if self.all {
            return true;
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        let name = bare.trim_end_matches('.');
        self.entries.iter().any(|(pattern, p)| {
            p.is_none_or(|p| p == port)
                && match (pattern, ip) {
                    (Pattern::Net(net, bits), Some(ip)) => in_net(ip, *net, *bits),
                    (Pattern::Net(..), None) => false,
                    (Pattern::Domain(d), _) => {
                        name.len() >= d.len()
                            && name[name.len() - d.len()..].eq_ignore_ascii_case(d)
                            && (name.len() == d.len()
                                || name.as_bytes()[name.len() - d.len() - 1] == b'.')
                    }
                }
        })
    }
}

fn full(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (ip >> shift) == (net >> shift)
}

/// The proxies the engine uses, chosen once at start.
#[derive(Debug, Clone, Default)]
pub(crate) struct Proxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    direct: NoProxy,
}

impl Proxies {
    /// The proxy a connection to `origin` goes through, if any.
    pub(crate) fn for_uri(&self, origin: &Uri) -> Option<&Proxy> {
        let https = origin.scheme_str() == Some("https");
        let proxy = if https { &self.https } else { &self.http }.as_ref()?;
        let port = origin.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = origin.host()?;
        (!self.direct.matches(host, port)).then_some(proxy)
    }
}

/// What the builder's proxy options collected.
#[derive(Clone, Default)]
pub(crate) struct ProxyOptions {
    /// `EngineBuilder::proxy`: for every request.
    explicit: Option<String>,
    /// `EngineBuilder::proxy_from_env`.
    from_env: bool,
}

impl fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("explicit", &self.explicit.as_deref().map(redact::raw))
            .field("from_env", &self.from_env)
            .finish()
    }
}

/// Why the proxy options keep the engine from starting: the builder method, and a sentence.
pub(crate) type Refused = (&'static str, String);

impl ProxyOptions {
    pub(crate) fn set(&mut self, url: String) {
        self.explicit = Some(url);
    }

    pub(crate) fn read_env(&mut self) {
        self.from_env = true;
    }

    /// The proxies to use, reading the environment through `var` (with `from_env`): `None`
    /// when every connection goes direct.
    ///
    /// An explicit proxy serves both schemes and wins over the environment's proxies;
    /// `NO_PROXY` applies to it too when the environment is read. Each variable is read in
    /// lower case first, then in upper case, as curl does; `HTTP_PROXY` in upper case is
    /// ignored when `REQUEST_METHOD` is set (a CGI program, whose `HTTP_*` variables the
    /// client's request headers set: "httpoxy"). Empty values count as unset.
    pub(crate) fn build(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Arc<Proxies>>, Refused> {
        let read = |lower: &str, upper: &str| {
            let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
            match set(lower) {
                Some(v) => Some((lower.to_owned(), v)),
                None if upper == "HTTP_PROXY" && var("REQUEST_METHOD").is_some() => None,
                None => set(upper).map(|v| (upper.to_owned(), v)),
            }
        };
        // `name`: the variable the URL came from.
        let parse = |option: &'static str, name: Option<&str>, text: &str| {
            Proxy::parse(text).map_err(|reason| {
                let shown = format!("{:?}", redact::raw(text).to_string());
                let what = match name {
                    Some(name) => format!("{name} {shown}"),
                    None => shown,
                };
                (
                    option,
                    format!("{what} is not a usable proxy URL: {reason}"),
                )
            })
        };
        let mut proxies = Proxies::default();
        if self.from_env {
            let all = read("all_proxy", "ALL_PROXY");
            for (https, lower, upper) in [
                (false, "http_proxy", "HTTP_PROXY"),
                (true, "https_proxy", "HTTPS_PROXY"),
            ] {
                if let Some((name, text)) = read(lower, upper).or_else(|| all.clone()) {
                    let proxy = parse("proxy_from_env", Some(&name), &text)?;
                    *if https {
                        &mut proxies.https
                    } else {
                        &mut proxies.http
                    } = Some(proxy);
                }
            }
            if let Some((_, text)) = read("no_proxy", "NO_PROXY") {
                proxies.direct = NoProxy::parse(&text);
            }
        }
        if let Some(text) = &self.explicit {
            let proxy = parse("proxy", None, text)?;
            proxies.http = Some(proxy.clone());
            proxies.https = Some(proxy);
        }
        if proxies.http.is_none() && proxies.https.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn from_env(pairs: &[(&str, &str)]) -> Result<Option<Arc<Proxies>>, Refused> {
        let mut options = ProxyOptions::default();
        options.read_env();
        options.build(env(pairs))
    }

    /// The proxy `url` goes through, by its shown name.
    fn via(proxies: &Option<Arc<Proxies>>, url: &str) -> Option<String> {
        proxies
            .as_ref()?
            .for_uri(&uri(url))
            .map(|p| p.shown().to_string())
    }

    #[test]
    fn proxy_urls_parse_with_credentials_and_default_port() {
        let p = Proxy::parse("http://us%40er:p%3Ass@proxy.test:3128").unwrap();
        assert_eq!(&*p.shown, "http://proxy.test:3128");
        let line = String::from_utf8(p.auth_line().unwrap()).unwrap();
        // base64("us@er:p:ss")
        assert_eq!(line, "Proxy-Authorization: Basic dXNAZXI6cDpzcw==\r\n");
        let bare = Proxy::parse("proxy.test").unwrap();
        assert_eq!(&*bare.shown, "http://proxy.test:80");
        assert!(bare.auth.is_none());
        let v6 = Proxy::parse("http://[::1]:8080/").unwrap();
        assert_eq!(&*v6.shown, "http://[::1]:8080");
        // Debug never shows the credentials, nor does the builder's.
        assert!(!format!("{p:?}").contains("dXNA"), "{p:?}");
        let builder = crate::Engine::builder().proxy("http://user:secret@proxy.test:3128");
        assert!(!format!("{builder:?}").contains("secret"), "{builder:?}");
    }

    #[test]
    fn bad_proxy_urls_are_refused_with_a_sentence_that_hides_credentials() {
        for (text, reason) in [
            ("https://proxy.test:443", "only http:// proxies"),
            ("socks5://proxy.test:1080", "only http:// proxies"),
            ("http://proxy.test:3128/path", "no path"),
            ("http://user:secret@", "not a URL"),
            ("http://proxy.test:99999", "not a URL"),
        ] {
            let mut options = ProxyOptions::default();
            options.set(text.into());
            let (option, message) = options.build(|_| None).unwrap_err();
            assert_eq!(option, "proxy");
            assert!(message.contains(reason), "{text}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
        let (option, message) = from_env(&[("HTTPS_PROXY", "ftp://u:secret@x")]).unwrap_err();
        assert_eq!(option, "proxy_from_env");
        assert!(message.starts_with("HTTPS_PROXY "), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn environment_variables_lower_case_first_then_upper_then_all_proxy() {
        let p = from_env(&[
            ("http_proxy", "http://lower:1"),
            ("HTTP_PROXY", "http://upper:1"),
            ("HTTPS_PROXY", "http://secure:2"),
        ])
        .unwrap();
        assert_eq!(via(&p, "http://a.test/").as_deref(), Some("http://lower:1"));
        assert_eq!(
            via(&p, "https://a.test/").as_deref(),
            Some("http://secure:2")
        );
        let p = from_env(&[("ALL_PROXY", "http://all:3"), ("https_proxy", "http://s:4")]).unwrap();
        assert_eq!(via(&p, "http://a.test/").as_deref(), Some("http://all:3"));
        assert_eq!(via(&p, "https://a.test/").as_deref(), Some("http://s:4"));
        // Empty counts as unset; nothing set: no proxies at all.
        assert!(from_env(&[("http_proxy", ""), ("NO_PROXY", "x")])
            .unwrap()
            .is_none());
        // A CGI program's HTTP_PROXY comes from its client's `Proxy:` header: ignored.
        let cgi = from_env(&[("HTTP_PROXY", "http://evil:1"), ("REQUEST_METHOD", "GET")]).unwrap();
        assert!(cgi.is_none());
        // Without proxy_from_env, the environment is never read.
        let options = ProxyOptions::default();
        assert!(options.build(|_| panic!("read")).unwrap().is_none());
    }

    #[test]
    fn an_explicit_proxy_wins_and_no_proxy_still_applies() {
        let mut options = ProxyOptions::default();
        options.set("http://mine:8".into());
        options.read_env();
        let p = options
            .build(env(&[
                ("https_proxy", "http://env:1"),
                ("no_proxy", "local.test"),
            ]))
            .unwrap();
        assert_eq!(via(&p, "https://a.test/").as_deref(), Some("http://mine:8"));
        assert_eq!(via(&p, "http://a.test/").as_deref(), Some("http://mine:8"));
        assert_eq!(via(&p, "http://local.test/"), None);
    }

    #[test]
    fn no_proxy_matches_domains_on_label_boundaries_addresses_and_ports() {
        let p = from_env(&[
            ("all_proxy", "http://p:1"),
            (
                "no_proxy",
                " example.com, .dot.test ,*.star.test,10.0.0.0/8, 192.168.1.5,[::1]:8080,\
                 ported.test:8443,2001:db8::1, not a host, LOCAL.",
            ),
        ])
        .unwrap();
        for (url, direct) in [
            ("http://example.com/", true),
            ("http://a.b.example.com/", true),
            ("http://EXAMPLE.com./", true),
            ("http://badexample.com/", false),
            ("http://example.com.evil.test/", false),
            ("http://dot.test/", true),
            ("http://x.dot.test/", true),
            ("http://x.star.test/", true),
            ("http://10.1.2.3/", true),
            ("http://11.1.2.3/", false),
            ("http://192.168.1.5:81/", true),
            ("http://192.168.1.6/", false),
            ("http://[::1]:8080/", true),
            ("http://[::1]:8081/", false),
            ("https://ported.test:8443/", true),
            ("https://ported.test/", false),
            ("http://[2001:db8::1]/", true),
            ("http://local/", true),
            ("http://other.test/", false),
        ] {
            assert_eq!(via(&p, url).is_none(), direct, "{url}");
        }
        let all = from_env(&[("all_proxy", "http://p:1"), ("NO_PROXY", "*")]).unwrap();
        assert_eq!(via(&all, "http://any.test/"), None);
    }

    #[test]
    fn connect_answers_are_read_as_status_lines() {
        assert_eq!(
            status_of(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Some((200, "Connection established".into()))
        );
        assert_eq!(status_of(b"HTTP/1.0 407 \r\n"), Some((407, "".into())));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2000 x\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nrest"), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\n"), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }

    #[test]
    fn a_proxy_failure_travels_through_an_io_error_and_comes_back_whole() {
        let proxy = Proxy::parse("http://p.test:3128").unwrap();
        let refused = Failure {
            source: Some(io::ErrorKind::ConnectionRefused.into()),
            ..proxy.failure(None, "could not be reached: refused".into(), true)
        };
        let TcpConnectError::Io(io) = refused.into_connect_error() else {
            unreachable!()
        };
        let error = error_of(io).unwrap();
        assert_eq!(error.kind(), crate::ErrorKind::Proxy);
        assert!(error.is_retryable());
        assert_eq!(
            error.to_string(),
            "the proxy http://p.test:3128 could not be reached: refused"
        );
        let source = std::error::Error::source(&error)
            .and_then(|e| e.downcast_ref::<io::Error>())
            .map(io::Error::kind);
        assert_eq!(source, Some(io::ErrorKind::ConnectionRefused));
        let denied = Proxy::refused_credentials("http://p.test:3128", true, 407);
        assert!(!denied.is_retryable());
        assert!(error_of(io::ErrorKind::ConnectionRefused.into()).is_err());
    }
}
