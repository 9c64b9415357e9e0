//! The names of downloads given no target, chosen from the response as browsers choose them:
//! `Content-Disposition` (`filename*` before `filename`), else the final URL's last segment,
//! else `download`; always sanitised and kept inside the download dir. And the path reported
//! is always the file's real one.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use crate::hostile;

use actix_transfer::{Conflict, Download, Outcome, Status};
use hostile::*;

/// A server answering every request with `body` and a `Content-Disposition: disposition`.
fn disposed(disposition: &'static str, body: &'static [u8]) -> Hostile {
    Hostile::start(move |_| {
        vec![Step::Write(response(
            200,
            &[("Content-Disposition", disposition)],
            body,
        ))]
    })
}

/// The file a completed outcome reports, relative to `dir`, checked to be inside it.
fn placed(dir: &Path, outcome: &Outcome) -> PathBuf {
    assert!(outcome.is_completed(), "{outcome:?}");
    let path = outcome.path().expect("a completed download has a path");
    let root = dir.canonicalize().unwrap();
    let real = path.canonicalize().unwrap();
    assert!(
        real.starts_with(&root),
        "{} is outside {}",
        real.display(),
        root.display()
    );
    path.strip_prefix(dir)
        .or_else(|_| path.strip_prefix(&root))
        .unwrap()
        .to_path_buf()
}

/// Download `url` with no target into a fresh dir: the name it got and what it holds.
async fn download_unnamed(url: String) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let (id, outcome) = run(&engine, Download::new(url)).await;
    let name = placed(dir.path(), &outcome);
    // The status reports the same file, and it is the only one.
    let status = engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.path.as_deref(), outcome.path());
    assert_eq!(files(dir.path()), std::slice::from_ref(&name));
    (dir, name)
}

#[actix_rt::test]
async fn a_quoted_content_disposition_names_the_file() {
    let server = disposed(r#"attachment; filename="report final.pdf""#, b"pdf");
    let (dir, name) = download_unnamed(server.url("/dl")).await;
    assert_eq!(name, PathBuf::from("report final.pdf"));
    assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"pdf");
}

#[actix_rt::test]
async fn filename_star_wins_over_filename() {
    let server = disposed(
        "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
        b"eur",
    );
    let (_dir, name) = download_unnamed(server.url("/dl")).await;
    assert_eq!(name, PathBuf::from("€ rates.txt"));
}

#[actix_rt::test]
async fn traversal_in_a_disposition_stays_inside_the_download_dir() {
    for (disposition, want) in [
        (
            "attachment; filename=\"../../etc/passwd\"",
            "_.._etc_passwd",
        ),
        ("attachment; filename=\"..\\\\x\"", "_x"),
        (
            "attachment; filename*=UTF-8''..%2F..%2Fescaped",
            "_.._escaped",
        ),
        ("attachment; filename=\"/abs/olute\"", "_abs_olute"),
    ] {
        let server = disposed(disposition, b"x");
        let (_dir, name) = download_unnamed(server.url("/dl")).await;
        assert_eq!(name, PathBuf::from(want), "{disposition}");
    }
}

#[actix_rt::test]
async fn control_characters_in_a_disposition_are_replaced() {
    let server = disposed("attachment; filename*=UTF-8''a%01b%0Ac%0D%7Fd.txt", b"x");
    let (_dir, name) = download_unnamed(server.url("/dl")).await;
    assert_eq!(name, PathBuf::from("a_b_c__d.txt"));
}

#[actix_rt::test]
async fn an_overlong_name_is_cut_on_a_character_boundary_keeping_its_extension() {
    // 120 three-byte characters: 360 bytes, more than any file system takes.
    let encoded: String = "日"
        .repeat(120)
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let disposition: &'static str =
        Box::leak(format!("attachment; filename*=UTF-8''{encoded}.pdf").into_boxed_str());
    let server = disposed(disposition, b"x");
    let (_dir, name) = download_unnamed(server.url("/dl")).await;
    let name = name.to_str().unwrap();
    assert!(name.len() <= 250, "{} bytes", name.len());
    assert!(name.ends_with(".pdf"), "{name}");
    assert!(name.trim_end_matches(".pdf").chars().all(|c| c == '日'));
}

