//! The economy: a compressed day of a popular plugin against a mock Figma
//! that enforces a small budget (10 lookups a minute, as on a View seat),
//! for `RequirePaid` and for a naive gate side by side.
//!
//! Buyers, users in a trial and non-buyers arrive over the day, each from
//! an address of their own, and come back every 5 to 40 minutes; a buyer
//! who is refused retries every 30 s and gives up on the visit after 10
//! minutes. One client replays a forged token and
//! invents new ones throughout. Halfway through the day the app restarts
//! (a deploy, which takes a minute): `RequirePaid` over the same store
//! file, the naive gate with an empty cache. Twenty buyers are refunded at random times: how long
//! each keeps access is measured against the refresh cycle `RequirePaid`
//! states. Time is a `MockClock` that both gates and the mock read, so a
//! day takes seconds; requests go in-process (`oneshot`, each with its
//! client's `ConnectInfo`), lookups over loopback HTTP to the mock.
//!
//! **The queue.** A real server holds a lookup for a slot of the budget
//! (by default two slots and a second: 10 s at 10 a minute), and a freed slot
//! goes to the first waiter of the highest lane. So does the gate here:
//! every request is a task, and one that waits in the queue goes on
//! waiting, by the day's clock (which wakes it when it moves), while the
//! day goes on; each simulated second ends once every request has its
//! answer or waits.
//!
//! The naive gate is `from_fn` with a moka cache and `try_get_with` around
//! the same client with no budget of its own: answers kept 10 minutes
//! (refusals 5 s), errors not kept, 503 on any failure.
//!
//! Reported for each: calls to Figma (all, and the flood's), Figma's 429s
//! and how many came right after another, how the buyers' requests went,
//! and how long a new buyer waited to be let in (p50, p99, max).
//!
//! ```sh
//! cargo bench -p figma-paywall-testbed --bench economy                     # an 8-hour day
//! ECONOMY_HOURS=2 cargo bench -p figma-paywall-testbed --bench economy     # a shorter one
//! ECONOMY_DAYS=flood,naive cargo bench -p figma-paywall-testbed --bench economy   # some of the four days
//! ECONOMY_DETAIL=1 cargo bench -p figma-paywall-testbed --bench economy    # and the gate's report hourly
//! ```

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Router,
};
use common::*;
use figma_paywall::{
    mock::{MockClock, MockFigma, MOCK_ACCESS_TOKEN},
    PaymentStatus, PaymentsClient, Paywall, PluginPaymentToken, RequirePaidLayer, UserId,
};
use http::{HeaderValue, StatusCode};
use tower::ServiceExt;

/// Figma's budget for the creator's token, and the one the gate is told.
const FIGMA_PER_MINUTE: u32 = 10;

/// A refused user tries again this many simulated seconds later…
const RETRY_EVERY: u64 = 30;

/// …and gives up on the visit after this many.
const GIVE_UP_AFTER: u64 = 600;

/// A request to send: (at which second, the user, a first visit?, when the
/// visit started, when this request was sent).
type Visit = (u64, usize, bool, u64, u64);

/// Buyers refunded during the day.
const REFUNDS: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Buyer,
    Trial,
    NonBuyer,
}

struct User {
    id: UserId,
    kind: Kind,
    addr: SocketAddr,
    token: PluginPaymentToken,
    /// Simulated seconds of each visit.
    visits: Vec<u64>,
}

