//! The server, in a child process: `load --serve` prints its port and serves until stdin closes.
//! Its endpoints: `/bytes/{n}` (ranged, with an ETag), `/paced/{n}` (the same at `PACE` per
//! connection), `/slow/{n}` (a trickle), `/stall-once/{ms}/{key}` (4 KiB; the first request
//! with a key holds the server's one thread for `ms` first) and `/upload` (answers the byte
//! count).

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;

/// The keys of `/stall-once` already used.
static STALLED: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

pub fn serve() {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let block = web::Bytes::from(vec![0x5au8; 64 * 1024]);
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let block = block.clone();
            App::new()
                .app_data(web::PayloadConfig::new(usize::MAX))
                .route("/bytes/{n}", {
                    let block = block.clone();
                    web::get().to(move |req: actix_web::HttpRequest, n: web::Path<u64>| {
                        let block = block.clone();
                        async move { ranged(&req, *n, block, None) }
                    })
                })
                .route(
                    "/paced/{n}",
                    web::get().to(move |req: actix_web::HttpRequest, n: web::Path<u64>| {
                        let block = block.clone();
                        async move { ranged(&req, *n, block, Some(PACE)) }
                    }),
                )
                .route(
                    "/slow/{n}",
                    web::get().to(|n: web::Path<u64>| async move {
                        // 1 KiB every 50 ms: open for a long time, a trickle of bytes.
                        let n = *n;
                        let body = futures::stream::unfold(0u64, move |sent| async move {
                            if sent >= n {
                                return None;
                            }
                            actix_rt::time::sleep(Duration::from_millis(50)).await;
                            let len = (n - sent).min(1024);
                            Some((
                                Ok::<_, std::io::Error>(web::Bytes::from(vec![1u8; len as usize])),
                                sent + len,
                            ))
                        });
                        HttpResponse::Ok().no_chunking(n).streaming(body)
                    }),
                )
                .route(
                    "/stall-once/{ms}/{key}",
                    web::get().to(|p: web::Path<(u64, String)>| async move {
                        // The first request with a key blocks the server's one thread: every
                        // connection waits, as behind a server's pause.
                        let (ms, key) = p.into_inner();
                        if STALLED.lock().unwrap().insert(key) {
                            std::thread::sleep(Duration::from_millis(ms));
                        }
                        HttpResponse::Ok().body(vec![0x5au8; 4096])
                    }),
                )
                .route(
                    "/upload",
                    web::put().to(|mut body: web::Payload| async move {
                        let mut n = 0usize;
                        while let Some(Ok(c)) = body.next().await {
                            n += c.len();
                        }
                        HttpResponse::Ok().body(n.to_string())
                    }),
                )
        })
        .workers(1)
        // Longer than either client's pool keeps an idle connection: the server never closes
        // one just as a client reuses it (awc reports that race as `Connect(Disconnected)`).
        .keep_alive(std::time::Duration::from_secs(300))
        .backlog(8192)
        .max_connections(100_000)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind");
        println!("{}", server.addrs()[0].port());
        std::io::stdout().flush().unwrap();
        // Exit when the parent closes our stdin (or dies).
        std::thread::spawn(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
            std::process::exit(0);
        });
        let _ = server.run().await;
    });
}

/// Bytes per second of each `/paced` response: what one connection gets from a distant
/// server (its window over its round trip), where segments pay off.
pub const PACE: f64 = 32.0 * 1024.0 * 1024.0;

/// `total` bytes of 0x5a, honouring `Range: bytes=a-b` (or `a-`, so segments work), with an
/// ETag; `pace`: at most that many bytes per second.
fn ranged(
    req: &actix_web::HttpRequest,
    total: u64,
    block: actix_web::web::Bytes,
    pace: Option<f64>,
) -> actix_web::HttpResponse {
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                total - 1
            } else {
                b.parse().ok()?
            };
            (a <= b && b < total).then_some((a, b))
        });
    let (start, end) = range.unwrap_or((0, total.saturating_sub(1)));
    let len = if total == 0 { 0 } else { end - start + 1 };
    let began = Instant::now();
    let body = futures::stream::unfold(0u64, move |off| {
        let block = block.clone();
        async move {
            if off >= len {
                return None;
            }
            if let Some(rate) = pace {
                let due = began + Duration::from_secs_f64(off as f64 / rate);
                actix_rt::time::sleep_until(due.into()).await;
            }
            let n = (len - off).min(block.len() as u64) as usize;
            Some((Ok::<_, std::io::Error>(block.slice(..n)), off + n as u64))
        }
    });
    let mut resp = match range {
        Some(_) => {
            let mut r = actix_web::HttpResponse::PartialContent();
            r.insert_header(("content-range", format!("bytes {start}-{end}/{total}")));
            r
        }
        None => actix_web::HttpResponse::Ok(),
    };
    resp.insert_header(("etag", "\"bench\""))
        .insert_header(("accept-ranges", "bytes"))
        .no_chunking(len)
        .streaming(body)
}

pub struct ServerProcess {
    child: Child,
    pub base: String,
}

impl ServerProcess {
    pub fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server process");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("the server prints its port");
        ServerProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
    }
}
