//! Shared by the benchmarks: the routes, the naive baseline gate, requests,
//! a mock Figma on its own thread, and a small deterministic RNG.
#![allow(dead_code)]

pub mod wrk;

use std::{sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::Request,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use figma_paywall::{mock::MockFigma, Paywall, PluginPaymentToken, Resource, UserId};
use futures_util::StreamExt;
use http::{HeaderName, HeaderValue, StatusCode, Uri};

/// The plugin every benchmark gates.
pub const PLUGIN: &str = "1122334455";

/// The header a plugin sends its payment token in.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-figma-payment-token");

/// The path every benchmark requests.
pub const PATH: &str = "/generate";

/// The naive baseline's cache: one moka lookup by the raw header value.
pub type NaiveCache = moka::future::Cache<String, Arc<()>>;

pub fn plugin() -> Resource {
    Resource::plugin(PLUGIN).expect("a valid plugin ID")
}

/// The route's handler: as cheap as a handler can be.
pub async fn handler() -> &'static str {
    "ok"
}

/// (a) The ungated route.
pub fn bare_router() -> Router {
    Router::new().route(PATH, get(handler))
}

/// A cache configured like the naive gate would be: a capacity and a
/// time-to-live.
pub fn naive_cache(capacity: u64) -> NaiveCache {
    moka::future::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(Duration::from_secs(600))
        .build()
}

/// (b) The naive baseline: `from_fn` and one `Cache::get` on the token
/// header's value; 402 when it is not cached.
pub fn naive_token_router(cache: NaiveCache) -> Router {
    naive_token_gate(bare_router(), cache)
}

/// Puts the naive token gate in front of every route of `router`.
pub fn naive_token_gate(router: Router, cache: NaiveCache) -> Router {
    naive_gate(router, cache, |req| {
        req.headers()
            .get(&TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
    })
}

/// The naive baseline in user mode: one `Cache::get` on the [`UserId`]
/// extension.
pub fn naive_user_router(cache: NaiveCache) -> Router {
    naive_user_gate(bare_router(), cache)
}

/// Puts the naive user gate in front of every route of `router`.
pub fn naive_user_gate(router: Router, cache: NaiveCache) -> Router {
    naive_gate(router, cache, |req| {
        req.extensions().get::<UserId>().map(UserId::as_str)
    })
}

/// `from_fn` and one `Cache::get` on the caller's key; 402 when it is not
/// cached.
fn naive_gate(router: Router, cache: NaiveCache, key: fn(&Request) -> Option<&str>) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let cache = cache.clone();
        async move {
            let paid = match key(&req) {
                Some(key) => cache.get(key).await.is_some(),
                None => false,
            };
            if paid {
                next.run(req).await
            } else {
                StatusCode::PAYMENT_REQUIRED.into_response()
            }
        }
    }))
}

/// `GET /generate` with the token header: a static URI and a clone of a
/// prepared header value, so building it costs the same in every variant.
pub fn token_request(token: &HeaderValue) -> http::Request<Body> {
    let mut req = http::Request::new(Body::empty());
    *req.uri_mut() = Uri::from_static(PATH);
    req.headers_mut().insert(TOKEN_HEADER, token.clone());
    req
}

/// `GET /generate` as a signed-in user: the [`UserId`] extension that an
/// outer authentication layer would insert.
pub fn user_request(user: &UserId) -> http::Request<Body> {
    let mut req = http::Request::new(Body::empty());
    *req.uri_mut() = Uri::from_static(PATH);
    req.extensions_mut().insert(user.clone());
    req
}

/// A mock Figma on its own thread and runtime, so that it answers promptly
/// whatever the runtime under test is doing.
pub fn mock_elsewhere() -> MockFigma {
    MockFigma::start_on_own_thread().expect("the mock starts")
}

/// A fixed per-entry lifetime through moka's `Expiry`, as the gate sets
/// one per answer.
pub struct KeepFor(pub Duration);

impl moka::Expiry<u128, Arc<()>> for KeepFor {
    fn expire_after_create(
        &self,
        _: &u128,
        _: &Arc<()>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(self.0)
    }
}

/// Set in a bench binary started by [`mock_in_child`]: serve the mock
/// Figma instead of benchmarking.
const SERVE_MOCK: &str = "FIGMA_PAYWALL_BENCH_SERVE_MOCK";

/// A mock Figma in a child process (this same bench binary, run again), so
/// that what the mock allocates is not counted with what the bench
/// measures. Every user is `PAID` there. Killed when dropped.
pub struct ChildMock {
    child: std::process::Child,
    /// The mock's base URL.
    pub url: String,
}

impl Drop for ChildMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts [`ChildMock`]. The bench's `main` must call [`serve_mock_if_child`]
/// first.
pub fn mock_in_child() -> ChildMock {
    mock_in_child_with_tokens(0)
}

