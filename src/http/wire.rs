//! Wire checks: what awc cannot tell us about the bytes of a plain-HTTP/1 connection.
//!
//! awc ends a chunked body that the peer cut with a FIN exactly as it ends a complete one, and
//! it silently drops bytes sent past a `Content-Length` before it returns the connection to its
//! pool (see ARCHITECTURE.md). Both facts are visible on the socket, so every connection the
//! workers open is a [`WireIo`]: a `TcpStream` that watches its own bytes. For each exchange it
//! finds where the response head ends, counts the bytes that came after it, and notes whether
//! the peer closed the connection.
//!
//! The transfer that gets a response learns which connection carried it through a [`Watch`]:
//! [`watched`] installs the watch in a thread-local around every poll of the request future,
//! and the connection that completes a response head during such a poll registers itself there.
//! A worker thread polls one future at a time, so no other transfer's connection can register.
//! [`check_body`] then wraps the response body: when awc says the body ended, it fails with a
//! [`Fault`] if the peer closed before a chunked body's last chunk or sent more than the
//! `Content-Length`; such a connection is also *poisoned*, so the pool drops it instead of
//! reading those extra bytes as the next response.
//!
//! Over `https` the socket carries TLS records, so nothing is inspected (TLS itself reports a
//! FIN without `close_notify` as an error); see the crate docs' known limits.
//!
//! Through a proxy (see `http::proxy`), the connector connects to the proxy instead: an https
//! connection is a `CONNECT` tunnel, and a plain-http connection rewrites each request line it
//! carries to the absolute form a proxy needs ([`Absolute`]).

use std::{
    cell::{Cell, RefCell},
    fmt, io,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{ready, Context, Poll},
};

use actix_rt::net::{ActixStream, Ready, TcpStream};
use actix_service::Service;
use actix_tls::connect::{
    ConnectError as TcpConnectError, ConnectInfo, Connection as TcpConnection,
    ConnectorService as TcpConnector,
};
use awc::{
    error::PayloadError,
    http::{header, Uri, Version},
    ClientResponse,
};
use bytes::{Buf, Bytes};
use futures::{future::LocalBoxFuture, Future, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::proxy::Proxies;

/// What a checked body reports when the wire contradicts awc's clean end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The peer closed the connection before the last chunk of a chunked body.
    Cut,
    /// The peer sent `received` body bytes, more than its `Content-Length`.
    Excess {
        /// Body bytes seen on the wire.
        received: u64,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Cut => f.write_str("the connection closed before the last chunk"),
            Fault::Excess { received } => {
                write!(f, "{received} body bytes arrived, more than announced")
            }
        }
    }
}

impl std::error::Error for Fault {}

impl Fault {
    /// The fault carried by a body error, if it is one of ours.
    pub(crate) fn of(err: &PayloadError) -> Option<Fault> {
        match err {
            PayloadError::Io(e) => e.get_ref()?.downcast_ref::<Fault>().copied(),
            _ => None,
        }
    }

    fn into_payload_error(self) -> PayloadError {
        PayloadError::Io(io::Error::other(self))
    }
}

// ----- the connector -----

/// awc's TCP connector (resolver + connect), whose connections are [`WireIo`]s, through the
/// engine's proxies when it has some.
#[derive(Clone)]
pub(crate) struct Connector {
    tcp: TcpConnector,
    proxies: Option<Arc<Proxies>>,
    /// The engine's connect timeout (zero: none), which awc applies to the whole call as
    /// well: see `call`.
    timeout: std::time::Duration,
}

impl Connector {
    pub(crate) fn new(proxies: Option<Arc<Proxies>>, timeout: std::time::Duration) -> Self {
        Connector {
            tcp: TcpConnector::default(),
            proxies,
            timeout,
        }
    }
}

impl Service<ConnectInfo<Uri>> for Connector {
    type Response = TcpConnection<Uri, WireIo>;
    type Error = TcpConnectError;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    actix_service::always_ready!();

