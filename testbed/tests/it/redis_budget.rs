//! Figma's budget shared through Redis, against a real Redis server at
//! `REDIS_URL`: how it starts, and how the replicas that reach Redis leave
//! the shares of those that do not unspent.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use crate::{
    common::*,
    redis::{connect, prefix, redis_url},
};
use figma_paywall::{mock::MockFigma, redis::RedisTier, PaymentStatus, Paywall, RequirePaidLayer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_budget_redis_lost_starts_spent() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    let prefix = prefix();
    // 60 a minute, bursts of 5: a slot a second. A state Redis does not
    // hold (a restart lost it) cannot tell what the last minute spent, so
    // it gives no burst: of five cold users at once, the first waits a
    // second for its slot, the second two (past the 2 s a lookup waits),
    // and the rest are refused without a call to Figma.
    let tier = RedisTier::builder(&url).prefix(&prefix).build().unwrap();
    let client = figma
        .client_builder()
        .rate_limit(60, 5)
        .queue(256, Duration::from_secs(2))
        .build()
        .unwrap();
    let paywall = Paywall::builder(client)
        .redis(tier)
        .build()
        .expect("the paywall builds");
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    let ids = ["21", "22", "23", "24", "25"];
    for id in ids {
        set(&figma, id, &plugin(), PaymentStatus::Paid);
    }
    let replies =
        futures_util::future::join_all(ids.iter().map(|id| call(&app, as_user(id)))).await;
    let passed = replies.iter().filter(|r| r.status == 200).count();
    assert!((1..=2).contains(&passed), "{passed} passed at once");
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.body["reason"], "rate_limited");
    }
    assert_eq!(figma.payment_requests(), passed);
}

/// The mock Figma with the users `ids` as buyers, a prefix of the test's
/// own, and a connection to Redis.
async fn buyers(
    url: &str,
    ids: std::ops::Range<u32>,
) -> (MockFigma, String, ::redis::aio::MultiplexedConnection) {
    let figma = MockFigma::start().await.unwrap();
    for id in ids {
        set(&figma, &id.to_string(), &plugin(), PaymentStatus::Paid);
    }
    (figma, prefix(), connect(url).await)
}

/// A replica that, like every replica, says every second that it is
/// alive; `n` replicas at least share the budget.
fn replica(
    figma: &MockFigma,
    url: &str,
    prefix: &str,
    n: u32,
    name: Option<&str>,
) -> (Paywall, axum::Router) {
    let mut tier = RedisTier::builder(url).prefix(prefix).replicas(n);
    if let Some(name) = name {
        tier = tier.replica_name(name);
    }
    let tier = tier.build().unwrap();
    // 60 a minute: an interval of 1000 ms, and a burst of 10.
    let client = figma.client_builder().rate_limit(60, 10).build().unwrap();
    let paywall = Paywall::builder(client)
        .redis(tier)
        .build()
        .expect("the paywall builds");
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    (paywall, app)
}

async fn redis_now_ms(redis: &mut ::redis::aio::MultiplexedConnection) -> i64 {
    let (secs, micros): (i64, i64) = ::redis::cmd("TIME").query_async(redis).await.unwrap();
    secs * 1000 + micros / 1000
}

/// Waits until Redis hears from the replica `name` (again).
async fn heard_from(redis: &mut ::redis::aio::MultiplexedConnection, prefix: &str, name: &str) {
    let since = redis_now_ms(redis).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let heard: Option<i64> = ::redis::cmd("ZSCORE")
            .arg(format!("{prefix}replicas:"))
            .arg(name)
            .query_async(redis)
            .await
            .unwrap();
        if heard.is_some_and(|at| at >= since) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} was not heard from");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How far the shared budget's state moves for one call to Figma.
async fn cost_of_a_call(
    redis: &mut ::redis::aio::MultiplexedConnection,
    prefix: &str,
    app: &axum::Router,
    id: &str,
) -> i64 {
    // The state 5 s ahead: within the burst, and ahead of Redis's clock
    // however slow the call, so that it moves by the call's cost alone.
    let budget = format!("{prefix}budget:");
    let before = redis_now_ms(redis).await + 5000;
    let () = ::redis::cmd("SET")
        .arg(&budget)
        .arg(before)
        .query_async(redis)
        .await
        .unwrap();
    assert_eq!(call(app, as_user(id)).await.status, 200);
    let after: i64 = ::redis::cmd("GET")
        .arg(&budget)
        .query_async(redis)
        .await
        .unwrap();
    after - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_out_of_reach_of_redis_keep_their_shares_of_the_budget() {
    let url = redis_url();
    let (figma, prefix, mut redis) = buyers(&url, 30..40).await;
    // Two replicas share the budget, and Redis has heard only from this
    // one: the other may be spending its half without Redis, so each call
    // through Redis costs two intervals.
    let (_a, a) = replica(&figma, &url, &prefix, 2, None);
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &a, "31").await, 2000);

    // The other replica is heard from: a call costs one interval.
    let b = replica(&figma, &url, &prefix, 2, Some("b"));
    heard_from(&mut redis, &prefix, "b").await;
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &a, "32").await, 1000);
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &b.1, "33").await, 1000);

    // It goes quiet (as a replica cut off from Redis does): after 2 s
    // without a word from it, its share is left to it again.
    drop(b);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &a, "34").await, 2000);

    // Started again under its name, it takes its place at once.
    let _b = replica(&figma, &url, &prefix, 2, Some("b"));
    heard_from(&mut redis, &prefix, "b").await;
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &a, "35").await, 1000);

    // A replica under another name that goes quiet keeps its share for a
    // minute: three known, two heard from, a call costs 1.5 intervals.
    let c = replica(&figma, &url, &prefix, 2, Some("c"));
    heard_from(&mut redis, &prefix, "c").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &a, "36").await, 1500);

    // With one replica, the whole budget: a call costs an interval.
    let prefix = self::prefix();
    let (_d, d) = replica(&figma, &url, &prefix, 1, None);
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &d, "38").await, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_budget_or_replica_in_redis_does_not_open_the_budget() {
    let url = redis_url();
    let (figma, prefix, mut redis) = buyers(&url, 40..43).await;
    let (_a, a) = replica(&figma, &url, &prefix, 2, None);

    // A replica "heard from" an hour from now (a forged or mistimed
    // score) is not taken as reaching Redis: its share stays unspent.
    let replicas = format!("{prefix}replicas:");
    let () = ::redis::cmd("ZADD")
        .arg(&replicas)
        .arg(redis_now_ms(&mut redis).await + 3_600_000)
        .arg("b")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(cost_of_a_call(&mut redis, &prefix, &a, "40").await, 2000);
    let b: Option<i64> = ::redis::cmd("ZSCORE")
        .arg(&replicas)
        .arg("b")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(b, None);

    // A budget state that is not a number is a spent burst: the call waits
    // for its slot, and the state is a number again.
    let budget = format!("{prefix}budget:");
    let () = ::redis::cmd("SET")
        .arg(&budget)
        .arg("nan")
        .query_async(&mut redis)
        .await
        .unwrap();
    let now = redis_now_ms(&mut redis).await;
    assert_eq!(call(&a, as_user("41")).await.status, 200);
    let state: i64 = ::redis::cmd("GET")
        .arg(&budget)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(state > now, "{state} is not ahead of {now}");
}
