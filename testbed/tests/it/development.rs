//! Development mode: the status a plugin in development chose, honoured by
//! a server on the mock in development mode, refused by every other, and
//! never asked of Figma.

use crate::common::*;
use axum::{body::Body, Extension};
use figma_paywall::{
    credits::Credits,
    identity::DEVELOPMENT_STATUS_HEADER,
    mock::{MockFigma, MOCK_CREATOR_ID},
    PaymentInformation, PaymentStatus, Paywall, RefusalReason, RequirePaidLayer,
};
use http::{Request, StatusCode};

/// `GET /generate` with a token Figma never issued and the status chosen.
fn in_development(status: &str) -> Request<Body> {
    Request::get("/generate")
        .header(
            "x-figma-payment-token",
            "a-token-figma-gave-a-plugin-in-development",
        )
        .header(DEVELOPMENT_STATUS_HEADER, status)
        .body(Body::empty())
        .unwrap()
}

fn development_paywall(figma: &MockFigma) -> Paywall {
    let client = figma.client_builder().development_mode().build().unwrap();
    Paywall::builder(client).build().unwrap()
}

#[tokio::test]
async fn in_development_mode_the_chosen_status_decides_and_figma_is_not_asked() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = development_paywall(&figma);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));

    for (status, via) in [("PAID", "Paid"), ("TRIAL", "Trial")] {
        let reply = call(&app, in_development(status)).await;
        assert_eq!(reply.status, StatusCode::OK, "{status}: {}", reply.body);
        assert_eq!(reply.body["via"], via);
        assert_eq!(reply.body["info"]["user_id"], MOCK_CREATOR_ID);
        assert_eq!(reply.body["info"]["resource_id"], PLUGIN);
        assert_eq!(reply.body["info"]["payment_status"]["type"], status);
    }
    // UNPAID: checkout, as for a non-buyer.
    let reply = call(&app, in_development("UNPAID")).await;
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(reply.body["reason"], "not_paid");
    // The status switches at once: nothing was cached.
    assert_eq!(
        call(&app, in_development("PAID")).await.status,
        StatusCode::OK
    );
    assert_eq!(figma.payment_requests(), 0, "Figma was asked");

    // The handler's promise holds: the extension, as users write it.
    let handler = axum::Router::new()
        .route(
            "/generate",
            axum::routing::get(
                |Extension(info): Extension<PaymentInformation>| async move {
                    info.payment_status.to_string()
                },
            ),
        )
        .layer(RequirePaidLayer::new(&paywall, plugin()));
    let reply = call(&handler, in_development("PAID")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "PAID");

    // Without the header, the same server asks Figma as always.
    let reply = call(
        &app,
        with_token("a-token-figma-gave-a-plugin-in-development"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(figma.payment_requests(), 1);
}

#[tokio::test]
async fn in_development_mode_free_tries_count_the_creator() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = development_paywall(&figma);
    let credits: Credits = "paid=100/day,unpaid=2/day".parse().unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits.clone()));
    let mut replies = Vec::new();
    for _ in 0..3 {
        let reply = call(&app, in_development("UNPAID")).await;
        replies.push((
            reply.status,
            reply.body["via"].as_str().unwrap_or("").to_owned(),
        ));
    }
    assert_eq!(
        replies,
        [
            (StatusCode::OK, "FreeTry".to_owned()),
            (StatusCode::OK, "FreeTry".to_owned()),
            (StatusCode::PAYMENT_REQUIRED, String::new()),
        ]
    );
    let left = paywall
        .credits_left(&credits, &user(MOCK_CREATOR_ID), &PaymentStatus::Unpaid)
        .await
        .unwrap();
    assert_eq!(left.windows[0].remaining, 0);
}

#[tokio::test]
async fn outside_development_mode_the_header_is_refused_before_figma() {
    let figma = MockFigma::start().await.unwrap();
    // A client of the mock, not in development mode: as a production
    // server's, the header is refused.
    let paywall = paywall(&figma);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    // A buyer with a real token, whose answer is cached: the hit path must
    // refuse the header too.
    set(&figma, "2001", &plugin(), PaymentStatus::Paid);
    let token = figma.issue_token(&user("2001"), &plugin());
    assert_eq!(
        call(&app, with_token(token.expose_secret())).await.status,
        StatusCode::OK
    );
    let asked = figma.payment_requests();
    for status in ["PAID", "UNPAID"] {
        let mut req = with_token(token.expose_secret());
        req.headers_mut()
            .insert(DEVELOPMENT_STATUS_HEADER, status.parse().unwrap());
        for req in [req, in_development(status)] {
            let reply = call(&app, req).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
            assert_eq!(
                reply.body["reason"],
                RefusalReason::DevelopmentOnly.as_str()
            );
            let message = reply.body["message"].as_str().unwrap();
            assert!(message.contains("development mode only"), "{message}");
            assert!(message.contains("figma-paywall --demo"), "{message}");
        }
    }
    // With no token at all, the same refusal: the header is what is wrong.
    let bare = Request::get("/generate")
        .header(DEVELOPMENT_STATUS_HEADER, "PAID")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, bare).await.body["reason"], "development_only");
    assert_eq!(figma.payment_requests(), asked, "Figma was asked");
}

#[tokio::test]
async fn development_mode_refuses_what_is_not_a_status() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = development_paywall(&figma);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    for status in ["NOT_SUPPORTED", "paid", "REFUNDED", ""] {
        let reply = call(&app, in_development(status)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{status:?}");
        assert_eq!(reply.body["reason"], "development_only");
    }
    let mut twice = in_development("PAID");
    twice
        .headers_mut()
        .append(DEVELOPMENT_STATUS_HEADER, "UNPAID".parse().unwrap());
    assert_eq!(call(&app, twice).await.status, StatusCode::BAD_REQUEST);
    // No token: who is asking is still needed.
    let bare = Request::get("/generate")
        .header(DEVELOPMENT_STATUS_HEADER, "PAID")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&app, bare).await.body["reason"], "no_identity");
    assert_eq!(figma.payment_requests(), 0);
}

#[tokio::test]
async fn development_mode_is_for_a_client_of_the_mock_only() {
    let figma = MockFigma::start().await.unwrap();
    let elsewhere = figma
        .client_builder()
        .base_url("https://api.figma.com")
        .development_mode()
        .build();
    let error = elsewhere.unwrap_err().to_string();
    assert!(error.contains("mock Figma"), "{error}");
    let own = figma_paywall::PaymentsClient::builder(figma.access_token())
        .base_url(figma.url())
        .development_mode()
        .build();
    assert!(own.is_err(), "a client not made by the mock");
}
