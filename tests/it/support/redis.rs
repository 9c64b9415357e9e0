//! A real `redis-server` (Debian's package) for the fleet tests: on a random loopback port,
//! with its own temp dir and append-only file, stopped by PID when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Whether `redis-server` can be run here. When it cannot, says so loudly, and fails under
/// `CI=true` (CI installs it: a missing server must not pass as skipped).
fn available() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let why = "redis-server is not installed: the fleet tests did NOT run \
                   (apt-get install redis-server)";
        eprintln!("\n!!!!!!!! {why} !!!!!!!!\n");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    }
    found
}

impl RedisServer {
    /// A fresh server, or `None` (after a loud message) when `redis-server` is missing.
    pub fn start() -> Option<RedisServer> {
        if !available() {
            return None;
        }
        let mut dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut server = RedisServer {
                child: None,
                port,
                dir,
            };
            if server.run() {
                return Some(server);
            }
            // Another process took the port between our probe and the server's bind.
            dir = server.take_dir();
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.stop_now();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Start the process on `self.port` with `self.dir` and wait (bounded) for its PING.
    fn run(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .args(["--logfile", "redis.log", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if ping(self.port) {
                return true;
            }
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().unwrap().is_some() {
                    return false;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stop the server gracefully (SIGTERM: it flushes its append-only file) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while c.try_wait().unwrap().is_none() {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "redis-server did not stop"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Start it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.run(), "redis-server did not come back on its port");
    }

    fn stop_now(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
