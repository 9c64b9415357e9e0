//! Mirrors: a download's retries rotate over its URL and its mirrors; a resume at another
//! mirror only with the same validator and length; segments spread over the mirrors; a mirror
//! that disagrees with the file is dropped. Scripted range servers on 127.0.0.1.

use crate::ranged;
use crate::support;

use std::time::Duration;

use actix_transfer::*;
use ranged::{content, Act};
use support::{sha256_hex, Rig};

const MIB: usize = 1 << 20;

async fn rig() -> Rig {
    support::rig_with(|b| {
        b.workers(2)
            .retry(
                RetryPolicy::default()
                    .max_attempts(5)
                    .initial_delay(Duration::from_millis(10))
                    .max_delay(Duration::from_millis(50)),
            )
            .progress_interval(Duration::from_millis(10))
    })
    .await
}

/// A URL on 127.0.0.1 where nothing listens: connecting is refused.
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/file")
}

fn file(server: &ranged::Ranged) -> String {
    format!("{}/file", server.url)
}

fn read(outcome: &Outcome) -> Vec<u8> {
    std::fs::read(outcome.path().unwrap_or_else(|| panic!("{outcome:?}"))).unwrap()
}

fn retries(rig: &Rig, id: TransferId) -> usize {
    rig.events
        .kinds(id)
        .iter()
        .filter(|k| matches!(k, EventKind::Retrying { .. }))
        .count()
}

fn range_start(seen: &ranged::Seen) -> Option<u64> {
    seen.range
        .as_deref()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

/// Without mirrors every attempt goes to the refused URL and the download fails `Connect`.
#[actix_rt::test]
async fn dead_mirrors_move_the_next_attempt_to_the_next_one() {
    let body = content(300_000, 3);
    let live = ranged::start(body.clone());
    let rig = rig().await;
    let first = refused_url();
    let id = rig
        .submit(
            Download::new(first.clone())
                .mirror(refused_url())
                .mirror(file(&live))
                .to("f.bin"),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(&outcome), body, "byte-exact from the live mirror");
    assert_eq!(retries(&rig, id), 2, "one attempt per URL, round robin");
    assert_eq!(live.seen().len(), 1);
    let Outcome::Completed { url, .. } = &outcome else {
        unreachable!()
    };
    assert_eq!(
        *url,
        file(&live),
        "the outcome names the mirror that served it"
    );
    let status = rig.engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.url, first, "the URL as submitted");
    assert_eq!(status.final_url, Some(file(&live)), "the URL in use");
}

/// Without mirrors the retry goes back to the URL that failed (which then serves the rest),
/// and the mirror is never asked.
#[actix_rt::test]
async fn a_body_cut_on_one_mirror_resumes_on_the_next_with_if_range() {
    let body = content(2_000_000, 5);
    let origin = ranged::start(body.clone());
    let mirror = ranged::start(body.clone());
    origin.script([Act::CutAt(700_000)]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(file(&origin))
                .mirror(file(&mirror))
                .to("f.bin")
                .segments(1)
                .expect_sha256(sha256_hex(&body)),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(&outcome), body);
    assert_eq!(origin.seen().len(), 1, "the retry went to the mirror");
    let seen = mirror.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let start = range_start(&seen[0]).expect("a range request");
    assert!(start > 0 && start <= 700_000, "resumed at {start}");
    assert_eq!(seen[0].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(
        mirror.sent(),
        body.len() as u64 - start,
        "the mirror sent only the rest"
    );
}

/// Without mirrors the retry resumes at the origin and the file is the origin's; a resume that
/// appended the mirror's bytes without If-Range would be a splice of both.
#[actix_rt::test]
async fn mirrors_with_another_etag_never_make_a_mixed_file() {
    let first = content(2_000_000, 7);
    let other = content(2_000_000, 8);
    let origin = ranged::start(first.clone());
    let mirror = ranged::start(other.clone());
    mirror.replace(other.clone(), "\"v2\"");
    origin.script([Act::CutAt(700_000)]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(file(&origin))
                .mirror(file(&mirror))
                .to("f.bin")
                .segments(1),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    let got = read(&outcome);
    assert!(
        got == other,
        "the file is the mirror's version, whole, from zero"
    );
    let seen = mirror.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].if_range.as_deref(), Some("\"v1\""), "pinned to v1");
    assert_eq!(mirror.sent(), other.len() as u64, "answered with all of v2");
    assert_eq!(outcome.bytes(), other.len() as u64);
}

