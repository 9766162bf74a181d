//! Reliability and security: Figma failing, rate limiting, hostile input.
//! Each test asserts what callers got and how many calls reached Figma.

use std::time::{Duration, Instant};

use crate::common::*;
use axum::body::Body;
use figma_paywall::{
    mock::{Fault, MockClock, MockFigma},
    AccessToken, PaymentStatus, PaymentsClient, Paywall, RequirePaidLayer,
};
use http::Request;
use serde_json::json;

fn assert_envelope(reply: &Reply, statuses: &[u16]) {
    assert!(
        statuses.contains(&reply.status.as_u16()),
        "status {} not in {statuses:?}: {}",
        reply.status,
        reply.body
    );
    assert_eq!(reply.body["error"], true, "{}", reply.body);
    assert_eq!(reply.body["status"], reply.status.as_u16());
    assert!(reply.body["message"].is_string());
}

#[tokio::test]
async fn every_failure_of_figma_is_answered_within_the_timeout() {
    let figma = MockFigma::start().await.unwrap();
    let timeout = Duration::from_millis(500);
    let client = figma.client_builder().timeout(timeout).build().unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&Paywall::new(client), plugin()));
    let faults = [
        Fault::Status(500),
        Fault::MalformedJson,
        Fault::Html,
        Fault::DropConnection,
        Fault::Delay(Duration::from_secs(30)), // no answer at all
    ];
    for (i, fault) in faults.iter().enumerate() {
        figma.push_fault(fault.clone());
        let started = Instant::now();
        let reply = call(&app, as_user(&format!("{}", 100 + i))).await;
        let took = started.elapsed();
        assert_envelope(&reply, &[502, 503]);
        assert!(reply.headers.contains_key("retry-after"), "{fault:?}");
        // Bounded by the upstream timeout, never by Figma's 30 s.
        assert!(took < Duration::from_secs(5), "{fault:?} took {took:?}");
        assert_eq!(figma.payment_requests(), i + 1, "{fault:?}");
    }
}

