//! Running the gateway: its health, its metrics, its logs and its
//! shutdown.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use reqwest::{Client, StatusCode};

use super::{auth, demo, demo_command, serve, start};

/// The demo with `args` and `RUST_LOG=info`, and what it logs, read to
/// the end once it exits.
fn logging(args: &[&str]) -> (super::Gateway, std::thread::JoinHandle<Vec<String>>) {
    let mut command = demo_command(args);
    command.env("RUST_LOG", "info").stderr(Stdio::piped());
    let mut gateway = start(command);
    let stderr = gateway.child.stderr.take().expect("stderr");
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    (gateway, logs)
}

/// `GET /_figma_paywall/health` with `bearer`, if any: its status and body.
async fn health(base: &str, bearer: Option<&str>) -> (StatusCode, serde_json::Value) {
    let mut request = Client::new().get(format!("{base}/_figma_paywall/health"));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn health_says_it_serves_and_its_details_only_to_the_metrics_token() {
    const TOKEN: &str = "a-scraper-secret-of-32-characters";
    let gateway = demo(&["--metrics-token", TOKEN]);
    // Anyone: that it serves, nothing that would size a flood.
    for bearer in [None, Some("a-scraper-secret-of-32-characterz")] {
        let (status, body) = health(&gateway.base, bearer).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({ "status": "serving" }),
            "{bearer:?}"
        );
    }
    // The metrics token's holder: the details too.
    let (status, body) = health(&gateway.base, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "serving");
    assert_eq!(body["figma_failing"], false);
    for detail in [
        "active_buyers",
        "budget_per_minute",
        "refresh_cycle_secs",
        "cached_entries",
    ] {
        assert!(body[detail].is_number(), "no {detail} in {body}");
    }
    // Not backing off from a 429.
    assert_eq!(body["backing_off_secs"], serde_json::Value::Null);
    // Without a metrics token, nobody gets the details.
    let plain = demo(&[]);
    let (status, body) = health(&plain.base, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({ "status": "serving" }));
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format_to_whoever_has_the_token() {
    const TOKEN: &str = "a-scraper-secret-of-32-characters";
    let gateway = demo(&["--metrics-token", TOKEN]);
    let [buyer, _, unpaid] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();
    auth(&gateway, &[("X-Figma-Payment-Token", &buyer)]).await;
    auth(&gateway, &[("X-Figma-Payment-Token", &buyer)]).await;
    auth(&gateway, &[("X-Figma-Payment-Token", &unpaid)]).await;
    let url = format!("{}/_figma_paywall/metrics", gateway.base);
    let client = Client::new();
    // None, another, one of the same length, and the token cut short.
    for bearer in [
        None,
        Some("wrong-secret-of-some-length"),
        Some("a-scraper-secret-of-32-characterz"),
        Some("a-scraper-secret-of-32-character"),
    ] {
        let mut request = client.get(&url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let text = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "figma_paywall_requests_total{outcome=\"granted\"} 2",
        "figma_paywall_requests_total{outcome=\"not_paid\"} 1",
        "figma_paywall_lookups_total{outcome=\"hit\"} 1",
        "figma_paywall_upstream_calls_total 2",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(
        text.contains("figma_paywall_upstream_latency_seconds"),
        "{text}"
    );
    assert!(!text.contains(&buyer), "a token in the metrics");

    // Without a token configured, there are no metrics at all.
    let plain = demo(&[]);
    let response = reqwest::get(format!("{}/_figma_paywall/metrics", plain.base))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// A slow upstream: it answers after `delay`, and tells `arrived` when a
/// request reaches it.
async fn slow_upstream(delay: Duration, arrived: std::sync::Arc<tokio::sync::Notify>) -> String {
    let app = axum::Router::new().fallback(move || {
        let arrived = arrived.clone();
        async move {
            arrived.notify_one();
            tokio::time::sleep(delay).await;
            "slow but there"
        }
    });
    serve(app).await
}

#[tokio::test]
async fn sigterm_finishes_the_requests_in_flight_and_logs_are_json_lines() {
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let upstream = slow_upstream(Duration::from_millis(800), arrived.clone()).await;
    let (mut gateway, logs) = logging(&["--upstream", &upstream, "--log-format", "json"]);
    let buyer = gateway.tokens[0].clone();

    // A request reaches the slow upstream; SIGTERM comes while it waits.
    let request = tokio::spawn(
        Client::new()
            .get(format!("{}/slow", gateway.base))
            .header("X-Figma-Payment-Token", buyer.clone())
            .timeout(Duration::from_secs(10))
            .send(),
    );
    tokio::time::timeout(Duration::from_secs(20), arrived.notified())
        .await
        .expect("the request reached the upstream");
    super::sigterm(&gateway.child);

    // The request in flight is answered, then the gateway exits cleanly.
    let response = request.await.unwrap().expect("answered after SIGTERM");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "slow but there");
    let exit = super::exit_within(&mut gateway.child, Duration::from_secs(5)).await;
    assert!(exit.expect("the gateway exits").success());

    // Every log line is one JSON object, with its level and message, and
    // none holds the token.
    let logs = logs.join().unwrap();
    let mut messages = Vec::new();
    for line in &logs {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["level"].is_string(), "{line}");
        messages.push(object["message"].as_str().unwrap_or_default().to_owned());
        assert!(!line.contains(&buyer), "a token in the logs: {line}");
    }
    for said in [
        "shutting down: finishing the requests in flight",
        "stopped: every request in flight was answered",
    ] {
        assert!(
            messages.iter().any(|m| m == said),
            "no {said:?} in {logs:#?}"
        );
    }
}

/// The access log, as JSON lines: one a request, with the path but never
/// the query (where a token may be), the status, a refusal's reason, the
/// user let in and the upstream's time; `--access-log off` leaves it out.
#[tokio::test]
async fn the_access_log_has_a_line_a_request_and_never_a_token() {
    let upstream = serve(axum::Router::new().fallback(|| async { "upstream" })).await;
    for on in [true, false] {
        let mut args = vec!["--upstream", upstream.as_str(), "--log-format", "json"];
        if !on {
            args.extend(["--access-log", "off"]);
        }
        let (mut gateway, logs) = logging(&args);
        let [buyer, _, unpaid] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();
        let client = Client::new();
        let paid = client
            .get(format!(
                "{}/docs/page?plugin_payment_token={buyer}",
                gateway.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(paid.status(), StatusCode::OK);
        let refused = client
            .get(format!("{}/docs/other", gateway.base))
            .header("X-Figma-Payment-Token", &unpaid)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
        let _ = gateway.child.kill();
        let _ = gateway.child.wait();
        let logs = logs.join().unwrap();
        let lines: Vec<serde_json::Value> = logs
            .iter()
            .filter(|line| line.contains("figma_paywall::access"))
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        if !on {
            assert!(lines.is_empty(), "{lines:#?}");
            continue;
        }
        assert_eq!(lines.len(), 2, "{logs:#?}");
        let (paid, refused) = (&lines[0], &lines[1]);
        assert_eq!(paid["span"]["path"], "/docs/page");
        assert_eq!(paid["span"]["method"], "GET");
        assert_eq!(paid["span"]["client"], "127.0.0.1");
        assert_eq!(paid["status"], 200);
        assert_eq!(paid["user"], "2001");
        assert!(paid["upstream_ms"].as_f64().is_some(), "{paid}");
        assert_eq!(refused["status"], 402);
        assert_eq!(refused["reason"], "not_paid");
        for line in &logs {
            assert!(
                !line.contains(&buyer) && !line.contains(&unpaid),
                "a token in the logs: {line}"
            );
        }
    }
}

/// The systemd unit in `deploy/`, as `systemd-analyze security` scores it
/// offline: at most 2.5 ("OK"), where it was 7.0 ("MEDIUM").
#[test]
fn the_systemd_unit_is_hardened() {
    let unit =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/figma-paywall.service");
    let output = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run systemd-analyze ({e}): apt-get install systemd (.ci/test does)")
        });
    let said = String::from_utf8_lossy(&output.stdout);
    let score: f64 = said
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for figma-paywall.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no score in: {said}"));
    assert!(score <= 2.5, "exposure {score}:\n{said}");
}
