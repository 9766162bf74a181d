//! What the gate costs a caller whose answer is already cached.
//!
//! Calls an axum `Router` in-process (`tower::ServiceExt::oneshot`) on a
//! current-thread tokio runtime, with identical requests for every variant:
//!
//! - `bare_*`: the ungated route;
//! - `naive_*`: the same route behind a hand-written gate, `from_fn` plus one
//!   `moka::future::Cache::get` on the caller's key (the baseline);
//! - `require_paid_*`: behind `RequirePaid`, the caller's `PAID` answer
//!   cached (fetched once from the mock Figma before measuring).
//!
//! `*_token` requests carry `X-Figma-Payment-Token`; `*_user` requests carry
//! a `UserId` extension, as an outer authentication layer inserts it.
//! The `parts` group times the pieces of the hit path one by one. At the
//! end the bench prints each gate's added nanoseconds over the bare route.
//!
//! ```sh
//! cargo bench -p figma-paywall-testbed --bench hit_path
//! ```

mod common;

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use axum::{body::Body, Router};
use common::*;
use criterion::{measurement::WallTime, BenchmarkGroup, Criterion};
use figma_paywall::{
    PaymentInformation, PaymentStatus, Paywall, PluginPaymentToken, RequirePaidLayer, Resource,
    UserId,
};
use http::{HeaderValue, Request, StatusCode};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const GROUP: &str = "hit_path";
const PARTS: &str = "hit_parts";

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let setup = Setup::new(&rt);

    {
        let mut g = c.benchmark_group(GROUP);
        setup.bench_all(&mut g, &rt, "");
        g.finish();
    }
    bench_parts(&mut c, &rt, &setup);
    {
        // Last: once a subscriber has been seen, tracing's callsite
        // interest no longer short-circuits for the rest of the process.
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut g = c.benchmark_group(GROUP);
        setup.bench_all(&mut g, &rt, "_info_subscriber");
        g.finish();
    }

    setup.check_no_misses();
    c.final_summary();
    print_summary(started);
}

/// The routers, their warm caches, and the requests they get.
struct Setup {
    figma: figma_paywall::mock::MockFigma,
    paywall: Paywall,
    bare: Router,
    naive_token: Router,
    naive_user: Router,
    gated: Router,
    token: HeaderValue,
    user: UserId,
    upstream_after_warmup: usize,
}

impl Setup {
    fn new(rt: &Runtime) -> Self {
        let figma = mock_elsewhere();
        let plugin = plugin();
        let buyer = UserId::new("1234567890123456").expect("a user ID");
        figma.set_status(&buyer, &plugin, PaymentStatus::Paid);
        let ppt = figma.issue_token(&buyer, &plugin);
        let token = HeaderValue::from_str(ppt.expose_secret()).expect("a header value");
        let user = buyer.clone();

        let paywall = Paywall::new(figma.client().expect("a client"));
        let gated = bare_router().layer(RequirePaidLayer::new(&paywall, plugin));

        let naive = naive_cache(1_000_000);
        let setup = Self {
            bare: bare_router(),
            naive_token: naive_token_router(naive.clone()),
            naive_user: naive_user_router(naive.clone()),
            gated,
            paywall,
            token,
            user,
            figma,
            upstream_after_warmup: 0,
        };
        rt.block_on(async {
            naive
                .insert(ppt.expose_secret().to_owned(), Arc::new(()))
                .await;
            naive.insert(buyer.as_str().to_owned(), Arc::new(())).await;
            // Warm the gate's cache the real way: one lookup each through
            // the mock Figma.
            for app in [&setup.gated, &setup.naive_token, &setup.bare] {
                assert_eq!(call(app, setup.token_req()).await, StatusCode::OK);
            }
            for app in [&setup.gated, &setup.naive_user, &setup.bare] {
                assert_eq!(call(app, setup.user_req()).await, StatusCode::OK);
            }
        });
        assert_eq!(setup.figma.payment_requests(), 2, "one lookup per key");
        Self {
            upstream_after_warmup: setup.figma.payment_requests(),
            ..setup
        }
    }

    fn token_req(&self) -> Request<Body> {
        token_request(&self.token)
    }

    fn user_req(&self) -> Request<Body> {
        user_request(&self.user)
    }

    fn bench_all(&self, g: &mut BenchmarkGroup<'_, WallTime>, rt: &Runtime, suffix: &str) {
        let token = || self.token_req();
        let user = || self.user_req();
        bench_router(g, rt, &format!("bare_token{suffix}"), &self.bare, token);
        bench_router(
            g,
            rt,
            &format!("naive_token{suffix}"),
            &self.naive_token,
            token,
        );
        bench_router(
            g,
            rt,
            &format!("require_paid_token{suffix}"),
            &self.gated,
            token,
        );
        bench_router(g, rt, &format!("bare_user{suffix}"), &self.bare, user);
        bench_router(
            g,
            rt,
            &format!("naive_user{suffix}"),
            &self.naive_user,
            user,
        );
        bench_router(
            g,
            rt,
            &format!("require_paid_user{suffix}"),
            &self.gated,
            user,
        );
    }

