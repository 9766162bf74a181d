//! When Figma fails: stale PAID/TRIAL answers stand in only for Figma's own
//! failures, and fail-open opens only on the shared circuit breaker, never
//! on one caller's lookup or on our own budget running out.

use std::time::Duration;

use axum::{body::Body, routing::get, Json, Router};
use figma_paywall::{
    mock::{Fault, MockClock, MockFigma},
    PaidAccess, PaymentInformation, PaymentStatus, Paywall, RequirePaidLayer,
};
use http::Request;
use serde_json::json;

use crate::common::*;

fn lenient_app() -> Router {
    Router::new().route(
        "/generate",
        get(
            |access: PaidAccess, info: Option<PaymentInformation>| async move {
                Json(json!({"via": format!("{:?}", access.via), "has_info": info.is_some()}))
            },
        ),
    )
}

#[tokio::test]
async fn fail_open_lets_callers_in_once_figma_is_failing_and_fail_closed_does_not() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    let open = lenient_app().layer(RequirePaidLayer::new(&paywall, plugin()).fail_open(true));
    let closed = lenient_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    figma.set_steady_fault(Some(Fault::Status(503)));
    // The first failures are refused even by fail-open: a lookup failing
    // says nothing about Figma.
    for id in ["5", "6"] {
        let reply = call(&open, as_user(id)).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(!paywall.stats().figma_failing);
    }
    // A third failure of three, and GET /v1/me fails too: the breaker
    // opens, and this caller is let in on it.
    let reply = call(&open, as_user("7")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(paywall.stats().figma_failing);
    assert_eq!(figma.me_requests(), 1);
    let reply = call(&open, as_user("5")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, json!({"via": "FailOpen", "has_info": false}));
    let reply = call(&closed, as_user("5")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body["reason"], "figma_unavailable");
    // No lookup went to Figma while the breaker was open.
    assert_eq!(figma.payment_requests(), 3);
    // Fail-open never lets in a missing or malformed identity…
    assert_eq!(call(&open, with_token("has space")).await.status, 400);
    assert_eq!(
        call(
            &open,
            Request::get("/generate").body(Body::empty()).unwrap()
        )
        .await
        .status,
        401
    );
}

#[tokio::test]
async fn one_callers_failing_lookups_never_open_the_gate_while_figma_answers() {
    // Junk tokens whose own lookups get an undocumented 4xx or a 5xx (from
    // Figma, or from anything between): GET /v1/me answers, so the
    // breaker stays closed and fail-open refuses every one.
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    let open = lenient_app().layer(RequirePaidLayer::new(&paywall, plugin()).fail_open(true));
    for (i, code) in [500, 500, 500, 502, 503, 404, 405, 413, 414, 422, 431]
        .into_iter()
        .enumerate()
    {
        figma.push_fault(Fault::Status(code));
        let reply = call(&open, with_token(&format!("ppt_junk_{i}"))).await;
        assert_ne!(reply.status, 200, "{code} let a junk token in");
        assert!(!paywall.stats().figma_failing, "{code} opened the breaker");
    }
    // The 5xx made the breaker ask GET /v1/me, which answered.
    assert_eq!(figma.me_requests(), 1);
    // A buyer still gets in, and a non-buyer is still refused.
    set(&figma, "9", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&open, as_user("9")).await.status, 200);
    assert_eq!(call(&open, as_user("10")).await.status, 402);
}

#[tokio::test]
async fn fail_open_does_not_open_when_our_own_budget_runs_out() {
    // Anyone can spend the budget with a few bad tokens: that must not open
    // the gate, only an outage of Figma may.
    let figma = MockFigma::start().await.unwrap();
    let client = figma
        .client_builder()
        .rate_limit(1, 1)
        .queue(0, Duration::from_millis(10))
        .build()
        .unwrap();
    let open =
        lenient_app().layer(RequirePaidLayer::new(&Paywall::new(client), plugin()).fail_open(true));
    assert_eq!(call(&open, as_user("1")).await.status, 402);
    let reply = call(&open, as_user("2")).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["reason"], "rate_limited");
    assert_eq!(figma.payment_requests(), 1);
}

