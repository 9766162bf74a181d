//! The examples as users run them: the binaries `cargo test` builds.

mod common {
    pub mod example;
}

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::example::{example, Killed};

#[test]
fn check_exits_0_1_2_for_paid_unpaid_and_unknown() {
    let run = |args: &[&str]| {
        Command::new(example("check"))
            .args(args)
            .env_remove("FIGMA_TOKEN")
            .output()
            .unwrap()
    };
    let paid = run(&["--demo", "--user", "2001", "--plugin", "1122334455"]);
    assert_eq!(paid.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&paid.stdout).contains("has access"));
    // The demo's users, as in every example: 2002 is in a trial (access),
    // 2003 has not paid.
    let trial = run(&["--demo", "--user", "2002", "--plugin", "1122334455"]);
    assert_eq!(trial.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&trial.stdout).contains("has access"));
    let unpaid = run(&["--demo", "--user", "2003", "--plugin", "1122334455"]);
    assert_eq!(unpaid.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unpaid.stdout).contains("has not paid"));
    for args in [
        &["--demo", "--token", "ppt_unknown"][..],
        &["--user", "2001", "--plugin", "1"][..], // no FIGMA_TOKEN
        &["--user", "１２", "--plugin", "1"][..],
        &["--plugin", "1"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).len() > 10);
    }
}

#[tokio::test]
async fn ai_endpoint_prints_curl_commands_that_give_200_402_and_401() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Killed(
        Command::new(example("ai_endpoint"))
            .env_remove("FIGMA_TOKEN")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env("PAYWALL_STATS_TOKEN", "stats-secret")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut curls = Vec::new();
    let started = Instant::now();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.starts_with("curl http") || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        if line.starts_with("curl -i -X POST") {
            curls.push(line);
        }
    }
    assert_eq!(curls.len(), 5, "{curls:?}");
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for curl in &curls {
        // curl -i -X POST http://… [-H 'X-Figma-…: …' …] -d '…'
        let url = curl.split_whitespace().nth(4).unwrap();
        let mut req = http.post(url).body("a cat in a hat");
        for header in curl.split('\'').filter(|h| h.starts_with("X-Figma")) {
            let (name, value) = header.split_once(": ").unwrap();
            req = req.header(name, value);
        }
        statuses.push(req.send().await.unwrap().status().as_u16());
    }
    // A buyer, a trial, a non-buyer, nobody, a plugin in development.
    assert_eq!(statuses, [200, 200, 402, 401, 200]);
    let health = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Only its routes are gated: any other path is not found, whoever asks.
    for path in ["/", "/nothing-here"] {
        let page = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 404, "{path}");
    }
    let stats_url = format!("http://127.0.0.1:{port}/paywall/stats");
    for wrong in [None, Some("Bearer guess"), Some("stats-secret")] {
        let mut req = http.get(&stats_url);
        if let Some(value) = wrong {
            req = req.header("authorization", value);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{wrong:?}");
    }
    let stats: serde_json::Value = http
        .get(&stats_url)
        .header("authorization", "Bearer stats-secret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The buyer, the trial and the plugin in development.
    assert_eq!(stats["granted"], 3);
    assert_eq!(stats["refused"]["not_paid"], 1);
    assert_eq!(stats["refused"]["no_identity"], 1);
    assert_eq!(stats["upstream_calls"], 3);
}
