//! Segmented downloads: K ranges on K connections, written into place, one transfer; fallback
//! to a single stream; stops that stop every segment; failures that never leave a bad file.

use crate::ranged;
use crate::support;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use actix_transfer::*;
use ranged::{content, Act};
use support::{Rig, LIMIT};

const MIB: usize = 1 << 20;

async fn rig() -> Rig {
    support::rig_with(|b| {
        b.workers(2)
            .retry(
                RetryPolicy::default()
                    .initial_delay(Duration::from_millis(10))
                    .max_delay(Duration::from_millis(50)),
            )
            .progress_interval(Duration::from_millis(10))
    })
    .await
}

fn read(outcome: &Outcome) -> Vec<u8> {
    std::fs::read(outcome.path().unwrap_or_else(|| panic!("{outcome:?}"))).unwrap()
}

#[actix_rt::test]
async fn a_file_is_fetched_as_k_ranges_on_k_connections() {
    let body = content(8 * MIB + 13, 1);
    let server = ranged::start(body.clone());
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("f.bin")
                .segments(4),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(read(&outcome), body);
    assert_eq!(outcome.bytes(), body.len() as u64);

    let seen = server.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(seen[0].range, None, "the first request is a plain GET");
    let mut ranges: Vec<String> = seen[1..].iter().map(|s| s.range.clone().unwrap()).collect();
    ranges.sort();
    let total = body.len() as u64;
    let mut want: Vec<String> = (1..4)
        .map(|i| format!("bytes={}-{}", total * i / 4, total * (i + 1) / 4 - 1))
        .collect();
    want.sort();
    assert_eq!(ranges, want);
    assert!(seen[1..]
        .iter()
        .all(|s| s.if_range.as_deref() == Some("\"v1\"")));
    let ports: HashSet<u16> = seen.iter().map(|s| s.port).collect();
    assert_eq!(ports.len(), 4, "four connections");

    // One event stream: gapless seq, one Began, one Ended, progress up to the total.
    let events = rig.events.of(id);
    assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64));
    let began = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Began { .. }))
        .count();
    assert_eq!(began, 1);
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::Progress { bytes_transferred, bytes_estimated: Some(t) } if bytes_transferred == t && t == total
    )));
    assert_eq!(rig.files(), vec!["f.bin"]);
}

#[actix_rt::test]
async fn without_what_segments_need_it_is_one_stream() {
    let body = content(4 * MIB, 2);
    let server = ranged::start(body.clone());
    let rig = rig().await;
    // No validator.
    server.validators(false);
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("a")
                .segments(4),
        )
        .await;
    assert_eq!(read(&rig.wait(id).await), body);
    assert_eq!(server.seen().len(), 1);
    server.validators(true);
    // An expected SHA-256 is computed in order: one stream.
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("b")
                .segments(4)
                .expect_sha256(support::sha256_hex(&body)),
        )
        .await;
    assert_eq!(read(&rig.wait(id).await), body);
    assert_eq!(server.seen().len(), 2);
    // Too small for two 1 MiB segments.
    let small = ranged::start(content(MIB + 5, 3));
    let id = rig
        .submit(
            Download::new(format!("{}/file", small.url))
                .to("c")
                .segments(4),
        )
        .await;
    assert!(rig.wait(id).await.is_completed());
    assert_eq!(small.seen().len(), 1);
}

#[actix_rt::test]
async fn a_failed_segment_never_leaves_a_bad_file() {
    for act in [
        Act::CutAfter(300_000),
        Act::WrongStart(1000),
        Act::Status(503, None),
    ] {
        let body = content(6 * MIB, 4);
        let server = ranged::start(body.clone());
        server.script([Act::Normal, act.clone()]);
        let rig = rig().await;
        let id = rig
            .submit(
                Download::new(format!("{}/file", server.url))
                    .to("f.bin")
                    .segments(3),
            )
            .await;
        let outcome = rig.wait(id).await;
        assert_eq!(read(&outcome), body, "{act:?}");
        let kinds = rig.events.kinds(id);
        assert!(
            kinds
                .iter()
                .any(|k| matches!(k, EventKind::Retrying { .. })),
            "{act:?}"
        );
        let seen = server.seen();
        assert_eq!(
            seen.last().unwrap().range,
            None,
            "{act:?}: the retry is one stream"
        );
        assert_eq!(rig.files(), vec!["f.bin"]);
    }
}

/// Bounded wait until the transfer has bytes.
async fn until_bytes(rig: &Rig, id: TransferId) {
    rig.events
        .until_kind(id, |k| matches!(k, EventKind::Progress { bytes_transferred, .. } if *bytes_transferred > 0))
        .await;
}

#[actix_rt::test]
async fn cancel_stops_every_segment() {
    let body = content(8 * MIB, 5);
    let server = ranged::start(body);
    let slow = Act::Slow {
        chunk: 16 * 1024,
        every: Duration::from_millis(10),
    };
    server.script(vec![slow; 4]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("f.bin")
                .segments(4),
        )
        .await;
    until_bytes(&rig, id).await;
    let start = Instant::now();
    while server.seen().len() < 4 {
        assert!(start.elapsed() < LIMIT, "the segments never started");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rig.engine.send(Cancel(id)).await.unwrap(), Ok(()));
    assert!(rig.files().is_empty(), "{:?}", rig.files());
    // Every connection is gone: the server stops sending on all of them.
    let start = Instant::now();
    loop {
        let before = server.sent();
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        if server.sent() == before {
            break;
        }
        assert!(start.elapsed() < LIMIT, "the server kept sending");
    }
    // The outcome shows the response the file came from, not a segment's.
    let outcome = rig.wait(id).await;
    assert!(matches!(outcome, Outcome::Cancelled { .. }), "{outcome:?}");
    assert_eq!(outcome.status(), Some(200));
    assert_eq!(outcome.headers().get("etag"), Some("\"v1\""));
}

#[actix_rt::test]
async fn pause_and_resume_a_segmented_download() {
    let body = content(6 * MIB, 6);
    let server = ranged::start(body.clone());
    let slow = Act::Slow {
        chunk: 16 * 1024,
        every: Duration::from_millis(10),
    };
    server.script(vec![slow; 3]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("f.bin")
                .segments(3),
        )
        .await;
    until_bytes(&rig, id).await;
    assert_eq!(rig.engine.send(Pause(id)).await.unwrap(), Ok(()));
    let status = rig.engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.state, TransferState::Paused);
    assert!(!status.can_resume, "a file with holes restarts from zero");
    assert_eq!(rig.engine.send(Resume(id)).await.unwrap(), Ok(()));
    assert_eq!(read(&rig.wait(id).await), body);
}

#[actix_rt::test]
async fn segments_that_finish_before_the_first_one_do_not_stall_it() {
    // The first response (segment 0) is slow; the three range requests are served at once, so
    // they end long before it. The transfer must keep reading segment 0 to its end.
    let body = content(8 * MIB, 3);
    let server = ranged::start(body.clone());
    server.script([
        Act::Slow {
            chunk: 128 * 1024,
            every: Duration::from_millis(10),
        },
        Act::Normal,
        Act::Normal,
        Act::Normal,
    ]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("slow-first.bin")
                .segments(4),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(&outcome), body);
    assert_eq!(server.seen().len(), 4);
}
