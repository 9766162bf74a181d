//! The [`RequirePaid`] layer: lets buyers through, refuses everyone else.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use figma_paywall::{PaymentInformation, RequirePaid};
//!
//! async fn generate(payment: PaymentInformation) -> String {
//!     format!("hello {}, you are {}", payment.user_id, payment.payment_status)
//! }
//!
//! // FIGMA_TOKEN and FIGMA_API_URL from the environment.
//! let app: Router = Router::new()
//!     .route("/generate", post(generate))
//!     .layer(RequirePaid::plugin("1122334455"));
//! ```

mod future;
pub mod identity;
mod refusal;
mod service;

use std::{collections::HashSet, fmt, sync::Arc, time::Instant};

use axum::response::{IntoResponse, Response};
use http::{request::Parts, Request, StatusCode};
use tower_layer::Layer;
use tracing::{field::Empty, Instrument};

pub(crate) use self::refusal::{RefusalCounters, RefusalHandler};
pub use self::{
    future::ResponseFuture,
    identity::{DefaultIdentity, FigmaUserId, Identity, IdentityError, IdentitySource},
    refusal::{Refusal, RefusalReason},
    service::RequirePaid,
};
use crate::{
    paywall::Lookup, Error, PaymentInformation, PaymentStatus, Paywall, PluginPaymentToken,
    Resource, UserId,
};

/// How a request got through the gate; a request extension next to
/// [`PaymentInformation`], and an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PaidAccess {
    /// Why the caller was let through.
    pub via: AccessVia,
    /// The answer was past its lifetime, served because Figma could not be
    /// asked (see [`PaywallBuilder::stale_grace`](crate::PaywallBuilder::stale_grace)).
    pub stale: bool,
    /// The answer came from the cache.
    pub from_cache: bool,
}

/// Why a caller was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessVia {
    /// Figma says `PAID`.
    Paid,
    /// Figma says `TRIAL`, and the gate lets trials through.
    Trial,
    /// The user is on the gate's bypass list (the resource's creators, whom
    /// Figma answers `UNPAID`).
    Bypass,
    /// Figma could not answer and the gate fails open: nobody checked that
    /// this caller paid, and no [`PaymentInformation`] is on the request.
    FailOpen,
}

/// The layer that gates a service on Figma payment status; build it with
/// [`RequirePaid::plugin`] and its siblings, or from a [`Paywall`].
#[derive(Clone)]
#[must_use]
pub struct RequirePaidLayer<I = DefaultIdentity> {
    pub(crate) gate: Arc<Gate>,
    pub(crate) identity: I,
}

impl<I: fmt::Debug> fmt::Debug for RequirePaidLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequirePaidLayer")
            .field("resources", &self.gate.resources)
            .field("allow_trial", &self.gate.allow_trial)
            .field("bypass", &self.gate.bypass)
            .field("fail_open", &self.gate.fail_open)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What a gate checks, and the paywall it asks: one `Arc` to clone per
/// request.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    paywall: Paywall,
    resources: Vec<Resource>,
    allow_trial: bool,
    bypass: HashSet<UserId>,
    fail_open: bool,
    refusal: Option<RefusalHandler>,
}

impl<S, I: Clone> Layer<S> for RequirePaidLayer<I> {
    type Service = RequirePaid<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePaid::new(inner, self.clone())
    }
}

impl Paywall {
    /// A layer that lets through buyers of `resource`.
    pub fn require(&self, resource: Resource) -> RequirePaidLayer {
        self.require_any_of([resource])
    }

    /// A layer that lets through buyers of any of `resources` (for example a
    /// plugin and a Community file). User IDs are checked against each in
    /// order; a plugin payment token names its own resource.
    ///
    /// # Panics
    ///
    /// If `resources` is empty, or holds a resource type other than a
    /// plugin, widget or Community file.
    pub fn require_any_of(
        &self,
        resources: impl IntoIterator<Item = Resource>,
    ) -> RequirePaidLayer {
        let resources: Vec<Resource> = resources.into_iter().collect();
        assert!(
            !resources.is_empty(),
            "RequirePaid needs at least one resource to check payment for"
        );
        assert!(
            resources
                .iter()
                .all(|r| r.kind_ref().query_param().is_some()),
            "RequirePaid gates plugins, widgets and Community files only"
        );
        RequirePaidLayer {
            gate: Arc::new(Gate {
                paywall: self.clone(),
                resources,
                allow_trial: true,
                bypass: HashSet::new(),
                fail_open: false,
                refusal: None,
            }),
            identity: DefaultIdentity,
        }
    }
}

