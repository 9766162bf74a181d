//! Figma's budget: what callers are told when the app's own budget is
//! spent, how the budget adapts when Figma answers 429, and refused tokens
//! that cost Figma one lookup however often they are replayed.

use std::time::Duration;

use figma_paywall::{
    mock::{Fault, MockClock, MockFigma},
    AccessToken, PaymentStatus, PaymentsClient, Paywall, RequirePaidLayer,
};

use crate::common::*;

#[tokio::test]
async fn a_spent_budget_names_itself_and_the_setting_and_is_logged_once_a_minute() {
    let figma = mock_elsewhere();
    let clock = MockClock::new();
    let client = figma
        .client_builder()
        .clock(&clock)
        .rate_limit(2, 1)
        .build()
        .unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&Paywall::new(client), plugin()));
    let logs = CapturedLogs::start();
    let warnings = || {
        logs.text()
            .matches("the budget of 2 payment lookups a minute at Figma is spent")
            .count()
    };
    assert_eq!(call(&app, as_user("1")).await.status, 402);
    for i in 0..3 {
        let reply = call(&app, as_user(&format!("{}", 10 + i))).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body["reason"], "rate_limited");
        let message = reply.body["message"].as_str().unwrap();
        assert!(
            message.contains("at most 2 times a minute (FIGMA_RATE_LIMIT)"),
            "{message}"
        );
        assert!(reply.headers.contains_key("retry-after"));
    }
    assert_eq!(figma.payment_requests(), 1);
    assert_eq!(warnings(), 1);
    // A minute later the budget has slots again; spent again, it is logged
    // again.
    clock.advance(Duration::from_secs(61));
    assert_eq!(call(&app, as_user("20")).await.status, 402);
    assert_eq!(call(&app, as_user("21")).await.status, 503);
    assert_eq!(warnings(), 2);
    assert!(logs.text().contains("set FIGMA_RATE_LIMIT"));
}

#[tokio::test]
async fn a_budget_set_too_high_earns_one_429_then_keeps_to_figmas() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    figma.set_clock(&clock);
    // The token's real budget: a View seat, 10 a minute.
    figma.set_rate_limit(Some((10, 2, "starter", "low")));
    // The app believes it has 60. (A caller waits 2 s at most for a slot:
    // by the real clock, as this test does not move the mock's meanwhile.)
    let client = figma
        .client_builder()
        .clock(&clock)
        .rate_limit(60, 10)
        .queue(256, Duration::from_secs(2))
        .build()
        .unwrap();
    let paywall = Paywall::new(client.clone());
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    // A new caller every 2 s for 2 minutes, each needing a lookup.
    let mut answered = 0;
    for i in 0..60 {
        clock.advance(Duration::from_secs(2));
        let reply = call(&app, as_user(&format!("{}", 1000 + i))).await;
        match reply.status.as_u16() {
            402 => answered += 1,
            503 => assert_eq!(reply.body["reason"], "rate_limited", "{}", reply.body),
            other => panic!("{other}: {}", reply.body),
        }
    }
    assert_eq!(figma.rate_limited_answers(), 1, "a second 429 from Figma");
    // 90 % of the Tier 3 limit Figma's headers name (10 a minute).
    assert_eq!(client.rate_limit(), (9, 1));
    assert_eq!(paywall.stats().budget_per_minute, 9);
    // Lookups go on after the 429, at no more than 9 a minute (and a burst
    // of 1) in any minute, on the mock's clock.
    assert_eq!(figma.payment_requests(), answered + 1);
    let arrivals = figma.payment_request_times();
    let after_429 = &arrivals[3..];
    assert!(
        after_429.len() >= 12,
        "{} lookups after the 429",
        after_429.len()
    );
    for (i, start) in after_429.iter().enumerate() {
        let in_a_minute = after_429[i..]
            .iter()
            .take_while(|t| t.duration_since(*start) < Duration::from_secs(60))
            .count();
        assert!(in_a_minute <= 10, "{in_a_minute} lookups within a minute");
    }
}

#[tokio::test]
async fn a_refused_token_replayed_costs_one_lookup_for_ten_minutes() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = paywall_on(&figma, &clock, |b| b);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    // Figma failing is not a refusal: nothing is remembered.
    figma.push_fault(Fault::Status(500));
    assert_eq!(call(&app, with_token("ppt_forged")).await.status, 503);
    for _ in 0..20 {
        let reply = call(&app, with_token("ppt_forged")).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body["reason"], "token_rejected");
    }
    assert_eq!(figma.payment_requests(), 2);
    assert_eq!(figma.me_requests(), 1, "the access token is checked once");
    assert_eq!(paywall.stats().refusals_remembered, 19);
    // An expired token (400) is remembered too, on its own.
    let expired = figma.issue_token_for(&user("7"), &plugin(), Duration::ZERO);
    for _ in 0..3 {
        assert_eq!(
            call(&app, with_token(expired.expose_secret())).await.status,
            401
        );
    }
    assert_eq!(figma.payment_requests(), 3);
    // Ten minutes on, Figma is asked again.
    clock.advance(Duration::from_secs(10 * 60 + 1));
    assert_eq!(call(&app, with_token("ppt_forged")).await.status, 401);
    assert_eq!(figma.payment_requests(), 4);
}

