//! An embedded mock of Figma's payments API, for tests and offline work.
//!
//! # Example
//!
//! ```
//! use figma_paywall::{mock::MockFigma, PaymentStatus, Resource, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let figma = MockFigma::start().await?;
//! let plugin = Resource::plugin("1122334455")?;
//! let buyer = UserId::new("2001")?;
//! figma.set_status(&buyer, &plugin, PaymentStatus::Paid);
//! let token = figma.issue_token(&buyer, &plugin);
//!
//! let client = figma.client()?;
//! let info = client.payment_by_token(&token).await?;
//! assert_eq!(info.payment_status, PaymentStatus::Paid);
//! assert_eq!(figma.payment_requests(), 1);
//! # Ok(()) }
//! ```
//!
//! [`MockFigma`] is an axum server on loopback that answers `GET /v1/payments`
//! and `GET /v1/me` as Figma does: it checks `X-Figma-Token`, enforces the
//! exactly-one-resource rule with 400s in Figma's error envelope, and answers
//! from an in-memory ledger of purchases and plugin payment tokens. It can
//! inject faults (a status, a 429 with `Retry-After`, latency, a malformed
//! body, a dropped connection) and counts the requests it got, so tests can
//! assert how many calls reached "Figma".
//!
//! For tests of plugin code, it also plays the plugin side of Figma over
//! HTTP, what `figma.payments` does inside Figma: `POST
//! /plugin/payment-token?user_id=…&plugin_id=…` answers a new plugin payment
//! token for that user (`getPluginPaymentTokenAsync()`), and `POST
//! /plugin/checkout?user_id=…&plugin_id=…` records a purchase, as a
//! completed `initiateCheckoutAsync()` would.

mod fault;
mod ledger;
mod limit;
mod oauth;
mod payments;
mod plugin;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use axum::{routing::get, Router};
use tokio::{net::TcpListener, sync::oneshot};

pub use self::{
    fault::Fault,
    ledger::{DemoUser, IssuedToken, Ledger, Purchase, StatusShape},
};
pub use crate::clock::MockClock;
use crate::clock::{later, Clock};
use crate::{
    AccessToken, PaymentStatus, PaymentsClient, PaymentsClientBuilder, PluginPaymentToken,
    Resource, ResourceId, ResourceType, UserId,
};

/// The access token the mock accepts unless told otherwise.
pub const MOCK_ACCESS_TOKEN: &str = "figd_mock-access-token";

/// The mock's creator: the owner of [`MOCK_ACCESS_TOKEN`].
pub const MOCK_CREATOR_ID: &str = "1000";

/// The demo's users, the same in every example and in `figma-paywall
/// --demo`: (ID, handle, who they are, their status on the demo's
/// resource). 2001 bought it, 2002 is in a trial, 2003 has not paid.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use figma_paywall::{mock::{MockFigma, DEMO_USERS}, Resource, UserId};
///
/// let mock = MockFigma::start().await?;
/// let plugin = Resource::plugin("1122334455")?;
/// for (id, handle, _who, status) in DEMO_USERS {
///     let user = UserId::new(id)?;
///     mock.add_user(&user, handle);
///     mock.set_status(&user, &plugin, status);
/// }
/// # Ok(())
/// # }
/// ```
pub const DEMO_USERS: [(&str, &str, &str, PaymentStatus); 3] = [
    ("2001", "Ada", "a buyer", PaymentStatus::Paid),
    ("2002", "Cleo", "a user in a trial", PaymentStatus::Trial),
    (
        "2003",
        "Bob",
        "a user who has not paid",
        PaymentStatus::Unpaid,
    ),
];

/// The OAuth client ID the mock's `/oauth` and `/v1/oauth/token` accept.
pub const MOCK_CLIENT_ID: &str = "mock-client-id";

/// The OAuth client secret the mock accepts.
pub const MOCK_CLIENT_SECRET: &str = "mock-client-secret";

/// How long the mock's authorization codes live, as Figma's do.
const CODE_LIFETIME: Duration = Duration::from_secs(30);

type LedgerKey = (ResourceType, ResourceId, UserId);

#[derive(Debug)]
struct TokenGrant {
    user: UserId,
    resource: Resource,
    expires_at: Instant,
}

