//! File safety: target names stay under the download directory (refused before any request
//! otherwise), conflict policies, and disk errors (read-only, full) that end as `File` errors
//! with the OS reason while the engine goes on serving.

use crate::hostile;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use actix_transfer::{Conflict, Download, ErrorKind, FileErrorKind, List, TransferError};
use hostile::*;

/// Every way a target name could leave the download directory, or hide in it.
const UNSAFE: &[&str] = &[
    "../escape.txt",
    "a/../../escape.txt",
    "a/b/../../../escape.txt",
    "/etc/passwd",
    "/tmp/escape.txt",
    "",
    ".",
    "..",
    "a/./b.txt",
    "a//b.txt",
    "a/",
    ".hidden",
    "trailing.",
    "a/.git/config",
    " leading-space",
    "trailing-space ",
    "a\\..\\escape.txt",
    "nul\0byte",
    "line\nbreak",
];

#[actix_rt::test]
async fn unsafe_targets_are_refused_before_any_request() {
    let server = Hostile::always(vec![Step::Write(ok(b"must not be fetched"))]);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("downloads");
    let engine = engine(&dir, |b| b);

    for name in UNSAFE {
        let refused = submit(&engine, Download::new(server.url("/x")).to(*name)).await;

        let Err(TransferError::UnsafePath { path, reason }) = &refused else {
            panic!("{name:?} was not refused as unsafe: {refused:?}")
        };
        assert_eq!(path, name);
        assert!(!reason.is_empty());
    }
    assert_eq!(server.connections(), 0, "a request was made");
    assert!(engine.send(List(None)).await.unwrap().is_empty());
    assert_eq!(files(root.path()), Vec::<PathBuf>::new());
}

#[actix_rt::test]
async fn a_name_taken_from_the_url_is_sanitised_into_the_directory() {
    let server = Hostile::always(vec![Step::Write(ok(b"inside"))]);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a/b");
    let engine = engine(&dir, |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/..%2F..%2Fescape.txt"))).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    let path = outcome.path().unwrap();
    assert_eq!(path.parent().unwrap(), dir.canonicalize().unwrap());
    assert_eq!(std::fs::read(path).unwrap(), b"inside");
    // Nothing anywhere else under the root.
    let all = files(root.path());
    assert_eq!(all.len(), 1, "{all:?}");
    assert!(all[0].starts_with("a/b"), "{all:?}");
}

#[actix_rt::test]
async fn a_symlinked_directory_leading_outside_is_refused_before_any_request() {
    let server = Hostile::always(vec![Step::Write(ok(b"must not be fetched"))]);
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to("link/f.bin")).await;

    assert_failed(&outcome, ErrorKind::UnsafePath);
    assert_eq!(server.connections(), 0, "a request was made");
    assert_eq!(files(outside.path()), Vec::<PathBuf>::new());
}

#[actix_rt::test]
async fn a_symlinked_target_or_part_file_is_refused() {
    let server = Hostile::always(vec![Step::Write(ok(b"must not be fetched"))]);
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("t.bin")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("p.bin.part")).unwrap();
    let engine = engine(dir.path(), |b| b);

    for (name, conflict) in [
        ("t.bin", Conflict::Overwrite),
        ("t.bin", Conflict::Uniquify),
        ("p.bin", Conflict::Overwrite),
    ] {
        let download = Download::new(server.url("/x")).to(name).conflict(conflict);
        let (_, outcome) = run(&engine, download).await;

        assert_failed(&outcome, ErrorKind::UnsafePath);
    }
    assert_eq!(server.connections(), 0, "a request was made");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[actix_rt::test]
