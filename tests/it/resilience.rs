//! Retries, safe resume, pause/resume, integrity checks and cleanup, against a scripted server
//! on 127.0.0.1 that cuts bodies, ignores ranges, changes its file, or answers 503.

use crate::ranged;
use crate::support;

use std::{path::Path, time::Duration};

use actix_transfer::*;
use ranged::{content, Act};
use support::{sha256_hex, Rig};

async fn rig(policy: RetryPolicy) -> Rig {
    support::rig_with(|b| b.retry(policy).progress_interval(Duration::from_millis(10))).await
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50))
}

fn range_start(seen: &ranged::Seen) -> Option<u64> {
    seen.range
        .as_deref()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[actix_rt::test]
async fn cut_bodies_resume_with_range_and_if_range() {
    // Offsets below, at, and well past the 512 KiB write buffer.
    for cut in [1u64, 100_000, 524_288, 1_500_000] {
        let body = content(2_000_000, cut as u8);
        let server = ranged::start(body.clone());
        server.script([Act::CutAt(cut)]);
        let rig = rig(fast_retries()).await;
        let id = rig
            .submit(
                Download::new(format!("{}/file", server.url))
                    .to("f.bin")
                    .expect_sha256(sha256_hex(&body)),
            )
            .await;
        let outcome = rig.wait(id).await;
        assert!(outcome.is_completed(), "cut at {cut}: {outcome:?}");
        assert_eq!(read(outcome.path().unwrap()), body, "cut at {cut}");

        let seen = server.seen();
        assert_eq!(seen.len(), 2, "cut at {cut}: one retry");
        assert_eq!(seen[0].range, None);
        // The server may lose a few bytes in flight when it drops the connection: the client
        // must resume from exactly what it received, all of which it kept.
        let received = rig
            .events
            .kinds(id)
            .into_iter()
            .find_map(|k| match k {
                EventKind::Retrying {
                    attempt: 1, error, ..
                } => Some(match error {
                    TransferError::Truncated { received, expected } => {
                        assert_eq!(expected, body.len() as u64);
                        received
                    }
                    // Cut before the headers left the server: nothing was received.
                    _ => 0,
                }),
                _ => None,
            })
            .unwrap_or_else(|| panic!("cut at {cut}: no retry in {:?}", rig.events.kinds(id)));
        assert!(received <= cut);
        if received > 0 {
            assert_eq!(range_start(&seen[1]), Some(received), "cut at {cut}");
            assert_eq!(seen[1].if_range.as_deref(), Some("\"v1\""));
        } else {
            assert_eq!(seen[1].range, None, "nothing to resume from");
        }
        assert_eq!(rig.files(), vec!["f.bin"], "no .part left");
        server.stop().await;
    }
}

#[actix_rt::test]
async fn a_server_that_ignores_ranges_restarts_from_zero() {
    let body = content(1_000_000, 3);
    let server = ranged::start(body.clone());
    server.script([Act::CutAt(600_000), Act::IgnoreRange]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(outcome.path().unwrap()), body);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let asked = range_start(&seen[1]).expect("it asked for a range");
    assert!(asked > 0 && asked <= 600_000);
    assert_eq!(outcome.bytes(), body.len() as u64);
}

#[actix_rt::test]
async fn a_changed_etag_restarts_with_the_new_file() {
    let old = content(1_000_000, 5);
    let new = content(1_200_000, 6);
    let server = ranged::start(old);
    server.script([Act::CutAt(300_000)]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    rig.events
        .until_kind(id, |k| matches!(k, EventKind::Retrying { .. }))
        .await;
    server.replace(new.clone(), "\"v2\"");
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(
        read(outcome.path().unwrap()),
        new,
        "never a mix of two versions"
    );
    let seen = server.seen();
    assert_eq!(seen[1].if_range.as_deref(), Some("\"v1\""));
}

#[actix_rt::test]
async fn a_206_at_the_wrong_offset_is_refused() {
    let body = content(1_000_000, 7);
    let server = ranged::start(body.clone());
    server.script([Act::CutAt(400_000), Act::WrongStart(1000)]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(outcome.path().unwrap()), body);
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "cut, bad 206, then a fresh request");
    let asked = range_start(&seen[1]).expect("it asked for a range");
    assert!(asked > 0 && asked <= 400_000);
    assert_eq!(
        seen[2].range, None,
        "after a bad 206 the server's ranges are not used"
    );
}

#[actix_rt::test]
async fn resumable_only_fails_instead_of_restarting() {
    let body = content(1_000_000, 8);
    let server = ranged::start(body);
    server.script([Act::CutAt(400_000), Act::WrongStart(1000)]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("f.bin")
                .resumable_only(),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(
        matches!(outcome.error(), Some(TransferError::CannotResume(_))),
        "{outcome:?}"
    );
    assert!(!rig.dir.path().join("f.bin").exists());
    assert!(
        rig.dir.path().join("f.bin.part").exists(),
        "the .part is kept on failure by default"
    );
}

#[actix_rt::test]
async fn retry_after_is_honoured_and_bounded() {
    let body = content(10_000, 9);
    let server = ranged::start(body.clone());
    server.script([Act::Status(503, Some("1")), Act::Status(429, Some("3600"))]);
    let rig = rig(fast_retries().max_retry_after(Duration::from_secs(2))).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    let outcome = rig.wait(id).await;
    // 3600 s is past the bound: no early retry, the server's status is the error.
    assert_eq!(
        outcome.error(),
        Some(&TransferError::Server { status: 429 }),
        "{outcome:?}"
    );
    let delays: Vec<Duration> = rig
        .events
        .kinds(id)
        .into_iter()
        .filter_map(|k| match k {
            EventKind::Retrying { delay, .. } => Some(delay),
            _ => None,
        })
        .collect();
    assert_eq!(
        delays,
        vec![Duration::from_secs(1)],
        "Retry-After 1 s honoured"
    );
    let seen = server.seen();
    assert_eq!(
        seen.len(),
        2,
        "a request after a Retry-After past the bound"
    );
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
}

#[actix_rt::test]
async fn retries_stop_at_the_attempt_limit_with_the_last_error() {
    let server = ranged::start(content(1000, 1));
    server.script([
        Act::Status(503, None),
        Act::Status(502, None),
        Act::Status(500, None),
    ]);
    let rig = rig(fast_retries().max_attempts(3)).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    match rig.wait(id).await {
        Outcome::Failed {
            error, attempts, ..
        } => {
            assert_eq!(error, TransferError::Server { status: 500 });
            assert_eq!(attempts, 3);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(server.seen().len(), 3);
    // Not retryable at all: one attempt.
    server.script([Act::Status(404, None)]);
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("g.bin"))
        .await;
    assert!(matches!(
        rig.wait(id).await,
        Outcome::Failed { attempts: 1, .. }
    ));
}

#[actix_rt::test]
async fn pause_and_resume_mid_body_is_byte_exact() {
    let body = content(600_000, 11);
    let server = ranged::start(body.clone());
    server.script([Act::Slow {
        chunk: 8 * 1024,
        every: Duration::from_millis(5),
    }]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    rig.events
        .until_kind(id, |k| {
            matches!(k, EventKind::Progress { bytes_transferred, .. } if *bytes_transferred > 50_000)
        })
        .await;
    assert_eq!(rig.engine.send(Pause(id)).await.unwrap(), Ok(()));
    let status = rig.engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.state, TransferState::Paused);
    assert!(status.can_resume);
    let paused_at = status.bytes_transferred;
    let part = rig.dir.path().join("f.bin.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), paused_at);
    assert_eq!(
        rig.engine.send(Pause(id)).await.unwrap(),
        Ok(()),
        "idempotent"
    );

    assert_eq!(rig.engine.send(Resume(id)).await.unwrap(), Ok(()));
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(outcome.path().unwrap()), body);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(range_start(&seen[1]), Some(paused_at));
    let kinds = rig.events.kinds(id);
    let paused = kinds
        .iter()
        .position(|k| matches!(k, EventKind::Paused { .. }));
    let resumed = kinds.iter().position(|k| matches!(k, EventKind::Resumed));
    assert!(paused.is_some() && resumed > paused, "{kinds:?}");
    assert_eq!(
        rig.engine.send(Pause(id)).await.unwrap(),
        Err(ControlError::NotActive(EndState::Completed))
    );
}

#[actix_rt::test]
async fn a_paused_transfer_can_be_cancelled() {
    let server = ranged::start(content(400_000, 12));
    server.script([Act::Slow {
        chunk: 4096,
        every: Duration::from_millis(5),
    }]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    rig.events
        .until_kind(id, |k| matches!(k, EventKind::Progress { bytes_transferred, .. } if *bytes_transferred > 0))
        .await;
    rig.engine.send(Pause(id)).await.unwrap().unwrap();
    assert_eq!(rig.engine.send(Cancel(id)).await.unwrap(), Ok(()));
    assert!(matches!(rig.wait(id).await, Outcome::Cancelled { .. }));
    assert!(
        rig.files().is_empty(),
        "the .part was removed: {:?}",
        rig.files()
    );
}

#[actix_rt::test]
async fn checksum_mismatch_fails_and_removes_the_part() {
    let body = content(300_000, 13);
    let server = ranged::start(body);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("f.bin")
                .expect_sha256("00".repeat(32)),
        )
        .await;
    match rig.wait(id).await {
        Outcome::Failed {
            error: TransferError::ChecksumMismatch { what, .. },
            attempts,
            ..
        } => {
            assert_eq!(what, "sha256");
            assert_eq!(attempts, 1, "a mismatch is not retried");
        }
        other => panic!("{other:?}"),
    }
    assert!(rig.files().is_empty(), "{:?}", rig.files());

    // A wrong expected size is caught from the announced length, before any byte is written.
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("g.bin")
                .expect_size(5),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(
        matches!(
            outcome.error(),
            Some(TransferError::SizeMismatch { expected: 5, .. })
        ),
        "{outcome:?}"
    );
    assert_eq!(outcome.bytes(), 0);
    assert!(rig.files().is_empty());
    // A malformed digest is refused at submit.
    let bad = rig
        .engine
        .send(Download::new(format!("{}/file", server.url)).expect_sha256("xyz"))
        .await
        .unwrap();
    assert!(matches!(bad, Err(TransferError::InvalidRequest(_))));
}

#[actix_rt::test]
async fn cancel_during_a_backoff_wait() {
    let server = ranged::start(content(1000, 14));
    server.script([Act::Status(503, Some("30"))]);
    let rig = rig(fast_retries().max_retry_after(Duration::from_secs(30))).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    rig.events
        .until_kind(id, |k| matches!(k, EventKind::Retrying { .. }))
        .await;
    assert_eq!(rig.engine.send(Cancel(id)).await.unwrap(), Ok(()));
    assert!(matches!(rig.wait(id).await, Outcome::Cancelled { .. }));
    assert_eq!(server.seen().len(), 1, "no attempt after the cancel");
    assert!(rig.files().is_empty());
}

#[actix_rt::test]
async fn uploads_retry_from_the_start_of_the_file() {
    let server = ranged::start(Vec::new());
    server.script([Act::Status(503, None)]);
    let rig = rig(fast_retries()).await;
    let src = rig.dir.path().join("src.bin");
    std::fs::write(&src, content(700_000, 15)).unwrap();
    let id = rig
        .engine
        .send(Upload::new(format!("{}/upload", server.url), &src))
        .await
        .unwrap()
        .unwrap();
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.body().map(|b| b.as_ref()),
        Some(&b"700000"[..]),
        "{outcome:?}"
    );
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| s.body_len).collect::<Vec<_>>(),
        vec![700_000, 700_000],
        "the whole file both times"
    );
    let kinds = rig.events.kinds(id);
    let retry = kinds
        .iter()
        .position(|k| matches!(k, EventKind::Retrying { .. }))
        .expect("a Retrying event announces the restart");
    assert!(kinds[retry..].iter().any(|k| matches!(
        k,
        EventKind::Progress { bytes_transferred, .. } if *bytes_transferred == 700_000
    )));
}