/// A strong Last-Modified (a second before `Date`) pins a resume across mirrors like an ETag:
/// the same date resumes there with `If-Range: <date>`; another date starts the file from zero
/// with the mirror's version. Without mirrors the retry resumes at the origin.
#[actix_rt::test]
async fn a_last_modified_pins_a_resume_across_mirrors_too() {
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const DATE: &str = "Mon, 07 Nov 1994 08:49:37 GMT";
    const OTHER_LM: &str = "Sun, 06 Nov 1994 09:00:00 GMT";
    for (mirror_lm, same) in [(LM, true), (OTHER_LM, false)] {
        let first = content(2_000_000, 21);
        let other = content(2_000_000, 22);
        let origin = ranged::start(first.clone());
        let mirror = ranged::start(if same { first.clone() } else { other.clone() });
        for (server, lm) in [(&origin, LM), (&mirror, mirror_lm)] {
            server.validators(false);
            server.dates(Some(lm), Some(DATE));
        }
        origin.script([Act::CutAt(700_000)]);
        let rig = rig().await;
        let id = rig
            .submit(
                Download::new(file(&origin))
                    .mirror(file(&mirror))
                    .to("f.bin")
                    .segments(1),
            )
            .await;
        let outcome = rig.wait(id).await;
        assert!(outcome.is_completed(), "{outcome:?}");
        let seen = mirror.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(
            seen[0].if_range.as_deref(),
            Some(LM),
            "pinned to the origin's date"
        );
        if same {
            assert_eq!(read(&outcome), first);
            let start = range_start(&seen[0]).expect("a range request");
            assert_eq!(mirror.sent(), first.len() as u64 - start, "only the rest");
        } else {
            assert!(read(&outcome) == other, "the mirror's version, whole");
            assert_eq!(mirror.sent(), other.len() as u64);
        }
    }
}

