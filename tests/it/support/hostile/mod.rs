//! Shared by the hostile-server tests: the misbehaving server ([`server`]) and a small rig to run
//! one transfer against it and look at what it left on disk.
//! It re-exports the shared helpers it builds on (from [`super`]), so `use hostile::*` is
//! all a hostile-server test needs.

pub mod server;

use std::path::{Path, PathBuf};

use actix::{Addr, Message};
use actix_transfer::{
    Engine, EngineBuilder, ErrorKind, EventKind, Outcome, RetryPolicy, TransferError, TransferId,
};

pub use super::{files, pattern, poll_status, submit, wait, Events, LIMIT};
pub use server::{
    chunk, head, ok, redirect, response, Blurt, Deaf, Gate, Hostile, Request, Step, Throttle,
    Unconnectable, LAST_CHUNK,
};

/// An engine writing into `dir`, one worker, no retries (each case here is about what one
/// attempt makes of a hostile answer; retries are the resilience tests'), with `tweak` applied
/// to the builder.
pub fn engine(dir: &Path, tweak: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Addr<Engine> {
    let builder = Engine::builder()
        .workers(1)
        .download_dir(dir)
        .retry(RetryPolicy::never());
    tweak(builder).start()
}

/// Submit `msg` and wait (bounded) for its outcome; panics if it was refused at submit.
pub async fn run<M>(engine: &Addr<Engine>, msg: M) -> (TransferId, Outcome)
where
    M: Message<Result = Result<TransferId, TransferError>> + Send + 'static,
    Engine: actix::Handler<M>,
{
    let id = submit(engine, msg)
        .await
        .unwrap_or_else(|e| panic!("refused at submit: {e}"));
    (id, wait(engine, id).await)
}

/// The error of a failed outcome; panics (with the outcome) otherwise.
pub fn failure(outcome: &Outcome) -> &TransferError {
    outcome
        .error()
        .unwrap_or_else(|| panic!("expected a failure, got {outcome:?}"))
}

/// Assert that `outcome` failed with an error of `kind`, and return the error.
pub fn assert_failed(outcome: &Outcome, kind: ErrorKind) -> &TransferError {
    let error = failure(outcome);
    assert_eq!(error.kind(), kind, "wrong error: {error:?}");
    error
}

/// Assert that a failed download left no file under its final name, and return what is in
/// `dir` (the `.part` file, if the engine kept it).
pub fn assert_nothing_completed(dir: &Path, name: &str) -> Vec<PathBuf> {
    let all = files(dir);
    assert!(
        !all.iter().any(|p| p == Path::new(name)),
        "{name} exists after a failure: {all:?}"
    );
    // Only the .part of this download may remain.
    let part = format!("{name}.part");
    assert!(
        all.iter().all(|p| p == Path::new(&part)),
        "unexpected files: {all:?}"
    );
    all
}

/// Assert that `dir` holds no file at all: a failure before any body byte leaves nothing, not
/// even an empty `.part`.
pub fn assert_empty(dir: &Path) {
    let all = files(dir);
    assert!(all.is_empty(), "files left behind: {all:?}");
}

/// The `.part` file of `name` under `dir`: its bytes, or `None` when there is none.
pub fn part(dir: &Path, name: &str) -> Option<Vec<u8>> {
    std::fs::read(dir.join(format!("{name}.part"))).ok()
}

/// Every `bytes_estimated` announced in `events` (in `Began` and `Progress`).
pub fn estimates(events: &[EventKind]) -> Vec<Option<u64>> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Began {
                bytes_estimated, ..
            }
            | EventKind::Progress {
                bytes_estimated, ..
            } => Some(*bytes_estimated),
            _ => None,
        })
        .collect()
}