#[actix_rt::test]
async fn cleanup_policies_and_erase() {
    let body = content(200_000, 16);
    let server = ranged::start(body.clone());
    let rig = rig(RetryPolicy::never()).await;

    // Keep the .part on cancel when asked.
    server.script([Act::Slow {
        chunk: 4096,
        every: Duration::from_millis(5),
    }]);
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("kept.bin")
                .on_cancel(Partial::Keep),
        )
        .await;
    rig.events
        .until_kind(id, |k| matches!(k, EventKind::Progress { bytes_transferred, .. } if *bytes_transferred > 0))
        .await;
    rig.engine.send(Cancel(id)).await.unwrap().unwrap();
    // Every byte received is in the kept .part, buffered ones included: a resume continues
    // from exactly there.
    let Outcome::Cancelled { bytes, .. } = rig.events.until_ended(id).await else {
        panic!("cancelled")
    };
    let kept = std::fs::read(rig.dir.path().join("kept.bin.part")).unwrap();
    assert_eq!(kept.len() as u64, bytes);
    assert_eq!(kept[..], body[..kept.len()]);
    // Erase with files removes it, and forgets the transfer.
    let erase = Erase {
        id,
        delete_files: true,
    };
    assert_eq!(rig.engine.send(erase).await.unwrap(), Ok(()));
    assert!(!rig.dir.path().join("kept.bin.part").exists());
    assert_eq!(rig.engine.send(Status(id)).await.unwrap(), None);
    assert_eq!(
        rig.engine.send(Cancel(id)).await.unwrap(),
        Err(ControlError::Unknown)
    );

    // Delete the .part on failure when asked.
    server.script([Act::CutAt(100_000)]);
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("gone.bin")
                .on_failure(Partial::Delete),
        )
        .await;
    assert!(matches!(rig.wait(id).await, Outcome::Failed { .. }));
    assert!(rig.files().is_empty(), "{:?}", rig.files());

    // Erase of a completed download removes its file; erasing twice is Unknown.
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("done.bin"))
        .await;
    assert!(rig.wait(id).await.is_completed());
    let erase = Erase {
        id,
        delete_files: true,
    };
    assert_eq!(rig.engine.send(erase).await.unwrap(), Ok(()));
    assert!(!rig.dir.path().join("done.bin").exists());
    assert_eq!(
        rig.engine.send(erase).await.unwrap(),
        Err(EraseError::Unknown)
    );
}

