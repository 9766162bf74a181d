//! The shared Redis tier, against a real Redis server at `REDIS_URL`, or
//! on 127.0.0.1:6379 (`.ci/run` starts one). Without one these tests fail,
//! saying what to start.
#![cfg(feature = "redis")]

use std::time::{Duration, Instant};

use crate::{common::*, tcp_proxy::Proxy};
use axum::Router;
use figma_paywall::{
    mock::{Fault, MockClock, MockFigma},
    redis::RedisTier,
    PaymentStatus, Paywall, RequirePaidLayer,
};

/// The Redis server the tests share: `REDIS_URL`, or the one on this
/// machine's standard port. A test fails, saying what to start, when there
/// is none: it never passes without having run.
pub(crate) fn redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = ::redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("REDIS_URL={url:?} is not a Redis URL: {e}"));
    let reached = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c));
    if let Err(e) = reached {
        panic!("no Redis server at {url} ({e}): start one (Debian: apt-get install redis-server; redis-server --daemonize yes) or export REDIS_URL; .ci/run does");
    }
    url
}

/// A connection of the test's own, to look into Redis or write to it.
pub(crate) async fn connect(url: &str) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// A prefix of this test's own, so tests sharing the server do not meet.
pub(crate) fn prefix() -> String {
    format!("figma-paywall-test:{:016x}:", rand::random::<u64>())
}

struct Replica {
    paywall: Paywall,
    app: Router,
}

/// `n` app instances, each with its own client, budget and in-process
/// cache, sharing one Redis tier.
fn replicas(figma: &MockFigma, url: &str, prefix: &str, n: usize) -> Vec<Replica> {
    (0..n)
        .map(|_| {
            let tier = RedisTier::builder(url)
                .prefix(prefix)
                .timeout(Duration::from_millis(100))
                .build()
                .unwrap();
            let paywall = Paywall::builder(figma.client().unwrap())
                .redis(tier)
                .build()
                .expect("the paywall builds");
            let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
            Replica { paywall, app }
        })
        .collect()
}

/// `n` replicas as [`replicas`] makes them, once each listens for
/// invalidations, and a connection of the test's own to their Redis.
async fn listening_replicas(
    figma: &MockFigma,
    url: &str,
    prefix: &str,
    n: usize,
) -> (Vec<Replica>, ::redis::aio::MultiplexedConnection) {
    let replicas = replicas(figma, url, prefix, n);
    let mut redis = connect(url).await;
    wait_until_listening(&mut redis, &format!("{prefix}invalidate:"), n).await;
    (replicas, redis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_make_one_call_for_a_cold_user() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    figma.set_latency(Duration::from_millis(100));
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let replicas = replicas(&figma, &url, &prefix(), 4);
    let replies =
        futures_util::future::join_all((0..1000).map(|i| call(&replicas[i % 4].app, as_user("5"))))
            .await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(figma.payment_requests(), 1);
    let redis_hits: u64 = replicas.iter().map(|r| r.paywall.stats().redis_hits).sum();
    assert!(redis_hits >= 1, "other replicas read the answer from Redis");
}

#[tokio::test]
async fn a_429_on_one_replica_stops_the_others() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    let replicas = replicas(&figma, &url, &prefix(), 3);
    figma.push_fault(Fault::RateLimited { retry_after: 5 });
    let reply = call(&replicas[0].app, as_user("1")).await;
    assert_eq!(reply.status, 503);
    assert_eq!(figma.payment_requests(), 1);
    // Another replica, another cold user: no call reaches Figma.
    for (i, replica) in replicas.iter().enumerate().skip(1) {
        let reply = call(&replica.app, as_user(&format!("{}", 10 + i))).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.body["reason"], "rate_limited");
        let left: u64 = reply.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=5).contains(&left));
    }
    assert_eq!(figma.payment_requests(), 1);
}

