//! The tests and benchmarks of `figma-paywall` that need heavy crates of
//! their own (a browser driver, property tests, criterion), kept out of the
//! library's dev-dependencies so that a first `cargo run --example` does
//! not build them. Nothing here is to use: see `tests/` and `benches/`.
