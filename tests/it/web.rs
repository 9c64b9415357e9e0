//! The control plane (`actix_transfer::web`): every route and error code over real loopback
//! HTTP with awc, the auth rules, the event stream (ids, reconnection, gaps, keep-alive), the
//! 2-second stop with event clients connected, and the dashboard in a headless Chromium.

use crate::support;

use std::time::{Duration, Instant};

use actix::Addr;
use actix_transfer::{
    web::{deny_private_networks, ControlPanel, WebConfig},
    *,
};
use actix_web::dev::ServerHandle;
use futures::StreamExt;
use serde_json::{json, Value};
use support::*;

const TOKEN: &str = "test-token-1234";

/// An engine, its control panel on a loopback server, and a temp download dir.
struct Panel {
    base: String,
    engine: Addr<Engine>,
    panel: ControlPanel,
    handle: ServerHandle,
    dir: tempfile::TempDir,
}

async fn panel_with(config: impl FnOnce(WebConfig) -> WebConfig) -> Panel {
    panel_of(|b| b, config).await
}

async fn panel_of(
    engine: impl FnOnce(EngineBuilder) -> EngineBuilder,
    config: impl FnOnce(WebConfig) -> WebConfig,
) -> Panel {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(
        Engine::builder()
            .workers(1)
            .download_dir(dir.path())
            .progress_interval(Duration::from_millis(20))
            .retry(RetryPolicy::never()),
    )
    .start();
    let panel = ControlPanel::start(engine.clone(), config(WebConfig::with_token(TOKEN)));
    let p = panel.clone();
    let (base, handle) = serve_app(move |app| p.routes()(app));
    Panel {
        base,
        engine,
        panel,
        handle,
        dir,
    }
}

async fn panel() -> Panel {
    panel_with(|c| c).await
}

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish()
}

/// One request with the token; the status and the body as JSON (`Null` when empty).
async fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    call_with(method, url, Some(TOKEN), body).await
}

async fn call_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut res = match body {
        Some(b) => req.send_json(&b).await.unwrap(),
        None => req.send().await.unwrap(),
    };
    let bytes = res.body().await.unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (res.status().as_u16(), v)
}

fn kind(v: &Value) -> &str {
    v["error"]["kind"].as_str().unwrap_or("<no error kind>")
}

