//! Content encodings: the engine asks for `identity`, never inflates, and stores and counts the
//! bytes exactly as they came off the wire.

use crate::hostile;

use std::{io::Write, sync::OnceLock};

use actix_transfer::{Download, EventKind, Fetch};
use flate2::{write::GzEncoder, Compression};
use hostile::*;

const NAME: &str = "bomb.gz";
/// What the bomb inflates to.
const INFLATED: usize = 64 * 1024 * 1024;

/// 64 MiB of zeros, gzipped (about 64 KiB); made once per test binary.
fn gzip_bomb() -> Vec<u8> {
    static BOMB: OnceLock<Vec<u8>> = OnceLock::new();
    BOMB.get_or_init(|| {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..INFLATED / zeros.len() {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 256 * 1024, "{} bytes", bomb.len());
        bomb
    })
    .clone()
}

fn gzip_answer(bomb: &[u8]) -> Vec<u8> {
    response(
        200,
        &[
            ("Content-Encoding", "gzip"),
            ("Content-Type", "application/octet-stream"),
        ],
        bomb,
    )
}

#[actix_rt::test]
async fn a_gzip_bomb_is_stored_as_its_wire_bytes() {
    let bomb = gzip_bomb();
    let server = Hostile::always(vec![Step::Write(gzip_answer(&bomb))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;

    let (id, outcome) = run(&engine, Download::new(server.url("/bomb")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.bytes(), bomb.len() as u64);
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), bomb);
    assert_eq!(
        server.requests()[0].header("accept-encoding"),
        Some("identity")
    );
    // The application learns the encoding from the headers; progress counts wire bytes.
    events.until_ended(id).await;
    let seen = events.kinds(id);
    let Some(EventKind::Began {
        headers,
        bytes_estimated,
        ..
    }) = seen.iter().find(|e| matches!(e, EventKind::Began { .. }))
    else {
        panic!("no Began: {seen:?}")
    };
    assert_eq!(headers.get("content-encoding"), Some("gzip"));
    assert_eq!(*bytes_estimated, Some(bomb.len() as u64));
    for event in &seen {
        if let EventKind::Progress {
            bytes_transferred, ..
        } = event
        {
            assert!(*bytes_transferred <= bomb.len() as u64, "{event:?}");
        }
    }
}

#[actix_rt::test]
async fn a_chunked_gzip_bomb_is_stored_as_its_wire_bytes() {
    let bomb = gzip_bomb();
    let mut answer = head(
        200,
        &[
            ("Content-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
        ],
    );
    for piece in bomb.chunks(10_000) {
        answer.extend_from_slice(&chunk(piece));
    }
    answer.extend_from_slice(LAST_CHUNK);
    let server = Hostile::always(vec![Step::Write(answer)]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/bomb")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(outcome.bytes(), bomb.len() as u64);
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), bomb);
}

#[actix_rt::test]
async fn a_fetched_gzip_bomb_stays_under_a_small_body_cap() {
    // Inflated, the body would pass the 1 MiB cap 64 times over; as wire bytes it fits.
    let bomb = gzip_bomb();
    let server = Hostile::always(vec![Step::Write(gzip_answer(&bomb))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(
        &engine,
        Fetch::get(server.url("/bomb")).max_body(1024 * 1024),
    )
    .await;

    assert_eq!(outcome.body().map(|b| b.as_ref()), Some(&bomb[..]));
}

#[actix_rt::test]
async fn a_caller_asking_for_gzip_gets_the_raw_gzip_bytes() {
    let bomb = gzip_bomb();
    let server = Hostile::always(vec![Step::Write(gzip_answer(&bomb))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let asked = Download::new(server.url("/bomb"))
        .to(NAME)
        .header("Accept-Encoding", "gzip");
    let (_, outcome) = run(&engine, asked).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    let req = &server.requests()[0];
    assert_eq!(req.header("accept-encoding"), Some("gzip"));
    assert_eq!(
        req.headers
            .iter()
            .filter(|(k, _)| k == "accept-encoding")
            .count(),
        1,
        "identity was added beside the caller's choice: {req:?}"
    );
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), bomb);
}

#[actix_rt::test]
async fn unknown_encodings_are_stored_untouched() {
    let body = pattern(5000);
    let server = Hostile::always(vec![Step::Write(response(
        200,
        &[("Content-Encoding", "br, x-unheard-of")],
        &body,
    ))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/b")).to(NAME)).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(NAME)).unwrap(), body);
}
