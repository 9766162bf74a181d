//! An embedded mock of Figma's payments API, for tests and offline work.
//!
//! [`MockFigma`] is an axum server on loopback that answers `GET /v1/payments`
//! and `GET /v1/me` as Figma does: it checks `X-Figma-Token`, enforces the
//! exactly-one-resource rule with 400s in Figma's error envelope, and answers
//! from an in-memory ledger of purchases and plugin payment tokens. It can
//! inject faults (a status, a 429 with `Retry-After`, latency, a malformed
//! body, a dropped connection) and counts the requests it got, so tests can
//! assert how many calls reached "Figma".
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

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::{net::TcpListener, sync::oneshot};

use crate::{
    AccessToken, PaymentStatus, PaymentsClient, PaymentsClientBuilder, PluginPaymentToken,
    Resource, ResourceId, ResourceType, UserId,
};

/// The access token the mock accepts unless told otherwise.
pub const MOCK_ACCESS_TOKEN: &str = "figd_mock-access-token";

/// The mock's creator: the owner of [`MOCK_ACCESS_TOKEN`].
pub const MOCK_CREATOR_ID: &str = "1000";

/// The OAuth client ID the mock's `/oauth` and `/v1/oauth/token` accept.
pub const MOCK_CLIENT_ID: &str = "mock-client-id";

/// The OAuth client secret the mock accepts.
pub const MOCK_CLIENT_SECRET: &str = "mock-client-secret";

/// How long the mock's authorization codes live, as Figma's do.
const CODE_LIFETIME: Duration = Duration::from_secs(30);

/// A fault the mock injects instead of answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer with this status and Figma's error envelope.
    Status(u16),
    /// Answer 429 with `Retry-After` (seconds) and Figma's tier headers.
    RateLimited {
        /// The `Retry-After` value in seconds.
        retry_after: u64,
    },
    /// Answer 200 with a body that is not JSON.
    MalformedJson,
    /// Answer 200 with an HTML page, as a proxy in front of Figma might.
    Html,
    /// Send the headers, then drop the connection.
    DropConnection,
    /// Wait this long before answering normally (longer than the client's
    /// timeout: no answer at all).
    Delay(Duration),
    /// Answer 200 with this exact JSON body (an answer about someone else,
    /// a new shape, …).
    Answer(Value),
}

/// Which shape `payment_status` takes in the mock's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusShape {
    /// `{"type": "PAID"}`, as Figma's official spec says (the default).
    #[default]
    TypeObject,
    /// `{"status": "PAID"}`, as Figma's docs page shows.
    StatusObject,
    /// `"PAID"`, as the older OpenAPI file says.
    BareString,
}

/// A purchase in the mock's ledger, as the standalone mock's JSON file writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Purchase {
    /// The buyer.
    pub user_id: UserId,
    /// `PLUGIN`, `WIDGET` or `COMMUNITY_FILE`.
    pub resource_type: ResourceType,
    /// The resource bought.
    pub resource_id: ResourceId,
    /// `PAID`, `TRIAL`, `UNPAID`, …
    #[serde(with = "status_name")]
    pub status: PaymentStatus,
    /// When it was bought.
    #[serde(default)]
    pub date_of_purchase: Option<String>,
}

/// A plugin payment token the mock will accept, as its JSON file writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The token.
    pub token: String,
    /// The user it names.
    pub user_id: UserId,
    /// `PLUGIN` or `WIDGET`.
    pub resource_type: ResourceType,
    /// The plugin or widget it was made for.
    pub resource_id: ResourceId,
}

/// A demo user: shown on the mock's OAuth page, answered by `/v1/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoUser {
    /// The user's ID.
    pub id: UserId,
    /// The user's handle.
    pub handle: String,
}

