//! Fair shares of Figma's budget over loopback, each client at an address
//! of its own (127.0.0.x): a flood of valid UNPAID tokens from one address
//! never keeps new buyers elsewhere out, and an address an attacker shares
//! with a buyer never locks the buyer out, whether the budget is busy or
//! idle. Time is a `MockClock` moved a quarter of a second at a time.

use std::time::Duration;

use figma_paywall::{
    mock::{MockClock, MockFigma},
    PaymentStatus, Paywall, RequirePaidLayer,
};
use tokio::task::JoinHandle;

use crate::common::*;

/// How far the mock clock moves each step.
const STEP: Duration = Duration::from_millis(250);

/// A caller who asks with one token every `every` until let in.
struct Retrying {
    http: reqwest::Client,
    token: String,
    every: Duration,
    arrived: Duration,
    asked: Option<Duration>,
    asking: Option<JoinHandle<u16>>,
    let_in_after: Option<Duration>,
}

impl Retrying {
    fn new(http: reqwest::Client, token: String, now: Duration) -> Self {
        Self {
            http,
            token,
            every: Duration::from_secs(1),
            arrived: now,
            asked: None,
            asking: None,
            let_in_after: None,
        }
    }

    /// Looks at the answer to the last ask, asks again once `every` has
    /// passed since it, and says whether the caller is in.
    async fn step(&mut self, base: &str, now: Duration) -> bool {
        if self.let_in_after.is_some() {
            return true;
        }
        if let Some(asking) = self.asking.take_if(|a| a.is_finished()) {
            match asking.await.unwrap() {
                200 => {
                    self.let_in_after = Some(now - self.arrived);
                    return true;
                }
                429 | 503 => {}
                other => panic!("a buyer got {other}"),
            }
        }
        let due = self.asked.is_none_or(|at| now >= at + self.every);
        if self.asking.is_none() && due {
            let (http, token, base) = (self.http.clone(), self.token.clone(), base.to_owned());
            self.asking = Some(tokio::spawn(async move {
                get_with_token(&http, &base, &token).await.0
            }));
            self.asked = Some(now);
        }
        false
    }
}

/// How long each of `buyers` waited to be let in (s), and the worst.
fn waits_of(buyers: &[Retrying]) -> (Vec<f64>, f64) {
    let waits: Vec<f64> = buyers
        .iter()
        .map(|b| b.let_in_after.unwrap().as_secs_f64())
        .collect();
    let worst = waits.iter().copied().fold(0.0, f64::max);
    (waits, worst)
}

/// A token of a new user of the plugin with `status`.
fn token_of(figma: &MockFigma, id: u64, status: PaymentStatus) -> String {
    let who = user(&id.to_string());
    set(figma, who.as_str(), &plugin(), status);
    figma
        .issue_token(&who, &plugin())
        .expose_secret()
        .to_owned()
}

/// The budget `FIGMA_RATE_LIMIT=20` gives (bursts of 2, a caller waits
/// 7 s at most), on `clock`, with the gate in front of the echo app.
async fn gated_on_20_a_minute(figma: &MockFigma, clock: &MockClock) -> (Paywall, String) {
    let client = figma
        .client_builder()
        .clock(clock)
        .rate_limit(20, 2)
        .build()
        .unwrap();
    let paywall = Paywall::new(client);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    (paywall, serve_with_peers(app).await)
}

