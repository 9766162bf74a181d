//! The `figma-paywall` binary (the crate `figma-paywall-gateway`), run as a process and
//! asked over real HTTP as a proxy's forward auth would ask it; in
//! `proxies.rs`, behind the real nginx, Caddy, Traefik and Envoy.

mod browser;
mod checkout;
mod cors;
mod credits;
mod development;
#[allow(dead_code)]
#[path = "../common/example.rs"]
mod example;
#[path = "../common/fenced.rs"]
mod fenced;
mod hardening;
#[path = "../common/npm.rs"]
mod npm;
mod operations;
mod proxies;
#[path = "../common/scratch.rs"]
mod scratch;
mod site;
mod websocket;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use reqwest::{header::HeaderMap, Client, StatusCode};

const BIN: &str = env!("CARGO_BIN_EXE_figma-paywall");

/// A running gateway, killed when dropped.
struct Gateway {
    child: Child,
    base: String,
    /// The demo's tokens: a buyer, a user in a trial, a non-buyer.
    tokens: Vec<String>,
    /// What it printed, down to its last command to try.
    printed: Vec<String>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `child`.
fn sigterm(child: &Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

/// How `child` exited, if it did within `within`.
async fn exit_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("a status") {
            return Some(status);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("FIGMA_TOKEN")
        .env_remove("FIGMA_PLUGIN_ID")
        .env_remove("FIGMA_WIDGET_ID")
        .env_remove("FIGMA_FILE_ID")
        .env_remove("FIGMA_PAYWALL_STORE")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn");
    command
}

/// `figma-paywall --demo --listen 127.0.0.1:0 ARGS`, once it listens.
fn demo(args: &[&str]) -> Gateway {
    let mut command = demo_command(args);
    command.stderr(Stdio::inherit());
    start(command)
}

/// The command line of [`demo`], to change before [`start`].
fn demo_command(args: &[&str]) -> Command {
    command(&[&["--demo", "--listen", "127.0.0.1:0"], args].concat())
}

/// Starts a gateway with `--demo`, once it listens.
fn start(mut command: Command) -> Gateway {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("the gateway starts");
    let demo = example::Demo::read(&mut child);
    Gateway {
        child,
        base: demo
            .after("figma-paywall listening on ")
            .expect("the gateway says where it listens"),
        tokens: demo.tokens,
        printed: demo.lines,
    }
}

async fn auth(gateway: &Gateway, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    get(&format!("{}/_figma_paywall/auth", gateway.base), headers).await
}

/// `GET url` with `headers`: the status, headers and body.
async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    let mut request = Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

#[tokio::test]
async fn forward_auth_names_buyers_and_refuses_everyone_else() {
    let gateway = demo(&[]);
    let [buyer, trial, unpaid] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();

    let (status, headers, _) = auth(&gateway, &[("X-Figma-Payment-Token", &buyer)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-figma-user-id"], "2001");
    assert_eq!(headers["x-figma-payment-status"], "PAID");
    assert_eq!(headers["x-figma-resource-id"], "1122334455");
    assert_eq!(headers["x-figma-resource-type"], "PLUGIN");
    // Figma answered just now.
    assert_eq!(headers["x-figma-answer-age"], "0");

    let (status, headers, _) = auth(&gateway, &[("X-Figma-Payment-Token", &trial)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-figma-payment-status"], "TRIAL");

    // A non-buyer: the deny status (402 by default), in Figma's envelope.
    let (status, headers, body) = auth(&gateway, &[("X-Figma-Payment-Token", &unpaid)]).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(!headers.contains_key("x-figma-user-id"));
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["reason"], "not_paid");

    // No token, or a forged one: 401.
    assert_eq!(auth(&gateway, &[]).await.0, StatusCode::UNAUTHORIZED);
    let forged = auth(&gateway, &[("X-Figma-Payment-Token", "ppt_forged")]).await;
    assert_eq!(forged.0, StatusCode::UNAUTHORIZED);
    assert!(!forged.1.contains_key("x-figma-user-id"));
}

#[tokio::test]
async fn the_token_may_come_in_the_original_uri_and_non_buyers_get_the_deny_status() {
    let gateway = demo(&["--deny-status", "403", "--no-trial"]);
    let [buyer, trial, unpaid] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();
    for header in ["X-Original-URI", "X-Forwarded-Uri"] {
        let uri = format!("/docs/page?a=1&plugin_payment_token={buyer}");
        let (status, headers, _) = auth(&gateway, &[(header, &uri)]).await;
        assert_eq!(status, StatusCode::OK, "{header}");
        assert_eq!(headers["x-figma-user-id"], "2001");
    }
    for token in [&trial, &unpaid] {
        let uri = format!("/docs?plugin_payment_token={token}");
        assert_eq!(
            auth(&gateway, &[("X-Original-URI", &uri)]).await.0,
            StatusCode::FORBIDDEN
        );
    }
    // Asked directly with the token in the query, or by Envoy, which
    // appends the original path.
    let direct = format!(
        "{}/_figma_paywall/auth?plugin_payment_token={buyer}",
        gateway.base
    );
    let envoy = format!(
        "{}/_figma_paywall/auth/docs/page?plugin_payment_token={buyer}",
        gateway.base
    );
    for url in [direct, envoy] {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        assert_eq!(response.headers()["x-figma-user-id"], "2001");
    }
    // The original URI without a token: no identity.
    let (status, _, _) = auth(&gateway, &[("X-Original-URI", "/docs?a=1")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn a_misconfigured_gateway_stops_at_start_with_the_reason() {
    for (args, env, says) in [
        (&["--plugin", "1"][..], None, "FIGMA_TOKEN is not set"),
        (&["--demo", "--plugin", "12a"][..], None, "--plugin \"12a\""),
        (
            &["--demo", "--deny-status", "200"][..],
            None,
            "not a refusal",
        ),
        (&["--demo", "--bypass", "me"][..], None, "--bypass \"me\""),
        (
            &["--demo", "--max-unverified", "an hour"][..],
            None,
            "not a duration",
        ),
        (
            &["--demo", "--cors", "docs.example.com"][..],
            None,
            "--cors \"docs.example.com\"",
        ),
        (
            &["--demo", "--paid-lifetime", "ten minutes"][..],
            None,
            "not a duration",
        ),
        (
            &["--demo", "--max-connections-per-client", "0"][..],
            None,
            "--max-connections-per-client must be at least 1",
        ),
        (&[][..], Some(("FIGMA_TOKEN", "figd_x")), "--plugin ID"),
        (
            &["--demo"][..],
            Some(("FIGMA_TOKEN", "figd_x")),
            "FIGMA_TOKEN is set",
        ),
    ] {
        let mut command = command(args);
        if let Some((name, value)) = env {
            command
                .env(name, value)
                .env("FIGMA_API_URL", "http://127.0.0.1:9");
        }
        let output = command.output().expect("the gateway runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A port another gateway listens on is refused, not shared (each
    // worker's socket has SO_REUSEPORT, the other gateway's too).
    let first = demo(&[]);
    let taken = first.base.trim_start_matches("http://");
    let output = command(&["--demo", "--listen", taken])
        .output()
        .expect("the gateway runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a second gateway shared {taken}");
    assert!(
        stderr.contains(&format!("cannot listen on {taken}")),
        "{stderr}"
    );
}

/// Serves `app` on a free loopback port: its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A small upstream that says what it received: the identity headers, a
/// hop-by-hop header, the forwarding headers and the body's length.
async fn upstream(calls: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> String {
    use axum::{body::Bytes, http::HeaderMap, Json, Router};
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            // Every value the header came with, so that a spoofed one
            // beside the gateway's shows.
            let header = |name: &str| {
                let values: Vec<&str> = headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("?"))
                    .collect();
                (!values.is_empty()).then(|| values.join(", "))
            };
            // Every header named like one of the gateway's, in any
            // spelling a WSGI or CGI server folds into it (`_` for `-`).
            let mut figma_headers: Vec<&str> = headers
                .keys()
                .map(|name| name.as_str())
                .filter(|name| name.replace('_', "-").starts_with("x-figma-"))
                .collect();
            figma_headers.sort_unstable();
            Json(serde_json::json!({
                "figma_headers": figma_headers,
                "user": header("x-figma-user-id"),
                "status": header("x-figma-payment-status"),
                "resource": header("x-figma-resource-id"),
                "resource_type": header("x-figma-resource-type"),
                "answer_age": header("x-figma-answer-age"),
                "custom": header("x-custom"),
                "cookie": header("cookie"),
                "forwarded_for": header("x-forwarded-for"),
                "forwarded_host": header("x-forwarded-host"),
                "len": body.len(),
            }))
        }
    });
    // The upstream takes big bodies; the gateway must not buffer them.
    let app = app.layer(axum::extract::DefaultBodyLimit::disable());
    serve(app).await
}

#[tokio::test]
async fn as_a_reverse_proxy_it_forwards_buyers_with_their_identity_and_nobody_else() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = upstream(calls.clone()).await;
    let gateway = demo(&["--upstream", &upstream]);
    let [buyer, _, unpaid] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();
    let client = Client::new();

    // A buyer reaches the upstream, named by the gateway whatever they claim;
    // a header the client marked hop-by-hop stops at the gateway.
    let seen: serde_json::Value = client
        .get(format!("{}/docs/page?a=1", gateway.base))
        .header("X-Figma-Payment-Token", &buyer)
        .header("X-Figma-User-Id", "9999")
        .header("Connection", "x-custom")
        .header("X-Custom", "1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["user"], "2001");
    assert_eq!(seen["status"], "PAID");
    assert_eq!(seen["custom"], serde_json::Value::Null);
    assert_eq!(seen["forwarded_for"], "127.0.0.1");
    assert!(seen["forwarded_host"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    // A 3 MB upload streams through.
    let body = vec![b'x'; 3_000_000];
    let seen: serde_json::Value = client
        .post(format!("{}/upload", gateway.base))
        .header("X-Figma-Payment-Token", &buyer)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["len"], 3_000_000);
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(before, 2);

    // A non-buyer, a spoofed identity without a token: refused, and the
    // upstream never hears of them.
    let response = client
        .get(format!("{}/docs/page", gateway.base))
        .header("X-Figma-Payment-Token", &unpaid)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let response = client
        .get(format!("{}/docs/page", gateway.base))
        .header("X-Figma-User-Id", "2001")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);

    // The gateway's own paths are its own.
    let health = reqwest::get(format!("{}/_figma_paywall/health", gateway.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);
}

#[test]
fn check_says_what_is_wrong_and_exits_1_or_0() {
    // `--check` with `args` and the variable `env`: its exit code, and
    // what it said.
    let check = |args: &[&str], (name, value): (&str, &str)| {
        let output = command(&[args, &["--check"]].concat())
            .env(name, value)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), said)
    };
    let (code, said) = check(&["--demo"], ("RUST_LOG", "warn"));
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("ok   FIGMA_TOKEN: Figma accepts it"),
        "{said}"
    );
    assert!(said.contains("ok   Redis: none"), "{said}");
    for (args, env, failure) in [
        // A Redis that is not there.
        (
            &["--demo"][..],
            ("REDIS_URL", "redis://127.0.0.1:1"),
            "FAIL Redis at REDIS_URL",
        ),
        // A configuration that does not start.
        (
            &[][..],
            ("RUST_LOG", "warn"),
            "FAIL name what buyers must have bought",
        ),
        // A store that cannot be opened.
        (
            &["--demo"][..],
            ("FIGMA_PAYWALL_STORE", "/nonexistent/folder/answers.redb"),
            "FAIL the store",
        ),
    ] {
        let (code, said) = check(args, env);
        assert_eq!(code, Some(1), "{said}");
        assert!(said.contains(failure), "{said}");
    }
    // --version names the release.
    let output = command(&["--version"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout)
        .starts_with(&format!("figma-paywall {}", env!("CARGO_PKG_VERSION"))));
}

/// A bad value from a flag's environment variable names the variable,
/// not only the flag the operator never typed.
#[test]
fn a_bad_value_from_the_environment_names_its_variable() {
    let output = command(&["--demo"])
        .env("FIGMA_PAYWALL_PAID_LIFETIME", "10")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(
        said.contains("--paid-lifetime") && said.contains("FIGMA_PAYWALL_PAID_LIFETIME"),
        "{said}"
    );
    // Typed on the command line, the flag alone is named.
    let output = command(&["--demo", "--paid-lifetime", "10"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{said}");
    assert!(!said.contains("FIGMA_PAYWALL_PAID_LIFETIME"), "{said}");
}

/// What start refuses, `--check` refuses, in the same words (a port
/// already taken, a sign-in key too short: both once said "ok" and then
/// failed to start); and a closed pipe ends `--check` without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_what_start_refuses_in_the_same_words() {
    let figma = figma_paywall::mock::MockFigma::start().await.unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let signing_in: &[(&str, &str)] = &[
        ("FIGMA_CLIENT_ID", "id"),
        ("FIGMA_CLIENT_SECRET", "secret"),
        ("FIGMA_SESSION_KEY", "short"),
    ];
    // The flags, the environment, and words of start's refusal.
    type Case<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case<'_>; 2] = [
        (vec!["--listen", &taken], &[], "cannot listen on"),
        (
            vec![
                "--listen",
                "127.0.0.1:0",
                "--login",
                "--upstream",
                "http://127.0.0.1:1",
                "--site-url",
                "https://docs.example.com",
            ],
            signing_in,
            "FIGMA_SESSION_KEY",
        ),
    ];
    for (args, env, words) in cases {
        let run = |check: bool| {
            let mut command = command(&[&["--plugin", "1122334455"][..], &args].concat());
            if check {
                command.arg("--check");
            }
            command
                .env("FIGMA_API_URL", figma.url())
                .env("FIGMA_TOKEN", figma_paywall::mock::MOCK_ACCESS_TOKEN)
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            command.spawn().unwrap()
        };
        let checked = run(true).wait_with_output().unwrap();
        let said = String::from_utf8_lossy(&checked.stdout).into_owned();
        assert_eq!(checked.status.code(), Some(1), "{said}");
        let refusal = said
            .lines()
            .find_map(|l| l.strip_prefix("FAIL ").filter(|l| l.contains(words)))
            .unwrap_or_else(|| panic!("--check does not refuse {words}: {said}"))
            .to_owned();
        let mut started = run(false);
        let exited = exit_within(&mut started, Duration::from_secs(20)).await;
        let _ = started.kill();
        let output = started.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            exited.and_then(|s| s.code()),
            Some(2),
            "start took what --check refused: {stderr}"
        );
        assert!(
            stderr.contains(&refusal),
            "{refusal:?} is not what start says: {stderr}"
        );
    }
    // Every line to a pipe already closed: no panic (101), the verdict stands.
    let mut closed = demo_command(&["--check"]);
    let mut child = closed
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `--help`'s example command lines, each with `--check` added, against a
/// mock Figma that accepts its own token and refuses any other (on a
/// runtime of its own: the test waits for each process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_of_help_are_command_lines_it_takes_and_a_refused_token_fails_check() {
    let figma = figma_paywall::mock::MockFigma::start().await.unwrap();
    let check = |args: &[&str], token: &str| {
        let check = if args.contains(&"--check") {
            &[][..]
        } else {
            &["--check"][..]
        };
        let mut command = command(&[args, check].concat());
        command
            .env("FIGMA_API_URL", figma.url())
            .env("FIGMA_TOKEN", token)
            .env("FIGMA_CLIENT_ID", "id")
            .env("FIGMA_CLIENT_SECRET", "secret");
        command.output().unwrap()
    };
    let refused = check(&["--plugin", "1122334455"], "figd_not-the-creator-s");
    let said = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("FAIL Figma refuses FIGMA_TOKEN"), "{said}");

    let help = command(&["--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let examples = help.split("Examples:").nth(1).expect("--help has examples");
    let lines = examples.replace("\\\n", " ");
    let mut taken = 0;
    for line in lines.lines().map(str::trim) {
        let Some(args) = line.split("figma-paywall ").nth(1) else {
            continue;
        };
        let args: Vec<&str> = args
            .split_whitespace()
            .map(|arg| arg.trim_matches('\''))
            .collect();
        let output = check(&args, figma_paywall::mock::MOCK_ACCESS_TOKEN);
        let said = String::from_utf8_lossy(&output.stderr);
        // 2 is a command line the parser refused; 1 a check that failed
        // (the examples' Redis and sign-in app do not exist here).
        assert_ne!(output.status.code(), Some(2), "{line}: {said}");
        assert!(!said.contains("unexpected argument"), "{line}: {said}");
        taken += 1;
    }
    assert_eq!(taken, 8, "{examples}");
}