#[tokio::test]
async fn invalidation_on_one_replica_drops_the_answer_on_all() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    let prefix = prefix();
    let (replicas, _) = listening_replicas(&figma, &url, &prefix, 4).await;
    for replica in &replicas {
        assert_eq!(call(&replica.app, as_user("5")).await.status, 402);
    }
    assert_eq!(figma.payment_requests(), 1);
    // The user buys; one replica hears of the checkout.
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    replicas[0].paywall.invalidate_user(&user("5")).await;
    // Every replica lets them in now, with one more call in all.
    let deadline = Instant::now() + Duration::from_secs(2);
    for replica in &replicas[1..] {
        loop {
            let reply = call(&replica.app, as_user("5")).await;
            if reply.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the invalidation did not reach a replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(call(&replicas[0].app, as_user("5")).await.status, 200);
    assert_eq!(figma.payment_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_refuses_no_known_buyer_and_it_is_used_again_when_back() {
    let url = redis_url();
    let target = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .rsplit('@')
        .next()
        .unwrap()
        .to_owned();
    let proxy = Proxy::start(target).await;
    let proxied = format!("redis://127.0.0.1:{}", proxy.port);
    let figma = MockFigma::start().await.unwrap();
    let replicas = replicas(&figma, &proxied, &prefix(), 2);
    for i in 0..40 {
        set(
            &figma,
            &format!("{}", 700 + i),
            &plugin(),
            PaymentStatus::Paid,
        );
    }
    // Warm through Redis, on both replicas.
    for replica in &replicas {
        for i in 0..5 {
            let reply = call(&replica.app, as_user(&format!("{}", 700 + i))).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
    }

    proxy.cut();
    // Known buyers pass on every replica.
    for replica in &replicas {
        for i in 0..5 {
            let reply = call(&replica.app, as_user(&format!("{}", 700 + i))).await;
            assert_eq!(
                reply.status, 200,
                "refused while Redis was down: {}",
                reply.body
            );
        }
    }
    // New callers get an answer, or (the budget's share spent) a 503 in
    // Figma's envelope; never anything else.
    for i in 10..20 {
        let reply = call(&replicas[i % 2].app, as_user(&format!("{}", 700 + i))).await;
        assert!(
            reply.status == 200 || reply.body["reason"] == "rate_limited",
            "{}: {}",
            reply.status,
            reply.body
        );
    }

    proxy.restore().await;
    // Back: one replica's answer reaches the other through Redis again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let calls = figma.payment_requests();
        assert_eq!(call(&replicas[0].app, as_user("739")).await.status, 200);
        let reply = call(&replicas[1].app, as_user("739")).await;
        assert_eq!(reply.status, 200);
        if figma.payment_requests() == calls + 1 {
            break; // replica 1 read replica 0's answer from Redis
        }
        assert!(Instant::now() < deadline, "Redis was not used again");
        replicas[0].paywall.invalidate_user(&user("739")).await;
        replicas[1].paywall.invalidate_user(&user("739")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn an_answer_near_its_end_lets_a_cold_replica_in_at_once_and_is_refreshed_behind() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let prefix = prefix();
    let clock = MockClock::new();
    // The budget Redis keeps runs on Redis's clock, not the mock's: one
    // slot every 100 ms, and a pause before each refresh below, so that it
    // finds the budget idle, as a refresh behind a request needs.
    let replica = || {
        let tier = RedisTier::builder(&url).prefix(&prefix).build().unwrap();
        let client = figma
            .client_builder()
            .clock(&clock)
            .rate_limit(600, 10)
            .build()
            .unwrap();
        let paywall = Paywall::builder(client)
            .redis(tier)
            .build()
            .expect("the paywall builds");
        echo_app().layer(RequirePaidLayer::new(&paywall, plugin()))
    };
    // Until Figma has been asked `calls` times in all (the refresh behind a
    // request that was let in runs in the background).
    let asked = |calls: usize| {
        let figma = &figma;
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while figma.payment_requests() < calls && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            figma.payment_requests()
        }
    };
    assert_eq!(call(&replica(), as_user("5")).await.status, 200);
    assert_eq!(figma.payment_requests(), 1);
    // Past 80 % of its life, a cold replica lets the buyer in on the answer
    // in Redis, still fresh, and asks Figma again behind the request; Figma
    // fails, and nothing changes.
    clock.advance(Duration::from_secs(510)); // 85 % of the 10-minute PAID lifetime
    figma.set_steady_fault(Some(Fault::Status(500)));
    let idle = Duration::from_millis(1500);
    tokio::time::sleep(idle).await;
    assert_eq!(call(&replica(), as_user("5")).await.status, 200);
    assert_eq!(asked(2).await, 2);
    // Figma back: the next cold replica's refresh writes through…
    figma.set_steady_fault(None);
    tokio::time::sleep(idle).await;
    assert_eq!(call(&replica(), as_user("5")).await.status, 200);
    assert_eq!(asked(3).await, 3);
    // …so the one after reads the new answer from Redis, and asks nothing.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(call(&replica(), as_user("5")).await.status, 200);
        if figma.payment_requests() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refreshed answer never reached Redis: {} calls",
            figma.payment_requests()
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        figma.payment_requests(),
        3,
        "a fresh answer was asked about"
    );
}

/// A replica on its own (a cold in-process cache) sealing with `key`.
fn replica_with_key(figma: &MockFigma, url: &str, prefix: &str, key: &str) -> Router {
    let tier = RedisTier::builder(url).prefix(prefix).build().unwrap();
    let paywall = Paywall::builder(figma.client().unwrap())
        .signing_key(key)
        .redis(tier)
        .build()
        .expect("the paywall builds");
    echo_app().layer(RequirePaidLayer::new(&paywall, plugin()))
}

#[tokio::test]
async fn answers_in_redis_without_a_valid_seal_are_refused() {
    let url = redis_url();
    const KEY: &str = "the replicas' shared secret, 32+ bytes";
    let figma = MockFigma::start().await.unwrap();
    let prefix = prefix();
    let mut redis = connect(&url).await;
    // An UNPAID answer, altered in Redis to PAID by someone without the key.
    set(&figma, "31", &plugin(), PaymentStatus::Unpaid);
    let app = replica_with_key(&figma, &url, &prefix, KEY);
    assert_eq!(call(&app, as_user("31")).await.status, 402);
    let (name, mut value) = the_one_answer(&mut redis, &prefix).await;
    value[1 + 16 + 1] = 1; // [2][MAC: 16][1][status]: PAID
    let () = ::redis::cmd("SET")
        .arg(&name)
        .arg(value)
        .query_async(&mut redis)
        .await
        .unwrap();
    let app = replica_with_key(&figma, &url, &prefix, KEY);
    assert_eq!(
        call(&app, as_user("31")).await.status,
        402,
        "an altered answer let a caller in"
    );
    assert_eq!(figma.payment_requests(), 2);
    // A PAID answer written by a replica with another key, then a refund.
    set(&figma, "32", &plugin(), PaymentStatus::Paid);
    let forger = replica_with_key(
        &figma,
        &url,
        &prefix,
        "a forger's secret of 32 bytes or more",
    );
    assert_eq!(call(&forger, as_user("32")).await.status, 200);
    set(&figma, "32", &plugin(), PaymentStatus::Unpaid);
    let app = replica_with_key(&figma, &url, &prefix, KEY);
    assert_eq!(
        call(&app, as_user("32")).await.status,
        402,
        "a forged answer let a caller in"
    );
    assert_eq!(figma.payment_requests(), 4);
}

/// A replica on its own, on `clock`, with the default key.
fn replica_on(figma: &MockFigma, url: &str, prefix: &str, clock: &MockClock) -> Replica {
    let tier = RedisTier::builder(url).prefix(prefix).build().unwrap();
    let client = figma.client_builder().clock(clock).build().unwrap();
    let paywall = Paywall::builder(client)
        .redis(tier)
        .build()
        .expect("the paywall builds");
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    Replica { paywall, app }
}

pub(crate) async fn wait_until_listening(
    redis: &mut ::redis::aio::MultiplexedConnection,
    channel: &str,
    n: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, listening): (String, usize) = ::redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(redis)
            .await
            .unwrap();
        if listening >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{listening} of {n} listen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_offs_and_invalidations_in_redis_count_only_when_sealed_and_recent() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    let prefix = prefix();
    let clock = MockClock::new();
    let mut redis = connect(&url).await;
    let ours = replica_on(&figma, &url, &prefix, &clock);
    let other = replica_on(&figma, &url, &prefix, &MockClock::new());
    let forger = replica_with_key(
        &figma,
        &url,
        &prefix,
        "a forger's secret of 32 bytes or more",
    );
    let channel = format!("{prefix}invalidate:");
    wait_until_listening(&mut redis, &channel, 3).await;
    for id in ["5", "6", "7", "8", "9"] {
        set(&figma, id, &plugin(), PaymentStatus::Paid);
    }

    // A shared budget spent for a century, or not a number, stops nobody.
    for (budget, id) in [("99999999999999999", "10"), ("junk", "11")] {
        let () = ::redis::cmd("SET")
            .arg(format!("{prefix}budget:"))
            .arg(budget)
            .query_async(&mut redis)
            .await
            .unwrap();
        let reply = call(&ours.app, as_user(id)).await;
        assert_eq!(reply.status, 402, "{budget}: {}", reply.body);
    }
    assert_eq!(figma.payment_requests(), 2);

    // A back-off written without the key (an unsealed one, then one sealed
    // by a replica with another key) stops nobody.
    let () = ::redis::cmd("SET")
        .arg(format!("{prefix}backoff:"))
        .arg("1")
        .arg("PX")
        .arg(3_600_000)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(call(&ours.app, as_user("5")).await.status, 200);
    let () = ::redis::cmd("DEL")
        .arg(format!("{prefix}backoff:"))
        .query_async(&mut redis)
        .await
        .unwrap();
    figma.push_fault(Fault::RateLimited { retry_after: 3600 });
    assert_eq!(call(&forger, as_user("6")).await.status, 503);
    assert_eq!(call(&ours.app, as_user("6")).await.status, 200);
    assert_eq!(figma.payment_requests(), 5);
    // A sealed one from a replica with the key stops every replica.
    let () = ::redis::cmd("DEL")
        .arg(format!("{prefix}backoff:"))
        .query_async(&mut redis)
        .await
        .unwrap();
    figma.push_fault(Fault::RateLimited { retry_after: 3 });
    assert_eq!(call(&other.app, as_user("7")).await.status, 503);
    let reply = call(&ours.app, as_user("8")).await;
    assert_eq!(reply.body["reason"], "rate_limited", "{}", reply.body);
    assert_eq!(figma.payment_requests(), 6);
    let () = ::redis::cmd("DEL")
        .arg(format!("{prefix}backoff:"))
        .query_async(&mut redis)
        .await
        .unwrap();

    // Invalidations: a raw one and one sealed with another key are
    // ignored; a sealed one from a replica with the key is applied.
    let mut heard = subscribed(&url, &channel).await;
    let () = ::redis::cmd("PUBLISH")
        .arg(&channel)
        .arg("all")
        .query_async(&mut redis)
        .await
        .unwrap();
    // The forger's paywall publishes an invalidation sealed with its key.
    let forging = Paywall::builder(figma.client().unwrap())
        .signing_key("a forger's secret of 32 bytes or more")
        .redis(RedisTier::builder(&url).prefix(&prefix).build().unwrap())
        .build()
        .expect("the paywall builds");
    forging.invalidate_all().await;
    other.paywall.invalidate_user(&user("5")).await;
    let mut messages = Vec::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut heard),
        )
        .await
        .unwrap()
        .unwrap();
        messages.push(message.get_payload_bytes().to_vec());
    }
    let calls = figma.payment_requests();
    let deadline = Instant::now() + Duration::from_secs(5);
    while figma.payment_requests() == calls {
        assert!(
            Instant::now() < deadline,
            "the sealed invalidation was not applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(call(&ours.app, as_user("5")).await.status, 200);
    }
    // User 6's answer outlived the two forged "all"s in this replica's
    // own cache.
    let misses = ours.paywall.stats().cache_misses;
    assert_eq!(call(&ours.app, as_user("6")).await.status, 200);
    assert_eq!(ours.paywall.stats().cache_misses, misses);

    // The sealed invalidation replayed two minutes later is ignored. A
    // replica on the same moved clock sends a marker: once it is applied,
    // the replay before it has been read.
    let marker = replica_on(&figma, &url, &prefix, &clock);
    wait_until_listening(&mut redis, &channel, 5).await;
    assert_eq!(call(&ours.app, as_user("9")).await.status, 200);
    clock.advance(Duration::from_secs(120));
    let replayed = messages.pop().unwrap();
    replay_then_marker(
        &mut redis,
        &channel,
        replayed,
        &marker.paywall,
        &ours,
        &figma,
        "9",
    )
    .await;
    // Still in this replica's own cache (Redis would hide a drop).
    let misses = ours.paywall.stats().cache_misses;
    assert_eq!(call(&ours.app, as_user("5")).await.status, 200);
    assert_eq!(
        ours.paywall.stats().cache_misses,
        misses,
        "a replayed invalidation was applied"
    );
}