#[tokio::test]
async fn a_429_stops_every_call_until_retry_after_has_passed() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = paywall_on(&figma, &clock, |b| b);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    set(&figma, "1", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&app, as_user("1")).await.status, 200);

    figma.push_fault(Fault::RateLimited { retry_after: 3 });
    let reply = call(&app, as_user("2")).await;
    assert_envelope(&reply, &[503]);
    assert_eq!(reply.body["reason"], "rate_limited");
    assert_eq!(reply.headers["retry-after"], "3");
    assert_eq!(figma.payment_requests(), 2);
    // The mock says what it asked for, and when.
    let asked = figma.back_offs_asked();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1, Duration::from_secs(3));
    let arrived = *figma.payment_request_times().last().unwrap();
    assert!(asked[0].0 >= arrived && asked[0].0 - arrived < Duration::from_secs(1));

    // For 3 s: new callers get 503 with the time left, cached callers get in,
    // and nothing reaches Figma.
    let mut previous = 3;
    for (i, step) in [0, 500, 500, 500, 500, 900].into_iter().enumerate() {
        clock.advance(Duration::from_millis(step));
        let reply = call(&app, as_user(&format!("{}", 10 + i))).await;
        assert_envelope(&reply, &[503]);
        let left: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // What is left of the 3 s, rounded up (real time only shortens it).
        let most = (3000 - clock.offset().as_millis() as u64).div_ceil(1000);
        assert!(
            (1..=most).contains(&left) && left <= previous,
            "Retry-After {left} at {:?}",
            clock.offset()
        );
        previous = left;
        assert_eq!(call(&app, as_user("1")).await.status, 200);
    }
    assert_eq!(figma.payment_requests(), 2);

    // Afterwards calls resume.
    clock.advance(Duration::from_millis(101));
    assert_eq!(call(&app, as_user("99")).await.status, 402);
    assert_eq!(figma.payment_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_cold_callers_stays_within_the_budget() {
    const PER_MINUTE: u32 = 600; // 10 a second
    const BURST: u32 = 5;
    let figma = MockFigma::start().await.unwrap();
    let client = figma
        .client_builder()
        .rate_limit(PER_MINUTE, BURST)
        .queue(256, Duration::from_secs(1))
        .build()
        .unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&Paywall::new(client), plugin()));
    let started = Instant::now();
    let replies = futures_util::future::join_all(
        (0..10_000).map(|i| call(&app, as_user(&format!("{}", 1_000_000 + i)))),
    )
    .await;
    let took = started.elapsed();
    let mut answered = 0;
    for reply in &replies {
        match reply.status.as_u16() {
            402 => answered += 1,
            503 => {
                assert_eq!(reply.body["reason"], "rate_limited");
                assert!(reply.headers.contains_key("retry-after"));
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let times = figma.payment_request_times();
    assert_eq!(times.len(), answered);
    // In any window of a second, at most the burst plus a second's refill.
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= (BURST + PER_MINUTE / 60) as usize + 1,
            "{in_window} calls within 1 s"
        );
    }
    println!("{answered} of 10000 answered by Figma, the rest 503, in {took:?}");
    assert!(answered >= BURST as usize);
    // Nobody was left hanging: the queue wait is bounded.
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn callers_who_leave_do_not_cancel_the_lookup_for_others() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    figma.set_latency(Duration::from_millis(500));

    // Five callers start the lookup and hang up.
    for _ in 0..5 {
        let gone = tokio::time::timeout(Duration::from_millis(30), call(&app, as_user("5"))).await;
        assert!(gone.is_err());
    }
    // One more waits: it joins the lookup under way.
    let reply = call(&app, as_user("5")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(figma.payment_requests(), 1);
    // Nothing is left in flight, and the answer was cached.
    assert_eq!(paywall.stats().lookups_in_flight, 0);
    figma.set_latency(Duration::ZERO);
    assert_eq!(call(&app, as_user("5")).await.body["from_cache"], true);
    assert_eq!(figma.payment_requests(), 1);

    // When every caller leaves, the lookup still finishes and is cached.
    set(&figma, "6", &plugin(), PaymentStatus::Paid);
    figma.set_latency(Duration::from_millis(200));
    let gone = tokio::time::timeout(Duration::from_millis(20), call(&app, as_user("6"))).await;
    assert!(gone.is_err());
    eventually("the abandoned lookup landed", async || {
        paywall.stats().lookups_in_flight == 0
    })
    .await;
    assert_eq!(call(&app, as_user("6")).await.body["from_cache"], true);
    assert_eq!(figma.payment_requests(), 2);
}

#[tokio::test]
async fn malformed_input_is_refused_without_asking_figma() {
    let figma = MockFigma::start().await.unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&paywall(&figma), plugin()));
    let get = |uri: &str| Request::get(uri);
    let requests: Vec<(Request<Body>, u16)> = vec![
        (
            get("/generate")
                .header("x-figma-payment-token", "x".repeat(3000))
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate")
                .header(
                    "x-figma-payment-token",
                    http::HeaderValue::from_bytes(b"ppt_\xff\xfe").unwrap(),
                )
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate")
                .header("x-figma-payment-token", "a")
                .header("x-figma-payment-token", "b")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate?plugin_payment_token=a")
                .header("x-figma-payment-token", "a")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate?plugin_payment_token=a&plugin_payment_token=a")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate?plugin_payment_token=%00")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate?plugin_payment_token=a+b")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate?plugin_payment_token=%C3%A9")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate?plugin_payment_token=%EF%BC%91")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get("/generate?plugin_payment_token=")
                .body(Body::empty())
                .unwrap(),
            400,
        ),
        (
            get(&format!(
                "/generate?plugin_payment_token={}",
                "y".repeat(5000)
            ))
            .body(Body::empty())
            .unwrap(),
            400,
        ),
        // A user ID the client sends is not an identity.
        (
            get("/generate?user_id=1")
                .header("x-figma-user-id", "1")
                .body(Body::empty())
                .unwrap(),
            401,
        ),
    ];
    for (req, want) in requests {
        let uri = req.uri().to_string();
        let reply = call(&app, req).await;
        assert_eq!(reply.status.as_u16(), want, "{uri}: {}", reply.body);
        assert_envelope(&reply, &[want]);
    }
    for bad in [
        "１２３",
        "+1",
        "-1",
        " 1",
        "1e3",
        "",
        "0x1F",
        "1.0",
        &"9".repeat(33),
    ] {
        // The app's authentication cannot hand the gate such a user ID:
        // the extension is a `UserId`, checked when it is made.
        assert!(figma_paywall::UserId::new(bad).is_err(), "{bad:?}");
    }
    assert_eq!(figma.payment_requests(), 0);
}

