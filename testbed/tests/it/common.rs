//! Shared test helpers: a mock Figma, a gated app, and a way to call it.
#![allow(dead_code)]

use std::{
    io::Write,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Body, routing::get, Json, Router};
use figma_paywall::{
    mock::{MockClock, MockFigma},
    PaidAccess, PaymentInformation, PaymentStatus, Paywall, PaywallBuilder, Resource, UserId,
};
use http::{HeaderMap, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

pub const PLUGIN: &str = "1122334455";
pub const FILE: &str = "9876543210";

pub fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

pub fn plugin() -> Resource {
    Resource::plugin(PLUGIN).unwrap()
}

pub fn file() -> Resource {
    Resource::community_file(FILE).unwrap()
}

/// A mock Figma on its own runtime and thread, so that logs captured by a
/// test come from the code under test only, not from the mock server.
pub fn mock_elsewhere() -> MockFigma {
    MockFigma::start_on_own_thread().unwrap()
}

pub fn paywall(figma: &MockFigma) -> Paywall {
    paywall_with(figma, |b| b)
}

pub fn paywall_with(
    figma: &MockFigma,
    f: impl FnOnce(PaywallBuilder) -> PaywallBuilder,
) -> Paywall {
    f(Paywall::builder(figma.client().unwrap()))
        .build()
        .expect("the paywall builds")
}

/// A paywall (and its client) that reads time from `clock`, which the test
/// moves forward instead of sleeping.
pub fn paywall_on(
    figma: &MockFigma,
    clock: &MockClock,
    f: impl FnOnce(PaywallBuilder) -> PaywallBuilder,
) -> Paywall {
    let client = figma.client_builder().clock(clock).build().unwrap();
    f(Paywall::builder(client))
        .build()
        .expect("the paywall builds")
}

/// A paywall on `clock` with a budget of `per_minute` lookups (`burst` at
/// once), at most `waiting` lookups waiting `max_wait` each for a slot, and
/// PAID answers good for a minute.
pub fn minute_paywall(
    figma: &MockFigma,
    clock: &MockClock,
    (per_minute, burst): (u32, u32),
    (waiting, max_wait): (usize, Duration),
) -> Paywall {
    let client = figma
        .client_builder()
        .clock(clock)
        .rate_limit(per_minute, burst)
        .queue(waiting, max_wait)
        .build()
        .unwrap();
    Paywall::builder(client)
        .paid_lifetime(Duration::from_secs(60))
        .build()
        .expect("the paywall builds")
}

/// An app whose handler echoes what the gate put on the request.
pub fn echo_app() -> Router {
    Router::new().route(
        "/generate",
        get(|info: PaymentInformation, access: PaidAccess| async move {
            Json(json!({
                "info": info,
                "via": format!("{:?}", access.via),
                "stale": access.lookup.as_ref().is_some_and(|l| l.stale()),
                "from_cache": access.lookup.as_ref().is_some_and(|l| l.from_cache()),
            }))
        }),
    )
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

pub async fn call(app: &Router, req: Request<Body>) -> Reply {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

pub fn with_token(token: &str) -> Request<Body> {
    Request::get("/generate")
        .header("x-figma-payment-token", token)
        .body(Body::empty())
        .unwrap()
}

pub fn as_user(id: &str) -> Request<Body> {
    let mut req = Request::get("/generate").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(figma_paywall::UserId::new(id).unwrap());
    req
}

pub fn set(figma: &MockFigma, id: &str, resource: &Resource, status: PaymentStatus) {
    figma.set_status(&user(id), resource, status);
}

/// Serves `app` on loopback with each connection's address on its
/// requests (`ConnectInfo`), as the fair share wants; returns its base URL.
pub async fn serve_with_peers(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}")
}

/// An HTTP client whose connections come from `ip` (any of 127.0.0.0/8 on
/// loopback), so that the server sees distinct clients.
pub fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

/// `GET /generate` with `token` from `http`: the status and the refusal's
/// reason (empty when there is none).
pub async fn get_with_token(http: &reqwest::Client, base: &str, token: &str) -> (u16, String) {
    let response = http
        .get(format!("{base}/generate"))
        .header("x-figma-payment-token", token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (status, body["reason"].as_str().unwrap_or("").to_owned())
}

/// Serves `app` on loopback; returns its base URL.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Everything written by `tracing` at TRACE, from every crate and every
/// test of this binary, since `start`. One global subscriber, not a
/// per-thread one: tracing caches per call site whether anyone listens, and
/// a thread-local subscriber can miss call sites first hit elsewhere.
pub struct CapturedLogs {
    from: usize,
}

static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

#[derive(Clone)]
struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    pub fn start() -> Self {
        let buffer = LOGS.get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = LogWriter(buffer.clone());
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .init();
            buffer
        });
        Self {
            from: buffer.lock().unwrap().len(),
        }
    }

    pub fn text(&self) -> String {
        let buffer = LOGS.get().expect("started").lock().unwrap();
        String::from_utf8_lossy(&buffer[self.from..]).into_owned()
    }
}

/// Waits until `done` holds (work under way elsewhere: a background
/// refresh, a lookup whose callers left, a message over Redis), polling
/// every 10 ms; panics with `what` after 5 s. `done` may ask over HTTP.
pub async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "still not true after 5 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
