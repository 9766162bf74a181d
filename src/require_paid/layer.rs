//! [`RequirePaidLayer`]: what a gate checks, and its settings.

use std::{collections::HashSet, fmt, sync::Arc};

use axum::response::Response;
use http::request::Parts;
use tower_layer::Layer;

use super::{
    caller::ClientKeys,
    gate::{Gate, RefusalHandler},
    ClientKeySource, DefaultIdentity, IdentitySource, PeerAddr, RequirePaid,
};
use crate::{credits::Credits, Paywall, Refusal, Resource, UserId};

/// The layer that gates a service on Figma payment status; build it with
/// [`RequirePaid::plugin`] and its siblings (one paywall from the
/// environment), or with [`new`](Self::new) from a [`Paywall`] of your own;
/// [`or_buyers_of`](Self::or_buyers_of) adds a resource.
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

impl<S, I: Clone> Layer<S> for RequirePaidLayer<I> {
    type Service = RequirePaid<S, I>;

    fn layer(&self, inner: S) -> Self::Service {
        RequirePaid::new(inner, self.clone())
    }
}

impl RequirePaidLayer {
    /// A layer that lets through buyers of `resource`, asking `paywall`.
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource};
    /// let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("figd_example")?)?);
    /// let layer = RequirePaidLayer::new(&paywall, Resource::plugin("1122334455")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If `resource` is of a type other than a plugin, widget or Community
    /// file.
    pub fn new(paywall: &Paywall, resource: Resource) -> Self {
        assert_gated(&resource);
        Self {
            gate: Arc::new(Gate {
                paywall: paywall.clone(),
                resources: vec![resource],
                allow_trial: true,
                bypass: HashSet::new(),
                fail_open: false,
                refusal: None,
                client_key: ClientKeys(Arc::new(PeerAddr)),
                credits: None,
            }),
            identity: DefaultIdentity,
        }
    }
}

