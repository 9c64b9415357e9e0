//! A raw TCP server on `127.0.0.1:0` that misbehaves on purpose.
//!
//! Each test gives it a behaviour: a closure that turns every request it reads into a
//! [`Script`] of exact bytes, pauses, a clean close (FIN), a reset (RST through `SO_LINGER 0`),
//! or a hang. It records every request it read (with the connection it came on), so tests can
//! assert on headers such as `Accept-Encoding`, `Range` or `Authorization` after redirects.
//!
//! It runs on plain threads (one per connection), so it needs no runtime and cannot be slowed by
//! the engine under test. Every blocking call is bounded: sockets have read timeouts and hangs end
//! when the server is dropped (or after [`MAX_HANG`]).

use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

/// How long a connection thread waits for a request before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a [`Step::Hang`] lasts when the server is not dropped first.
pub const MAX_HANG: Duration = Duration::from_secs(60);
/// The largest request (head and body) the server reads.
const MAX_REQUEST: usize = 64 * 1024 * 1024;

/// One step of a scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write exactly these bytes (a failed write, e.g. the client went away, ends the script).
    Write(Vec<u8>),
    /// Sleep.
    Pause(Duration),
    /// Close cleanly: FIN, then drop the socket.
    Close,
    /// Abort: `SO_LINGER 0` then drop, so the peer gets an RST.
    Reset,
    /// Keep the connection open and silent until the server is dropped.
    Hang,
    /// Wait until the test opens the gate (or the server is dropped, or [`MAX_HANG`] passed).
    Wait(Gate),
    /// Open a gate the test waits on (e.g. once some bytes were written).
    Open(Gate),
}

/// A latch a script waits on, opened by the test (e.g. once the client has read some bytes).
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Let the waiting script go on.
    pub fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the gate was opened.
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Wait until the gate is open: every 5 ms, at most `limit`; false on timeout.
    pub fn wait(&self, limit: Duration) -> bool {
        let start = Instant::now();
        while !self.is_open() {
            if start.elapsed() > limit {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// What the server does with one request. A script that ends without `Close`, `Reset` or `Hang`
/// keeps the connection alive for the next request.
pub type Script = Vec<Step>;

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The connection it came on, counted from 0 in accept order.
    pub conn: usize,
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The request target, e.g. `/file?x=1`.
    pub path: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body (framed by `Content-Length` or chunked encoding).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Behaviour = dyn Fn(&Request) -> Script + Send + Sync;

/// How fast the server reads requests: `bytes` per read, then a pause (a slow upload reader).
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    /// Bytes per read.
    pub bytes: usize,
    /// Pause after each read.
    pub every: Duration,
}

/// The server. Dropping it stops the listener and ends every hang.
pub struct Hostile {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    /// Serve every request with `behaviour`.
    pub fn start(behaviour: impl Fn(&Request) -> Script + Send + Sync + 'static) -> Hostile {
        Hostile::with_throttle(None, behaviour)
    }

    /// Like [`Hostile::start`], reading requests slowly with a small receive buffer.
    pub fn throttled(
        throttle: Throttle,
        behaviour: impl Fn(&Request) -> Script + Send + Sync + 'static,
    ) -> Hostile {
        Hostile::with_throttle(Some(throttle), behaviour)
    }

    fn with_throttle(
        throttle: Option<Throttle>,
        behaviour: impl Fn(&Request) -> Script + Send + Sync + 'static,
    ) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let hostile = Hostile {
            addr,
            requests: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let behaviour: Arc<Behaviour> = Arc::new(behaviour);
        let (requests, connections, stop) = (
            Arc::clone(&hostile.requests),
            Arc::clone(&hostile.connections),
            Arc::clone(&hostile.stop),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn = connections.fetch_add(1, Ordering::SeqCst);
                let (behaviour, requests, stop) = (
                    Arc::clone(&behaviour),
                    Arc::clone(&requests),
                    Arc::clone(&stop),
                );
                if throttle.is_some() {
                    small_receive_buffer(&stream);
                }
                thread::spawn(move || {
                    let mut conn = Conn {
                        stream,
                        id: conn,
                        throttle,
                    };
                    serve(&mut conn, &*behaviour, &requests, &stop)
                });
            }
        });
        hostile
    }

    /// Serve every request with the same script.
    pub fn always(script: Script) -> Hostile {
        Hostile::start(move |_| script.clone())
    }

    /// A redirect loop: `/ping` sends to `/pong`, anything else to `/ping`, with a 302.
    pub fn ping_pong() -> Hostile {
        Hostile::start(|req| {
            let to = if req.path == "/ping" {
                "/pong"
            } else {
                "/ping"
            };
            vec![Step::Write(redirect(302, to))]
        })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The `host:port` the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// One accepted connection.
struct Conn {
    stream: TcpStream,
    id: usize,
    throttle: Option<Throttle>,
}

impl Conn {
    /// Read more bytes into `buf`; false on EOF, error or timeout.
    fn fill(&mut self, buf: &mut Vec<u8>) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        let want = self
            .throttle
            .map_or(chunk.len(), |t| t.bytes.min(chunk.len()));
        match self.stream.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(t) = self.throttle {
                    thread::sleep(t.every);
                }
                buf.len() <= MAX_REQUEST
            }
        }
    }
}