/// The whole ledger the standalone mock is seeded from (`examples/mock_figma.rs`).
///
/// ```
/// let ledger: figma_paywall::mock::Ledger = serde_json::from_str(r#"{
///   "purchases": [{"user_id": "2001", "resource_type": "PLUGIN",
///                  "resource_id": "1122334455", "status": "PAID"}],
///   "tokens": [{"token": "ppt_demo", "user_id": "2001",
///               "resource_type": "PLUGIN", "resource_id": "1122334455"}]
/// }"#)?;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// The access token to accept; default [`MOCK_ACCESS_TOKEN`].
    #[serde(default)]
    pub access_token: Option<String>,
    /// The users known to the mock.
    #[serde(default)]
    pub users: Vec<DemoUser>,
    /// Purchases.
    #[serde(default)]
    pub purchases: Vec<Purchase>,
    /// Plugin payment tokens.
    #[serde(default)]
    pub tokens: Vec<IssuedToken>,
    /// How `payment_status` is written.
    #[serde(default)]
    pub status_shape: StatusShape,
}

mod status_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::PaymentStatus;

    pub(super) fn serialize<S: Serializer>(s: &PaymentStatus, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(s.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PaymentStatus, D::Error> {
        PaymentStatus::deserialize(d)
    }
}

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
    codes: HashMap<String, CodeGrant>,
    code_lifetime: Option<Duration>,
    token_requests: usize,
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
            .route("/v1/payments", get(payments))
            .route("/v1/me", get(me))
            .route("/oauth", get(oauth::authorize))
            .route("/oauth/grant", get(oauth::grant))
            .route("/v1/oauth/token", axum::routing::post(oauth::token))
            .with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            shared,
            addr,
            _shutdown: tx,
        })
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
    /// rate budget large enough not to get in a test's way.
    pub fn client_builder(&self) -> PaymentsClientBuilder {
        PaymentsClient::builder(self.access_token())
            .base_url(self.url())
            .rate_limit(60_000, 1_000)
    }

    /// A client pointed at this mock (see [`client_builder`](Self::client_builder)).
    pub fn client(&self) -> Result<PaymentsClient, crate::ConfigError> {
        self.client_builder().build()
    }

    /// Records `user`'s status on `resource`, with a purchase date when paid.
    pub fn set_status(&self, user: &UserId, resource: &Resource, status: PaymentStatus) {
        let date = matches!(status, PaymentStatus::Paid | PaymentStatus::Trial)
            .then(|| "2026-01-15T10:30:00Z".to_owned());
        self.shared.lock().ledger.insert(
            (resource.kind(), resource.id().clone(), user.clone()),
            (status, date),
        );
    }

    /// Issues a plugin payment token naming `user` of `resource`, valid for
    /// 15 minutes.
    pub fn issue_token(&self, user: &UserId, resource: &Resource) -> PluginPaymentToken {
        self.issue_token_for(user, resource, TOKEN_LIFETIME)
    }

    /// Issues a plugin payment token valid for `lifetime`.
    pub fn issue_token_for(
        &self,
        user: &UserId,
        resource: &Resource,
        lifetime: Duration,
    ) -> PluginPaymentToken {
        let token = format!("ppt_{:032x}", rand::random::<u128>());
        self.shared.lock().tokens.insert(
            token.clone(),
            TokenGrant {
                user: user.clone(),
                resource: resource.clone(),
                expires_at: Instant::now() + lifetime,
            },
        );
        PluginPaymentToken::new(token).expect("generated tokens are valid")
    }

    /// Makes the mock accept `token` as a plugin payment token naming `user`
    /// of `resource`, as if Figma had issued it.
    pub fn accept_token(&self, token: &PluginPaymentToken, user: &UserId, resource: &Resource) {
        self.shared.lock().tokens.insert(
            token.expose_secret().to_owned(),
            TokenGrant {
                user: user.clone(),
                resource: resource.clone(),
                expires_at: Instant::now() + TOKEN_LIFETIME,
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

    /// Adds latency to every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
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

    /// How long authorization codes live (default 30 s, as Figma's).
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

    /// The decoded query parameters of every `GET /v1/payments` received,
    /// in order.
    pub fn received_queries(&self) -> Vec<Vec<(String, String)>> {
        self.shared.lock().queries.clone()
    }
}

fn envelope(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": true, "status": status.as_u16(), "message": message})),
    )
        .into_response()
}

/// Takes the fault for this request, if any, and the latency to add.
fn take_fault(shared: &Shared) -> (Option<Fault>, Duration) {
    let mut state = shared.lock();
    let fault = state
        .faults
        .pop_front()
        .or_else(|| state.steady_fault.clone());
    (fault, state.latency)
}

/// Answers with `fault`, or returns `None` for faults that only delay.
async fn apply_fault(fault: Option<Fault>, latency: Duration) -> Option<Response> {
    tokio::time::sleep(latency).await;
    match fault? {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(envelope(
                status,
                status.canonical_reason().unwrap_or("error"),
            ))
        }
        Fault::RateLimited { retry_after } => {
            let mut response = envelope(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded. Please wait before retrying.",
            );
            let headers = response.headers_mut();
            headers.insert("retry-after", retry_after.into());
            headers.insert("x-figma-plan-tier", "starter".parse().ok()?);
            headers.insert("x-figma-rate-limit-type", "low".parse().ok()?);
            headers.insert(
                "x-figma-upgrade-link",
                "https://www.figma.com/pricing".parse().ok()?,
            );
            Some(response)
        }
        Fault::MalformedJson => {
            Some((StatusCode::OK, "{\"status\": 200, \"meta\": {").into_response())
        }
        Fault::Html => Some(
            (
                StatusCode::OK,
                [("content-type", "text/html")],
                "<html><body>Bad gateway</body></html>",
            )
                .into_response(),
        ),
        Fault::DropConnection => {
            let failing = futures_util::stream::once(async {
                Err::<bytes::Bytes, _>(std::io::Error::other("connection dropped by the mock"))
            });
            Some((StatusCode::OK, Body::from_stream(failing)).into_response())
        }
        Fault::Answer(body) => Some(Json(body).into_response()),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}

fn authorized(state: &MockState, headers: &HeaderMap) -> bool {
    let tokens: Vec<_> = headers.get_all("x-figma-token").iter().collect();
    tokens.len() == 1 && tokens[0].as_bytes() == state.access_token.as_bytes()
}

async fn payments(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    shared.payment_requests.fetch_add(1, Ordering::SeqCst);
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    {
        let mut state = shared.lock();
        state.queries.push(pairs.clone());
        state.arrivals.push(Instant::now());
    }
    let (fault, latency) = take_fault(&shared);
    if let Some(response) = apply_fault(fault, latency).await {
        return response;
    }
    let state = shared.lock();
    if !authorized(&state, &headers) {
        return envelope(StatusCode::UNAUTHORIZED, "Token is missing or incorrect");
    }
    match answer(&state, &pairs) {
        Ok(meta) => Json(json!({"status": 200, "error": false, "meta": meta})).into_response(),
        Err((status, message)) => envelope(status, &message),
    }
}

type Refusal = (StatusCode, String);

fn bad(message: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, message.into())
}

