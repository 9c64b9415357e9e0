//! An actix-web application of your own with the transfer control plane mounted in one line.
//!
//! ```text
//! TOKEN=s3cret cargo run --example embed      # listens on 127.0.0.1:8080 (PORT overrides)
//! cargo run --example embed -- --token s3cret --port 8081 --dir downloads
//! # the dashboard: http://127.0.0.1:8080/transfers/ (enter the token)
//! curl -H 'authorization: Bearer s3cret' -H 'content-type: application/json' \
//!      -d '{"url": "http://127.0.0.1:9000/file.iso", "path": "isos/file.iso"}' \
//!      localhost:8080/transfers/api/transfers
//! curl -H 'authorization: Bearer s3cret' localhost:8080/transfers/api/transfers
//! curl -N -H 'authorization: Bearer s3cret' localhost:8080/transfers/api/events
//! curl localhost:8080/hello                    # the application's own route
//! ```
//!
//! Each option can come from the environment instead: `TOKEN`, `PORT`, `DOWNLOAD_DIR`
//! (`--help` lists them). Ctrl-C or SIGTERM stops it gracefully (event streams first, then the
//! server, then the engine). Files go to `--dir`/`DOWNLOAD_DIR`, or a temp dir.
//! `RUST_LOG=actix_transfer=debug` shows the panel's requests (paths only, never query strings
//! or tokens).

#[path = "shared/mod.rs"]
mod shared;
use shared::stop_signal;

use std::path::PathBuf;

use actix_transfer::{
    web::{ControlPanel, WebConfig},
    Engine, Shutdown,
};
use actix_web::{web, App, HttpServer};
use clap::Parser;

/// An actix-web application with the transfer control plane mounted at /transfers.
#[derive(Parser, Debug)]
#[command(name = "embed")]
struct Args {
    /// The bearer token the control plane requires.
    #[arg(long, env = "TOKEN", hide_env_values = true)]
    token: String,
    /// The port to listen on, on 127.0.0.1.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Where files go (default: a temp dir, removed at exit).
    #[arg(long, env = "DOWNLOAD_DIR", value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let _tmp;
    let dir = match args.dir {
        Some(d) => d,
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
        WebConfig::with_token(args.token).mount("/transfers"),
    );
    let p = panel.clone();
    let server = HttpServer::new(move || {
        App::new()
            .configure(p.routes()) // the control plane, in one line
            .route("/hello", web::get().to(|| async { "hello from the app\n" }))
    })
    .disable_signals()
    .bind(("127.0.0.1", args.port))?;
    // The port bound (`--port 0`: one the system chose).
    let addr = server.addrs()[0];
    println!(
        "embed: http://{addr}/transfers/ (downloads go to {})",
        dir.display()
    );
    let server = server.run();
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
