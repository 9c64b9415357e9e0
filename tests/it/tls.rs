//! TLS: a server whose certificate a private CA made in the test signs (rcgen), refused
//! without that root and never retried, trusted with `add_root_certificate` or a `tls_config`
//! of one's own; HTTP/2 by ALPN for downloads and uploads, and one stream cancelled while the
//! others on its connection go on. DNS failures as their own kind.

use std::{sync::atomic::Ordering::SeqCst, sync::Arc, time::Duration};

use actix_transfer::*;
use actix_web::http::Version;
use rcgen::SanType;
use rustls::{pki_types::PrivatePkcs8KeyDer, RootCertStore};

use crate::support::*;

/// A CA and a server certificate it signed, for `localhost` and `127.0.0.1` (tests/it/proxy.rs
/// too).
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) ca_der: rustls::pki_types::CertificateDer<'static>,
    pub(crate) server: rustls::ServerConfig,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn pki() -> Pki {
    pki_for(vec![
        SanType::DnsName("localhost".try_into().unwrap()),
        SanType::IpAddress([127, 0, 0, 1].into()),
    ])
}

/// A CA and a server certificate it signed for the names `sans`, and no other.
fn pki_for(sans: Vec<SanType>) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "actix-transfer test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    let cert = params.signed_by(&key, &issuer).unwrap();

    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        ca_der: ca.der().clone(),
        server,
    }
}

/// A client config of one's own that trusts `ca` alone (ALPN left empty).
fn own_config(ca: &rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Retries on, and quick: a failure that is retried shows as more than one attempt.
fn quick_retries() -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(4)
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
}

/// A download from `server` fails as `Tls` in one attempt, never retried (the same certificate
/// comes back), with no request through and no file; its error, whose message reads as a
/// sentence.
async fn download_fails_as_tls_once(rig: &Rig, server: &Server) -> TransferError {
    let id = rig
        .submit(Download::new(server.url("/bytes/1000")).to("a.bin"))
        .await;
    let outcome = rig.wait(id).await;
    let Outcome::Failed {
        error, attempts, ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(error.kind(), ErrorKind::Tls, "{error:?}");
    assert_eq!(attempts, 1, "a certificate error is never retried");
    assert!(!error.is_retryable());
    assert_sentence(&error.to_string());
    assert!(
        !rig.events
            .kinds(id)
            .iter()
            .any(|k| matches!(k, EventKind::Retrying { .. })),
        "no retry"
    );
    assert_eq!(server.requests(), 0, "no request got through");
    assert!(rig.files().is_empty(), "{:?}", rig.files());
    error
}

#[actix_rt::test]
async fn an_untrusted_certificate_fails_as_tls_in_one_attempt() {
    let pki = pki();
    let server = tls_server(pki.server);
    let rig = rig_with(|b| b.retry(quick_retries())).await;
    let error = download_fails_as_tls_once(&rig, &server).await;
    assert_eq!(
        error.to_string(),
        "TLS handshake failed: invalid peer certificate: unknown issuer"
    );
    let io = std::error::Error::source(&error)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .expect("the io::Error is the source");
    assert!(io.get_ref().is_some_and(|e| e.is::<rustls::Error>()));
    server.stop().await;
}

/// A certificate from a trusted CA whose names do not cover the host (made for
/// `example.test`, reached as 127.0.0.1): a TLS error in one attempt, never retried (the same
/// certificate comes back), whose message reads as a sentence naming both.
#[actix_rt::test]
async fn a_certificate_for_another_name_fails_as_tls_in_one_attempt() {
    let pki = pki_for(vec![SanType::DnsName("example.test".try_into().unwrap())]);
    let server = tls_server(pki.server);
    let rig = rig_with(|b| {
        b.retry(quick_retries())
            .add_root_certificate(pki.ca_pem.as_bytes())
    })
    .await;
    let error = download_fails_as_tls_once(&rig, &server).await;
    assert_eq!(
        error.to_string(),
        "TLS handshake failed: invalid peer certificate: certificate not valid for name \
         \"127.0.0.1\"; certificate is only valid for dns name \"example.test\""
    );
    server.stop().await;
}

#[actix_rt::test]
async fn a_private_root_added_as_pem_is_trusted_and_h2_is_negotiated() {
    let pki = pki();
    let server = tls_server(pki.server);
    let rig = rig_with(|b| b.add_root_certificate(pki.ca_pem.as_bytes())).await;
    let data = pattern(300_000);
    let id = rig
        .submit(Download::new(server.url("/bytes/300000")).to("a.bin"))
        .await;
    let outcome = rig.wait(id).await;
    let path = outcome.path().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(*server.state.versions.lock().unwrap(), [Version::HTTP_2]);
    server.stop().await;
}

#[actix_rt::test]
async fn a_tls_config_of_ones_own_is_used_and_its_alpn_kept() {
    let pki = pki();
    let server = tls_server(pki.server);

    // No ALPN in the config: the engine offers h2 and http/1.1.
    let rig = rig_with(|b| b.tls_config(own_config(&pki.ca_der))).await;
    let id = rig
        .submit(Download::new(server.url("/bytes/5000")).to("a.bin"))
        .await;
    let outcome = rig.wait(id).await;
    let path = outcome.path().unwrap_or_else(|| panic!("{outcome:?}"));
    assert_eq!(std::fs::read(path).unwrap(), pattern(5000));

    // A list of its own is kept: HTTP/1.1 only.
    let mut http1 = own_config(&pki.ca_der);
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let rig = rig_with(|b| b.tls_config(http1)).await;
    let id = rig
        .submit(Download::new(server.url("/bytes/5000")).to("a.bin"))
        .await;
    assert!(rig.wait(id).await.path().is_some());
    assert_eq!(
        *server.state.versions.lock().unwrap(),
        [Version::HTTP_2, Version::HTTP_11]
    );
    server.stop().await;
}

#[actix_rt::test]
async fn bad_tls_options_keep_the_engine_from_starting() {
    let pki = pki();
    for (builder, reason) in [
        (
            Engine::builder().add_root_certificate(b"not PEM at all"),
            "holds no CERTIFICATE section",
        ),
        (
            Engine::builder()
                .tls_config(own_config(&pki.ca_der))
                .add_root_certificate(pki.ca_pem.as_bytes()),
            "add the certificate to that config's root store",
        ),
    ] {
        match builder.workers(0).try_start() {
            Err(e @ StartError::InvalidOption { option, .. }) => {
                assert_eq!(option, "add_root_certificate");
                assert!(e.to_string().contains(reason), "{e}");
                assert_sentence(&e.to_string());
            }
            Ok(_) => panic!("started"),
            Err(e) => panic!("{e}"),
        }
    }
}

#[actix_rt::test]
async fn h2_uploads_and_fetches_are_byte_exact() {
    let pki = pki();
    let server = tls_server(pki.server);
    let rig = rig_with(|b| b.add_root_certificate(pki.ca_pem.as_bytes())).await;
    let data = pattern(1_234_567);
    let src = rig.dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let id = rig.submit(Upload::new(server.url("/upload"), &src)).await;
    let outcome = rig.wait(id).await;
    let reply = String::from_utf8(outcome.body().expect("completed").to_vec()).unwrap();
    assert_eq!(reply, format!("{} {}", data.len(), sha256_hex(&data)));
    assert_eq!(server.state.uploads.lock().unwrap()[0].3, data);

    let id = rig.submit(Fetch::get(server.url("/chunked/100000"))).await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.body().expect("completed").as_ref(),
        pattern(100_000)
    );
    assert_eq!(
        *server.state.versions.lock().unwrap(),
        [Version::HTTP_2, Version::HTTP_2]
    );
    server.stop().await;
}

