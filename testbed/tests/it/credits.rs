//! Credits: allowances by status, counted by Figma user ID, exact under
//! concurrency; windows on the mock clock; reported costs; free tries; the
//! RateLimit fields, parsed with a Structured Fields parser.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::common::*;
use axum::{routing::get, Extension, Json, Router};
use figma_paywall::{
    credits::{CreditCharge, Credits, Window},
    mock::{MockClock, MockFigma},
    PaidAccess, PaymentInformation, PaymentStatus, Paywall, RequirePaidLayer,
};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use sfv::{BareItem, List, ListEntry, Parser};

/// A handler that counts its calls and reports what `?cost=` says.
fn counting_app(hits: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/generate",
        get(
            move |info: PaymentInformation,
                  access: PaidAccess,
                  Extension(charge): Extension<CreditCharge>,
                  query: axum::extract::RawQuery| async move {
                hits.fetch_add(1, Ordering::SeqCst);
                if let Some(cost) = query.0.as_deref().and_then(|q| q.strip_prefix("cost=")) {
                    charge.report(cost.parse().unwrap());
                }
                Json(json!({
                    "status": info.payment_status.as_str(),
                    "via": format!("{:?}", access.via),
                    "reserved": charge.reserved(),
                    "remaining": charge.remaining(),
                }))
            },
        ),
    )
}

/// Each list member's name and its integer parameters, as a parser reads
/// them.
fn field(headers: &HeaderMap, name: &str) -> Vec<(String, Vec<(String, i64)>)> {
    let value = headers
        .get(name)
        .unwrap_or_else(|| panic!("{name} is missing"))
        .to_str()
        .unwrap();
    let list: List = Parser::new(value)
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {value:?}: {e}"));
    list.iter()
        .map(|entry| {
            let ListEntry::Item(item) = entry else {
                panic!("{name}: an inner list")
            };
            let BareItem::String(policy) = &item.bare_item else {
                panic!("{name}: a member that is not a string: {value}")
            };
            let params = item
                .params
                .iter()
                .map(|(k, v)| {
                    let BareItem::Integer(i) = v else {
                        panic!("{name}: {k} is not an integer")
                    };
                    (k.as_str().to_owned(), i64::from(*i))
                })
                .collect();
            (policy.as_str().to_owned(), params)
        })
        .collect()
}

fn get_path(path: &str, token: &str) -> http::Request<axum::body::Body> {
    http::Request::get(path)
        .header("x-figma-payment-token", token)
        .body(axum::body::Body::empty())
        .unwrap()
}

#[tokio::test]
async fn fifty_requests_at_once_with_five_credits_left_let_exactly_five_through() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    set(&figma, "4001", &plugin(), PaymentStatus::Paid);
    let token = figma.issue_token(&user("4001"), &plugin());
    let hits = Arc::new(AtomicUsize::new(0));
    let credits = Credits::new().paid(20, Window::Day);
    let app = counting_app(hits.clone())
        .layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits));
    let base = serve(app).await;
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{base}/generate"))
            .header("x-figma-payment-token", token.expose_secret())
            .send()
    };
    for _ in 0..15 {
        assert_eq!(get().await.unwrap().status(), 200);
    }
    let replies = futures_util::future::join_all((0..50).map(|_| get())).await;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for reply in replies {
        *by_status
            .entry(reply.unwrap().status().as_u16())
            .or_default() += 1;
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        20,
        "exactly 5 of the 50 reached the handler"
    );
    assert_eq!(by_status, [(200, 5), (429, 45)].into());
    let stats = paywall.stats();
    assert_eq!(stats.credits_spent["paid"], 20);
    assert_eq!(stats.credits_refused["paid"], 45);
}