    fn call(&self, req: ConnectInfo<Uri>) -> Self::Future {
        let inspect = req.request().scheme_str() != Some("https");
        if let Some(proxy) = self.proxies.as_ref().and_then(|p| p.for_uri(req.request())) {
            let (proxy, tcp) = (proxy.clone(), self.tcp.clone());
            let origin = req.request().clone();
            // A proxy that does not answer is named too: this deadline is taken before awc
            // starts its own timer of the same length around this call, and awc polls this
            // future before its timer, so the proxy's error wins the race.
            let timeout = self.timeout;
            let deadline = (!timeout.is_zero())
                .then(|| actix_rt::time::Instant::now().checked_add(timeout))
                .flatten();
            return Box::pin(async move {
                // https: a tunnel, which awc's TLS runs over to the origin.
                let connecting = proxy.connect(&tcp, &origin, !inspect);
                let io = match deadline {
                    None => connecting.await?,
                    Some(deadline) => {
                        let expiry = actix_rt::time::sleep_until(deadline);
                        match futures::future::select(Box::pin(connecting), Box::pin(expiry)).await
                        {
                            futures::future::Either::Left((io, _)) => io?,
                            futures::future::Either::Right(_) => {
                                return Err(proxy.timed_out(timeout, &origin, !inspect))
                            }
                        }
                    }
                };
                let mut io = WireIo::new(io, inspect);
                let sent = proxy.auth_line();
                Rc::get_mut(&mut io.wire).expect("not shared yet").proxy =
                    Some((Arc::clone(proxy.shown()), sent.is_some()));
                if inspect {
                    io.absolute = Some(Box::new(Absolute::new(&origin, sent)));
                }
                Ok(TcpConnection::new(origin, io))
            });
        }
        let connecting = self.tcp.call(req);
        Box::pin(async move {
            let conn = connecting.await?;
            let (io, conn) = conn.replace_io(());
            let (_, conn) = conn.replace_io(WireIo::new(io, inspect));
            Ok(conn)
        })
    }
}

/// Where a connection is in its current exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The client is writing a request (a new connection starts here).
    Request,
    /// Reading a response head: `seen` characters of it so far up to 10 (leading blank lines
    /// and CRs not counted; all that matters is whether there was one and where the tenth, the
    /// status code's first digit, is), `status` that digit, `newlines` line ends in a row.
    Head { seen: u8, status: u8, newlines: u8 },
    /// After the head of a final (non-1xx) response.
    Body,
}

/// What a connection knows about its bytes, shared with the checked body that reads from it.
#[derive(Debug)]
struct Wire {
    /// False over TLS: the bytes are records, not HTTP.
    inspect: bool,
    phase: Cell<Phase>,
    /// Counts requests written on this connection.
    exchange: Cell<u64>,
    /// Bytes read after the final response head of the current exchange.
    body: Cell<u64>,
    /// The peer closed the connection (a read returned 0 bytes) in the current exchange.
    eof: Cell<bool>,
    /// Never use this connection again: every later read and write fails.
    poisoned: Cell<bool>,
    /// The proxy this connection goes through (as errors name it), and whether it is sent
    /// credentials.
    proxy: Option<(Arc<str>, bool)>,
}

impl Wire {
    fn wrote(&self) {
        if self.phase.get() != Phase::Request {
            self.phase.set(Phase::Request);
            self.exchange.set(self.exchange.get() + 1);
            self.body.set(0);
            self.eof.set(false);
        }
    }

    /// Follow the response bytes; registers with the current watch when a final head ends.
    fn read(self: &Rc<Self>, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.phase.get() {
                Phase::Body => {
                    self.body.set(self.body.get() + bytes.len() as u64);
                    return;
                }
                Phase::Request => self.phase.set(Phase::Head {
                    seen: 0,
                    status: 0,
                    newlines: 0,
                }),
                Phase::Head {
                    mut seen,
                    mut status,
                    mut newlines,
                } => {
                    let mut used = 0;
                    let mut ended = false;
                    // A line at a time: its LF found with memchr, its CRs (ignored) counted.
                    while used < bytes.len() {
                        let rest = &bytes[used..];
                        let (line, lf) = match memchr::memchr(b'\n', rest) {
                            Some(i) => (&rest[..i], true),
                            None => (rest, false),
                        };
                        used += line.len() + usize::from(lf);
                        // Past the status digit only whether a line is blank matters: one
                        // look at its first bytes instead of a count of all of them.
                        let chars = if seen >= 10 {
                            usize::from(line.iter().any(|&b| b != b'\r'))
                        } else {
                            line.len() - line.iter().filter(|&&b| b == b'\r').count()
                        };
                        if chars > 0 {
                            newlines = 0;
                            if seen <= 9 && seen as usize + chars > 9 {
                                // "HTTP/1.1 2xx": the status' first digit, the tenth character.
                                status = line
                                    .iter()
                                    .filter(|&&b| b != b'\r')
                                    .nth(9 - seen as usize)
                                    .copied()
                                    .unwrap_or(0);
                            }
                            seen = (usize::from(seen) + chars).min(10) as u8;
                        }
                        // Blank lines before a head are skipped, like httparse does.
                        if lf && seen > 0 {
                            newlines += 1;
                            if newlines == 2 {
                                ended = true;
                                break;
                            }
                        }
                    }
                    bytes = &bytes[used..];
                    if !ended {
                        self.phase.set(Phase::Head {
                            seen,
                            status,
                            newlines,
                        });
                    } else if status == b'1' {
                        // An interim response (100 Continue, 103 Early Hints): the final head
                        // follows. awc takes it for the final answer, and the transfer then
                        // poisons this connection (see `http::send`).
                        self.phase.set(Phase::Request);
                        Watch::register(self);
                    } else {
                        self.phase.set(Phase::Body);
                        self.body.set(0);
                        Watch::register(self);
                    }
                }
            }
        }
    }

    fn poisoned_error() -> io::Error {
        io::Error::other("connection dropped after a mis-framed response")
    }
}