fn answer(state: &MockState, pairs: &[(String, String)]) -> Result<Value, Refusal> {
    let mut params: HashMap<&str, &str> = HashMap::new();
    for (name, value) in pairs {
        if params.insert(name, value).is_some() {
            return Err(bad(format!("Parameter {name} given more than once")));
        }
    }
    const KNOWN: [&str; 5] = [
        "plugin_payment_token",
        "user_id",
        "plugin_id",
        "widget_id",
        "community_file_id",
    ];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(k)) {
        return Err(bad(format!("Unknown parameter {unknown}")));
    }
    let (user, resource) = if let Some(token) = params.get("plugin_payment_token") {
        if params.len() != 1 {
            return Err(bad("plugin_payment_token must be the only parameter"));
        }
        let grant = state.tokens.get(*token).ok_or((
            StatusCode::UNAUTHORIZED,
            "Token is missing or incorrect".to_owned(),
        ))?;
        if grant.expires_at < Instant::now() {
            return Err(bad("plugin_payment_token has expired"));
        }
        (grant.user.clone(), grant.resource.clone())
    } else {
        let user = params
            .get("user_id")
            .ok_or_else(|| bad("Provide plugin_payment_token, or user_id and a resource ID"))?;
        let user = UserId::new(user).map_err(|e| bad(e.to_string()))?;
        let given: Vec<_> = [
            ("plugin_id", ResourceType::Plugin),
            ("widget_id", ResourceType::Widget),
            ("community_file_id", ResourceType::CommunityFile),
        ]
        .into_iter()
        .filter_map(|(name, kind)| params.get(name).map(|id| (kind, *id)))
        .collect();
        let [(kind, id)] = &given[..] else {
            return Err(bad(
                "Provide exactly one of community_file_id, plugin_id, or widget_id",
            ));
        };
        let id = ResourceId::new(id).map_err(|e| bad(e.to_string()))?;
        (user, Resource::new(kind.clone(), id))
    };
    let (status, date) = state
        .ledger
        .get(&(resource.kind(), resource.id().clone(), user.clone()))
        .cloned()
        .unwrap_or((PaymentStatus::Unpaid, None));
    let status_json = match state.shape {
        StatusShape::TypeObject => json!({"type": status.as_str()}),
        StatusShape::StatusObject => json!({"status": status.as_str()}),
        StatusShape::BareString => json!(status.as_str()),
    };
    let mut meta = json!({
        "user_id": user,
        "resource_id": resource.id(),
        "resource_type": resource.kind(),
        "payment_status": status_json,
    });
    if let Some(date) = date {
        meta["date_of_purchase"] = json!(date);
    }
    Ok(meta)
}