#[tokio::test]
async fn a_buyer_out_of_credits_gets_429_until_the_window_renews_with_the_fields_saying_so() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = Paywall::new(figma.client_builder().clock(&clock).build().unwrap());
    // 14:30 UTC on a day of 2100.
    clock.advance_to(at(2100, time::Month::March, 3, 14, 30));
    set(&figma, "4002", &plugin(), PaymentStatus::Paid);
    let token = figma.issue_token(&user("4002"), &plugin());
    let credits = Credits::new()
        .paid(1_000, Window::Month)
        .paid(2, Window::Day);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits));

    let first = call(&app, get_path("/generate", token.expose_secret())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let day = 86_400 - (14 * 3600 + 30 * 60);
    assert_eq!(
        field(&first.headers, "ratelimit-policy"),
        vec![
            (
                "month".to_owned(),
                vec![("q".to_owned(), 1_000), ("w".to_owned(), 31 * 86_400)]
            ),
            (
                "day".to_owned(),
                vec![("q".to_owned(), 2), ("w".to_owned(), 86_400)]
            ),
        ]
    );
    let state = field(&first.headers, "ratelimit");
    assert_eq!(state[0].0, "month");
    assert_eq!(state[0].1[0], ("r".to_owned(), 999));
    assert_eq!(
        state[1],
        (
            "day".to_owned(),
            vec![("r".to_owned(), 1), ("t".to_owned(), day)]
        )
    );

    assert_eq!(
        call(&app, get_path("/generate", token.expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    let refused = call(&app, get_path("/generate", token.expose_secret())).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["reason"], "credits_exhausted");
    assert_eq!(
        refused.body["message"],
        "you have used today's 2 credits; they renew at 00:00 UTC on 4 March"
    );
    assert_eq!(refused.headers["retry-after"], day.to_string().as_str());
    assert_eq!(
        field(&refused.headers, "ratelimit")[1].1[0],
        ("r".to_owned(), 0)
    );

    // The next day renews the day, not the month.
    clock.advance(Duration::from_secs(day as u64));
    let next = call(&app, get_path("/generate", token.expose_secret())).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
    assert_eq!(
        field(&next.headers, "ratelimit")[0].1[0],
        ("r".to_owned(), 997)
    );
}

#[tokio::test]
async fn month_windows_of_31_30_and_28_days_and_the_years_end_renew_at_their_end() {
    let figma = MockFigma::start().await.unwrap();
    let clock = MockClock::new();
    let paywall = Paywall::new(figma.client_builder().clock(&clock).build().unwrap());
    set(&figma, "4003", &plugin(), PaymentStatus::Paid);
    let token = figma.issue_token(&user("4003"), &plugin());
    let credits = Credits::new().paid(1, Window::Month).paid(5, Window::Hour);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits));
    use time::Month::*;
    // The last minute of each month, the month's length, and the first
    // minute of the next (whose credit that request spends: no two months
    // follow each other here).
    for (year, month, last_day, days) in [
        (2100, January, 31, 31),
        (2100, April, 30, 30),
        (2101, February, 28, 28), // no leap year
        (2101, December, 31, 31), // the year's end
    ] {
        clock.advance_to(at(year, month, last_day, 23, 59));
        let first = call(&app, get_path("/generate", token.expose_secret())).await;
        assert_eq!(first.status, StatusCode::OK, "{month}: {}", first.body);
        assert_eq!(
            field(&first.headers, "ratelimit-policy")[0].1[1],
            ("w".to_owned(), days * 86_400)
        );
        assert_eq!(
            field(&first.headers, "ratelimit")[0].1,
            [("r".to_owned(), 0), ("t".to_owned(), 60)]
        );
        let refused = call(&app, get_path("/generate", token.expose_secret())).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{month}");
        assert_eq!(refused.headers["retry-after"], "60");
        let next = format!("on 1 {}", month.next());
        assert_eq!(
            refused.body["message"],
            format!("you have used this month's 1 credit; they renew {next}")
        );
        clock.advance(Duration::from_secs(60));
        let renewed = call(&app, get_path("/generate", token.expose_secret())).await;
        assert_eq!(
            renewed.status,
            StatusCode::OK,
            "{month} renewed: {}",
            renewed.body
        );
    }
}

