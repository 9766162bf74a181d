//! The layer driven in-process with `oneshot`: no server, no mock Figma.
//! Answers are seeded into the paywall's cache; the one lookup that misses
//! goes to a closed loopback port, as if Figma were unreachable.

use std::{
    convert::Infallible,
    future::{ready, Ready},
    rc::Rc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    client::Question, PaidAccess, PaymentInformation, PaymentStatus, Paywall, PluginPaymentToken,
    RefusalReason, RequirePaidLayer, Resource, UserId,
};

fn plugin() -> Resource {
    Resource::plugin("1122334455").unwrap()
}

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

/// A paywall whose client can reach nothing: every miss fails to connect.
fn paywall() -> Paywall {
    Paywall::unreachable_for_tests()
}

async fn seed_token(paywall: &Paywall, token: &str, info: PaymentInformation) {
    let token = PluginPaymentToken::new(token).unwrap();
    paywall.seed(&Question::Token(token), info).await;
}

async fn seed_user(paywall: &Paywall, id: &str, resource: &Resource, info: PaymentInformation) {
    paywall
        .seed(&Question::User(user(id), resource.clone()), info)
        .await;
}

fn app(layer: RequirePaidLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(
                |info: Option<PaymentInformation>, access: PaidAccess| async move {
                    Json(json!({
                        "user": info.map(|i| i.user_id.to_string()),
                        "via": format!("{:?}", access.via),
                        "from_cache": access.lookup.as_ref().is_some_and(|l| l.from_cache()),
                    }))
                },
            ),
        )
        .layer(layer)
}

fn with_token(token: &str) -> Request<Body> {
    Request::get("/")
        .header("x-figma-payment-token", token)
        .body(Body::empty())
        .unwrap()
}

fn as_user(id: &str) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(UserId::new(id).unwrap());
    req
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Option<RefusalReason>, Value) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let reason = response.extensions().get::<RefusalReason>().copied();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, reason, body)
}

#[tokio::test]
async fn no_or_malformed_identities_are_refused_without_a_lookup() {
    let paywall = paywall();
    let app = app(RequirePaidLayer::new(&paywall, plugin()));
    let (status, reason, body) = call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason, Some(RefusalReason::NoIdentity));
    assert_eq!(body["reason"], "no_identity");
    let (status, reason, _) = call(&app, with_token("two words")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reason, Some(RefusalReason::InvalidIdentity));
    assert_eq!(paywall.client().upstream_calls().0, 0);
}