impl<I> RequirePaidLayer<I> {
    /// Whether `TRIAL` lets a caller through (default `true`).
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, Resource};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let paid_only = paywall.require(Resource::plugin("1")?).with_trial(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_trial(mut self, allow: bool) -> Self {
        Arc::make_mut(&mut self.gate).allow_trial = allow;
        self
    }

    /// Users let through whatever Figma says: the resource's creators, whom
    /// Figma answers `UNPAID` for their own resource. Figma is still asked,
    /// so the extension holds the real answer, marked [`AccessVia::Bypass`].
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, Resource, UserId};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let layer = paywall
    ///     .require(Resource::plugin("1")?)
    ///     .with_bypass([UserId::new("1000")?]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_bypass(mut self, users: impl IntoIterator<Item = UserId>) -> Self {
        Arc::make_mut(&mut self.gate).bypass.extend(users);
        self
    }

    /// Lets callers through when Figma cannot answer and no cached answer
    /// stands in (default `false`: refuse with 503).
    ///
    /// # Warning
    ///
    /// Anybody gets in while Figma is down or rate-limiting, including
    /// people who never paid and people who send garbage tokens that Figma
    /// would refuse. Such requests carry [`PaidAccess`] with
    /// [`AccessVia::FailOpen`] and no [`PaymentInformation`]; handlers must
    /// check for that. Malformed or missing identities are still refused.
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, Resource};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let lenient = paywall.require(Resource::plugin("1")?).with_fail_open(true);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_fail_open(mut self, fail_open: bool) -> Self {
        Arc::make_mut(&mut self.gate).fail_open = fail_open;
        self
    }

    /// Replaces the refusal response (Figma's JSON error envelope by
    /// default), for example with an HTML paywall page.
    ///
    /// ```
    /// use axum::response::{Html, IntoResponse};
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, Resource};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let layer = paywall.require(Resource::plugin("1")?).with_refusal(|refusal, _parts| {
    ///     (refusal.status, Html(format!("<h1>{}</h1>", refusal.message))).into_response()
    /// });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_refusal<F>(mut self, respond: F) -> Self
    where
        F: Fn(Refusal, &Parts) -> Response + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.gate).refusal = Some(RefusalHandler(Arc::new(respond)));
        self
    }

    /// Reads callers' identities from `source` instead of [`DefaultIdentity`].
    pub fn with_identity<J: IdentitySource>(self, source: J) -> RequirePaidLayer<J> {
        RequirePaidLayer {
            gate: self.gate,
            identity: source,
        }
    }

    /// The paywall (cache and client) this layer asks.
    pub fn paywall(&self) -> &Paywall {
        &self.gate.paywall
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Token,
    User,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::User => "user",
        }
    }
}

struct Granted {
    info: Option<PaymentInformation>,
    access: PaidAccess,
}

/// The check a gated request goes through before the inner service.
pub(crate) async fn check<B>(
    gate: Arc<Gate>,
    identity: Result<Option<Identity>, IdentityError>,
    parts: Parts,
    body: B,
) -> Result<Request<B>, Response> {
    // DEBUG, and no formatting: with an INFO subscriber this costs nothing.
    let first = &gate.resources[0];
    let span = tracing::debug_span!(
        "require_paid",
        resource_type = first.kind_ref().as_str(),
        resource_id = first.id().as_str(),
        mode = Empty,
        outcome = Empty,
        cache = Empty,
        stale = Empty,
        upstream_ms = Empty,
    );
    let paywall = &gate.paywall;
    let decision = gate
        .decide(paywall, identity)
        .instrument(span.clone())
        .await;
    let stats = &paywall.inner.stats;
    match decision {
        Ok(granted) => {
            stats.granted.add();
            span.record("outcome", "granted");
            let mut req = Request::from_parts(parts, body);
            if let Some(info) = granted.info {
                req.extensions_mut().insert(info);
            }
            req.extensions_mut().insert(granted.access);
            Ok(req)
        }
        Err(refusal) => {
            stats.refused.count(refusal.reason);
            span.record("outcome", refusal.reason.as_str());
            Err(match &gate.refusal {
                Some(handler) => (handler.0)(refusal, &parts),
                None => refusal.into_response(),
            })
        }
    }
}

