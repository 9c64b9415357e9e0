//! File safety: targets stay inside the download dir, disk errors end as `File` errors with
//! the OS reason, and the engine keeps serving afterwards.

mod support;

use std::{path::Path, process::Command};

use actix_transfer::*;
use support::*;

#[actix_rt::test]
async fn a_symlink_out_of_the_download_dir_is_refused() {
    let server = server();
    let rig = rig().await;
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), rig.dir.path().join("escape")).unwrap();
    let id = rig
        .submit(Download::new(server.url("/bytes/10")).to("escape/owned.txt"))
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error().map(TransferError::kind),
        Some(ErrorKind::UnsafePath),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert_eq!(server.requests(), 0, "refused before any request");
}

#[actix_rt::test]
async fn a_symlinked_target_name_is_not_followed() {
    let server = server();
    let rig = rig().await;
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    std::os::unix::fs::symlink(&victim, rig.dir.path().join("t.txt")).unwrap();
    let id = rig
        .submit(
            Download::new(server.url("/bytes/10"))
                .to("t.txt")
                .conflict(Conflict::Overwrite),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error().map(TransferError::kind),
        Some(ErrorKind::UnsafePath)
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
}

/// A tmpfs mounted for one test, unmounted on drop. `None` where mounting is not allowed.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[actix_rt::test]
async fn disk_errors_are_file_errors_and_the_engine_survives() {
    let server = server();
    let rig = rig().await;
    let full = rig.dir.path().join("full");
    let ro = rig.dir.path().join("ro");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::create_dir_all(&ro).unwrap();
    let (Some(_full), Some(_ro)) = (
        Mount::tmpfs(&full, "size=64k"),
        Mount::tmpfs(&ro, "ro,size=64k"),
    ) else {
        // Mounting needs root (CI and the development machines run as root).
        eprintln!("skipped: tmpfs cannot be mounted here");
        return;
    };

    let id = rig
        .submit(Download::new(server.url("/bytes/1000000")).to("full/big.bin"))
        .await;
    match rig.wait(id).await.error() {
        Some(TransferError::File { kind, .. }) => assert_eq!(*kind, FileErrorKind::NoSpace),
        other => panic!("{other:?}"),
    }
    assert!(!full.join("big.bin").exists());

    let id = rig
        .submit(Download::new(server.url("/bytes/10")).to("ro/x.bin"))
        .await;
    match rig.wait(id).await.error() {
        Some(TransferError::File { kind, message, .. }) => {
            assert_eq!(*kind, FileErrorKind::AccessDenied, "{message}")
        }
        other => panic!("{other:?}"),
    }

    // The engine still works.
    let id = rig
        .submit(Download::new(server.url("/bytes/10")).to("fine.bin"))
        .await;
    assert!(rig.wait(id).await.is_completed());
}

#[actix_rt::test]
async fn a_target_under_a_file_is_a_file_error() {
    let server = server();
    let rig = rig().await;
    std::fs::write(rig.dir.path().join("plain"), b"x").unwrap();
    let id = rig
        .submit(Download::new(server.url("/bytes/10")).to("plain/sub.bin"))
        .await;
    assert_eq!(
        rig.wait(id).await.error().map(TransferError::kind),
        Some(ErrorKind::File)
    );
    assert_eq!(server.requests(), 0, "refused before any request");
}