#[actix_rt::test]
async fn a_retried_fetch_counts_its_bytes_once() {
    let body = content(300_000, 17);
    let server = ranged::start(body.clone());
    server.script([Act::CutAt(100_000)]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .engine
        .send(Fetch::get(format!("{}/file", server.url)))
        .await
        .unwrap()
        .unwrap();
    let outcome = rig.wait(id).await;
    assert_eq!(outcome.body().unwrap().as_ref(), &body[..]);
    assert_eq!(outcome.bytes(), body.len() as u64);
    assert_eq!(server.seen().len(), 2);
    // Progress after the retry counts the new attempt's bytes, not both attempts'.
    for kind in rig.events.kinds(id) {
        if let EventKind::Progress {
            bytes_transferred, ..
        } = kind
        {
            assert!(
                bytes_transferred <= body.len() as u64,
                "{bytes_transferred}"
            );
        }
    }
}

#[actix_rt::test]
async fn a_416_re_probes_without_a_range() {
    let body = content(800_000, 18);
    let server = ranged::start(body.clone());
    server.script([Act::CutAt(300_000), Act::Status(416, None)]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(outcome.path().unwrap()), body);
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "cut, 416, then a plain request");
    assert!(range_start(&seen[1]).is_some());
    assert_eq!(seen[2].range, None);
}

