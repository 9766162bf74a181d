//! [`PaymentsClient`]: the typed client for Figma's `GET /v1/payments`.
//!
//! # Example
//!
//! ```no_run
//! use figma_paywall::{PaymentsClient, PluginPaymentToken, Resource, UserId};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // FIGMA_TOKEN (and optionally FIGMA_API_URL) from the environment.
//! let client = PaymentsClient::from_env()?;
//! client.verify_credentials().await?; // fail fast on an expired token
//!
//! // From a plugin: the token of `figma.payments.getPluginPaymentTokenAsync()`.
//! let token = PluginPaymentToken::new("ppt_abc123xyz789")?;
//! let info = client.payment_by_token(&token).await?;
//! println!("{} is {}", info.user_id, info.payment_status);
//!
//! // From anywhere else: a user ID (from "Sign in with Figma") and a resource.
//! let info = client
//!     .payment_by_user(&UserId::new("1234567890")?, &Resource::plugin("1122334455")?)
//!     .await?;
//! # Ok(()) }
//! ```

mod answer;
mod breaker;
mod builder;
mod health;
mod question;

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use url::Url;

#[cfg(feature = "login")]
pub(crate) use self::builder::api_endpoint;
pub use self::builder::PaymentsClientBuilder;
use self::{
    answer::{
        error_message, header_string, parse_payments_answer, parse_retry_after, ClassifyName,
    },
    breaker::{Breaker, Pass},
    health::HealthCheck,
};
pub(crate) use self::{breaker::Claim, health::Health, question::Question};
use crate::{
    admission::{Admission, Ask, Patience, SharedBudget},
    clock::Clock,
    error::{ConfigError, Error, RateLimit, ThrottleReason},
    AccessToken, PaymentInformation, PluginPaymentToken, Resource, UserId,
};

/// Figma's production API.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.figma.com";

/// The header Figma reads the personal access token from, `X-Figma-Token`.
pub(crate) const ACCESS_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-figma-token");

/// Answers larger than this are refused as malformed: Figma's are a few
/// hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The typed async client for `GET /v1/payments` and `GET /v1/me`.
///
/// Cheap to clone: clones share one connection pool, one rate budget and one
/// 429 back-off, so every layer built from one client stays within the access
/// token's single budget at Figma.
///
/// Defaults: connect timeout 3 s, request timeout 5 s, pooled connections
/// closed after 30 s idle, at most 9 payment lookups a minute (Figma's
/// smallest budget for this endpoint is about 10; raise it with
/// [`rate_limit`](PaymentsClientBuilder::rate_limit) if your seat has more),
/// at most 256 lookups waiting up to 2 s for a slot.
#[derive(Clone, Debug)]
pub struct PaymentsClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    token: AccessToken,
    payments_url: Url,
    me_url: Url,
    timeout: Duration,
    /// Every decision to spend a slot of the budget (`src/admission/`).
    admission: Admission,
    breaker: Breaker,
    health: HealthCheck,
    calls: AtomicU64,
    latency_micros: AtomicU64,
    clock: Clock,
    /// In development mode, the user its answers name (the mock's creator).
    development: Option<UserId>,
}

/// Figma is failing: no call until `retry_after` (the breaker's probe).
fn figma_failing(retry_after: Duration) -> Error {
    Error::Throttled {
        retry_after,
        reason: ThrottleReason::FigmaFailing,
    }
}

impl PaymentsClient {
    /// Figma's production API, where a client asks unless told otherwise.
    pub const DEFAULT_BASE_URL: &str = DEFAULT_BASE_URL;

    /// In [development mode](PaymentsClientBuilder::development_mode), the
    /// user a plugin in development is taken for (the mock's creator).
    pub(crate) fn development_user(&self) -> Option<&UserId> {
        self.inner.development.as_ref()
    }

    /// The header Figma reads the personal access token from, `X-Figma-Token`.
    pub const ACCESS_TOKEN_HEADER: HeaderName = ACCESS_TOKEN_HEADER;

    /// Starts a builder with the given personal access token.
    pub fn builder(token: AccessToken) -> PaymentsClientBuilder {
        PaymentsClientBuilder::new(token)
    }

    /// A client with every default, talking to Figma's production API.
    pub fn new(token: AccessToken) -> Result<Self, ConfigError> {
        Self::builder(token).build()
    }

