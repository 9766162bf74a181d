//! The RequirePaid layer against the mock Figma.

use std::time::Duration;

use crate::common::*;
use axum::{body::Body, response::IntoResponse, routing::get, Router};
use figma_paywall::{
    identity::Identity,
    mock::{Fault, MockClock, MockFigma},
    PaymentInformation, PaymentStatus, RefusalReason, RequirePaidLayer,
};
use http::{Request, StatusCode};
use serde_json::json;

async fn start() -> (MockFigma, figma_paywall::Paywall) {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    (figma, paywall)
}

#[tokio::test]
async fn each_status_in_each_identity_mode() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let cases = [
        (PaymentStatus::Paid, StatusCode::OK, "Paid"),
        (PaymentStatus::Trial, StatusCode::OK, "Trial"),
        (PaymentStatus::Unpaid, StatusCode::PAYMENT_REQUIRED, ""),
        (
            PaymentStatus::NotSupported,
            StatusCode::PAYMENT_REQUIRED,
            "",
        ),
        (
            PaymentStatus::Other("REFUNDED".into()),
            StatusCode::PAYMENT_REQUIRED,
            "",
        ),
    ];
    for (i, (status, want, via)) in cases.into_iter().enumerate() {
        let id = format!("30{i}");
        set(&figma, &id, &plugin(), status.clone());
        let token = figma.issue_token(&user(&id), &plugin());
        for reply in [
            call(&app, with_token(token.expose_secret())).await,
            call(&app, as_user(&id)).await,
        ] {
            assert_eq!(reply.status, want, "{status}: {}", reply.body);
            if want == StatusCode::OK {
                assert_eq!(reply.body["via"], via);
                assert_eq!(reply.body["info"]["user_id"], id);
                assert_eq!(
                    reply.body["info"]["payment_status"]["type"],
                    status.as_str()
                );
            } else {
                assert_eq!(
                    reply.body,
                    json!({
                        "error": true,
                        "status": 402,
                        "reason": "not_paid",
                        "message": format!("payment required: buy PLUGIN {PLUGIN} on Figma Community (https://www.figma.com/community/plugin/{PLUGIN})"),
                        "payment_status": status.as_str(),
                        "resource_id": PLUGIN,
                    })
                );
            }
        }
    }
}

#[tokio::test]
async fn trial_can_be_refused() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).allow_trial(false));
    set(&figma, "7", &plugin(), PaymentStatus::Trial);
    let reply = call(&app, as_user("7")).await;
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(reply.body["payment_status"], "TRIAL");
}

#[tokio::test]
async fn header_and_query_tokens_over_real_http() {
    let (figma, paywall) = start().await;
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let token = figma.issue_token(&user("5"), &plugin());
    let base = serve(echo_app().layer(RequirePaidLayer::new(&paywall, plugin()))).await;
    let http = reqwest::Client::new();

    let by_header = http
        .get(format!("{base}/generate"))
        .header("X-Figma-Payment-Token", token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status(), 200);
    let by_query = http
        .get(format!("{base}/generate"))
        .query(&[("plugin_payment_token", token.expose_secret())])
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let body: serde_json::Value = by_query.json().await.unwrap();
    assert_eq!(body["info"]["user_id"], "5");
    // The second request was answered from the cache.
    assert_eq!(body["from_cache"], true);
    assert_eq!(figma.payment_requests(), 1);

    let nobody = http.get(format!("{base}/generate")).send().await.unwrap();
    assert_eq!(nobody.status(), 401);
}

#[tokio::test]
async fn every_refusal_has_its_status_and_envelope() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));

    // No identity.
    let reply = call(&app, Request::get("/generate").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["error"], true);
    assert_eq!(reply.body["status"], 401);
    assert_eq!(reply.body["reason"], "no_identity");
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("X-Figma-Payment-Token"));

    // A malformed token: 400, Figma not asked.
    let reply = call(&app, with_token("has space")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["reason"], "invalid_identity");

    assert_eq!(figma.payment_requests(), 0);

    // A token Figma refuses: 401.
    let reply = call(&app, with_token("ppt_forged")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["reason"], "token_rejected");

    // Figma failing: 503 with Retry-After, never a 500.
    figma.push_fault(Fault::Status(500));
    let reply = call(&app, as_user("8")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["reason"], "figma_unavailable");
    assert!(reply.headers.contains_key("retry-after"));

    // Figma rate limiting: 503 with Figma's Retry-After.
    figma.push_fault(Fault::RateLimited { retry_after: 30 });
    let reply = call(&app, as_user("9")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body["reason"], "rate_limited");
    assert_eq!(reply.headers["retry-after"], "30");
}

