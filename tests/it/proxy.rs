//! HTTP proxies: http in absolute form and https through a `CONNECT` tunnel (TLS to the origin
//! over it), through our own proxy (which records what it saw) and through Debian's tinyproxy;
//! with and without credentials (wrong ones: a `407` named as the proxy's, never retried);
//! `NO_PROXY` from the environment (in a child process: the test binary is multi-threaded);
//! a dead proxy named in the error.

use std::time::Duration;

use actix_transfer::*;

use crate::support::{proxy::*, *};

/// Retries on, and quick: a failure that is retried shows as more than one attempt.
fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(3)
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
}

fn retried(rig: &Rig, id: TransferId) -> bool {
    rig.events
        .kinds(id)
        .iter()
        .any(|k| matches!(k, EventKind::Retrying { .. }))
}

/// Download `url` into `a.bin`; the outcome.
async fn download(rig: &Rig, url: &str) -> (TransferId, Outcome) {
    let id = rig.submit(Download::new(url).to("a.bin")).await;
    (id, rig.wait(id).await)
}

fn assert_body(outcome: &Outcome, n: usize) {
    let path = outcome.path().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!(std::fs::read(path).unwrap(), pattern(n));
}

/// The `Proxy` error of a failed outcome, after `attempts` attempts.
fn proxy_error(outcome: Outcome, attempts: u32) -> TransferError {
    match outcome {
        Outcome::Failed {
            error,
            attempts: made,
            ..
        } => {
            assert_eq!(error.kind(), ErrorKind::Proxy, "{error:?}");
            assert_eq!(made, attempts, "{error}");
            error
        }
        other => panic!("{other:?}"),
    }
}

#[actix_rt::test]
async fn http_goes_to_the_proxy_in_absolute_form_and_uploads_keep_their_bodies() {
    let server = server();
    let proxy = TestProxy::start(None);
    let rig = rig_with(|b| b.proxy(&proxy.url)).await;
    let url = server.url("/bytes/200000");
    let (_, outcome) = download(&rig, &url).await;
    assert_body(&outcome, 200_000);
    assert_eq!(
        proxy.seen(),
        [Seen {
            line: format!("GET {url} HTTP/1.1"),
            auth: None
        }]
    );
    // A body follows the rewritten head intact.
    let data = pattern(300_001);
    let src = rig.dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let id = rig.submit(Upload::new(server.url("/upload"), &src)).await;
    let outcome = rig.wait(id).await;
    let reply = String::from_utf8(outcome.body().expect("completed").to_vec()).unwrap();
    assert_eq!(reply, format!("{} {}", data.len(), sha256_hex(&data)));
    assert_eq!(
        proxy.seen()[1].line,
        format!("PUT {} HTTP/1.1", server.url("/upload"))
    );
    assert_eq!(server.requests(), 2);
    server.stop().await;
}

#[actix_rt::test]
async fn credentials_go_to_the_proxy_on_each_plain_request() {
    let server = server();
    let proxy = TestProxy::start(Some(("user", "p@ss word")));
    let rig = rig_with(|b| b.proxy(proxy.url_with("user", "p%40ss%20word"))).await;
    for n in [1000, 2000] {
        let (_, outcome) = download(&rig, &server.url(&format!("/bytes/{n}"))).await;
        assert_body(&outcome, n);
        std::fs::remove_file(outcome.path().unwrap()).unwrap();
    }
    let seen = proxy.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(
            s.auth.as_deref(),
            Some(&*basic("user", "p@ss word")),
            "{s:?}"
        );
    }
    server.stop().await;
}

#[actix_rt::test]
async fn wrong_credentials_are_a_407_of_the_proxy_never_retried() {
    let server = server();
    let proxy = TestProxy::start(Some(("user", "right")));
    for (builder_url, sent) in [
        (proxy.url_with("user", "wrong"), true),
        (proxy.url.clone(), false),
    ] {
        let rig = rig_with(|b| b.proxy(&builder_url).retry(quick_retries())).await;
        let before = proxy.seen().len();
        let (id, outcome) = download(&rig, &server.url("/bytes/100")).await;
        let error = proxy_error(outcome, 1);
        assert!(!error.is_retryable());
        assert!(!retried(&rig, id));
        let message = error.to_string();
        let what = if sent {
            "refused the credentials"
        } else {
            "asks for credentials"
        };
        assert!(
            message.starts_with(&format!("the proxy {} {what}", proxy.url)),
            "{message}"
        );
        assert!(message.contains("407"), "{message}");
        assert!(!message.contains("wrong"), "{message}");
        assert!(
            !message.contains(&server.base),
            "names the proxy: {message}"
        );
        match error {
            TransferError::Proxy { status, .. } => assert_eq!(status, Some(407)),
            other => panic!("{other:?}"),
        }
        assert_eq!(proxy.seen().len(), before + 1, "one request, no retry");
        assert!(rig.files().is_empty(), "{:?}", rig.files());
    }
    assert_eq!(server.requests(), 0);
    server.stop().await;
}

