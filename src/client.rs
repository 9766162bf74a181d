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

use std::{
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::HeaderMap;
use serde::Deserialize;
use tokio::sync::Semaphore;
use url::Url;

use crate::{
    error::{ConfigError, Error, RateLimit, ThrottleReason},
    AccessToken, PaymentInformation, PluginPaymentToken, Resource, UserId,
};

/// Figma's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.figma.com";

/// The header Figma reads the personal access token from.
pub const ACCESS_TOKEN_HEADER: &str = "X-Figma-Token";

/// Answers larger than this are refused as malformed: Figma's are a few
/// hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Figma's message is cut to this many characters in errors.
const MAX_MESSAGE_CHARS: usize = 200;

/// How long to stop calling after a 429 that carries no `Retry-After`.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(60);

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
    budget: Budget,
    calls: AtomicU64,
    latency_micros: AtomicU64,
}

/// Builds a [`PaymentsClient`]; see its docs for the defaults.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use figma_paywall::{AccessToken, PaymentsClient};
///
/// let client = PaymentsClient::builder(AccessToken::new("figd_example")?)
///     .base_url("http://127.0.0.1:8080")
///     .timeout(Duration::from_secs(3))
///     .rate_limit(50, 5)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct PaymentsClientBuilder {
    token: AccessToken,
    base_url: String,
    connect_timeout: Duration,
    timeout: Duration,
    pool_idle_timeout: Duration,
    per_minute: u32,
    burst: u32,
    max_waiting: usize,
    max_wait: Duration,
}

impl PaymentsClient {
    /// Starts a builder with the given personal access token.
    pub fn builder(token: AccessToken) -> PaymentsClientBuilder {
        PaymentsClientBuilder {
            token,
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(30),
            per_minute: 9,
            burst: 3,
            max_waiting: 256,
            max_wait: Duration::from_secs(2),
        }
    }

    /// A client with every default, talking to Figma's production API.
    pub fn new(token: AccessToken) -> Result<Self, ConfigError> {
        Self::builder(token).build()
    }