#[tokio::test]
async fn a_reported_cost_settles_zero_gives_back_and_past_the_balance_refuses_the_next() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    set(&figma, "4004", &plugin(), PaymentStatus::Paid);
    let token = figma.issue_token(&user("4004"), &plugin());
    let hits = Arc::new(AtomicUsize::new(0));
    let credits = Credits::new().paid(10, Window::Day);
    let app = counting_app(hits.clone())
        .layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits.clone().cost(2)));
    let buyer = user("4004");
    let left = || paywall.credits_left(&credits, &buyer, &PaymentStatus::Paid);

    let zero = call(&app, get_path("/generate?cost=0", token.expose_secret())).await;
    assert_eq!(zero.status, StatusCode::OK);
    assert_eq!(zero.body["reserved"], 2);
    assert_eq!(
        zero.body["remaining"], 8,
        "the reservation was taken while the handler ran"
    );
    assert_eq!(
        field(&zero.headers, "ratelimit")[0].1[0],
        ("r".to_owned(), 10),
        "and given back"
    );
    assert_eq!(left().await.unwrap().remaining(), Some(10));

    let five = call(&app, get_path("/generate?cost=5", token.expose_secret())).await;
    assert_eq!(
        field(&five.headers, "ratelimit")[0].1[0],
        ("r".to_owned(), 5)
    );
    assert_eq!(left().await.unwrap().remaining(), Some(5));

    // 4 reserved 2 and report 9: the balance goes below zero ...
    let past = call(&app, get_path("/generate?cost=9", token.expose_secret())).await;
    assert_eq!(past.status, StatusCode::OK);
    assert_eq!(left().await.unwrap().remaining(), Some(-4));
    assert_eq!(
        field(&past.headers, "ratelimit")[0].1[0],
        ("r".to_owned(), 0)
    );
    // ... and the next is refused, until the creator grants some back.
    let refused = call(&app, get_path("/generate?cost=0", token.expose_secret())).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let granted = paywall
        .grant_credits(&credits, &user("4004"), &PaymentStatus::Paid, 6)
        .await
        .unwrap();
    assert_eq!(granted.remaining(), Some(2));
    assert_eq!(
        call(&app, get_path("/generate", token.expose_secret()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(left().await.unwrap().remaining(), Some(0));
}

#[tokio::test]
async fn a_non_buyer_gets_free_tries_counted_by_user_then_402_for_checkout() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    set(&figma, "4005", &plugin(), PaymentStatus::Unpaid);
    // Two tokens of one user share one count.
    let tokens = [
        figma.issue_token(&user("4005"), &plugin()),
        figma.issue_token(&user("4005"), &plugin()),
    ];
    let credits = Credits::new()
        .paid(100, Window::Day)
        .unpaid(3, Window::Ever);
    let app = counting_app(Arc::default())
        .layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits));
    for i in 0..3 {
        let reply = call(&app, get_path("/generate", tokens[i % 2].expose_secret())).await;
        assert_eq!(reply.status, StatusCode::OK, "try {i}: {}", reply.body);
        assert_eq!(reply.body["status"], "UNPAID");
        assert_eq!(reply.body["via"], "FreeTry");
        assert_eq!(
            field(&reply.headers, "ratelimit-policy"),
            vec![("ever".to_owned(), vec![("q".to_owned(), 3)])]
        );
        assert_eq!(
            field(&reply.headers, "ratelimit"),
            vec![("ever".to_owned(), vec![("r".to_owned(), 2 - i as i64)])]
        );
    }
    let refused = call(&app, get_path("/generate", tokens[1].expose_secret())).await;
    assert_eq!(refused.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(refused.body["reason"], "not_paid");
    assert_eq!(refused.body["payment_status"], "UNPAID");
    assert_eq!(
        refused.body["message"],
        format!("you have used your 3 free tries; buy PLUGIN {PLUGIN} on Figma Community (https://www.figma.com/community/plugin/{PLUGIN}) to go on")
    );
    assert!(refused.headers.get("retry-after").is_none());
    assert_eq!(
        field(&refused.headers, "ratelimit"),
        vec![("ever".to_owned(), vec![("r".to_owned(), 0)])]
    );
    // Without an UNPAID allowance, a non-buyer is refused at once, as ever.
    let no_tries = echo_app().layer(
        RequirePaidLayer::new(&paywall, plugin()).credits(Credits::new().paid(1, Window::Day)),
    );
    let reply = call(&no_tries, as_user("4005")).await;
    assert_eq!(reply.status, StatusCode::PAYMENT_REQUIRED);
    assert!(reply.headers.get("ratelimit").is_none());
}

