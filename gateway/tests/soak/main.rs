//! The chaos soak (issue 14): minutes of load on replicas of the gated app
//! while Figma, Redis, the store and the processes fail, with every promise
//! checked the whole time.
//!
//! ```sh
//! SOAK_SECS=180 cargo test --release --all-features -p figma-paywall-gateway --test soak -- --nocapture
//! SOAK_SEED=1234 ...   # replays a run's fault schedule
//! ```
//!
//! It starts everything itself: the mock Figma, a Redis server of its own
//! behind a TCP proxy (it fails, saying what to install, without
//! `redis-server`), two replicas of `figma-paywall` (the gateway,
//! answering forward auth) sharing that Redis, each with its own store
//! file, and a load generator. A seeded schedule injects faults; `check.rs`
//! holds the promises. At the end one line starting with `soak` gives the
//! figures.

mod check;
mod infra;
#[path = "../common/scratch.rs"]
mod scratch;
#[path = "../common/tcp_proxy.rs"]
mod tcp_proxy;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use figma_paywall::{
    mock::{Fault, MockFigma},
    PaymentStatus, Resource, UserId,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use check::{Checker, Kind, Lifetimes, Outcome};
use infra::{RedisServer, Replica, ReplicaConfig, Usage};
use tcp_proxy::Proxy;

const PLUGIN: &str = "1122334455";
/// Figma's budget for the whole run, all replicas together: a minute's
/// calls, and the burst.
const RATE: (u32, u32) = (120, 10);
const REPLICAS: usize = 2;
/// PAID, TRIAL, UNPAID, and the stale grace: short, so that refunds and
/// expiries happen within a short run.
const LIFETIMES: [&str; 4] = ["60s", "30s", "30s", "20s"];
/// The most a request may take: a slot's wait (2 s), Figma's timeout
/// (5 s), a second more, and with Redis its lock (6 s) and a shared slot's
/// wait (2 s); and a second for the load generator's own scheduling.
const DEADLINE: Duration = Duration::from_secs(17);

/// A caller of the gated app.
#[derive(Clone)]
struct Caller {
    kind: Kind,
    user: Option<String>,
    token: String,
    /// Its address, as the proxy in front would say in X-Forwarded-For.
    ip: String,
}

/// What the soak counts of the faults it injected, by kind.
type Faults = Arc<Mutex<BTreeMap<&'static str, usize>>>;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    use std::io::Write;
    let secs: u64 = env_or("SOAK_SECS", 20);
    let rps: u64 = env_or("SOAK_RPS", 60);
    let seed: u64 = env_or("SOAK_SEED", rand::random::<u32>() as u64);
    let _ = writeln!(
        std::io::stderr(),
        "soak: seed {seed} (SOAK_SEED={seed} replays it), {secs} s at {rps} requests a second"
    );

    // SOAK_KEEP=1 keeps the replicas' logs and stores to read.
    let dir = scratch::TempDir::new("soak").kept_if(std::env::var_os("SOAK_KEEP").is_some());
    let Some(redis) = RedisServer::start(dir.path()) else {
        panic!("the soak needs redis-server, which could not be started: install Debian's redis-server (.ci/run does)");
    };
    let proxy = Arc::new(Proxy::start(format!("127.0.0.1:{}", redis.port)).await);
    let redis = Arc::new(Mutex::new(redis));

