//! The typed client against the mock Figma, over real loopback HTTP.

use std::time::{Duration, Instant};

use figma_paywall::{
    error::ThrottleReason,
    mock::{Fault, MockFigma, StatusShape},
    AccessToken, Error, PaymentStatus, PaymentsClient, PluginPaymentToken, Resource, ResourceType,
    UserId,
};

fn user(id: &str) -> UserId {
    UserId::new(id).unwrap()
}

fn plugin() -> Resource {
    Resource::plugin("1122334455").unwrap()
}

#[tokio::test]
async fn every_status_in_every_shape_by_token_and_by_user() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma.client().unwrap();
    let resources = [
        plugin(),
        Resource::widget("5544332211").unwrap(),
        Resource::community_file("9876543210").unwrap(),
    ];
    let statuses = [
        PaymentStatus::Paid,
        PaymentStatus::Trial,
        PaymentStatus::Unpaid,
        PaymentStatus::NotSupported,
        PaymentStatus::Other("REFUNDED".into()),
    ];
    let mut expected_requests = 0;
    for shape in [
        StatusShape::TypeObject,
        StatusShape::StatusObject,
        StatusShape::BareString,
    ] {
        figma.set_status_shape(shape);
        for (i, status) in statuses.iter().enumerate() {
            for resource in &resources {
                let buyer = user(&format!("200{i}"));
                figma.set_status(&buyer, resource, status.clone());

                let info = client.payment_by_user(&buyer, resource).await.unwrap();
                assert_eq!(info.payment_status, *status, "{shape:?} {resource}");
                assert_eq!(info.user_id, buyer);
                assert_eq!(info.resource_id, *resource.id());
                assert_eq!(&info.resource_type, resource.kind());
                let paid = matches!(status, PaymentStatus::Paid | PaymentStatus::Trial);
                assert_eq!(info.date_of_purchase.is_some(), paid);

                let token = figma.issue_token(&buyer, resource);
                let info = client.payment_by_token(&token).await.unwrap();
                assert_eq!(
                    info.payment_status, *status,
                    "{shape:?} {resource} by token"
                );
                assert_eq!(info.user_id, buyer);
                expected_requests += 2;
            }
        }
    }
    assert_eq!(figma.payment_requests(), expected_requests);
}

#[tokio::test]
async fn a_user_who_never_bought_is_unpaid() {
    let figma = MockFigma::start().await.unwrap();
    let info = figma
        .client()
        .unwrap()
        .payment_by_user(&user("42"), &plugin())
        .await
        .unwrap();
    assert_eq!(info.payment_status, PaymentStatus::Unpaid);
    assert_eq!(info.date_of_purchase, None);
}

#[tokio::test]
async fn queries_carry_exactly_the_intended_parameters() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma.client().unwrap();
    let buyer = user("0042");
    let tricky = [
        "a&user_id=1",
        "b=c",
        "d#e",
        "f%26g",
        "h+i",
        "j;k",
        "ppt_?x=y",
        "%00",
    ];
    for raw in tricky {
        let token = PluginPaymentToken::new(raw).unwrap();
        figma.accept_token(&token, &buyer, &plugin());
        let info = client.payment_by_token(&token).await.unwrap();
        assert_eq!(info.user_id, buyer, "{raw}");
    }
    client.payment_by_user(&buyer, &plugin()).await.unwrap();
    client
        .payment_by_user(&buyer, &Resource::community_file("77").unwrap())
        .await
        .unwrap();

    let queries = figma.received_queries();
    for (query, raw) in queries.iter().zip(tricky) {
        assert_eq!(
            query,
            &vec![("plugin_payment_token".to_owned(), raw.to_owned())]
        );
    }
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        queries[tricky.len()],
        vec![pair("user_id", "0042"), pair("plugin_id", "1122334455")]
    );
    assert_eq!(
        queries[tricky.len() + 1],
        vec![pair("user_id", "0042"), pair("community_file_id", "77")]
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_sent() {
    let figma = MockFigma::start().await.unwrap();
    for bad in [
        "",
        "１２３",
        "-1",
        "+1",
        "1 2",
        "1&plugin_id=2",
        "12#",
        "1%32",
        "0x10",
    ] {
        assert!(UserId::new(bad).is_err(), "user {bad:?}");
        assert!(Resource::plugin(bad).is_err(), "plugin {bad:?}");
    }
    assert!(UserId::new("9".repeat(33)).is_err());
    for bad in ["", "a b", "a\tb", "a\r\nX-Evil: 1", "tök", "\u{7f}"] {
        assert!(PluginPaymentToken::new(bad).is_err(), "token {bad:?}");
    }
    assert!(PluginPaymentToken::new("x".repeat(2049)).is_err());
    // A resource type Figma might add later cannot be asked about by user ID.
    let other = Resource::new(ResourceType::Other("SLIDES".into()), "1".parse().unwrap());
    let err = figma
        .client()
        .unwrap()
        .payment_by_user(&user("1"), &other)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err}");
    assert_eq!(figma.payment_requests(), 0);
}

