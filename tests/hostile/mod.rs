//! A hostile HTTP server on raw TCP, for what actix-web cannot be made to do: lie about
//! lengths, drop or reset connections mid-body, stall before or after the headers, send
//! unframed bodies. Each connection reads one request, records it, and plays the `Reply` the
//! test's script picks for it. Threads, every wait bounded; dropping the server ends them.

#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering::SeqCst},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

/// The longest a stalled connection is held open.
const HOLD: Duration = Duration::from_secs(20);

/// What the server does with one connection, after reading its request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Write these bytes, then close (FIN).
    Close(Vec<u8>),
    /// Write these bytes, then reset the connection (RST).
    Reset(Vec<u8>),
    /// Write these bytes, then keep the connection open and silent.
    Stall(Vec<u8>),
    /// Write the head, then the body in `chunk`-byte pieces every `every`, then close.
    Drip {
        head: Vec<u8>,
        body: Vec<u8>,
        chunk: usize,
        every: Duration,
    },
}

type Script = dyn Fn(&str) -> Reply + Send + Sync;

pub struct Hostile {
    pub base: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    /// Serve on 127.0.0.1:0; `script` picks the reply from the request head (method, path,
    /// headers as received).
    pub fn start(script: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (reqs, stopping) = (Arc::clone(&requests), Arc::clone(&stop));
        thread::spawn(move || {
            let started = Instant::now();
            while !stopping.load(SeqCst) && started.elapsed() < Duration::from_secs(120) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (reqs, stopping, script) = (
                            Arc::clone(&reqs),
                            Arc::clone(&stopping),
                            Arc::clone(&script),
                        );
                        thread::spawn(move || serve(conn, &reqs, &stopping, &*script));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Hostile {
            base,
            requests,
            stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Request heads received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
    }
}

fn serve(mut conn: TcpStream, reqs: &Mutex<Vec<String>>, stop: &AtomicBool, script: &Script) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    reqs.lock().unwrap().push(text.clone());
    let hold = |conn: &TcpStream| {
        let start = Instant::now();
        while !stop.load(SeqCst) && start.elapsed() < HOLD {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = conn.shutdown(Shutdown::Both);
    };
    match script(&text) {
        Reply::Close(bytes) => {
            let _ = conn.write_all(&bytes);
            let _ = conn.shutdown(Shutdown::Write);
            // Drain what the client may still send, so the close is a clean FIN.
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = conn.read(&mut buf);
        }
        Reply::Reset(bytes) => {
            let _ = conn.write_all(&bytes);
            let _ = conn.flush();
            thread::sleep(Duration::from_millis(20));
            let _ = socket2::SockRef::from(&conn).set_linger(Some(Duration::ZERO));
            drop(conn);
        }
        Reply::Stall(bytes) => {
            let _ = conn.write_all(&bytes);
            hold(&conn);
        }
        Reply::Drip {
            head,
            body,
            chunk,
            every,
        } => {
            let _ = conn.write_all(&head);
            for piece in body.chunks(chunk) {
                if stop.load(SeqCst) || conn.write_all(piece).is_err() {
                    return;
                }
                thread::sleep(every);
            }
            let _ = conn.shutdown(Shutdown::Write);
        }
    }
}

/// An HTTP/1.1 response head with the given status line and headers.
pub fn head(status: &str, headers: &[(&str, String)]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// `head` followed by `body`.
pub fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = head(status, headers);
    out.extend_from_slice(body);
    out
}

/// A header value of the request head, case-insensitively.
pub fn header_of(request: &str, name: &str) -> Option<String> {
    request.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The path of the request line.
pub fn path_of(request: &str) -> &str {
    request.split_whitespace().nth(1).unwrap_or("")
}
