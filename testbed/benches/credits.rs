//! What credits add to a request whose answer is cached: the same gated
//! route, unmetered and metered, side by side in one run; in process, and
//! with the counts in Redis (one script a request) where `REDIS_URL` is set.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo bench -p figma-paywall-testbed --all-features --bench credits
//! ```

mod common;

use std::time::Duration;

use axum::{body::Body, Router};
use common::*;
use criterion::Criterion;
use figma_paywall::{
    credits::{Credits, Window},
    PaymentStatus, Paywall, RequirePaidLayer, UserId,
};
use http::{HeaderValue, Request, StatusCode};
use tower::ServiceExt;

fn main() {
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let figma = mock_elsewhere();
    let buyer = UserId::new("1234567890123456").expect("a user ID");
    figma.set_status(&buyer, &plugin(), PaymentStatus::Paid);
    let token = HeaderValue::from_str(figma.issue_token(&buyer, &plugin()).expose_secret())
        .expect("a header value");
    // More than any run spends: every request is let in.
    let credits = Credits::new()
        .paid(1 << 50, Window::Month)
        .paid(1 << 50, Window::Day);

    // The Redis tier starts its connection on the runtime.
    let _runtime = rt.enter();
    let mut setups = vec![(
        "in_process",
        Paywall::new(figma.client().expect("a client")),
    )];
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        let prefix = format!("figma-paywall-bench:{:016x}:", rand::random::<u64>());
        let tier = figma_paywall::redis::RedisTier::builder(url)
            .prefix(prefix)
            .build()
            .expect("a Redis tier");
        let paywall = Paywall::builder(figma.client().expect("a client"))
            .redis(tier)
            .build()
            .expect("a paywall");
        setups.push(("redis", paywall));
    }
    let mut g = c.benchmark_group("credits");
    for (name, paywall) in &setups {
        let unmetered = bare_router().layer(RequirePaidLayer::new(paywall, plugin()));
        let metered =
            bare_router().layer(RequirePaidLayer::new(paywall, plugin()).credits(credits.clone()));
        for (id, app) in [("unmetered", &unmetered), ("metered", &metered)] {
            let id = format!("{name}_{id}");
            assert_eq!(
                rt.block_on(call(app, token_request(&token))),
                StatusCode::OK,
                "{id}"
            );
            g.bench_function(&id, |b| {
                b.to_async(&rt)
                    .iter(|| app.clone().oneshot(token_request(&token)));
            });
        }
    }
    g.finish();
    c.final_summary();
}

async fn call(app: &Router, req: Request<Body>) -> StatusCode {
    app.clone().oneshot(req).await.expect("infallible").status()
}
