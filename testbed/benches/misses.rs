//! Misses: Figma sees each key once.
//!
//! 1. Many concurrent requests for one cold key, with the mock Figma
//!    answering after a fixed latency: how many calls reach Figma (expected:
//!    exactly 1), and how much longer than that one upstream call the
//!    slowest caller waited.
//! 2. 100,000 requests over 10,000 distinct users (user mode), then over
//!    10,000 distinct plugin payment tokens (token mode), at most 1,000 in
//!    flight: calls to Figma against distinct keys (expected: equal).
//!
//! ```sh
//! cargo bench -p figma-paywall-testbed --bench misses
//! ```
//!
//! Under `cargo test --benches` (no `--bench` argument) it runs a smaller
//! version as a smoke test. Counts are checked (the process exits 1 when
//! one is off); latencies are only reported.

mod common;

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    middleware::{self, Next},
    response::IntoResponse,
    Router,
};
use common::*;
use figma_paywall::{
    mock::MockFigma, PaymentStatus, PaymentsClient, Paywall, PluginPaymentToken, RequirePaidLayer,
    UserId,
};
use http::{HeaderValue, Request, StatusCode};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The mock Figma's answer latency.
const UPSTREAM_LATENCY: Duration = Duration::from_millis(50);
/// The target: the slowest caller waits at most this much longer than the
/// one upstream call.
const OVERHEAD_TARGET: Duration = Duration::from_millis(5);

struct Sizes {
    herds: Vec<usize>,
    rounds: u64,
    distinct: usize,
    per_key: usize,
    in_flight: usize,
}

fn main() -> ExitCode {
    let sizes = if bench_mode() {
        Sizes {
            herds: vec![1_000, 10_000],
            rounds: 3,
            distinct: 10_000,
            per_key: 10,
            in_flight: 1_000,
        }
    } else {
        println!("misses: smoke run (use `cargo bench -p figma-paywall-testbed --bench misses` for the real sizes)");
        Sizes {
            herds: vec![500],
            rounds: 1,
            distinct: 200,
            per_key: 5,
            in_flight: 100,
        }
    };
    let workers = std::env::var("MISSES_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let figma = mock_elsewhere();
    figma.set_latency(UPSTREAM_LATENCY);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "gate on a {workers}-worker tokio runtime; mock Figma on its own thread, answering after {UPSTREAM_LATENCY:?}"
    );
    let ok = rt.block_on(async {
        let a = one_cold_key(&figma, &sizes).await;
        let b = many_keys(&figma, &sizes, Mode::User).await;
        let c = many_keys(&figma, &sizes, Mode::Token).await;
        a && b && c
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        println!("UNEXPECTED: Figma was asked a different number of times than there are keys");
        ExitCode::FAILURE
    }
}

/// A client whose budget and queue never get in the way.
fn budgetless_client(figma: &MockFigma) -> PaymentsClient {
    figma
        .client_builder()
        .rate_limit(60_000_000, 100_000)
        .queue(100_000, Duration::from_secs(30))
        .build()
        .expect("a client")
}

/// A paywall on such a client.
fn paywall(figma: &MockFigma) -> Paywall {
    Paywall::new(budgetless_client(figma))
}

fn gated(paywall: &Paywall) -> Router {
    bare_router().layer(RequirePaidLayer::new(paywall, plugin()))
}

/// Spawns one task per request, all at once; each reports its status and
/// its latency from just before it was spawned. With `wake_at`, each task
/// first sleeps until then.
async fn fire(
    app: &Router,
    requests: Vec<Request<Body>>,
    wake_at: Option<tokio::time::Instant>,
) -> (Vec<(StatusCode, Duration)>, Duration) {
    let t0 = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|req| {
            let app = app.clone();
            let spawned = Instant::now();
            tokio::spawn(async move {
                if let Some(at) = wake_at {
                    tokio::time::sleep_until(at).await;
                }
                let status = app.oneshot(req).await.expect("infallible").status();
                (status, spawned.elapsed())
            })
        })
        .collect();
    let spawning = t0.elapsed();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("the request task"));
    }
    (results, spawning)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Who answers the herd of callers of one cold key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Herd {
    /// No gate, no Figma: every caller sleeps until the same instant,
    /// `UPSTREAM_LATENCY` after the first was spawned, then calls the bare
    /// route. The runtime's own cost of waking the herd: the floor.
    Floor,
    /// The naive gate with coalescing: `from_fn` and moka's `try_get_with`,
    /// asking the mock Figma with the same client settings.
    Naive,
    /// `RequirePaid`.
    RequirePaid,
}

