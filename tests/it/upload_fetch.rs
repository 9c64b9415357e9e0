//! Uploads from files and fetches into memory: byte-exact bodies, framing, statuses, caps.

use crate::support;

use actix_transfer::*;
use support::*;

#[actix_rt::test]
async fn put_and_post_upload_the_file_byte_exact_with_content_length() {
    let server = server();
    let rig = rig().await;
    let data = pattern(1_234_567);
    let src = rig.dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    for upload in [
        Upload::new(server.url("/upload"), &src),
        Upload::new(server.url("/upload"), &src).post(),
    ] {
        let id = rig.submit(upload).await;
        let outcome = rig.wait(id).await;
        let reply = String::from_utf8(outcome.body().expect("completed").to_vec()).unwrap();
        assert_eq!(reply, format!("{} {}", data.len(), sha256_hex(&data)));
        assert_eq!(outcome.bytes(), data.len() as u64);

        let events = rig.events.of(id);
        match &events[1].kind {
            EventKind::Began {
                status,
                bytes_estimated,
                ..
            } => {
                assert_eq!(*status, None, "an upload begins before any response");
                assert_eq!(*bytes_estimated, Some(data.len() as u64));
            }
            other => panic!("{other:?}"),
        }
        let last_progress = events.iter().rev().find_map(|e| match e.kind {
            EventKind::Progress {
                bytes_transferred, ..
            } => Some(bytes_transferred),
            _ => None,
        });
        assert_eq!(last_progress, Some(data.len() as u64));
    }
    let uploads = server.state.uploads.lock().unwrap();
    assert_eq!(uploads.len(), 2);
    for (i, (method, length, encoding, body)) in uploads.iter().enumerate() {
        assert_eq!(method, ["PUT", "POST"][i]);
        assert_eq!(
            length.as_deref(),
            Some("1234567"),
            "sent with Content-Length"
        );
        assert_eq!(encoding, &None, "not chunked");
        assert_eq!(body, &data);
    }
}

#[actix_rt::test]
async fn an_empty_file_uploads_as_an_empty_body() {
    let server = server();
    let rig = rig().await;
    let src = rig.dir.path().join("empty");
    std::fs::write(&src, b"").unwrap();
    let id = rig.submit(Upload::new(server.url("/upload"), &src)).await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.body().map(|b| b.to_vec()),
        Some(format!("0 {}", sha256_hex(b"")).into_bytes())
    );
}

#[actix_rt::test]
async fn a_missing_upload_file_is_refused_at_submit() {
    let server = server();
    let rig = rig().await;
    for path in [rig.dir.path().join("nope"), rig.dir.path().to_path_buf()] {
        let err = rig
            .engine
            .send(Upload::new(server.url("/upload"), &path))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    }
    assert_eq!(server.requests(), 0);
}

#[actix_rt::test]
async fn fetches_send_method_headers_and_body() {
    let server = server();
    let rig = rig().await;
    let id = rig
        .submit(
            Fetch::new("POST", server.url("/echo"))
                .header("x-test", "yes")
                .body("payload"),
        )
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(outcome.body().unwrap().as_ref(), b"POST yes\npayload");
    let id = rig.submit(Fetch::get(server.url("/bytes/70000"))).await;
    assert_eq!(
        rig.wait(id).await.body().unwrap().as_ref(),
        &pattern(70000)[..]
    );
}

#[actix_rt::test]
async fn statuses_fail_unless_any_status_is_accepted() {
    let server = server();
    let rig = rig().await;
    let id = rig.submit(Fetch::get(server.url("/status/404"))).await;
    assert_eq!(
        rig.wait(id).await.error(),
        Some(&TransferError::Server { status: 404 })
    );
    let id = rig
        .submit(Fetch::get(server.url("/status/404")).accept_any_status())
        .await;
    match rig.wait(id).await {
        Outcome::Completed { status, output, .. } => {
            assert_eq!(status, 404);
            assert_eq!(
                output,
                Output::Body("an error page that must never be saved".into())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[actix_rt::test]
async fn bodies_over_the_cap_fail_with_body_too_large() {
    let server = server();
    let rig = rig_with(|b| b.max_body(10_000)).await;
    // Announced length over the cap: refused from the headers.
    let id = rig.submit(Fetch::get(server.url("/bytes/10001"))).await;
    assert_eq!(
        rig.wait(id).await.error(),
        Some(&TransferError::BodyTooLarge { limit: 10_000 })
    );
    // Unknown length: refused as soon as the cap is passed.
    let id = rig
        .submit(Fetch::get(server.url("/chunked/100000")).max_body(20_000))
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(
        outcome.error(),
        Some(&TransferError::BodyTooLarge { limit: 20_000 })
    );
    assert!(outcome.bytes() <= 20_000 + 8192, "{}", outcome.bytes());
    // At the cap: fine.
    let id = rig.submit(Fetch::get(server.url("/bytes/10000"))).await;
    assert!(rig.wait(id).await.is_completed());
}

#[actix_rt::test]
async fn every_completed_outcome_carries_the_final_response_headers() {
    let server = server();
    let rig = rig().await;
    let data = pattern(100_000);
    let src = rig.dir.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let header = |outcome: &Outcome, name: &str| match outcome {
        Outcome::Completed { headers, .. } => headers.get(name).map(str::to_owned),
        other => panic!("{other:?}"),
    };

    let id = rig.submit(Upload::new(server.url("/created"), &src)).await;
    let outcome = rig.wait(id).await;
    assert!(
        matches!(outcome, Outcome::Completed { status: 201, .. }),
        "{outcome:?}"
    );
    assert_eq!(header(&outcome, "location").as_deref(), Some("/files/1"));
    let etag = format!("\"{}\"", sha256_hex(&data));
    assert_eq!(header(&outcome, "ETag"), Some(etag));

    let id = rig
        .submit(Download::new(server.url("/bytes/5000")).to("d.bin"))
        .await;
    assert_eq!(
        header(&rig.wait(id).await, "content-length").as_deref(),
        Some("5000")
    );
    let id = rig.submit(Fetch::get(server.url("/bytes/7000"))).await;
    assert_eq!(
        header(&rig.wait(id).await, "content-length").as_deref(),
        Some("7000")
    );
}
