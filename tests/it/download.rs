//! Downloads to files: byte-exact content, naming, conflict policies, refusal at submit.

use crate::support;

use actix_transfer::*;
use support::*;

#[actix_rt::test]
async fn downloads_are_byte_exact_and_leave_no_part() {
    let server = server();
    let rig = rig().await;
    for n in [0usize, 1, 11, 100_000, 3 * 1024 * 1024 + 17] {
        let id = rig
            .submit(Download::new(server.url(&format!("/bytes/{n}"))).to(format!("f{n}.bin")))
            .await;
        let outcome = rig.wait(id).await;
        let path = outcome.path().unwrap_or_else(|| panic!("{n}: {outcome:?}"));
        assert_eq!(std::fs::read(path).unwrap(), pattern(n), "{n} bytes");
        assert_eq!(outcome.bytes(), n as u64);
    }
    let files = rig.files();
    assert!(files.iter().all(|f| !f.ends_with(".part")), "{files:?}");
    assert_eq!(files.len(), 5);
}

#[actix_rt::test]
async fn unsynced_downloads_are_placed_just_as_complete() {
    // `fsync(false)`, as the engine's default and per download, and `fsync(true)` overriding
    // that default: each file complete, byte-exact, under its name, no `.part` left.
    let server = server();
    let rig = rig_with(|b| b.fsync(false)).await;
    let n = 2 * 1024 * 1024 + 3;
    let url = server.url(&format!("/bytes/{n}"));
    for d in [
        Download::new(&url).to("default.bin"),
        Download::new(&url).to("off.bin").fsync(false),
        Download::new(&url).to("on.bin").fsync(true),
    ] {
        let id = rig.submit(d).await;
        let outcome = rig.wait(id).await;
        let path = outcome.path().unwrap_or_else(|| panic!("{outcome:?}"));
        assert_eq!(std::fs::read(path).unwrap(), pattern(n));
    }
    assert_eq!(rig.files(), ["default.bin", "off.bin", "on.bin"]);
}

#[actix_rt::test]
async fn names_come_from_the_url_or_a_relative_target() {
    let server = server();
    let rig = rig().await;
    let id = rig.submit(Download::new(server.url("/bytes/10"))).await;
    let from_url = rig.wait(id).await;
    assert_eq!(from_url.path().unwrap().file_name().unwrap(), "10");
    let id = rig
        .submit(Download::new(server.url("/bytes/20")).to("sub/dir/name.dat"))
        .await;
    let nested = rig.wait(id).await;
    assert_eq!(
        nested.path().unwrap(),
        rig.dir
            .path()
            .canonicalize()
            .unwrap()
            .join("sub/dir/name.dat")
    );
    assert_eq!(std::fs::read(nested.path().unwrap()).unwrap(), pattern(20));
}

#[actix_rt::test]
async fn conflict_policies() {
    let server = server();
    let rig = rig().await;
    std::fs::write(rig.dir.path().join("a.txt"), b"old").unwrap();

    let id = rig
        .submit(Download::new(server.url("/bytes/5")).to("a.txt"))
        .await;
    let uniq = rig.wait(id).await;
    assert_eq!(uniq.path().unwrap().file_name().unwrap(), "a (1).txt");
    assert_eq!(std::fs::read(rig.dir.path().join("a.txt")).unwrap(), b"old");

    let id = rig
        .submit(
            Download::new(server.url("/bytes/6"))
                .to("a.txt")
                .conflict(Conflict::Fail),
        )
        .await;
    match rig.wait(id).await.error() {
        Some(TransferError::File { kind, .. }) => assert_eq!(*kind, FileErrorKind::AlreadyExists),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(rig.dir.path().join("a.txt")).unwrap(), b"old");

    let id = rig
        .submit(
            Download::new(server.url("/bytes/7"))
                .to("a.txt")
                .conflict(Conflict::Overwrite),
        )
        .await;
    assert!(rig.wait(id).await.is_completed());
    assert_eq!(
        std::fs::read(rig.dir.path().join("a.txt")).unwrap(),
        pattern(7)
    );
    assert_eq!(rig.files(), vec!["a (1).txt", "a.txt"]);
}

#[actix_rt::test]
async fn concurrent_downloads_of_one_name_get_distinct_files() {
    let server = server();
    let rig = rig().await;
    let downloads = (0..5).map(|_| Download::new(server.url("/bytes/50000")).to("same.bin"));
    for (_, outcome) in rig.run_all(downloads).await {
        assert!(outcome.is_completed(), "{outcome:?}");
    }
    let files = rig.files();
    assert_eq!(files.len(), 5, "{files:?}");
    for f in files {
        assert_eq!(
            std::fs::read(rig.dir.path().join(f)).unwrap(),
            pattern(50000)
        );
    }
}

#[actix_rt::test]
async fn invalid_requests_are_refused_before_any_io() {
    let server = server();
    let rig = rig().await;
    let cases: Vec<(Download, ErrorKind)> = vec![
        (Download::new("not a url"), ErrorKind::InvalidRequest),
        (
            Download::new("ftp://127.0.0.1/x"),
            ErrorKind::InvalidRequest,
        ),
        (
            Download::new("file:///etc/passwd"),
            ErrorKind::InvalidRequest,
        ),
        (
            Download::new(server.url("/bytes/1")).header("bad header", "x"),
            ErrorKind::InvalidRequest,
        ),
        (
            Download::new(server.url("/bytes/1")).header("x-ok", "a\r\nb"),
            ErrorKind::InvalidRequest,
        ),
        (
            Download::new(server.url("/bytes/1")).to("../escape"),
            ErrorKind::UnsafePath,
        ),
        (
            Download::new(server.url("/bytes/1")).to("/abs/path"),
            ErrorKind::UnsafePath,
        ),
        (
            Download::new(server.url("/bytes/1")).to("a/../../b"),
            ErrorKind::UnsafePath,
        ),
        (
            Download::new(server.url("/bytes/1")).to(".hidden"),
            ErrorKind::UnsafePath,
        ),
        (
            Download::new(server.url("/bytes/1")).to(""),
            ErrorKind::UnsafePath,
        ),
    ];
    for (download, kind) in cases {
        let shown = format!("{download:?}");
        let err = rig.engine.send(download).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), kind, "{shown}: {err}");
    }
    assert_eq!(server.requests(), 0, "no request reached the server");
    assert!(rig.files().is_empty());
    assert!(
        rig.engine.send(List::all()).await.unwrap().is_empty(),
        "no id was issued"
    );
}

#[actix_rt::test]
async fn error_statuses_never_reach_the_target() {
    let server = server();
    let rig = rig().await;
    for code in [404u16, 500, 503] {
        let id = rig
            .submit(Download::new(server.url(&format!("/status/{code}"))).to("t.html"))
            .await;
        let outcome = rig.wait(id).await;
        assert_eq!(
            outcome.error(),
            Some(&TransferError::Server { status: code })
        );
    }
    assert!(rig.files().is_empty(), "{:?}", rig.files());
}
