//! What the engine logs: URLs without query strings or credentials.
//!
//! Alone in its binary: it installs a global `tracing` subscriber (a scoped one on the test's
//! thread can miss events, as `tracing` caches whether a call site is of interest process-wide,
//! from whichever thread of a parallel test reaches it first).

// The support tree serves every test binary; this one uses a small part of it.
#[allow(dead_code, unused_imports)]
#[path = "it/support/mod.rs"]
mod support;

use support::hostile;

use actix_transfer::{Download, ErrorKind, Fetch};
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

/// The engine logs URLs as `scheme://host/path`: no query (it often carries a token or a
/// signature) and never credentials, on every line and in every span, at debug level.
#[actix_rt::test]
async fn the_debug_log_shows_neither_query_strings_nor_credentials() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
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
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
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