    // The ledger.
    let figma = Arc::new(MockFigma::start_on_own_thread().unwrap());
    let plugin = Resource::plugin(PLUGIN).unwrap();
    let life = Lifetimes {
        paid: Duration::from_secs(60),
        trial: Duration::from_secs(30),
        grace: Duration::from_secs(20),
    };
    let checker = Arc::new(Checker::new(life, DEADLINE));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut callers = Vec::new();
    let token_life = Duration::from_secs(secs + 600);
    for (kind, count, status) in [
        (Kind::Buyer, 20, PaymentStatus::Paid),
        (Kind::Trial, 6, PaymentStatus::Trial),
        (Kind::Never, 6, PaymentStatus::Unpaid),
        (Kind::Flip, 4, PaymentStatus::Paid),
        (Kind::Flip, 4, PaymentStatus::Unpaid),
    ] {
        for _ in 0..count {
            let id = format!("{}", 1_000_000_000 + callers.len());
            let user = UserId::new(&id).unwrap();
            figma.set_status(&user, &plugin, status.clone());
            checker.set_status(
                &id,
                status == PaymentStatus::Paid,
                status == PaymentStatus::Trial,
            );
            let token = figma.issue_token_for(&user, &plugin, token_life);
            callers.push(Caller {
                kind,
                user: Some(id),
                token: token.expose_secret().to_owned(),
                ip: format!("10.0.{}.{}", callers.len() / 250, callers.len() % 250 + 1),
            });
        }
    }
    let flips: Vec<String> = callers
        .iter()
        .filter(|c| c.kind == Kind::Flip)
        .filter_map(|c| c.user.clone())
        .collect();
    let tokens: Vec<String> = callers.iter().map(|c| c.token.clone()).collect();

    // The replicas.
    let config = ReplicaConfig {
        figma_url: figma.url(),
        access_token: figma.access_token().expose_secret().to_owned(),
        redis_url: format!("redis://127.0.0.1:{}", proxy.port),
        rate: RATE,
        plugin: PLUGIN.to_owned(),
        lifetimes: LIFETIMES,
        replicas: REPLICAS,
    };
    let replicas: Vec<Arc<Mutex<Replica>>> = (0..REPLICAS)
        .map(|i| {
            let replica = Replica::start(&format!("replica-{i}"), dir.path(), config.clone());
            Arc::new(Mutex::new(replica))
        })
        .collect();
    let bases: Vec<_> = replicas
        .iter()
        .map(|r| r.lock().unwrap().base.clone())
        .collect();
    let names: Vec<String> = replicas
        .iter()
        .map(|r| r.lock().unwrap().name.clone())
        .collect();
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(secs);
    let faults: Faults = Arc::default();

    // The faults, on a schedule of their own (seeded).
    let schedule = tokio::spawn(inject_faults(
        StdRng::seed_from_u64(seed ^ 0x5eed),
        stop_at,
        figma.clone(),
        redis.clone(),
        proxy.clone(),
        replicas.clone(),
        checker.clone(),
        faults.clone(),
        flips,
        plugin.clone(),
    ));