/// Publishes `message` as it is (a replay), then has `marker` invalidate
/// PAID user `id`, and waits until `watched` has applied the marker (it
/// asks Figma about `id` again): by then it has read the replay too.
async fn replay_then_marker(
    redis: &mut ::redis::aio::MultiplexedConnection,
    channel: &str,
    message: Vec<u8>,
    marker: &Paywall,
    watched: &Replica,
    figma: &MockFigma,
    id: &str,
) {
    let calls = figma.payment_requests();
    let () = ::redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query_async(redis)
        .await
        .unwrap();
    marker.invalidate_user(&user(id)).await;
    eventually("the marker was applied", async || {
        if figma.payment_requests() != calls {
            return true;
        }
        assert_eq!(call(&watched.app, as_user(id)).await.status, 200);
        false
    })
    .await;
}

/// The next message a pub/sub listener hears, within 5 s.
/// The one answer the replicas under `prefix` hold in Redis: its key, and
/// its stored (sealed) bytes.
async fn the_one_answer(
    redis: &mut ::redis::aio::MultiplexedConnection,
    prefix: &str,
) -> (String, Vec<u8>) {
    let names: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}a:*"))
        .query_async(redis)
        .await
        .unwrap();
    assert_eq!(names.len(), 1);
    let value: Vec<u8> = ::redis::cmd("GET")
        .arg(&names[0])
        .query_async(redis)
        .await
        .unwrap();
    (names[0].clone(), value)
}

