//! The gateway's routes: forward auth at `GET /_figma_paywall/auth`,
//! `GET /_figma_paywall/health`, and with `--upstream` every other path,
//! gated and forwarded (`proxy.rs`); `--cors` around them all (`cors.rs`).

use axum::{
    extract::{Request, State},
    handler::Handler,
    http::{request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode},
    middleware::{from_fn_with_state, Next},
    response::{IntoResponse, Response},
    routing::{any, get},
    Extension, Json, Router,
};
use figma_paywall::{
    credits::CreditCharge,
    identity::{
        ForwardedFor, Identity, IdentityError, IdentitySource, PaymentTokenHeader,
        PaymentTokenQuery,
    },
    is_cors_preflight,
    login::FigmaLogin,
    PaidAccess, Paywall, Refusal, RefusalReason, RequirePaidLayer,
};
use serde_json::json;
use tower_layer::Layer;

use crate::{
    config::Gateway,
    credits::{own_path, remaining_header, PriceByPath, PriceLayer},
    envelope::envelope,
    flags::Secret,
    forwarded::{identity_headers, ANSWER_AGE},
    preflight::PreflightFirst,
    site::Page,
};

/// Where proxies put the URI of the request they ask about: nginx's
/// `auth_request` (with `proxy_set_header X-Original-URI $request_uri`),
/// and Traefik's and Caddy's forward auth.
const ORIGINAL_URI: [HeaderName; 2] = [
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-forwarded-uri"),
];

/// A non-buyer's refusal answered with `--deny-status`; any other as it is.
fn with_deny_status(mut refusal: Refusal, deny: StatusCode) -> Refusal {
    if refusal.reason == RefusalReason::NotPaid {
        refusal.status = deny;
    }
    refusal
}

/// The real status of a forward-auth refusal, for a proxy that passes
/// only some on.
const REFUSAL_STATUS: HeaderName = HeaderName::from_static("x-figma-refusal-status");

/// A forward-auth refusal's reason (`not_paid`, …), for a proxy that
/// writes the answer's body itself (nginx): a plugin opens checkout on a
/// 402 whose `reason` is `not_paid`.
const REFUSAL_REASON: HeaderName = HeaderName::from_static("x-figma-refusal-reason");

/// A forward-auth refusal: its status in `X-Figma-Refusal-Status`, and
/// answered as `refusals_as` unless it is a 401 (`--refusals-as`).
fn forward_auth_refusal(refusal: Refusal, refusals_as: Option<StatusCode>) -> Response {
    let (status, reason) = (refusal.status, refusal.reason);
    let mut response = refusal.into_response();
    response
        .headers_mut()
        .insert(REFUSAL_STATUS, status.as_u16().into());
    response
        .headers_mut()
        .insert(REFUSAL_REASON, HeaderValue::from_static(reason.as_str()));
    if let Some(to) = refusals_as.filter(|_| status != StatusCode::UNAUTHORIZED) {
        *response.status_mut() = to;
    }
    response
}

/// A CORS preflight to forward auth, without `--cors` (which answers
/// every preflight first): refused, 403 (which nginx's `auth_request`
/// passes on too, and `--refusals-as` may change to another 4xx). Every
/// proxy lets a request through on forward auth's 2xx, and the request
/// it asks about may be shaped like a preflight and carry a body or an
/// upgrade: never on the gateway's say-so. The proxy answers preflights
/// itself (docs/gateway.md).
async fn refuse_preflight(
    State(refusals_as): State<Option<StatusCode>>,
    req: Request,
    next: Next,
) -> Response {
    if !is_cors_preflight(&req) {
        return next.run(req).await;
    }
    let status = StatusCode::FORBIDDEN;
    let mut response = envelope(
        status,
        "cors_preflight",
        "a CORS preflight reached forward auth: answer preflights in the proxy in front (docs/gateway.md)",
    );
    response
        .headers_mut()
        .insert(REFUSAL_STATUS, status.as_u16().into());
    response
        .headers_mut()
        .insert(REFUSAL_REASON, HeaderValue::from_static("cors_preflight"));
    if let Some(to) = refusals_as {
        *response.status_mut() = to;
    }
    response
}