#[tokio::test]
async fn a_token_for_another_plugin_is_refused() {
    let (figma, paywall) = start().await;
    let other = figma_paywall::Resource::plugin("999").unwrap();
    set(&figma, "5", &other, PaymentStatus::Paid);
    let token = figma.issue_token(&user("5"), &other);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let reply = call(&app, with_token(token.expose_secret())).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["reason"], "wrong_resource");
    // A widget with the same number is another resource too.
    let widget = figma_paywall::Resource::widget(PLUGIN).unwrap();
    set(&figma, "6", &widget, PaymentStatus::Paid);
    let token = figma.issue_token(&user("6"), &widget);
    let reply = call(&app, with_token(token.expose_secret())).await;
    assert_eq!(reply.body["reason"], "wrong_resource");
}

#[tokio::test]
async fn an_answer_about_someone_else_is_refused() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    for meta in [
        json!({"user_id": "666", "resource_id": PLUGIN, "resource_type": "PLUGIN", "payment_status": {"type": "PAID"}}),
        json!({"user_id": "5", "resource_id": "1", "resource_type": "PLUGIN", "payment_status": {"type": "PAID"}}),
        json!({"user_id": "5", "resource_id": PLUGIN, "resource_type": "WIDGET", "payment_status": {"type": "PAID"}}),
    ] {
        figma.push_fault(Fault::Answer(
            json!({"status": 200, "error": false, "meta": meta}),
        ));
        let reply = call(&app, as_user("5")).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{meta}");
        assert_eq!(reply.body["reason"], "answer_mismatch");
        paywall.invalidate_all().await;
    }
}

#[tokio::test]
async fn concurrent_requests_for_one_cold_key_make_one_call() {
    let (figma, paywall) = start().await;
    figma.set_latency(Duration::from_millis(200));
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let token = figma.issue_token(&user("5"), &plugin());
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let replies = futures_util::future::join_all(
        (0..500).map(|_| call(&app, with_token(token.expose_secret()))),
    )
    .await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(figma.payment_requests(), 1);

    // Within the lifetime, no more calls.
    for _ in 0..50 {
        assert_eq!(
            call(&app, with_token(token.expose_secret())).await.status,
            200
        );
    }
    assert_eq!(figma.payment_requests(), 1);
}

#[tokio::test]
async fn an_expired_answer_is_asked_again() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = paywall_on(&figma, &clock, |b| b.stale_grace(Duration::ZERO));
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    assert_eq!(call(&app, as_user("5")).await.status, 402);
    assert_eq!(call(&app, as_user("5")).await.status, 402);
    assert_eq!(figma.payment_requests(), 1);
    // The user buys; once the UNPAID answer expires, they get in.
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    clock.advance(Duration::from_millis(4_900));
    assert_eq!(call(&app, as_user("5")).await.status, 402);
    assert_eq!(figma.payment_requests(), 1);
    clock.advance(Duration::from_millis(200)); // past the 5 s UNPAID lifetime
    assert_eq!(call(&app, as_user("5")).await.status, 200);
    assert_eq!(figma.payment_requests(), 2);
}

#[tokio::test]
async fn a_paid_answer_is_refreshed_before_it_expires() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = paywall_on(&figma, &clock, |b| b);
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    assert_eq!(call(&app, as_user("5")).await.status, 200);
    // Before 80 % of its 10-minute life: served, not refreshed.
    clock.advance(Duration::from_secs(7 * 60));
    assert_eq!(call(&app, as_user("5")).await.body["from_cache"], true);
    assert_eq!(paywall.stats().background_refreshes, 0);
    // In the last fifth of its life the answer is served and refreshed behind.
    clock.advance(Duration::from_secs(90));
    let reply = call(&app, as_user("5")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["from_cache"], true);
    eventually("the refresh reached Figma and landed", async || {
        figma.payment_requests() == 2 && paywall.stats().lookups_in_flight == 0
    })
    .await;
    // After the old lifetime the refreshed answer is still fresh: no call.
    clock.advance(Duration::from_secs(150));
    let reply = call(&app, as_user("5")).await;
    assert_eq!(reply.body["from_cache"], true);
    assert_eq!(figma.payment_requests(), 2);
    assert_eq!(paywall.stats().background_refreshes, 1);
}

#[tokio::test]
async fn invalidation_drops_a_users_answers() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let token = figma.issue_token(&user("5"), &plugin());
    assert_eq!(call(&app, as_user("5")).await.status, 402);
    assert_eq!(
        call(&app, with_token(token.expose_secret())).await.status,
        402
    );
    assert_eq!(figma.payment_requests(), 2);
    // Checkout completes; the app drops the cached answers.
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    paywall.invalidate_user(&user("5")).await;
    assert_eq!(call(&app, as_user("5")).await.status, 200);
    assert_eq!(
        call(&app, with_token(token.expose_secret())).await.status,
        200
    );
    assert_eq!(figma.payment_requests(), 4);
    // Another user's answers stay.
    assert_eq!(call(&app, as_user("6")).await.status, 402);
    paywall.invalidate_user(&user("5")).await;
    assert_eq!(call(&app, as_user("6")).await.status, 402);
    assert_eq!(figma.payment_requests(), 5);
    // One token.
    paywall.invalidate_token(&token).await;
    assert_eq!(
        call(&app, with_token(token.expose_secret())).await.status,
        200
    );
    assert_eq!(figma.payment_requests(), 6);
}

