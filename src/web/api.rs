//! The routes and their handlers.

use std::{collections::BTreeMap, path::PathBuf};

use actix::Addr;
use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{header, Method, StatusCode},
    middleware, web, HttpRequest, HttpResponse,
};
use futures::StreamExt;
use serde::Deserialize;

use super::{
    auth,
    error::ApiError,
    hub::{self, Hub, KINDS},
    WebConfig,
};
use crate::{
    redact, Cancel, Download, Engine, Erase, Fetch, List, Pause, Resume, SetRate, Status,
    TransferId, TransferKind, TransferState, TransferStatus, Upload,
};

/// What every handler shares: the engine, the hub, the configuration.
pub(crate) struct Shared {
    pub(crate) engine: Addr<Engine>,
    pub(crate) hub: Addr<Hub>,
    pub(crate) config: WebConfig,
}

impl Drop for Shared {
    /// The last handle on this control panel is gone (the panel and every app it was mounted
    /// in): its hub stops, so the engine's subscription does not keep it, and its buffer,
    /// alive for as long as the engine runs.
    fn drop(&mut self) {
        self.hub.do_send(hub::Stop);
    }
}

type Data = web::Data<Shared>;

const PAGE: &str = include_str!("page.html");

pub(crate) fn configure(cfg: &mut web::ServiceConfig, shared: Data) {
    let mount = shared.config.mount.clone();
    let max_body = shared.config.max_body;
    let json = web::JsonConfig::default()
        .limit(max_body)
        .error_handler(|e, _| ApiError::from(e).into());
    let path = web::PathConfig::default().error_handler(|e, _| ApiError::from(e).into());
    let query = web::QueryConfig::default().error_handler(|e, _| ApiError::from(e).into());
    let not_allowed = || {
        web::to(|| async {
            Err::<HttpResponse, _>(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed on this route",
            ))
        })
    };
    let resource = |p: &str| web::resource(p).default_service(not_allowed());

    cfg.service(
        web::scope(&format!("{mount}/api"))
            .app_data(shared.clone())
            .app_data(json)
            .app_data(path)
            .app_data(query)
            .app_data(web::PayloadConfig::new(max_body))
            .wrap(middleware::from_fn({
                let s = shared.clone();
                move |req, next| guard(s.clone(), req, next)
            }))
            .service(
                resource("/transfers")
                    .route(web::get().to(list))
                    .route(web::post().to(create)),
            )
            .service(
                resource("/transfers/{id}")
                    .route(web::get().to(status))
                    .route(web::delete().to(cancel)),
            )
            .service(resource("/transfers/{id}/pause").route(web::post().to(pause)))
            .service(resource("/transfers/{id}/resume").route(web::post().to(resume)))
            .service(resource("/transfers/{id}/erase").route(web::post().to(erase)))
            .service(resource("/transfers/{id}/rate").route(web::put().to(rate)))
            .service(resource("/events").route(web::get().to(events)))
            .service(resource("/stats").route(web::get().to(stats)))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route",
                ))
            })),
    );
    cfg.service(
        web::resource(format!("{mount}/metrics"))
            .app_data(shared.clone())
            .wrap(middleware::from_fn({
                let s = shared.clone();
                move |req, next| guard(s.clone(), req, next)
            }))
            .route(web::get().to(metrics))
            .default_service(not_allowed()),
    );
    let page = || {
        web::get().to(|| async {
            HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
                ))
                .body(PAGE)
        })
    };
    cfg.route(&format!("{mount}/"), page());
    if !mount.is_empty() {
        cfg.route(&mount, page());
    }
}