/// Polls a transfer's status until `pred` holds (bounded).
async fn until_status(p: &Panel, id: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let (code, v) = call("GET", &format!("{}/api/transfers/{id}", p.base), None).await;
        assert_eq!(code, 200, "{v}");
        if pred(&v) {
            return v;
        }
        assert!(start.elapsed() < LIMIT, "{what}: last status {v}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn create(p: &Panel, body: Value) -> u64 {
    let (code, v) = call("POST", &format!("{}/api/transfers", p.base), Some(body)).await;
    assert_eq!(code, 201, "{v}");
    v["id"].as_u64().unwrap()
}

#[actix_rt::test]
async fn create_status_list_and_the_ended_rules() {
    let server = server();
    let p = panel().await;
    let res = client()
        .post(format!("{}/api/transfers", p.base))
        .bearer_auth(TOKEN)
        .send_json(&json!({"url": server.url("/bytes/1000"), "path": "a/one.bin"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let mut res = res;
    let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    assert_eq!(
        res.headers().get("location").unwrap(),
        &format!("/api/transfers/{id}")
    );
    let v = until_status(&p, id, "completes", |v| v["state"] == "ended").await;
    assert_eq!(v["outcome"], "completed");
    assert_eq!(v["kind"], "download");
    assert_eq!(v["url"], server.url("/bytes/1000"));
    assert_eq!(v["bytes"], 1000);
    assert_eq!(v["total"], 1000);
    assert_eq!(v["eta"], Value::Null);
    assert!(v["path"].as_str().unwrap().ends_with("a/one.bin"), "{v}");
    assert_eq!(
        std::fs::read(p.dir.path().join("a/one.bin")).unwrap(),
        pattern(1000)
    );

    // A fetch and a failing download, then the list and its filters.
    let fetch = create(&p, json!({"url": server.url("/bytes/10"), "kind": "fetch"})).await;
    let failing = create(&p, json!({"url": server.url("/status/404")})).await;
    let f = until_status(&p, failing, "fails", |v| v["state"] == "ended").await;
    assert_eq!(f["outcome"], "failed");
    assert_eq!(f["error"]["kind"], "server");
    until_status(&p, fetch, "fetched", |v| v["state"] == "ended").await;
    let (code, all) = call("GET", &format!("{}/api/transfers", p.base), None).await;
    assert_eq!(code, 200);
    let ids: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [id, fetch, failing]);
    let (_, ended) = call(
        "GET",
        &format!("{}/api/transfers?state=ended", p.base),
        None,
    )
    .await;
    assert_eq!(ended.as_array().unwrap().len(), 3);
    let (_, active) = call(
        "GET",
        &format!("{}/api/transfers?state=active", p.base),
        None,
    )
    .await;
    assert_eq!(active, json!([]));
    let (code, v) = call(
        "GET",
        &format!("{}/api/transfers?state=bogus", p.base),
        None,
    )
    .await;
    assert_eq!((code, kind(&v)), (400, "invalid_request"), "{v}");

    // Ended: cancel, pause, resume and rate answer 409 with how it ended.
    let t = |s: &str| format!("{}/api/transfers/{id}{s}", p.base);
    for (method, url, body) in [
        ("DELETE", t(""), None),
        ("POST", t("/pause"), None),
        ("POST", t("/resume"), None),
        ("PUT", t("/rate"), Some(json!({"bytes_per_sec": 1000}))),
    ] {
        let (code, v) = call(method, &url, body).await;
        assert_eq!(code, 409, "{method} {url}: {v}");
        assert_eq!(kind(&v), "not_active");
        assert_eq!(v["error"]["ended"], "completed");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("completed"));
    }
    let (code, v) = call(
        "DELETE",
        &format!("{}/api/transfers/{failing}", p.base),
        None,
    )
    .await;
    assert_eq!((code, v["error"]["ended"].as_str()), (409, Some("failed")));

    // Erase forgets it (the file stays unless asked); then every route says 404.
    let (code, _) = call("POST", &t("/erase"), None).await;
    assert_eq!(code, 204);
    assert!(p.dir.path().join("a/one.bin").exists());
    let (code, _) = call(
        "POST",
        &format!("{}/api/transfers/{fetch}/erase?delete_files=true", p.base),
        None,
    )
    .await;
    assert_eq!(code, 204);
    for (method, url, body) in [
        ("GET", t(""), None),
        ("DELETE", t(""), None),
        ("POST", t("/pause"), None),
        ("POST", t("/resume"), None),
        ("POST", t("/erase"), None),
        ("PUT", t("/rate"), Some(json!({"bytes_per_sec": null}))),
        ("GET", format!("{}/api/transfers/abc", p.base), None),
        ("GET", format!("{}/api/transfers/0", p.base), None),
    ] {
        let (code, v) = call(method, &url, body).await;
        assert_eq!((code, kind(&v)), (404, "unknown"), "{method} {url}: {v}");
    }
    server.stop().await;
}

#[actix_rt::test]
async fn a_running_transfer_pauses_resumes_is_rated_and_cancelled() {
    let server = server();
    let p = panel().await;
    let id = create(
        &p,
        json!({"url": server.url("/slow/4000000"), "path": "slow.bin", "priority": 3, "rate": 400000}),
    )
    .await;
    let v = until_status(&p, id, "moves", |v| {
        v["state"] == "active" && v["bytes"].as_u64() > Some(50_000)
    })
    .await;
    assert_eq!(v["total"], 4_000_000);
    let v = until_status(&p, id, "has a speed", |v| v["speed"].as_u64() > Some(0)).await;
    assert!(
        v["eta"].as_u64().is_some(),
        "an active transfer with a speed has an ETA: {v}"
    );
    let start = Instant::now();
    loop {
        let (code, s) = call("GET", &format!("{}/api/stats", p.base), None).await;
        assert_eq!(code, 200);
        if s["download_speed"].as_u64() > Some(0) {
            assert_eq!(s["upload_speed"], 0, "{s}");
            break;
        }
        assert!(start.elapsed() < LIMIT, "no download speed in {s}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }

    let t = |s: &str| format!("{}/api/transfers/{id}{s}", p.base);
    let (code, v) = call("POST", &t("/erase"), None).await;
    assert_eq!((code, kind(&v)), (409, "active"), "{v}");
    let (code, _) = call("PUT", &t("/rate"), Some(json!({"bytes_per_sec": 200000}))).await;
    assert_eq!(code, 204);
    let (code, v) = call("PUT", &t("/rate"), Some(json!({}))).await;
    assert_eq!(
        (code, kind(&v)),
        (400, "invalid_request"),
        "a missing field lifts nothing: {v}"
    );
    let (code, v) = call("PUT", &t("/rate"), Some(json!({"bytes_per_sec": 0}))).await;
    assert_eq!((code, kind(&v)), (400, "invalid_request"), "{v}");
    let (code, _) = call("PUT", &t("/rate"), Some(json!({"bytes_per_sec": null}))).await;
    assert_eq!(code, 204);

    let (code, _) = call("POST", &t("/pause"), None).await;
    assert_eq!(code, 204);
    let v = until_status(&p, id, "paused", |v| v["state"] == "paused").await;
    let kept = v["bytes"].as_u64().expect("bytes");
    assert!(kept > 0, "{v}");
    assert_eq!(
        (v["speed"].as_u64(), v["eta"].clone()),
        (Some(0), Value::Null)
    );
    let (_, paused) = call(
        "GET",
        &format!("{}/api/transfers?state=paused", p.base),
        None,
    )
    .await;
    assert_eq!(paused[0]["id"], id);
    let (code, _) = call("POST", &t("/resume"), None).await;
    assert_eq!(code, 204);
    until_status(&p, id, "active again", |v| v["state"] == "active").await;

    let (code, v) = call("DELETE", &t(""), None).await;
    assert_eq!(code, 204, "{v}");
    let v = until_status(&p, id, "cancelled", |v| v["state"] == "ended").await;
    assert_eq!(v["outcome"], "cancelled");
    assert!(!p.dir.path().join("slow.bin").exists());
    let (code, v) = call("DELETE", &t(""), None).await;
    assert_eq!(
        (code, kind(&v), v["error"]["ended"].as_str()),
        (409, "not_active", Some("cancelled")),
        "{v}"
    );

    // The figures: one cancelled download, its bytes counted.
    let (code, s) = call("GET", &format!("{}/api/stats", p.base), None).await;
    assert_eq!(code, 200);
    assert_eq!(s["states"]["cancelled"], 1, "{s}");
    assert_eq!(s["ended"], 1);
    assert_eq!(s["journal"], serde_json::json!({ "state": "off" }), "{s}");
    // Every byte kept at the pause was moved (the resume, with no validator, started over).
    assert!(s["bytes"]["download"].as_u64() >= Some(kept), "{s}");
    let mut res = client()
        .get(format!("{}/metrics", p.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    for line in [
        "# TYPE actix_transfer_transfers gauge",
        "actix_transfer_transfers{state=\"cancelled\"} 1",
        "actix_transfer_started_total{kind=\"download\"} 1",
        "actix_transfer_ended_total{kind=\"download\",outcome=\"cancelled\"} 1",
        "actix_transfer_ended_total{kind=\"upload\",outcome=\"completed\"} 0",
        "actix_transfer_speed_bytes_per_second{direction=\"upload\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let bytes_line = text
        .lines()
        .find(|l| l.starts_with("actix_transfer_bytes_total{kind=\"download\"}"))
        .unwrap();
    let n: u64 = bytes_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(Some(n), s["bytes"]["download"].as_u64());
    server.stop().await;
}

#[actix_rt::test]
async fn bad_input_gets_a_json_error_with_the_engine_kind() {
    let server = server();
    let p = panel_with(|c| c.max_body(1024)).await;
    let url = format!("{}/api/transfers", p.base);
    for (body, status, k) in [
        (json!({"url": "ftp://x/y"}), 400, "invalid_request"),
        (json!({"url": "not a url"}), 400, "invalid_request"),
        (json!({"path": "x"}), 400, "invalid_request"),
        (
            json!({"url": server.url("/bytes/1"), "kind": "teleport"}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": server.url("/bytes/1"), "colour": "red"}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": server.url("/bytes/1"), "path": "../escape"}),
            400,
            "unsafe_path",
        ),
        (
            json!({"url": server.url("/bytes/1"), "path": "/etc/passwd"}),
            400,
            "unsafe_path",
        ),
        (
            json!({"url": server.url("/bytes/1"), "headers": {"bad name": "v"}}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": server.url("/bytes/1"), "mirrors": ["ftp://127.0.0.1/x"]}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": server.url("/bytes/1"), "rate": 0}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": server.url("/bytes/1"), "padding": "x".repeat(2000)}),
            413,
            "body_too_large",
        ),
    ] {
        let (code, v) = call("POST", &url, Some(body.clone())).await;
        assert_eq!((code, kind(&v)), (status, k), "{body}: {v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // Not JSON, or not said to be JSON.
    let mut res = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .insert_header(("content-type", "application/json"))
        .send_body("{not json")
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!((res.status().as_u16(), kind(&v)), (400, "invalid_request"));
    let mut res = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .insert_header(("content-type", "text/plain"))
        .send_body(r#"{"url":"http://127.0.0.1/"}"#)
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(
        (res.status().as_u16(), kind(&v)),
        (415, "unsupported_media_type")
    );
    // Unknown routes and methods under /api.
    let (code, v) = call("GET", &format!("{}/api/nothing", p.base), None).await;
    assert_eq!((code, kind(&v)), (404, "not_found"));
    let (code, v) = call("PATCH", &url, None).await;
    assert_eq!((code, kind(&v)), (405, "method_not_allowed"));
    let (code, v) = call("POST", &format!("{}/metrics", p.base), None).await;
    assert_eq!((code, kind(&v)), (405, "method_not_allowed"));
    // Nothing was submitted.
    assert!(p.engine.send(List::all()).await.unwrap().is_empty());
    server.stop().await;
}

#[actix_rt::test]
async fn without_the_token_nothing_is_answered_or_changed() {
    let server = server();
    let p = panel().await;
    let id = create(&p, json!({"url": server.url("/slow/4000000")})).await;
    let before = p.engine.send(List::all()).await.unwrap();
    let t = |s: &str| format!("{}/api/transfers/{id}{s}", p.base);
    let routes = [
        (
            "POST",
            format!("{}/api/transfers", p.base),
            Some(json!({"url": server.url("/bytes/1")})),
        ),
        ("GET", format!("{}/api/transfers", p.base), None),
        ("GET", t(""), None),
        ("DELETE", t(""), None),
        ("POST", t("/pause"), None),
        ("POST", t("/resume"), None),
        ("POST", t("/erase"), None),
        ("PUT", t("/rate"), Some(json!({"bytes_per_sec": 1}))),
        ("GET", format!("{}/api/events", p.base), None),
        ("GET", format!("{}/api/stats", p.base), None),
        ("GET", format!("{}/metrics", p.base), None),
        ("GET", format!("{}/api/nothing", p.base), None),
    ];
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some("test-token-123"),
        Some("test-token-12345"),
    ] {
        for (method, url, body) in &routes {
            let mut req = client().request(method.parse().unwrap(), url);
            if let Some(t) = token {
                req = req.insert_header(("authorization", format!("Bearer {t}")));
            }
            let mut res = match body {
                Some(b) => req.send_json(b).await.unwrap(),
                None => req.send().await.unwrap(),
            };
            assert_eq!(res.status(), 401, "{method} {url} with {token:?}");
            assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");
            let v: Value = res.json().await.unwrap();
            assert_eq!(kind(&v), "unauthorized");
        }
    }
    // A token in the query string is no token.
    let (code, _) = call_with(
        "GET",
        &format!("{}/api/stats?token={TOKEN}", p.base),
        None,
        None,
    )
    .await;
    assert_eq!(code, 401);
    let after = p.engine.send(List::all()).await.unwrap();
    assert_eq!(after.len(), before.len(), "nothing was submitted or erased");
    assert_eq!(
        after[0].state,
        TransferState::Active,
        "nothing was paused or cancelled"
    );
    // The page itself needs no token (it asks for one) and holds none.
    let mut res = client().get(format!("{}/", p.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let page = String::from_utf8(res.body().limit(1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(page.contains("<form id=\"add\">") && !page.contains(TOKEN));
    p.engine
        .send(Cancel(TransferId::new(id).unwrap()))
        .await
        .unwrap()
        .unwrap();
    server.stop().await;
}

#[actix_rt::test]
async fn without_auth_is_a_deliberate_choice_and_mounts_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::builder()
        .download_dir(dir.path())
        .workers(1)
        .start();
    let panel = ControlPanel::start(engine, WebConfig::without_auth().mount("/transfers/"));
    let p = panel.clone();
    let (base, handle) = serve_app(move |app| {
        p.routes()(app);
        app.route(
            "/",
            actix_web::web::get().to(|| async { "the app's own page" }),
        );
    });
    let (code, v) = call_with(
        "GET",
        &format!("{base}/transfers/api/transfers"),
        None,
        None,
    )
    .await;
    assert_eq!((code, v), (200, json!([])));
    let server = server();
    let mut res = client()
        .post(format!("{base}/transfers/api/transfers"))
        .send_json(&json!({"url": server.url("/bytes/10"), "kind": "fetch"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let location = res.headers().get("location").unwrap().to_str().unwrap();
    assert_eq!(location, format!("/transfers/api/transfers/{id}"));
    let (code, v) = call_with("GET", &format!("{base}{location}"), None, None).await;
    assert_eq!((code, v["id"].as_u64()), (200, Some(id)), "{v}");
    let mut res = client().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(res.body().await.unwrap(), "the app's own page");
    for page in ["/transfers", "/transfers/"] {
        let res = client().get(format!("{base}{page}")).send().await.unwrap();
        assert_eq!(res.status(), 200, "{page}");
        assert!(res
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    panel.close().await;
    handle.stop(true).await;
    server.stop().await;
}

/// With one transfer at a time, a second one waits: `?state=queued` lists it (and only it),
/// and it can be cancelled before it starts.
#[actix_rt::test]
async fn a_queued_transfer_is_listed_as_queued_and_cancelled_before_it_starts() {
    let server = server();
    let p = panel_of(|b| b.max_active(1), |c| c).await;
    let running = create(&p, json!({"url": server.url("/slow/4000000")})).await;
    until_status(&p, running, "runs", |v| v["state"] == "active").await;
    let waiting = create(&p, json!({"url": server.url("/bytes/1000")})).await;
    let list = |state: &'static str| {
        let url = format!("{}/api/transfers?state={state}", p.base);
        async move {
            let (code, v) = call("GET", &url, None).await;
            assert_eq!(code, 200, "{v}");
            v.as_array()
                .unwrap()
                .iter()
                .map(|t| (t["id"].as_u64().unwrap(), t["state"].clone()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("queued").await, [(waiting, json!("queued"))]);
    assert_eq!(list("active").await, [(running, json!("active"))]);
    let t = format!("{}/api/transfers/{waiting}", p.base);
    let (code, v) = call("DELETE", &t, None).await;
    assert_eq!(code, 204, "{v}");
    let v = until_status(&p, waiting, "cancelled", |v| v["state"] == "ended").await;
    assert_eq!(
        (v["outcome"].as_str(), v["bytes"].as_u64()),
        (Some("cancelled"), Some(0))
    );
    assert_eq!(list("queued").await, []);
    let (code, v) = call("DELETE", &t, None).await;
    assert_eq!(
        (code, v["error"]["ended"].as_str()),
        (409, Some("cancelled")),
        "{v}"
    );
    let (code, _) = call(
        "DELETE",
        &format!("{}/api/transfers/{running}", p.base),
        None,
    )
    .await;
    assert_eq!(code, 204);
    server.stop().await;
}

#[actix_rt::test]
async fn uploads_come_only_from_the_upload_dir() {
    let server = server();
    let p = panel().await;
    let (code, v) = call(
        "POST",
        &format!("{}/api/transfers", p.base),
        Some(json!({"url": server.url("/upload"), "kind": "upload", "path": "x"})),
    )
    .await;
    assert_eq!((code, kind(&v)), (403, "forbidden"), "no upload dir: {v}");

    let uploads = tempfile::tempdir().unwrap();
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(uploads.path().join("ok.bin"), pattern(5000)).unwrap();
    std::fs::write(secret.path().join("secret"), b"server secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(secret.path().join("secret"), uploads.path().join("link")).unwrap();
    let root = uploads.path().to_path_buf();
    let p = panel_with(move |c| c.upload_dir(root)).await;
    let url = format!("{}/api/transfers", p.base);
    let secret_path = secret.path().join("secret").display().to_string();
    let mut refused = vec![
        (json!("../secret"), 400, "unsafe_path"),
        (json!(secret_path), 400, "unsafe_path"),
        (json!("missing.bin"), 400, "file"),
        (Value::Null, 400, "invalid_request"),
    ];
    if cfg!(unix) {
        refused.push((json!("link"), 400, "unsafe_path"));
    }
    for (path, status, k) in refused {
        let (code, v) = call(
            "POST",
            &url,
            Some(json!({"url": server.url("/upload"), "kind": "upload", "path": path})),
        )
        .await;
        assert_eq!((code, kind(&v)), (status, k), "{path}: {v}");
    }
    assert!(
        server.state.uploads.lock().unwrap().is_empty(),
        "nothing was sent"
    );
    let id = create(
        &p,
        json!({"url": server.url("/upload"), "kind": "upload", "path": "ok.bin"}),
    )
    .await;
    let v = until_status(&p, id, "uploaded", |v| v["state"] == "ended").await;
    assert_eq!(
        (v["outcome"].as_str(), v["kind"].as_str()),
        (Some("completed"), Some("upload"))
    );
    assert_eq!(server.state.uploads.lock().unwrap()[0].3, pattern(5000));
    server.stop().await;
}

#[actix_rt::test]
async fn the_url_policy_refuses_before_anything_is_sent() {
    let server = server();
    let p = panel_with(|c| c.url_policy(deny_private_networks())).await;
    let (code, v) = call(
        "POST",
        &format!("{}/api/transfers", p.base),
        Some(json!({"url": server.url("/bytes/10")})),
    )
    .await;
    assert_eq!((code, kind(&v)), (403, "forbidden"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1"));
    assert_eq!(server.requests(), 0);
    assert!(p.engine.send(List::all()).await.unwrap().is_empty());
    server.stop().await;
}

/// The `access-control-*` headers of a response, names and values.
fn cors_headers(res: &awc::ClientResponse<impl futures::Stream>) -> Vec<(String, String)> {
    res.headers()
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("access-control-"))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// A browser's preflight before a cross-origin `POST` with the token and a JSON body.
async fn preflight(base: &str, origin: &str) -> awc::ClientResponse<impl futures::Stream> {
    client()
        .request(
            actix_web::http::Method::OPTIONS,
            format!("{base}/api/transfers"),
        )
        .insert_header(("origin", origin))
        .insert_header(("access-control-request-method", "POST"))
        .insert_header((
            "access-control-request-headers",
            "authorization, content-type",
        ))
        .send()
        .await
        .unwrap()
}

/// A `GET` with the token from a page of `origin`.
async fn get_from(url: &str, origin: &str) -> awc::ClientResponse<impl futures::Stream> {
    client()
        .get(url)
        .bearer_auth(TOKEN)
        .insert_header(("origin", origin))
        .send()
        .await
        .unwrap()
}

#[actix_rt::test]
async fn cors_is_off_by_default_and_answers_only_the_configured_origin() {
    const UI: &str = "https://ui.example";
    const FOREIGN: &str = "https://evil.example";

    // By default: no preflight answer, no CORS header on anything.
    let p = panel().await;
    let res = preflight(&p.base, UI).await;
    assert_ne!(res.status().as_u16(), 204);
    assert_eq!(cors_headers(&res), [], "default preflight");
    let res = get_from(&format!("{}/api/transfers", p.base), UI).await;
    assert_eq!(res.status(), 200);
    assert_eq!(cors_headers(&res), [], "default GET");

    let p = panel_with(|c| c.allow_origin(UI)).await;
    let res = preflight(&p.base, UI).await;
    assert_eq!(res.status().as_u16(), 204);
    let h = cors_headers(&res);
    let get = |name: &str| {
        h.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {h:?}"))
    };
    assert_eq!(get("access-control-allow-origin"), UI);
    assert!(
        get("access-control-allow-methods").contains("POST"),
        "{h:?}"
    );
    let allowed = get("access-control-allow-headers");
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{h:?}"
    );
    assert_eq!(res.headers().get("vary").unwrap(), "Origin");

    let res = preflight(&p.base, FOREIGN).await;
    assert_ne!(res.status().as_u16(), 204);
    assert_eq!(cors_headers(&res), [], "a foreign origin's preflight");
    let res = get_from(&format!("{}/api/transfers", p.base), FOREIGN).await;
    assert_eq!(cors_headers(&res), [], "a foreign origin's GET");
    // Its answer differs from the allowed origin's only by the header: a cache must know.
    assert_eq!(res.headers().get("vary").unwrap(), "Origin");

    for url in [
        format!("{}/api/transfers", p.base),
        format!("{}/api/stats", p.base),
        format!("{}/metrics", p.base),
    ] {
        let res = get_from(&url, UI).await;
        assert_eq!(res.status(), 200, "{url}");
        assert_eq!(
            res.headers().get("access-control-allow-origin").unwrap(),
            UI,
            "{url}"
        );
    }
    // A refusal too, so that the page can read why; and the refusal still changes nothing.
    let res = client()
        .post(format!("{}/api/transfers", p.base))
        .insert_header(("origin", UI))
        .send_json(&json!({"url": "http://127.0.0.1:9/x"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers().get("access-control-allow-origin").unwrap(),
        UI
    );
    assert!(p.engine.send(List::all()).await.unwrap().is_empty());
    // The scheme's name is case-insensitive (RFC 9110): `bearer` works as `Bearer` does.
    let res = client()
        .get(format!("{}/api/stats", p.base))
        .insert_header(("authorization", format!("bearer {TOKEN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// One frame: its id, event type (`message` when none), data, or a comment.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: Option<u64>,
    event: String,
    data: String,
    comment: bool,
}

impl Frame {
    fn parse(text: &str) -> Frame {
        let mut f = Frame {
            id: None,
            event: "message".into(),
            data: String::new(),
            comment: false,
        };
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                f.id = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("event: ") {
                f.event = v.into();
            } else if let Some(v) = line.strip_prefix("data: ") {
                f.data.push_str(v);
            } else if line.starts_with(':') {
                f.comment = true;
            }
        }
        f
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// An open event stream: a local task reads it and hands over whole frames; dropping the
/// `Sse` aborts the task, which closes the connection.
struct Sse {
    frames: futures::channel::mpsc::UnboundedReceiver<Frame>,
    task: actix_rt::task::JoinHandle<()>,
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sse(base: &str, last_event_id: Option<u64>) -> Sse {
    let mut req = client()
        .get(format!("{base}/api/events"))
        .bearer_auth(TOKEN);
    if let Some(id) = last_event_id {
        req = req.insert_header(("last-event-id", id.to_string()));
    }
    let mut res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let (tx, frames) = futures::channel::mpsc::unbounded();
    let task = actix_rt::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(chunk)) = res.next().await {
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let frame = Frame::parse(&buf[..end]);
                buf.drain(..end + 2);
                if tx.unbounded_send(frame).is_err() {
                    return;
                }
            }
        }
    });
    Sse { frames, task }
}

impl Sse {
    /// The next frame, or `None` when the stream ended (bounded wait).
    async fn next(&mut self) -> Option<Frame> {
        actix_rt::time::timeout(LIMIT, self.frames.next())
            .await
            .expect("a frame or the end in time")
    }

    /// Event frames (with an id) until `pred` holds for the last one; comments and control
    /// frames are skipped.
    async fn events_until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Frame> {
        let mut out = Vec::new();
        loop {
            let f = self.next().await.expect("the stream is open");
            if f.id.is_none() {
                continue;
            }
            let done = pred(&f.json());
            out.push(f);
            if done {
                return out;
            }
        }
    }
}

fn ended(id: u64) -> impl Fn(&Value) -> bool {
    move |v| v["id"] == id && v["event"] == "ended"
}

#[actix_rt::test]
async fn events_carry_ids_and_a_reconnect_with_last_event_id_loses_nothing() {
    let server = server();
    let p = panel().await;
    let mut first = sse(&p.base, None).await;
    assert_eq!(first.next().await.unwrap().data, "", "the retry frame");
    let a = create(&p, json!({"url": server.url("/bytes/200000")})).await;
    let seen = first.events_until(ended(a)).await;
    let ids: Vec<u64> = seen.iter().map(|f| f.id.unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "ids count from 1"
    );
    let shapes: Vec<Value> = seen.iter().map(Frame::json).collect();
    assert_eq!(
        shapes[0],
        json!({"id": a, "seq": 0, "event": "queued"}),
        "the CLI's --json shape"
    );
    assert_eq!(shapes.last().unwrap()["outcome"], "completed");
    let last_seen = *ids.last().unwrap();
    drop(first);

    // While nobody listens: two more transfers run to their end.
    let b = create(&p, json!({"url": server.url("/bytes/1000")})).await;
    let c = create(&p, json!({"url": server.url("/status/500")})).await;
    until_status(&p, b, "b ends", |v| v["state"] == "ended").await;
    until_status(&p, c, "c ends", |v| v["state"] == "ended").await;

    let mut again = sse(&p.base, Some(last_seen)).await;
    again.next().await.unwrap(); // retry
    let mut replayed = Vec::new();
    let mut ended_ids = std::collections::HashSet::new();
    while ended_ids.len() < 2 {
        let f = again.next().await.unwrap();
        assert_ne!(f.event, "gap", "nothing was lost: no gap");
        if f.id.is_none() {
            continue;
        }
        let v = f.json();
        if v["event"] == "ended" {
            ended_ids.insert(v["id"].as_u64().unwrap());
        }
        replayed.push(f);
    }
    let ids: Vec<u64> = replayed.iter().map(|f| f.id.unwrap()).collect();
    assert_eq!(
        ids,
        (last_seen + 1..=last_seen + ids.len() as u64).collect::<Vec<_>>(),
        "every event after Last-Event-ID, in order, none twice"
    );
    for t in [b, c] {
        let seqs: Vec<u64> = replayed
            .iter()
            .map(Frame::json)
            .filter(|v| v["id"] == t)
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "all of #{t}'s events"
        );
    }
    // And live events still follow on the reconnected stream.
    let d = create(&p, json!({"url": server.url("/bytes/10")})).await;
    let live = again.events_until(ended(d)).await;
    assert_eq!(live[0].id, Some(ids.last().unwrap() + 1));
    server.stop().await;
}

#[actix_rt::test]
async fn a_gap_older_than_the_buffer_is_announced() {
    let server = server();
    let p = panel_with(|c| c.sse_buffer(4)).await;
    let mut watch = sse(&p.base, None).await;
    let ids: Vec<u64> = futures::future::join_all(
        (0..3).map(|_| create(&p, json!({"url": server.url("/bytes/10"), "kind": "fetch"}))),
    )
    .await;
    let mut ended_count = 0;
    let mut last = 0;
    while ended_count < ids.len() {
        let f = watch.next().await.unwrap();
        if let Some(id) = f.id {
            last = id;
            if f.json()["event"] == "ended" {
                ended_count += 1;
            }
        }
    }
    assert!(last > 5, "more events than the buffer holds: {last}");
    drop(watch);

    let mut late = sse(&p.base, Some(1)).await;
    late.next().await.unwrap(); // retry
    let gap = late.next().await.unwrap();
    assert_eq!(gap.event, "gap");
    assert_eq!(gap.id, None, "a gap frame does not move Last-Event-ID");
    assert_eq!(gap.json(), json!({"last_seen": 1, "oldest_kept": last - 3}));
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(late.next().await.unwrap().id.unwrap());
    }
    assert_eq!(got, (last - 3..=last).collect::<Vec<_>>());

    // An id from before a restart (beyond the counter) is a gap too.
    let mut future = sse(&p.base, Some(last + 100)).await;
    future.next().await.unwrap();
    assert_eq!(future.next().await.unwrap().event, "gap");
    server.stop().await;
}

#[actix_rt::test]
async fn keep_alive_comments_flow_and_clients_are_bounded() {
    let p = panel_with(|c| c.keep_alive(Duration::from_millis(50)).max_sse_clients(2)).await;
    let mut one = sse(&p.base, None).await;
    let _two = sse(&p.base, None).await;
    one.next().await.unwrap(); // retry
    let f = one.next().await.unwrap();
    assert!(f.comment && f.id.is_none(), "{f:?}");
    let (code, v) = call("GET", &format!("{}/api/events", p.base), None).await;
    assert_eq!((code, kind(&v)), (503, "too_many_clients"));
    // A client that went away frees its place.
    drop(one);
    let start = Instant::now();
    loop {
        let res = client()
            .get(format!("{}/api/events", p.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            break;
        }
        assert!(
            start.elapsed() < LIMIT,
            "the gone client's place was not freed"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn the_server_and_engine_stop_within_two_seconds_with_event_clients_connected() {
    let server = server();
    let p = panel().await;
    let id = create(&p, json!({"url": server.url("/slow/40000000")})).await;
    until_status(&p, id, "runs", |v| v["state"] == "active").await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut c = sse(&p.base, None).await;
        c.next().await.unwrap();
        clients.push(c);
    }
    // What the CLI does on SIGTERM or Ctrl-C.
    let start = Instant::now();
    p.panel.close().await;
    p.handle.stop(true).await;
    p.engine.send(Shutdown).await.unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    for c in &mut clients {
        let mut frames = 0;
        while c.next().await.is_some() {
            frames += 1;
            assert!(frames < 10_000);
        }
    }
    server.stop().await;
}

/// The dashboard in a real browser: headless Chromium driven over the DevTools protocol.
mod browser {
    use super::*;
    use actix_web::web::Bytes;
    use awc::ws;
    use futures::SinkExt;

    fn find_chromium() -> Option<std::path::PathBuf> {
        if let Some(p) = std::env::var_os("CHROMIUM") {
            return Some(p.into());
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            for dir in std::env::split_paths(&path) {
                let p = dir.join(name);
                if p.is_file() {
                    return Some(p);
                }
            }
        }
        None
    }

    /// A DevTools session on one page.
    struct Cdp<C> {
        conn: C,
        next: u64,
    }

    impl<C> Cdp<C>
    where
        C: futures::Stream<Item = Result<ws::Frame, actix_http::ws::ProtocolError>>
            + futures::Sink<ws::Message, Error = actix_http::ws::ProtocolError>
            + Unpin,
    {
        async fn call(&mut self, method: &str, params: Value) -> Value {
            self.next += 1;
            let id = self.next;
            let msg = json!({"id": id, "method": method, "params": params}).to_string();
            self.conn.send(ws::Message::Text(msg.into())).await.unwrap();
            let start = Instant::now();
            let mut partial: Vec<u8> = Vec::new();
            loop {
                assert!(start.elapsed() < LIMIT, "no answer to {method}");
                let frame = actix_rt::time::timeout(LIMIT, self.conn.next())
                    .await
                    .expect("the browser answers")
                    .expect("the connection is open")
                    .unwrap();
                let text: Bytes = match frame {
                    ws::Frame::Text(t) => t,
                    ws::Frame::Continuation(actix_http::ws::Item::FirstText(t)) => {
                        partial = t.to_vec();
                        continue;
                    }
                    ws::Frame::Continuation(actix_http::ws::Item::Continue(t)) => {
                        partial.extend_from_slice(&t);
                        continue;
                    }
                    ws::Frame::Continuation(actix_http::ws::Item::Last(t)) => {
                        partial.extend_from_slice(&t);
                        Bytes::from(std::mem::take(&mut partial))
                    }
                    _ => continue,
                };
                let v: Value = serde_json::from_slice(&text).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }

        /// Evaluate JavaScript in the page; its value.
        async fn eval(&mut self, js: &str) -> Value {
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
                )
                .await;
            assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
            r["result"]["value"].clone()
        }

        /// Polls `js` until it is `true` (bounded).
        async fn until(&mut self, what: &str, js: &str) {
            let start = Instant::now();
            while self.eval(js).await != json!(true) {
                assert!(start.elapsed() < LIMIT, "{what}: never true: {js}");
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        }

        async fn type_text(&mut self, selector: &str, text: &str) {
            self.eval(&format!("document.querySelector({selector:?}).focus()"))
                .await;
            self.call("Input.insertText", json!({ "text": text })).await;
        }

        async fn press_enter(&mut self) {
            for kind in ["keyDown", "keyUp"] {
                self.call(
                    "Input.dispatchKeyEvent",
                    json!({"type": kind, "key": "Enter", "code": "Enter",
                           "windowsVirtualKeyCode": 13, "text": "\r"}),
                )
                .await;
            }
        }

        async fn screenshot(&mut self, width: u32, height: u32, mobile: bool, name: &str) {
            use base64::Engine as _;
            self.call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
            )
            .await;
            // The new metrics took effect and the page has painted a frame at them.
            self.until(
                &format!("the page laid out at {width}x{height}"),
                &format!("window.innerWidth === {width} && window.innerHeight === {height}"),
            )
            .await;
            self.eval(
                "new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
            )
            .await;
            let shot = self
                .call("Page.captureScreenshot", json!({"format": "png"}))
                .await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap())
                .unwrap();
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, png).unwrap();
            eprintln!("screenshot: {}", path.display());
        }
    }

    /// Kills the browser when the test ends, however it ends.
    struct Browser(std::process::Child);

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[actix_rt::test]
    async fn the_dashboard_works_in_a_real_browser() {
        let Some(chromium) = find_chromium() else {
            let msg = "\n\n!!! NO CHROMIUM FOUND: the dashboard's browser test did NOT run.\n\
                       !!! Install it (`apt-get install -y chromium`) or set CHROMIUM=/path.\n";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}");
            }
            eprintln!("{msg}");
            return;
        };
        let server = server();
        let p = panel().await;
        let profile = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
        let _browser = Browser(child);

        // The DevTools port, from the file Chromium writes into its profile.
        let start = Instant::now();
        let port = loop {
            let f = profile.path().join("DevToolsActivePort");
            if let Some(port) = std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u16>().ok()))
            {
                break port;
            }
            assert!(
                start.elapsed() < LIMIT,
                "Chromium did not open its DevTools port"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        };
        let ws_url = loop {
            let list: Value = client()
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let page = list
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["type"] == "page")
                .map(|t| t["webSocketDebuggerUrl"].as_str().unwrap().to_owned());
            if let Some(u) = page {
                break u;
            }
            assert!(start.elapsed() < LIMIT, "no page target");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        };
        let (_, conn) = awc::Client::new()
            .ws(ws_url)
            .max_frame_size(64 << 20)
            .connect()
            .await
            .unwrap();
        let mut cdp = Cdp { conn, next: 0 };
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;

        // A slow transfer that is already running when the page opens.
        let slow = create(
            &p,
            json!({"url": server.url("/slow/40000000"), "path": "slow.bin"}),
        )
        .await;

        cdp.call("Page.navigate", json!({"url": format!("{}/", p.base)}))
            .await;
        cdp.until(
            "the login form shows",
            "!!document.getElementById('token') && !document.getElementById('login').hidden",
        )
        .await;
        // The token, typed and submitted with the keyboard.
        cdp.type_text("#token", TOKEN).await;
        cdp.press_enter().await;
        cdp.until(
            "the app shows, the login form does not",
            "getComputedStyle(document.getElementById('app')).display !== 'none' \
             && getComputedStyle(document.getElementById('login')).display === 'none'",
        )
        .await;
        cdp.until(
            "the slow transfer is listed and live",
            &format!("(document.querySelector('tr[data-id=\"{slow}\"]')||{{}}).dataset?.state === 'active' && document.getElementById('conn').textContent === 'live'"),
        )
        .await;

        // A transfer another client adds shows up by itself, to its end: only the event
        // stream tells the page of a new id (its 2 s poll refreshes the stats and the rows it
        // already has, never the list).
        let other = create(
            &p,
            json!({"url": server.url("/bytes/1000"), "path": "other.bin"}),
        )
        .await;
        cdp.until(
            "a transfer added through the API shows, completed, from the event stream",
            &format!("(document.querySelector('tr[data-id=\"{other}\"] .state')||{{}}).textContent === 'completed'"),
        )
        .await;

        // Add a URL through the form (with a signed-looking query that must never show).
        let url = server.url("/slow/400000?sig=SECRETSIG");
        cdp.type_text("#url", &url).await;
        cdp.type_text("#path", "added.bin").await;
        cdp.press_enter().await;
        let added = loop {
            let id = cdp
                .eval("[...document.querySelectorAll('#rows tr')].map(r => +r.dataset.id).filter(id => id !== SLOW && id !== OTHER)[0] || null".replace("SLOW", &slow.to_string()).replace("OTHER", &other.to_string()).as_str())
                .await;
            if let Some(id) = id.as_u64() {
                break id;
            }
            assert!(start.elapsed() < LIMIT, "the added transfer never showed");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        };
        let row = format!("document.querySelector('tr[data-id=\"{added}\"]')");
        cdp.until(
            "the added transfer's bar reaches 100 %",
            &format!("{row}.querySelector('.bar').dataset.pct === '100' && {row}.querySelector('.state').textContent === 'completed'"),
        )
        .await;
        assert_eq!(
            cdp.eval(&format!("{row}.querySelector('.bar > span').style.width"))
                .await,
            "100%"
        );
        assert_eq!(
            cdp.eval(&format!("{row}.querySelector('.name').textContent"))
                .await,
            "added.bin"
        );
        assert_eq!(
            std::fs::read(p.dir.path().join("added.bin")).unwrap(),
            pattern(400000)
        );

        // Cancel the slow one with its button.
        let slow_row = format!("document.querySelector('tr[data-id=\"{slow}\"]')");
        cdp.eval(&format!(
            "{slow_row}.querySelector('[data-act=cancel]').click()"
        ))
        .await;
        cdp.until(
            "the slow transfer shows cancelled",
            &format!("{slow_row}.querySelector('.state').textContent === 'cancelled'"),
        )
        .await;
        let (_, v) = call("GET", &format!("{}/api/transfers/{slow}", p.base), None).await;
        assert_eq!(v["outcome"], "cancelled");
        // The DOM: buttons follow the state, no query string or token anywhere on screen.
        assert_eq!(
            cdp.eval(&format!(
                "[...{slow_row}.querySelectorAll('button')].map(b => b.disabled)"
            ))
            .await,
            json!([true, true, true, false]),
            "pause, resume, cancel disabled; erase enabled"
        );
        let text = cdp.eval("document.body.innerText").await;
        let text = text.as_str().unwrap();
        assert!(
            !text.contains("SECRETSIG") && !text.contains(TOKEN),
            "{text}"
        );
        assert!(!cdp
            .eval("location.href")
            .await
            .as_str()
            .unwrap()
            .contains(TOKEN));
        assert_eq!(
            cdp.eval("document.querySelectorAll('#rows tr').length")
                .await,
            3
        );
        cdp.until(
            "the figures count the three ended",
            "document.getElementById('stats').textContent.includes('3 ended')",
        )
        .await;

        cdp.screenshot(1280, 800, false, "web-dashboard-1280x800.png")
            .await;
        cdp.screenshot(390, 844, true, "web-dashboard-390.png")
            .await;
        assert_eq!(
            cdp.eval("document.documentElement.scrollWidth <= 390")
                .await,
            true,
            "no horizontal scrolling at phone width"
        );

        // A `restored` event (what an engine with a journal publishes first for a transfer it
        // brought back at start), as the API serialises it: the page shows the transfer in
        // its state, with its bytes on disk.
        let restored = actix_transfer::TransferEvent {
            id: actix_transfer::TransferId::new(999).unwrap(),
            seq: 1 << 40,
            kind: actix_transfer::EventKind::Restored {
                state: actix_transfer::TransferState::Paused,
                bytes_on_disk: 5 << 20,
            },
        };
        cdp.eval(&format!(
            "onEvent({}); true",
            serde_json::to_string(&restored).unwrap()
        ))
        .await;
        let row = "document.querySelector('tr[data-id=\"999\"]')";
        cdp.until(
            "the restored transfer shows paused with its bytes",
            &format!(
                "!!{row} && {row}.dataset.state === 'paused' \
                 && {row}.querySelector('.size').textContent.startsWith('5.0 MiB')"
            ),
        )
        .await;
        server.stop().await;
    }
}

/// `mirrors` reach the engine (a refused first URL completes from the mirror), and each is
/// checked like the URL: invalid `400`, refused by the policy `403` with nothing sent, and only
/// for downloads. Before mirrors were wired, any non-empty list was refused `400 unsupported`.
#[actix_rt::test]
async fn mirrors_are_accepted_checked_and_used() {
    let server = server();
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        format!("http://127.0.0.1:{port}/bytes/1000")
    };
    let retries = RetryPolicy::default()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(50));
    let p = panel_of(
        |b| b.retry(retries),
        |c| {
            c.url_policy(|url| match url.path() {
                "/denied" => Err("not this path".into()),
                _ => Ok(()),
            })
        },
    )
    .await;
    let id = create(
        &p,
        json!({"url": refused, "mirrors": [server.url("/bytes/1000")], "path": "m.bin"}),
    )
    .await;
    let v = until_status(&p, id, "completes", |v| v["state"] == "ended").await;
    assert_eq!(v["outcome"], "completed", "{v}");
    assert_eq!(
        std::fs::read(p.dir.path().join("m.bin")).unwrap(),
        pattern(1000)
    );
    assert_eq!(server.requests(), 1);

    let url = format!("{}/api/transfers", p.base);
    let ok = server.url("/bytes/10");
    for (body, status, k) in [
        (
            json!({"url": ok, "mirrors": ["not a url"]}),
            400,
            "invalid_request",
        ),
        (
            json!({"url": ok, "mirrors": [server.url("/denied")]}),
            403,
            "forbidden",
        ),
        (
            json!({"url": ok, "kind": "fetch", "mirrors": [ok]}),
            400,
            "invalid_request",
        ),
    ] {
        let (code, v) = call("POST", &url, Some(body.clone())).await;
        assert_eq!((code, kind(&v)), (status, k), "{body}: {v}");
    }
    assert_eq!(server.requests(), 1, "nothing sent for a refused submit");
    server.stop().await;
}