    // The load: `rps` requests a second, spread over the replicas.
    let http = reqwest::Client::builder()
        .timeout(DEADLINE + Duration::from_secs(3))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps.max(1)));
    let mut every_second = Instant::now();
    let mut sent = 0usize;
    let mut shed = 0usize;
    while Instant::now() < stop_at && checker.violations() == 0 {
        tick.tick().await;
        let caller = pick(&mut rng, &callers);
        let i = rng.random_range(0..REPLICAS);
        let Some(base) = bases[i].lock().unwrap().clone() else {
            continue; // being restarted
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            shed += 1;
            continue;
        };
        sent += 1;
        let hang_up_after = Duration::from_millis(rng.random_range(1..30));
        tokio::spawn(one_request(
            http.clone(),
            base,
            names[i].clone(),
            caller,
            checker.clone(),
            hang_up_after,
            permit,
        ));
        if every_second.elapsed() >= Duration::from_secs(1) {
            every_second = Instant::now();
            checker.check_figma(
                &figma.payment_request_times(),
                &figma.back_offs_asked(),
                (RATE.0 + RATE.1) as usize,
            );
            sample_usage(&replicas);
            for (base, name) in bases.iter().zip(&names) {
                let base = base.lock().unwrap().clone();
                if let Some(base) = base {
                    tokio::spawn(read_cycle(
                        http.clone(),
                        base,
                        name.clone(),
                        checker.clone(),
                    ));
                }
            }
        }
    }
    // After a violation the faults stop too: the run has its answer.
    if checker.violations() > 0 {
        schedule.abort();
    }
    let _ = schedule.await;
    // Every request in flight is answered (or times out: a violation).
    let _ = tokio::time::timeout(
        DEADLINE + Duration::from_secs(5),
        in_flight.acquire_many(512),
    )
    .await;
    let elapsed = started.elapsed();
    checker.check_figma(
        &figma.payment_request_times(),
        &figma.back_offs_asked(),
        (RATE.0 + RATE.1) as usize,
    );

    // Each replica: memory flat after warm-up, no leak of files or
    // threads; and no secret in its log.
    let mut usage = Vec::new();
    for replica in &replicas {
        let replica = replica.lock().unwrap();
        let now = replica.pid().and_then(Usage::of).unwrap_or_default();
        let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
        for secret in tokens.iter().chain([&config.access_token]) {
            if log.contains(secret.as_str()) {
                checker.violation(format!("a secret in {}'s log", replica.name));
                break;
            }
        }
        if let Some(warm) = replica.warm {
            let lived = replica.started.elapsed();
            if lived > Duration::from_secs(20)
                && (now.rss_kib > warm.rss_kib * 3 / 2 + 16 * 1024 || now.fds > warm.fds + 64)
            {
                checker.violation(format!(
                    "{}: grew from {warm:?} after warm-up to {now:?} in {lived:?}",
                    replica.name
                ));
            }
        }
        // "-": restarted too lately to be sampled after its warm-up.
        let warm = |f: fn(&Usage) -> String| replica.warm.as_ref().map_or("-".into(), f);
        usage.push(format!(
            "{}:rss_kib={}->{},fds={}->{},threads={}->{},restarts={}",
            replica.name,
            warm(|w| w.rss_kib.to_string()),
            now.rss_kib,
            warm(|w| w.fds.to_string()),
            now.fds,
            warm(|w| w.threads.to_string()),
            now.threads,
            replica.restarts
        ));
    }
    let requests = checker.requests();
    let calls = figma.payment_request_times().len();
    // Whose lookups spent the budget.
    let kind_of: std::collections::HashMap<&str, Kind> =
        callers.iter().map(|c| (c.token.as_str(), c.kind)).collect();
    let mut calls_by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    for query in figma.received_queries() {
        let token = query
            .iter()
            .find(|(name, _)| name == "plugin_payment_token")
            .map(|(_, value)| value.as_str());
        let kind = token
            .and_then(|t| kind_of.get(t))
            .copied()
            .unwrap_or(Kind::Forged);
        *calls_by_kind.entry(kind).or_default() += 1;
    }
    // Straight to stderr, past the harness's capture: CI shows it.
    let _ = writeln!(
        std::io::stderr(),
        "soak secs={:.0} requests={requests} rps={:.1} shed={shed} faults={:?} figma_calls={calls} by_kind={calls_by_kind:?} budget={}/min+{} {} usage=[{}] seed={seed}",
        elapsed.as_secs_f64(),
        requests as f64 / elapsed.as_secs_f64(),
        faults.lock().unwrap(),
        RATE.0,
        RATE.1,
        checker.summary(),
        usage.join(" "),
    );
    let _ = sent;
    if let Some(first) = checker.first_violation() {
        // SOAK_CALLS=1: every call Figma received, with its time and caller.
        if std::env::var_os("SOAK_CALLS").is_some() {
            let user_of: std::collections::HashMap<&str, String> = callers
                .iter()
                .map(|c| (c.token.as_str(), c.user.clone().unwrap_or_default()))
                .collect();
            for (at, query) in figma
                .payment_request_times()
                .iter()
                .zip(figma.received_queries())
            {
                let token = query
                    .iter()
                    .find(|(n, _)| n == "plugin_payment_token")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                eprintln!(
                    "call t+{:.3} {}",
                    at.saturating_duration_since(checker.started).as_secs_f64(),
                    user_of.get(token).map_or("forged", String::as_str)
                );
            }
        }
        for replica in &replicas {
            let replica = replica.lock().unwrap();
            let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            eprintln!("--- {} (last lines of its log)", replica.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        panic!(
            "{} violation(s); the first: {first} (replay with SOAK_SEED={seed}); faults: {}",
            checker.violations(),
            checker.timeline()
        );
    }
}

/// A caller, weighted as traffic comes: mostly buyers.
fn pick(rng: &mut StdRng, callers: &[Caller]) -> Caller {
    let roll = rng.random_range(0..100);
    let of = |kind: Kind, rng: &mut StdRng| {
        let of_kind: Vec<&Caller> = callers.iter().filter(|c| c.kind == kind).collect();
        of_kind[rng.random_range(0..of_kind.len())].clone()
    };
    match roll {
        0..50 => of(Kind::Buyer, rng),
        50..60 => of(Kind::Trial, rng),
        60..70 => of(Kind::Never, rng),
        70..85 => of(Kind::Flip, rng),
        85..92 => Caller {
            kind: Kind::Forged,
            user: None,
            token: format!("ppt_forged_{:016x}", rng.random::<u64>()),
            ip: format!("192.0.2.{}", rng.random_range(1..4)),
        },
        92..96 => Caller {
            kind: Kind::Malformed,
            user: None,
            token: if rng.random_bool(0.5) {
                "x".repeat(5000)
            } else {
                "ppt bad token".to_owned()
            },
            ip: "192.0.2.9".to_owned(),
        },
        _ => {
            let mut caller = of(Kind::Buyer, rng);
            caller.kind = Kind::Disconnect;
            caller
        }
    }
}

async fn one_request(
    http: reqwest::Client,
    base: String,
    replica: String,
    caller: Caller,
    checker: Arc<Checker>,
    hang_up_after: Duration,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let sent = Instant::now();
    let request = http
        .get(format!("{base}/_figma_paywall/auth"))
        .header("X-Figma-Payment-Token", &caller.token)
        .header("X-Forwarded-For", &caller.ip)
        .send();
    let reply = if caller.kind == Kind::Disconnect {
        // Hangs up mid-request: nothing to check but that the replica
        // carries on.
        let _ = tokio::time::timeout(hang_up_after, request).await;
        Err("hung up (on purpose)".to_owned())
    } else {
        match request.await {
            Ok(response) => {
                let status = response.status().as_u16();
                let age = response
                    .headers()
                    .get("x-figma-answer-age")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                match response.text().await {
                    Ok(body) => Ok((status, age, body)),
                    Err(e) => Err(format!("body lost: {}", short(&e))),
                }
            }
            Err(e) if e.is_timeout() => Err("no answer".to_owned()),
            Err(e) => Err(format!("connection: {}", short(&e))),
        }
    };
    if matches!(&reply, Err(why) if why == "no answer") {
        checker.violation(format!(
            "a {:?} caller's request to {replica} sent at t+{:.3}s: no answer",
            caller.kind,
            sent.saturating_duration_since(checker.started)
                .as_secs_f64()
        ));
    }
    checker.record(Outcome {
        replica,
        caller: caller.kind,
        user: caller.user,
        sent,
        answered: Instant::now(),
        reply,
    });
}

/// A short, stable name for a transport error (a replica killed mid-request).
fn short(e: &reqwest::Error) -> &'static str {
    if e.is_connect() {
        "refused"
    } else if e.is_request() {
        "reset"
    } else {
        "other"
    }
}