/// A TCP connection that follows its own HTTP/1 framing (see the module docs).
#[derive(Debug)]
pub(crate) struct WireIo {
    io: TcpStream,
    wire: Rc<Wire>,
    /// Through a plain-http proxy: the request lines' rewrite.
    absolute: Option<Box<Absolute>>,
}

impl WireIo {
    fn new(io: TcpStream, inspect: bool) -> Self {
        WireIo {
            io,
            wire: Rc::new(Wire {
                inspect,
                phase: Cell::new(Phase::Request),
                exchange: Cell::new(0),
                body: Cell::new(0),
                eof: Cell::new(false),
                poisoned: Cell::new(false),
                proxy: None,
            }),
            absolute: None,
        }
    }
}

/// Rewrites each request line a connection to a plain-http proxy carries from awc's origin
/// form (`GET /path HTTP/1.1`, actix-http writes no other) to the absolute form
/// (`GET http://host:port/path HTTP/1.1`), and adds the `Proxy-Authorization` line after it.
/// It works on the bytes as they are written, whatever the write boundaries: a request starts
/// at the first write after the previous response head was read (as [`Wire::wrote`] counts
/// exchanges; an interim `100 Continue` does not end a request).
struct Absolute {
    /// `http://host:port`, written after the method's space.
    target: Bytes,
    /// `Proxy-Authorization: Basic ...\r\n`, written after the request line.
    auth: Option<Bytes>,
    at: Rewrite,
    /// Inserted bytes not yet written: they go out before any more of the caller's.
    pending: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// Up to the space after the method.
    Method,
    /// Up to the end of the request line.
    Line,
    /// The rest of the request: headers and body, as they are.
    Rest,
}

impl fmt::Debug for Absolute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        f.debug_struct("Absolute")
            .field("target", &self.target)
            .field("at", &self.at)
            .finish()
    }
}

impl Absolute {
    fn new(origin: &Uri, auth: Option<Vec<u8>>) -> Self {
        let authority = origin.authority().map_or("", |a| a.as_str());
        Absolute {
            target: Bytes::from(format!("http://{authority}")),
            auth: auth.map(Bytes::from),
            // A new connection starts with a request.
            at: Rewrite::Method,
            pending: Bytes::new(),
        }
    }