/// The gate, as the flags configure it.
fn gate(gateway: &Gateway) -> RequirePaidLayer {
    let deny = gateway.deny_status;
    let (first, more) = gateway
        .resources
        .split_first()
        .expect("the flags name at least one resource");
    let gate = more
        .iter()
        .cloned()
        .fold(
            RequirePaidLayer::new(&gateway.paywall, first.clone()),
            RequirePaidLayer::or_buyers_of,
        )
        .allow_trial(gateway.allow_trial)
        .bypass(gateway.bypass.iter().cloned())
        // The proxies in front (--trusted-proxies) say who the client is.
        .client_key(ForwardedFor::trusting(gateway.trusted.0.iter().copied()))
        .on_refusal(move |refusal, _parts| with_deny_status(refusal, deny).into_response());
    match &gateway.credits {
        Some(metered) => gate.credits(metered.credits.clone()),
        None => gate,
    }
}

/// The gateway's routes, with `--cors`'s headers on every answer. Forward
/// auth's `OPTIONS` requests go around the CORS layer, which would answer
/// them 2xx itself, and a proxy lets through what forward auth answers 2xx:
/// a preflight is refused there, any other asked about as any request.
pub(crate) fn router(gateway: &Gateway, login: Option<(FigmaLogin, Page)>) -> Router {
    let routes = forward_auth(gateway).merge(routes(gateway, login));
    let routes = match &gateway.cors {
        Some(cors) => routes
            .layer(axum::middleware::map_response(
                crate::cors::drop_upstream_cors,
            ))
            .layer(cors.clone())
            .layer(from_fn_with_state(
                forward_auth(gateway),
                options_around_cors,
            )),
        None => routes,
    };
    // Several Hosts are refused before the router (serve.rs).
    match gateway.access_log {
        true => routes.layer(crate::access::layer()),
        false => routes,
    }
}