async fn conflict_policies() {
    let server = Hostile::always(vec![Step::Write(ok(b"new"))]);
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("c.txt");
    std::fs::write(&existing, b"old").unwrap();
    let engine = engine(dir.path(), |b| b);
    let download = |c: Conflict| Download::new(server.url("/x")).to("c.txt").conflict(c);

    // Uniquify (the default): the new file goes next to the old one.
    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to("c.txt")).await;
    assert_eq!(outcome.path(), Some(dir.path().join("c (1).txt").as_path()));
    let (_, outcome) = run(&engine, download(Conflict::Uniquify)).await;
    assert_eq!(outcome.path(), Some(dir.path().join("c (2).txt").as_path()));
    assert_eq!(std::fs::read(&existing).unwrap(), b"old");

    // Fail: refused before any request, the old file untouched.
    let before = server.requests().len();
    let (_, outcome) = run(&engine, download(Conflict::Fail)).await;
    let error = assert_failed(&outcome, ErrorKind::File);
    assert!(
        matches!(
            error,
            TransferError::File {
                kind: FileErrorKind::AlreadyExists,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), before, "a request was made");
    assert_eq!(std::fs::read(&existing).unwrap(), b"old");

    // Overwrite: replaced once the new file is complete.
    let (_, outcome) = run(&engine, download(Conflict::Overwrite)).await;
    assert_eq!(outcome.path(), Some(existing.as_path()));
    assert_eq!(std::fs::read(&existing).unwrap(), b"new");

    let names: Vec<PathBuf> = files(dir.path());
    assert_eq!(
        names,
        ["c (1).txt", "c (2).txt", "c.txt"].map(PathBuf::from)
    );
}

/// A tmpfs mounted on `at` (root only); unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` when this process may not mount (not root, or no CAP_SYS_ADMIN).
    fn mount(at: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mount or explain why the test cannot run here.
fn tmpfs_or_skip(at: &Path, options: &str) -> Option<Tmpfs> {
    let mounted = Tmpfs::mount(at, options);
    if mounted.is_none() {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
    }
    mounted
}

#[actix_rt::test]
async fn a_read_only_directory_is_a_file_error_and_the_engine_goes_on() {
    let server = Hostile::always(vec![Step::Write(ok(b"content"))]);
    let dir = tempfile::tempdir().unwrap();
    let Some(_ro) = tmpfs_or_skip(&dir.path().join("ro"), "ro,size=64k") else {
        return;
    };
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to("ro/f.bin")).await;

    let error = assert_failed(&outcome, ErrorKind::File);
    let TransferError::File { kind, message, .. } = error else {
        unreachable!()
    };
    assert_eq!(*kind, FileErrorKind::AccessDenied, "{error:?}");
    assert!(message.contains("Read-only file system"), "{message}");
    assert_eq!(server.connections(), 0, "a request was made");
    assert_eq!(files(&dir.path().join("ro")), Vec::<PathBuf>::new());

    // The same engine serves the next transfer.
    let (_, next) = run(&engine, Download::new(server.url("/x")).to("ok.bin")).await;
    assert!(next.is_completed(), "{next:?}");
    assert_eq!(
        std::fs::read(dir.path().join("ok.bin")).unwrap(),
        b"content"
    );
}

#[actix_rt::test]
async fn a_full_disk_is_a_file_error_and_the_engine_goes_on() {
    let body = pattern(2 * 1024 * 1024);
    let server = Hostile::always(vec![Step::Write(ok(&body))]);
    let dir = tempfile::tempdir().unwrap();
    let Some(_full) = tmpfs_or_skip(&dir.path().join("small"), "size=64k") else {
        return;
    };
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to("small/big.bin")).await;

    let error = assert_failed(&outcome, ErrorKind::File);
    let TransferError::File { kind, message, .. } = error else {
        unreachable!()
    };
    assert_eq!(*kind, FileErrorKind::NoSpace, "{error:?}");
    assert!(message.contains("No space left on device"), "{message}");
    assert!(!error.is_retryable());
    assert!(!dir.path().join("small/big.bin").exists());
    // A `.part` left behind holds only a correct prefix (a write that failed part-way leaves
    // nothing that counts as landed, so it may also be gone).
    if let Some(landed) = part(&dir.path().join("small"), "big.bin") {
        assert!(landed.len() < body.len() && body.starts_with(&landed));
    }

    // The same engine serves the next transfer, to a disk with room.
    let (_, next) = run(&engine, Download::new(server.url("/x")).to("roomy.bin")).await;
    assert!(next.is_completed(), "{next:?}");
    assert_eq!(std::fs::read(dir.path().join("roomy.bin")).unwrap(), body);
}

#[actix_rt::test]
async fn a_target_under_a_plain_file_is_a_file_error_before_any_request() {
    let server = Hostile::always(vec![Step::Write(ok(b"content"))]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), b"x").unwrap();
    let engine = engine(dir.path(), |b| b);

    let (_, outcome) = run(&engine, Download::new(server.url("/x")).to("plain/sub.bin")).await;

    assert_failed(&outcome, ErrorKind::File);
    assert!(server.requests().is_empty(), "refused before any request");
    assert_eq!(std::fs::read(dir.path().join("plain")).unwrap(), b"x");
}