#[tokio::test]
async fn a_refund_moves_the_user_to_the_unpaid_allowance_at_once() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    set(&figma, "4006", &plugin(), PaymentStatus::Paid);
    let credits = Credits::new().paid(10, Window::Day).unpaid(1, Window::Ever);
    let app = counting_app(Arc::default())
        .layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits.clone()));
    for _ in 0..3 {
        assert_eq!(call(&app, as_user("4006")).await.status, StatusCode::OK);
    }
    // The refund, mid-window: Figma answers UNPAID, and the paywall hears of it.
    set(&figma, "4006", &plugin(), PaymentStatus::Unpaid);
    paywall.invalidate_user(&user("4006")).await;
    let reply = call(&app, as_user("4006")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["via"], "FreeTry");
    assert_eq!(
        call(&app, as_user("4006")).await.status,
        StatusCode::PAYMENT_REQUIRED
    );
    let paid = paywall
        .credits_left(&credits, &user("4006"), &PaymentStatus::Paid)
        .await
        .unwrap();
    assert_eq!(
        paid.remaining(),
        Some(7),
        "the paid count is left as it was"
    );
}

#[tokio::test]
async fn unmetered_statuses_and_the_bypass_list_carry_no_fields() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    set(&figma, "4007", &plugin(), PaymentStatus::Trial);
    let app = echo_app().layer(
        RequirePaidLayer::new(&paywall, plugin()).credits(Credits::new().paid(1, Window::Day)),
    );
    for _ in 0..3 {
        let reply = call(&app, as_user("4007")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "TRIAL has no allowance here: unmetered"
        );
        assert!(reply.headers.get("ratelimit").is_none());
    }
}