#[actix_rt::test]
async fn names_windows_reserves_are_prefixed() {
    for (disposition, want) in [
        ("attachment; filename=CON", "_CON"),
        ("attachment; filename=\"nul.txt\"", "_nul.txt"),
        ("attachment; filename=com1.tar.gz", "_com1.tar.gz"),
    ] {
        let server = disposed(disposition, b"x");
        let (_dir, name) = download_unnamed(server.url("/dl")).await;
        assert_eq!(name, PathBuf::from(want), "{disposition}");
    }
}

#[actix_rt::test]
async fn a_redirected_download_is_named_after_the_final_url() {
    let server = Hostile::start(|req| {
        let answer = match req.path.as_str() {
            "/get?id=1" => redirect(302, "/files/final%20name.iso?sig=x"),
            "/files/final%20name.iso?sig=x" => ok(b"iso"),
            _ => response(404, &[], b""),
        };
        vec![Step::Write(answer)]
    });
    let (dir, name) = download_unnamed(server.url("/get?id=1")).await;
    assert_eq!(name, PathBuf::from("final name.iso"));
    assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), b"iso");
}

#[actix_rt::test]
async fn without_a_disposition_or_a_path_the_name_is_download() {
    let server = Hostile::start(|_| vec![Step::Write(ok(b"root"))]);
    let (_dir, name) = download_unnamed(server.url("/")).await;
    assert_eq!(name, PathBuf::from("download"));
}

