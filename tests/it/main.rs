//! The integration tests: one binary (one link of the crate), one module per area, sharing one
//! support tree (`support`: loopback servers, hostile servers, content, recorders, hashing).
//! Only a test that needs a process of its own lives beside it (tests/inline.rs counts threads).

mod support;
use support::{hostile, ranged};

mod bandwidth;
mod cancel;
mod cli;
mod download;
mod engine;
mod error_taxonomy;
mod events;
mod file_safety;
mod fleet;
mod handle;
mod http_encoding;
mod http_framing;
mod http_redirects;
mod http_status;
mod http_timeouts;
mod input;
mod journal;
mod journal_crash;
mod mirrors;
mod names;
mod outcome_response;
mod proxy;
mod resilience;
mod segmented;
mod slow_download;
#[cfg(feature = "rustls")]
mod tls;
mod typed_inputs;
mod upload_fetch;
mod web;