/// Samples each replica's use once its process has run 5 s (warm-up).
/// Reads the refresh cycle a replica states, for the checker.
async fn read_cycle(http: reqwest::Client, base: String, name: String, checker: Arc<Checker>) {
    let health = async {
        let answer = http
            .get(format!("{base}/_figma_paywall/health"))
            .bearer_auth(infra::METRICS_TOKEN)
            .send()
            .await
            .ok()?;
        answer.json::<serde_json::Value>().await.ok()
    };
    // A replica being restarted is read next time.
    if let Some(secs) = health.await.and_then(|h| h["refresh_cycle_secs"].as_u64()) {
        checker.stated_cycle(&name, Duration::from_secs(secs));
    }
}

fn sample_usage(replicas: &[Arc<Mutex<Replica>>]) {
    for replica in replicas {
        // One being restarted is sampled next time.
        let Ok(mut replica) = replica.try_lock() else {
            continue;
        };
        if replica.warm.is_none() && replica.started.elapsed() > Duration::from_secs(5) {
            replica.warm = replica.pid().and_then(Usage::of);
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn inject_faults(
    mut rng: StdRng,
    stop_at: Instant,
    figma: Arc<MockFigma>,
    redis: Arc<Mutex<RedisServer>>,
    proxy: Arc<Proxy>,
    replicas: Vec<Arc<Mutex<Replica>>>,
    checker: Arc<Checker>,
    faults: Faults,
    flips: Vec<String>,
    plugin: Resource,
) {
    // A quiet start: the replicas warm up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |kind: &'static str| {
        checker.note(kind);
        *faults.lock().unwrap().entry(kind).or_default() += 1
    };
    while Instant::now() + Duration::from_secs(3) < stop_at {
        let hold = Duration::from_millis(rng.random_range(1000..4000));
        match rng.random_range(0..11) {
            0 => {
                count("figma_outage");
                checker.figma_fault(true);
                figma.set_steady_fault(Some(Fault::Status(503)));
                figma.set_me_latency(Duration::from_secs(10));
                tokio::time::sleep(hold).await;
                figma.set_steady_fault(None);
                figma.set_me_latency(Duration::ZERO);
                checker.figma_fault(false);
            }
            1 => {
                count("figma_5xx_burst");
                checker.figma_fault(true);
                for _ in 0..rng.random_range(2..6) {
                    figma.push_fault(Fault::Status(
                        *[500, 502, 503].get(rng.random_range(0..3)).unwrap(),
                    ));
                }
                tokio::time::sleep(hold).await;
                checker.figma_fault(false);
            }
            2 => {
                count("figma_hang");
                checker.figma_fault(true);
                figma.set_steady_fault(Some(Fault::Delay(Duration::from_secs(7))));
                tokio::time::sleep(hold).await;
                figma.set_steady_fault(None);
                // Calls already held finish within 7 s.
                tokio::time::sleep(Duration::from_secs(7)).await;
                checker.figma_fault(false);
            }
            3 => {
                count("figma_garbage");
                checker.figma_fault(true);
                for _ in 0..rng.random_range(1..4) {
                    figma.push_fault(if rng.random_bool(0.5) {
                        Fault::MalformedJson
                    } else {
                        Fault::Html
                    });
                    figma.push_fault(Fault::DropConnection);
                }
                tokio::time::sleep(hold).await;
                checker.figma_fault(false);
            }
            4 => {
                count("figma_429");
                checker.figma_fault(true);
                let retry_after = rng.random_range(1..5);
                // An Enterprise plan's Dev seat: 150 a minute, more than
                // the budget, which so stays as configured.
                figma.push_fault(Fault::RateLimitedAs {
                    retry_after,
                    plan_tier: "enterprise",
                    rate_limit_type: "high",
                });
                tokio::time::sleep(Duration::from_secs(retry_after) + hold).await;
                checker.figma_fault(false);
            }
            5 | 6 => {
                // A purchase or a refund.
                let user = &flips[rng.random_range(0..flips.len())];
                let id = UserId::new(user).unwrap();
                let paid = rng.random_bool(0.5);
                count(if paid { "purchase" } else { "refund" });
                let status = if paid {
                    PaymentStatus::Paid
                } else {
                    PaymentStatus::Unpaid
                };
                // A refund counts from when Figma says it; a purchase from
                // before, so that no grant races it.
                if paid {
                    checker.set_status(user, true, false);
                    figma.set_status(&id, &plugin, status);
                } else {
                    figma.set_status(&id, &plugin, status);
                    checker.set_status(user, false, false);
                }
                tokio::time::sleep(hold / 2).await;
            }
            7 => {
                count("redis_restart");
                checker.redis_fault(true);
                let redis = redis.clone();
                tokio::task::spawn_blocking(move || redis.lock().unwrap().restart())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(1)).await;
                checker.redis_fault(false);
            }
            8 => {
                count("redis_stall");
                checker.redis_fault(true);
                proxy.stall();
                tokio::time::sleep(hold).await;
                proxy.unstall();
                checker.redis_fault(false);
            }
            9 => {
                count("redis_cut");
                checker.redis_fault(true);
                proxy.cut();
                tokio::time::sleep(hold).await;
                proxy.restore().await;
                checker.redis_fault(false);
            }
            _ => {
                count("replica_killed");
                let replica = replicas[rng.random_range(0..replicas.len())].clone();
                tokio::task::spawn_blocking(move || replica.lock().unwrap().kill_and_restart())
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
    }
}