#[tokio::test]
async fn or_buyers_of_passes_buyers_of_either() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).or_buyers_of(file()));
    set(&figma, "1", &file(), PaymentStatus::Paid);
    set(&figma, "2", &plugin(), PaymentStatus::Paid);
    let reply = call(&app, as_user("1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["info"]["resource_type"], "COMMUNITY_FILE");
    assert_eq!(call(&app, as_user("2")).await.status, 200);
    let reply = call(&app, as_user("3")).await;
    assert_eq!(reply.status, 402);
    // Tokens name their resource: a plugin token works.
    let token = figma.issue_token(&user("2"), &plugin());
    assert_eq!(
        call(&app, with_token(token.expose_secret())).await.status,
        200
    );
}

#[tokio::test]
async fn or_buyers_of_still_lets_in_when_one_lookup_fails() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).or_buyers_of(file()));
    set(&figma, "1", &file(), PaymentStatus::Paid);
    figma.push_fault(Fault::Status(500)); // the plugin lookup fails
    assert_eq!(call(&app, as_user("1")).await.status, 200);
}

#[tokio::test]
async fn the_bypass_list_lets_creators_in() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).bypass([user("1000")]));
    let reply = call(&app, as_user("1000")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["via"], "Bypass");
    assert_eq!(reply.body["info"]["payment_status"]["type"], "UNPAID");
    let token = figma.issue_token(&user("1000"), &plugin());
    assert_eq!(
        call(&app, with_token(token.expose_secret())).await.status,
        200
    );
    assert_eq!(call(&app, as_user("1001")).await.status, 402);
}

#[tokio::test]
async fn the_refusal_can_be_replaced() {
    let (_figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).on_refusal(
        |refusal, parts| {
            let wants_html = parts
                .headers
                .get("accept")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
            let reason = refusal.reason;
            assert!(matches!(
                reason,
                RefusalReason::NotPaid | RefusalReason::NoIdentity
            ));
            if wants_html {
                (
                    refusal.status,
                    axum::response::Html(format!("<p>{}</p>", reason)),
                )
                    .into_response()
            } else {
                refusal.into_response()
            }
        },
    ));
    let mut req = as_user("5");
    req.headers_mut()
        .insert("accept", "text/html".parse().unwrap());
    let reply = call(&app, req).await;
    assert_eq!(reply.status, 402);
    assert_eq!(reply.body, "<p>not_paid</p>");
    assert_eq!(call(&app, as_user("5")).await.body["reason"], "not_paid");
}

#[tokio::test]
async fn custom_identity_sources() {
    let (figma, paywall) = start().await;
    set(&figma, "77", &plugin(), PaymentStatus::Paid);
    let from_header = |parts: &http::request::Parts| {
        Ok(parts
            .headers
            .get("x-proxy-user")
            .map(|v| Identity::User(figma_paywall::UserId::new(v.to_str().unwrap()).unwrap())))
    };
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).identity(from_header));
    let req = Request::get("/generate")
        .header("x-proxy-user", "77")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, req).await.status, 200);
    // The default sources are not consulted any more.
    assert_eq!(call(&app, as_user("77")).await.status, 401);
}

#[tokio::test]
async fn the_extractor_without_the_layer_says_the_layer_is_missing() {
    let app = Router::new().route(
        "/",
        get(|p: PaymentInformation| async move { p.user_id.to_string() }),
    );
    let reply = call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.body.as_str().unwrap().contains("RequirePaid layer"));
}

#[tokio::test]
async fn logs_at_trace_hold_no_token() {
    let figma = mock_elsewhere();
    let paywall = paywall(&figma);
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let good = figma.issue_token(&user("5"), &plugin());
    let logs = CapturedLogs::start();
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    for token in [good.expose_secret(), "ppt_forgedSECRET", "bad token SECRET"] {
        call(&app, with_token(token)).await;
    }
    figma.push_fault(Fault::Status(500));
    call(&app, as_user("6")).await;
    let text = logs.text();
    assert!(text.contains("require_paid"), "no span logged: {text}");
    for secret in [
        good.expose_secret(),
        "SECRET",
        figma.access_token().expose_secret(),
    ] {
        assert!(!text.contains(secret), "{secret} in logs:\n{text}");
    }
}