#[actix_rt::test]
async fn without_validators_a_retry_restarts_from_zero() {
    let body = content(800_000, 19);
    let server = ranged::start(body.clone());
    server.validators(false);
    server.script([Act::CutAt(300_000)]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(outcome.path().unwrap()), body);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].range, None,
        "no Range without a validator to pin it"
    );
    // And with resumable_only the same retry fails instead.
    server.script([Act::CutAt(300_000)]);
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("g.bin")
                .resumable_only(),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(
        matches!(outcome.error(), Some(TransferError::CannotResume(_))),
        "{outcome:?}"
    );
}

/// An HTTP date (`Date`, `Last-Modified`) for `at`.
fn http_date(at: std::time::SystemTime) -> String {
    actix_web::http::header::HttpDate::from(at).to_string()
}

/// Download `server`'s file to `name`, whose first answer is cut; the retry's request as the
/// server saw it, and the outcome.
async fn cut_then_retry(rig: &Rig, server: &ranged::Ranged, name: &str) -> (Outcome, ranged::Seen) {
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to(name))
        .await;
    let outcome = rig.wait(id).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "one cut answer, one retry: {seen:?}");
    assert_eq!(seen[0].range, None);
    (outcome, seen[1].clone())
}

#[actix_rt::test]
async fn a_last_modified_equal_to_date_is_weak_and_never_resumed_with() {
    // RFC 9110 §8.8.2.2: a Last-Modified less than a second before the response's Date may
    // name two versions written within that second. The file changes, its date does not.
    let (v0, v1) = (content(1_000_000, 30), content(1_000_000, 31));
    let server = ranged::start(v0);
    server.validators(false);
    let now = http_date(std::time::SystemTime::now());
    server.dates(Some(&now), Some(&now));
    server.script([Act::Replacing {
        cut_at: Some(500_000),
        content: v1.clone(),
        etag: "\"unsent\"",
    }]);
    let rig = rig(fast_retries()).await;

    let (outcome, retry) = cut_then_retry(&rig, &server, "f.bin").await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(
        read(outcome.path().unwrap()) == v1,
        "the file must be version 1 whole, never version 0's start and version 1's rest"
    );
    assert_eq!(retry.range, None, "no Range on a weak date");
    assert_eq!(retry.if_range, None, "no If-Range with a weak date");
}