/// The middleware of `/api` and `/metrics`: CORS preflights (when configured), the token,
/// and a log line with the path (never the query string) and the status.
async fn guard(
    shared: Data,
    req: ServiceRequest,
    next: middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let origin = cors_origin(&shared.config, &req);
    if let (Some(origin), &Method::OPTIONS) = (&origin, req.method()) {
        let res = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.as_str()))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "GET, POST, PUT, DELETE",
            ))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "authorization, content-type, last-event-id",
            ))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(res));
    }
    let path = req.path().to_owned();
    let method = req.method().clone();
    let mut res = match auth::check(shared.config.token.as_deref(), &req) {
        Err(e) => {
            tracing::debug!(%method, %path, "refused: no valid token");
            req.error_response(e)
        }
        Ok(()) => {
            let res = next.call(req).await?.map_into_boxed_body();
            tracing::debug!(%method, %path, status = res.status().as_u16(), "api");
            res
        }
    };
    // On the 401 too: otherwise the allowed page cannot read why it was refused.
    if let Some(origin) = origin {
        if let Ok(v) = header::HeaderValue::from_str(&origin) {
            res.headers_mut()
                .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
    }
    // With CORS configured, every answer depends on the request's Origin (a cache must not
    // give the allowed origin an answer made for another, without the header).
    if shared.config.allow_origin.is_some() {
        res.headers_mut()
            .insert(header::VARY, header::HeaderValue::from_static("Origin"));
    }
    Ok(res)
}

fn cors_origin(config: &WebConfig, req: &ServiceRequest) -> Option<String> {
    let allowed = config.allow_origin.as_deref()?;
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    (origin == allowed).then(|| origin.to_owned())
}

fn parse_id(raw: &str) -> Result<TransferId, ApiError> {
    raw.parse()
        .ok()
        .and_then(TransferId::new)
        .ok_or_else(ApiError::unknown)
}

/// The body of `POST /api/transfers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTransfer {
    url: String,
    #[serde(default)]
    kind: Option<TransferKind>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default)]
    rate: Option<u64>,
    #[serde(default)]
    mirrors: Vec<String>,
}

async fn create(shared: Data, body: web::Json<NewTransfer>) -> Result<HttpResponse, ApiError> {
    let t = body.into_inner();
    if !t.mirrors.is_empty() && !matches!(t.kind, None | Some(TransferKind::Download)) {
        return Err(ApiError::bad_request("mirrors are for downloads only"));
    }
    if t.rate == Some(0) {
        return Err(ApiError::bad_request(
            "rate must be at least 1 byte per second",
        ));
    }
    if let Some(policy) = shared.config.url_policy.clone() {
        // Every URL the engine may be sent to, the mirrors too.
        let mut urls = Vec::with_capacity(1 + t.mirrors.len());
        for (i, raw) in std::iter::once(&t.url).chain(&t.mirrors).enumerate() {
            let what = if i == 0 { "URL" } else { "mirror URL" };
            let url = url::Url::parse(raw)
                .map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))?;
            urls.push(url);
        }
        let verdict = web::block(move || {
            urls.into_iter()
                .try_for_each(|url| policy(&url).map_err(|reason| (url, reason)))
        })
        .await
        .map_err(|e| ApiError::unavailable(format!("the URL policy did not run: {e}")))?;
        if let Err((url, reason)) = verdict {
            tracing::info!(url = %redact::url(&url), %reason, "URL refused by the policy");
            return Err(ApiError::forbidden(format!("URL refused: {reason}")));
        }
    }
    let kind = t.kind.unwrap_or(TransferKind::Download);
    let reply = match kind {
        TransferKind::Download => {
            let mut d = Download::new(t.url.clone());
            if let Some(p) = &t.path {
                d = d.to(p.clone());
            }
            for (n, v) in &t.headers {
                d = d.header(n.clone(), v.clone());
            }
            if let Some(p) = t.priority {
                d = d.priority(p);
            }
            if let Some(r) = t.rate {
                d = d.max_rate(r);
            }
            d = d.mirrors(t.mirrors.iter().cloned());
            shared.engine.send(d).await
        }
        TransferKind::Upload => {
            let file = upload_source(&shared.config, t.path.as_deref()).await?;
            let mut u = Upload::new(t.url.clone(), file);
            for (n, v) in &t.headers {
                u = u.header(n.clone(), v.clone());
            }
            if let Some(p) = t.priority {
                u = u.priority(p);
            }
            if let Some(r) = t.rate {
                u = u.max_rate(r);
            }
            shared.engine.send(u).await
        }
        TransferKind::Fetch => {
            let mut f = Fetch::get(t.url.clone());
            for (n, v) in &t.headers {
                f = f.header(n.clone(), v.clone());
            }
            if let Some(p) = t.priority {
                f = f.priority(p);
            }
            if let Some(r) = t.rate {
                f = f.max_rate(r);
            }
            shared.engine.send(f).await
        }
    };
    let id = reply
        .map_err(ApiError::mailbox)?
        .map_err(|e| ApiError::refused(&e))?;
    tracing::info!(%id, ?kind, url = %redact::raw(&t.url), "transfer submitted");
    let location = format!("{}/api/transfers/{id}", shared.config.mount);
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(serde_json::json!({ "id": id })))
}