#[tokio::test]
async fn a_refunded_buyer_cannot_keep_access_by_spending_the_budget() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let client = figma
        .client_builder()
        .clock(&clock)
        .rate_limit(3, 3)
        .queue(8, Duration::from_millis(50))
        .build()
        .unwrap();
    let paywall = Paywall::new(client);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    set(&figma, "1", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&app, as_user("1")).await.status, 200);
    // Refunded. The PAID answer expires (10 min) but is within its grace;
    // the buyer has been away for longer than an active buyer (so no
    // refresh-ahead renews their answer in an idle slot).
    set(&figma, "1", &plugin(), PaymentStatus::Unpaid);
    clock.advance(Duration::from_secs(31 * 60));
    // Junk spends what the lanes of new callers may take of the budget (it
    // refilled while the clock moved): two slots, then it is refused...
    let mut junk = Vec::new();
    for i in 0..3 {
        let reply = call(&app, with_token(&format!("ppt_junk_{i}"))).await;
        junk.push((reply.status.as_u16(), reply.body["reason"].clone()));
    }
    assert_eq!(
        junk,
        [
            (401, json!("token_rejected")),
            (401, json!("token_rejected")),
            (503, json!("rate_limited"))
        ]
    );
    // ...but never the slot a known buyer's refresh wants: Figma is asked,
    // and the refund applies at once, with no expired answer standing in.
    let reply = call(&app, as_user("1")).await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_eq!(paywall.stats().stale_served, 0);
    assert_eq!(paywall.stats().unverified_served, 0);
    assert_eq!(figma.payment_requests(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_breaker_probes_no_other_lookup_spends_a_slot() {
    const USERS: usize = 20;
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    // A slot every 10 s, bursts of 50: refresh-ahead, which waits for the
    // budget to be whole, takes none in this test. Past its lifetime an
    // answer is not let in while its refresh waits: each buyer asks.
    let client = figma
        .client_builder()
        .clock(&clock)
        .rate_limit(6, 50)
        .queue(64, Duration::from_millis(200))
        .build()
        .unwrap();
    let paywall = Paywall::builder(client)
        .paid_lifetime(Duration::from_secs(60))
        .max_unverified(Duration::ZERO)
        .build()
        .expect("the paywall builds");
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let ids: Vec<String> = (0..USERS).map(|i| format!("{}", 70_000 + i)).collect();
    let all = || futures_util::future::join_all(ids.iter().map(|id| call(&app, as_user(id))));
    for id in &ids {
        set(&figma, id, &plugin(), PaymentStatus::Paid);
    }
    assert!(all().await.iter().all(|r| r.status == 200));
    // Figma fails as every answer expires: the breaker opens.
    figma.set_steady_fault(Some(Fault::Status(500)));
    clock.advance(Duration::from_secs(61));
    assert!(all().await.iter().all(|r| r.status == 200));
    assert!(paywall.stats().figma_failing);
    // Its cool-down over, one buyer's lookup probes, and Figma is slow to
    // answer it. Every other buyer is let in on their stale answer
    // meanwhile, without taking a slot of the budget for a call the
    // breaker would not let through.
    figma.set_steady_fault(Some(Fault::Delay(Duration::from_secs(2))));
    let slots_used = || paywall.stats().slots_used.values().sum::<u64>();
    let (calls, used) = (figma.payment_requests(), slots_used());
    clock.advance(Duration::from_secs(5));
    let replies = all().await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let stale = replies.iter().filter(|r| r.body["stale"] == true).count();
    assert_eq!(stale, USERS - 1);
    // The probe's answer closes the breaker.
    eventually("the probe's answer closes the breaker", async || {
        !paywall.stats().figma_failing
    })
    .await;
    assert_eq!(figma.payment_requests() - calls, 1, "one probe");
    assert_eq!(
        slots_used() - used,
        1,
        "one slot, the probe's: {:?}",
        paywall.stats().slots_used
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_long_outage_refuses_no_warm_paying_user_and_costs_figma_little() {
    const USERS: usize = 1000;
    const GROUPS: usize = 10;
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    // A budget that keeps every user fresh when Figma answers: 1,000
    // answers of a minute each, refreshed in groups of 100 every 6 s.
    let paywall = minute_paywall(
        &figma,
        &clock,
        (1200, 200),
        (256, Duration::from_millis(200)),
    );
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let ids: Vec<String> = (0..USERS).map(|i| format!("{}", 50_000 + i)).collect();
    for id in &ids {
        set(&figma, id, &plugin(), PaymentStatus::Paid);
    }
    let all = |app: &Router| {
        let app = app.clone();
        let ids = ids.clone();
        async move { futures_util::future::join_all(ids.iter().map(|id| call(&app, as_user(id)))).await }
    };
    for group in ids.chunks(USERS / GROUPS) {
        let replies =
            futures_util::future::join_all(group.iter().map(|id| call(&app, as_user(id)))).await;
        assert!(replies.iter().all(|r| r.status == 200));
        clock.advance(Duration::from_secs(6));
    }
    // Every user asked about once, and the first answers past their
    // refresh point renewed in idle slots (one a slot at most).
    let warm = figma.payment_requests();
    assert!((USERS..=USERS + GROUPS).contains(&warm), "{warm} lookups");

    // A minute of outage of all of Figma, every user asking twice a second.
    figma.set_steady_fault(Some(Fault::Status(500)));
    let (mut requests, mut stale, mut rounds_open) = (0, 0, 0);
    for _ in 0..120 {
        for reply in all(&app).await {
            requests += 1;
            assert_eq!(
                reply.status, 200,
                "refused during the outage: {}",
                reply.body
            );
            stale += usize::from(reply.body["stale"] == true);
        }
        rounds_open += usize::from(paywall.stats().figma_failing);
        clock.advance(Duration::from_millis(500));
    }
    let outage_calls = figma.payment_requests() - warm;
    println!(
        "{requests} requests, {stale} stale, {outage_calls} lookups and {} GET /v1/me in the outage, breaker open {rounds_open} of 120 rounds",
        figma.me_requests()
    );
    assert!(stale > requests / 2, "{stale} of {requests} stale");
    // What was due when the outage began went to Figma (a group expired,
    // two more due a refresh ahead of expiry) until the breaker opened;
    // after that only probes (every 5 s, doubling to 30 s). Without the
    // breaker, expired users would ask until the budget (1,200) was spent.
    assert!(
        outage_calls <= 3 * USERS / GROUPS + 10,
        "{outage_calls} lookups during the outage"
    );
    assert!(
        rounds_open >= 100,
        "breaker open {rounds_open} of 120 rounds"
    );

    // Figma answers again: the next probe closes the breaker, and expired
    // answers are refreshed as fast as the budget allows. A caller whose
    // refresh finds no slot gets 503 with Retry-After, not the stale
    // answer: anyone can spend the budget, Figma did not fail.
    figma.set_steady_fault(None);
    clock.advance(Duration::from_secs(30));
    let mut waited = 0;
    for second in 0.. {
        let replies = all(&app).await;
        for reply in &replies {
            match reply.status.as_u16() {
                200 => {}
                503 => {
                    assert_eq!(reply.body["reason"], "rate_limited", "{}", reply.body);
                    assert!(reply.headers.contains_key("retry-after"));
                    waited += 1;
                }
                other => panic!("{other} after the outage: {}", reply.body),
            }
        }
        if replies
            .iter()
            .all(|r| r.status == 200 && r.body["stale"] == false)
        {
            println!("all fresh {second} s after the outage; {waited} waits for a slot");
            break;
        }
        // 1,000 refreshes at 1,200 a minute, 200 at once: about 40 s.
        assert!(second < 60, "not all fresh a minute after the outage");
        clock.advance(Duration::from_secs(1));
    }
    assert!(!paywall.stats().figma_failing);
}