#[actix_rt::test]
async fn a_weak_etag_is_never_resumed_with_not_even_by_its_date() {
    // RFC 9110 §13.1.5: no weak entity tag in If-Range, and no date when the representation
    // has an entity tag, however old the date. The weak tag stays as the bytes change.
    let (v0, v1) = (content(1_000_000, 32), content(1_000_000, 33));
    let server = ranged::start(Vec::new());
    server.replace(v0, "W/\"v0\"");
    let old = http_date(std::time::SystemTime::now() - Duration::from_secs(86_400));
    server.dates(Some(&old), None);
    server.script([Act::Replacing {
        cut_at: Some(500_000),
        content: v1.clone(),
        etag: "W/\"v0\"",
    }]);
    let rig = rig(fast_retries()).await;

    let (outcome, retry) = cut_then_retry(&rig, &server, "f.bin").await;

    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(
        read(outcome.path().unwrap()) == v1,
        "a splice of two versions"
    );
    assert_eq!(retry.range, None);
    assert_eq!(retry.if_range, None);

    // With resumable_only, that retry fails instead of starting over.
    server.script([Act::CutAt(500_000)]);
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("g.bin")
                .resumable_only(),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(
        matches!(outcome.error(), Some(TransferError::CannotResume(_))),
        "{outcome:?}"
    );
}

#[actix_rt::test]
async fn strong_validators_still_resume() {
    let body = content(1_000_000, 34);
    let now = std::time::SystemTime::now();
    let old = http_date(now - Duration::from_secs(86_400));
    // A strong ETag wins over a date (even a strong one); a date a day before Date is strong.
    for (etag, date, if_range) in [(true, &old, "\"v1\""), (false, &old, old.as_str())] {
        let server = ranged::start(body.clone());
        server.validators(etag);
        server.dates(Some(date), Some(&http_date(now)));
        server.script([Act::CutAt(500_000)]);
        let rig = rig(fast_retries()).await;

        let (outcome, retry) = cut_then_retry(&rig, &server, "f.bin").await;

        assert!(outcome.is_completed(), "{outcome:?}");
        assert!(
            read(outcome.path().unwrap()) == body,
            "resumed with {if_range}"
        );
        let from = range_start(&retry).expect("a resume asks for a range");
        assert!(from > 0 && from <= 500_000, "{from}");
        assert_eq!(retry.if_range.as_deref(), Some(if_range));
        server.stop().await;
    }
}

#[actix_rt::test]
async fn a_206_of_another_version_is_refused() {
    // A server that honours Range but not If-Range answers the resume with the new version's
    // bytes and its new ETag: that 206 is not of the file on disk.
    let (v1, v2) = (content(1_000_000, 35), content(1_000_000, 36));
    let server = ranged::start(v1);
    server.script([
        Act::Replacing {
            cut_at: Some(400_000),
            content: v2.clone(),
            etag: "\"v2\"",
        },
        Act::IgnoreIfRange,
    ]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(Download::new(format!("{}/file", server.url)).to("f.bin"))
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(
        read(outcome.path().unwrap()) == v2,
        "a splice of two versions"
    );
    let seen = server.seen();
    assert_eq!(
        seen.len(),
        3,
        "cut, a 206 of v2, then a fresh request: {seen:?}"
    );
    assert_eq!(seen[1].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(seen[2].range, None);
}

#[actix_rt::test]
async fn a_segment_of_another_version_fails_the_segmented_attempt() {
    // The file changes as soon as the first answer is made; the segment request's If-Range is
    // ignored and its 206 carries the new version's bytes and ETag.
    let (v1, v2) = (content(4 << 20, 37), content(4 << 20, 38));
    let server = ranged::start(v1);
    server.script([
        Act::Replacing {
            cut_at: None,
            content: v2.clone(),
            etag: "\"v2\"",
        },
        Act::IgnoreIfRange,
    ]);
    let rig = rig(fast_retries()).await;
    let id = rig
        .submit(
            Download::new(format!("{}/file", server.url))
                .to("f.bin")
                .segments(2),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(
        read(outcome.path().unwrap()) == v2,
        "a splice of two versions"
    );
    let seen = server.seen();
    assert_eq!(
        seen.len(),
        3,
        "first, its segment, then one stream: {seen:?}"
    );
    assert_eq!(seen[1].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(seen[2].range, None);
}
