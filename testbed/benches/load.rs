//! Load: a gated route against an ungated one, over loopback, with `wrk`.
//!
//! Serves one router on 127.0.0.1 (a free port) with routes that answer
//! the same `"ok"`, in token mode (`X-Figma-Payment-Token`) and in user
//! mode (a `UserId` that an outer layer, standing in for the app's
//! authentication, takes from a header on every user route): `open`
//! (ungated), `naive` (the naive baseline gate: `from_fn` and one moka
//! lookup) and `paid` (`RequirePaid`, its cache warmed with one real lookup
//! through the in-process mock Figma). Each round runs every gated route
//! and its mode's open route back to back with `wrk --latency`, the open
//! one first in odd rounds and second in even ones, and takes the ratio of
//! the pair; the bench prints the median ratio, and the medians of
//! Requests/sec, p50 and p99 and server CPU per request.
//!
//! ```sh
//! cargo bench -p figma-paywall-testbed --bench load                          # wrk -t1 -c32, 5 rounds of 4 s
//! LOAD_INFO_SUBSCRIBER=1 cargo bench -p figma-paywall-testbed --bench load   # with an INFO fmt subscriber
//! LOAD_ROUNDS=7 LOAD_SECONDS=10 LOAD_THREADS=2 LOAD_CONNECTIONS=64 cargo bench -p figma-paywall-testbed --bench load
//! ```
//!
//! Loopback only, bounded: `rounds x 8 x seconds` of load. Skipped, with a
//! message, when `wrk` is not installed (`apt-get install wrk`) and under
//! `cargo test --benches`.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Command, ExitCode},
    sync::Arc,
    time::Duration,
};

use axum::{routing::get, Router};
use common::{wrk::Run, *};
use figma_paywall::{PaymentStatus, Paywall, RequirePaidLayer, UserId};

/// How a route's caller identifies itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `X-Figma-Payment-Token`.
    Token,
    /// `X-Bench-User`, which an outer layer (the app's own authentication)
    /// turns into a `UserId` on every route of this mode, gated or not.
    User,
}

/// The routes, each with the ungated route it is compared with.
const ROUTES: [(&str, Mode, usize); 6] = [
    ("/open", Mode::Token, 0),
    ("/naive", Mode::Token, 0),
    ("/paid", Mode::Token, 0),
    ("/user/open", Mode::User, 3),
    ("/user/naive", Mode::User, 3),
    ("/user/paid", Mode::User, 3),
];

/// The user header the bench's stand-in for authentication reads.
const USER_HEADER: &str = "x-bench-user";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Config {
    threads: u64,
    connections: u64,
    seconds: u64,
    rounds: u64,
    server_workers: usize,
}

