//! CORS in front of the gate, as a plugin's UI meets it: its iframe's
//! origin is `null`, so the browser preflights every call that carries
//! `X-Figma-Payment-Token` or a JSON body, without the token, and reads an
//! answer only when it carries `Access-Control-Allow-Origin`.

use axum::{
    http::{header, Method},
    routing::{any, post},
    Router,
};
use figma_paywall::{
    identity::PAYMENT_TOKEN_HEADER,
    mock::{MockClock, MockFigma},
    PaidAccess, PaymentStatus, Paywall, RequirePaidLayer,
};
use tower_http::cors::{Any, CorsLayer};

use crate::common::*;

/// The layer `docs/plugin.md` and `ai_endpoint` put in front of the gate.
fn cors_for_plugins() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE, PAYMENT_TOKEN_HEADER])
        .expose_headers([header::RETRY_AFTER])
}

fn generate() -> Router {
    Router::new().route(
        "/generate",
        post(|access: PaidAccess| async move {
            format!(
                "generated, from cache: {}",
                access.lookup.is_some_and(|l| l.from_cache())
            )
        }),
    )
}

/// What a browser sends before `fetch(url, {method: 'POST', headers:
/// {'X-Figma-Payment-Token': …, 'Content-Type': 'application/json'}})`.
async fn preflight(base: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{base}/generate"))
        .header("origin", "null")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-figma-payment-token",
        )
        .send()
        .await
        .unwrap()
}

async fn post_from_null(base: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/generate"))
        .header("origin", "null")
        .header("content-type", "application/json")
        .body(r#"{"prompt": "a cat"}"#);
    if let Some(token) = token {
        req = req.header("x-figma-payment-token", token);
    }
    req.send().await.unwrap()
}

fn header_of<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} on {}", response.status()))
}

#[tokio::test]
async fn a_preflight_is_answered_by_the_cors_layer_and_costs_figma_nothing() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    let gate = || RequirePaidLayer::new(&paywall, plugin());
    // The layer outside the gate, as documented: it answers the preflight.
    let outside = serve(generate().layer(gate()).layer(cors_for_plugins())).await;
    let answer = preflight(&outside).await;
    assert!(answer.status().is_success(), "{}", answer.status());
    assert_eq!(header_of(&answer, "access-control-allow-origin"), "*");
    let allowed = header_of(&answer, "access-control-allow-headers");
    assert!(allowed.contains("x-figma-payment-token"), "{allowed}");
    assert!(header_of(&answer, "access-control-allow-methods").contains("POST"));
    // Inside the gate, it never sees one: the gate answers it, allowing
    // nothing, so a browser refuses the call (fail closed).
    let inside = serve(generate().layer(cors_for_plugins()).layer(gate())).await;
    let answer = preflight(&inside).await;
    assert_eq!(answer.status(), 204);
    assert!(answer
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_eq!(figma.payment_requests(), 0);
}

#[tokio::test]
async fn buyers_pass_and_every_refusal_is_readable_from_origin_null() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    // One lookup, then the budget (or this client's share of it) is spent:
    // the second new token is refused for now, with Retry-After.
    let client = figma
        .client_builder()
        .clock(&clock)
        .rate_limit(1, 1)
        .build()
        .unwrap();
    let paywall = Paywall::new(client);
    let app = generate()
        .layer(RequirePaidLayer::new(&paywall, plugin()))
        .layer(cors_for_plugins());
    let base = serve_with_peers(app).await;
    set(&figma, "2001", &plugin(), PaymentStatus::Paid);
    let buyer = figma.issue_token(&user("2001"), &plugin());
    let buyer_again = figma.issue_token(&user("2001"), &plugin());

    let paid = post_from_null(&base, Some(buyer.expose_secret())).await;
    assert_eq!(paid.status(), 200);
    assert_eq!(header_of(&paid, "access-control-allow-origin"), "*");

    let nobody = post_from_null(&base, None).await;
    assert_eq!(nobody.status(), 401);
    assert_eq!(header_of(&nobody, "access-control-allow-origin"), "*");

    let spent = post_from_null(&base, Some(buyer_again.expose_secret())).await;
    assert!(
        matches!(spent.status().as_u16(), 429 | 503),
        "{}",
        spent.status()
    );
    assert_eq!(header_of(&spent, "access-control-allow-origin"), "*");
    assert!(header_of(&spent, "retry-after").parse::<u64>().unwrap() > 0);
    assert_eq!(
        header_of(&spent, "access-control-expose-headers"),
        "retry-after"
    );
    let body: serde_json::Value = spent.json().await.unwrap();
    let reason = body["reason"].as_str().unwrap();
    assert!(
        ["rate_limited", "too_many_lookups"].contains(&reason),
        "{body}"
    );
}

#[tokio::test]
async fn a_non_buyers_402_carries_the_cors_headers_and_its_reason() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    let app = generate()
        .layer(RequirePaidLayer::new(&paywall, plugin()))
        .layer(cors_for_plugins());
    let base = serve_with_peers(app).await;
    set(&figma, "2003", &plugin(), PaymentStatus::Unpaid);
    let token = figma.issue_token(&user("2003"), &plugin());
    let refused = post_from_null(&base, Some(token.expose_secret())).await;
    assert_eq!(refused.status(), 402);
    assert_eq!(header_of(&refused, "access-control-allow-origin"), "*");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["reason"], "not_paid");
    assert_eq!(body["resource_id"], PLUGIN);
}

/// A preflight-shaped request with a body and an upgrade, to a handler
/// that ignores the method (axum's `any`, and a fallback): the gate answers
/// it, so no handler runs, nothing is read of the body, no tunnel opens,
/// and no paid content comes back.
#[tokio::test]
async fn without_a_cors_layer_a_preflight_reaches_no_handler() {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    let gate = RequirePaidLayer::new(&paywall, plugin());
    let ran = Arc::new(AtomicUsize::new(0));
    let paid = |ran: Arc<AtomicUsize>| {
        move |body: String| async move {
            ran.fetch_add(1, Ordering::SeqCst);
            format!("paid content; you sent {body}")
        }
    };
    let any_method = Router::new()
        .route("/generate", any(paid(ran.clone())))
        .layer(gate.clone());
    let fallback = Router::new()
        .fallback(paid(ran.clone()))
        .layer(gate.clone());
    let post_only = generate().layer(gate);
    for app in [any_method, fallback, post_only] {
        let base = serve(app).await;
        let answer = reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{base}/generate"))
            .header("origin", "null")
            .header("access-control-request-method", "POST")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body("a prompt that costs the creator money")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204);
        assert!(answer
            .headers()
            .get("access-control-allow-origin")
            .is_none());
        assert_eq!(answer.text().await.unwrap(), "");
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        0,
        "a handler ran for a preflight"
    );
    assert_eq!(figma.payment_requests(), 0);
}