/// Moves the clock a step and lets what it woke run.
async fn step(clock: &MockClock, now: &mut Duration) {
    clock.advance(STEP);
    *now += STEP;
    tokio::time::sleep(Duration::from_millis(15)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unpaid_tokens_from_one_address_keeps_no_new_buyer_out() {
    let figma = mock_elsewhere();
    let clock = MockClock::new();
    let (paywall, base) = gated_on_20_a_minute(&figma, &clock).await;
    let flooder = client_from([127, 0, 0, 2]);
    let mut buyers: Vec<Retrying> = Vec::new();
    let mut flood = Vec::new();
    let mut now = Duration::ZERO;
    let mut id = 900_000u64;
    // Two minutes: the flood sends a new valid UNPAID token 4 times a
    // second; a new buyer arrives every 10 s, each at an address of their
    // own, and asks every second until let in.
    while now < Duration::from_secs(120) || buyers.iter().any(|b| b.let_in_after.is_none()) {
        assert!(
            now < Duration::from_secs(240),
            "buyers still out after 4 minutes"
        );
        step(&clock, &mut now).await;
        id += 1;
        let token = token_of(&figma, id, PaymentStatus::Unpaid);
        let (http, base_) = (flooder.clone(), base.clone());
        flood.push(tokio::spawn(async move {
            get_with_token(&http, &base_, &token).await.0
        }));
        let arriving = now.as_millis() % 10_000 == 5_000 && now < Duration::from_secs(120);
        if arriving {
            let n = buyers.len() as u8;
            let token = token_of(&figma, 5_000 + u64::from(n), PaymentStatus::Paid);
            buyers.push(Retrying::new(client_from([127, 0, 1, 1 + n]), token, now));
        }
        for buyer in &mut buyers {
            buyer.step(&base, now).await;
        }
    }
    let (waits, worst) = waits_of(&buyers);
    let flood_in = {
        let mut codes = std::collections::BTreeMap::new();
        for asked in flood {
            *codes.entry(asked.await.unwrap()).or_insert(0) += 1;
        }
        codes
    };
    let stats = paywall.stats();
    println!(
        "{} new buyers let in after (s): {waits:?}, worst {worst} s; the flood's answers: {flood_in:?}; slots: {:?}",
        buyers.len(),
        stats.slots_used
    );
    assert_eq!(buyers.len(), 12);
    // Two waits of a caller (7 s each) and a step.
    assert!(worst <= 15.0, "a new buyer waited {worst} s: {waits:?}");
    // The flood was served too, in its turn: it is not a suspect.
    assert!(
        flood_in.get(&402).copied().unwrap_or(0) >= 10,
        "{flood_in:?}"
    );
}

/// An attacker sends a forged token twice a second from the address a
/// buyer shares (an office, a mobile carrier's NAT); the buyer asks every
/// second with their token. With `busy`, another client's UNPAID tokens
/// keep the budget busy. The buyer comes at `arrives` (seconds), once the
/// attacker is a suspect. Returns how long the buyer waited, and what the
/// attacker's tokens cost at Figma.
async fn buyer_beside_an_attacker(busy: bool, arrives: f64) -> (Duration, usize) {
    let figma = mock_elsewhere();
    let clock = MockClock::new();
    let (_paywall, base) = gated_on_20_a_minute(&figma, &clock).await;
    let shared = client_from([127, 0, 0, 5]);
    let other = client_from([127, 0, 0, 6]);
    let mut buyer: Option<Retrying> = None;
    let mut now = Duration::ZERO;
    let mut n = 0u64;
    let mut background = Vec::new();
    loop {
        assert!(
            now < Duration::from_secs(300),
            "the buyer is still out after 5 minutes"
        );
        step(&clock, &mut now).await;
        n += 1;
        if n.is_multiple_of(2) {
            let (http, base_) = (shared.clone(), base.clone());
            let forged = format!("ppt_forged_{n}");
            background.push(tokio::spawn(async move {
                get_with_token(&http, &base_, &forged).await.0
            }));
        }
        if busy && n.is_multiple_of(4) {
            let token = token_of(&figma, 800_000 + n, PaymentStatus::Unpaid);
            let (http, base_) = (other.clone(), base.clone());
            background.push(tokio::spawn(async move {
                get_with_token(&http, &base_, &token).await.0
            }));
        }
        if now == Duration::from_secs_f64(arrives) {
            let token = token_of(&figma, 4_242, PaymentStatus::Paid);
            buyer = Some(Retrying::new(shared.clone(), token, now));
        }
        if let Some(buyer) = &mut buyer {
            if buyer.step(&base, now).await {
                break;
            }
        }
    }
    for asked in background {
        let status = asked.await.unwrap();
        assert!([401, 402, 429, 503].contains(&status), "{status}");
    }
    let forged_cost = figma
        .received_queries()
        .iter()
        .filter(|q| q.iter().any(|(_, v)| v.starts_with("ppt_forged")))
        .count();
    (buyer.unwrap().let_in_after.unwrap(), forged_cost)
}

/// The buyer's wait beside the attacker, arriving at several moments
/// (which of the attacker's requests wait with theirs differs with each),
/// and the most the attacker's tokens cost.
async fn buyer_waits_beside_an_attacker(busy: bool) -> (Vec<Duration>, usize) {
    let mut waits = Vec::new();
    let mut cost = 0;
    for arrives in [30.0, 31.75, 33.5, 35.25] {
        let (waited, forged_cost) = buyer_beside_an_attacker(busy, arrives).await;
        waits.push(waited);
        cost = cost.max(forged_cost);
    }
    let budget = if busy { "busy" } else { "idle" };
    println!(
        "{budget} budget: the buyer waited {waits:?}; the attacker's tokens cost {cost} lookups"
    );
    (waits, cost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_behind_an_attackers_address_gets_in_while_the_budget_is_busy() {
    let (waits, cost) = buyer_waits_beside_an_attacker(true).await;
    // The suspect's trickle, a minute at most after the last, goes to the
    // token asked about again: the buyer's, not the flood's.
    let worst = waits.iter().max().unwrap();
    assert!(
        *worst <= Duration::from_secs(75),
        "the buyer waited {waits:?}"
    );
    assert!(cost <= 3, "the attacker's tokens cost {cost} lookups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_behind_an_attackers_address_gets_in_while_the_budget_is_idle() {
    let (waits, cost) = buyer_waits_beside_an_attacker(false).await;
    // The first slot the budget leaves idle, or the trickle, goes to the
    // buyer's token, asked about again, before the flood's.
    let worst = waits.iter().max().unwrap();
    assert!(
        *worst <= Duration::from_secs(75),
        "the buyer waited {waits:?}"
    );
    assert!(cost <= 3, "the attacker's tokens cost {cost} lookups");
}

/// The flood again, with the budget shared through Redis (which has no
/// queue: new callers take turns on the replica before they ask it), in
/// real time: 120 a minute (a slot every half second, a caller waits 2 s),
/// a new UNPAID token 8 times a second from one address, a new buyer every
/// 2 s elsewhere, asking every quarter of a second.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_flood_of_unpaid_tokens_keeps_no_new_buyer_out() {
    use figma_paywall::redis::RedisTier;

    use crate::redis::{prefix, redis_url};

    let figma = mock_elsewhere();
    let tier = RedisTier::builder(redis_url())
        .prefix(prefix())
        .build()
        .unwrap();
    let client = figma.client_builder().rate_limit(120, 2).build().unwrap();
    let paywall = Paywall::builder(client).redis(tier).build().unwrap();
    let base = serve_with_peers(echo_app().layer(RequirePaidLayer::new(&paywall, plugin()))).await;
    let flooder = client_from([127, 0, 0, 2]);
    let mut buyers: Vec<Retrying> = Vec::new();
    let started = std::time::Instant::now();
    let mut id = 700_000u64;
    let mut tick = 0u32;
    loop {
        let now = started.elapsed();
        if now >= Duration::from_secs(20) && buyers.iter().all(|b| b.let_in_after.is_some()) {
            break;
        }
        assert!(
            now < Duration::from_secs(60),
            "buyers still out after a minute"
        );
        tokio::time::sleep(Duration::from_millis(125)).await;
        tick += 1;
        id += 1;
        let token = token_of(&figma, id, PaymentStatus::Unpaid);
        let (http, base_) = (flooder.clone(), base.clone());
        tokio::spawn(async move { get_with_token(&http, &base_, &token).await });
        if tick.is_multiple_of(16) && now < Duration::from_secs(20) {
            let n = buyers.len() as u8;
            let token = token_of(&figma, 6_000 + u64::from(n), PaymentStatus::Paid);
            let mut buyer = Retrying::new(client_from([127, 0, 1, 1 + n]), token, now);
            buyer.every = Duration::from_millis(250);
            buyers.push(buyer);
        }
        for buyer in &mut buyers {
            buyer.step(&base, now).await;
        }
    }
    let (waits, worst) = waits_of(&buyers);
    println!(
        "with Redis, {} new buyers let in after (s): {waits:?}, worst {worst:.2} s",
        buyers.len()
    );
    assert!(buyers.len() >= 9);
    // Two waits of a caller (2 s each), and the ask's own quarter second.
    assert!(worst <= 4.5, "a new buyer waited {worst:.2} s: {waits:?}");
}