/// The file an upload may read: `path` relative to the upload dir, and still inside it once
/// every symlink is resolved.
async fn upload_source(config: &WebConfig, path: Option<&str>) -> Result<PathBuf, ApiError> {
    let Some(root) = config.upload_dir.clone() else {
        return Err(ApiError::forbidden(
            "uploads are disabled: the server has no upload directory",
        ));
    };
    let Some(rel) = path.map(str::to_owned) else {
        return Err(ApiError::bad_request("an upload needs a `path` to read"));
    };
    let unsafe_path = |reason: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsafe_path",
            format!("unsafe path {rel:?}: {reason}"),
        )
    };
    let p = std::path::Path::new(&rel);
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(unsafe_path(
            "it must be relative to the upload directory, without `..`",
        ));
    }
    let joined = root.join(p);
    let resolved =
        web::block(move || Ok::<_, std::io::Error>((root.canonicalize()?, joined.canonicalize()?)))
            .await
            .map_err(|e| ApiError::unavailable(format!("could not check the path: {e}")))?;
    match resolved {
        Ok((root, file)) if file.starts_with(&root) => Ok(file),
        Ok(_) => Err(unsafe_path("it leads outside the upload directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "file",
            format!("no file {rel:?} in the upload directory"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "file",
            format!("cannot read {rel:?}: {e}"),
        )),
    }
}

/// `?state=`: queued, active, paused, ended (or completed, failed, cancelled).
#[derive(Deserialize)]
struct ListQuery {
    state: Option<StateFilter>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum StateFilter {
    Queued,
    Active,
    Paused,
    Ended,
    Completed,
    Failed,
    Cancelled,
}

impl StateFilter {
    fn admits(self, s: TransferState) -> bool {
        match self {
            StateFilter::Queued => s == TransferState::Queued,
            StateFilter::Active => s == TransferState::Active,
            StateFilter::Paused => s == TransferState::Paused,
            StateFilter::Ended => s.is_ended(),
            StateFilter::Completed => s == TransferState::Completed,
            StateFilter::Failed => s == TransferState::Failed,
            StateFilter::Cancelled => s == TransferState::Cancelled,
        }
    }
}

fn state_name(s: TransferState) -> &'static str {
    match s {
        TransferState::Queued => "queued",
        TransferState::Active => "active",
        TransferState::Paused => "paused",
        _ => "ended",
    }
}

fn status_json(s: &TransferStatus, speed: Option<f64>) -> serde_json::Value {
    let active = s.state == TransferState::Active;
    let speed = if active { speed.unwrap_or(0.0) } else { 0.0 };
    let eta = match (active, s.bytes_estimated) {
        (true, Some(total)) if speed > 0.0 => {
            Some((total.saturating_sub(s.bytes_transferred) as f64 / speed).ceil() as u64)
        }
        _ => None,
    };
    let mut v = serde_json::json!({
        "id": s.id,
        "kind": s.kind,
        "state": state_name(s.state),
        "url": s.url,
        "path": s.path,
        "bytes": s.bytes_transferred,
        "total": s.bytes_estimated,
        "speed": speed.round() as u64,
        "eta": eta,
    });
    if let Some(end) = s.state.end_state() {
        v["outcome"] = serde_json::json!(end);
    }
    if let Some(e) = &s.error {
        v["error"] = serde_json::json!({ "kind": e.kind(), "message": e.to_string() });
    }
    v
}

async fn list(shared: Data, q: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let all = shared
        .engine
        .send(List::all().without_history())
        .await
        .map_err(ApiError::mailbox)?;
    let speeds = shared.hub.send(hub::Snap).await.unwrap_or_default().speeds;
    let out: Vec<_> = all
        .iter()
        .filter(|s| q.state.is_none_or(|f| f.admits(s.state)))
        .map(|s| status_json(s, speeds.get(&s.id).copied()))
        .collect();
    Ok(HttpResponse::Ok().json(out))
}