#[actix_rt::test]
async fn cancelling_one_h2_stream_leaves_the_others_on_its_connection() {
    let pki = pki();
    let server = tls_server(pki.server);
    let rig = rig_with(|b| b.workers(1).add_root_certificate(pki.ca_pem.as_bytes())).await;
    const N: usize = 200_000;
    let began = |k: &EventKind| matches!(k, EventKind::Began { .. });
    // The first one opens the connection; the others, once it is up, share it.
    let first = rig
        .submit(Download::new(server.url("/slow/200000")).to("0.bin"))
        .await;
    rig.events.until_kind(first, began).await;
    let mut ids = vec![first];
    for i in 1..3 {
        let id = rig
            .submit(Download::new(server.url("/slow/200000")).to(format!("{i}.bin")))
            .await;
        rig.events.until_kind(id, began).await;
        ids.push(id);
    }
    let victim = ids[1];
    let answer = rig.engine.send(Cancel(victim)).await.unwrap();
    assert_eq!(answer, Ok(()));
    assert!(matches!(rig.wait(victim).await, Outcome::Cancelled { .. }));
    for id in [ids[0], ids[2]] {
        let outcome = rig.wait(id).await;
        let path = outcome.path().unwrap_or_else(|| panic!("{outcome:?}"));
        assert_eq!(std::fs::read(path).unwrap(), pattern(N));
    }
    let victim_conn = {
        let slow = server.state.slow.lock().unwrap();
        assert_eq!(slow.len(), 3);
        Arc::clone(&slow[1])
    };
    assert!(
        victim_conn.dropped.load(SeqCst),
        "the cancelled stream was reset"
    );
    assert!(victim_conn.sent.load(SeqCst) < N as u64);
    assert_eq!(
        server.state.connections.load(SeqCst),
        1,
        "the three streams shared one connection"
    );
    assert_eq!(*server.state.versions.lock().unwrap(), [Version::HTTP_2; 3]);
    assert_eq!(rig.files(), ["0.bin", "2.bin"]);
    server.stop().await;
}

