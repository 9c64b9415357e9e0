//! An actix-web service that owns an Engine.
//!
//! ```text
//! cargo run --example embed            # listens on 127.0.0.1:8080 (PORT overrides)
//! curl -X POST localhost:8080/downloads -H 'content-type: application/json' \
//!      -d '{"url": "http://127.0.0.1:9000/file.iso", "name": "isos/file.iso"}'
//! curl localhost:8080/downloads            # every transfer's status
//! curl localhost:8080/downloads/1          # one
//! curl -X DELETE localhost:8080/downloads/1   # cancel: 204, 404 unknown, 409 not active
//! curl -N localhost:8080/events            # Server-Sent Events, one JSON event each
//! ```
//!
//! Files go to `DOWNLOAD_DIR`, or a temp dir.

use std::time::Duration;

use actix::prelude::*;
use actix_transfer::{
    Cancel, CancelError, Download, Engine, List, Status, Subscribe, TransferError, TransferEvent,
    TransferId,
};
use actix_web::{http::StatusCode, web, App, HttpResponse, HttpServer, Responder, ResponseError};
use futures::channel::mpsc;

/// Fans events out to the connected SSE clients; a client whose buffer is full or that went
/// away is dropped, so a slow client never holds anything up.
#[derive(Default)]
struct Broadcaster {
    clients: Vec<mpsc::Sender<web::Bytes>>,
}

impl Actor for Broadcaster {
    type Context = Context<Self>;
}

impl Handler<TransferEvent> for Broadcaster {
    type Result = ();
    fn handle(&mut self, ev: TransferEvent, _: &mut Context<Self>) {
        let json = serde_json::to_string(&ev).expect("events serialise");
        let frame = web::Bytes::from(format!("data: {json}\n\n"));
        self.clients
            .retain_mut(|c| c.try_send(frame.clone()).is_ok());
    }
}

/// A new SSE client.
#[derive(Message)]
#[rtype(result = "()")]
struct Join(mpsc::Sender<web::Bytes>);

impl Handler<Join> for Broadcaster {
    type Result = ();
    fn handle(&mut self, Join(tx): Join, _: &mut Context<Self>) {
        self.clients.push(tx);
    }
}

struct AppState {
    engine: Addr<Engine>,
    events: Addr<Broadcaster>,
}

#[derive(serde::Deserialize)]
struct NewDownload {
    url: String,
    name: Option<String>,
}

/// An API error as JSON: `{"kind": "...", "message": "..."}`.
#[derive(Debug)]
struct ApiError(StatusCode, serde_json::Value);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.1)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.0
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.0).json(&self.1)
    }
}

fn unavailable(e: MailboxError) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({"kind": "unavailable", "message": e.to_string()}),
    )
}

fn parse_id(raw: &str) -> Result<TransferId, ApiError> {
    raw.parse().ok().and_then(TransferId::new).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            serde_json::json!({"kind": "unknown"}),
        )
    })
}

async fn start(
    state: web::Data<AppState>,
    body: web::Json<NewDownload>,
) -> Result<HttpResponse, ApiError> {
    let NewDownload { url, name } = body.into_inner();
    let mut download = Download::new(url);
    if let Some(name) = name {
        download = download.to(name);
    }
    match state.engine.send(download).await.map_err(unavailable)? {
        Ok(id) => Ok(HttpResponse::Created().json(serde_json::json!({ "id": id }))),
        Err(error) => Err(ApiError(StatusCode::BAD_REQUEST, bad_request(&error))),
    }
}

fn bad_request(error: &TransferError) -> serde_json::Value {
    serde_json::json!({ "kind": error.kind(), "message": error.to_string() })
}

async fn cancel(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    match state.engine.send(Cancel(id)).await.map_err(unavailable)? {
        Ok(()) => Ok(HttpResponse::NoContent().finish()),
        Err(CancelError::Unknown) => Err(ApiError(
            StatusCode::NOT_FOUND,
            serde_json::json!({"kind": "unknown"}),
        )),
        Err(CancelError::NotActive(end)) => Err(ApiError(
            StatusCode::CONFLICT,
            serde_json::json!({"kind": "not_active", "state": end}),
        )),
    }
}

async fn list(state: web::Data<AppState>) -> Result<impl Responder, ApiError> {
    let all = state.engine.send(List(None)).await.map_err(unavailable)?;
    Ok(web::Json(all))
}

async fn status(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    match state.engine.send(Status(id)).await.map_err(unavailable)? {
        Some(s) => Ok(HttpResponse::Ok().json(s)),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            serde_json::json!({"kind": "unknown"}),
        )),
    }
}

async fn event_stream(state: web::Data<AppState>) -> HttpResponse {
    let (tx, rx) = mpsc::channel(256);
    state.events.do_send(Join(tx));
    let stream = futures::StreamExt::map(rx, Ok::<_, actix_web::Error>);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(stream)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let _tmp;
    let dir = match std::env::var_os("DOWNLOAD_DIR") {
        Some(d) => d.into(),
        None => {
            let t = tempfile::tempdir()?;
            let p = t.path().to_path_buf();
            _tmp = t;
            p
        }
    };
    let engine = Engine::builder()
        .download_dir(&dir)
        .max_active(32)
        .idle_timeout(Duration::from_secs(30))
        .start();
    let events = Broadcaster::default().start();
    engine
        .send(Subscribe::all(events.clone().recipient()))
        .await
        .expect("engine is running");
    println!(
        "embed: http://127.0.0.1:{port}, downloading into {}",
        dir.display()
    );

    let state = web::Data::new(AppState { engine, events });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/downloads", web::post().to(start))
            .route("/downloads", web::get().to(list))
            .route("/downloads/{id}", web::get().to(status))
            .route("/downloads/{id}", web::delete().to(cancel))
            .route("/events", web::get().to(event_stream))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