/// Cap the receive buffer (and so stop autotuning) so a slow reader really slows the sender.
fn small_receive_buffer(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_recv_buffer_size(64 * 1024);
}

fn serve(
    conn: &mut Conn,
    behaviour: &Behaviour,
    requests: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    let _ = conn.stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = conn.stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(conn, &mut buf) else {
            return;
        };
        let stream = &mut conn.stream;
        requests.lock().unwrap().push(req.clone());
        for step in behaviour(&req) {
            match step {
                Step::Write(bytes) => {
                    if stream
                        .write_all(&bytes)
                        .and_then(|()| stream.flush())
                        .is_err()
                    {
                        return;
                    }
                }
                Step::Pause(d) => thread::sleep(d),
                Step::Close => {
                    let _ = stream.shutdown(Shutdown::Write);
                    // Let the client read everything before the socket goes.
                    drain_until_eof(stream);
                    return;
                }
                Step::Reset => {
                    reset(stream);
                    return;
                }
                Step::Hang => {
                    wait_until(stop, || false);
                    return;
                }
                Step::Wait(gate) => wait_until(stop, || gate.is_open()),
                Step::Open(gate) => gate.open(),
            }
        }
    }
}

/// Sleep until `done()`, the server stops, or [`MAX_HANG`] passed.
fn wait_until(stop: &AtomicBool, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() && !stop.load(Ordering::SeqCst) && start.elapsed() < MAX_HANG {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Set `SO_LINGER` to zero so dropping the socket sends an RST instead of a FIN.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// Read (and discard) until the peer closes, at most a few seconds.
fn drain_until_eof(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut sink = [0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// Read one request (head and body). `buf` carries bytes read past the previous request.
fn read_request(conn: &mut Conn, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !conn.fill(buf) {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut req = Request {
        conn: conn.id,
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        req.body = read_chunked(conn, buf)?;
    } else if let Some(n) = req.header("content-length").and_then(|v| v.parse().ok()) {
        let n: usize = n;
        if n > MAX_REQUEST {
            return None;
        }
        while buf.len() < n {
            if !conn.fill(buf) {
                // A short request body is recorded as received.
                req.body = std::mem::take(buf);
                return Some(req);
            }
        }
        req.body = buf.drain(..n).collect();
    }
    Some(req)
}

fn read_chunked(conn: &mut Conn, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(buf, b"\r\n") {
                break i;
            }
            if !conn.fill(buf) {
                return Some(body);
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            if !conn.fill(buf) {
                return Some(body);
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
        if size == 0 {
            return Some(body);
        }
        if body.len() > MAX_REQUEST {
            return None;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ----- building answers -----

/// A response head with these headers (exactly as given, nothing added) and a blank line.
pub fn head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A well-formed response with `Content-Length`.
pub fn ok(body: &[u8]) -> Vec<u8> {
    response(200, &[], body)
}

/// A response with `Content-Length: body.len()` plus the given headers.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let len = body.len().to_string();
    let mut all: Vec<(&str, &str)> = vec![("Content-Length", &len)];
    all.extend_from_slice(headers);
    let mut out = head(status, &all);
    out.extend_from_slice(body);
    out
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The last chunk of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// A redirect to `location`.
pub fn redirect(status: u16, location: &str) -> Vec<u8> {
    response(status, &[("Location", location)], b"")
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

/// A TCP listener whose accept queue is full, so a new connection's SYN is dropped and connecting
/// hangs: the way to reach a connect timeout on loopback. Keep the returned value alive.
pub struct Unconnectable {
    addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

impl Unconnectable {
    /// Listen with a backlog of 0 and never accept; connect until a connect times out (at most
    /// 64 connections).
    pub fn new() -> io::Result<Unconnectable> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())?;
        socket.listen(0)?;
        let addr = socket.local_addr()?.as_socket().expect("an inet address");
        let mut fillers = Vec::new();
        for _ in 0..64 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => fillers.push(s),
                Err(_) => {
                    return Ok(Unconnectable {
                        addr,
                        _listener: socket,
                        _fillers: fillers,
                    })
                }
            }
        }
        Err(io::Error::other("the accept queue never filled up"))
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A listener that writes `bytes` to every connection as soon as it is accepted, then closes it
/// (e.g. a plain-HTTP answer to a TLS client). Dropping it stops the listener.
pub struct Blurt {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Blurt {
    /// Start accepting.
    pub fn start(bytes: Vec<u8>) -> Blurt {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(mut s) = stream {
                    let _ = s.write_all(&bytes);
                    let _ = s.shutdown(Shutdown::Write);
                    drain_until_eof(&mut s);
                }
            }
        });
        Blurt { addr, stop }
    }

    /// `<scheme>://127.0.0.1:<port><path>`.
    pub fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{}", self.addr, path)
    }
}

impl Drop for Blurt {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A listener that accepts connections and never reads or writes a byte (a small receive buffer,
/// so an upload to it stalls quickly). Dropping it closes everything.
pub struct Deaf {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Deaf {
    /// Start accepting.
    pub fn start() -> Deaf {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = stream {
                    small_receive_buffer(&s);
                    held.push(s);
                }
            }
        });
        Deaf { addr, stop }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Deaf {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}