async fn status(shared: Data, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let s = shared
        .engine
        .send(Status(id))
        .await
        .map_err(ApiError::mailbox)?
        .ok_or_else(ApiError::unknown)?;
    let speeds = shared.hub.send(hub::Snap).await.unwrap_or_default().speeds;
    Ok(HttpResponse::Ok().json(status_json(&s, speeds.get(&id).copied())))
}

fn done(
    r: Result<Result<(), crate::ControlError>, actix::MailboxError>,
) -> Result<HttpResponse, ApiError> {
    r.map_err(ApiError::mailbox)??;
    Ok(HttpResponse::NoContent().finish())
}

async fn cancel(shared: Data, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    done(shared.engine.send(Cancel(id)).await)
}

async fn pause(shared: Data, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    done(shared.engine.send(Pause(id)).await)
}

async fn resume(shared: Data, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    done(shared.engine.send(Resume(id)).await)
}

#[derive(Deserialize)]
struct EraseQuery {
    #[serde(default)]
    delete_files: bool,
}

async fn erase(
    shared: Data,
    id: web::Path<String>,
    q: web::Query<EraseQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    shared
        .engine
        .send(Erase {
            id,
            delete_files: q.delete_files,
        })
        .await
        .map_err(ApiError::mailbox)??;
    Ok(HttpResponse::NoContent().finish())
}

/// `{"bytes_per_sec": N}` or `{"bytes_per_sec": null}` (no limit of its own); the field is
/// required so that a typo does not lift a limit.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rate {
    #[serde(deserialize_with = "present")]
    bytes_per_sec: Option<u64>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

async fn rate(
    shared: Data,
    id: web::Path<String>,
    body: web::Json<Rate>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    if body.bytes_per_sec == Some(0) {
        return Err(ApiError::bad_request(
            "bytes_per_sec must be at least 1 (null lifts the limit)",
        ));
    }
    done(
        shared
            .engine
            .send(SetRate {
                id,
                bytes_per_sec: body.bytes_per_sec,
            })
            .await,
    )
}

async fn events(req: HttpRequest, shared: Data) -> Result<HttpResponse, ApiError> {
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    let rx = shared
        .hub
        .send(hub::Join { last_event_id })
        .await
        .map_err(|e| ApiError::unavailable(format!("the event hub is not running ({e})")))?
        .map_err(|refused| match refused {
            hub::Refused::TooMany(n) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_clients",
                format!("{n} event-stream clients are connected already"),
            ),
            hub::Refused::Closed => ApiError::unavailable("the server is stopping"),
        })?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(rx.map(Ok::<_, actix_web::Error>)))
}