/// Forward auth's `OPTIONS` requests to `forward_auth`, without CORS.
async fn options_around_cors(
    State(mut forward_auth): State<Router>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let to_forward_auth =
        path == "/_figma_paywall/auth" || path.starts_with("/_figma_paywall/auth/");
    if req.method() != http::Method::OPTIONS || !to_forward_auth {
        return next.run(req).await;
    }
    match tower_service::Service::call(&mut forward_auth, req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Forward auth, for nginx, Caddy, Traefik and Envoy.
fn forward_auth(gateway: &Gateway) -> Router {
    let (deny, refusals_as) = (gateway.deny_status, gateway.refusals_as);
    let forward_auth =
        gate(gateway)
            .identity(forwarded_identity)
            .on_refusal(move |refusal, _parts| {
                forward_auth_refusal(with_deny_status(refusal, deny), refusals_as)
            });
    // Any method: Envoy, Traefik and nginx ask with the request's own. A
    // preflight is refused before the gate, which would answer it 204.
    let refuse_preflight = from_fn_with_state(refusals_as, refuse_preflight);
    // What the original request costs, by its path.
    let price = PriceLayer::new(gateway.credits.clone(), original_path);
    Router::new()
        .route(
            "/_figma_paywall/auth",
            any(passed)
                .layer(forward_auth.clone())
                .layer(price.clone())
                .layer(refuse_preflight.clone()),
        )
        // Envoy's ext_authz appends the original path to the service's.
        .route(
            "/_figma_paywall/auth/{*original}",
            any(passed)
                .layer(forward_auth)
                .layer(price)
                .layer(refuse_preflight),
        )
}

fn routes(gateway: &Gateway, login: Option<(FigmaLogin, Page)>) -> Router {
    let app = Router::new()
        .route("/_figma_paywall/health", get(health))
        .with_state(Health {
            paywall: gateway.paywall.clone(),
            token: gateway.metrics_token.clone(),
        })
        .merge(crate::metrics::router(gateway))
        .merge(crate::credits::router(
            &gateway.paywall,
            gateway.credits.as_ref(),
            gateway.metrics_token.as_ref(),
        ));
    let Some(upstream) = &gateway.upstream else {
        return app;
    };
    // This router's own connections to the upstream (one router a worker).
    let upstream = upstream.own_pool();
    // The proxy's handler as a service, under the gate, with no router of
    // its own to go through; a preflight goes on as one before the gate
    // (with --cors, the CORS layer answers it before either).
    // The sign-in's own cookies stop here.
    let own_cookies: std::sync::Arc<[String]> = login
        .as_ref()
        .map(|(login, _)| login.cookie_names().map(str::to_owned).to_vec())
        .unwrap_or_default()
        .into();
    let proxy = crate::proxy::forward.with_state(crate::proxy::Proxy {
        own_cookies,
        upstream: upstream.clone(),
        recheck: crate::recheck::Recheck::new(
            gateway.paywall.clone(),
            &gateway.resources,
            gateway.allow_trial,
            &gateway.bypass,
            gateway.lifetimes,
        ),
    });
    match login {
        None => app.fallback_service(PreflightFirst::new(
            upstream,
            PriceByPath::new(
                gate(gateway).layer(proxy),
                gateway.credits.clone(),
                own_path,
            ),
        )),
        Some((login, page)) => {
            let deny = gateway.deny_status;
            let to_login = login.clone();
            let gate = gate(gateway).on_refusal(move |refusal, parts| {
                crate::site::refuse(with_deny_status(refusal, deny), parts, &to_login, &page)
            });
            let priced = PriceByPath::new(gate.layer(proxy), gateway.credits.clone(), own_path);
            app.merge(login.router())
                .fallback_service(PreflightFirst::new(upstream, priced))
                // The signed-in visitor, for the gate.
                .layer(login.layer())
        }
    }
}

/// The path of the request a proxy asks about: its original URI's
/// (nginx, Traefik, Caddy), else what Envoy appends to forward auth's.
fn original_path(req: &Request) -> Option<String> {
    if let Some(original) = ORIGINAL_URI.iter().find_map(|name| req.headers().get(name)) {
        let uri: http::Uri = original.to_str().ok()?.parse().ok()?;
        return Some(uri.path().to_owned());
    }
    req.uri()
        .path()
        .strip_prefix("/_figma_paywall/auth")
        .filter(|rest| rest.starts_with('/'))
        .map(str::to_owned)
}

/// The token of the request a proxy asks about: in its
/// `X-Figma-Payment-Token` header, else in the `plugin_payment_token` query
/// of the request (a backend asking directly, Envoy), else in that of its
/// original URI (nginx, Traefik, Caddy).
fn forwarded_identity(parts: &Parts) -> Result<Option<Identity>, IdentityError> {
    if let Some(identity) = PaymentTokenHeader.or(PaymentTokenQuery).identify(parts)? {
        return Ok(Some(identity));
    }
    let Some(original) = ORIGINAL_URI.iter().find_map(|name| parts.headers.get(name)) else {
        return Ok(None);
    };
    let uri: http::Uri = original
        .to_str()
        .ok()
        .and_then(|uri| uri.parse().ok())
        .ok_or_else(|| IdentityError::malformed("the original URI is not a URI"))?;
    let (original, ()) = http::Request::builder()
        .uri(uri)
        .body(())
        .map_err(|_| IdentityError::malformed("the original URI is not a URI"))?
        .into_parts();
    PaymentTokenQuery.identify(&original)
}

/// 200, naming the buyer (and what credits they have left) for the proxy
/// to pass on.
async fn passed(access: PaidAccess, charge: Option<Extension<CreditCharge>>) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(lookup) = &access.lookup {
        identity_headers(&lookup.info(), &mut headers);
        headers.insert(ANSWER_AGE, lookup.age().as_secs().into());
    }
    remaining_header(charge.as_ref().map(|c| &c.0), &mut headers);
    let served = crate::access::Served {
        user: access.lookup.as_ref().map(|l| l.user_id().clone()),
        upstream: None,
    };
    tracing::debug!(via = ?access.via, "passed");
    (StatusCode::OK, headers, Extension(served)).into_response()
}

/// What the health route reads: the paywall, and who may see its details.
#[derive(Clone)]
struct Health {
    paywall: Paywall,
    /// `--metrics-token`.
    token: Option<Secret>,
}

/// 200 while the gateway can serve; 503 while Figma is failing. The
/// details (the budget, active buyers, the refresh cycle: what would size
/// a flood) only to holders of the metrics token.
async fn health(State(health): State<Health>, headers: HeaderMap) -> Response {
    let stats = health.paywall.stats();
    let status = if stats.figma_failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let said = if stats.figma_failing {
        "figma_failing"
    } else {
        "serving"
    };
    let details = health
        .token
        .as_ref()
        .is_some_and(|token| token.held_by(&headers));
    if !details {
        return (status, Json(json!({ "status": said }))).into_response();
    }
    let body = json!({
        "status": said,
        "figma_failing": stats.figma_failing,
        "backing_off_secs": stats.backing_off_secs,
        "budget_per_minute": stats.budget_per_minute,
        "cached_entries": stats.cached_entries,
        "active_buyers": stats.active_buyers,
        "refresh_cycle_secs": stats.refresh_cycle_secs,
        "credits_spent": stats.credits_spent,
        "credits_refused": stats.credits_refused,
    });
    (status, Json(body)).into_response()
}