#[tokio::test]
async fn figma_400_is_invalid_request() {
    let figma = MockFigma::start().await.unwrap();
    let token = figma.issue_token_for(&user("1"), &plugin(), Duration::ZERO); // expired at once
    let err = figma
        .client()
        .unwrap()
        .payment_by_token(&token)
        .await
        .unwrap_err();
    match &err {
        Error::InvalidRequest { message } => assert!(message.contains("expired"), "{message}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
    assert!(err.is_caller_error());
}

#[tokio::test]
async fn rejected_credentials_are_unauthorized() {
    let figma = MockFigma::start().await.unwrap();
    // A forged plugin payment token.
    let forged = PluginPaymentToken::new("ppt_forged").unwrap();
    let err = figma
        .client()
        .unwrap()
        .payment_by_token(&forged)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status, .. } if status == 401),
        "{err:?}"
    );
    // A wrong personal access token, on both endpoints.
    let wrong = PaymentsClient::builder(AccessToken::new("figd_wrong").unwrap())
        .base_url(figma.url())
        .build()
        .unwrap();
    let err = wrong
        .payment_by_user(&user("1"), &plugin())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let err = wrong.verify_credentials().await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status, .. } if status == 403),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?} {wrong:?}").contains("figd_wrong"));
}

#[tokio::test]
async fn verify_credentials_names_the_token_owner() {
    let figma = MockFigma::start().await.unwrap();
    let me = figma.client().unwrap().verify_credentials().await.unwrap();
    assert_eq!(me.id, figma_paywall::mock::MOCK_CREATOR_ID);
    assert_eq!(figma.me_requests(), 1);
    assert_eq!(figma.payment_requests(), 0);
}

#[tokio::test]
async fn rate_limited_carries_retry_after_and_tier_headers_then_backs_off() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma.client().unwrap();
    figma.push_fault(Fault::RateLimited {
        retry_after: 396749,
    });
    let err = client
        .payment_by_user(&user("1"), &plugin())
        .await
        .unwrap_err();
    let Error::RateLimited(limit) = &err else {
        panic!("expected RateLimited, got {err:?}");
    };
    assert_eq!(limit.retry_after, Some(Duration::from_secs(396749)));
    assert_eq!(limit.plan_tier.as_deref(), Some("starter"));
    assert_eq!(limit.rate_limit_type.as_deref(), Some("low"));
    assert_eq!(
        limit.upgrade_link.as_deref(),
        Some("https://www.figma.com/pricing")
    );
    // No further call reaches Figma until Retry-After has passed.
    let err = client
        .payment_by_user(&user("1"), &plugin())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Throttled {
                reason: ThrottleReason::BackingOff,
                retry_after,
            } if retry_after > Duration::from_secs(396000)
        ),
        "{err:?}"
    );
    assert_eq!(figma.payment_requests(), 1);
    assert!(client.backing_off_for().is_some());
}