/// What one gate went through in a day.
#[derive(Default)]
struct Day {
    figma_calls: usize,
    flood_calls: usize,
    rate_limited: usize,
    rate_limited_in_a_row: usize,
    /// Buyers' and trial users' requests by outcome.
    buyers: BTreeMap<String, usize>,
    /// Simulated seconds from a new buyer's first request to the first 200.
    waits: Vec<u64>,
    never_in: usize,
    /// Returning buyers' visits given up after 10 minutes of refusals.
    gave_up: usize,
    flood_requests: usize,
    calls_before_restart: usize,
    calls_after_restart: usize,
    /// Buyers' requests refused in the 10 minutes after the restart.
    refused_after_restart: usize,
    /// For each refunded buyer: how long they kept access after the
    /// refund (simulated s), and the bound the gate stated at that time.
    refunds: Vec<(u64, u64)>,
    /// Requests that waited in the (simulated) queue and then got in.
    queued_in: usize,
    /// Buyers' requests refused `rate_limited` on a first visit (the rest
    /// are returning buyers').
    rate_limited_new: usize,
    real_time: Duration,
}

trait Gate {
    fn router(&self) -> Router;
    fn restart(&mut self);
    /// The longest a refunded buyer may keep access now, as the gate
    /// states it (simulated s).
    fn refund_bound(&self) -> u64;
    /// Whether lookups it started (in the background) are still under way
    /// (not waiting in the queue for a slot).
    fn busy(&self) -> bool;
    /// Whether every one of the `outstanding` requests has its answer or
    /// waits in the gate's queue for a slot (and no lookup is under way);
    /// `unchanged`: as many were out a millisecond ago.
    fn settled(&self, outstanding: usize, _unchanged: bool) -> bool {
        outstanding == 0
    }
    /// What its own report says now (with `ECONOMY_DETAIL`), if it has one.
    fn report(&self) -> Option<String> {
        None
    }
}

/// `RequirePaid`, with the store (rebuilt over the same file on restart)
/// or without.
struct Ours {
    client: PaymentsClient,
    store: Option<std::path::PathBuf>,
    router: Router,
    paywall: Paywall,
}

impl Ours {
    fn new(client: PaymentsClient, store: Option<std::path::PathBuf>) -> Self {
        let (router, paywall) = Self::build(&client, store.as_deref());
        Self {
            client,
            store,
            router,
            paywall,
        }
    }

    fn build(client: &PaymentsClient, store: Option<&std::path::Path>) -> (Router, Paywall) {
        // A lookup of the old paywall still under way may hold the file
        // for a moment after a restart (a new process would not wait).
        let mut tries = 0;
        let paywall = loop {
            let builder = Paywall::builder(client.clone());
            let builder = match store {
                Some(store) => builder.store(store),
                None => builder,
            };
            match builder.build() {
                Ok(paywall) => break paywall,
                Err(_) if tries < 200 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("the store does not open: {e}"),
            }
        };
        let router = bare_router().layer(RequirePaidLayer::new(&paywall, plugin()));
        (router, paywall)
    }
}

impl Gate for Ours {
    fn router(&self) -> Router {
        self.router.clone()
    }

    fn restart(&mut self) {
        // Drop the old paywall (and its hold on the file) first.
        self.router = bare_router();
        self.paywall = Paywall::new(self.client.clone());
        (self.router, self.paywall) = Self::build(&self.client, self.store.as_deref());
    }

    fn busy(&self) -> bool {
        let stats = self.paywall.stats();
        stats.lookups_in_flight > stats.waiting_for_slot
    }

    fn settled(&self, outstanding: usize, unchanged: bool) -> bool {
        let stats = self.paywall.stats();
        // Several requests may wait on one lookup (the same token): once
        // every lookup waits, requests still out for a millisecond do too.
        stats.lookups_in_flight == stats.waiting_for_slot
            && (outstanding <= stats.waiting_for_slot || unchanged)
    }

    fn report(&self) -> Option<String> {
        let stats = self.paywall.stats();
        Some(format!(
            "active buyers {}, cycle {} s, slots used {:?}, refused {:?}, idle {}",
            stats.active_buyers,
            stats.refresh_cycle_secs,
            stats.slots_used,
            stats.slots_refused,
            stats.slots_idle
        ))
    }