#[tokio::test]
async fn a_cached_paid_token_passes_with_its_answer() {
    let paywall = paywall();
    let info = PaymentInformation::new(user("2001"), &plugin(), PaymentStatus::Paid);
    seed_token(&paywall, "ppt_buyer", info).await;
    let app = app(RequirePaidLayer::new(&paywall, plugin()));
    let (status, reason, body) = call(&app, with_token("ppt_buyer")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(reason, None);
    assert_eq!(
        body,
        json!({"user": "2001", "via": "Paid", "from_cache": true})
    );
    let stats = paywall.stats();
    assert_eq!((stats.granted, stats.cache_hits), (1, 1));
    assert_eq!(paywall.client().upstream_calls().0, 0);
}

#[tokio::test]
async fn a_token_made_for_another_plugin_is_refused() {
    let paywall = paywall();
    let other = Resource::plugin("999").unwrap();
    let info = PaymentInformation::new(user("2001"), &other, PaymentStatus::Paid);
    seed_token(&paywall, "ppt_other", info).await;
    let (status, reason, _) = call(
        &app(RequirePaidLayer::new(&paywall, plugin())),
        with_token("ppt_other"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reason, Some(RefusalReason::WrongResource));
}

#[tokio::test]
async fn unpaid_is_402_and_a_custom_refusal_keeps_the_reason() {
    let paywall = paywall();
    let info = PaymentInformation::new(user("3001"), &plugin(), PaymentStatus::Unpaid);
    seed_user(&paywall, "3001", &plugin(), info).await;
    let (status, reason, body) = call(
        &app(RequirePaidLayer::new(&paywall, plugin())),
        as_user("3001"),
    )
    .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(reason, Some(RefusalReason::NotPaid));
    assert_eq!(body["payment_status"], "UNPAID");
    assert_eq!(body["resource_id"], "1122334455");

    let custom = RequirePaidLayer::new(&paywall, plugin())
        .on_refusal(|refusal, _| (refusal.status, "buy it first").into_response());
    let (status, reason, body) = call(&app(custom), as_user("3001")).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(body, "buy it first");
    assert_eq!(reason, Some(RefusalReason::NotPaid));
    assert_eq!(paywall.stats().refused["not_paid"], 2);
}

#[tokio::test]
async fn trials_pass_unless_turned_off_and_creators_pass_the_bypass() {
    let paywall = paywall();
    let trial = PaymentInformation::new(user("4001"), &plugin(), PaymentStatus::Trial);
    seed_user(&paywall, "4001", &plugin(), trial).await;
    let creator = PaymentInformation::new(user("1000"), &plugin(), PaymentStatus::Unpaid);
    seed_user(&paywall, "1000", &plugin(), creator).await;

    let default = app(RequirePaidLayer::new(&paywall, plugin()));
    let (status, _, body) = call(&default, as_user("4001")).await;
    assert_eq!((status, &body["via"]), (StatusCode::OK, &json!("Trial")));
    let paid_only = app(RequirePaidLayer::new(&paywall, plugin()).allow_trial(false));
    assert_eq!(
        call(&paid_only, as_user("4001")).await.0,
        StatusCode::PAYMENT_REQUIRED
    );
    let bypass = app(RequirePaidLayer::new(&paywall, plugin()).bypass([user("1000")]));
    let (status, _, body) = call(&bypass, as_user("1000")).await;
    assert_eq!((status, &body["via"]), (StatusCode::OK, &json!("Bypass")));
    assert_eq!(
        call(&default, as_user("1000")).await.0,
        StatusCode::PAYMENT_REQUIRED
    );
}

#[tokio::test]
async fn an_answer_about_another_user_is_refused() {
    let paywall = paywall();
    let someone_else = PaymentInformation::new(user("6"), &plugin(), PaymentStatus::Paid);
    seed_user(&paywall, "5", &plugin(), someone_else).await;
    let (status, reason, _) = call(
        &app(RequirePaidLayer::new(&paywall, plugin())),
        as_user("5"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(reason, Some(RefusalReason::AnswerMismatch));
}

#[tokio::test]
async fn an_unreachable_figma_is_503_and_fail_open_waits_for_the_breaker() {
    let paywall = paywall();
    let closed = app(RequirePaidLayer::new(&paywall, plugin()));
    let open = app(RequirePaidLayer::new(&paywall, plugin()).fail_open(true));
    // One failed lookup says nothing about Figma: even fail-open refuses.
    for (gate, user) in [(&open, "7"), (&closed, "8")] {
        let (status, reason, _) = call(gate, as_user(user)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reason, Some(RefusalReason::FigmaUnavailable));
    }
    assert!(!paywall.stats().figma_failing);
    // A third failure, and GET /v1/me fails too: the breaker opens.
    call(&closed, as_user("9")).await;
    assert!(paywall.stats().figma_failing);

    let (status, reason, body) = call(&open, as_user("7")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reason, None);
    assert_eq!(
        body,
        json!({"user": null, "via": "FailOpen", "from_cache": false})
    );
    let (status, reason, _) = call(&closed, as_user("7")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reason, Some(RefusalReason::FigmaUnavailable));
    // Three lookups and one GET /v1/me; none while the breaker is open.
    assert_eq!(paywall.client().upstream_calls().0, 4);
}

/// An inner service that is neither `Send` nor `Sync` and counts its calls:
/// the layer needs neither, and calls the instance that was made ready.
#[derive(Default)]
struct Local {
    calls: Rc<std::cell::Cell<u32>>,
    ready: bool,
}

/// A clone has not been made ready, whatever the original was.
impl Clone for Local {
    fn clone(&self) -> Self {
        Self {
            calls: self.calls.clone(),
            ready: false,
        }
    }
}

impl Service<Request<Body>> for Local {
    type Response = Response;
    type Error = Infallible;
    type Future = Ready<Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        assert!(self.ready, "called an instance that was not made ready");
        self.calls.set(self.calls.get() + 1);
        ready(Ok(Response::new(Body::from("inner"))))
    }
}

#[tokio::test]
async fn the_inner_service_needs_no_send_and_is_the_one_made_ready() {
    let paywall = paywall();
    let info = PaymentInformation::new(user("2001"), &plugin(), PaymentStatus::Paid);
    seed_token(&paywall, "ppt_buyer", info).await;
    let inner = Local::default();
    let calls = inner.calls.clone();
    let service = RequirePaidLayer::new(&paywall, plugin()).layer(inner);
    let response = service
        .clone()
        .oneshot(with_token("ppt_buyer"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = service.oneshot(with_token("ppt_nobody")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.get(), 1);
}
