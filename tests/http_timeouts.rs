//! Timeouts: connect, response headers, idle (stall) during a body, an overall deadline; none
//! of them cuts a slow but moving transfer, and an upload is not cut by a request timeout.

mod hostile;
mod support;

use std::{net::TcpListener, time::Duration};

use actix_transfer::*;
use hostile::{head, response, Hostile, Reply};
use support::*;

fn short_timeouts(b: EngineBuilder) -> EngineBuilder {
    b.connect_timeout(Duration::from_millis(300))
        .headers_timeout(Duration::from_millis(300))
        .idle_timeout(Duration::from_millis(300))
}

#[actix_rt::test]
async fn a_server_that_accepts_and_never_answers_times_out_waiting_for_headers() {
    let server = Hostile::start(|_| Reply::Stall(Vec::new()));
    let rig = rig_with(short_timeouts).await;
    let id = rig
        .submit(Download::new(server.url("/silent")).to("t"))
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error(),
        Some(&TransferError::Timeout(TimeoutPhase::Headers))
    );
    assert!(rig.files().is_empty(), "{:?}", rig.files());
}

#[actix_rt::test]
async fn a_body_that_stalls_times_out_as_idle() {
    let server = Hostile::start(|_| {
        Reply::Stall(response(
            "200 OK",
            &[("content-length", "100000".into())],
            &[1u8; 20_000],
        ))
    });
    let rig = rig_with(short_timeouts).await;
    let id = rig
        .submit(Download::new(server.url("/stall")).to("t"))
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error(),
        Some(&TransferError::Timeout(TimeoutPhase::Idle))
    );
    assert_eq!(outcome.bytes(), 20_000);
    assert!(!rig.dir.path().join("t").exists());
}

#[actix_rt::test]
async fn a_slow_but_moving_body_is_not_cut() {
    // 60 pieces, one every 50 ms: 3 s in all, far over the 300 ms idle timeout.
    let body = pattern(60 * 500);
    let b = body.clone();
    let server = Hostile::start(move |_| Reply::Drip {
        head: head("200 OK", &[("content-length", b.len().to_string())]),
        body: b.clone(),
        chunk: 500,
        every: Duration::from_millis(50),
    });
    let rig = rig_with(short_timeouts).await;
    let id = rig.submit(Download::new(server.url("/drip")).to("t")).await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        std::fs::read(outcome.path().expect("completed")).unwrap(),
        body
    );
}

#[actix_rt::test]
async fn the_total_deadline_cuts_even_a_moving_body() {
    let server = Hostile::start(move |_| Reply::Drip {
        head: head("200 OK", &[("content-length", "30000".into())]),
        body: vec![3u8; 30_000],
        chunk: 500,
        every: Duration::from_millis(50),
    });
    let rig = rig_with(|b| short_timeouts(b).total_timeout(Duration::from_millis(500))).await;
    let id = rig.submit(Download::new(server.url("/drip")).to("t")).await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error(),
        Some(&TransferError::Timeout(TimeoutPhase::Total))
    );
    assert!(!rig.dir.path().join("t").exists());
}

#[actix_rt::test]
async fn a_connection_that_cannot_be_established_times_out_connecting() {
    // A listener that never accepts, its backlog filled: further SYNs are dropped.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..512 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let rig = rig_with(short_timeouts).await;
    let id = rig
        .submit(Download::new(format!("http://{addr}/x")).to("t"))
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error(),
        Some(&TransferError::Timeout(TimeoutPhase::Connect)),
        "{outcome:?}"
    );
    drop(listener);
}

#[actix_rt::test]
async fn a_refused_connection_is_a_connect_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let rig = rig().await;
    let id = rig.submit(Fetch::get(format!("http://{addr}/x"))).await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error().map(TransferError::kind),
        Some(ErrorKind::Connect),
        "{outcome:?}"
    );
}

#[actix_rt::test]
async fn a_long_upload_is_not_cut_by_the_headers_timeout() {
    // 1 MiB at 1 MiB/s takes about a second, more than three headers timeouts.
    let server = server();
    let rig = rig_with(short_timeouts).await;
    let src = rig.dir.path().join("up.bin");
    std::fs::write(&src, pattern(1 << 20)).unwrap();
    let id = rig
        .submit(Upload::new(server.url("/upload"), &src).max_rate(1 << 20))
        .await;
    let outcome = rig.wait(id).await;
    let reply = String::from_utf8(outcome.body().expect("completed").to_vec()).unwrap();
    assert!(reply.starts_with("1048576 "), "{reply}");
}
