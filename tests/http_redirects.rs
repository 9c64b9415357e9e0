//! Redirects, followed by the engine: limits and loops, schemes, what crosses origins, and
//! bodies re-sent on 307/308.

mod support;

use std::sync::{Arc, Mutex};

use actix_transfer::*;
use actix_web::{http::header, web, App, HttpRequest, HttpResponse, HttpServer};
use support::*;

/// What the landing server saw: (path, method, authorization, x-keep, body length).
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Option<String>, usize)>>>;

/// Start a server that redirects as its paths say, and records what reaches `/land*`.
fn redirector(seen: Seen) -> String {
    let srv = HttpServer::new(move || {
        let seen = seen.clone();
        App::new()
            .route(
                "/chain/{n}",
                web::get().to(|n: web::Path<u32>| async move {
                    if *n == 0 {
                        HttpResponse::Ok().body("end of chain")
                    } else {
                        found(&format!("/chain/{}", *n - 1))
                    }
                }),
            )
            .route("/loop", web::get().to(|| async { found("/loop") }))
            .route(
                "/ftp",
                web::get().to(|| async { found("ftp://127.0.0.1/file") }),
            )
            .route(
                "/bad-location",
                web::get().to(|| async { found("http://[::1") }),
            )
            .route(
                "/no-location",
                web::get().to(|| async { HttpResponse::Found().finish() }),
            )
            .route(
                "/away",
                web::to(|q: web::Query<Vec<(String, String)>>| async move {
                    let to = &q.0.iter().find(|(k, _)| k == "to").unwrap().1;
                    let code: u16 =
                        q.0.iter()
                            .find(|(k, _)| k == "code")
                            .map_or(302, |c| c.1.parse().unwrap());
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                        .insert_header((header::LOCATION, to.clone()))
                        .finish()
                }),
            )
            .default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let seen = seen.clone();
                async move {
                    let h = |n: &str| req.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
                    seen.lock().unwrap().push((
                        req.path().to_owned(),
                        req.method().to_string(),
                        h("authorization"),
                        h("x-keep"),
                        body.len(),
                    ));
                    HttpResponse::Ok().body(format!("landed {}", body.len()))
                }
            }))
            .app_data(web::PayloadConfig::new(16 << 20))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let base = format!("http://{}", srv.addrs()[0]);
    actix_rt::spawn(srv.run());
    base
}

fn found(to: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, to))
        .finish()
}

fn enc(s: &str) -> String {
    s.replace(':', "%3A")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('&', "%26")
        .replace('=', "%3D")
}

#[actix_rt::test]
async fn chains_are_followed_and_the_final_url_reported() {
    let a = redirector(Seen::default());
    let rig = rig().await;
    let id = rig
        .submit(Download::new(format!("{a}/chain/3")).to("c.txt"))
        .await;
    match rig.wait(id).await {
        Outcome::Completed { url, output, .. } => {
            assert_eq!(url, format!("{a}/chain/0"));
            assert_eq!(
                output,
                Output::File(rig.dir.path().canonicalize().unwrap().join("c.txt"))
            );
        }
        other => panic!("{other:?}"),
    }
    let status = rig.engine.send(Status(id)).await.unwrap().unwrap();
    assert_eq!(status.final_url, Some(format!("{a}/chain/0")));
    assert_eq!(status.url, format!("{a}/chain/3"));
}

#[actix_rt::test]
async fn loops_and_long_chains_end_as_too_many_redirects() {
    let a = redirector(Seen::default());
    let rig = rig_with(|b| b.max_redirects(2)).await;
    let id = rig.submit(Download::new(format!("{a}/loop")).to("l")).await;
    assert_eq!(
        rig.wait(id).await.error(),
        Some(&TransferError::TooManyRedirects { limit: 2 })
    );
    let id = rig.submit(Fetch::get(format!("{a}/chain/3"))).await;
    assert_eq!(
        rig.wait(id).await.error(),
        Some(&TransferError::TooManyRedirects { limit: 2 })
    );
    let id = rig.submit(Fetch::get(format!("{a}/chain/2"))).await;
    assert!(
        rig.wait(id).await.is_completed(),
        "exactly the limit is fine"
    );
    assert!(rig.files().is_empty());
}

#[actix_rt::test]
async fn other_schemes_and_bad_locations_are_refused() {
    let a = redirector(Seen::default());
    let rig = rig().await;
    for path in ["/ftp", "/bad-location"] {
        let id = rig
            .submit(Download::new(format!("{a}{path}")).to("x"))
            .await;
        let outcome = rig.wait(id).await;
        assert_eq!(
            outcome.error().map(TransferError::kind),
            Some(ErrorKind::RedirectRefused),
            "{path}: {outcome:?}"
        );
    }
    let id = rig
        .submit(Download::new(format!("{a}/no-location")).to("x"))
        .await;
    assert_eq!(
        rig.wait(id).await.error(),
        Some(&TransferError::Server { status: 302 })
    );
    assert!(rig.files().is_empty());
}

#[actix_rt::test]
async fn credentials_do_not_cross_origins() {
    let seen_a = Seen::default();
    let seen_b = Seen::default();
    let a = redirector(seen_a.clone());
    let b = redirector(seen_b.clone());
    let rig = rig().await;
    let fetch = |to: String| {
        Fetch::get(format!("{a}/away?to={}", enc(&to)))
            .header("authorization", "Bearer secret")
            .header("x-keep", "kept")
    };
    // Same origin: kept.
    let id = rig.submit(fetch(format!("{a}/land-same"))).await;
    assert!(rig.wait(id).await.is_completed());
    // Another origin (another port): stripped, other headers kept.
    let id = rig.submit(fetch(format!("{b}/land-other"))).await;
    assert!(rig.wait(id).await.is_completed());
    let same = seen_a.lock().unwrap().clone();
    let other = seen_b.lock().unwrap().clone();
    assert_eq!(same[0].2.as_deref(), Some("Bearer secret"));
    assert_eq!(other[0].0, "/land-other");
    assert_eq!(other[0].2, None, "authorization stripped across origins");
    assert_eq!(other[0].3.as_deref(), Some("kept"));
}

#[actix_rt::test]
async fn bodies_are_resent_on_307_and_308_and_dropped_on_303() {
    let seen = Seen::default();
    let a = redirector(seen.clone());
    let rig = rig().await;
    let src = rig.dir.path().join("up.bin");
    std::fs::write(&src, pattern(700_000)).unwrap();
    for code in [307, 308] {
        let url = format!("{a}/away?code={code}&to={}", enc(&format!("/land-{code}")));
        let id = rig.submit(Upload::new(url, &src).post()).await;
        let outcome = rig.wait(id).await;
        assert_eq!(outcome.body().unwrap().as_ref(), b"landed 700000", "{code}");
    }
    let url = format!("{a}/away?code=303&to={}", enc("/land-303"));
    let id = rig.submit(Fetch::new("POST", url).body("payload")).await;
    assert_eq!(rig.wait(id).await.body().unwrap().as_ref(), b"landed 0");
    let seen = seen.lock().unwrap().clone();
    let methods: Vec<(String, String, usize)> = seen.into_iter().map(|s| (s.0, s.1, s.4)).collect();
    assert_eq!(
        methods,
        vec![
            ("/land-307".into(), "POST".into(), 700_000),
            ("/land-308".into(), "POST".into(), 700_000),
            ("/land-303".into(), "GET".into(), 0),
        ]
    );
}