#[tokio::test]
async fn percent_encoding_tricks_never_change_the_upstream_query() {
    let figma = MockFigma::start().await.unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&paywall(&figma), plugin()));
    for (query, token) in [
        ("a%26user_id%3D1%26plugin_id%3D2", "a&user_id=1&plugin_id=2"),
        ("b%23frag", "b#frag"),
        ("c%2525", "c%25"),
        ("%ZZ", "%ZZ"),
    ] {
        let req = Request::get(format!("/generate?plugin_payment_token={query}&other=1"))
            .body(Body::empty())
            .unwrap();
        let reply = call(&app, req).await;
        assert_eq!(reply.status, 401, "{query}"); // Figma does not know the token
        let sent = figma.received_queries().pop().unwrap();
        assert_eq!(
            sent,
            vec![("plugin_payment_token".to_owned(), token.to_owned())]
        );
    }
}

#[tokio::test]
async fn a_rejected_access_token_is_503_and_logged_once() {
    let figma = mock_elsewhere();
    let wrong = PaymentsClient::builder(AccessToken::new("figd_expired").unwrap())
        .base_url(figma.url())
        .rate_limit(60_000, 1_000)
        .build()
        .unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&Paywall::new(wrong), plugin()));
    let token = figma.issue_token(&user("5"), &plugin());
    let logs = CapturedLogs::start();
    for i in 0..3 {
        let reply = call(&app, as_user(&format!("{i}"))).await;
        assert_envelope(&reply, &[503]);
        assert_eq!(reply.body["reason"], "access_token_rejected");
        // A caller's token is not blamed for the creator's.
        let reply = call(&app, with_token(token.expose_secret())).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.body["reason"], "access_token_rejected");
    }
    let text = logs.text();
    assert_eq!(text.matches("rejects FIGMA_TOKEN").count(), 1, "{text}");
    assert!(text.contains("ERROR"));
    assert!(!text.contains("figd_expired"));
    assert!(!text.contains(token.expose_secret()));
}

#[tokio::test]
async fn a_refused_caller_token_is_401_and_checks_the_access_token_once() {
    let figma = MockFigma::start().await.unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&paywall(&figma), plugin()));
    for forged in ["ppt_forged1", "ppt_forged2", "ppt_forged3"] {
        let reply = call(&app, with_token(forged)).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body["reason"], "token_rejected");
    }
    // GET /v1/me said the access token is fine; it is not asked again for a minute.
    assert_eq!(figma.me_requests(), 1);
    assert_eq!(figma.payment_requests(), 3);
    // An expired token (Figma's 400) is the caller's too, without a check.
    let expired = figma.issue_token_for(&user("5"), &plugin(), Duration::ZERO);
    let reply = call(&app, with_token(expired.expose_secret())).await;
    assert_eq!(reply.status, 401);
    assert_eq!(figma.me_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_check_of_the_access_token_is_shared_and_stalls_nobody() {
    let figma = MockFigma::start().await.unwrap();
    figma.set_me_latency(Duration::from_millis(300));
    let paywall = paywall(&figma);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    // Five refusals at once need the verdict: one GET /v1/me serves them all.
    let replies = futures_util::future::join_all(
        (0..5).map(|i| call(&app, with_token(&format!("ppt_forged_{i}")))),
    )
    .await;
    assert!(replies.iter().all(|r| r.body["reason"] == "token_rejected"));
    assert_eq!(figma.me_requests(), 1);

    // While a check hangs on a slow GET /v1/me, a verdict known from a
    // user-ID lookup's 401 does not wait behind it.
    let figma = MockFigma::start().await.unwrap();
    figma.set_me_latency(Duration::from_secs(30));
    let app = echo_app().layer(RequirePaidLayer::new(
        &paywall_with(&figma, |b| b),
        plugin(),
    ));
    let hanging = tokio::spawn({
        let app = app.clone();
        async move { call(&app, with_token("ppt_forged")).await.status }
    });
    eventually("the check of the access token began", async || {
        figma.me_requests() == 1
    })
    .await;
    figma.push_fault(Fault::Status(401));
    let reply = call(&app, as_user("7")).await;
    assert_eq!(reply.body["reason"], "access_token_rejected");
    assert!(
        !hanging.is_finished(),
        "the refusal waited for the hanging check"
    );
    hanging.abort();
}

#[tokio::test]
async fn unpaid_answers_are_never_served_stale() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = paywall_on(&figma, &clock, |b| b);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    set(&figma, "1", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&app, as_user("1")).await.status, 200);
    assert_eq!(call(&app, as_user("2")).await.status, 402);
    clock.advance(Duration::from_secs(11 * 60)); // past both lifetimes
    figma.set_steady_fault(Some(Fault::Status(500)));
    let reply = call(&app, as_user("1")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["stale"], true);
    // The UNPAID answer is gone: 503, not a stale 402 and not a 200.
    assert_eq!(call(&app, as_user("2")).await.status, 503);
}