    /// A client configured from the environment: the access token from
    /// `FIGMA_TOKEN` (required), the base URL from `FIGMA_API_URL` (default
    /// `https://api.figma.com`), and the budget from `FIGMA_RATE_LIMIT`
    /// (lookups a minute for the token, default 9) and `FIGMA_RATE_BURST`
    /// (default a tenth of it, at least 1; 3 when neither is set).
    ///
    /// A variable that is set but not a positive whole number is an error
    /// that names it, never a silent default.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder_from_env()?.build()
    }

    /// Like [`from_env`](Self::from_env), but returns the builder so more can
    /// be set.
    pub fn builder_from_env() -> Result<PaymentsClientBuilder, ConfigError> {
        let token = std::env::var("FIGMA_TOKEN").map_err(|_| ConfigError::MissingToken)?;
        let mut builder = Self::builder(AccessToken::new(token.trim())?);
        if let Ok(url) = std::env::var("FIGMA_API_URL") {
            builder = builder.base_url(url);
        }
        builder.rate_limit_from_env()
    }

    /// Asks Figma for the payment information behind a plugin payment token.
    ///
    /// The answer names the user and the resource the token was made for:
    /// check them before granting anything (the
    /// [`RequirePaid`](crate::RequirePaid) layer does).
    pub async fn payment_by_token(
        &self,
        token: &PluginPaymentToken,
    ) -> Result<PaymentInformation, Error> {
        self.ask_within_budget(&Question::Token(token.clone()))
            .await
    }

    /// Asks Figma for a user's payment information on one plugin, widget or
    /// Community file that the access token's owner created.
    pub async fn payment_by_user(
        &self,
        user: &UserId,
        resource: &Resource,
    ) -> Result<PaymentInformation, Error> {
        self.ask_within_budget(&Question::User(user.clone(), resource.clone()))
            .await
    }

    /// Asks within the budget, waiting for a slot as a caller would.
    async fn ask_within_budget(&self, question: &Question) -> Result<PaymentInformation, Error> {
        let claim = self.admit_call(Ask::DIRECT, None).await?;
        self.ask(question, claim).await
    }

    /// Leave to call Figma for `ask`: the circuit breaker's first, then a
    /// slot of the budget (of the budget `shared` by replicas, if there is
    /// one). While Figma is failing only the breaker's probe takes a slot,
    /// and every other lookup fails at once; the probe takes a slot now or
    /// gives the probe back, never holding the others off while it waits.
    pub(crate) async fn admit_call(
        &self,
        ask: Ask,
        shared: Option<&dyn SharedBudget>,
    ) -> Result<Claim<'_>, Error> {
        let inner = &self.inner;
        let claim = inner
            .breaker
            .claim(inner.clock.now(), inner.timeout)
            .map_err(figma_failing)?;
        let mut ask = ask;
        if claim.pass() == Pass::Probe {
            ask.patience = Patience::None;
        }
        inner.admission.admit(ask, shared).await?;
        Ok(claim)
    }

    /// Asks `GET /v1/payments` with the leave [`admit_call`](Self::admit_call)
    /// gave.
    pub(crate) async fn ask(
        &self,
        question: &Question,
        claim: Claim<'_>,
    ) -> Result<PaymentInformation, Error> {
        let url = question.url(&self.inner.payments_url)?;
        let inner = &self.inner;
        // The breaker may have opened while this lookup waited for a slot.
        if claim.pass() == Pass::Call {
            if let Some(retry_after) = self.figma_failing_for() {
                return Err(figma_failing(retry_after));
            }
        }
        let result = match self.send(url, question.secret()).await {
            Ok((_, body)) => parse_payments_answer(&body),
            Err(e) => Err(e),
        };
        if let Some(failed) = breaker::failed(&result) {
            if claim.record(failed, inner.clock.now()) {
                // Many lookups failed: is it Figma, or what they asked?
                let health = self.health(breaker::CONFIRMED_FOR).await;
                inner
                    .breaker
                    .confirm(health == Health::Fails, inner.clock.now());
            }
        }
        result
    }

    /// Another replica found Figma failing for `left` more: this client's
    /// breaker opens too (for one cool-down, 5 s, at most; then it probes).
    pub(crate) fn hear_figma_failing(&self, left: Duration) {
        let now = self.inner.clock.now();
        self.inner
            .breaker
            .open_until(crate::clock::later(now, left), now);
    }

    /// How long until the circuit breaker lets a probe through to Figma
    /// (zero when one may go now), or `None` while Figma answers.
    pub(crate) fn figma_failing_for(&self) -> Option<Duration> {
        self.inner.breaker.open_for(self.inner.clock.now())
    }

    /// Checks the access token with `GET /v1/me`, so an app can fail at
    /// start-up on a wrong or expired token instead of refusing every caller.
    ///
    /// Returns the token's owner. Does not use the payments rate budget.
    pub async fn verify_credentials(&self) -> Result<FigmaUser, Error> {
        let url = self.inner.me_url.clone();
        let (_, body) = self.send(url, None).await?;
        serde_json::from_slice::<FigmaUser>(&body).map_err(|e| Error::MalformedResponse {
            reason: format!("GET /v1/me: {}", e.classify_name()),
        })
    }

    /// How many requests this client has sent to Figma, and their summed
    /// latency.
    pub fn upstream_calls(&self) -> (u64, Duration) {
        (
            self.inner.calls.load(Ordering::Relaxed),
            Duration::from_micros(self.inner.latency_micros.load(Ordering::Relaxed)),
        )
    }

    /// How long Figma asked this client to stop calling, if it did (a 429
    /// whose `Retry-After` has not passed).
    pub fn backing_off_for(&self) -> Option<Duration> {
        self.inner.admission.backing_off_for()
    }

    /// The time this client reads (real, unless a test gave it a mock clock).
    pub(crate) fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Every decision to spend a slot of the budget, which every clone of
    /// this client and every paywall built on it share.
    pub(crate) fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// The creator's access token.
    pub(crate) fn access_token(&self) -> &AccessToken {
        &self.inner.token
    }

    /// The payment-lookup budget in force: lookups a minute, and bursts.
    /// It is the configured one ([`rate_limit`](PaymentsClientBuilder::rate_limit),
    /// `FIGMA_RATE_LIMIT`), or lower for 30 minutes after Figma answered
    /// 429: 90 % of the Tier 3 limit the 429 names for the token's plan and
    /// seat.
    pub fn rate_limit(&self) -> (u32, u32) {
        let rate = self.inner.admission.rate();
        (rate.per_minute, rate.burst)
    }

    /// Whether our own budget running out should be logged now (at most
    /// once a minute), and the budget in force and configured.
    pub(crate) fn budget_exhausted(&self) -> Option<(u32, u32)> {
        let a = &self.inner.admission;
        a.warn_exhausted()
            .then(|| (a.rate().per_minute, a.configured().per_minute))
    }

    /// The client's upstream timeout (the longest a lookup waits for Figma).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    async fn send(&self, url: Url, secret: Option<&str>) -> Result<(HeaderMap, Vec<u8>), Error> {
        let started = Instant::now();
        #[cfg(feature = "metrics")]
        let endpoint = if url.path().ends_with("/me") {
            "me"
        } else {
            "payments"
        };
        let result = self.send_inner(url, secret).await;
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.latency_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        #[cfg(feature = "metrics")]
        {
            ::metrics::histogram!("figma_paywall_upstream_latency_seconds", "endpoint" => endpoint)
                .record(started.elapsed().as_secs_f64());
            if matches!(result, Err(Error::RateLimited(_))) {
                ::metrics::counter!("figma_paywall_rate_limited_total").increment(1);
            }
        }
        if let Err(Error::RateLimited(limit)) = &result {
            let admission = &self.inner.admission;
            let (rate, published) = admission.after_429(limit);
            tracing::warn!(
                plan_tier = limit.plan_tier.as_deref().unwrap_or("unknown"),
                rate_limit_type = limit.rate_limit_type.as_deref().unwrap_or("unknown"),
                tier3_limit_per_minute = published,
                retry_after_secs = limit.retry_after.map(|d| d.as_secs()),
                configured_per_minute = admission.configured().per_minute,
                now_per_minute = rate.per_minute,
                "Figma answered 429: budget lowered to {} a minute for 30 min; set FIGMA_RATE_LIMIT to your seat's Tier 3 limit ({})",
                rate.per_minute,
                match published {
                    Some(n) => format!("{n}, Figma says"),
                    None => "developers.figma.com/docs/rest-api/rate-limits".to_owned(),
                },
            );
        }
        result
    }

    async fn send_inner(
        &self,
        url: Url,
        secret: Option<&str>,
    ) -> Result<(HeaderMap, Vec<u8>), Error> {
        let timeout = self.inner.timeout;
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::Timeout(timeout)
            } else {
                // The URL may carry a plugin payment token: never keep it.
                Error::Transport(Box::new(e.without_url()))
            }
        };
        let mut response = self
            .inner
            .http
            .get(url)
            .header(ACCESS_TOKEN_HEADER, self.inner.token.expose_secret())
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Error::MalformedResponse {
                    reason: format!("answer larger than {MAX_ANSWER_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((headers, body));
        }
        let message = error_message(&body, secret, &self.inner.token);
        Err(match status.as_u16() {
            400 => Error::InvalidRequest { message },
            401 | 403 => Error::Unauthorized { status, message },
            429 => Error::RateLimited(RateLimit {
                retry_after: headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, self.inner.clock.unix_ms())),
                plan_tier: header_string(&headers, "x-figma-plan-tier"),
                rate_limit_type: header_string(&headers, "x-figma-rate-limit-type"),
                upgrade_link: header_string(&headers, "x-figma-upgrade-link"),
            }),
            _ => Error::Upstream { status, message },
        })
    }
}

/// The owner of an access token, as `GET /v1/me` answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[non_exhaustive]
pub struct FigmaUser {
    /// The user's ID.
    pub id: UserId,
    /// The user's handle.
    #[serde(default)]
    pub handle: String,
    /// The user's email address, if the token may read it.
    #[serde(default)]
    pub email: Option<String>,
    /// The user's avatar.
    #[serde(default)]
    pub img_url: Option<String>,
}