#[actix_rt::test]
async fn a_dead_proxy_is_named_and_retried_like_a_refused_connection() {
    let server = server();
    let port = dead_port();
    let rig = rig_with(|b| {
        b.proxy(format!("http://user:secret@127.0.0.1:{port}"))
            .retry(quick_retries())
    })
    .await;
    let (id, outcome) = download(&rig, &server.url("/bytes/100")).await;
    let error = proxy_error(outcome, 3);
    assert!(error.is_retryable());
    assert!(retried(&rig, id));
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "the proxy http://127.0.0.1:{port} could not be reached: "
        )),
        "{message}"
    );
    assert!(
        !message.contains("secret") && !message.contains(&server.base),
        "{message}"
    );
    let io = std::error::Error::source(&error)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .expect("the io::Error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(server.requests(), 0);
    server.stop().await;
}

#[actix_rt::test]
async fn a_bad_proxy_url_keeps_the_engine_from_starting() {
    for (url, reason) in [
        ("https://127.0.0.1:3128", "only http:// proxies"),
        ("socks5://u:secret@127.0.0.1:1080", "only http:// proxies"),
        ("http://127.0.0.1:3128/some/path", "no path"),
        ("http://[oops", "not a URL"),
    ] {
        match Engine::builder().proxy(url).workers(0).try_start() {
            Err(e @ StartError::InvalidOption { option, .. }) => {
                assert_eq!(option, "proxy");
                let message = e.to_string();
                assert!(message.contains(reason), "{message}");
                assert!(!message.contains("secret"), "{message}");
            }
            Ok(_) => panic!("started with {url}"),
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(feature = "rustls")]
mod https {
    use super::*;
    use actix_web::http::Version;

    #[actix_rt::test]
    async fn https_goes_through_a_connect_tunnel_with_tls_and_h2_to_the_origin() {
        let pki = crate::tls::pki();
        let server = tls_server(pki.server);
        let proxy = TestProxy::start(Some(("u", "p")));
        let rig = rig_with(|b| {
            b.proxy(proxy.url_with("u", "p"))
                .add_root_certificate(pki.ca_pem.as_bytes())
        })
        .await;
        let (_, outcome) = download(&rig, &server.url("/bytes/300000")).await;
        assert_body(&outcome, 300_000);
        let authority = server.base.trim_start_matches("https://");
        assert_eq!(
            proxy.seen(),
            [Seen {
                line: format!("CONNECT {authority} HTTP/1.1"),
                auth: Some(basic("u", "p")),
            }]
        );
        // ALPN ran end to end with the origin, through the tunnel.
        assert_eq!(*server.state.versions.lock().unwrap(), [Version::HTTP_2]);
        server.stop().await;
    }

    #[actix_rt::test]
    async fn the_origins_certificate_is_checked_through_the_tunnel() {
        let pki = crate::tls::pki();
        let server = tls_server(pki.server);
        let proxy = TestProxy::start(None);
        // Without the private root: the origin's certificate is refused, as a TLS error of the
        // origin (not the proxy's), never retried.
        let rig = rig_with(|b| b.proxy(&proxy.url).retry(quick_retries())).await;
        let (_, outcome) = download(&rig, &server.url("/bytes/100")).await;
        match outcome {
            Outcome::Failed {
                error, attempts, ..
            } => {
                assert_eq!(error.kind(), ErrorKind::Tls, "{error:?}");
                assert_eq!(attempts, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(proxy.seen().len(), 1, "{:?}", proxy.seen());
        assert!(proxy.seen()[0].line.starts_with("CONNECT "));
        assert_eq!(server.requests(), 0);
        server.stop().await;
    }

    #[actix_rt::test]
    async fn wrong_credentials_on_connect_are_a_407_of_the_proxy_never_retried() {
        let pki = crate::tls::pki();
        let server = tls_server(pki.server);
        let proxy = TestProxy::start(Some(("u", "right")));
        let rig = rig_with(|b| {
            b.proxy(proxy.url_with("u", "wrong"))
                .add_root_certificate(pki.ca_pem.as_bytes())
                .retry(quick_retries())
        })
        .await;
        let (id, outcome) = download(&rig, &server.url("/bytes/100")).await;
        let error = proxy_error(outcome, 1);
        assert!(!retried(&rig, id));
        assert_eq!(
            error.to_string(),
            format!(
                "the proxy {} refused the credentials (407 Proxy Authentication Required)",
                proxy.url
            )
        );
        assert_eq!(proxy.seen().len(), 1);
        assert_eq!(server.requests(), 0);
        server.stop().await;
    }

    /// A `CONNECT` the proxy refuses (here `502`: the origin cannot be reached from it) names
    /// the proxy and its answer, and is retried as a server's `502` would be.
    #[actix_rt::test]
    async fn a_refused_tunnel_names_the_proxy_and_its_answer() {
        let proxy = TestProxy::start(None);
        let rig = rig_with(|b| b.proxy(&proxy.url).retry(quick_retries())).await;
        let origin = format!("127.0.0.1:{}", dead_port());
        let (id, outcome) = download(&rig, &format!("https://{origin}/x")).await;
        let error = proxy_error(outcome, 3);
        assert!(retried(&rig, id));
        assert_eq!(
            error.to_string(),
            format!(
                "the proxy {} answered 502 Bad Gateway to CONNECT {origin}",
                proxy.url
            )
        );
        match error {
            TransferError::Proxy { status, .. } => assert_eq!(status, Some(502)),
            other => panic!("{other:?}"),
        }
        assert_eq!(proxy.seen().len(), 3, "{:?}", proxy.seen());
    }

    /// A proxy that accepts the connection and never answers the `CONNECT` is named when the
    /// connect timeout passes (awc's own timer of the same length would say only "timed out").
    #[actix_rt::test]
    async fn a_silent_proxy_is_named_when_the_connect_timeout_passes() {
        // Connections complete in its backlog; nothing ever reads or answers them.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = format!("http://{}", silent.local_addr().unwrap());
        let rig = rig_with(|b| b.proxy(&proxy).connect_timeout(Duration::from_millis(300))).await;
        let url = "https://127.0.0.1:9/x";
        let (_, outcome) = download(&rig, url).await;
        let error = proxy_error(outcome, 1);
        assert!(error.is_retryable(), "as a connect timeout is");
        assert_eq!(
            error.to_string(),
            format!(
                "the proxy {proxy} did not open a tunnel to 127.0.0.1:9 within the connect \
                 timeout (300ms)"
            )
        );
    }

    /// A zero connect timeout means no limit through a proxy too: a proxy slow to open the
    /// tunnel is waited for.
    #[actix_rt::test]
    async fn a_zero_connect_timeout_means_no_limit_through_a_proxy() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = format!("http://{}", silent.local_addr().unwrap());
        let rig = rig_with(|b| b.proxy(&proxy).connect_timeout(Duration::ZERO)).await;
        let id = rig.submit(Download::new("https://127.0.0.1:9/x")).await;
        // Still connecting after a while (a timeout would have ended it at once).
        actix_rt::time::sleep(Duration::from_millis(300)).await;
        let status = rig.engine.send(Status(id)).await.unwrap().unwrap();
        assert_eq!(status.state, TransferState::Active, "{status:?}");
        rig.engine.send(Cancel(id)).await.unwrap().unwrap();
        assert!(matches!(rig.wait(id).await, Outcome::Cancelled { .. }));
    }

    /// tinyproxy, each case on its own instance: http and https, with and without
    /// credentials, and wrong credentials.
    #[actix_rt::test]
    async fn through_tinyproxy_http_and_https_with_and_without_credentials() {
        let Some(open) = Tinyproxy::start(None) else {
            return;
        };
        let Some(guarded) = Tinyproxy::start(Some(("user", "pass"))) else {
            return;
        };
        let pki = crate::tls::pki();
        let plain = server();
        let secure = tls_server(pki.server);
        for (proxy_url, label) in [
            (open.url(), "tinyproxy"),
            (guarded.url_with("user", "pass"), "tinyproxy with BasicAuth"),
        ] {
            let rig = rig_with(|b| {
                b.proxy(&proxy_url)
                    .add_root_certificate(pki.ca_pem.as_bytes())
            })
            .await;
            for (base, n) in [(&plain, 150_000), (&secure, 250_000)] {
                let id = rig
                    .submit(Download::new(base.url(&format!("/bytes/{n}"))).to(format!("{n}.bin")))
                    .await;
                let outcome = rig.wait(id).await;
                let path = outcome
                    .path()
                    .unwrap_or_else(|| panic!("{label}: {outcome:?}\n{}", guarded.log()));
                assert_eq!(std::fs::read(path).unwrap(), pattern(n), "{label}");
            }
        }
        assert_eq!(plain.requests(), 2);
        assert_eq!(secure.requests(), 2);
        // tinyproxy logged the requests it carried: absolute form and CONNECT.
        let log = open.log();
        assert!(
            log.contains(&format!("GET {} HTTP/1.1", plain.url("/bytes/150000"))),
            "{log}"
        );
        assert!(
            log.contains(&format!(
                "CONNECT {}",
                secure.base.trim_start_matches("https://")
            )),
            "{log}"
        );

        for (url, what) in [
            (guarded.url_with("user", "nope"), "refused the credentials"),
            (guarded.url(), "asks for credentials"),
        ] {
            let rig = rig_with(|b| {
                b.proxy(&url)
                    .add_root_certificate(pki.ca_pem.as_bytes())
                    .retry(quick_retries())
            })
            .await;
            for base in [&plain, &secure] {
                let (id, outcome) = download(&rig, &base.url("/bytes/10")).await;
                if what == "refused the credentials" && base.base.starts_with("http:") {
                    // tinyproxy answers wrong credentials with `401 Unauthorized` and
                    // `WWW-Authenticate`, which to a plain request reads as the origin's
                    // answer: not retried either.
                    match outcome {
                        Outcome::Failed {
                            error, attempts, ..
                        } => {
                            assert_eq!(error, TransferError::Server { status: 401 });
                            assert_eq!(attempts, 1);
                        }
                        other => panic!("{other:?}"),
                    }
                    continue;
                }
                let error = proxy_error(outcome, 1);
                assert!(!retried(&rig, id));
                let message = error.to_string();
                assert!(
                    message.starts_with(&format!("the proxy {} {what}", guarded.url())),
                    "{message}"
                );
                assert!(!message.contains("nope"), "{message}");
            }
        }
        assert_eq!(plain.requests(), 2);
        assert_eq!(secure.requests(), 2);
        plain.stop().await;
        secure.stop().await;
    }
}

/// The environment variable that makes [`env_child`] run: the parent test sets it.
const CHILD: &str = "ACTIX_TRANSFER_PROXY_ENV_CHILD";

/// `NO_PROXY` and `http_proxy` from the environment, end to end: the test binary runs
/// [`env_child`] alone in a child process with them set (setting variables in this
/// multi-threaded binary would race with every other test).
#[test]
fn proxy_from_env_honours_no_proxy_in_a_child_process() {
    let proxy = TestProxy::start(None);
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "proxy::env_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("http_proxy", &proxy.url)
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .env("no_proxy", "example.invalid, 127.0.0.1")
        .env_remove("NO_PROXY")
        .env_remove("HTTP_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("https_proxy")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child test ran: {text}");
    // 127.0.0.1 went direct; localhost (not listed) through the proxy.
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].line.starts_with("GET http://localhost:"),
        "{seen:?}"
    );
}

/// Run by [`proxy_from_env_honours_no_proxy_in_a_child_process`] in a child process, with the
/// proxy variables set; it does nothing in the test run itself.
#[actix_rt::test]
async fn env_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let server = server();
    let rig = rig_with(|b| b.proxy_from_env()).await;
    let direct = server.url("/bytes/1000");
    let (_, outcome) = download(&rig, &direct).await;
    assert_body(&outcome, 1000);
    std::fs::remove_file(outcome.path().unwrap()).unwrap();
    let port = server.base.rsplit(':').next().unwrap();
    let proxied = format!("http://localhost:{port}/bytes/2000");
    let (_, outcome) = download(&rig, &proxied).await;
    assert_body(&outcome, 2000);
    server.stop().await;
}