#[actix_rt::test]
async fn uniquify_reports_the_real_path_while_running_and_at_the_end() {
    // `/named/mid.bin` and `/unnamed/mid.bin` each send half their body, then wait for a gate.
    let gates = [Gate::new(), Gate::new()];
    let held = gates.clone();
    let server = Hostile::start(move |req| {
        let gate = held[usize::from(req.path.starts_with("/unnamed"))].clone();
        let mut half = head(200, &[("Content-Length", "6")]);
        half.extend_from_slice(b"abc");
        vec![
            Step::Write(half),
            Step::Wait(gate),
            Step::Write(b"def".to_vec()),
        ]
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mid.bin"), b"older").unwrap();
    let engine = engine(dir.path(), |b| b);
    let real = dir.path().canonicalize().unwrap().join("mid (1).bin");

    let downloads = [
        Download::new(server.url("/named/mid.bin")).to("mid.bin"),
        Download::new(server.url("/unnamed/mid.bin")),
    ];
    for (download, gate) in downloads.into_iter().zip(&gates) {
        let _ = std::fs::remove_file(&real);
        let id = submit(&engine, download.conflict(Conflict::Uniquify))
            .await
            .unwrap();
        let running = poll_status(&engine, id, |s| s.bytes_transferred == 3).await;
        assert_eq!(running.path.as_deref().map(canonical), Some(real.clone()));
        gate.open();
        let outcome = wait(&engine, id).await;
        assert_eq!(outcome.path().map(canonical), Some(real.clone()));
        let status = engine.send(Status(id)).await.unwrap().unwrap();
        assert_eq!(status.path.as_deref().map(canonical), Some(real.clone()));
        assert_eq!(std::fs::read(&real).unwrap(), b"abcdef");
        assert_eq!(std::fs::read(dir.path().join("mid.bin")).unwrap(), b"older");
    }
}

/// `path` with its directory resolved (the file itself may be a `.part` still).
fn canonical(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap().canonicalize().unwrap();
    dir.join(path.file_name().unwrap())
}

#[actix_rt::test]
async fn a_segmented_download_without_a_target_is_named_after_its_response() {
    let content = crate::support::pattern(4 << 20);
    let server = crate::ranged::start(content.clone());
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let (_, outcome) = run(
        &engine,
        Download::new(format!("{}/file", server.url)).segments(4),
    )
    .await;
    let name = placed(dir.path(), &outcome);
    assert_eq!(name, PathBuf::from("file"));
    assert_eq!(std::fs::read(dir.path().join(name)).unwrap(), content);
    assert_eq!(files(dir.path()), [PathBuf::from("file")]);
    let ranges = server.seen().iter().filter(|s| s.range.is_some()).count();
    assert_eq!(ranges, 3, "fetched as 4 segments");
}

/// The journal records where an unnamed download's `.part` went once its response named it:
/// after a restart it continues there with a range request, under the same name.
#[cfg(feature = "journal")]
#[actix_rt::test]
async fn an_unnamed_download_resumes_into_its_named_file_after_a_restart() {
    use crate::ranged::Act;
    use actix_transfer::{Engine, Shutdown};

    let content = crate::support::content(4 << 20, 3);
    let server = crate::ranged::start(content.clone());
    server.script([Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(5),
    }]);
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let downloads = dir.path().join("dl");
    let start = || {
        Engine::builder()
            .download_dir(&downloads)
            .journal(&journal)
            .try_start()
            .unwrap()
    };
    let engine = start();
    let id = submit(&engine, Download::new(format!("{}/file", server.url)))
        .await
        .unwrap();
    poll_status(&engine, id, |s| s.bytes_transferred >= 64 << 10).await;
    actix_rt::time::timeout(LIMIT, engine.send(Shutdown))
        .await
        .unwrap()
        .unwrap();
    let part_len = std::fs::metadata(downloads.join("file.part"))
        .unwrap()
        .len();
    assert!(part_len > 0);

    let engine = start();
    let outcome = wait(&engine, id).await;
    assert_eq!(placed(&downloads, &outcome), PathBuf::from("file"));
    assert_eq!(std::fs::read(downloads.join("file")).unwrap(), content);
    assert_eq!(files(&downloads), [PathBuf::from("file")]);
    let resumed = server.seen().last().unwrap().range.clone();
    assert_eq!(resumed, Some(format!("bytes={part_len}-")));
    actix_rt::time::timeout(LIMIT, engine.send(Shutdown))
        .await
        .unwrap()
        .unwrap();
}

#[actix_rt::test]
async fn a_cancelled_unnamed_download_leaves_nothing_and_a_paused_one_continues_its_file() {
    let content = crate::support::pattern(4 << 20);
    let server = crate::ranged::start(content.clone());
    server.script([crate::ranged::Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(5),
    }]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let url = format!("{}/file", server.url);

    let id = submit(&engine, Download::new(url.clone())).await.unwrap();
    poll_status(&engine, id, |s| s.bytes_transferred > 0).await;
    engine
        .send(actix_transfer::Cancel(id))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(wait(&engine, id).await, Outcome::Cancelled { .. }));
    assert_empty(dir.path());

    server.script([crate::ranged::Act::Slow {
        chunk: 16 << 10,
        every: Duration::from_millis(5),
    }]);
    let id = submit(&engine, Download::new(url)).await.unwrap();
    poll_status(&engine, id, |s| s.bytes_transferred > 0).await;
    engine
        .send(actix_transfer::Pause(id))
        .await
        .unwrap()
        .unwrap();
    let paused = engine.send(Status(id)).await.unwrap().unwrap();
    assert!(paused.can_resume, "{paused:?}");
    assert_eq!(
        paused.path.as_deref().map(canonical),
        Some(canonical(&dir.path().join("file")))
    );
    engine
        .send(actix_transfer::Resume(id))
        .await
        .unwrap()
        .unwrap();
    let outcome = wait(&engine, id).await;
    assert_eq!(placed(dir.path(), &outcome), PathBuf::from("file"));
    assert_eq!(std::fs::read(dir.path().join("file")).unwrap(), content);
    assert!(
        server.seen().last().unwrap().range.is_some(),
        "resumed with a range"
    );
}