/// Counts by state and the hub's figures.
struct Figures {
    by_state: [(&'static str, u64); 6],
    download_speed: f64,
    upload_speed: f64,
    snapshot: hub::Snapshot,
}

async fn figures(shared: &Shared) -> Result<Figures, ApiError> {
    let all = shared
        .engine
        .send(List::all().without_history())
        .await
        .map_err(ApiError::mailbox)?;
    let snapshot = shared.hub.send(hub::Snap).await.unwrap_or_default();
    let mut by_state = [
        ("queued", 0),
        ("active", 0),
        ("paused", 0),
        ("completed", 0),
        ("failed", 0),
        ("cancelled", 0),
    ];
    let (mut download_speed, mut upload_speed) = (0.0, 0.0);
    for s in &all {
        let i = match s.state {
            TransferState::Queued => 0,
            TransferState::Active => 1,
            TransferState::Paused => 2,
            TransferState::Completed => 3,
            TransferState::Failed => 4,
            TransferState::Cancelled => 5,
        };
        by_state[i].1 += 1;
        if s.state == TransferState::Active {
            let speed = snapshot.speeds.get(&s.id).copied().unwrap_or(0.0);
            match s.kind {
                TransferKind::Upload => upload_speed += speed,
                _ => download_speed += speed,
            }
        }
    }
    Ok(Figures {
        by_state,
        download_speed,
        upload_speed,
        snapshot,
    })
}

fn kind_name(k: TransferKind) -> &'static str {
    match k {
        TransferKind::Download => "download",
        TransferKind::Upload => "upload",
        TransferKind::Fetch => "fetch",
    }
}

async fn stats(shared: Data) -> Result<HttpResponse, ApiError> {
    let f = figures(&shared).await?;
    let engine = shared
        .engine
        .send(crate::EngineStatus)
        .await
        .map_err(ApiError::mailbox)?;
    let states: serde_json::Map<String, serde_json::Value> = f
        .by_state
        .iter()
        .map(|(n, c)| ((*n).to_owned(), (*c).into()))
        .collect();
    let ended = f.by_state[3].1 + f.by_state[4].1 + f.by_state[5].1;
    let bytes: serde_json::Map<String, serde_json::Value> = KINDS
        .iter()
        .map(|k| {
            (
                kind_name(*k).to_owned(),
                f.snapshot.counters.bytes[hub::kind_index(*k)].into(),
            )
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "states": states,
        "ended": ended,
        "download_speed": f.download_speed.round() as u64,
        "upload_speed": f.upload_speed.round() as u64,
        "bytes": bytes,
        "bytes_total": f.snapshot.counters.bytes.iter().sum::<u64>(),
        "event_clients": f.snapshot.clients,
        "journal": journal_json(&engine.journal),
    })))
}

/// The journal's state (see `EngineStatus`): `{"state": "off" | "ok" | "failed"}`, with a
/// `reason` when it failed.
fn journal_json(j: &crate::JournalState) -> serde_json::Value {
    match j {
        crate::JournalState::Failed { reason } => {
            serde_json::json!({ "state": "failed", "reason": reason })
        }
        crate::JournalState::Ok => serde_json::json!({ "state": "ok" }),
        _ => serde_json::json!({ "state": "off" }),
    }
}

async fn metrics(shared: Data) -> Result<HttpResponse, ApiError> {
    use std::fmt::Write;
    let f = figures(&shared).await?;
    let c = &f.snapshot.counters;
    let mut text = String::new();
    let mut push = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(text, "# HELP actix_transfer_{name} {help}");
        let _ = writeln!(text, "# TYPE actix_transfer_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(text, "actix_transfer_{name}{labels} {v}");
        }
    };
    push(
        "transfers",
        "gauge",
        "Transfers the engine holds, by state.",
        f.by_state
            .iter()
            .map(|(state, n)| (format!("{{state=\"{state}\"}}"), n.to_string()))
            .collect(),
    );
    push(
        "speed_bytes_per_second",
        "gauge",
        "Current speed of the active transfers, by direction.",
        vec![
            (
                "{direction=\"download\"}".into(),
                format!("{:.0}", f.download_speed),
            ),
            (
                "{direction=\"upload\"}".into(),
                format!("{:.0}", f.upload_speed),
            ),
        ],
    );
    let by_kind = |vals: &[u64; 3]| -> Vec<(String, String)> {
        KINDS
            .iter()
            .map(|k| {
                (
                    format!("{{kind=\"{}\"}}", kind_name(*k)),
                    vals[hub::kind_index(*k)].to_string(),
                )
            })
            .collect()
    };
    push(
        "started_total",
        "counter",
        "Transfers submitted since the panel started, by kind.",
        by_kind(&c.started),
    );
    let mut ended = Vec::new();
    for k in KINDS {
        for (j, outcome) in ["completed", "failed", "cancelled"].iter().enumerate() {
            ended.push((
                format!("{{kind=\"{}\",outcome=\"{outcome}\"}}", kind_name(k)),
                c.ended[hub::kind_index(k)][j].to_string(),
            ));
        }
    }
    push(
        "ended_total",
        "counter",
        "Transfers ended since the panel started, by kind and outcome.",
        ended,
    );
    push(
        "bytes_total",
        "counter",
        "Body bytes moved since the panel started, by kind.",
        by_kind(&c.bytes),
    );
    push(
        "event_clients",
        "gauge",
        "Connected event-stream clients.",
        vec![(String::new(), f.snapshot.clients.to_string())],
    );
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