    fn check_no_misses(&self) {
        let stats = self.paywall.stats();
        let upstream = self.figma.payment_requests() - self.upstream_after_warmup;
        println!(
            "RequirePaid during the benchmarks: {} cache hits, {} misses after warm-up, {} upstream calls",
            stats.cache_hits,
            stats.cache_misses - 2,
            upstream
        );
        assert_eq!(upstream, 0, "every measured request must be a cache hit");
    }
}

async fn call(app: &Router, req: Request<Body>) -> StatusCode {
    app.clone().oneshot(req).await.expect("infallible").status()
}

fn bench_router(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    id: &str,
    app: &Router,
    request: impl Fn() -> Request<Body>,
) {
    assert_eq!(rt.block_on(call(app, request())), StatusCode::OK, "{id}");
    g.bench_function(id, |b| {
        b.to_async(rt).iter(|| app.clone().oneshot(request()));
    });
}

/// The pieces of the hit path, timed one by one, to attribute the gate's
/// cost (see BENCHMARKS.md).
fn bench_parts(c: &mut Criterion, rt: &Runtime, setup: &Setup) {
    let mut g = c.benchmark_group(PARTS);
    let raw = setup.token.to_str().expect("ASCII").to_owned();
    let ppt = PluginPaymentToken::new(&raw).expect("a token");
    let user = UserId::new(setup.user.as_str()).expect("a user ID");
    let plugin = plugin();
    let info = PaymentInformation::new(user.clone(), &plugin, PaymentStatus::Paid)
        .with_date_of_purchase("2026-01-15T10:30:00Z");

    // Identity: the header's token is copied into a new `PluginPaymentToken`.
    g.bench_function("token_new", |b| {
        b.iter(|| PluginPaymentToken::new(black_box(raw.as_str())))
    });
    // `Paywall::lookup_token` clones it again into a `Question`.
    g.bench_function("token_clone", |b| b.iter(|| black_box(&ppt).clone()));
    // What making a `UserId` (Arc<str>) costs, which user mode no longer does.
    g.bench_function("user_id_new", |b| {
        b.iter(|| UserId::new(black_box(setup.user.as_str())))
    });
    // What the cache key's hash costs: SHA-256 over inputs the size of a
    // token question and of a user question (one 64-byte block each). The
    // key itself is private (`src/paywall/key.rs`); its whole cost is
    // inside `paywall_lookup_*` below.
    let token_question = [b"token".as_slice(), raw.as_bytes()].concat();
    let user_question = [
        b"user".as_slice(),
        b"PLUGIN",
        PLUGIN.as_bytes(),
        user.as_str().as_bytes(),
    ]
    .concat();
    g.bench_function("sha256_token_question", |b| {
        b.iter(|| Sha256::digest(black_box(&token_question)))
    });
    g.bench_function("sha256_user_question", |b| {
        b.iter(|| Sha256::digest(black_box(&user_question)))
    });
    // `Gate::judge` clones the answer into the request's extensions…
    g.bench_function("info_clone", |b| b.iter(|| black_box(&info).clone()));
    // …and `answered_resource` builds a `Resource` from it.
    g.bench_function("resource_from_info", |b| {
        b.iter(|| {
            let info = black_box(&info);
            Resource::new(info.resource_type.clone(), info.resource_id.clone())
        })
    });
    // Two extensions on a request that had none: the map and two boxes.
    g.bench_function("extensions_insert_two", |b| {
        b.iter(|| {
            let mut ext = http::Extensions::new();
            ext.insert(black_box(&info).clone());
            ext.insert((true, false, true));
            ext
        })
    });
    // The span `check` opens on every request, and the records made on it,
    // with no subscriber installed (the other benches' condition).
    g.bench_function("span_no_subscriber", |b| {
        b.iter(|| {
            let span = tracing::info_span!(
                "require_paid",
                resource = %black_box(&plugin),
                mode = tracing::field::Empty,
                outcome = tracing::field::Empty,
                cache = tracing::field::Empty,
                stale = tracing::field::Empty,
            );
            span.record("mode", "token");
            span.record("cache", "hit");
            span.record("stale", false);
            span.record("outcome", "granted");
            span
        })
    });
    // Boxing a future the size of a small state machine.
    g.bench_function("box_pin_future", |b| {
        b.iter(|| {
            let payload = black_box([0u64; 32]);
            let fut: std::pin::Pin<Box<dyn std::future::Future<Output = u64> + Send>> =
                Box::pin(async move { payload[0] });
            fut
        })
    });
    // moka's own share: `get` on a hit, with the gate's configuration
    // (u128 keys, per-entry expiry): its sync cache, which the gate uses
    // since issue 11, and its future cache, which it used before.
    let moka_sync = moka::sync::Cache::<u128, Arc<()>>::builder()
        .max_capacity(1_000_000)
        .expire_after(KeepFor(Duration::from_secs(70 * 60)))
        .build();
    moka_sync.insert(42, Arc::new(()));
    g.bench_function("moka_sync_get_u128_expiry", |b| {
        b.iter(|| moka_sync.get(black_box(&42)))
    });
    let moka_u128 = rt.block_on(async {
        let cache = moka::future::Cache::<u128, Arc<()>>::builder()
            .max_capacity(1_000_000)
            .expire_after(KeepFor(Duration::from_secs(70 * 60)))
            .build();
        cache.insert(42, Arc::new(())).await;
        cache
    });
    g.bench_function("moka_get_u128_expiry", |b| {
        b.to_async(rt).iter(|| moka_u128.get(black_box(&42)))
    });
    // …and with the naive gate's (String keys looked up by &str, a TTL).
    let moka_string = rt.block_on(async {
        let cache = naive_cache(1_000_000);
        cache.insert(raw.clone(), Arc::new(())).await;
        cache
    });
    g.bench_function("moka_get_str_ttl", |b| {
        b.to_async(rt)
            .iter(|| moka_string.get(black_box(raw.as_str())))
    });
    // A clock read: the hit path takes `Instant::now()` in `lookup` and
    // again in `decide_token`/`decide_user` (`started`).
    g.bench_function("instant_now", |b| b.iter(Instant::now));
    // moka hashes the (already uniformly random) u128 key with SipHash.
    let state = std::collections::hash_map::RandomState::new();
    g.bench_function("siphash_u128", |b| {
        b.iter(|| std::hash::BuildHasher::hash_one(&state, black_box(42u128)))
    });
    // Arc churn: one clone and drop of an `Arc` every request shares (the
    // paywall, the gate, the hot entry, its IDs), from one thread and from
    // two threads at once (per operation, as each thread sees it).
    let shared = Arc::new(0u64);
    g.bench_function("arc_clone_drop_1thread", |b| {
        b.iter(|| drop(black_box(Arc::clone(&shared))))
    });
    g.bench_function("arc_clone_drop_2threads", |b| {
        b.iter_custom(|iters| {
            let barrier = std::sync::Barrier::new(2);
            std::thread::scope(|scope| {
                let run = || {
                    barrier.wait();
                    let started = Instant::now();
                    for _ in 0..iters {
                        drop(black_box(Arc::clone(&shared)));
                    }
                    started.elapsed()
                };
                let other = scope.spawn(run);
                let mine = run();
                mine.max(other.join().expect("the other thread"))
            })
        })
    });
    // The public lookups the gate makes (cache hit): key, moka, bookkeeping.
    let paywall = &setup.paywall;
    g.bench_function("paywall_lookup_token", |b| {
        b.to_async(rt)
            .iter(|| paywall.lookup_token(black_box(&ppt)))
    });
    g.bench_function("paywall_lookup_user", |b| {
        b.to_async(rt)
            .iter(|| paywall.lookup_user(black_box(&user), black_box(&plugin)))
    });
    g.finish();
}

