//! What the engine and its control plane log: URLs without query strings or credentials, and
//! never the control plane's token.
//!
//! Alone in its binary: it installs a global `tracing` subscriber (a scoped one on the test's
//! thread can miss events, as `tracing` caches whether a call site is of interest process-wide,
//! from whichever thread of a parallel test reaches it first). The tests share it, so each
//! checks the whole log, its neighbour's lines too.

// The support tree serves every test binary; this one uses a small part of it.
#[allow(dead_code, unused_imports)]
#[path = "it/support/mod.rs"]
mod support;

use support::hostile;

use std::sync::OnceLock;

use actix_transfer::{
    web::{ControlPanel, WebConfig},
    Download, ErrorKind, Fetch,
};
use hostile::*;

const NAME: &str = "r.bin";

/// Collects what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The process's log, at debug level, captured from the first call on.
fn capture() -> Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
    .clone()
}

/// The engine logs URLs as `scheme://host/path`: no query (it often carries a token or a
/// signature) and never credentials, on every line and in every span, at debug level.
#[actix_rt::test]
async fn the_debug_log_shows_neither_query_strings_nor_credentials() {
    let log = capture();
    let server = Hostile::start(|req| {
        let answer = match req.path.split('?').next().unwrap() {
            "/start" => redirect(302, "/next?sig=QUERY-TWO"),
            "/next" => redirect(
                302,
                &format!(
                    "http://u:secret@{}/y?sig=QUERY-THREE",
                    req.header("host").unwrap()
                ),
            ),
            "/a" => redirect(301, "/b?sig=QUERY-FIVE"),
            _ => ok(b"fine"),
        };
        vec![Step::Write(answer)]
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, refused) = run(
        &engine,
        Download::new(server.url("/start?token=QUERY-ONE")).to(NAME),
    )
    .await;
    let (_, fetched) = run(&engine, Fetch::get(server.url("/a?token=QUERY-FOUR"))).await;

    // Through a proxy with credentials, and a dead one with credentials: neither the password
    // nor the `Proxy-Authorization` value is logged.
    let proxy = support::proxy::TestProxy::start(Some(("user", "PROXY-SECRET")));
    let proxied = hostile::engine(dir.path(), |b| {
        b.proxy(proxy.url_with("user", "PROXY-SECRET"))
    });
    let (_, through) = run(&proxied, Fetch::get(server.url("/p"))).await;
    assert!(through.is_completed(), "{through:?}");
    let dead = hostile::engine(dir.path(), |b| {
        b.proxy(format!(
            "http://user:PROXY-SECRET@127.0.0.1:{}",
            support::proxy::dead_port()
        ))
    });
    let (_, unreachable) = run(&dead, Fetch::get(server.url("/p"))).await;
    assert_failed(&unreachable, ErrorKind::Proxy);

    assert_failed(&refused, ErrorKind::RedirectRefused);
    assert!(fetched.is_completed(), "{fetched:?}");
    let log = log.text();
    assert!(log.contains("through a proxy"), "{log}");
    let basic = support::proxy::basic("user", "PROXY-SECRET");
    let encoded = basic.trim_start_matches("Basic ");
    assert!(
        !log.contains(encoded),
        "the proxy credentials logged: {log}"
    );
    // The log was captured, with the URLs' hosts and paths.
    assert!(log.contains("following redirect"), "{log}");
    for path in ["/start", "/next", "/a", "/b"] {
        assert!(log.contains(&server.url(path)), "{path} not logged: {log}");
    }
    for secret in [
        "QUERY-ONE",
        "QUERY-TWO",
        "QUERY-THREE",
        "QUERY-FOUR",
        "QUERY-FIVE",
        "secret",
        "SECRET",
    ] {
        assert!(!log.contains(secret), "{secret} logged: {log}");
    }
}

/// The control plane logs each request's method, path and status, and a submitted or refused
/// URL as `scheme://host/path`: never a query string (the API's own or a submitted URL's),
/// credentials, or the bearer token, right or wrong, at debug level.
#[actix_rt::test]
async fn the_web_debug_log_shows_neither_query_strings_nor_credentials_nor_the_token() {
    const TOKEN: &str = "WEB-TOKEN-1234";
    let log = capture();
    let server = Hostile::start(|_| vec![Step::Write(ok(b"fine"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let config = WebConfig::with_token(TOKEN).url_policy(|url| match url.path() {
        "/refused" => Err("refused by the test's policy".into()),
        _ => Ok(()),
    });
    let panel = ControlPanel::start(engine.clone(), config);
    let p = panel.clone();
    let (base, handle) = support::serve_app(move |app| p.routes()(app));
    let client = awc::Client::new();
    let post = |body: serde_json::Value| {
        let req = client
            .post(format!("{base}/api/transfers"))
            .bearer_auth(TOKEN);
        async move {
            let mut res = req.send_json(&body).await.unwrap();
            let v: serde_json::Value = res.json().await.unwrap();
            (res.status().as_u16(), v)
        }
    };
    let host = server.url("/").split('/').nth(2).unwrap().to_owned();

    let (code, v) = post(serde_json::json!({
        "url": server.url("/file?sig=WEB-SIGNATURE-1"),
        "mirrors": [server.url("/mirror?sig=WEB-SIGNATURE-2")],
    }))
    .await;
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_u64().unwrap();
    // Credentials: refused by the engine, and by the policy before it.
    let (code, v) = post(serde_json::json!({
        "url": format!("http://user:WEB-PASSWORD-1@{host}/file?sig=WEB-SIGNATURE-3"),
    }))
    .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = post(serde_json::json!({
        "url": format!("http://user:WEB-PASSWORD-2@{host}/refused?sig=WEB-SIGNATURE-4"),
    }))
    .await;
    assert_eq!(code, 403, "{v}");
    // A wrong token, and the API's own query string.
    let res = client
        .get(format!("{base}/api/stats"))
        .bearer_auth("WRONG-TOKEN-5678")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let start = std::time::Instant::now();
    loop {
        let mut res = client
            .get(format!("{base}/api/transfers?state=ended&note=WEB-QUERY-5"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let ended: serde_json::Value = res.json().await.unwrap();
        if ended.as_array().unwrap().iter().any(|t| t["id"] == id) {
            break;
        }
        assert!(start.elapsed() < LIMIT, "#{id} never ended");
        actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panel.close().await;
    handle.stop(true).await;

    let log = log.text();
    // The log was captured, each kind of line.
    for line in [
        "transfer submitted",
        "URL refused by the policy",
        "refused: no valid token",
        "path=/api/transfers",
        "path=/api/stats",
    ] {
        assert!(log.contains(line), "no {line:?} in: {log}");
    }
    assert!(log.contains(&server.url("/file")), "{log}");
    for secret in [
        "WEB-SIGNATURE",
        "WEB-PASSWORD",
        "WEB-QUERY",
        "state=ended",
        TOKEN,
        "WRONG-TOKEN",
    ] {
        assert!(!log.contains(secret), "{secret} logged: {log}");
    }
}