#[tokio::test]
async fn a_stale_answer_stands_in_only_within_its_grace() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = paywall_on(&figma, &clock, |b| b); // PAID 10 min, grace 1 h
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    set(&figma, "1", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&app, as_user("1")).await.status, 200);
    figma.set_steady_fault(Some(Fault::Status(500)));
    clock.advance(Duration::from_secs(40 * 60));
    let reply = call(&app, as_user("1")).await;
    assert_eq!(
        (reply.status.as_u16(), &reply.body["stale"]),
        (200, &json!(true))
    );
    // Past 10 minutes and the hour of grace, whatever moka still holds.
    clock.advance(Duration::from_secs(31 * 60));
    let reply = call(&app, as_user("1")).await;
    assert_envelope(&reply, &[503]);
    assert_eq!(reply.body["reason"], "figma_unavailable");
}

#[tokio::test]
async fn logs_hold_no_secret_in_any_fault_path() {
    let figma = mock_elsewhere();
    let clock = MockClock::new();
    let paywall = Paywall::new(
        figma
            .client_builder()
            .clock(&clock)
            .timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let logs = CapturedLogs::start();
    let mut tokens = Vec::new();
    for fault in [
        Fault::Status(500),
        Fault::Status(400),
        Fault::Status(401),
        Fault::MalformedJson,
        Fault::Html,
        Fault::DropConnection,
        Fault::Delay(Duration::from_secs(5)),
        Fault::RateLimited { retry_after: 1 },
    ] {
        let token = figma.issue_token(&user("5"), &plugin());
        figma.push_fault(fault);
        call(&app, with_token(token.expose_secret())).await;
        tokens.push(token);
    }
    clock.advance(Duration::from_millis(1100)); // past the 429's back-off
    call(&app, with_token("ppt_forged_SECRET")).await;
    let text = logs.text();
    assert!(text.contains("require_paid"));
    for secret in tokens.iter().map(|t| t.expose_secret().to_owned()).chain([
        "SECRET".to_owned(),
        figma.access_token().expose_secret().to_owned(),
    ]) {
        assert!(!text.contains(&secret), "{secret} in logs");
    }
}

#[tokio::test]
async fn huge_lifetimes_and_retry_afters_do_not_panic() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall_with(&figma, |b| {
        b.paid_lifetime(Duration::MAX)
            .stale_grace(Duration::MAX)
            .unpaid_lifetime(Duration::MAX)
    });
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    set(&figma, "1", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&app, as_user("1")).await.status, 200);
    assert_eq!(call(&app, as_user("1")).await.status, 200);
    figma.push_fault(Fault::RateLimited {
        retry_after: u64::MAX,
    });
    let reply = call(&app, as_user("2")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(figma.payment_requests(), 2);
}