impl Herd {
    fn name(self) -> &'static str {
        match self {
            Self::Floor => "floor: bare route after one shared timer",
            Self::Naive => "naive gate, moka try_get_with",
            Self::RequirePaid => "RequirePaid",
        }
    }
}

/// The naive gate, coalescing misses with moka's `try_get_with`.
fn naive_coalescing_router(client: PaymentsClient) -> Router {
    let cache = naive_cache(1_000_000);
    bare_router().layer(middleware::from_fn(
        move |req: Request<Body>, next: Next| {
            let cache = cache.clone();
            let client = client.clone();
            async move {
                let token = req
                    .headers()
                    .get(&TOKEN_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| PluginPaymentToken::new(v).ok());
                let paid = match token {
                    Some(token) => cache
                        .try_get_with(token.expose_secret().to_owned(), async {
                            let info = client.payment_by_token(&token).await?;
                            if info.payment_status == PaymentStatus::Paid {
                                Ok(Arc::new(()))
                            } else {
                                Err(figma_paywall::Error::InvalidRequest {
                                    message: "not paid".into(),
                                })
                            }
                        })
                        .await
                        .is_ok(),
                    None => false,
                };
                if paid {
                    next.run(req).await
                } else {
                    StatusCode::PAYMENT_REQUIRED.into_response()
                }
            }
        },
    ))
}

async fn one_cold_key(figma: &MockFigma, sizes: &Sizes) -> bool {
    println!();
    println!(
        "## Concurrent requests for one cold key (token mode), upstream latency {} ms",
        UPSTREAM_LATENCY.as_millis()
    );
    println!();
    println!("| gate | requests | round | calls to Figma | upstream call (measured) | caller p50 | caller p99 | caller max | max - upstream call | per caller | spawning all took | target (<= {} ms) |", OVERHEAD_TARGET.as_millis());
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let plugin = plugin();
    let mut ok = true;
    let mut key = 0u64;
    for &n in &sizes.herds {
        for herd in [Herd::Floor, Herd::Naive, Herd::RequirePaid] {
            // A fresh gate (and client) per gate kind and size.
            let client = budgetless_client(figma);
            let app = match herd {
                Herd::Floor => bare_router(),
                Herd::Naive => naive_coalescing_router(client.clone()),
                Herd::RequirePaid => gated(&Paywall::new(client.clone())),
            };
            for round in 0..sizes.rounds {
                key += 1;
                let user = UserId::new(format!("{}", 3_000_000_000u64 + key)).expect("a user ID");
                figma.set_status(&user, &plugin, PaymentStatus::Paid);
                let ppt = figma.issue_token(&user, &plugin);
                let header = HeaderValue::from_str(ppt.expose_secret()).expect("a header value");
                let requests: Vec<_> = (0..n).map(|_| token_request(&header)).collect();

                let before = figma.payment_requests();
                let (calls_before, spent_before) = client.upstream_calls();
                let wake_at =
                    (herd == Herd::Floor).then(|| tokio::time::Instant::now() + UPSTREAM_LATENCY);
                let (results, spawning) = fire(&app, requests, wake_at).await;
                let calls = figma.payment_requests() - before;
                let upstream = if herd == Herd::Floor {
                    UPSTREAM_LATENCY
                } else {
                    // The one call's own duration, as the client timed it.
                    let (calls_after, spent_after) = client.upstream_calls();
                    (spent_after - spent_before) / (calls_after - calls_before).max(1) as u32
                };

                let granted = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
                let mut latencies: Vec<Duration> = results.iter().map(|(_, l)| *l).collect();
                latencies.sort();
                let max = *latencies.last().expect("requests");
                let overhead = max.saturating_sub(upstream);
                println!(
                    "| {} | {n} | {} | {calls} | {}{} ms | {} ms | {} ms | {} ms | {} ms | {:.2} us | {} ms | {} |",
                    herd.name(),
                    round + 1,
                    if herd == Herd::Floor { "(timer) " } else { "" },
                    ms(upstream),
                    ms(percentile(&latencies, 0.5)),
                    ms(percentile(&latencies, 0.99)),
                    ms(max),
                    ms(overhead),
                    overhead.as_secs_f64() * 1e6 / n as f64,
                    ms(spawning),
                    if herd == Herd::Floor {
                        "-"
                    } else if overhead <= OVERHEAD_TARGET {
                        "met"
                    } else {
                        "MISSED"
                    },
                );
                let expected_calls = usize::from(herd != Herd::Floor);
                if calls != expected_calls || granted != n {
                    println!(
                        "UNEXPECTED: {calls} calls to Figma (expected {expected_calls}), {granted} of {n} granted"
                    );
                    ok = false;
                }
            }
        }
    }
    ok
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    User,
    Token,
}

