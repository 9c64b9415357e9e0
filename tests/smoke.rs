use actix_transfer::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures::StreamExt;
use std::time::Duration;

#[actix_rt::test]
async fn smoke() {
    let server = HttpServer::new(|| {
        App::new()
            .route("/small", web::get().to(|| async { "hello world" }))
            .route(
                "/big",
                web::get()
                    .to(|| async { HttpResponse::Ok().body(vec![7u8; 3 * 1024 * 1024 + 17]) }),
            )
            .route(
                "/slow",
                web::get().to(|| async {
                    let s = futures::stream::iter(0..1000).then(|_| async {
                        actix_rt::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, std::io::Error>(web::Bytes::from(vec![1u8; 1024]))
                    });
                    HttpResponse::Ok()
                        .insert_header(("content-length", "1024000"))
                        .streaming(s)
                }),
            )
            .route(
                "/up",
                web::put().to(|mut body: web::Payload| async move {
                    let mut n = 0;
                    while let Some(c) = body.next().await {
                        n += c.unwrap().len();
                    }
                    format!("got {n}")
                }),
            )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let srv = server.run();
    let h = srv.handle();
    actix_rt::spawn(srv);
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .download_dir(dir.path())
        .workers(2)
        .start();
    let id = engine
        .send(Download::new(format!("http://{addr}/small")))
        .await
        .unwrap()
        .unwrap();
    let o = engine.send(Wait(id)).await.unwrap().unwrap();
    println!("{o:?}");
    assert!(o.is_completed());
    let id = engine
        .send(Download::new(format!("http://{addr}/big")))
        .await
        .unwrap()
        .unwrap();
    let o = engine.send(Wait(id)).await.unwrap().unwrap();
    assert_eq!(o.bytes(), 3 * 1024 * 1024 + 17);
    assert_eq!(
        std::fs::read(o.path().unwrap()).unwrap().len(),
        3 * 1024 * 1024 + 17
    );
    let id = engine
        .send(Fetch::get(format!("http://{addr}/small")))
        .await
        .unwrap()
        .unwrap();
    let o = engine.send(Wait(id)).await.unwrap().unwrap();
    assert_eq!(o.body().unwrap().as_ref(), b"hello world");
    let f = dir.path().join("up.bin");
    std::fs::write(&f, vec![3u8; 1_000_000]).unwrap();
    let id = engine
        .send(Upload::new(format!("http://{addr}/up"), &f))
        .await
        .unwrap()
        .unwrap();
    let o = engine.send(Wait(id)).await.unwrap().unwrap();
    println!("{o:?}");
    assert_eq!(o.body().unwrap().as_ref(), b"got 1000000");
    let id = engine
        .send(Download::new(format!("http://{addr}/slow")))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..100 {
        let s = engine.send(Status(id)).await.unwrap().unwrap();
        if s.bytes_transferred > 10_000 {
            break;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let t = std::time::Instant::now();
    let r = engine.send(Cancel(id)).await.unwrap();
    println!("cancel {:?} in {:?}", r, t.elapsed());
    assert_eq!(r, Ok(()));
    assert_eq!(
        engine.send(Cancel(id)).await.unwrap(),
        Err(CancelError::NotActive(EndState::Cancelled))
    );
    println!(
        "{:?}",
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
    engine.send(Shutdown).await.unwrap();
    h.stop(true).await;
}
