//! Load: a gated route against an ungated one, over loopback, with `wrk`.
//!
//! Serves one router on 127.0.0.1 (a free port) with three routes that
//! answer the same `"ok"`: `/open` (ungated), `/naive` (the naive baseline
//! gate: `from_fn` and one moka lookup) and `/paid` (`RequirePaid`, its
//! cache warmed with one real lookup through the in-process mock Figma).
//! Every request carries the same `X-Figma-Payment-Token` header. `wrk
//! --latency` drives the routes in turn, in a rotating order, for a few
//! rounds; the bench parses Requests/sec and the p50/p99 latencies and
//! prints the gated/ungated ratios.
//!
//! ```sh
//! cargo bench --bench load
//! LOAD_ROUNDS=5 LOAD_SECONDS=10 LOAD_THREADS=2 LOAD_CONNECTIONS=64 cargo bench --bench load
//! ```
//!
//! Loopback only, bounded: `rounds x 3 x seconds` of load. Skipped, with a
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
use common::*;
use figma_paywall::{PaymentStatus, Paywall, RequirePaidLayer, UserId};

const ROUTES: [&str; 3] = ["/open", "/naive", "/paid"];

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
        println!("load: skipped outside `cargo bench` (run `cargo bench --bench load`)");
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
        threads: env_or("LOAD_THREADS", 2),
        connections: env_or("LOAD_CONNECTIONS", 32),
        seconds: env_or("LOAD_SECONDS", 5).min(60),
        rounds: env_or("LOAD_ROUNDS", 3).min(10),
        server_workers: env_or("LOAD_SERVER_WORKERS", 2) as usize,
    };

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
        let app = Router::new()
            .route("/paid", get(handler))
            .route_layer(RequirePaidLayer::new(&paywall, plugin.clone()))
            .merge(naive_token_gate(
                Router::new().route("/naive", get(handler)),
                naive.clone(),
            ))
            .route("/open", get(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serving") });
        addr
    });

    // Warm the gate's cache with one real lookup, and check every route.
    for (path, with_token, expected) in [
        ("/paid", true, 200),
        ("/paid", false, 401),
        ("/naive", true, 200),
        ("/naive", false, 402),
        ("/open", true, 200),
    ] {
        let status = get_status(addr, path, with_token.then_some(token.as_str()));
        assert_eq!(status, expected, "GET {path} (token: {with_token})");
    }
    assert_eq!(figma.payment_requests(), 1, "the cache was warmed once");

    println!(
        "wrk -t{} -c{} -d{}s --latency, {} rounds; server on a {}-worker tokio runtime at {addr}",
        config.threads, config.connections, config.seconds, config.rounds, config.server_workers
    );
    let mut runs: Vec<(usize, Run)> = Vec::new();
    for round in 0..config.rounds as usize {
        for k in 0..ROUTES.len() {
            // Rotate the order, so that no route always goes first.
            let route = (round + k) % ROUTES.len();
            let run = wrk_run(&wrk, &config, addr, ROUTES[route], &token);
            println!(
                "round {} {:<7} {:>10.0} req/s  p50 {:>8.1} us  p99 {:>8.1} us  server CPU {:>5.2} us/request{}",
                round + 1,
                ROUTES[route],
                run.rps,
                run.p50_us,
                run.p99_us,
                run.cpu_us,
                if run.errors.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", run.errors)
                }
            );
            runs.push((route, run));
        }
    }
    let stats = paywall.stats();
    println!(
        "RequirePaid: {} cache hits, {} misses, {} calls to the mock Figma",
        stats.cache_hits,
        stats.cache_misses,
        figma.payment_requests()
    );

    let median = |route: usize, f: fn(&Run) -> f64| {
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|(r, _)| *r == route)
            .map(|(_, x)| f(x))
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let open_rps = median(0, |r| r.rps);
    let open_p99 = median(0, |r| r.p99_us);
    let open_cpu = median(0, |r| r.cpu_us);
    println!();
    println!("Medians of {} rounds:", config.rounds);
    println!();
    println!("| route | req/s | p50 | p99 | server CPU per request | req/s vs /open | p99 vs /open | CPU added vs /open |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, route) in ROUTES.iter().enumerate() {
        let rps = median(i, |r| r.rps);
        let p99 = median(i, |r| r.p99_us);
        let cpu = median(i, |r| r.cpu_us);
        println!(
            "| {route} | {rps:.0} | {:.1} us | {p99:.1} us | {cpu:.2} us | {:.3} | {:+.1} % | {:+.2} us |",
            median(i, |r| r.p50_us),
            rps / open_rps,
            (p99 - open_p99) / open_p99 * 100.0,
            cpu - open_cpu,
        );
    }
    let ratio = median(2, |r| r.rps) / open_rps;
    let p99_diff = (median(2, |r| r.p99_us) - open_p99) / open_p99 * 100.0;
    println!();
    println!(
        "gated/ungated throughput {ratio:.3} (target >= 0.95: {}), gated p99 {p99_diff:+.1} % vs ungated (target at most +10 %: {})",
        if ratio >= 0.95 { "met" } else { "MISSED" },
        if p99_diff <= 10.0 { "met" } else { "MISSED" },
    );
    let failed = runs.iter().any(|(_, r)| !r.errors.is_empty());
    if failed {
        println!("UNEXPECTED: some requests failed or were refused (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// One plain HTTP/1.1 request; the response's status code.
fn get_status(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let header = token
        .map(|t| format!("x-figma-payment-token: {t}\r\n"))
        .unwrap_or_default();
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

struct Run {
    requests: f64,
    /// This process's CPU time (the server's: the mock is idle and the
    /// main thread waits on wrk) per request, in microseconds.
    cpu_us: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    /// Non-2xx responses and socket errors, if any.
    errors: String,
}

/// User plus system CPU time of this process so far, in microseconds (from
/// /proc; 0 where there is none).
fn cpu_micros() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 here; the
    // kernel counts them in USER_HZ = 100 ticks a second.
    (ticks(11) + ticks(12)) * 10_000.0
}

fn wrk_run(wrk: &str, config: &Config, addr: SocketAddr, path: &str, token: &str) -> Run {
    let cpu_before = cpu_micros();
    let output = Command::new(wrk)
        .arg(format!("-t{}", config.threads))
        .arg(format!("-c{}", config.connections))
        .arg(format!("-d{}s", config.seconds))
        .arg("--timeout")
        .arg("5s")
        .arg("--latency")
        .arg("-H")
        .arg(format!("X-Figma-Payment-Token: {token}"))
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("wrk runs");
    let cpu = cpu_micros() - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut run = parse_wrk(&text).unwrap_or_else(|| panic!("unreadable wrk output:\n{text}"));
    run.cpu_us = cpu / run.requests.max(1.0);
    run
}

fn parse_wrk(text: &str) -> Option<Run> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = Vec::new();
    let mut in_distribution = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if in_distribution && line.starts_with("50%") {
            p50 = line.split_whitespace().nth(1).and_then(micros);
        } else if in_distribution && line.starts_with("99%") {
            p99 = line.split_whitespace().nth(1).and_then(micros);
            in_distribution = false;
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            errors.push(line.to_owned());
        }
    }
    Some(Run {
        requests: requests?,
        cpu_us: 0.0,
        rps: rps?,
        p50_us: p50?,
        p99_us: p99?,
        errors: errors.join("; "),
    })
}

/// wrk's durations (`812.00us`, `1.23ms`, `2.00s`, `1.00m`) in microseconds.
fn micros(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(number * scale)
}