#[tokio::test]
async fn unexpected_statuses_are_upstream_and_only_5xx_a_failure_of_figma() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma.client().unwrap();
    for code in [500u16, 502, 503, 404, 405, 413, 414, 422, 431] {
        figma.push_fault(Fault::Status(code));
        let err = client
            .payment_by_user(&user("1"), &plugin())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Upstream { status, .. } if status.as_u16() == code),
            "{code}: {err:?}"
        );
        assert_eq!(err.is_figma_failure(), code >= 500, "{code}");
    }
}

#[tokio::test]
async fn malformed_answers_are_malformed() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma.client().unwrap();
    for fault in [Fault::MalformedJson, Fault::Html] {
        figma.push_fault(fault.clone());
        let err = client
            .payment_by_user(&user("1"), &plugin())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::MalformedResponse { .. }),
            "{fault:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_hung_figma_times_out() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma
        .client_builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    figma.push_fault(Fault::Delay(Duration::from_secs(30)));
    let started = Instant::now();
    let err = client
        .payment_by_user(&user("1"), &plugin())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn network_failures_are_transport_errors_without_the_url() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma.client().unwrap();
    figma.push_fault(Fault::DropConnection);
    let token = figma.issue_token(&user("1"), &plugin());
    let err = client.payment_by_token(&token).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(token.expose_secret()), "{shown}");

    // Nothing listens on this port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = PaymentsClient::builder(figma.access_token())
        .base_url(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let err = dead.payment_by_token(&token).await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(token.expose_secret()));
}

#[tokio::test]
async fn the_budget_caps_calls_and_never_hangs() {
    let figma = MockFigma::start().await.unwrap();
    let (u, p) = (user("1"), plugin());
    // One every 10 s after a burst of 2: the third call fails at once and
    // says when the next slot comes.
    let slow = figma
        .client_builder()
        .rate_limit(6, 2)
        .queue(8, Duration::from_secs(1))
        .build()
        .unwrap();
    slow.payment_by_user(&u, &p).await.unwrap();
    slow.payment_by_user(&u, &p).await.unwrap();
    let started = Instant::now();
    match slow.payment_by_user(&u, &p).await {
        Err(Error::Throttled {
            reason: ThrottleReason::BudgetExhausted,
            retry_after,
        }) => assert!(
            (Duration::from_secs(9)..=Duration::from_secs(10)).contains(&retry_after),
            "{retry_after:?}"
        ),
        other => panic!("expected BudgetExhausted, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "it waited for a slot that was too far"
    );
    assert_eq!(figma.payment_requests(), 2);

    // One every 100 ms, one waiter at most: one caller waits its turn, the
    // others are told at once that the queue is full.
    let queued = figma
        .client_builder()
        .rate_limit(600, 1)
        .queue(1, Duration::from_secs(1))
        .build()
        .unwrap();
    queued.payment_by_user(&u, &p).await.unwrap();
    let (a, b, c) = tokio::join!(
        queued.payment_by_user(&u, &p),
        queued.payment_by_user(&u, &p),
        queued.payment_by_user(&u, &p)
    );
    let results = [a, b, c];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(
                r,
                Err(Error::Throttled {
                    reason: ThrottleReason::QueueFull,
                    ..
                })
            ))
            .count(),
        2,
        "{results:?}"
    );
    assert_eq!(figma.payment_requests(), 4);
}

#[tokio::test]
async fn the_access_token_goes_in_x_figma_token_and_nowhere_else() {
    let figma = MockFigma::start().await.unwrap();
    let client = figma.client().unwrap();
    // The mock only answers when X-Figma-Token carries its token.
    client.payment_by_user(&user("1"), &plugin()).await.unwrap();
    let pat = figma.access_token();
    for query in figma.received_queries() {
        for (_, value) in query {
            assert_ne!(value, pat.expose_secret());
        }
    }
    assert!(!format!("{client:?}").contains(pat.expose_secret()));
}