/// [`mock_in_child`], accepting `n` plugin payment tokens:
/// [`bench_token`]`(i)` names [`bench_users`]`(n)[i]` of [`plugin`].
pub fn mock_in_child_with_tokens(n: u64) -> ChildMock {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .env(SERVE_MOCK, n.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the bench starts again as the mock");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("the mock prints its URL");
    ChildMock {
        child,
        url: line.trim().to_owned(),
    }
}

/// In a process started by [`mock_in_child`]: serves the mock (every user
/// `PAID`) until the parent goes away, then exits. Elsewhere: returns.
pub fn serve_mock_if_child() {
    let Some(tokens) = std::env::var(SERVE_MOCK).ok() else {
        return;
    };
    let tokens: u64 = tokens.parse().unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the mock");
    rt.block_on(async {
        let figma = MockFigma::start().await.expect("the mock starts");
        figma.set_default_status(figma_paywall::PaymentStatus::Paid);
        let plugin = plugin();
        for (i, user) in bench_users(tokens).iter().enumerate() {
            figma.accept_token(&bench_token(i), user, &plugin);
        }
        println!("{}", figma.url());
        // The parent holds our stdin: it closes when the parent exits.
        let _ = tokio::task::spawn_blocking(|| {
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        })
        .await;
    });
    std::process::exit(0);
}

/// SplitMix64: a small, fast, deterministic RNG for picking keys.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

/// The `i`th plugin payment token, shaped like the mock's (`ppt_` and 32
/// hex digits).
pub fn token_string(i: u64) -> String {
    let mut rng = Rng::new(i);
    format!("ppt_{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// A realistic, unique Figma user ID: 10 to 19 digits, the last 7 being `i`
/// (so IDs are distinct for `i < 10_000_000`).
/// `n` distinct user IDs of 10 to 19 digits, the same in every process.
pub fn bench_users(n: u64) -> Vec<UserId> {
    let mut rng = Rng::new(1);
    (0..n)
        .map(|i| UserId::new(user_id_string(i, &mut rng)).expect("a user ID"))
        .collect()
}

/// The `i`th of the plugin payment tokens a mock from
/// [`mock_in_child_with_tokens`] accepts.
pub fn bench_token(i: usize) -> PluginPaymentToken {
    token(&format!("ppt_bench_{i:07}"))
}

pub fn user_id_string(i: u64, rng: &mut Rng) -> String {
    let len = 10 + rng.below(10);
    let mut id = String::with_capacity(len);
    id.push(char::from(b'1' + rng.below(9) as u8));
    for _ in 1..len - 7 {
        id.push(char::from(b'0' + rng.below(10) as u8));
    }
    id.push_str(&format!("{:07}", i % 10_000_000));
    id
}

/// A client of the mock at `url` whose budget is no limit: for filling a
/// cache, where the budget is not what is measured.
pub fn unlimited_client(url: &str) -> figma_paywall::PaymentsClient {
    figma_paywall::PaymentsClient::builder(
        figma_paywall::AccessToken::new(figma_paywall::mock::MOCK_ACCESS_TOKEN).expect("a token"),
    )
    .base_url(url)
    .rate_limit(60_000_000, 1_000_000)
    .build()
    .expect("a client")
}

/// Fills `paywall`'s cache the way traffic does: one lookup a key through
/// the public API, answered by the mock Figma the client points at,
/// `concurrency` at a time. Panics if any lookup fails.
pub async fn fill_by_token(paywall: &Paywall, tokens: Vec<PluginPaymentToken>, concurrency: usize) {
    futures_util::stream::iter(tokens)
        .for_each_concurrent(concurrency, |token| async move {
            paywall
                .lookup_token(&token)
                .await
                .expect("the mock answers");
        })
        .await;
}

/// [`fill_by_token`], by user ID on `resource`.
pub async fn fill_by_user(
    paywall: &Paywall,
    users: Vec<UserId>,
    resource: &Resource,
    concurrency: usize,
) {
    futures_util::stream::iter(users)
        .for_each_concurrent(concurrency, |user| async move {
            paywall
                .lookup_user(&user, resource)
                .await
                .expect("the mock answers");
        })
        .await;
}

pub fn token(s: &str) -> PluginPaymentToken {
    PluginPaymentToken::new(s).expect("a valid token")
}

/// Whether this run is a real benchmark run (`cargo bench` passes `--bench`)
/// rather than a `cargo test --benches` smoke run.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Sends the response's status back, dropping its body.
pub fn status(response: Response) -> StatusCode {
    response.status()
}

/// Criterion's output directory, found as criterion finds it.
pub fn criterion_dir() -> std::path::PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return std::path::PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return std::path::PathBuf::from(target).join("criterion");
    }
    // <target>/release/deps/<bench>-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| std::path::PathBuf::from("target/criterion"))
}

/// The median time of one benchmark of this run, in nanoseconds.
pub fn median_ns(
    dir: &std::path::Path,
    group: &str,
    id: &str,
    since: std::time::SystemTime,
) -> Option<f64> {
    let path = dir.join(group).join(id).join("new").join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None; // from an earlier run
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}