/// A mirror with the same ETag but another length answers the resume with a `206` of another
/// total: refused, the file starts from zero there and is that mirror's file, never a splice.
/// Without mirrors the retry resumes at the origin (the mirror is never asked).
#[actix_rt::test]
async fn a_mirror_with_another_length_restarts_a_single_stream_from_zero() {
    let first = content(2_000_000, 23);
    let longer = content(2_100_000, 24);
    let origin = ranged::start(first.clone());
    let mirror = ranged::start(longer.clone());
    origin.script([Act::CutAt(700_000)]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(file(&origin))
                .mirror(file(&mirror))
                .to("f.bin")
                .segments(1),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(read(&outcome) == longer, "the mirror's file, whole");
    let seen = mirror.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(range_start(&seen[0]).is_some_and(|n| n > 0), "{seen:?}");
    assert_eq!(seen[1].range, None, "then from zero");
}

/// A mirror that honours `Range` whatever `If-Range` says, and names no validator, answers the
/// resume with a `206` that does not deny the version: from the source the file came from that
/// is trusted, from a mirror it is no word that the file is the same. The file restarts from
/// zero there and is the mirror's, whole. Before the mirror had to name the version, the file
/// was the origin's first part spliced with the rest of the mirror's.
#[actix_rt::test]
async fn a_mirror_must_name_the_version_it_resumes() {
    let first = content(2_000_000, 25);
    let other = content(2_000_000, 26);
    let origin = ranged::start(first.clone());
    let mirror = ranged::start(other.clone());
    mirror.validators(false);
    origin.script([Act::CutAt(700_000)]);
    mirror.script([Act::IgnoreIfRange]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(file(&origin))
                .mirror(file(&mirror))
                .to("f.bin")
                .segments(1),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(
        read(&outcome) == other,
        "the mirror's file, whole, never a splice"
    );
    let seen = mirror.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(range_start(&seen[0]).is_some_and(|n| n > 0), "{seen:?}");
    assert_eq!(seen[1].range, None, "then from zero");
}

/// In a segmented download too, a mirror's range must name the first response's version: one
/// that honours `Range` whatever `If-Range` says and names no validator is dropped, its range
/// fetched from the origin. Before, the file held the mirror's bytes in that range.
#[actix_rt::test]
async fn a_segment_from_a_mirror_that_names_no_version_comes_from_the_origin() {
    let body = content(4 * MIB, 27);
    let origin = ranged::start(body.clone());
    let mirror = ranged::start(content(4 * MIB, 28));
    mirror.validators(false);
    mirror.script([Act::IgnoreIfRange]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(file(&origin))
                .mirror(file(&mirror))
                .to("f.bin")
                .segments(2),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(read(&outcome) == body, "the origin's file, whole");
    let half = format!("bytes={}-{}", 2 * MIB, 4 * MIB - 1);
    assert_eq!(mirror.seen().len(), 1);
    assert_eq!(mirror.seen()[0].range.as_deref(), Some(&*half));
    let asked: Vec<_> = origin.seen().into_iter().map(|s| s.range).collect();
    assert_eq!(
        asked,
        [None, Some(half)],
        "the range again, from the origin"
    );
    assert_eq!(retries(&rig, id), 0);
}

/// Without mirrors every range goes to the first URL: the mirrors see no request.
#[actix_rt::test]
async fn segments_are_spread_over_three_mirrors() {
    let body = content(6 * MIB + 17, 9);
    let servers: Vec<_> = (0..3).map(|_| ranged::start(body.clone())).collect();
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(file(&servers[0]))
                .mirrors(servers[1..].iter().map(file))
                .to("f.bin")
                .segments(6),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(read(&outcome), body);
    assert_eq!(retries(&rig, id), 0, "one segmented attempt");
    let total = body.len() as u64;
    let range = |i: u64| format!("bytes={}-{}", total * i / 6, total * (i + 1) / 6 - 1);
    // Segment 0 is the first response; the others go round robin from the next URL.
    for (s, want) in servers.iter().zip([vec![3], vec![1, 4], vec![2, 5]]) {
        let mut got: Vec<String> = s.seen().iter().filter_map(|r| r.range.clone()).collect();
        got.sort();
        let want: Vec<String> = want.into_iter().map(range).collect();
        assert_eq!(got, want);
        assert!(s
            .seen()
            .iter()
            .filter(|r| r.range.is_some())
            .all(|r| r.if_range.as_deref() == Some("\"v1\"")));
    }
    assert_eq!(
        servers[0].seen()[0].range,
        None,
        "the first request is a plain GET"
    );
}

/// Sources: the origin, a mirror whose file has another length (same ETag), and a good,
/// slow mirror. The other length is found on the first range it is asked for: it is dropped
/// and that range comes from the origin. Then the good mirror goes away mid-body, failing the
/// segmented attempt; the retries skip the dropped mirror (the good one, now refused, then
/// the origin, from zero). Without the drop, the retry goes to the other-length mirror and the
/// file is its version.
#[actix_rt::test]
async fn a_mirror_with_another_length_is_dropped_for_the_rest_of_the_transfer() {
    let body = content(8 * MIB, 11);
    let origin = ranged::start(body.clone());
    let longer = ranged::start(content(8 * MIB + 1000, 11));
    let good = ranged::start(body.clone());
    good.script([Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(10),
    }]);
    let rig = rig().await;
    let id = rig
        .submit(
            Download::new(file(&origin))
                .mirror(file(&longer))
                .mirror(file(&good))
                .to("f.bin")
                .segments(4),
        )
        .await;
    // Ranges round robin from the origin: 1 to the other length, 2 to the good mirror. The
    // origin is asked for range 1 once the other length was found out.
    let total = body.len() as u64;
    let range1 = format!("bytes={}-{}", total / 4, total / 2 - 1);
    let start = std::time::Instant::now();
    while !origin
        .seen()
        .iter()
        .any(|s| s.range.as_deref() == Some(&*range1))
    {
        assert!(start.elapsed() < support::LIMIT, "{:?}", origin.seen());
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    good.stop().await;
    let outcome = rig.wait(id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert!(read(&outcome) == body, "byte-exact, the origin's version");
    let asked = longer.seen();
    assert_eq!(
        asked.len(),
        1,
        "asked for one range, never again: {asked:?}"
    );
    assert_eq!(asked[0].range.as_deref(), Some(&*range1));
    assert_eq!(good.seen().len(), 1);
    let last = origin.seen().pop().unwrap();
    assert_eq!(
        last.range, None,
        "the last retry: one stream from zero at the origin"
    );
    assert_eq!(retries(&rig, id), 2, "the good mirror cut, then refused");
}

#[actix_rt::test]
async fn an_invalid_mirror_is_refused_at_submit() {
    let rig = rig().await;
    for bad in [
        "ftp://127.0.0.1/x",
        "not a url",
        "http://user:pw@127.0.0.1/x",
    ] {
        let err = support::submit(
            &rig.engine,
            Download::new("http://127.0.0.1:1/x").mirror(bad),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad}: {err}");
        assert!(err.to_string().contains("mirror"), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}

/// The journal keeps a download's mirrors: stopped by a shutdown, restored by the next start
/// while its first URL is gone, it resumes from the mirror (with `Range` and `If-Range`).
/// Without the mirrors in the journal, the restored download knows only the dead URL and
/// fails `Connect`.
#[cfg(feature = "journal")]
#[actix_rt::test]
async fn the_journal_keeps_the_mirrors_of_a_restored_download() {
    let body = content(4 * MIB, 13);
    let origin = ranged::start(body.clone());
    let mirror = ranged::start(body.clone());
    origin.script([Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(5),
    }]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let downloads = dir.path().join("dl");
    let retries = RetryPolicy::default()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50));
    let engine = Engine::builder()
        .download_dir(&downloads)
        .journal(&journal)
        .retry(retries.clone())
        .try_start()
        .unwrap();
    let id = support::submit(
        &engine,
        Download::new(file(&origin))
            .mirror(file(&mirror))
            .to("big.bin"),
    )
    .await
    .unwrap();
    support::poll_status(&engine, id, |s| s.bytes_transferred >= 64 << 10).await;
    actix_rt::time::timeout(support::LIMIT, engine.send(Shutdown))
        .await
        .unwrap()
        .unwrap();
    origin.stop().await;
    let part_len = std::fs::metadata(downloads.join("big.bin.part"))
        .unwrap()
        .len();
    assert!(part_len > 0 && part_len < body.len() as u64);
    assert!(mirror.seen().is_empty());

    let engine = Engine::builder()
        .download_dir(&downloads)
        .journal(&journal)
        .retry(retries)
        .try_start()
        .unwrap();
    let outcome = support::wait(&engine, id).await;
    assert!(outcome.is_completed(), "{outcome:?}");
    assert_eq!(std::fs::read(downloads.join("big.bin")).unwrap(), body);
    let seen = mirror.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].range.as_deref(),
        Some(&*format!("bytes={part_len}-"))
    );
    assert_eq!(seen[0].if_range.as_deref(), Some("\"v1\""));
}
