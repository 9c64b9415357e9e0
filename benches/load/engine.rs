//! The engine under test, as the scenarios start it, with a recorder subscribed.

use std::{path::Path, time::Duration};

use actix::{Actor, Addr};
use actix_transfer::{Engine, EventKinds, RetryPolicy, Subscribe};

use crate::recorder::{Ends, EndsActor};

/// An engine with one worker thread and a subscriber that records every `Ended`.
pub async fn engine_with(dir: &Path, max_active: usize) -> (Addr<Engine>, Ends, Addr<EndsActor>) {
    engine_on(1, dir, max_active).await
}

/// An engine with `workers` worker threads (0: inline, on this arbiter) and a subscriber
/// that records every `Ended`.
///
/// The subscriber asks for `Ended` alone, as a load test does: it reads nothing else, and an
/// event nobody asked for is never built, so the figures are those of a caller that wants the
/// outcomes (the `Progress` a caller may want costs at most one event per interval).
pub async fn engine_on(
    workers: usize,
    dir: &Path,
    max_active: usize,
) -> (Addr<Engine>, Ends, Addr<EndsActor>) {
    let engine = Engine::builder()
        .workers(workers)
        .download_dir(dir)
        .max_active(max_active)
        .retry(RetryPolicy::never())
        .progress_interval(Duration::from_millis(250))
        .start();
    let ends = Ends::default();
    let actor = EndsActor(ends.clone()).start();
    engine
        .send(Subscribe::all(actor.clone().recipient()).kinds(EventKinds::ENDED))
        .await
        .unwrap()
        .unwrap();
    (engine, ends, actor)
}

/// The two layouts the `small` and `cancel` scenarios measure (`small` compares both with bare
/// awc): one worker thread beside the caller's arbiter, and inline on it (`workers(0)`, like
/// bare awc on its one thread).
pub const LAYOUTS: [(usize, &str); 2] = [(1, "1 worker"), (0, "inline")];