/// What is published on `channel` from now on, as a listener of the
/// test's own hears it.
async fn subscribed(
    url: &str,
    channel: &str,
) -> impl futures_util::Stream<Item = ::redis::Msg> + Unpin {
    let mut listener = ::redis::Client::open(url)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    listener.subscribe(channel).await.unwrap();
    listener.into_on_message()
}

async fn next_message(
    heard: &mut (impl futures_util::Stream<Item = ::redis::Msg> + Unpin),
) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(heard))
        .await
        .unwrap()
        .unwrap()
        .get_payload_bytes()
        .to_vec()
}

/// Polls `replica` for `id` until it answers `status` (an invalidation
/// from another replica has arrived).
async fn until_status(replica: &Replica, id: &str, status: u16) {
    eventually(&format!("user {id} got {status}"), async || {
        call(&replica.app, as_user(id)).await.status == status
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_answer_put_back_or_an_invalidation_replayed_at_once_changes_nothing() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    let prefix = prefix();
    let (replicas, mut redis) = listening_replicas(&figma, &url, &prefix, 2).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    let channel = format!("{prefix}invalidate:");
    let mut heard = subscribed(&url, &channel).await;
    // A buyer's answer, sealed in Redis; someone who can write to Redis
    // (but has no key) copies it.
    set(&figma, "41", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&a.app, as_user("41")).await.status, 200);
    let (name, copied) = the_one_answer(&mut redis, &prefix).await;
    // Refunded: the app invalidates, and puts nothing back.
    set(&figma, "41", &plugin(), PaymentStatus::Unpaid);
    a.paywall.invalidate_user(&user("41")).await;
    next_message(&mut heard).await;
    until_status(b, "41", 402).await;
    // The copy put back: still sealed by the app's key, and refused.
    let () = ::redis::cmd("SET")
        .arg(&name)
        .arg(copied)
        .query_async(&mut redis)
        .await
        .unwrap();
    let reply = call(&a.app, as_user("41")).await;
    assert_eq!(
        reply.status, 402,
        "an answer put back after its invalidation let a refunded buyer in"
    );

    // Bought again; the invalidation that says so, replayed at once (well
    // within its minute), is applied only the first time.
    set(&figma, "41", &plugin(), PaymentStatus::Paid);
    a.paywall.invalidate_user(&user("41")).await;
    let replayed = next_message(&mut heard).await;
    until_status(b, "41", 200).await;
    set(&figma, "43", &plugin(), PaymentStatus::Paid);
    assert_eq!(call(&b.app, as_user("43")).await.status, 200);
    replay_then_marker(&mut redis, &channel, replayed, &a.paywall, b, &figma, "43").await;
    let misses = b.paywall.stats().cache_misses;
    assert_eq!(call(&b.app, as_user("41")).await.status, 200);
    assert_eq!(
        b.paywall.stats().cache_misses,
        misses,
        "a replayed invalidation was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_finds_figma_failing_stops_the_others_asking() {
    let url = redis_url();
    let figma = MockFigma::start().await.unwrap();
    let prefix = prefix();
    let (replicas, _) = listening_replicas(&figma, &url, &prefix, 2).await;
    let (a, b) = (&replicas[0], &replicas[1]);
    // Figma fails; replica a's lookups find it (GET /v1/me fails too).
    figma.set_steady_fault(Some(Fault::Status(500)));
    for id in 60..70 {
        let reply = call(&a.app, as_user(&id.to_string())).await;
        assert_eq!(reply.status, 503, "{}", reply.body);
        if a.paywall.stats().figma_failing {
            break;
        }
    }
    assert!(a.paywall.stats().figma_failing, "a's breaker never opened");
    // b hears it, and asks Figma nothing.
    eventually("b heard that Figma fails", async || {
        b.paywall.stats().figma_failing
    })
    .await;
    let (lookups, me) = (figma.payment_requests(), figma.me_requests());
    let reply = call(&b.app, as_user("70")).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["reason"], "figma_unavailable");
    assert_eq!(figma.payment_requests(), lookups, "b asked Figma anyway");
    assert_eq!(figma.me_requests(), me);
}
