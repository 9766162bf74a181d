//! The integration tests, in one binary: real HTTP over loopback against
//! the embedded mock Figma (and a real Redis where `REDIS_URL` is set).
//!
//! Apart, each in its own binary: `examples.rs` (runs the example
//! binaries), `browser.rs` (headless Chromium) and `from_env.rs` (changes
//! the process's environment, which no other test may see).

mod common;
// Shared with the soak, which also stalls it.
#[allow(dead_code)]
#[path = "../common/tcp_proxy.rs"]
mod tcp_proxy;

#[path = "../common/scratch.rs"]
mod scratch;

mod breaker;
mod budget;
mod client;
mod cors;
mod credits;
mod development;
mod fairness;
mod faults;
mod lanes;
mod login;
mod properties;
mod redis;
mod redis_budget;
mod redis_tls;
mod require_paid;
mod store;