#[derive(Debug, Default)]
struct MockState {
    access_token: String,
    users: Vec<DemoUser>,
    ledger: HashMap<LedgerKey, (PaymentStatus, Option<String>)>,
    tokens: HashMap<String, TokenGrant>,
    faults: VecDeque<Fault>,
    steady_fault: Option<Fault>,
    latency: Duration,
    shape: StatusShape,
    queries: Vec<Vec<(String, String)>>,
    arrivals: Vec<Instant>,
    /// Each 429 answered to `GET /v1/payments`: when, and for how long its
    /// `Retry-After` asked the caller to stop (a fault's or the bucket's).
    back_offs: Vec<(Instant, Duration)>,
    codes: HashMap<String, CodeGrant>,
    /// OAuth access tokens issued at sign-in, and whose they are.
    oauth_tokens: HashMap<String, UserId>,
    code_lifetime: Option<Duration>,
    token_requests: usize,
    /// The status of users the ledger does not name.
    default_status: Option<PaymentStatus>,
    /// Latency added to `GET /v1/me` only.
    me_latency: Duration,
    /// The rate limit the mock enforces, if any.
    bucket: Option<limit::Bucket>,
    /// 429s answered because of it.
    rate_limited: usize,
    /// Of them, those that came right after another 429.
    rate_limited_in_a_row: usize,
    /// Whether the last answer to `GET /v1/payments` was such a 429.
    last_was_rate_limited: bool,
    /// The mock's time: token and code lifetimes, the rate limit.
    clock: Clock,
}

#[derive(Debug)]
struct CodeGrant {
    user: UserId,
    redirect_uri: String,
    challenge: Option<String>,
    expires_at: Instant,
    used: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<MockState>,
    payment_requests: AtomicUsize,
    me_requests: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, MockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn issue_token(
        &self,
        user: &UserId,
        resource: &Resource,
        lifetime: Duration,
    ) -> PluginPaymentToken {
        let token = format!("ppt_{:032x}", rand::random::<u128>());
        let mut state = self.lock();
        let expires_at = later(state.clock.now(), lifetime);
        state.tokens.insert(
            token.clone(),
            TokenGrant {
                user: user.clone(),
                resource: resource.clone(),
                expires_at,
            },
        );
        PluginPaymentToken::new(token).expect("generated tokens are valid")
    }

    fn set_status(&self, user: &UserId, resource: &Resource, status: PaymentStatus) {
        let date = purchase_date(&status);
        self.lock().ledger.insert(
            (resource.kind().clone(), resource.id().clone(), user.clone()),
            (status, date),
        );
    }
}