impl Gate {
    async fn decide(
        &self,
        paywall: &Paywall,
        identity: Result<Option<Identity>, IdentityError>,
    ) -> Result<Granted, Refusal> {
        let span = tracing::Span::current();
        let identity = identity.map_err(|e| {
            tracing::debug!(error = %e, "refused: unreadable identity");
            Refusal::new(e.status(), RefusalReason::InvalidIdentity, e.message())
        })?;
        match identity {
            None => {
                tracing::debug!("refused: no identity");
                Err(Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    RefusalReason::NoIdentity,
                    "who is asking? Send the plugin payment token from figma.payments.getPluginPaymentTokenAsync() in the X-Figma-Payment-Token header, or sign in",
                ))
            }
            Some(Identity::PaymentToken(token)) => {
                span.record("mode", Mode::Token.as_str());
                self.decide_token(paywall, &token).await
            }
            Some(Identity::User(user)) => {
                span.record("mode", Mode::User.as_str());
                self.decide_user(paywall, &user).await
            }
        }
    }

    async fn decide_token(
        &self,
        paywall: &Paywall,
        token: &PluginPaymentToken,
    ) -> Result<Granted, Refusal> {
        let started = Instant::now();
        let lookup = match paywall.lookup_token(token).await {
            Ok(lookup) => lookup,
            Err(error) => return self.upstream_failure(paywall, &error, Mode::Token).await,
        };
        record_lookup(&lookup, started);
        let info = lookup.info();
        let gated = self
            .resources
            .iter()
            .find(|r| *r.kind_ref() == info.resource_type && *r.id() == info.resource_id);
        let Some(resource) = gated else {
            tracing::debug!(
                token_resource_type = %info.resource_type,
                token_resource_id = %info.resource_id,
                user_id = %info.user_id,
                "refused: the plugin payment token was issued for another resource"
            );
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                RefusalReason::WrongResource,
                "this plugin payment token was issued for another plugin or widget",
            ));
        };
        self.judge(&lookup, resource)
    }

    async fn decide_user(&self, paywall: &Paywall, user: &UserId) -> Result<Granted, Refusal> {
        let mut refusal = None;
        for resource in &self.resources {
            let started = Instant::now();
            let lookup = match paywall.lookup_user(user, resource).await {
                Ok(lookup) => lookup,
                Err(error) => {
                    // Another resource may still let the caller in.
                    let failure = self.upstream_failure(paywall, &error, Mode::User).await;
                    refusal.get_or_insert(failure);
                    continue;
                }
            };
            record_lookup(&lookup, started);
            let info = lookup.info();
            if info.user_id != *user
                || info.resource_id != *resource.id()
                || info.resource_type != *resource.kind_ref()
            {
                tracing::warn!(
                    asked_user = %user, asked_resource = %resource,
                    answered_user = %info.user_id, answered_resource_type = %info.resource_type,
                    answered_resource_id = %info.resource_id,
                    "refused: Figma's answer is about another user or resource than asked"
                );
                refusal.get_or_insert(Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    RefusalReason::AnswerMismatch,
                    "Figma's answer did not match the question; try again later",
                )));
                continue;
            }
            match self.judge(&lookup, resource) {
                Ok(granted) => return Ok(granted),
                Err(not_paid) => {
                    // A "not paid" is the most useful refusal to show.
                    if !matches!(
                        refusal,
                        Some(Err(Refusal {
                            reason: RefusalReason::NotPaid,
                            ..
                        }))
                    ) {
                        refusal = Some(Err(not_paid));
                    }
                }
            }
        }
        refusal.unwrap_or_else(unreachable_refusal)
    }

    /// PAID passes, TRIAL passes unless refused, the bypass list passes;
    /// everything else (UNPAID, NOT_SUPPORTED, unknown) is refused.
    fn judge(&self, lookup: &Lookup, resource: &Resource) -> Result<Granted, Refusal> {
        let info = lookup.info();
        let via = match &info.payment_status {
            PaymentStatus::Paid => Some(AccessVia::Paid),
            PaymentStatus::Trial if self.allow_trial => Some(AccessVia::Trial),
            _ if self.bypass.contains(&info.user_id) => Some(AccessVia::Bypass),
            _ => None,
        };
        match via {
            Some(via) => Ok(Granted {
                info: Some(info.clone()),
                access: PaidAccess {
                    via,
                    stale: lookup.stale,
                    from_cache: lookup.from_cache,
                },
            }),
            None => {
                tracing::debug!(status = %info.payment_status, "refused: not paid");
                let mut refusal = Refusal::new(
                    StatusCode::PAYMENT_REQUIRED,
                    RefusalReason::NotPaid,
                    format!(
                        "payment required: buy {} on Figma Community ({})",
                        resource,
                        resource.community_url()
                    ),
                );
                refusal.payment_status = Some(info.payment_status.clone());
                refusal.resource_id = Some(resource.id().clone());
                Err(refusal)
            }
        }
    }

    async fn upstream_failure(
        &self,
        paywall: &Paywall,
        error: &Error,
        mode: Mode,
    ) -> Result<Granted, Refusal> {
        let refusal = paywall.refusal_for(error, mode).await;
        if self.fail_open && error.is_figma_outage() {
            tracing::warn!(error = %error, "Figma could not answer; letting the caller through (fail-open)");
            return Ok(Granted {
                info: None,
                access: PaidAccess {
                    via: AccessVia::FailOpen,
                    stale: false,
                    from_cache: false,
                },
            });
        }
        Err(refusal)
    }
}

