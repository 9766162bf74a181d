//! What a gated request goes through: identity, lookup, checks, verdict.

use std::{collections::HashSet, fmt, sync::Arc, time::Instant};

use axum::response::{IntoResponse, Response};
use http::{request::Parts, Request, StatusCode};
use tracing::{field::Empty, Instrument};

use super::{
    access::Granted, caller::ClientKeys, development, failure::refusal_for, identity::Mode,
    meter::Meter, AccessVia, Identity, IdentityError, PaidAccess,
};
use crate::{
    credits::CreditCost, Error, Lookup, PaymentStatus, Paywall, PluginPaymentToken, Refusal,
    RefusalReason, Resource, UserId,
};

/// What a gate checks, and the paywall it asks: one `Arc` to clone per
/// request.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(super) paywall: Paywall,
    pub(super) resources: Vec<Resource>,
    pub(super) allow_trial: bool,
    pub(super) bypass: HashSet<UserId>,
    pub(super) fail_open: bool,
    pub(super) refusal: Option<RefusalHandler>,
    /// Who the client is, for the fair share of cold lookups.
    pub(super) client_key: ClientKeys,
    /// What each caller may spend, when the gate meters credits.
    pub(super) credits: Option<super::metered::Metering>,
}

/// The hit path, decided without awaiting anything: a grant for a caller
/// whose fresh answer is cached and lets them in, who then goes straight to
/// the inner service, with no boxed future and no span. `None` for anything
/// else (a miss, a refusal, an expired answer, DEBUG logging on, a status
/// chosen in development): the request takes the full [`check`].
pub(crate) fn cached_grant(
    gate: &Gate,
    identity: &Result<Option<Identity>, IdentityError>,
    parts: &Parts,
) -> Option<Granted> {
    if development::asked(parts) {
        return None;
    }
    let cost = parts.extensions.get::<CreditCost>().map(|c| c.0);
    match identity {
        // With DEBUG on, every request gets its span from the full check.
        Ok(Some(identity)) if !tracing::enabled!(tracing::Level::DEBUG) => gate
            .grant_cached(identity)
            .and_then(|granted| gate.meter_now(granted, cost)),
        _ => None,
    }
}

/// The check a gated request goes through before the inner service.
pub(crate) async fn check<B>(
    gate: Arc<Gate>,
    identity: Result<Option<Identity>, IdentityError>,
    parts: Parts,
    body: B,
) -> Result<(Request<B>, Option<Box<Meter>>), Response> {
    // DEBUG, and no formatting: with an INFO subscriber this costs nothing.
    let first = &gate.resources[0];
    let span = tracing::debug_span!(
        "require_paid",
        resource_type = first.kind().as_str(),
        resource_id = first.id().as_str(),
        mode = Empty,
        outcome = Empty,
        cache = Empty,
        stale = Empty,
        upstream_ms = Empty,
    );
    let paywall = &gate.paywall;
    let cost = parts.extensions.get::<CreditCost>().map(|c| c.0);
    let decision = async {
        let granted = gate.decide(paywall, identity, &parts).await?;
        gate.meter(granted, cost).await
    }
    .instrument(span.clone())
    .await;
    match decision {
        Ok(granted) => {
            span.record("outcome", "granted");
            let mut req = Request::from_parts(parts, body);
            let meter = granted.admit(paywall, &mut req);
            Ok((req, meter))
        }
        Err(refusal) => {
            let reason = refusal.reason;
            paywall.counters().refused(reason);
            span.record("outcome", reason.as_str());
            let mut response = match &gate.refusal {
                Some(handler) => {
                    // The credits' RateLimit fields, whoever writes the body.
                    let headers = refusal.headers.clone();
                    let mut response = (handler.0)(refusal, &parts);
                    if let Some(headers) = headers {
                        response.headers_mut().extend(*headers);
                    }
                    response
                }
                None => refusal.into_response(),
            };
            // For a TraceLayer or metrics outside, whoever wrote the body.
            response.extensions_mut().insert(reason);
            Err(response)
        }
    }
}

impl Gate {
    /// `granted`, its cost reserved if that needs no wait; `None` sends the
    /// request the full check's way.
    fn meter_now(&self, granted: Granted, cost: Option<u64>) -> Option<Granted> {
        match &self.credits {
            Some(credits) => credits.meter_now(&self.paywall, granted, cost),
            None => Some(granted),
        }
    }

