//! Hit throughput as the runtime and the cache grow: 1 vs 2 tokio worker
//! threads, 1,000 vs 1,000,000 cached keys.
//!
//! The cache is filled the way traffic fills it: one lookup a token through
//! the public API, answered `PAID` by the mock Figma (which accepts every
//! token the bench makes), and the naive gate's cache with the same tokens; 16
//! concurrent tasks then request random cached keys through the router,
//! in-process. Criterion reports the time per request (all tasks together)
//! and the throughput; the bench ends with a requests/second table.
//!
//! ```sh
//! cargo bench -p figma-paywall-testbed --bench scaling
//! ```

mod common;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::Router;
use common::*;
use criterion::{Criterion, Throughput};
use figma_paywall::{PaymentStatus, Paywall, RequirePaidLayer, UserId};
use http::{HeaderValue, StatusCode};
use tower::ServiceExt;

const GROUP: &str = "hit_scaling";
/// Concurrent client tasks, whatever the worker count.
const TASKS: u64 = 16;
const WORKERS: [usize; 2] = [1, 2];

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let key_counts: &[usize] = if bench_mode() {
        &[1_000, 1_000_000]
    } else {
        &[1_000, 10_000]
    };

    // The mock answers the fill; any miss after it would go there too
    // (on loopback, never to Figma): none is expected, and the bench checks.
    let figma = mock_elsewhere();
    figma.set_default_status(PaymentStatus::Paid); // every token's user bought the plugin
    let fill_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let plugin = plugin();

    for &keys in key_counts {
        let t = Instant::now();
        let tokens: Arc<Vec<HeaderValue>> = Arc::new(
            (0..keys as u64)
                .map(|i| HeaderValue::from_str(&token_string(i)).expect("a header value"))
                .collect(),
        );
        let paywall = Paywall::new(unlimited_client(&figma.url()));
        let naive = naive_cache(1_000_000);
        let mut rng = Rng::new(keys as u64);
        let ppts: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, header)| {
                let ppt = token(header.to_str().expect("ASCII"));
                let user = UserId::new(user_id_string(i as u64, &mut rng)).expect("a user ID");
                figma.accept_token(&ppt, &user, &plugin);
                ppt
            })
            .collect();
        let upstream_before_fill = figma.payment_requests();
        fill_rt.block_on(async {
            fill_by_token(&paywall, ppts, 64).await;
            for header in tokens.iter() {
                let raw = header.to_str().expect("ASCII");
                naive.insert(raw.to_owned(), Arc::new(())).await;
            }
            let _ = paywall.stats(); // the cache's pending upkeep is done first
            naive.run_pending_tasks().await;
        });
        assert_eq!(
            figma.payment_requests() - upstream_before_fill,
            keys,
            "one lookup a key"
        );
        let cached = paywall.stats().cached_entries;
        println!(
            "{keys} keys: filled in {:.1} s; RequirePaid's cache holds {cached}, the naive cache {}",
            t.elapsed().as_secs_f64(),
            naive.entry_count()
        );
        assert_eq!(cached, keys as u64, "every key must stay cached");
        let upstream_before = figma.payment_requests();

        let gated = bare_router().layer(RequirePaidLayer::new(&paywall, plugin.clone()));
        let routers: Vec<(&str, Router)> = vec![
            ("bare", bare_router()),
            ("naive_token", naive_token_router(naive.clone())),
            ("require_paid_token", gated),
        ];
        let mut g = c.benchmark_group(GROUP);
        g.throughput(Throughput::Elements(1));
        for workers in WORKERS {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()
                .expect("a runtime");
            for (name, app) in &routers {
                let id = format!("{name}_{keys}keys_{workers}w");
                let status = rt.block_on(app.clone().oneshot(token_request(&tokens[0])));
                assert_eq!(status.expect("infallible").status(), StatusCode::OK, "{id}");
                g.bench_function(&id, |b| {
                    b.iter_custom(|iters| rt.block_on(run(app, &tokens, iters)));
                });
            }
        }
        g.finish();
        let upstream = figma.payment_requests() - upstream_before;
        let stats = paywall.stats();
        println!(
            "{keys} keys: RequirePaid served {} hits, {} misses; {upstream} calls reached the mock",
            stats.cache_hits, stats.cache_misses
        );
        assert_eq!(upstream, 0, "every measured request must be a cache hit");
    }

    c.final_summary();
    print_summary(started, key_counts);
}

/// `iters` requests for random cached keys, from `TASKS` concurrent tasks.
async fn run(app: &Router, tokens: &Arc<Vec<HeaderValue>>, iters: u64) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let n = iters / TASKS + u64::from(t < iters % TASKS);
            let app = app.clone();
            let tokens = tokens.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(t ^ iters);
                for _ in 0..n {
                    let header = &tokens[rng.below(tokens.len())];
                    let response = app.clone().oneshot(token_request(header)).await;
                    black_box(response.expect("infallible").status());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client task");
    }
    started.elapsed()
}

fn print_summary(since: SystemTime, key_counts: &[usize]) {
    let dir = criterion_dir();
    let rps = |id: String| median_ns(&dir, GROUP, &id, since).map(|ns| 1e9 / ns);
    let mut rows = Vec::new();
    for &keys in key_counts {
        for name in ["bare", "naive_token", "require_paid_token"] {
            let one = rps(format!("{name}_{keys}keys_1w"));
            let two = rps(format!("{name}_{keys}keys_2w"));
            let (Some(one), Some(two)) = (one, two) else {
                continue;
            };
            rows.push(format!(
                "| {name} | {keys} | {one:.0} | {two:.0} | {:.2} |",
                two / one
            ));
        }
    }
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "Hit throughput, requests/second (criterion medians; {TASKS} client tasks in-process):"
    );
    println!();
    println!("| router | cached keys | 1 worker | 2 workers | 2 workers / 1 |");
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    if let [small, large] = key_counts {
        println!();
        println!("| router | workers | {small} keys | {large} keys | {large} / {small} |");
        println!("|---|---:|---:|---:|---:|");
        for name in ["bare", "naive_token", "require_paid_token"] {
            for w in WORKERS {
                let a = rps(format!("{name}_{small}keys_{w}w"));
                let b = rps(format!("{name}_{large}keys_{w}w"));
                if let (Some(a), Some(b)) = (a, b) {
                    println!("| {name} | {w} | {a:.0} | {b:.0} | {:.2} |", b / a);
                }
            }
        }
    }
}