fn main() -> ExitCode {
    if !bench_mode() {
        println!("load: skipped outside `cargo bench` (run `cargo bench -p figma-paywall-testbed --bench load`)");
        return ExitCode::SUCCESS;
    }
    let wrk = std::env::var("WRK").unwrap_or_else(|_| "wrk".to_owned());
    if Command::new(&wrk).arg("--version").output().is_err() {
        println!(
            "load: SKIPPED: `{wrk}` is not installed (Debian: `apt-get install wrk`); nothing was measured"
        );
        return ExitCode::SUCCESS;
    }
    let config = Config {
        threads: env_or("LOAD_THREADS", 1),
        connections: env_or("LOAD_CONNECTIONS", 32),
        seconds: env_or("LOAD_SECONDS", 4).min(60),
        rounds: env_or("LOAD_ROUNDS", 5).min(15),
        server_workers: env_or("LOAD_SERVER_WORKERS", 2) as usize,
    };
    // With an INFO subscriber, as most production apps run.
    let subscriber = std::env::var_os("LOAD_INFO_SUBSCRIBER").is_some();
    if subscriber {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(std::io::sink)
            .init();
    }

    let figma = mock_elsewhere();
    let plugin = plugin();
    let buyer = UserId::new("1234567890123456").expect("a user ID");
    figma.set_status(&buyer, &plugin, PaymentStatus::Paid);
    let ppt = figma.issue_token(&buyer, &plugin);
    let token = ppt.expose_secret().to_owned();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server_workers)
        .enable_all()
        .build()
        .expect("a runtime");
    let paywall = Paywall::new(figma.client().expect("a client"));
    let naive = naive_cache(1_000_000);
    let addr: SocketAddr = rt.block_on(async {
        naive.insert(token.clone(), Arc::new(())).await;
        naive.insert(buyer.to_string(), Arc::new(())).await;
        let token_routes = Router::new()
            .route("/paid", get(handler))
            .route_layer(RequirePaidLayer::new(&paywall, plugin.clone()))
            .merge(naive_token_gate(
                Router::new().route("/naive", get(handler)),
                naive.clone(),
            ))
            .route("/open", get(handler));
        let user_routes = Router::new()
            .route("/user/paid", get(handler))
            .route_layer(RequirePaidLayer::new(&paywall, plugin.clone()))
            .merge(naive_user_gate(
                Router::new().route("/user/naive", get(handler)),
                naive.clone(),
            ))
            .route("/user/open", get(handler))
            .layer(axum::middleware::map_request(authenticate));
        let app = token_routes.merge(user_routes);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serving") });
        addr
    });

    // Warm the gate's cache with one real lookup a mode, and check every route.
    let user = buyer.to_string();
    for (path, identity, expected) in [
        ("/paid", Some(Mode::Token), 200),
        ("/paid", None, 401),
        ("/naive", Some(Mode::Token), 200),
        ("/naive", None, 402),
        ("/open", Some(Mode::Token), 200),
        ("/user/paid", Some(Mode::User), 200),
        ("/user/paid", None, 401),
        ("/user/naive", Some(Mode::User), 200),
        ("/user/open", Some(Mode::User), 200),
    ] {
        let header = identity.map(|mode| header_for(mode, &token, &user));
        let status = get_status(addr, path, header.as_ref());
        assert_eq!(status, expected, "GET {path} ({header:?})");
    }
    assert_eq!(
        figma.payment_requests(),
        2,
        "the cache was warmed once a mode"
    );

    println!(
        "wrk -t{} -c{} -d{}s --latency, {} rounds of alternating pairs; server on a {}-worker tokio runtime at {addr}{}",
        config.threads,
        config.connections,
        config.seconds,
        config.rounds,
        config.server_workers,
        if subscriber { "; INFO fmt subscriber installed" } else { "" },
    );
    // Each round runs every gated route next to its ungated one, first one
    // then the other in turn, and takes the ratio of the pair.
    let mut runs: Vec<(usize, Run)> = Vec::new();
    let mut ratios: Vec<(usize, f64)> = Vec::new();
    for round in 0..config.rounds as usize {
        for (gated, &(_, mode, open)) in ROUTES.iter().enumerate() {
            if gated == open {
                continue;
            }
            let header = header_for(mode, &token, &user);
            let mut pair = [open, gated];
            if round % 2 == 1 {
                pair.reverse();
            }
            let [first, second] = pair.map(|route| {
                let run = wrk_run(&wrk, &config, addr, ROUTES[route].0, &header);
                println!("{}", run.line(round + 1, ROUTES[route].0));
                (route, run)
            });
            let (open_run, gated_run) = if first.0 == open {
                (&first.1, &second.1)
            } else {
                (&second.1, &first.1)
            };
            ratios.push((gated, gated_run.rps / open_run.rps));
            runs.push(first);
            runs.push(second);
        }
    }
    let stats = paywall.stats();
    println!(
        "RequirePaid: {} cache hits, {} misses, {} calls to the mock Figma",
        stats.cache_hits,
        stats.cache_misses,
        figma.payment_requests()
    );

    let of_route = |route: usize, f: fn(&Run) -> f64| wrk::median_of(&runs, route, f);
    let ratio = |route: usize| {
        wrk::median(
            ratios
                .iter()
                .filter(|(r, _)| *r == route)
                .map(|(_, x)| *x)
                .collect(),
        )
    };
    println!();
    println!("Medians of {} rounds:", config.rounds);
    println!();
    println!("| route | req/s | p50 | p99 | server CPU per request | req/s vs its open route (median of pairs) | CPU added |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, &(path, _, open)) in ROUTES.iter().enumerate() {
        let cpu = of_route(i, |r| r.cpu_us);
        println!(
            "| {path} | {:.0} | {:.1} us | {:.1} us | {cpu:.2} us | {} | {} |",
            of_route(i, |r| r.rps),
            of_route(i, |r| r.p50_us),
            of_route(i, |r| r.p99_us),
            if i == open {
                "—".to_owned()
            } else {
                format!("{:.3}", ratio(i))
            },
            if i == open {
                "—".to_owned()
            } else {
                format!("{:+.2} us", cpu - of_route(open, |r| r.cpu_us))
            },
        );
    }
    println!();
    for (name, route) in [("token", 2), ("user", 5)] {
        let r = ratio(route);
        println!(
            "gated/open throughput, {name} mode: {r:.3} (target >= 0.92: {})",
            if r >= 0.92 { "met" } else { "MISSED" }
        );
    }
    let failed = runs.iter().any(|(_, r)| !r.errors.is_empty());
    if failed {
        println!("UNEXPECTED: some requests failed or were refused (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The bench's stand-in for an app's own authentication: a `UserId`
/// from a header.
async fn authenticate(mut req: axum::extract::Request) -> axum::extract::Request {
    let user = req
        .headers()
        .get(USER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|id| UserId::new(id).ok());
    if let Some(user) = user {
        req.extensions_mut().insert(user);
    }
    req
}

/// The identity header of `mode`, as `name: value`.
fn header_for(mode: Mode, token: &str, user: &str) -> String {
    match mode {
        Mode::Token => format!("X-Figma-Payment-Token: {token}"),
        Mode::User => format!("{USER_HEADER}: {user}"),
    }
}

/// One plain HTTP/1.1 request; the response's status code.
fn get_status(addr: SocketAddr, path: &str, header: Option<&String>) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let header = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\n{header}connection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn wrk_run(wrk: &str, config: &Config, addr: SocketAddr, path: &str, header: &str) -> Run {
    wrk::run(
        wrk,
        &wrk::Load {
            threads: config.threads,
            connections: config.connections,
            seconds: config.seconds,
        },
        &format!("http://{addr}{path}"),
        Some(header),
        "self",
    )
}
