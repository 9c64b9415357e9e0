//! An actix-web application of your own with the transfer control plane mounted in one line.
//!
//! ```text
//! TOKEN=s3cret cargo run --example embed      # listens on 127.0.0.1:8080 (PORT overrides)
//! # the dashboard: http://127.0.0.1:8080/transfers/ (enter the token)
//! curl -H 'authorization: Bearer s3cret' -H 'content-type: application/json' \
//!      -d '{"url": "http://127.0.0.1:9000/file.iso", "path": "isos/file.iso"}' \
//!      localhost:8080/transfers/api/transfers
//! curl -H 'authorization: Bearer s3cret' localhost:8080/transfers/api/transfers
//! curl -N -H 'authorization: Bearer s3cret' localhost:8080/transfers/api/events
//! curl localhost:8080/hello                    # the application's own route
//! ```
//!
//! Ctrl-C or SIGTERM stops it gracefully (event streams first, then the server, then the
//! engine). Files go to `DOWNLOAD_DIR`, or a temp dir. `RUST_LOG=actix_transfer=debug` shows the
//! panel's requests (paths only, never query strings or tokens).

use actix_transfer::{
    web::{ControlPanel, WebConfig},
    Engine, Shutdown,
};
use actix_web::{web, App, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let Ok(token) = std::env::var("TOKEN") else {
        eprintln!("embed: set TOKEN to the bearer token the control plane should require");
        std::process::exit(2);
    };
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
    let engine = Engine::builder().download_dir(&dir).start();
    let panel = ControlPanel::start(
        engine.clone(),
        WebConfig::with_token(token).mount("/transfers"),
    );
    println!("embed: http://127.0.0.1:{port}/transfers/ (downloads go to the download dir)");

    let p = panel.clone();
    let server = HttpServer::new(move || {
        App::new()
            .configure(p.routes()) // the control plane, in one line
            .route("/hello", web::get().to(|| async { "hello from the app\n" }))
    })
    .disable_signals()
    .bind(("127.0.0.1", port))?
    .run();
    let handle = server.handle();
    actix_rt::spawn(async move {
        stop_signal().await;
        // End the event streams first: a graceful stop would otherwise wait for them.
        panel.close().await;
        handle.stop(true).await;
    });
    server.await?;
    let _ = engine.send(Shutdown).await;
    Ok(())
}

/// Ctrl-C, or SIGTERM on unix (what `docker stop`, systemd and `kill` send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            let ctrl_c = Box::pin(actix_rt::signal::ctrl_c());
            let term = Box::pin(term.recv());
            futures::future::select(ctrl_c, term).await;
            return;
        }
    }
    let _ = actix_rt::signal::ctrl_c().await;
}