    /// A client configured from the environment: the access token from
    /// `FIGMA_TOKEN` (required) and the base URL from `FIGMA_API_URL`
    /// (default `https://api.figma.com`).
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
        Ok(builder)
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
        self.ask(&Question::Token(token.clone()), Wait::ForSlot)
            .await
    }

    /// Asks Figma for a user's payment information on one plugin, widget or
    /// Community file that the access token's owner created.
    pub async fn payment_by_user(
        &self,
        user: &UserId,
        resource: &Resource,
    ) -> Result<PaymentInformation, Error> {
        self.ask(
            &Question::User(user.clone(), resource.clone()),
            Wait::ForSlot,
        )
        .await
    }

    /// Asks `GET /v1/payments` within the rate budget.
    pub(crate) async fn ask(
        &self,
        question: &Question,
        wait: Wait,
    ) -> Result<PaymentInformation, Error> {
        let url = question.url(&self.inner.payments_url)?;
        self.inner.budget.acquire(wait).await?;
        let (_, body) = self.send(url, question.secret()).await?;
        parse_payments_answer(&body)
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
        self.inner.budget.backing_off_for(Instant::now())
    }

    /// The budget: calls a minute, burst, and the longest wait for a slot.
    pub(crate) fn budget_settings(&self) -> (u32, u32, Duration) {
        let b = &self.inner.budget;
        (b.per_minute, b.burst, b.max_wait)
    }

    /// The client's upstream timeout (the longest a lookup waits for Figma).
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    async fn send(&self, url: Url, secret: Option<&str>) -> Result<(HeaderMap, Vec<u8>), Error> {
        let started = Instant::now();
        let result = self.send_inner(url, secret).await;
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.latency_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        if let Err(Error::RateLimited(limit)) = &result {
            self.inner
                .budget
                .back_off(limit.retry_after.unwrap_or(DEFAULT_BACKOFF));
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
                Error::Transport(e.without_url())
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
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
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

impl PaymentsClientBuilder {
    /// The API's base URL; default `https://api.figma.com`. A path is kept
    /// (`http://localhost:8080/figma` asks `…/figma/v1/payments`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// How long to wait for a connection to Figma; default 3 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a whole request to Figma may take; default 5 s, at most
    /// 10 s is accepted. A hung Figma never holds a lookup longer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept; default 30 s.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The payment-lookup budget: `per_minute` calls a minute, with bursts
    /// of up to `burst`. Default 9 a minute, bursts of 3.
    ///
    /// All lookups made with one access token share one budget at Figma
    /// (Tier 3: about 10 a minute on View and Collab seats, 50 to 150 on Dev
    /// and Full seats). Every clone of this client shares this budget; give
    /// separate clients of one token separate shares of it.
    pub fn rate_limit(mut self, per_minute: u32, burst: u32) -> Self {
        self.per_minute = per_minute;
        self.burst = burst;
        self
    }

    /// How many lookups may wait for a budget slot at once (default 256) and
    /// for how long (default 2 s). Past either, a lookup fails at once with
    /// [`Error::Throttled`] instead of hanging.
    pub fn queue(mut self, max_waiting: usize, max_wait: Duration) -> Self {
        self.max_waiting = max_waiting;
        self.max_wait = max_wait;
        self
    }

    /// Builds the client, checking every setting.
    pub fn build(self) -> Result<PaymentsClient, ConfigError> {
        let (payments_url, me_url) = endpoint_urls(&self.base_url)?;
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(10) {
            return Err(ConfigError::InvalidSetting(format!(
                "timeout must be between 1 ms and 10 s, not {:?}",
                self.timeout
            )));
        }
        let per_minute = NonZeroU32::new(self.per_minute).ok_or_else(|| {
            ConfigError::InvalidSetting("rate_limit: per_minute must be at least 1".into())
        })?;
        let burst = NonZeroU32::new(self.burst).ok_or_else(|| {
            ConfigError::InvalidSetting("rate_limit: burst must be at least 1".into())
        })?;
        if self.max_waiting > Semaphore::MAX_PERMITS {
            return Err(ConfigError::InvalidSetting(format!(
                "queue: at most {} lookups can wait",
                Semaphore::MAX_PERMITS
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("figma-paywall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::HttpClient)?;
        Ok(PaymentsClient {
            inner: Arc::new(Inner {
                http,
                token: self.token,
                payments_url,
                me_url,
                timeout: self.timeout,
                budget: Budget {
                    limiter: RateLimiter::direct(Quota::per_minute(per_minute).allow_burst(burst)),
                    per_minute: per_minute.get(),
                    burst: burst.get(),
                    waiting: Semaphore::new(self.max_waiting),
                    max_wait: self.max_wait,
                    backoff_until: Mutex::new(None),
                },
                calls: AtomicU64::new(0),
                latency_micros: AtomicU64::new(0),
            }),
        })
    }
}

fn endpoint_urls(base: &str) -> Result<(Url, Url), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidBaseUrl {
        // A URL with credentials in it is not repeated.
        url: if base.contains('@') {
            "<redacted: it contains credentials>".to_owned()
        } else {
            base.to_owned()
        },
        reason,
    };
    let url = Url::parse(base.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(
            "a base URL has no query, fragment or credentials".into(),
        ));
    }
    let join = |p: &str| api_endpoint(&url, p).map_err(|e| invalid(e.to_string()));
    Ok((join("v1/payments")?, join("v1/me")?))
}

/// `path` under the API's base URL, keeping any path the base has
/// (`http://host/figma` + `v1/me` is `http://host/figma/v1/me`).
pub(crate) fn api_endpoint(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path)
}

/// A question for `GET /v1/payments`: by plugin payment token, or by user and resource.
#[derive(Debug, Clone)]
pub(crate) enum Question {
    Token(PluginPaymentToken),
    User(UserId, Resource),
}

impl Question {
    /// The request URL: the base with the question's parameters, always
    /// form-encoded, so no value can add or change a parameter.
    pub(crate) fn url(&self, payments_url: &Url) -> Result<Url, Error> {
        let mut url = payments_url.clone();
        match self {
            Self::Token(token) => {
                url.query_pairs_mut()
                    .append_pair("plugin_payment_token", token.expose_secret());
            }
            Self::User(user, resource) => {
                let param =
                    resource
                        .kind_ref()
                        .query_param()
                        .ok_or_else(|| Error::InvalidRequest {
                            message: format!(
                                "resource type {} cannot be looked up by user ID",
                                resource.kind_ref()
                            ),
                        })?;
                url.query_pairs_mut()
                    .append_pair("user_id", user.as_str())
                    .append_pair(param, resource.id().as_str());
            }
        }
        Ok(url)
    }

    fn secret(&self) -> Option<&str> {
        match self {
            Self::Token(token) => Some(token.expose_secret()),
            Self::User(..) => None,
        }
    }
}

/// Whether a lookup waits for a budget slot or gives up at once (when a
/// stale answer can stand in, waiting would only delay the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    ForSlot,
    No,
}

/// The rate budget and the 429 back-off shared by every clone of a client.
#[derive(Debug)]
struct Budget {
    limiter: DefaultDirectRateLimiter,
    per_minute: u32,
    burst: u32,
    waiting: Semaphore,
    max_wait: Duration,
    backoff_until: Mutex<Option<Instant>>,
}

impl Budget {
    async fn acquire(&self, wait: Wait) -> Result<(), Error> {
        self.check_backoff()?;
        if let Err(not_until) = self.limiter.check() {
            // When the next slot comes free.
            let next_slot = not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .max(Duration::from_millis(1));
            let throttled = |reason| Error::Throttled {
                retry_after: next_slot,
                reason,
            };
            if wait == Wait::No || next_slot > self.max_wait {
                return Err(throttled(ThrottleReason::BudgetExhausted));
            }
            let _waiting = self
                .waiting
                .try_acquire()
                .map_err(|_| throttled(ThrottleReason::QueueFull))?;
            tokio::time::timeout(self.max_wait, self.limiter.until_ready())
                .await
                .map_err(|_| throttled(ThrottleReason::BudgetExhausted))?;
            // A 429 may have come in while this lookup waited.
            self.check_backoff()?;
        }
        Ok(())
    }

    fn check_backoff(&self) -> Result<(), Error> {
        match self.backing_off_for(Instant::now()) {
            Some(retry_after) => Err(Error::Throttled {
                retry_after,
                reason: ThrottleReason::BackingOff,
            }),
            None => Ok(()),
        }
    }

    fn backing_off_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    fn back_off(&self, delay: Duration) {
        let until = Instant::now().checked_add(delay);
        let mut slot = self.backoff_until.lock().unwrap_or_else(|e| e.into_inner());
        // An overflowing Retry-After (days, years) means "not in this process's life".
        let until = until.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        if slot.is_none_or(|current| current < until) {
            *slot = Some(until);
        }
    }
}

#[derive(Deserialize)]
struct SuccessEnvelope {
    #[serde(default)]
    error: bool,
    meta: Option<PaymentInformation>,
}

/// Reads Figma's success envelope `{"status": 200, "error": false, "meta": {...}}`.
///
/// Public so that fuzzers and property tests can reach it; it never panics.
#[doc(hidden)]
pub fn parse_payments_answer(body: &[u8]) -> Result<PaymentInformation, Error> {
    let malformed = |reason: String| Error::MalformedResponse { reason };
    let envelope: SuccessEnvelope = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "not Figma's JSON success envelope ({})",
            e.classify_name()
        ))
    })?;
    if envelope.error {
        return Err(malformed("a 200 answer with \"error\": true".into()));
    }
    envelope
        .meta
        .ok_or_else(|| malformed("the success envelope has no `meta`".into()))
}