/// A UTC date and time as the wall clock's time.
fn at(year: i32, month: time::Month, day: u8, hour: u8, minute: u8) -> SystemTime {
    let secs = time::Date::from_calendar_date(year, month, day)
        .unwrap()
        .with_hms(hour, minute, 0)
        .unwrap()
        .assume_utc()
        .unix_timestamp();
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// Through Redis: replicas that share one count.
#[cfg(feature = "redis")]
mod through_redis {
    use super::*;
    use crate::{
        redis::{connect, prefix, redis_url},
        tcp_proxy::Proxy,
    };
    use figma_paywall::redis::RedisTier;

    /// `n` replicas on one Redis (`url`), each with its own paywall, all
    /// metering `credits`; their base URLs and paywalls.
    async fn replicas(
        figma: &MockFigma,
        url: &str,
        prefix: &str,
        n: usize,
        credits: &Credits,
        hits: &Arc<AtomicUsize>,
    ) -> Vec<(String, Paywall)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let tier = RedisTier::builder(url)
                .prefix(prefix)
                .timeout(Duration::from_millis(200))
                .replicas(n as u32)
                .build()
                .unwrap();
            let paywall = Paywall::builder(figma.client().unwrap())
                .redis(tier)
                .build()
                .unwrap();
            let app = counting_app(hits.clone())
                .layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits.clone()));
            out.push((serve(app).await, paywall));
        }
        out
    }

    #[tokio::test]
    async fn fifty_requests_at_once_across_three_replicas_with_five_left_let_exactly_five_through()
    {
        let url = redis_url();
        let figma = MockFigma::start().await.unwrap();
        set(&figma, "4101", &plugin(), PaymentStatus::Paid);
        let token = figma.issue_token(&user("4101"), &plugin());
        let hits = Arc::new(AtomicUsize::new(0));
        let credits = Credits::new()
            .paid(20, Window::Month)
            .paid(1_000, Window::Hour);
        let replicas = replicas(&figma, &url, &prefix(), 3, &credits, &hits).await;
        let http = reqwest::Client::new();
        let get = |i: usize| {
            http.get(format!("{}/generate", replicas[i % 3].0))
                .header("x-figma-payment-token", token.expose_secret())
                .send()
        };
        for i in 0..15 {
            assert_eq!(get(i).await.unwrap().status(), 200);
        }
        let replies = futures_util::future::join_all((0..50).map(get)).await;
        let ok = replies
            .iter()
            .filter(|r| r.as_ref().unwrap().status() == 200)
            .count();
        assert_eq!(
            hits.load(Ordering::SeqCst),
            20,
            "exactly 5 of the 50 reached a handler"
        );
        assert_eq!(ok, 5);
        let left = replicas[1]
            .1
            .credits_left(&credits, &user("4101"), &PaymentStatus::Paid)
            .await
            .unwrap();
        assert_eq!(left.windows[0].remaining, 0);
        assert_eq!(left.windows[1].remaining, 980);
    }

    #[tokio::test]
    async fn while_redis_is_out_of_reach_each_replica_spends_its_share_of_what_was_left() {
        let url = redis_url();
        let proxy = Proxy::start(
            url.trim_start_matches("redis://")
                .trim_end_matches('/')
                .to_owned(),
        )
        .await;
        let through = format!("redis://127.0.0.1:{}", proxy.port);
        let figma = MockFigma::start().await.unwrap();
        set(&figma, "4102", &plugin(), PaymentStatus::Paid);
        set(&figma, "4103", &plugin(), PaymentStatus::Paid);
        let token = figma.issue_token(&user("4102"), &plugin());
        let stranger = figma.issue_token(&user("4103"), &plugin());
        let hits = Arc::new(AtomicUsize::new(0));
        let allowance = 30;
        let credits = Credits::new().paid(allowance, Window::Day);
        let prefix = prefix();
        let replicas = replicas(&figma, &through, &prefix, 3, &credits, &hits).await;
        let http = reqwest::Client::new();
        let get = |i: usize, token: &figma_paywall::PluginPaymentToken| {
            http.get(format!("{}/generate", replicas[i % 3].0))
                .header("x-figma-payment-token", token.expose_secret())
                .send()
        };
        // Six through Redis, two on each replica.
        for i in 0..6 {
            assert_eq!(get(i, &token).await.unwrap().status(), 200);
        }
        proxy.cut();
        let mut admitted = 6;
        for i in 0..60 {
            let status = get(i, &token).await.unwrap().status();
            if status == 200 {
                admitted += 1;
            } else {
                assert_eq!(status, 429, "refused for want of credits, not an error");
            }
        }
        eprintln!("with Redis cut: {admitted} let in of {allowance}");
        // Each saw 24 to 26 left, so each spends 8: a third of it.
        let share = allowance / 3;
        assert!(
            admitted <= allowance + share,
            "{admitted} let in, past {allowance} and a share"
        );
        assert!(
            admitted >= 6 + 3 * 7,
            "each replica spent its share: {admitted}"
        );
        assert_eq!(hits.load(Ordering::SeqCst) as u64, admitted);
        // A user none has read the count of is refused, never let in uncounted.
        let reply = get(0, &stranger).await.unwrap();
        assert_eq!(reply.status(), 503);
        let body: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(body["reason"], "credits_unavailable");
        // Back: what each let in is added to the count with its next
        // reservation, and the count is exact again.
        proxy.restore().await;
        let mut redis = connect(&url).await;
        eventually(
            "every replica's offline spending reaches Redis",
            async || {
                for i in 0..3 {
                    let _ = get(i, &token).await;
                }
                let keys: Vec<String> =
                    ::redis::AsyncCommands::keys(&mut redis, format!("{prefix}c:paid:4102:*"))
                        .await
                        .unwrap();
                let Some(key) = keys.first() else {
                    return false;
                };
                let count: i64 = ::redis::AsyncCommands::get(&mut redis, key).await.unwrap();
                count as u64 == hits.load(Ordering::SeqCst) as u64
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_middleware_outside_the_gate_sets_one_requests_cost() {
    let figma = MockFigma::start().await.unwrap();
    let paywall = paywall(&figma);
    set(&figma, "4008", &plugin(), PaymentStatus::Paid);
    let credits = Credits::new().paid(10, Window::Day);
    let app = counting_app(Arc::default())
        .layer(RequirePaidLayer::new(&paywall, plugin()).credits(credits.clone()))
        .layer(axum::middleware::map_request(
            |mut req: axum::extract::Request| async move {
                let cost = if req.uri().query() == Some("long") {
                    7
                } else {
                    1
                };
                req.extensions_mut()
                    .insert(figma_paywall::credits::CreditCost(cost));
                req
            },
        ));
    let mut long = as_user("4008");
    *long.uri_mut() = "/generate?long".parse().unwrap();
    let reply = call(&app, long).await;
    assert_eq!(reply.body["reserved"], 7);
    assert_eq!(call(&app, as_user("4008")).await.body["reserved"], 1);
    let left = paywall
        .credits_left(&credits, &user("4008"), &PaymentStatus::Paid)
        .await
        .unwrap();
    assert_eq!(left.remaining(), Some(2));
}
