//! What the examples share (not an example of its own: a directory without `main.rs`).

/// Ctrl-C, or SIGTERM on Unix (what `docker stop` and systemd send).
pub async fn stop_signal() {
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