async fn many_keys(figma: &MockFigma, sizes: &Sizes, mode: Mode) -> bool {
    let distinct = sizes.distinct;
    let total = distinct * sizes.per_key;
    let plugin = plugin();
    let paywall = paywall(figma);
    let app = gated(&paywall);
    // Distinct users (and tokens naming them), PAID at the mock.
    let base = match mode {
        Mode::User => 4_000_000_000u64,
        Mode::Token => 5_000_000_000u64,
    };
    let make: Vec<Arc<dyn Fn() -> Request<Body> + Send + Sync>> = (0..distinct as u64)
        .map(|i| {
            let user = UserId::new(format!("{}", base + i)).expect("a user ID");
            figma.set_status(&user, &plugin, PaymentStatus::Paid);
            match mode {
                Mode::User => {
                    Arc::new(move || user_request(&user)) as Arc<dyn Fn() -> _ + Send + Sync>
                }
                Mode::Token => {
                    let ppt = figma.issue_token(&user, &plugin);
                    let header =
                        HeaderValue::from_str(ppt.expose_secret()).expect("a header value");
                    Arc::new(move || token_request(&header))
                }
            }
        })
        .collect();
    // Each key `per_key` times, in random order.
    let mut order: Vec<usize> = (0..total).map(|i| i % distinct).collect();
    let mut rng = Rng::new(7);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }

    let before = figma.payment_requests();
    let limit = Arc::new(Semaphore::new(sizes.in_flight));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    for key in order {
        let permit = limit.clone().acquire_owned().await.expect("open");
        let req = make[key]();
        let app = app.clone();
        let spawned = Instant::now();
        tasks.push(tokio::spawn(async move {
            let status = app.oneshot(req).await.expect("infallible").status();
            drop(permit);
            (status, spawned.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut granted = 0;
    for task in tasks {
        let (status, latency) = task.await.expect("the request task");
        granted += usize::from(status == StatusCode::OK);
        latencies.push(latency);
    }
    let elapsed = t0.elapsed();
    let calls = figma.payment_requests() - before;
    latencies.sort();
    let stats = paywall.stats();
    println!();
    println!(
        "## {total} requests over {distinct} distinct keys ({mode:?} mode, at most {} in flight)",
        sizes.in_flight
    );
    println!();
    println!("| requests | distinct keys | calls to Figma | calls / keys | cache hits | lookups that waited on Figma | granted | took | p50 | p99 | max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {total} | {distinct} | {calls} | {:.3} | {} | {} | {granted} | {} ms | {} ms | {} ms | {} ms |",
        calls as f64 / distinct as f64,
        stats.cache_hits,
        stats.cache_misses,
        ms(elapsed),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("requests")),
    );
    let ok = calls == distinct && granted == total;
    if !ok {
        println!(
            "UNEXPECTED: {calls} calls to Figma for {distinct} keys, {granted} of {total} granted"
        );
    }
    ok
}