    /// `granted`, its cost reserved, or the refusal of an allowance spent.
    async fn meter(&self, granted: Granted, cost: Option<u64>) -> Result<Granted, Refusal> {
        match &self.credits {
            Some(credits) => credits.meter(&self.paywall, granted, cost).await,
            None => Ok(granted),
        }
    }

    /// A free try for `lookup`'s non-buyer, if the gate gives them; else
    /// `refusal`.
    fn free_try(&self, lookup: Option<Lookup>, refusal: Refusal) -> Result<Granted, Refusal> {
        match &self.credits {
            Some(credits) => credits.free_try(lookup, refusal),
            None => Err(refusal),
        }
    }

    /// A grant from fresh cached answers alone, or `None`. Resources are
    /// tried in the full check's order, stopping where it would have to
    /// wait, so the fast path grants exactly what the full check grants.
    fn grant_cached(&self, identity: &Identity) -> Option<Granted> {
        let paywall = &self.paywall;
        match identity {
            Identity::PaymentToken(token) => {
                let lookup = paywall.cached_token(token)?;
                let resource = self.resources.iter().find(|r| *r == lookup.resource())?;
                self.judge(lookup, resource).ok()
            }
            Identity::User(user) => {
                for resource in &self.resources {
                    let lookup = paywall.cached_user(user, resource)?;
                    if !answers(&lookup, user, resource) {
                        return None;
                    }
                    if let Ok(granted) = self.judge(lookup, resource) {
                        return Some(granted);
                    }
                }
                None
            }
        }
    }

    async fn decide(
        &self,
        paywall: &Paywall,
        identity: Result<Option<Identity>, IdentityError>,
        parts: &Parts,
    ) -> Result<Granted, Refusal> {
        let span = tracing::Span::current();
        let identity = identity.map_err(|e| {
            tracing::debug!(error = %e, "refused: unreadable identity");
            Refusal::new(e.status(), RefusalReason::InvalidIdentity, e.message())
        })?;
        if development::asked(parts) {
            return self.decide_in_development(paywall, identity.as_ref(), parts);
        }
        match identity {
            None => self.no_identity(),
            Some(Identity::PaymentToken(token)) => {
                span.record("mode", Mode::Token.as_str());
                self.decide_token(paywall, &token, parts).await
            }
            Some(Identity::User(user)) => {
                span.record("mode", Mode::User.as_str());
                self.decide_user(paywall, &user).await
            }
        }
    }