#[tokio::test]
async fn stats_count_hits_misses_and_refusals() {
    let (figma, paywall) = start().await;
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    for _ in 0..3 {
        call(&app, as_user("5")).await;
    }
    call(&app, as_user("6")).await;
    call(&app, Request::get("/generate").body(Body::empty()).unwrap()).await;
    let stats = paywall.stats();
    assert_eq!(stats.cache_hits, 2);
    assert_eq!(stats.cache_misses, 2);
    assert_eq!(stats.upstream_calls, 2);
    assert_eq!(stats.granted, 3);
    assert_eq!(stats.refused["not_paid"], 1);
    assert_eq!(stats.refused["no_identity"], 1);
    // Both answers, counted at once (not after the cache's upkeep).
    assert_eq!(stats.cached_entries, 2);
}

#[tokio::test]
async fn a_lookup_under_way_during_an_invalidation_is_not_cached() {
    let (figma, paywall) = start().await;
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    // Figma's answer is decided when the request arrives, then takes 300 ms.
    figma.set_latency(Duration::from_millis(300));
    figma.push_fault(Fault::Answer(
        json!({"status": 200, "error": false, "meta": {
        "user_id": "5", "resource_id": PLUGIN, "resource_type": "PLUGIN",
        "payment_status": {"type": "UNPAID"}}}),
    ));
    let before = tokio::spawn({
        let app = app.clone();
        async move { call(&app, as_user("5")).await.status }
    });
    eventually("the lookup reached Figma", async || {
        figma.payment_requests() == 1
    })
    .await;
    // The checkout completes while Figma is still answering the old question.
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    paywall.invalidate_user(&user("5")).await;
    assert_eq!(before.await.unwrap(), 402);
    figma.set_latency(Duration::ZERO);
    assert_eq!(call(&app, as_user("5")).await.status, 200);
    assert_eq!(figma.payment_requests(), 2);
}

/// The crate's promise: a buyer's request goes on with Figma's answer as a
/// `PaymentInformation` request extension, read three ways as users write
/// them: axum's `Extension<T>`, the extractor, and `req.extensions()` in a
/// plain `tower::Service`. Each is asked twice: on a miss, then on the
/// cached hit path.
#[tokio::test]
async fn a_buyer_goes_on_with_payment_information_read_three_ways() {
    use axum::{extract::Extension, response::Response, routing::post};
    use tower::{Layer, ServiceExt};

    let (figma, paywall) = start().await;
    set(&figma, "41", &plugin(), PaymentStatus::Paid);
    set(&figma, "42", &plugin(), PaymentStatus::Trial);
    let gate = RequirePaidLayer::new(&paywall, plugin());

    let by_extension = Router::new()
        .route(
            "/generate",
            post(
                |Extension(info): Extension<PaymentInformation>| async move {
                    format!("{} {}", info.user_id, info.payment_status)
                },
            ),
        )
        .layer(gate.clone());
    let by_extractor = Router::new()
        .route(
            "/generate",
            post(|info: PaymentInformation| async move {
                format!("{} {}", info.user_id, info.payment_status)
            }),
        )
        .layer(gate.clone());
    let plain = tower::service_fn(|req: Request<Body>| async move {
        let text = match req.extensions().get::<PaymentInformation>() {
            Some(info) => format!("{} {}", info.user_id, info.payment_status),
            None => "no PaymentInformation".to_owned(),
        };
        Ok::<Response, std::convert::Infallible>(text.into_response())
    });
    let plain = gate.layer(plain);

    for (id, status) in [("41", "PAID"), ("42", "TRIAL")] {
        let token = figma.issue_token(&user(id), &plugin());
        let want = format!("{id} {status}");
        let post = || {
            Request::post("/generate")
                .header("x-figma-payment-token", token.expose_secret())
                .body(Body::empty())
                .unwrap()
        };
        for round in ["miss", "hit"] {
            for (how, app) in [("Extension", &by_extension), ("extractor", &by_extractor)] {
                let reply = call(app, post()).await;
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{how}, {round}: {}",
                    reply.body
                );
                assert_eq!(reply.body, want.as_str(), "{how}, {round}");
            }
            let response = plain.clone().oneshot(post()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "tower::Service, {round}");
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            assert_eq!(body, want.as_bytes(), "tower::Service, {round}");
        }
        // A user ID the app authenticated is the other way in.
        let mut req = post();
        req.headers_mut().remove("x-figma-payment-token");
        req.extensions_mut().insert(user(id));
        let reply = call(&by_extension, req).await;
        assert_eq!(reply.body, want.as_str(), "Extension, by user ID");
    }
    // One lookup a buyer (and one a user ID): the rest came from the cache.
    assert_eq!(figma.payment_requests(), 4);
}
