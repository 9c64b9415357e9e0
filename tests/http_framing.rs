//! Framing: a body that does not match its announced length, or whose length awc cannot know,
//! never ends as a completed file.

mod hostile;
mod support;

use actix_transfer::*;
use hostile::{head, response, Hostile, Reply};
use support::*;

fn cl(n: usize) -> (&'static str, String) {
    ("content-length", n.to_string())
}

/// Download `path` from `server` into `name` and return the outcome.
async fn get(rig: &Rig, server: &Hostile, path: &str) -> Outcome {
    let id = rig
        .submit(Download::new(server.url(path)).to("target.bin"))
        .await;
    rig.wait(id).await
}

fn assert_no_final_file(rig: &Rig) {
    assert!(
        !rig.dir.path().join("target.bin").exists(),
        "no completed file: {:?}",
        rig.files()
    );
}

#[actix_rt::test]
async fn a_short_body_with_fin_is_truncated() {
    let server = Hostile::start(|_| Reply::Close(response("200 OK", &[cl(1000)], &[7u8; 500])));
    let rig = rig().await;
    let outcome = get(&rig, &server, "/short").await;
    assert_eq!(
        outcome.error(),
        Some(&TransferError::Truncated {
            expected: 1000,
            received: 500
        })
    );
    assert_no_final_file(&rig);
}

#[actix_rt::test]
async fn a_reset_mid_body_is_truncated() {
    let server =
        Hostile::start(|_| Reply::Reset(response("200 OK", &[cl(100_000)], &[1u8; 30_000])));
    let rig = rig().await;
    let outcome = get(&rig, &server, "/reset").await;
    match outcome.error() {
        Some(TransferError::Truncated { expected, received }) => {
            assert_eq!(*expected, 100_000);
            assert!(*received <= 30_000);
        }
        other => panic!("{other:?}"),
    }
    assert_no_final_file(&rig);
}

#[actix_rt::test]
async fn conflicting_lengths_are_bad_content() {
    let rig = rig().await;
    for headers in [
        vec![cl(10), cl(11)],
        vec![("content-length", "10, 11".to_string())],
        vec![cl(10), ("transfer-encoding", "chunked".to_string())],
    ] {
        let h = headers.clone();
        let server = Hostile::start(move |_| Reply::Close(response("200 OK", &h, b"0123456789")));
        let outcome = get(&rig, &server, "/conflict").await;
        assert_eq!(
            outcome.error().map(TransferError::kind),
            Some(ErrorKind::BadContent),
            "{headers:?}: {outcome:?}"
        );
        assert_no_final_file(&rig);
    }
}

#[actix_rt::test]
async fn an_unframed_http11_body_is_refused_not_completed_empty() {
    let server = Hostile::start(|_| {
        Reply::Close(response(
            "200 OK",
            &[("connection", "close".into())],
            &[9u8; 500],
        ))
    });
    let rig = rig().await;
    let outcome = get(&rig, &server, "/unframed").await;
    assert_eq!(
        outcome.error().map(TransferError::kind),
        Some(ErrorKind::BadContent),
        "{outcome:?}"
    );
    assert_no_final_file(&rig);
}

#[actix_rt::test]
async fn an_http10_body_delimited_by_close_is_read_whole() {
    let server = Hostile::start(|_| {
        let mut r = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n".to_vec();
        r.extend_from_slice(&pattern(5000));
        Reply::Close(r)
    });
    let rig = rig().await;
    let outcome = get(&rig, &server, "/http10").await;
    assert_eq!(
        std::fs::read(outcome.path().expect("completed")).unwrap(),
        pattern(5000)
    );
}

fn chunked(body: &[u8], terminate: bool) -> Vec<u8> {
    let mut out = head("200 OK", &[("transfer-encoding", "chunked".into())]);
    for piece in body.chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    if terminate {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    out
}

#[actix_rt::test]
async fn a_chunked_body_completes_without_an_invented_size() {
    let server = Hostile::start(|_| Reply::Close(chunked(&pattern(12_345), true)));
    let rig = rig().await;
    let outcome = get(&rig, &server, "/chunked").await;
    assert_eq!(
        std::fs::read(outcome.path().expect("completed")).unwrap(),
        pattern(12_345)
    );
    let status = rig
        .engine
        .send(Status(rig.events.all()[0].id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.bytes_estimated, None);
}

#[actix_rt::test]
async fn a_chunked_body_reset_mid_chunk_fails() {
    let server = Hostile::start(|_| {
        let mut r = chunked(&pattern(10_000), false);
        r.truncate(r.len() - 500); // cut inside the last chunk
        Reply::Reset(r)
    });
    let rig = rig().await;
    let outcome = get(&rig, &server, "/chunked-reset").await;
    assert!(!outcome.is_completed(), "{outcome:?}");
    assert_no_final_file(&rig);
}

#[actix_rt::test]
async fn a_long_body_is_cut_at_the_announced_length() {
    // The server sends 100 bytes more than it announced, then closes: the download holds
    // exactly the announced length, and the next transfer to that server is unaffected.
    let server = Hostile::start(|req| {
        if hostile::path_of(req) == "/long" {
            Reply::Close(response("200 OK", &[cl(1000)], &[5u8; 1100]))
        } else {
            Reply::Close(response("200 OK", &[cl(10)], b"0123456789"))
        }
    });
    let rig = rig_with(|b| b.workers(1)).await;
    let first = get(&rig, &server, "/long").await;
    assert_eq!(first.bytes(), 1000, "{first:?}");
    let id = rig.submit(Fetch::get(server.url("/next"))).await;
    let next = rig.wait(id).await;
    assert_eq!(
        next.body().map(|b| b.as_ref()),
        Some(&b"0123456789"[..]),
        "{next:?}"
    );
}