#[tokio::test]
async fn nothing_is_remembered_while_figma_refuses_the_access_token() {
    let figma = MockFigma::start().await.unwrap();
    let client = PaymentsClient::builder(AccessToken::new("figd_revoked").unwrap())
        .base_url(figma.url())
        .build()
        .unwrap();
    let app = echo_app().layer(RequirePaidLayer::new(&Paywall::new(client), plugin()));
    for _ in 0..3 {
        let reply = call(&app, with_token("ppt_of_a_buyer")).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body["reason"], "access_token_rejected");
    }
    assert_eq!(figma.payment_requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_tokens_costs_a_lookup_in_ten_minutes_and_no_buyer_waits() {
    let figma = mock_elsewhere();
    let clock = MockClock::new();
    // 40 a minute: a client's share is 10, all anonymous clients' 30.
    let client = figma
        .client_builder()
        .clock(&clock)
        .rate_limit(40, 4)
        .build()
        .unwrap();
    let paywall = Paywall::new(client);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let base = serve_with_peers(app).await;
    let flooder = client_from([127, 0, 0, 2]);
    let mut buyers_in = 0;
    let mut forged = 0;
    for second in 0..60u32 {
        clock.advance(Duration::from_secs(1));
        for i in 0..10 {
            let (status, reason) =
                get_with_token(&flooder, &base, &format!("ppt_forged_{second}_{i}")).await;
            assert!(
                (status, reason.as_str()) == (401, "token_rejected")
                    || (status, reason.as_str()) == (429, "too_many_lookups"),
                "the flooder got {status} {reason}"
            );
            forged += 1;
        }
        if second % 5 == 0 {
            // A new buyer, from an address of their own.
            let buyer = user(&format!("{}", 5000 + second));
            set(&figma, buyer.as_str(), &plugin(), PaymentStatus::Paid);
            let token = figma.issue_token(&buyer, &plugin());
            let from = client_from([127, 0, 1, 1 + second as u8]);
            let (status, reason) = get_with_token(&from, &base, token.expose_secret()).await;
            assert_eq!(status, 200, "buyer at {second} s refused: {reason}");
            buyers_in += 1;
        }
    }
    let flood_calls = figma
        .received_queries()
        .iter()
        .filter(|q| q.iter().any(|(_, v)| v.starts_with("ppt_forged")))
        .count();
    println!("{forged} forged tokens cost {flood_calls} lookups; {buyers_in} buyers let in");
    assert_eq!(buyers_in, 12);
    // Once Figma refused its first token the flooder is a suspect: one more
    // cold lookup, then one every 10 minutes.
    assert!(
        (1..=2).contains(&flood_calls),
        "the flood cost {flood_calls} lookups"
    );
}

#[tokio::test]
async fn retry_after_is_read_as_a_date_too_and_years_are_capped() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = paywall_on(&figma, &clock, |b| b);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    // Retry-After: <an HTTP date 90 s from now>.
    let at = std::time::SystemTime::now() + Duration::from_secs(90);
    figma.push_fault(Fault::RateLimitedHeader(httpdate::fmt_http_date(at)));
    let reply = call(&app, as_user("1")).await;
    assert_eq!(reply.status, 503);
    let left: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((88..=90).contains(&left), "Retry-After {left}");
    clock.advance(Duration::from_secs(85));
    assert_eq!(
        call(&app, as_user("2")).await.status,
        503,
        "the back-off ended early"
    );
    clock.advance(Duration::from_secs(6));
    assert_eq!(call(&app, as_user("3")).await.status, 402);
    assert_eq!(figma.payment_requests(), 2);
    // A Retry-After of a century stops lookups for 30 days at most. (The
    // 429 lowered the budget to 9 a minute: wait for its next slot.)
    clock.advance(Duration::from_secs(7));
    figma.push_fault(Fault::RateLimitedHeader("3155760000".into()));
    assert_eq!(call(&app, as_user("4")).await.status, 503);
    assert_eq!(figma.payment_requests(), 3);
    let backing_off = paywall.client().backing_off_for().unwrap();
    assert!(
        backing_off <= Duration::from_secs(30 * 86_400),
        "{backing_off:?}"
    );
    assert!(
        backing_off > Duration::from_secs(29 * 86_400),
        "{backing_off:?}"
    );
}