    /// Write the inserted bytes not yet written.
    fn poll_pending(
        &mut self,
        io: &mut TcpStream,
        wire: &Wire,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            wire.wrote();
            self.pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// A new request starts with this write.
    fn start(&mut self) {
        self.at = Rewrite::Method;
        self.pending = Bytes::new();
    }

    /// Write `buf` through `io`, inserting the target and the credentials where they go.
    /// Answers how many of `buf`'s bytes were written, as `poll_write` does.
    fn poll_write(
        &mut self,
        io: &mut TcpStream,
        wire: &Wire,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(io, wire, cx))?;
        let (upto, next) = match self.at {
            Rewrite::Rest => (buf.len(), None),
            Rewrite::Method => match memchr::memchr(b' ', buf) {
                Some(i) => (i + 1, Some(Rewrite::Line)),
                None => (buf.len(), None),
            },
            Rewrite::Line => match memchr::memchr(b'\n', buf) {
                Some(i) => (i + 1, Some(Rewrite::Rest)),
                None => (buf.len(), None),
            },
        };
        if upto == 0 {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(Pin::new(&mut *io).poll_write(cx, &buf[..upto]))?;
        if n > 0 {
            wire.wrote();
        }
        if let (true, Some(next)) = (n == upto, next) {
            self.at = next;
            self.pending = match next {
                Rewrite::Line => self.target.clone(),
                _ => self.auth.clone().unwrap_or_default(),
            };
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for WireIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.wire.poisoned.get() {
            return Poll::Ready(Err(Wire::poisoned_error()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            if this.wire.inspect {
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    this.wire.eof.set(true);
                } else {
                    this.wire.read(new);
                }
            }
        }
        res
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.wire.poisoned.get() {
            return Poll::Ready(Err(Wire::poisoned_error()));
        }
        if let Some(absolute) = this.absolute.as_mut() {
            if this.wire.phase.get() != Phase::Request {
                // A response was read since the last write: this write starts a new request
                // (the first write of which puts the phase back to `Request`).
                absolute.start();
            }
            return absolute.poll_write(&mut this.io, &this.wire, cx, buf);
        }
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res {
            if n > 0 {
                this.wire.wrote();
            }
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.absolute.is_some() {
            let buf = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write(cx, buf);
        }
        let this = self.get_mut();
        if this.wire.poisoned.get() {
            return Poll::Ready(Err(Wire::poisoned_error()));
        }
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res {
            if n > 0 {
                this.wire.wrote();
            }
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.absolute.is_none() && self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(absolute) = this.absolute.as_mut() {
            // Bytes inserted after the caller's last ones go out with them.
            ready!(absolute.poll_pending(&mut this.io, &this.wire, cx))?;
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl ActixStream for WireIo {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_read_ready(&self.io, cx)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<Ready>> {
        ActixStream::poll_write_ready(&self.io, cx)
    }
}

// ----- linking a response to its connection -----

/// One response's connection, as registered when its head ended.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    wire: Rc<Wire>,
    id: u64,
}

impl Exchange {
    /// Never use this connection again (awc's pool drops it at the next checkout).
    pub(crate) fn poison(&self) {
        self.wire.poisoned.set(true);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Watch>> = const { RefCell::new(None) };
}

/// Learns which connection carried the response of the request it watches.
#[derive(Debug, Clone, Default)]
pub(crate) struct Watch(Rc<RefCell<Option<Exchange>>>);

impl Watch {
    /// The connection of the last final response head read under this watch.
    pub(crate) fn take(&self) -> Option<Exchange> {
        self.0.borrow_mut().take()
    }

    /// The proxy the last response read under this watch came through (plain http only: an
    /// https connection is not inspected), and whether it was sent credentials.
    pub(crate) fn proxy(&self) -> Option<(Arc<str>, bool)> {
        self.0.borrow().as_ref()?.wire.proxy.clone()
    }

    fn register(wire: &Rc<Wire>) {
        CURRENT.with(|c| {
            if let Some(watch) = c.borrow().as_ref() {
                *watch.0.borrow_mut() = Some(Exchange {
                    wire: Rc::clone(wire),
                    id: wire.exchange.get(),
                });
            }
        });
    }
}

/// Run `fut` with `watch` installed during each of its polls.
pub(crate) async fn watched<F: Future>(watch: &Watch, fut: F) -> F::Output {
    /// Puts back the previous watch, even if the poll panics.
    struct Installed(Option<Watch>);
    impl Drop for Installed {
        fn drop(&mut self) {
            let previous = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let mut fut = std::pin::pin!(fut);
    futures::future::poll_fn(|cx| {
        let _installed = Installed(CURRENT.with(|c| c.replace(Some(watch.clone()))));
        fut.as_mut().poll(cx)
    })
    .await
}

// ----- checking a body -----

/// How the response says its body ends.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked,
    /// Close-delimited, or framing that `http::body_length` refuses anyway.
    Other,
}

impl Framing {
    fn of(response: &ClientResponse) -> Framing {
        let headers = response.headers();
        if response.version() != Version::HTTP_11 && response.version() != Version::HTTP_10 {
            return Framing::Other;
        }
        let te = headers.get_all(header::TRANSFER_ENCODING).last();
        let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).collect();
        match (te, lengths.as_slice()) {
            (Some(te), []) if last_coding_is_chunked(te.as_bytes()) => Framing::Chunked,
            (None, [one]) => one
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map_or(Framing::Other, Framing::Length),
            _ => Framing::Other,
        }
    }
}

fn last_coding_is_chunked(te: &[u8]) -> bool {
    te.rsplit(|&b| b == b',')
        .next()
        .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Wrap `response`'s body so that its end is checked against the wire (see the module docs).
/// Without an exchange (https, or no body), the body is left as it is.
pub(crate) fn check_body(response: ClientResponse, exchange: Option<Exchange>) -> ClientResponse {
    let Some(exchange) = exchange.filter(|e| e.wire.inspect) else {
        return response;
    };
    let framing = Framing::of(&response);
    if let Framing::Other = framing {
        return response;
    }
    response.map_body(|_, payload| {
        let checked: actix_http::BoxedPayloadStream = Box::pin(Checked {
            inner: payload,
            exchange,
            framing,
            ended: false,
        });
        actix_http::Payload::Stream { payload: checked }
    })
}

struct Checked {
    inner: actix_http::Payload,
    exchange: Exchange,
    framing: Framing,
    ended: bool,
}

impl Checked {
    /// The fault of an exchange whose body awc just ended cleanly, if any.
    fn fault(&self) -> Option<Fault> {
        let wire = &self.exchange.wire;
        if wire.exchange.get() != self.exchange.id {
            return None;
        }
        let fault = match self.framing {
            Framing::Chunked if wire.eof.get() => Fault::Cut,
            Framing::Length(n) if wire.body.get() > n => Fault::Excess {
                received: wire.body.get(),
            },
            _ => return None,
        };
        wire.poisoned.set(true);
        Some(fault)
    }
}

impl Stream for Checked {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(this.fault().map(|f| Err(f.into_payload_error())))
            }
            Poll::Ready(Some(Err(e))) => {
                this.ended = true;
                this.exchange.wire.poisoned.set(true);
                Poll::Ready(Some(Err(e)))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> Rc<Wire> {
        Rc::new(Wire {
            inspect: true,
            phase: Cell::new(Phase::Request),
            exchange: Cell::new(0),
            body: Cell::new(0),
            eof: Cell::new(false),
            poisoned: Cell::new(false),
            proxy: None,
        })
    }

    /// Feed `bytes` split at `at`, as two reads; the body bytes counted.
    fn body_after(bytes: &[u8], at: usize) -> (Phase, u64) {
        let w = wire();
        w.wrote();
        w.read(&bytes[..at]);
        w.read(&bytes[at..]);
        (w.phase.get(), w.body.get())
    }

    #[test]
    fn counts_body_bytes_whatever_the_read_boundaries() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello+extra";
        for at in 0..=answer.len() {
            assert_eq!(body_after(answer, at), (Phase::Body, 11), "split at {at}");
        }
    }

    #[test]
    fn bare_newlines_and_leading_blank_lines_end_heads_like_httparse() {
        for answer in [
            &b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc"[..],
            b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\n\r\nabc",
        ] {
            assert_eq!(body_after(answer, 1), (Phase::Body, 3));
        }
    }

    /// The byte-at-a-time scan the line scan replaced: the specification it must match.
    fn reference(reads: &[&[u8]]) -> (Phase, u64) {
        let (mut phase, mut body) = (Phase::Request, 0u64);
        for bytes in reads {
            for &b in *bytes {
                match phase {
                    Phase::Body => body += 1,
                    Phase::Request | Phase::Head { .. } => {
                        let (mut seen, mut status, mut newlines) = match phase {
                            Phase::Head {
                                seen,
                                status,
                                newlines,
                            } => (seen, status, newlines),
                            _ => (0, 0, 0),
                        };
                        let mut ended = false;
                        match b {
                            b'\r' => {}
                            b'\n' if seen == 0 => {}
                            b'\n' => {
                                newlines += 1;
                                ended = newlines == 2;
                            }
                            _ => {
                                newlines = 0;
                                if seen == 9 {
                                    status = b;
                                }
                                seen = (seen + 1).min(10);
                            }
                        }
                        phase = match (ended, status) {
                            (false, _) => Phase::Head {
                                seen,
                                status,
                                newlines,
                            },
                            (true, b'1') => Phase::Request,
                            (true, _) => {
                                body = 0;
                                Phase::Body
                            }
                        };
                    }
                }
            }
        }
        (phase, body)
    }

    #[test]
    fn the_line_scan_matches_the_byte_scan_at_every_split() {
        let answers: [&[u8]; 8] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"\r\n\n\rHTTP/1.1 404 Not Found\n\r\r\nbody\n\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 103 Early\r\nLink: x\r\n\r\nHTTP/1.1 500 E\r\n\r\nxyz",
            b"HTTP/1.\r\r1 302 Found\r\nLocation: /a\r\n\r\n",
            b"H\r\nT\r\n\r\n",
            b"H\r\n\r\nrest",
            b"HTTP/1.1 200 OK\r\nX: \r\r\r\nY: 1\r\n",
        ];
        for answer in answers {
            for a in 0..=answer.len() {
                for b in a..=answer.len() {
                    let reads = [&answer[..a], &answer[a..b], &answer[b..]];
                    let w = wire();
                    w.wrote();
                    for r in reads {
                        w.read(r);
                    }
                    let got = (w.phase.get(), w.body.get());
                    assert_eq!(got, reference(&reads), "{answer:?} split at {a}, {b}");
                }
            }
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(body_after(answer, 30), (Phase::Body, 2));
    }

    #[test]
    fn a_new_request_starts_a_new_exchange() {
        let w = wire();
        w.wrote();
        w.read(b"HTTP/1.1 200 OK\r\n\r\nabc");
        w.eof.set(true);
        let first = w.exchange.get();
        w.wrote();
        assert_eq!(w.exchange.get(), first + 1);
        assert_eq!(
            (w.phase.get(), w.body.get(), w.eof.get()),
            (Phase::Request, 0, false)
        );
        // More writes of the same request do not start another one.
        w.wrote();
        assert_eq!(w.exchange.get(), first + 1);
    }

    /// Through a plain-http proxy, each request line is rewritten to the absolute form with
    /// the credentials after it, whatever the write boundaries, on every request of a
    /// connection and in no body.
    #[actix_rt::test]
    async fn request_lines_are_rewritten_to_absolute_form_at_any_write_boundary() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let origin: Uri = "http://o.test:8080/a".parse().unwrap();
        let auth = b"Proxy-Authorization: Basic QQ==\r\n".to_vec();
        let first =
            &b"PUT /a/b?c=d HTTP/1.1\r\nhost: o.test:8080\r\ncontent-length: 9\r\n\r\nGET / x\r\n"
                [..];
        let second = &b"GET / HTTP/1.1\r\nhost: o.test:8080\r\n\r\n"[..];
        let expected = [
            &b"PUT http://o.test:8080/a/b?c=d HTTP/1.1\r\nProxy-Authorization: Basic QQ==\r\n"[..],
            b"host: o.test:8080\r\ncontent-length: 9\r\n\r\nGET / x\r\n",
            b"GET http://o.test:8080/ HTTP/1.1\r\nProxy-Authorization: Basic QQ==\r\n",
            b"host: o.test:8080\r\n\r\n",
        ]
        .concat();
        for step in [1, 2, 3, 4, 5, 7, 13, 1000] {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut peer, _) = listener.accept().unwrap();
            let mut io = WireIo::new(stream, true);
            io.absolute = Some(Box::new(Absolute::new(&origin, Some(auth.clone()))));
            for (i, request) in [first, second].into_iter().enumerate() {
                if i == 1 {
                    // The answer to the first request: the next write starts a new request.
                    io.wire
                        .read(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
                let mut rest = request;
                while !rest.is_empty() {
                    let chunk = &rest[..step.min(rest.len())];
                    let n = futures::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, chunk))
                        .await
                        .unwrap();
                    rest = &rest[n..];
                }
                futures::future::poll_fn(|cx| Pin::new(&mut io).poll_flush(cx))
                    .await
                    .unwrap();
            }
            drop(io);
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected),
                "writes of {step} bytes"
            );
        }
    }

    #[test]
    fn the_watch_installed_around_a_poll_learns_the_connection() {
        let w = wire();
        let watch = Watch::default();
        w.wrote();
        let polled = futures::FutureExt::now_or_never(watched(&watch, async {
            w.read(b"HTTP/1.1 204 No Content\r\n\r\n");
        }));
        assert!(polled.is_some());
        let exchange = watch.take().expect("registered");
        assert!(Rc::ptr_eq(&exchange.wire, &w));
        // Outside a watched poll nothing registers.
        w.wrote();
        w.read(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(watch.take().is_none());
    }
}