/// `.invalid` never resolves (RFC 6761). A resolver that answers says the name does not exist:
/// not retried. One that cannot be reached says the failure is temporary: retried. Either
/// way the kind is `dns`, and nothing but the resolver was asked.
#[actix_rt::test]
async fn a_name_that_does_not_resolve_fails_as_dns() {
    let rig = rig_with(|b| b.retry(quick_retries())).await;
    let id = rig
        .submit(Download::new("http://nonexistent.invalid/file").to("a.bin"))
        .await;
    match rig.wait(id).await {
        Outcome::Failed {
            error, attempts, ..
        } => {
            assert_eq!(error.kind(), ErrorKind::Dns, "{error:?}");
            let message = error.to_string();
            assert!(
                message.starts_with("could not resolve the host name: "),
                "{message}"
            );
            assert_sentence(&message);
            let TransferError::Dns { temporary, .. } = error else {
                unreachable!()
            };
            assert_eq!(error.is_retryable(), temporary);
            let expected = if temporary { 4 } else { 1 };
            assert_eq!(attempts, expected, "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(rig.files().is_empty());
}

/// The environment variable that makes [`native_roots_child`] run: the parent test sets it to
/// what the child must see (`trusted` or `refused`).
#[cfg(feature = "native-roots")]
const NATIVE_CHILD: &str = "ACTIX_TRANSFER_NATIVE_ROOTS_CHILD";

/// The URL the child downloads from (the parent's TLS server).
#[cfg(feature = "native-roots")]
const NATIVE_URL: &str = "ACTIX_TRANSFER_NATIVE_ROOTS_URL";

/// Feature `native-roots`: an engine with default TLS settings (no `add_root_certificate`)
/// trusts the operating system's roots, which `SSL_CERT_FILE` replaces: pointed at the test
/// CA's PEM, the TLS server is reached; without it (the system's store, which does not hold
/// the test CA), the certificate is refused as `Tls`. Each case runs [`native_roots_child`]
/// alone in a child process (setting variables in this multi-threaded binary would race with
/// every other test); this server serves both.
#[cfg(feature = "native-roots")]
#[actix_rt::test]
async fn native_roots_follow_ssl_cert_file_in_a_child_process() {
    use std::process::{Command, Stdio};
    let pki = pki();
    let server = tls_server(pki.server);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    for (cert_file, expect) in [(Some(&ca), "trusted"), (None, "refused")] {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "tls::native_roots_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(NATIVE_CHILD, expect)
            .env(NATIVE_URL, server.url("/bytes/100000"))
            .env_remove("SSL_CERT_DIR")
            .env_remove("SSL_CERT_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(file) = cert_file {
            command.env("SSL_CERT_FILE", file);
        }
        let mut child = command.spawn().unwrap();
        // Read while it runs (a full pipe would stall it); this thread serves the server.
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_string(&mut text);
                }
                text
            })
        };
        let out = read(child.stdout.take().map(|p| Box::new(p) as _));
        let err = read(child.stderr.take().map(|p| Box::new(p) as _));
        let status = exit_status(&mut child, expect).await;
        let text = format!("{}\n{}", out.join().unwrap(), err.join().unwrap());
        assert!(status.success(), "{expect}: {text}");
        assert!(
            text.contains("1 passed"),
            "{expect}: the child test ran: {text}"
        );
    }
    assert_eq!(server.requests(), 1, "only the trusting child got through");
    server.stop().await;
}

/// Run by [`native_roots_follow_ssl_cert_file_in_a_child_process`] in a child process; it does
/// nothing in the test run itself.
#[cfg(feature = "native-roots")]
#[actix_rt::test]
async fn native_roots_child() {
    let Some(expect) = std::env::var_os(NATIVE_CHILD) else {
        return;
    };
    let url = std::env::var(NATIVE_URL).unwrap();
    // Default TLS settings: the bundled roots and the operating system's.
    let rig = rig_with(|b| b.retry(quick_retries())).await;
    let id = rig.submit(Download::new(url).to("a.bin")).await;
    let outcome = rig.wait(id).await;
    match (expect.to_str().unwrap(), outcome) {
        ("trusted", outcome) => {
            let path = outcome.path().unwrap_or_else(|| panic!("{outcome:?}"));
            assert_eq!(std::fs::read(path).unwrap(), pattern(100_000));
        }
        (
            "refused",
            Outcome::Failed {
                error, attempts, ..
            },
        ) => {
            assert_eq!(error.kind(), ErrorKind::Tls, "{error:?}");
            assert_eq!(attempts, 1, "{error}");
            assert_eq!(
                error.to_string(),
                "TLS handshake failed: invalid peer certificate: unknown issuer"
            );
        }
        (expect, other) => panic!("{expect}: {other:?}"),
    }
}