fn record_lookup(lookup: &Lookup, started: Instant) {
    let span = tracing::Span::current();
    span.record("cache", if lookup.from_cache { "hit" } else { "miss" });
    span.record("stale", lookup.stale);
    if !lookup.from_cache {
        span.record("upstream_ms", started.elapsed().as_millis() as u64);
    }
}

fn unreachable_refusal() -> Result<Granted, Refusal> {
    // A gate always has at least one resource, so some refusal was recorded.
    Err(Refusal::new(
        StatusCode::PAYMENT_REQUIRED,
        RefusalReason::NotPaid,
        "payment required",
    ))
}

impl Paywall {
    /// Maps a lookup error to what the caller is told.
    async fn refusal_for(&self, error: &Error, mode: Mode) -> Refusal {
        use RefusalReason as R;
        let unavailable = |status, message: &str, retry_after| {
            let mut r = Refusal::new(status, R::FigmaUnavailable, message);
            r.retry_after = Some(retry_after);
            r
        };
        let retry_soon = std::time::Duration::from_secs(5);
        match error {
            Error::InvalidId(e) => {
                Refusal::new(StatusCode::UNAUTHORIZED, R::InvalidIdentity, e.to_string())
            }
            Error::InvalidToken(e) => {
                Refusal::new(StatusCode::BAD_REQUEST, R::InvalidIdentity, e.to_string())
            }
            Error::InvalidRequest { .. } | Error::Unauthorized { .. }
                if matches!(mode, Mode::Token)
                    && !(matches!(error, Error::Unauthorized { .. })
                        && self.access_token_rejected(false).await) =>
            {
                tracing::debug!(error = %error, "refused: Figma refused the plugin payment token");
                Refusal::new(
                    StatusCode::UNAUTHORIZED,
                    R::TokenRejected,
                    "Figma refused this plugin payment token (expired or forged); get a fresh one with figma.payments.getPluginPaymentTokenAsync()",
                )
            }
            Error::Unauthorized { .. } => {
                // In user mode only the access token can be refused; in token
                // mode, GET /v1/me just said so.
                self.access_token_rejected(true).await;
                let mut r = Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    R::AccessTokenRejected,
                    "payment status cannot be checked right now",
                );
                r.retry_after = Some(std::time::Duration::from_secs(60));
                r
            }
            Error::RateLimited(_) | Error::Throttled { .. } => {
                tracing::warn!(error = %error, "Figma's budget is spent; refusing");
                let mut r = Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    R::RateLimited,
                    "payment status cannot be checked right now: too many lookups; try again later",
                );
                r.retry_after = Some(error.retry_after().unwrap_or(retry_soon));
                r
            }
            Error::MalformedResponse { .. } | Error::InvalidRequest { .. } => {
                tracing::error!(error = %error, "Figma's answer could not be used");
                unavailable(
                    StatusCode::BAD_GATEWAY,
                    "Figma's answer about payment could not be read; try again later",
                    retry_soon,
                )
            }
            _ => {
                tracing::warn!(error = %error, "Figma could not answer");
                unavailable(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "payment status cannot be checked right now; try again later",
                    retry_soon,
                )
            }
        }
    }
}
