//! A scripted HTTP server for the resilience tests: it serves one file with an ETag and honours
//! `Range` and `If-Range` like a good server, except where a test scripts a misbehaviour for
//! the next request(s). It records every request's `Range` and `If-Range` headers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{
    http::{header, StatusCode},
    web, App, HttpRequest, HttpResponse, HttpServer,
};
use futures::StreamExt;

/// The files it serves are the shared test content.
pub use super::content;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Act {
    /// Serve the file, honouring `Range` and `If-Range`.
    Normal,
    /// Like `Normal`, but drop the connection once the body reaches this absolute offset.
    CutAt(u64),
    /// Answer 200 with the whole file, whatever `Range` says.
    IgnoreRange,
    /// Answer 206 with a `Content-Range` starting this many bytes after the asked offset.
    WrongStart(u64),
    /// Like `Normal`, but drop the connection after this many body bytes.
    CutAfter(u64),
    /// Answer with this status (and `Retry-After` when given), no body.
    Status(u16, Option<&'static str>),
    /// Serve normally but slowly: `chunk` bytes every `every`.
    Slow { chunk: usize, every: Duration },
    /// Like `Normal`, but honour `Range` whatever `If-Range` says (a server without If-Range).
    IgnoreIfRange,
    /// Answer 302 with this `Location`, no body.
    Redirect(&'static str),
    /// Like `Normal` (or `CutAt(cut_at)` when given); the moment this answer is made, the
    /// file is replaced by `content` with ETag `etag`, its Last-Modified unchanged (a file
    /// that changes between two requests of one download, within one second).
    Replacing {
        cut_at: Option<u64>,
        content: Vec<u8>,
        etag: &'static str,
    },
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The client's port: one per connection.
    pub port: u16,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
    /// The client's `User-Agent` (a test can tell its processes apart by it).
    #[cfg_attr(not(feature = "journal"), allow(dead_code))]
    pub user_agent: Option<String>,
    pub at: Instant,
    pub body_len: usize,
}

pub struct State {
    pub content: Vec<u8>,
    pub etag: String,
    /// Send ETag (a validator) with responses.
    pub validators: bool,
    /// `Last-Modified` sent with responses, and an `If-Range` date honoured when it equals it
    /// exactly (as nginx does).
    pub last_modified: Option<String>,
    /// `Date` sent with responses instead of the current time.
    pub date: Option<String>,
    pub script: VecDeque<Act>,
    pub seen: Vec<Seen>,
    /// Body bytes handed to connections, all responses together.
    pub sent: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Clone)]
pub struct Ranged {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl Ranged {
    /// Script the next requests.
    pub fn script(&self, acts: impl IntoIterator<Item = Act>) {
        self.state.lock().unwrap().script.extend(acts);
    }

    /// Body bytes sent so far, all responses together.
    pub fn sent(&self) -> u64 {
        let sent = Arc::clone(&self.state.lock().unwrap().sent);
        sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Stop (or start) sending validators.
    pub fn validators(&self, on: bool) {
        self.state.lock().unwrap().validators = on;
    }

    /// Send this `Last-Modified` (and honour it in `If-Range`), and this `Date` instead of the
    /// current time.
    pub fn dates(&self, last_modified: Option<&str>, date: Option<&str>) {
        let mut st = self.state.lock().unwrap();
        st.last_modified = last_modified.map(str::to_owned);
        st.date = date.map(str::to_owned);
    }

    /// Replace the file (and its ETag), as a server whose file changed.
    pub fn replace(&self, content: Vec<u8>, etag: &str) {
        let mut st = self.state.lock().unwrap();
        st.content = content;
        st.etag = etag.into();
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// Serve `content` at `/file` (and accept uploads at `PUT /upload`) on 127.0.0.1.
pub fn start(content: Vec<u8>) -> Ranged {
    let state = Arc::new(Mutex::new(State {
        content,
        etag: "\"v1\"".into(),
        validators: true,
        last_modified: None,
        date: None,
        script: VecDeque::new(),
        seen: Vec::new(),
        sent: Arc::default(),
    }));
    let data = web::Data::from(Arc::clone(&state));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/file", web::get().to(serve))
            .route("/upload", web::put().to(upload))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind 127.0.0.1");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ranged {
        url: format!("http://{addr}"),
        state,
        handle,
    }
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn serve(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    let range = header_str(&req, header::RANGE);
    let if_range = header_str(&req, header::IF_RANGE);
    let answer = {
        let mut st = state.lock().unwrap();
        st.seen.push(Seen {
            port: req.peer_addr().map_or(0, |a| a.port()),
            range: range.clone(),
            if_range: if_range.clone(),
            authorization: header_str(&req, header::AUTHORIZATION),
            user_agent: header_str(&req, header::USER_AGENT),
            at: Instant::now(),
            body_len: 0,
        });
        let act = st.script.pop_front().unwrap_or(Act::Normal);
        let answer = (
            act,
            st.content.clone(),
            st.etag.clone(),
            st.validators,
            Arc::clone(&st.sent),
        );
        if let Act::Replacing { content, etag, .. } = &answer.0 {
            st.content = content.clone();
            st.etag = (*etag).into();
        }
        (answer, st.last_modified.clone(), st.date.clone())
    };
    let ((act, content, etag, validators, sent_total), last_modified, date) = answer;
    let total = content.len() as u64;
    if let Act::Redirect(location) = act {
        return HttpResponse::Found()
            .insert_header((header::LOCATION, location))
            .finish();
    }
    if let Act::Status(code, retry_after) = act {
        let mut resp = HttpResponse::build(StatusCode::from_u16(code).unwrap());
        if let Some(ra) = retry_after {
            resp.insert_header((header::RETRY_AFTER, ra));
        }
        return resp.finish();
    }
    // `bytes=a-` or `bytes=a-b`, honoured only when If-Range (if any) matches: an entity tag
    // the current ETag, by strong comparison (a weak one never); a date the current
    // Last-Modified, exactly.
    let asked = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            let a = a.parse::<u64>().ok()?;
            let b = if b.is_empty() {
                None
            } else {
                Some(b.parse::<u64>().ok()?)
            };
            Some((a, b))
        })
        .filter(|_| {
            let matches = |v: &str| match v.strip_prefix('"') {
                Some(_) => validators && v == etag && !etag.starts_with("W/"),
                None if v.starts_with("W/") => false,
                None => last_modified.as_deref() == Some(v),
            };
            matches!(act, Act::IgnoreIfRange) || if_range.as_deref().is_none_or(matches)
        })
        .filter(|_| !matches!(act, Act::IgnoreRange));
    let last = asked
        .and_then(|(_, b)| b)
        .map_or(total.saturating_sub(1), |b| b.min(total.saturating_sub(1)));
    let (status, start) = match asked.map(|(a, _)| a) {
        Some(n) if n >= total => {
            return HttpResponse::build(StatusCode::RANGE_NOT_SATISFIABLE)
                .insert_header((header::CONTENT_RANGE, format!("bytes */{total}")))
                .finish()
        }
        Some(n) => (StatusCode::PARTIAL_CONTENT, n),
        None => (StatusCode::OK, 0),
    };
    let claimed_start = match act {
        Act::WrongStart(delta) if status == StatusCode::PARTIAL_CONTENT => start + delta,
        _ => start,
    };
    let mut resp = HttpResponse::build(status);
    resp.insert_header((header::ACCEPT_RANGES, "bytes"));
    if validators {
        resp.insert_header((header::ETAG, etag));
    }
    if let Some(date) = last_modified {
        resp.insert_header((header::LAST_MODIFIED, date));
    }
    if let Some(date) = date {
        resp.insert_header((header::DATE, date));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        resp.insert_header((
            header::CONTENT_RANGE,
            format!("bytes {claimed_start}-{last}/{total}"),
        ));
    }
    let body = if total == 0 {
        Vec::new()
    } else {
        content[start as usize..=last as usize].to_vec()
    };
    let len = body.len() as u64;
    let (cut, chunk, every) = match act {
        Act::CutAt(at)
        | Act::Replacing {
            cut_at: Some(at), ..
        } => (Some(at.saturating_sub(start)), 16 * 1024, None),
        Act::CutAfter(n) => (Some(n), 16 * 1024, None),
        Act::Slow { chunk, every } => (None, chunk, Some(every)),
        _ => (None, 64 * 1024, None),
    };
    let chunks: Vec<web::Bytes> = body
        .chunks(chunk)
        .map(web::Bytes::copy_from_slice)
        .collect();
    let mut sent = 0u64;
    let stream = futures::stream::iter(chunks).then(move |c| async move {
        if let Some(every) = every {
            actix_rt::time::sleep(every).await;
        }
        Ok::<_, std::io::Error>(c)
    });
    let stream = stream.map(move |c| {
        let c = c?;
        sent_total.fetch_add(c.len() as u64, std::sync::atomic::Ordering::SeqCst);
        if let Some(cut) = cut {
            if sent >= cut {
                return Err(std::io::Error::other("scripted cut"));
            }
            let keep = (cut - sent).min(c.len() as u64) as usize;
            sent += keep as u64;
            return Ok(c.slice(..keep));
        }
        Ok(c)
    });
    resp.no_chunking(len).streaming(stream)
}

async fn upload(
    req: HttpRequest,
    mut body: web::Payload,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let mut n = 0usize;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => n += c.len(),
            Err(_) => break,
        }
    }
    let act = {
        let mut st = state.lock().unwrap();
        st.seen.push(Seen {
            port: req.peer_addr().map_or(0, |a| a.port()),
            range: None,
            if_range: None,
            authorization: header_str(&req, header::AUTHORIZATION),
            user_agent: header_str(&req, header::USER_AGENT),
            at: Instant::now(),
            body_len: n,
        });
        st.script.pop_front().unwrap_or(Act::Normal)
    };
    match act {
        Act::Status(code, retry_after) => {
            let mut resp = HttpResponse::build(StatusCode::from_u16(code).unwrap());
            if let Some(ra) = retry_after {
                resp.insert_header((header::RETRY_AFTER, ra));
            }
            resp.finish()
        }
        _ => HttpResponse::Ok().body(format!("{n}")),
    }
}
