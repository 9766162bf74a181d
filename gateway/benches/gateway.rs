//! The gateway's cost: `wrk` against a small upstream reached directly and
//! through `figma-paywall --upstream` (a buyer's plugin payment token,
//! cached after the first request), in alternating pairs, and against the
//! gateway's forward-auth endpoint alone. Prints the medians of
//! Requests/sec, p50 and p99, the gateway's CPU time per request, and the
//! median of the pairs' throughput ratios.
//!
//! ```sh
//! cargo bench -p figma-paywall-gateway --bench gateway
//! GATEWAY_ROUNDS=7 GATEWAY_SECONDS=10 cargo bench -p figma-paywall-gateway --bench gateway
//! ```
//!
//! Loopback only, bounded: `rounds x 3 x seconds` of load. Skipped, with a
//! message, without `wrk` and under `cargo test --benches`.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, ExitCode, Stdio},
};

use common::{
    bench_mode,
    wrk::{self, Load, Run},
};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> ExitCode {
    if !bench_mode() {
        println!("gateway: skipped outside `cargo bench` (run `cargo bench -p figma-paywall-gateway --bench gateway`)");
        return ExitCode::SUCCESS;
    }
    let wrk_bin = std::env::var("WRK").unwrap_or_else(|_| "wrk".to_owned());
    if Command::new(&wrk_bin).arg("--version").output().is_err() {
        println!("gateway: SKIPPED: `{wrk_bin}` is not installed (Debian: `apt-get install wrk`); nothing was measured");
        return ExitCode::SUCCESS;
    }
    let rounds = env_or("GATEWAY_ROUNDS", 5).clamp(1, 15) as usize;
    let load = Load {
        threads: 1,
        connections: 32,
        seconds: env_or("GATEWAY_SECONDS", 4).min(60),
    };

    // The upstream: "ok" from a one-worker runtime in this process.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let upstream = rt.block_on(async {
        let app = axum::Router::new().fallback(|| async { "ok" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serving") });
        format!("http://{addr}")
    });

    // The gateway, on the embedded mock Figma, in front of it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_figma-paywall"))
        .args(["--demo", "--listen", "127.0.0.1:0", "--upstream", &upstream])
        .env_remove("FIGMA_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let pid = child.id().to_string();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut gateway, mut buyer) = (None, None);
    for line in lines.by_ref() {
        let line = line.expect("a line");
        if let Some(url) = line.strip_prefix("figma-paywall listening on ") {
            gateway = Some(url.to_owned());
        }
        if buyer.is_none() {
            buyer = line
                .split("X-Figma-Payment-Token: ")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
                .map(str::to_owned);
        }
        if line.starts_with("# nobody") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let gateway = gateway.expect("the gateway's address");
    let header = format!("X-Figma-Payment-Token: {}", buyer.expect("a buyer's token"));

    let routes = [
        ("upstream, direct", format!("{upstream}/page"), "self"),
        (
            "through the gateway",
            format!("{gateway}/page"),
            pid.as_str(),
        ),
        (
            "forward auth alone",
            format!("{gateway}/_figma_paywall/auth"),
            pid.as_str(),
        ),
    ];
    // Warm the gateway's cache, and check that every route answers 200.
    for (_, url, who) in &routes {
        let run = wrk::run(
            &wrk_bin,
            &Load {
                threads: 1,
                connections: 1,
                seconds: 1,
            },
            url,
            Some(&header),
            who,
        );
        assert!(run.errors.is_empty(), "{url}: {}", run.errors);
    }
    println!(
        "wrk -t{} -c{} -d{}s --latency, {rounds} rounds; upstream on 1 tokio worker in this process, gateway {gateway} (pid {pid})",
        load.threads, load.connections, load.seconds
    );
    let mut runs: Vec<(usize, Run)> = Vec::new();
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let mut order = [0, 1, 2];
        if round % 2 == 1 {
            order = [1, 0, 2];
        }
        let mut rps = [0.0; 3];
        for i in order {
            let (name, url, who) = &routes[i];
            let run = wrk::run(&wrk_bin, &load, url, Some(&header), who);
            println!("{}", run.line(round + 1, name));
            rps[i] = run.rps;
            runs.push((i, run));
        }
        ratios.push(rps[1] / rps[0]);
    }
    let _ = child.kill();
    let _ = child.wait();

    let of = |route: usize, f: fn(&Run) -> f64| wrk::median_of(&runs, route, f);
    println!();
    println!("Medians of {rounds} rounds:");
    println!();
    println!("| route | req/s | p50 | p99 | CPU per request (the process serving it) |");
    println!("|---|---:|---:|---:|---:|");
    for (i, (name, _, who)) in routes.iter().enumerate() {
        println!(
            "| {name} | {:.0} | {:.1} us | {:.1} us | {:.2} us ({}) |",
            of(i, |r| r.rps),
            of(i, |r| r.p50_us),
            of(i, |r| r.p99_us),
            of(i, |r| r.cpu_us),
            if *who == "self" {
                "upstream"
            } else {
                "gateway"
            },
        );
    }
    println!();
    println!(
        "through the gateway / direct throughput: {:.3} (median of {rounds} pairs); p50 added {:+.1} us",
        wrk::median(ratios),
        of(1, |r| r.p50_us) - of(0, |r| r.p50_us)
    );
    if runs.iter().any(|(_, r)| !r.errors.is_empty()) {
        println!("UNEXPECTED: some requests failed or were refused (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
