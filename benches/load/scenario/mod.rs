//! One module per scenario, each with `run(opts, base, dir, report)` adding its rows to the
//! report. Scenarios use the shared modules (options, server, metrics, report, recorder, engine,
//! bare) and never each other.

pub mod cancel;
pub mod file;
pub mod files;
pub mod fleet;
pub mod journal;
pub mod loadgen;
pub mod open;
pub mod queue;
pub mod rate;
pub mod segments;
pub mod small;
pub mod upload;