impl<I> RequirePaidLayer<I> {
    /// Whether `TRIAL` lets a caller through (default `true`).
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let paid_only = RequirePaidLayer::new(&paywall, Resource::plugin("1")?).allow_trial(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow_trial(mut self, allow: bool) -> Self {
        Arc::make_mut(&mut self.gate).allow_trial = allow;
        self
    }

    /// Lets through the buyers of `resource` too (for example a plugin's
    /// and a Community file's). User IDs are checked against each resource
    /// in order; a plugin payment token names its own resource.
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let docs = RequirePaidLayer::new(&paywall, Resource::plugin("1")?)
    ///     .or_buyers_of(Resource::community_file("2")?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`new`](Self::new).
    pub fn or_buyers_of(mut self, resource: Resource) -> Self {
        assert_gated(&resource);
        let resources = &mut Arc::make_mut(&mut self.gate).resources;
        if !resources.contains(&resource) {
            resources.push(resource);
        }
        self
    }

    /// Users let through whatever Figma says: the resource's creators, whom
    /// Figma answers `UNPAID` for their own resource. Figma is still asked,
    /// so the extension holds the real answer, marked [`AccessVia::Bypass`](crate::AccessVia::Bypass).
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource, UserId};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let layer = RequirePaidLayer::new(&paywall, Resource::plugin("1")?)
    ///     .bypass([UserId::new("1000")?]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn bypass(mut self, users: impl IntoIterator<Item = UserId>) -> Self {
        Arc::make_mut(&mut self.gate).bypass.extend(users);
        self
    }

    /// Meters what each caller spends: buyers their status's allowance, and
    /// non-buyers free tries where [`Credits::unpaid`] gives them. Counts
    /// live where the paywall keeps answers: in process, in its store, or
    /// in Redis, shared by replicas. See [`credits`](crate::credits).
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource};
    /// use figma_paywall::credits::{Credits, Window};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let credits = Credits::new().paid(100, Window::Day).unpaid(5, Window::Ever);
    /// let layer = RequirePaidLayer::new(&paywall, Resource::plugin("1")?).credits(credits.cost(5));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn credits(mut self, credits: Credits) -> Self {
        let counts = self.gate.paywall.credit_counts();
        // Once a process: an app builds a gate a route, the gateway several.
        static SAID: std::sync::Once = std::sync::Once::new();
        if !counts.outlive_the_process() {
            SAID.call_once(|| tracing::warn!("credits are counted in this process only: a restart gives everyone their allowance again; give the paywall a store or a Redis tier to keep counts"));
        }
        Arc::make_mut(&mut self.gate).credits = Some(super::metered::Metering {
            plan: credits,
            counts,
        });
        self
    }

    /// Lets callers through while Figma is failing and no cached answer
    /// stands in (default `false`: refuse with 503).
    ///
    /// "Failing" is the client's circuit breaker, shared by every lookup:
    /// it opens when many recent lookups failed (5xx, timeout, unreachable,
    /// an unreadable answer) and `GET /v1/me` fails too, and closes as soon
    /// as a probe gets an answer. One caller's failed lookup never opens the
    /// gate, nor does a 4xx, Figma's 429, our own budget running out (any
    /// caller can spend it) or a rejected `FIGMA_TOKEN`.
    ///
    /// # Warning
    ///
    /// Anybody gets in while Figma is failing, including people who never
    /// paid and people who send garbage tokens that Figma would refuse. Such requests carry [`PaidAccess`](crate::PaidAccess) with
    /// [`AccessVia::FailOpen`](crate::AccessVia::FailOpen) and no [`PaymentInformation`](crate::PaymentInformation); handlers must
    /// check for that. Malformed or missing identities are still refused.
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let lenient = RequirePaidLayer::new(&paywall, Resource::plugin("1")?).fail_open(true);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fail_open(mut self, fail_open: bool) -> Self {
        Arc::make_mut(&mut self.gate).fail_open = fail_open;
        self
    }

    /// Replaces the refusal response (Figma's JSON error envelope by
    /// default), for example with an HTML paywall page. Whatever `respond`
    /// answers, the response carries the [`RefusalReason`](crate::RefusalReason)
    /// as an extension, for a `TraceLayer` or metrics outside the gate.
    ///
    /// ```
    /// use axum::response::{Html, IntoResponse};
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
    /// let layer = RequirePaidLayer::new(&paywall, Resource::plugin("1")?).on_refusal(|refusal, _parts| {
    ///     (refusal.status, Html(format!("<h1>{}</h1>", refusal.message))).into_response()
    /// });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_refusal<F>(mut self, respond: F) -> Self
    where
        F: Fn(Refusal, &Parts) -> Response + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.gate).refusal = Some(RefusalHandler(Arc::new(respond)));
        self
    }

    /// Tells clients apart by `source` instead of [`PeerAddr`], for the fair
    /// share of Figma's budget: while several clients make cold lookups of
    /// plugin payment tokens (misses that need a call), each gets its
    /// max-min share of the budget ([`PaywallBuilder::client_share`](crate::PaywallBuilder::client_share))
    /// and is refused with `429 too_many_lookups` past it, and a client
    /// whose tokens Figma mostly refused waits for idle slots, so that one
    /// client flooding forged tokens cannot spend the budget that buyers
    /// need. A lone client may use the whole budget.
    ///
    /// Behind a proxy, use [`ForwardedFor`](crate::identity::ForwardedFor) with the
    /// proxy's addresses: a client can write any `X-Forwarded-For` it likes.
    pub fn client_key(mut self, source: impl ClientKeySource) -> Self {
        Arc::make_mut(&mut self.gate).client_key = ClientKeys(Arc::new(source));
        self
    }

    /// Reads callers' identities from `source` instead of [`DefaultIdentity`].
    pub fn identity<J: IdentitySource>(self, source: J) -> RequirePaidLayer<J> {
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

/// Panics unless `resource` is a plugin, a widget or a Community file.
fn assert_gated(resource: &Resource) {
    assert!(
        resource.kind().query_param().is_some(),
        "RequirePaid gates plugins, widgets and Community files only"
    );
}