trait ClassifyName {
    fn classify_name(&self) -> String;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> String {
        // serde_json's message may quote input; keep only its position and kind.
        let kind = match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    message: Option<String>,
    err: Option<String>,
}

/// Figma's `message`, cut short, with any secret that was sent removed.
fn error_message(body: &[u8], secret: Option<&str>, token: &AccessToken) -> String {
    let message = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.message.or(e.err))
        .unwrap_or_else(|| "no message".to_owned());
    let mut message = message;
    // Redact before cutting, so no part of a secret survives the cut.
    for secret in secret.into_iter().chain([token.expose_secret()]) {
        if message.contains(secret) {
            message = message.replace(secret, "<redacted>");
        }
    }
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_MESSAGE_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_their_path() {
        let (p, m) = endpoint_urls("http://127.0.0.1:9/figma").unwrap();
        assert_eq!(p.as_str(), "http://127.0.0.1:9/figma/v1/payments");
        assert_eq!(m.as_str(), "http://127.0.0.1:9/figma/v1/me");
        let (p, _) = endpoint_urls("https://api.figma.com").unwrap();
        assert_eq!(p.as_str(), "https://api.figma.com/v1/payments");
        for bad in [
            "",
            "api.figma.com",
            "ftp://x",
            "http://x/?a=1",
            "http://u:p@x/",
        ] {
            assert!(endpoint_urls(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn error_messages_are_short_and_redacted() {
        let token = AccessToken::new("figd_PAT").unwrap();
        let body = br#"{"error":true,"status":400,"message":"bad token ppt_SECRET and figd_PAT"}"#;
        let m = error_message(body, Some("ppt_SECRET"), &token);
        assert_eq!(m, "bad token <redacted> and <redacted>");
        let long_secret = "s".repeat(300);
        let body = format!(r#"{{"message":"{}{long_secret}"}}"#, "x".repeat(150));
        let m = error_message(body.as_bytes(), Some(&long_secret), &token);
        assert!(!m.contains("ss"), "part of a secret survived: {m}");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(5000));
        assert_eq!(
            error_message(long.as_bytes(), None, &token).len(),
            MAX_MESSAGE_CHARS
        );
        assert_eq!(error_message(b"<html>", None, &token), "no message");
    }

    #[test]
    fn parse_errors_never_quote_input() {
        let err = parse_payments_answer(br#"{"meta": {"user_id": "ppt_SECRET"}}"#).unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(matches!(err, Error::MalformedResponse { .. }));
    }

    #[test]
    fn queries_are_encoded_so_no_value_adds_a_parameter() {
        let base = Url::parse("https://api.figma.com/v1/payments").unwrap();
        proptest::proptest!(proptest::prelude::ProptestConfig::with_cases(2000), |(raw in "[!-~]{1,64}")| {
            let token = PluginPaymentToken::new(&raw).unwrap();
            let url = Question::Token(token).url(&base).unwrap();
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            proptest::prop_assert_eq!(pairs, vec![("plugin_payment_token".to_owned(), raw.clone())]);
            proptest::prop_assert!(url.fragment().is_none());
            proptest::prop_assert_eq!(url.path(), "/v1/payments");
        });
    }

    #[test]
    fn settings_are_checked() {
        let token = || AccessToken::new("t").unwrap();
        assert!(PaymentsClient::builder(token())
            .timeout(Duration::from_secs(11))
            .build()
            .is_err());
        assert!(PaymentsClient::builder(token())
            .rate_limit(0, 1)
            .build()
            .is_err());
        assert!(PaymentsClient::builder(token()).build().is_ok());
    }
}