async fn me(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.me_requests.fetch_add(1, Ordering::SeqCst);
    let (fault, latency) = take_fault(&shared);
    if let Some(response) = apply_fault(fault, latency).await {
        return response;
    }
    let state = shared.lock();
    if !authorized(&state, &headers) {
        return envelope(StatusCode::FORBIDDEN, "Invalid token");
    }
    Json(json!({
        "id": MOCK_CREATOR_ID,
        "handle": "Mock Creator",
        "img_url": "https://www.figma.com/api/mock/avatar.png",
        "email": "creator@example.com",
    }))
    .into_response()
}

/// The OAuth side of the mock: an authorize page where you pick a demo user,
/// and the token exchange with PKCE.
mod oauth {
    use std::{sync::Arc, time::Instant};

    use axum::{
        extract::{Query, State},
        http::{HeaderMap, StatusCode},
        response::{Html, IntoResponse, Redirect, Response},
        Form, Json,
    };
    use base64::{engine::general_purpose, Engine};
    use serde::Deserialize;
    use serde_json::json;
    use sha2::{Digest, Sha256};

    use super::{envelope, CodeGrant, Shared, CODE_LIFETIME, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET};
    use crate::UserId;

    #[derive(Deserialize)]
    pub(super) struct Authorize {
        client_id: String,
        redirect_uri: String,
        scope: Option<String>,
        state: Option<String>,
        response_type: Option<String>,
        code_challenge: Option<String>,
        code_challenge_method: Option<String>,
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    pub(super) async fn authorize(
        State(shared): State<Arc<Shared>>,
        Query(q): Query<Authorize>,
    ) -> Response {
        if q.client_id != MOCK_CLIENT_ID {
            return (
                StatusCode::BAD_REQUEST,
                Html("Unknown client_id".to_owned()),
            )
                .into_response();
        }
        if q.response_type.as_deref() != Some("code")
            || !q
                .scope
                .as_deref()
                .unwrap_or_default()
                .split([' ', ','])
                .any(|s| s == "current_user:read")
            || q.code_challenge.is_some() && q.code_challenge_method.as_deref() != Some("S256")
        {
            return (
                StatusCode::BAD_REQUEST,
                Html("Invalid authorization request".to_owned()),
            )
                .into_response();
        }
        let users = shared.lock().users.clone();
        let mut items = String::new();
        for user in &users {
            let mut grant = form_urlencoded::Serializer::new(String::new());
            grant
                .append_pair("user_id", user.id.as_str())
                .append_pair("redirect_uri", &q.redirect_uri)
                .append_pair("state", q.state.as_deref().unwrap_or_default());
            if let Some(challenge) = &q.code_challenge {
                grant.append_pair("code_challenge", challenge);
            }
            items.push_str(&format!(
                "<li><a id=\"user-{id}\" href=\"/oauth/grant?{query}\">{handle}</a></li>",
                id = user.id,
                query = escape(&grant.finish()),
                handle = escape(&user.handle),
            ));
        }
        Html(format!(
            "<!doctype html><title>Figma (mock): sign in</title><h1>Sign in with Figma (mock)</h1><p>An app asks to know who you are. Pick a demo user:</p><ul>{items}</ul>"
        ))
        .into_response()
    }

