//! HTTP proxies for the tests: a small CONNECT and forward proxy of our own ([`TestProxy`]),
//! which records what it saw and so always runs, and Debian's tinyproxy ([`Tinyproxy`]),
//! started with a config of its own on a free loopback port.
//!
//! [`TestProxy`] runs on plain threads (blocking I/O, a thread per connection): a test may
//! block its actix thread (waiting for a child process) while it serves. It handles one request
//! per client connection: a `CONNECT` tunnel, or an absolute-form request forwarded in origin
//! form with `Connection: close`.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering::SeqCst},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

/// One request as a proxy received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request line (`CONNECT 127.0.0.1:443 HTTP/1.1`, `GET http://h:1/p HTTP/1.1`).
    pub line: String,
    /// Its `Proxy-Authorization` value, if any.
    pub auth: Option<String>,
}

/// Our own CONNECT and forward proxy on 127.0.0.1 (see the module docs).
pub struct TestProxy {
    /// `http://127.0.0.1:port`.
    pub url: String,
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl TestProxy {
    /// A proxy that wants `credentials` (`user`, `password`) when given, answering `407`
    /// without them or with others.
    pub fn start(credentials: Option<(&str, &str)>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let wanted = credentials.map(|(u, p)| basic(u, p));
        {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(SeqCst) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (seen, wanted) = (Arc::clone(&seen), wanted.clone());
                    thread::spawn(move || {
                        let _ = serve(conn, &seen, wanted.as_deref());
                    });
                }
            });
        }
        TestProxy {
            url: format!("http://127.0.0.1:{port}"),
            port,
            seen,
            stop,
        }
    }

    /// `http://user:password@127.0.0.1:port`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The `Proxy-Authorization` value for `user` and `password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn serve(client: TcpStream, seen: &Mutex<Vec<Seen>>, wanted: Option<&str>) -> io::Result<()> {
    client.set_read_timeout(Some(super::LIMIT))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(());
        }
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        headers.push(h);
    }
    let header = |name: &str| {
        headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let auth = header("proxy-authorization");
    seen.lock().unwrap().push(Seen {
        line: line.clone(),
        auth: auth.clone(),
    });
    let mut client_w = client.try_clone()?;
    if wanted.is_some() && auth.as_deref() != wanted {
        client_w.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic \
              realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return client_w.shutdown(Shutdown::Both);
    }
    let mut parts = line.split(' ');
    let (method, target, version) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let leftover = reader.buffer().to_vec();
    if method == "CONNECT" {
        let Ok(mut origin) = TcpStream::connect(target) else {
            client_w.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(());
        };
        client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        origin.write_all(&leftover)?;
        return splice(client, origin);
    }
    let Some((authority, path)) = target
        .strip_prefix("http://")
        .map(|rest| rest.split_at(rest.find('/').unwrap_or(rest.len())))
    else {
        client_w.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    };
    let mut origin = TcpStream::connect(authority)?;
    let path = if path.is_empty() { "/" } else { path };
    let mut head = format!("{method} {path} {version}\r\n");
    for h in &headers {
        let name = h.split(':').next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection"
        ) {
            head.push_str(h);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    origin.write_all(head.as_bytes())?;
    origin.write_all(&leftover)?;
    splice(client, origin)
}

/// Copy both ways until each side ends.
fn splice(client: TcpStream, origin: TcpStream) -> io::Result<()> {
    let (mut c_read, mut o_write) = (client.try_clone()?, origin.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut o_write);
        let _ = o_write.shutdown(Shutdown::Write);
    });
    let (mut o_read, mut c_write) = (origin, client);
    let _ = io::copy(&mut o_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

/// A loopback port nothing listens on (a dead proxy).
pub fn dead_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Debian's tinyproxy on a free loopback port, with a config of its own in a temp dir;
/// stopped (by its PID) when dropped.
pub struct Tinyproxy {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// Start tinyproxy, wanting `credentials` (`BasicAuth`) when given. `None` when the
    /// binary is missing: that is said loudly, and under `CI=true` it fails the test.
    pub fn start(credentials: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let binary = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .map(str::to_owned)
            .or_else(|| {
                let out = Command::new("sh")
                    .args(["-c", "command -v tinyproxy"])
                    .output()
                    .ok()?;
                let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
                (!path.is_empty()).then_some(path)
            });
        let Some(binary) = binary else {
            let message = "tinyproxy is not installed (apt-get install tinyproxy): the tests \
                           through a real proxy did NOT run";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
            eprintln!("\n!!!!! {message} !!!!!\n");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = dead_port();
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nLogLevel Info\n\
             LogFile \"{log}\"\nPidFile \"{pid}\"\nAllow 127.0.0.1\n",
            log = dir.path().join("tinyproxy.log").display(),
            pid = dir.path().join("tinyproxy.pid").display(),
        );
        if let Some((user, password)) = credentials {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let conf_path = dir.path().join("tinyproxy.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // -d: in the foreground, so that the child is tinyproxy itself, stopped by its PID.
        let child = Command::new(&binary)
            .arg("-d")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} could not be started: {e}"));
        let mut proxy = Tinyproxy { port, child, dir };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("tinyproxy exited ({status}); its log:\n{}", proxy.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "tinyproxy did not listen on {port}; its log:\n{}",
                proxy.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        Some(proxy)
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://user:password@127.0.0.1:port`.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// Its log file, as text.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("tinyproxy.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        // `Child::kill` signals this child's PID, and no other process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