fn print_summary(since: SystemTime) {
    let dir = criterion_dir();
    let get = |id: &str| median_ns(&dir, GROUP, id, since);
    let mut rows = Vec::new();
    for suffix in ["", "_info_subscriber"] {
        for mode in ["token", "user"] {
            let (Some(bare), Some(naive), Some(gate)) = (
                get(&format!("bare_{mode}{suffix}")),
                get(&format!("naive_{mode}{suffix}")),
                get(&format!("require_paid_{mode}{suffix}")),
            ) else {
                continue;
            };
            rows.push(format!(
                "| {mode}{} | {bare:.0} | {naive:.0} | {gate:.0} | {:+.0} | {:+.0} | {:.2} |",
                if suffix.is_empty() {
                    ""
                } else {
                    " (INFO fmt subscriber)"
                },
                naive - bare,
                gate - bare,
                (gate - bare) / (naive - bare),
            ));
        }
    }
    if !rows.is_empty() {
        println!();
        println!(
            "Added cost of each gate over the bare route (criterion medians, ns per request):"
        );
        println!();
        println!("| request | bare | naive gate | RequirePaid | naive adds | RequirePaid adds | RequirePaid/naive added |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for row in rows {
            println!("{row}");
        }
    }
    let parts: Vec<String> = [
        "token_new",
        "token_clone",
        "user_id_new",
        "sha256_token_question",
        "sha256_user_question",
        "info_clone",
        "resource_from_info",
        "extensions_insert_two",
        "span_no_subscriber",
        "box_pin_future",
        "instant_now",
        "siphash_u128",
        "arc_clone_drop_1thread",
        "arc_clone_drop_2threads",
        "moka_get_u128_expiry",
        "moka_get_str_ttl",
        "paywall_lookup_token",
        "paywall_lookup_user",
    ]
    .iter()
    .filter_map(|id| {
        Some(format!(
            "| {id} | {:.1} |",
            median_ns(&dir, PARTS, id, since)?
        ))
    })
    .collect();
    if !parts.is_empty() {
        println!();
        println!("Pieces of the hit path (criterion medians, ns):");
        println!();
        println!("| piece | ns |");
        println!("|---|---:|");
        for row in parts {
            println!("{row}");
        }
    }
}
