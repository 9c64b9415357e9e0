//! Encoding: no automatic decompression. A gzip bomb is stored as the wire bytes it is.

mod hostile;
mod support;

use std::io::Write;

use actix_transfer::*;
use hostile::{header_of, response, Hostile, Reply};
use support::*;

fn bomb() -> Vec<u8> {
    // 64 MiB of zeros compress to ~64 KiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap()
}

#[actix_rt::test]
async fn a_gzip_bomb_is_stored_compressed_and_counted_on_the_wire() {
    let wire = bomb();
    assert!(wire.len() < 200_000);
    let body = wire.clone();
    let server = Hostile::start(move |_| {
        Reply::Close(response(
            "200 OK",
            &[
                ("content-encoding", "gzip".into()),
                ("content-length", body.len().to_string()),
            ],
            &body,
        ))
    });
    let rig = rig().await;
    let id = rig
        .submit(Download::new(server.url("/bomb.gz")).to("bomb.gz"))
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(outcome.bytes(), wire.len() as u64, "{outcome:?}");
    assert_eq!(std::fs::read(outcome.path().unwrap()).unwrap(), wire);
    let request = &server.requests()[0];
    assert_eq!(
        header_of(request, "accept-encoding").as_deref(),
        Some("identity")
    );

    // The same for a fetch: the body in memory is the compressed bytes.
    let id = rig.submit(Fetch::get(server.url("/bomb.gz"))).await;
    assert_eq!(rig.wait(id).await.body().unwrap().len(), wire.len());
}

#[actix_rt::test]
async fn a_caller_may_ask_for_another_encoding_and_gets_the_raw_bytes() {
    let server = Hostile::start(|_| {
        Reply::Close(response(
            "200 OK",
            &[
                ("content-encoding", "br".into()),
                ("content-length", "4".into()),
            ],
            b"\x0b\x01\x80\x03",
        ))
    });
    let rig = rig().await;
    let id = rig
        .submit(Fetch::get(server.url("/x")).header("accept-encoding", "br"))
        .await;
    let outcome = rig.wait(id).await;
    assert_eq!(outcome.body().unwrap().as_ref(), b"\x0b\x01\x80\x03");
    assert_eq!(
        header_of(&server.requests()[0], "accept-encoding").as_deref(),
        Some("br")
    );
}