    fn refund_bound(&self) -> u64 {
        // The PAID lifetime, or the refresh cycle if longer (capped at an
        // hour past the lifetime).
        let lifetime = 600;
        self.paywall
            .stats()
            .refresh_cycle_secs
            .clamp(lifetime, lifetime + 3600)
    }
}

/// The naive gate: `from_fn`, moka `try_get_with` around a plain HTTP call
/// to Figma, no budget.
struct Naive {
    figma: String,
    clock: MockClock,
    router: Router,
}

type Answer = (PaymentStatus, Instant);

impl Naive {
    fn new(figma: &MockFigma, clock: MockClock) -> Self {
        let figma = figma.url();
        let router = Self::build(&figma, &clock);
        Self {
            figma,
            clock,
            router,
        }
    }

    fn build(figma: &str, clock: &MockClock) -> Router {
        let cache: moka::future::Cache<String, Answer> =
            moka::future::Cache::builder().max_capacity(100_000).build();
        let http = reqwest::Client::new();
        let url = format!("{figma}/v1/payments");
        let clock = clock.clone();
        bare_router().layer(middleware::from_fn(move |req: Request, next: Next| {
            let (cache, http, url, clock) =
                (cache.clone(), http.clone(), url.clone(), clock.clone());
            async move {
                let Some(raw) = req
                    .headers()
                    .get(&TOKEN_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                else {
                    return StatusCode::UNAUTHORIZED.into_response();
                };
                let now = Instant::now() + clock.offset();
                // Expiry by the day's clock: a stale answer is dropped.
                if let Some((status, at)) = cache.get(&raw).await {
                    let life = if status == PaymentStatus::Paid || status == PaymentStatus::Trial {
                        Duration::from_secs(600)
                    } else {
                        Duration::from_secs(5)
                    };
                    if now.duration_since(at) >= life {
                        cache.invalidate(&raw).await;
                    }
                }
                let answer = cache
                    .try_get_with(raw.clone(), async {
                        let answer = http
                            .get(&url)
                            .query(&[("plugin_payment_token", raw.as_str())])
                            .header("x-figma-token", MOCK_ACCESS_TOKEN)
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if !answer.status().is_success() {
                            return Err(answer.status().to_string());
                        }
                        let body: serde_json::Value =
                            answer.json().await.map_err(|e| e.to_string())?;
                        let status = &body["meta"]["payment_status"];
                        let name = status["type"].as_str().or(status.as_str()).unwrap_or("");
                        Ok::<_, String>((PaymentStatus::from_name(name), now))
                    })
                    .await;
                match answer {
                    Ok((PaymentStatus::Paid | PaymentStatus::Trial, _)) => next.run(req).await,
                    Ok(_) => StatusCode::PAYMENT_REQUIRED.into_response(),
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            }
        }))
    }
}

impl Gate for Naive {
    fn router(&self) -> Router {
        self.router.clone()
    }

    fn restart(&mut self) {
        self.router = Self::build(&self.figma, &self.clock);
    }

    fn refund_bound(&self) -> u64 {
        600
    }

    fn busy(&self) -> bool {
        false
    }
}

fn request(token: &str, addr: SocketAddr) -> http::Request<Body> {
    let mut req = token_request(&HeaderValue::from_str(token).expect("a header value"));
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

/// The status, the refusal's reason, and its `Retry-After` in seconds.
async fn status(router: &Router, token: &str, addr: SocketAddr) -> (u16, String, Option<u64>) {
    let response: Response = router
        .clone()
        .oneshot(request(token, addr))
        .await
        .expect("infallible");
    let code = response.status().as_u16();
    let reason = response
        .extensions()
        .get::<figma_paywall::RefusalReason>()
        .map_or_else(|| code.to_string(), |r| r.as_str().to_owned());
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (code, reason, retry_after)
}

/// A mock Figma that keeps Figma's budget, reading `clock`, with `users`
/// in its ledger and their tokens issued.
fn world(clock: &MockClock, users: usize, seed: u64) -> (MockFigma, Vec<User>) {
    let figma = mock_elsewhere();
    figma.set_clock(clock);
    figma.set_rate_limit(Some((FIGMA_PER_MINUTE, 2, "starter", "low")));
    let mut rng = Rng::new(seed);
    let day = day_secs();
    let plugin = plugin();
    let people = (0..users)
        .map(|i| {
            let kind = match rng.below(10) {
                0..=5 => Kind::Buyer,
                6 => Kind::Trial,
                _ => Kind::NonBuyer,
            };
            let id = UserId::new(format!("{}", 3_000_000 + i)).expect("an ID");
            figma.set_status(
                &id,
                &plugin,
                match kind {
                    Kind::Buyer => PaymentStatus::Paid,
                    Kind::Trial => PaymentStatus::Trial,
                    Kind::NonBuyer => PaymentStatus::Unpaid,
                },
            );
            let token = figma.issue_token_for(&id, &plugin, Duration::from_secs(2 * day));
            let mut visits = vec![rng.below(day as usize) as u64];
            while let Some(&last) = visits.last() {
                let next = last + 300 + rng.below(2100) as u64;
                if next >= day {
                    break;
                }
                visits.push(next);
            }
            let addr = SocketAddr::from((
                [
                    10,
                    (i / 65_536) as u8,
                    (i / 256 % 256) as u8,
                    (i % 256) as u8,
                ],
                40_000,
            ));
            User {
                id,
                kind,
                addr,
                token,
                visits,
            }
        })
        .collect();
    (figma, people)
}

fn day_secs() -> u64 {
    let hours: f64 = std::env::var("ECONOMY_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(if bench_mode() { 8.0 } else { 0.5 });
    (hours * 3600.0) as u64
}

/// The gate's client: `budget` lookups a minute, and the default queue for
/// a slot (7 s at 10 a minute), which waits by the day's clock.
fn client(figma: &MockFigma, clock: &MockClock, budget: u32) -> PaymentsClient {
    figma
        .client_builder()
        .clock(clock)
        .rate_limit(budget, 2.min(budget))
        .build()
        .expect("a client")
}

/// Now, by `clock`.
fn now(clock: &MockClock) -> Instant {
    Instant::now() + clock.offset()
}

async fn run_day(
    name: &str,
    flood: bool,
    make: impl FnOnce(&MockFigma, &MockClock) -> Box<dyn Gate>,
) -> Day {
    let started = Instant::now();
    let clock = MockClock::new();
    let users = if bench_mode() { 400 } else { 60 };
    let (figma, people) = world(&clock, users, 7);
    let mut gate = make(&figma, &clock);
    let mut restarted_at = now(&clock);
    let flooder = SocketAddr::from(([192, 0, 2, 66], 50_000));
    let day = day_secs();
    let mut pending: Vec<Visit> = people
        .iter()
        .enumerate()
        .flat_map(|(u, p)| {
            p.visits
                .iter()
                .enumerate()
                .map(move |(i, &s)| (s, u, i == 0, s, s))
        })
        .collect();
    // Requests sent and not yet answered; the answers, with the second
    // each came in.
    let outstanding = Arc::new(AtomicUsize::new(0));
    let now_second = Arc::new(AtomicU64::new(0));
    let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let mut result = Day::default();
    let mut rng = Rng::new(11);
    // Refunds: buyers, at random times; (second, user) in order.
    let mut refunds: Vec<(u64, usize)> = {
        let buyers: Vec<usize> = (0..people.len())
            .filter(|&u| people[u].kind == Kind::Buyer)
            .collect();
        let mut picked = Vec::new();
        while picked.len() < REFUNDS.min(buyers.len()) {
            let u = buyers[rng.below(buyers.len())];
            if !picked.iter().any(|&(_, v)| v == u) {
                picked.push((rng.below(day as usize) as u64, u));
            }
        }
        picked.sort_unstable();
        picked
    };
    // Refunded: when; the longest they kept access, and the bound the
    // gate stated when they last had it.
    let mut refunded: BTreeMap<usize, (u64, u64, u64)> = BTreeMap::new();
    let mut invented = 0u64;
    let detail = std::env::var_os("ECONOMY_DETAIL").is_some();
    // With ECONOMY_DETAIL: when each user was last let in, and the
    // buyers' `rate_limited` refusals by hour: (first visits, returning
    // within 10 min of being let in, 10 to 30, 30 to 60, later).
    let mut last_in: Vec<Option<u64>> = vec![None; people.len()];
    let mut refused_by_hour: BTreeMap<u64, [usize; 5]> = BTreeMap::new();
    for second in 0..day {
        if detail && second % 3600 == 0 {
            if let Some(report) = gate.report() {
                eprintln!("{name} hour {}: {report}", second / 3600);
            }
        }
        if second == day / 2 {
            // A deploy takes a minute: what the old process still had
            // under way (lookups waiting for a slot) ends with it.
            clock.advance(Duration::from_secs(61));
            tokio::time::sleep(Duration::from_millis(100)).await;
            gate.restart();
            restarted_at = now(&clock);
        }
        clock.advance(Duration::from_secs(1));
        while refunds.first().is_some_and(|&(at, _)| at <= second) {
            let (_, u) = refunds.remove(0);
            figma.set_status(&people[u].id, &plugin(), PaymentStatus::Unpaid);
            refunded.insert(u, (second, 0, gate.refund_bound()));
        }
        // What the move woke (lookups waiting for a slot, refresh-ahead in
        // an idle slot) starts within this second, and lookups started in
        // the background land within it, as they would in real time.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let settle = Instant::now();
        while gate.busy() && settle.elapsed() < Duration::from_millis(200) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let router = gate.router();
        now_second.store(second, Ordering::Relaxed);
        // The flood: two requests a second, a replay or a new invention.
        for _ in 0..if flood { 2 } else { 0 } {
            let token = if rng.below(2) == 0 {
                "ppt_forged_replayed".to_owned()
            } else {
                invented += 1;
                format!("ppt_forged_{invented}")
            };
            let router = router.clone();
            outstanding.fetch_add(1, Ordering::Relaxed);
            let outstanding = outstanding.clone();
            tokio::spawn(async move {
                status(&router, &token, flooder).await;
                outstanding.fetch_sub(1, Ordering::Relaxed);
            });
            result.flood_requests += 1;
        }
        let mut due: Vec<Visit> = Vec::new();
        pending.retain(|v| {
            if v.0 <= second {
                due.push(*v);
                false
            } else {
                true
            }
        });
        // Each request is a task: one that waits in the gate's queue for a
        // slot goes on waiting while the day moves on.
        for visit in due {
            let person = &people[visit.1];
            let (router, token, addr) = (
                router.clone(),
                person.token.expose_secret().to_owned(),
                person.addr,
            );
            let (answers, now_second) = (answers.clone(), now_second.clone());
            outstanding.fetch_add(1, Ordering::Relaxed);
            let outstanding = outstanding.clone();
            tokio::spawn(async move {
                let (code, reason, _) = status(&router, &token, addr).await;
                let done = now_second.load(Ordering::Relaxed);
                let _ = answers.send((visit, code, reason, done));
                outstanding.fetch_sub(1, Ordering::Relaxed);
            });
        }
        // Until every request has its answer or waits in the queue.
        let settle = Instant::now();
        let mut before = usize::MAX;
        loop {
            let now_outstanding = outstanding.load(Ordering::Relaxed);
            if gate.settled(now_outstanding, now_outstanding == before)
                || settle.elapsed() >= Duration::from_secs(2)
            {
                break;
            }
            before = now_outstanding;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // And the refreshes those requests started behind them land within
        // this second too, not in the next (Figma's own budget, which the
        // mock keeps by the same clock, would count them a second late).
        let behind = Instant::now();
        while gate.busy() && behind.elapsed() < Duration::from_millis(200) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        while let Ok(((_, u, first, started, sent), code, reason, second)) = answered.try_recv() {
            let person = &people[u];
            if let Some((at, kept, bound)) = refunded.get_mut(&u) {
                // No longer a buyer: only how long they kept access counts,
                // against the bound the gate states when they have it.
                if code == 200 {
                    *kept = second.saturating_sub(*at);
                    *bound = gate.refund_bound();
                }
                continue;
            }
            if person.kind == Kind::NonBuyer {
                continue;
            }
            if code == 200 && second > sent {
                result.queued_in += 1;
            }
            *result.buyers.entry(reason.clone()).or_default() += 1;
            if code == 200 {
                last_in[u] = Some(second);
            } else if reason == "rate_limited" {
                let bucket = match (first, last_in[u].map(|at| second - at)) {
                    (true, _) | (_, None) => 0,
                    (_, Some(0..600)) => 1,
                    (_, Some(600..1800)) => 2,
                    (_, Some(1800..3600)) => 3,
                    _ => 4,
                };
                refused_by_hour.entry(second / 3600).or_default()[bucket] += 1;
            }
            if first && reason == "rate_limited" {
                result.rate_limited_new += 1;
            }
            if code != 200 && (day / 2..day / 2 + 600).contains(&second) {
                result.refused_after_restart += 1;
            }
            match (code, first) {
                (200, true) => result.waits.push(second - started),
                (200, false) => {}
                // Refused for 10 minutes: the user gives up on this visit.
                (_, true) if second - started >= GIVE_UP_AFTER => result.never_in += 1,
                (_, false) if second - started >= GIVE_UP_AFTER => result.gave_up += 1,
                // Refused: try again in 30 s.
                _ => pending.push((
                    second + RETRY_EVERY,
                    u,
                    first,
                    started,
                    second + RETRY_EVERY,
                )),
            }
        }
    }
    if detail {
        eprintln!("{name}: buyers refused rate_limited by hour: [first visit, returning after <10 min, 10-30, 30-60, >60 since let in]");
        for (hour, counts) in &refused_by_hour {
            eprintln!("  hour {hour}: {counts:?}");
        }
        if let Some(report) = gate.report() {
            eprintln!("{name} at the end: {report}");
        }
    }
    result.refunds = refunded
        .values()
        .map(|&(_, kept, bound)| (kept, bound))
        .collect();
    // First visits still refused when the day ended.
    result.never_in += pending.iter().filter(|v| v.2).count();
    result.figma_calls = figma.payment_requests();
    result.rate_limited = figma.rate_limited_answers();
    result.rate_limited_in_a_row = figma.rate_limited_answers_in_a_row();
    let queries = figma.received_queries();
    let forged = |q: &Vec<(String, String)>| q.iter().any(|(_, v)| v.starts_with("ppt_forged"));
    result.flood_calls = queries.iter().filter(|q| forged(q)).count();
    // Buyers' lookups in the 5 minutes before and after the restart.
    let window = Duration::from_secs(300);
    for (q, at) in queries.iter().zip(figma.payment_request_times()) {
        if forged(q) {
            continue;
        }
        if at < restarted_at && restarted_at.duration_since(at) <= window {
            result.calls_before_restart += 1;
        } else if at >= restarted_at && at.duration_since(restarted_at) <= window {
            result.calls_after_restart += 1;
        }
    }
    result.real_time = started.elapsed();
    println!(
        "{name}: {:.1} simulated hours in {:.1} s, {} users, {} flood requests ({} distinct forged tokens)",
        day as f64 / 3600.0,
        result.real_time.as_secs_f64(),
        people.len(),
        result.flood_requests,
        invented + 1
    );
    result
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let store =
        std::env::temp_dir().join(format!("figma-paywall-economy-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&store);
    let ours = |with_store: bool| {
        let store = store.clone();
        move |figma: &MockFigma, clock: &MockClock| -> Box<dyn Gate> {
            let _ = std::fs::remove_file(&store);
            let store = with_store.then_some(store);
            Box::new(Ours::new(client(figma, clock, FIGMA_PER_MINUTE), store))
        }
    };
    // ECONOMY_DAYS=flood,control,no-store,naive (the default: all four).
    let days = std::env::var("ECONOMY_DAYS").unwrap_or_default();
    let wanted = |day: &str| days.is_empty() || days.split(',').any(|d| d.trim() == day);
    let mut results = Vec::new();
    if wanted("flood") {
        let day = rt.block_on(run_day("RequirePaid", true, ours(true)));
        results.push(("RequirePaid", day));
    }
    if wanted("control") {
        let day = rt.block_on(run_day("RequirePaid, no flood", false, ours(true)));
        results.push(("RequirePaid, no flood (control)", day));
    }
    if wanted("no-store") {
        let day = rt.block_on(run_day("RequirePaid, no store", true, ours(false)));
        results.push(("RequirePaid without the store", day));
    }
    let _ = std::fs::remove_file(&store);
    if wanted("naive") {
        let day = rt.block_on(run_day("naive gate", true, |figma, clock| {
            Box::new(Naive::new(figma, clock.clone()))
        }));
        results.push(("naive gate", day));
    }
    println!();
    let day_slots = day_secs() / 60 * u64::from(FIGMA_PER_MINUTE);
    println!("| gate | calls to Figma (of the day's {day_slots} slots) | of them for forged tokens | Figma's 429s | 429s right after a 429 | buyers' lookups 5 min before / after the restart | buyers refused in the 10 min after the restart | buyers' requests by outcome | of them `rate_limited` | a new buyer let in after (simulated s): p50 / p99 / max | new buyers who gave up (10 min) | returning buyers' visits given up | refunds: longest access after one / the bound stated (s) |");
    println!("|---|---:|---:|---:|---:|---|---:|---|---:|---|---:|---:|---|");
    for (name, mut day) in results {
        day.waits.sort_unstable();
        let outcomes: Vec<String> = day
            .buyers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let requests: usize = day.buyers.values().sum();
        let rate_limited = day.buyers.get("rate_limited").copied().unwrap_or(0);
        eprintln!(
            "{name}: of {rate_limited} buyers' requests refused rate_limited, {} on a first visit",
            day.rate_limited_new
        );
        let over = day
            .refunds
            .iter()
            .filter(|(kept, bound)| kept > bound)
            .count();
        let longest = day.refunds.iter().max_by_key(|(kept, _)| *kept);
        println!(
            "| {name} | {} ({:.0} %) | {} | {} | {} | {} / {} | {} | {}; {} waited in the queue, then in | {:.1} % | {} | {} | {} | {} |",
            day.figma_calls,
            day.figma_calls as f64 * 100.0 / day_slots.max(1) as f64,
            day.flood_calls,
            day.rate_limited,
            day.rate_limited_in_a_row,
            day.calls_before_restart,
            day.calls_after_restart,
            day.refused_after_restart,
            outcomes.join(", "),
            day.queued_in,
            rate_limited as f64 * 100.0 / requests.max(1) as f64,
            match day.waits.last() {
                Some(max) => format!(
                    "{} / {} / {max}",
                    percentile(&day.waits, 0.5),
                    percentile(&day.waits, 0.99)
                ),
                None => "nobody let in".to_owned(),
            },
            day.never_in,
            day.gave_up,
            match longest {
                Some((kept, bound)) => format!(
                    "{kept} / {bound}; {} of {} past their bound",
                    over,
                    day.refunds.len()
                ),
                None => "none".to_owned(),
            },
        );
    }
}