/// A running mock Figma; stops when dropped.
#[derive(Debug)]
pub struct MockFigma {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

/// How long issued plugin payment tokens live, unless told otherwise.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

impl MockFigma {
    /// Starts an empty mock on `127.0.0.1` with a free port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(
            Ledger::default(),
            "127.0.0.1:0".parse().expect("valid address"),
        )
        .await
    }

    /// Starts a mock seeded from `ledger`, listening on `addr`.
    pub async fn start_with(ledger: Ledger, addr: SocketAddr) -> std::io::Result<Self> {
        let (mock, serve) = Self::bind(ledger, addr).await?;
        tokio::spawn(serve);
        Ok(mock)
    }

    /// Starts an empty mock on a thread of its own, with a Tokio runtime of
    /// its own, so that it answers promptly whatever the caller's runtime is
    /// doing: a test that loads its runtime, a benchmark that measures it, or
    /// logs captured from the code under test only. Blocks until the mock
    /// listens; the thread ends when the mock is dropped. Needs no runtime.
    ///
    /// ```
    /// let figma = figma_paywall::mock::MockFigma::start_on_own_thread()?;
    /// assert!(figma.url().starts_with("http://127.0.0.1:"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn start_on_own_thread() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("mock-figma".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => return drop(tx.send(Err(e))),
                };
                runtime.block_on(async move {
                    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
                    match Self::bind(Ledger::default(), loopback).await {
                        Ok((mock, serve)) => {
                            if tx.send(Ok(mock)).is_ok() {
                                serve.await;
                            }
                        }
                        Err(e) => drop(tx.send(Err(e))),
                    }
                });
            })?;
        rx.recv()
            .map_err(|_| std::io::Error::other("the mock's thread ended before it listened"))?
    }

    /// Binds `addr` and builds the mock; the future serves it until the
    /// mock is dropped.
    async fn bind(
        ledger: Ledger,
        addr: SocketAddr,
    ) -> std::io::Result<(Self, impl std::future::Future<Output = ()> + Send + 'static)> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let mut state = MockState {
            access_token: ledger
                .access_token
                .unwrap_or_else(|| MOCK_ACCESS_TOKEN.to_owned()),
            users: ledger.users,
            shape: ledger.status_shape,
            ..MockState::default()
        };
        for p in ledger.purchases {
            state.ledger.insert(
                (p.resource_type, p.resource_id, p.user_id),
                (p.status, p.date_of_purchase),
            );
        }
        for t in ledger.tokens {
            state.tokens.insert(
                t.token,
                TokenGrant {
                    user: t.user_id,
                    resource: Resource::new(t.resource_type, t.resource_id),
                    expires_at: far,
                },
            );
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            ..Shared::default()
        });
        let app = Router::new()
            .route("/v1/payments", get(payments::payments))
            .route("/v1/me", get(payments::me))
            .route("/oauth", get(oauth::authorize))
            .route("/oauth/grant", get(oauth::grant))
            .route("/v1/oauth/token", axum::routing::post(oauth::token))
            .route(
                "/plugin/payment-token",
                axum::routing::post(plugin::payment_token),
            )
            .route("/plugin/checkout", axum::routing::post(plugin::checkout))
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let serve = async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        };
        let mock = Self {
            shared,
            addr,
            _shutdown: tx,
        };
        Ok((mock, serve))
    }

    /// The mock's base URL, for `FIGMA_API_URL` or
    /// [`PaymentsClientBuilder::base_url`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access token the mock accepts.
    pub fn access_token(&self) -> AccessToken {
        AccessToken::new(&self.shared.lock().access_token).expect("the mock's token is valid")
    }

    /// A client builder pointed at this mock with its access token, and a
    /// rate budget large enough not to get in a test's way. It may be put in
    /// [development mode](PaymentsClientBuilder::development_mode).
    pub fn client_builder(&self) -> PaymentsClientBuilder {
        let mut builder = PaymentsClient::builder(self.access_token())
            .base_url(self.url())
            .rate_limit(60_000, 1_000);
        builder.mock_creator = Some(UserId::new(MOCK_CREATOR_ID).expect("a Figma ID"));
        builder
    }

    /// A client pointed at this mock (see [`client_builder`](Self::client_builder)).
    pub fn client(&self) -> Result<PaymentsClient, crate::ConfigError> {
        self.client_builder().build()
    }

    /// Records `user`'s status on `resource`, with a purchase date when paid.
    pub fn set_status(&self, user: &UserId, resource: &Resource, status: PaymentStatus) {
        self.shared.set_status(user, resource, status);
    }

    /// Issues a plugin payment token naming `user` of `resource`, valid for
    /// 15 minutes.
    pub fn issue_token(&self, user: &UserId, resource: &Resource) -> PluginPaymentToken {
        self.issue_token_for(user, resource, TOKEN_LIFETIME)
    }

    /// Issues a plugin payment token valid for `lifetime` (zero: already
    /// expired).
    pub fn issue_token_for(
        &self,
        user: &UserId,
        resource: &Resource,
        lifetime: Duration,
    ) -> PluginPaymentToken {
        self.shared.issue_token(user, resource, lifetime)
    }

    /// Makes the mock accept `token` as a plugin payment token naming `user`
    /// of `resource`, as if Figma had issued it.
    pub fn accept_token(&self, token: &PluginPaymentToken, user: &UserId, resource: &Resource) {
        let mut state = self.shared.lock();
        let expires_at = later(state.clock.now(), TOKEN_LIFETIME);
        state.tokens.insert(
            token.expose_secret().to_owned(),
            TokenGrant {
                user: user.clone(),
                resource: resource.clone(),
                expires_at,
            },
        );
    }

    /// Adds a demo user (for `/v1/me` and the OAuth page).
    pub fn add_user(&self, id: &UserId, handle: &str) {
        self.shared.lock().users.push(DemoUser {
            id: id.clone(),
            handle: handle.to_owned(),
        });
    }

    /// Queues a fault for the next request (faults queue up, one a request).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Injects `fault` into every request until cleared with `None`: an
    /// outage.
    pub fn set_steady_fault(&self, fault: Option<Fault>) {
        self.shared.lock().steady_fault = fault;
    }

    /// Adds latency to `GET /v1/me` only.
    pub fn set_me_latency(&self, latency: Duration) {
        self.shared.lock().me_latency = latency;
    }

    /// Adds latency to every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// The status of every user the ledger does not name (default
    /// `UNPAID`): `PAID` makes everybody a buyer, for load tests.
    pub fn set_default_status(&self, status: PaymentStatus) {
        self.shared.lock().default_status = Some(status);
    }

    /// Enforces a rate limit on `GET /v1/payments` as Figma does on the
    /// creator's token: `per_minute` lookups a minute in bursts of `burst`,
    /// and past that 429 with `Retry-After` (seconds until a lookup may go)
    /// and the headers `X-Figma-Plan-Tier: {plan_tier}` and
    /// `X-Figma-Rate-Limit-Type: {rate_limit_type}`. `None` lifts it.
    ///
    /// ```
    /// # let figma = figma_paywall::mock::MockFigma::start_on_own_thread()?;
    /// // A View seat on a Starter plan: about 10 lookups a minute.
    /// figma.set_rate_limit(Some((10, 1, "starter", "low")));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_rate_limit(&self, limit: Option<(u32, u32, &str, &str)>) {
        self.shared.lock().bucket = limit.map(|(per_minute, burst, plan_tier, rate_limit_type)| {
            limit::Bucket::new(per_minute, burst, plan_tier, rate_limit_type)
        });
    }

    /// How many 429s the rate limit of [`set_rate_limit`](Self::set_rate_limit)
    /// answered (not counting [`Fault::RateLimited`]).
    pub fn rate_limited_answers(&self) -> usize {
        self.shared.lock().rate_limited
    }

    /// How many of those 429s came right after another one: a client that
    /// keeps to Figma's `Retry-After` and budget earns none.
    pub fn rate_limited_answers_in_a_row(&self) -> usize {
        self.shared.lock().rate_limited_in_a_row
    }

    /// Reads the mock's time (token and code lifetimes, the rate limit, the
    /// arrival times) from `clock`, the one the test gives the client.
    pub fn set_clock(&self, clock: &MockClock) {
        self.shared.lock().clock = clock.clock();
    }

    /// Chooses how `payment_status` is written.
    pub fn set_status_shape(&self, shape: StatusShape) {
        self.shared.lock().shape = shape;
    }

    /// How many requests reached `GET /v1/payments`.
    pub fn payment_requests(&self) -> usize {
        self.shared.payment_requests.load(Ordering::SeqCst)
    }

    /// How many requests reached `GET /v1/me`.
    pub fn me_requests(&self) -> usize {
        self.shared.me_requests.load(Ordering::SeqCst)
    }

    /// How long authorization codes live (default 30 s, as Figma's; zero:
    /// expired at once).
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        self.shared.lock().code_lifetime = Some(lifetime);
    }

    /// How many requests reached `POST /v1/oauth/token`.
    pub fn token_exchanges(&self) -> usize {
        self.shared.lock().token_requests
    }

    /// When each `GET /v1/payments` arrived, in order.
    pub fn payment_request_times(&self) -> Vec<Instant> {
        self.shared.lock().arrivals.clone()
    }

    /// Every 429 answered to `GET /v1/payments` (by [`Fault::RateLimited`]
    /// or the rate limit of [`set_rate_limit`](Self::set_rate_limit)), in
    /// order: when, by the mock's clock, and how long its `Retry-After`
    /// asked the caller to stop. A client that keeps to it sends nothing
    /// before that has passed.
    pub fn back_offs_asked(&self) -> Vec<(Instant, Duration)> {
        self.shared.lock().back_offs.clone()
    }

    /// The decoded query parameters of every `GET /v1/payments` received,
    /// in order.
    pub fn received_queries(&self) -> Vec<Vec<(String, String)>> {
        self.shared.lock().queries.clone()
    }
}

/// The purchase date the mock gives a `PAID` or `TRIAL` status.
fn purchase_date(status: &PaymentStatus) -> Option<String> {
    status.grants().then(|| "2026-01-15T10:30:00Z".to_owned())
}