    fn no_identity(&self) -> Result<Granted, Refusal> {
        tracing::debug!("refused: no identity");
        Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            RefusalReason::NoIdentity,
            "who is asking? A plugin sends its payment token (figma.payments.getPluginPaymentTokenAsync()) in the X-Figma-Payment-Token header; a website signs its visitor in with Figma first",
        ))
    }

    async fn decide_token(
        &self,
        paywall: &Paywall,
        token: &PluginPaymentToken,
        parts: &Parts,
    ) -> Result<Granted, Refusal> {
        let started = Instant::now();
        // The client is only asked for on a cold miss.
        let client = || self.client_key.0.client_key(parts);
        let lookup = match paywall.lookup_token_as(token, client).await {
            Ok(lookup) => lookup,
            Err(error) => return self.upstream_failure(paywall, &error, Mode::Token).await,
        };
        record_lookup(&lookup, started);
        let gated = self.resources.iter().find(|r| *r == lookup.resource());
        let Some(resource) = gated else {
            tracing::debug!(
                token_resource = %lookup.resource(),
                user_id = %lookup.user_id(),
                "refused: the plugin payment token was issued for another resource"
            );
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                RefusalReason::WrongResource,
                "this plugin payment token was issued for another plugin or widget",
            ));
        };
        self.judge_or_free_try(lookup, resource)
    }

    /// A request with a status chosen in development: judged as Figma's
    /// answer would be, in development mode only.
    fn decide_in_development(
        &self,
        paywall: &Paywall,
        identity: Option<&Identity>,
        parts: &Parts,
    ) -> Result<Granted, Refusal> {
        let chosen = development::status(paywall, parts)?;
        let Some(identity) = identity else {
            return self.no_identity();
        };
        let resource = &self.resources[0];
        let lookup = development::lookup(paywall, identity, chosen, resource);
        self.judge_or_free_try(lookup, resource)
    }

    /// `lookup` judged, or a free try for its non-buyer if the gate gives
    /// them.
    fn judge_or_free_try(&self, lookup: Lookup, resource: &Resource) -> Result<Granted, Refusal> {
        let free_try = self.free_try_with(&lookup);
        self.judge(lookup, resource)
            .or_else(|refusal| self.free_try(free_try, refusal))
    }

    /// `lookup` again, if a refusal of it may still spend a free try.
    fn free_try_with(&self, lookup: &Lookup) -> Option<Lookup> {
        let metering = self.credits.as_ref()?;
        metering.gives_free_tries(lookup).then(|| lookup.clone())
    }

    async fn decide_user(&self, paywall: &Paywall, user: &UserId) -> Result<Granted, Refusal> {
        let mut refusal = None;
        // The first answer that may spend a free try, once every resource
        // refused.
        let mut free_try = None;
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
            if !answers(&lookup, user, resource) {
                tracing::warn!(
                    asked_user = %user, asked_resource = %resource,
                    answered_user = %lookup.user_id(), answered_resource = %lookup.resource(),
                    "refused: Figma's answer is about another user or resource than asked"
                );
                refusal.get_or_insert(Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    RefusalReason::AnswerMismatch,
                    "Figma's answer did not match the question; try again later",
                )));
                continue;
            }
            if free_try.is_none() {
                free_try = self.free_try_with(&lookup);
            }
            match self.judge(lookup, resource) {
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
        let refusal = refusal.unwrap_or_else(unreachable_refusal);
        match refusal {
            Err(not_paid) if not_paid.reason == RefusalReason::NotPaid => {
                self.free_try(free_try, not_paid)
            }
            refusal => refusal,
        }
    }

    /// PAID passes, TRIAL passes unless refused, the bypass list passes;
    /// everything else (UNPAID, NOT_SUPPORTED, unknown) is refused.
    fn judge(&self, lookup: Lookup, resource: &Resource) -> Result<Granted, Refusal> {
        let status = lookup.payment_status();
        let via = match status {
            PaymentStatus::Paid => Some(AccessVia::Paid),
            PaymentStatus::Trial if self.allow_trial => Some(AccessVia::Trial),
            _ if self.bypass.contains(lookup.user_id()) => Some(AccessVia::Bypass),
            _ => None,
        };
        match via {
            Some(via) => Ok(Granted::new(PaidAccess {
                via,
                lookup: Some(lookup),
            })),
            None => {
                tracing::debug!(%status, "refused: not paid");
                let mut refusal = Refusal::new(
                    StatusCode::PAYMENT_REQUIRED,
                    RefusalReason::NotPaid,
                    format!(
                        "payment required: buy {} on Figma Community ({})",
                        resource,
                        resource.community_url()
                    ),
                );
                refusal.payment_status = Some(status.clone());
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
        let refusal = refusal_for(paywall, error, mode).await;
        // Fail-open trusts the shared circuit breaker, never this one
        // lookup: a junk token that makes Figma (or anything between) fail
        // must not open the gate while Figma answers everybody else.
        if self.fail_open
            && error.is_figma_failure()
            && paywall.client().figma_failing_for().is_some()
        {
            tracing::warn!(error = %error, "Figma could not answer; letting the caller through (fail-open)");
            return Ok(Granted::new(PaidAccess {
                via: AccessVia::FailOpen,
                lookup: None,
            }));
        }
        Err(refusal)
    }
}

/// Whether Figma's answer is about the user and resource asked about.
fn answers(lookup: &Lookup, user: &UserId, resource: &Resource) -> bool {
    lookup.user_id() == user && lookup.resource() == resource
}

fn record_lookup(lookup: &Lookup, started: Instant) {
    let span = tracing::Span::current();
    span.record("cache", if lookup.from_cache() { "hit" } else { "miss" });
    span.record("stale", lookup.stale());
    if !lookup.from_cache() {
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

/// A replacement for the refusal response; see
/// [`RequirePaidLayer::on_refusal`].
#[derive(Clone)]
pub(crate) struct RefusalHandler(pub(crate) Arc<RespondFn>);

type RespondFn = dyn Fn(Refusal, &Parts) -> Response + Send + Sync;

impl fmt::Debug for RefusalHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefusalHandler(..)")
    }
}