    #[derive(Deserialize)]
    pub(super) struct Grant {
        user_id: String,
        redirect_uri: String,
        state: String,
        code_challenge: Option<String>,
    }

    pub(super) async fn grant(
        State(shared): State<Arc<Shared>>,
        Query(g): Query<Grant>,
    ) -> Response {
        let Ok(user) = UserId::new(&g.user_id) else {
            return (StatusCode::BAD_REQUEST, "bad user_id").into_response();
        };
        let Ok(mut target) = url::Url::parse(&g.redirect_uri) else {
            return (StatusCode::BAD_REQUEST, "bad redirect_uri").into_response();
        };
        let code = format!("code_{:032x}", rand::random::<u128>());
        {
            let mut state = shared.lock();
            let lifetime = state.code_lifetime.unwrap_or(CODE_LIFETIME);
            state.codes.insert(
                code.clone(),
                CodeGrant {
                    user,
                    redirect_uri: g.redirect_uri.clone(),
                    challenge: g.code_challenge,
                    expires_at: Instant::now() + lifetime,
                    used: false,
                },
            );
        }
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &g.state);
        Redirect::to(target.as_str()).into_response()
    }

    #[derive(Deserialize)]
    pub(super) struct TokenForm {
        redirect_uri: String,
        code: String,
        grant_type: String,
        code_verifier: Option<String>,
    }

    fn client_authenticated(headers: &HeaderMap) -> bool {
        let expected =
            general_purpose::STANDARD.encode(format!("{MOCK_CLIENT_ID}:{MOCK_CLIENT_SECRET}"));
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .is_some_and(|v| v == expected)
    }

    pub(super) async fn token(
        State(shared): State<Arc<Shared>>,
        headers: HeaderMap,
        Form(f): Form<TokenForm>,
    ) -> Response {
        let mut state = shared.lock();
        state.token_requests += 1;
        if !client_authenticated(&headers) {
            return envelope(StatusCode::UNAUTHORIZED, "Invalid client credentials");
        }
        if f.grant_type != "authorization_code" {
            return envelope(StatusCode::BAD_REQUEST, "Unsupported grant_type");
        }
        let Some(grant) = state.codes.get_mut(&f.code) else {
            return envelope(StatusCode::BAD_REQUEST, "Invalid code");
        };
        if grant.used {
            return envelope(StatusCode::BAD_REQUEST, "Code already used");
        }
        grant.used = true;
        if grant.expires_at < Instant::now() {
            return envelope(StatusCode::BAD_REQUEST, "Code expired");
        }
        if grant.redirect_uri != f.redirect_uri {
            return envelope(StatusCode::BAD_REQUEST, "redirect_uri does not match");
        }
        if let Some(challenge) = &grant.challenge {
            let verifier = f.code_verifier.unwrap_or_default();
            let computed =
                general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if &computed != challenge {
                return envelope(StatusCode::BAD_REQUEST, "code_verifier does not match");
            }
        }
        let user = grant.user.clone();
        Json(json!({
            "user_id_string": user,
            "user_id": user.as_str().parse::<u64>().ok(),
            "access_token": format!("figu_{:032x}", rand::random::<u128>()),
            "token_type": "bearer",
            "expires_in": 7_776_000,
            "refresh_token": format!("figur_{:032x}", rand::random::<u128>()),
        }))
        .into_response()
    }
}
