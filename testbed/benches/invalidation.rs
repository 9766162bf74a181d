//! What invalidations cost later hits (issue 15): a cached hit before and
//! after 10,000 `invalidate_user` calls, in one run.
//!
//! Invalidation goes by key (an index from user to the keys of their
//! answers), never by a moka predicate: pending predicates are checked on
//! every read until moka has scanned the whole cache, which took a hit from
//! about 0.6 µs to milliseconds with 200,000 entries.
//!
//! 30,000 buyers are cached through the public API (one lookup each,
//! answered by the mock Figma); then `lookup_user` of one cached buyer is
//! timed, 10,000 other buyers are invalidated, and it is timed again.
//!
//! ```sh
//! cargo bench -p figma-paywall-testbed --bench invalidation
//! ```

mod common;

use std::{hint::black_box, time::SystemTime};

use common::*;
use criterion::Criterion;
use figma_paywall::{PaymentStatus, Paywall, UserId};

const GROUP: &str = "invalidation";

fn main() {
    let started = SystemTime::now();
    let (cached, invalidated) = if bench_mode() {
        (30_000, 10_000)
    } else {
        (3_000, 1_000)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let figma = mock_elsewhere();
    figma.set_default_status(PaymentStatus::Paid);
    let paywall = Paywall::new(unlimited_client(&figma.url()));
    let plugin = plugin();
    let users: Vec<UserId> = (0..cached)
        .map(|i| UserId::new(format!("{}", 10_000_000 + i)).expect("an ID"))
        .collect();
    rt.block_on(fill_by_user(&paywall, users.clone(), &plugin, 64));
    let calls = figma.payment_requests();
    let hot = users[0].clone();
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group(GROUP);
    g.bench_function("hit_before", |b| {
        b.to_async(&rt)
            .iter(|| paywall.lookup_user(black_box(&hot), black_box(&plugin)))
    });
    rt.block_on(async {
        for user in &users[1..=invalidated] {
            paywall.invalidate_user(user).await;
        }
    });
    g.bench_function(format!("hit_after_{invalidated}_invalidations"), |b| {
        b.to_async(&rt)
            .iter(|| paywall.lookup_user(black_box(&hot), black_box(&plugin)))
    });
    g.finish();
    assert_eq!(figma.payment_requests(), calls, "a measured lookup missed");
    let dir = criterion_dir();
    let before = median_ns(&dir, GROUP, "hit_before", started);
    let after = median_ns(
        &dir,
        GROUP,
        &format!("hit_after_{invalidated}_invalidations"),
        started,
    );
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "a cached hit with {cached} answers: {before:.0} ns before, {after:.0} ns after {invalidated} invalidations ({:.2}x)",
            after / before
        );
    }
}
