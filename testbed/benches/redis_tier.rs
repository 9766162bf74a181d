//! The Redis tier's hit latency, next to the in-process hit, on a real
//! Redis server at `REDIS_URL` (skipped without it).
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench -p figma-paywall-testbed --bench redis_tier --all-features
//! ```
//!
//! Replica A asks the mock Figma for N users (writing through to Redis);
//! replica B, with an empty in-process cache, then looks each up once (a
//! Redis hit) and again (an in-process hit).

use std::time::{Duration, Instant};

use figma_paywall::{mock::MockFigma, redis::RedisTier, PaymentStatus, Paywall, Resource, UserId};

const USERS: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
        mean.as_secs_f64() * 1e6,
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        percentile(&times, 1.0).as_secs_f64() * 1e6,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("SKIPPED redis_tier bench: REDIS_URL is not set");
        return;
    };
    let figma = MockFigma::start().await.unwrap();
    let plugin = Resource::plugin("1122334455").unwrap();
    let prefix = format!("figma-paywall-bench:{:x}:", std::process::id());
    let replica = || {
        let tier = RedisTier::builder(&url).prefix(&prefix).build().unwrap();
        Paywall::builder(figma.client().unwrap())
            .redis(tier)
            .build()
            .expect("the paywall builds")
    };
    let (a, b) = (replica(), replica());
    let users: Vec<UserId> = (0..USERS)
        .map(|i| UserId::new(format!("{}", 3_000_000 + i)).unwrap())
        .collect();
    for user in &users {
        figma.set_status(user, &plugin, PaymentStatus::Paid);
    }
    let mut figma_times = Vec::with_capacity(USERS);
    for user in &users {
        let started = Instant::now();
        a.lookup_user(user, &plugin).await.unwrap();
        figma_times.push(started.elapsed());
    }
    let calls = figma.payment_requests();
    let mut redis_times = Vec::with_capacity(USERS);
    for user in &users {
        let started = Instant::now();
        let lookup = b.lookup_user(user, &plugin).await.unwrap();
        redis_times.push(started.elapsed());
        assert!(!lookup.from_cache());
    }
    assert_eq!(figma.payment_requests(), calls, "replica B asked Figma");
    assert_eq!(b.stats().redis_hits as usize, USERS);
    let mut local_times = Vec::with_capacity(USERS);
    for user in &users {
        let started = Instant::now();
        let lookup = b.lookup_user(user, &plugin).await.unwrap();
        local_times.push(started.elapsed());
        assert!(lookup.from_cache());
    }
    println!("\n{USERS} lookups each, one at a time, Redis on loopback:\n");
    println!("| lookup | mean µs | p50 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|");
    report("in-process hit (moka)", local_times);
    report("Redis-tier hit (moka miss, Redis GET)", redis_times);
    report(
        "miss to the mock Figma (+ Redis read, lock, write-through)",
        figma_times,
    );
}
