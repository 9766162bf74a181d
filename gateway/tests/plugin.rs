//! The plugin side against the real servers: the npm package in `plugin/`
//! (its own tests, then its built output in node against `ai_endpoint`),
//! and a page whose origin is `null`, as a plugin's UI iframe has, in
//! headless Chromium against `ai_endpoint` and the gateway's `--cors '*'`.
//!
//! The TypeScript and JavaScript the README and `docs/` show are
//! type-checked against the package, and parsed by node.
//!
//! Needs Node and npm (Debian's `nodejs` and `npm`) and Chromium with
//! ChromeDriver (`chromium`, `chromium-driver`); `.ci/run` installs them,
//! and without them these tests fail saying so.

mod common {
    // Shared with the other browser tests, which use more of it.
    #[allow(dead_code)]
    pub mod chromium;
    pub mod example;
    pub mod fenced;
    pub mod npm;
    pub mod scratch;
}

use std::{path::Path, process::Command, sync::OnceLock};

use common::{
    chromium::in_browser,
    example::{AiEndpoint, Demo, Killed},
    npm::{plugin_dir, run_in_plugin},
};
use serde_json::{json, Value};

const PLUGIN_ID: &str = "1122334455";

/// Installs the package's dev dependencies if need be, builds it and runs
/// its own tests (`npm test`), once for this binary; the output of the
/// test run.
fn package_tested() -> &'static str {
    static TESTED: OnceLock<String> = OnceLock::new();
    TESTED.get_or_init(|| {
        let installed = plugin_dir().join("node_modules/.package-lock.json");
        let lock = plugin_dir().join("package-lock.json");
        let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
        if modified(&installed) < modified(&lock) {
            run_in_plugin("npm", &["ci", "--no-audit", "--no-fund"], &[]);
        }
        let output = run_in_plugin("npm", &["test"], &[]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
}

#[test]
fn the_packages_own_tests_pass() {
    let output = package_tested();
    // node's test runner: "# pass N" and "# fail 0".
    let count = |what: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# {what} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no '# {what}' line in:\n{output}"))
    };
    assert!(count("pass") >= 10, "{output}");
    assert_eq!(count("fail"), 0, "{output}");
}

/// One `paidFetch` of the built helper in node, as `user` with a fake
/// `figma` whose tokens and checkout are the mock Figma's: what it got.
fn paid_fetch(server: &AiEndpoint, user: &str, env: &[(&str, &str)]) -> Value {
    paid_fetch_at(&server.base, &server.figma, user, env)
}

/// [`paid_fetch`] against the server at `base`, whose mock Figma is at
/// `figma`.
fn paid_fetch_at(base: &str, figma: &str, user: &str, env: &[(&str, &str)]) -> Value {
    package_tested();
    let mut all = vec![
        ("SERVER_URL", base),
        ("FIGMA_URL", figma),
        ("PLUGIN_ID", PLUGIN_ID),
        ("USER_ID", user),
    ];
    all.extend_from_slice(env);
    let output = run_in_plugin("node", &["build-test/test/against-server.js"], &all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn the_helper_lets_a_buyer_in_and_turns_a_402_into_checkout_against_ai_endpoint() {
    let server = AiEndpoint::start(&[]);

    // A buyer: in, with no checkout.
    let buyer = paid_fetch(&server, "2001", &[("STATUS", "PAID")]);
    assert_eq!(buyer["status"], 200, "{buyer}");
    assert_eq!(buyer["body"]["user_id"], "2001");
    assert_eq!(buyer["body"]["result"], "a picture of a cat in a hat");
    assert_eq!(buyer["checkouts"], json!([]));

    // A non-buyer who closes checkout: the 402 back, readable, and
    // checkout opened exactly once.
    let closed = paid_fetch(&server, "2003", &[("IN_CHECKOUT", "close")]);
    assert_eq!(closed["status"], 402, "{closed}");
    assert_eq!(closed["body"]["reason"], "not_paid");
    assert_eq!(closed["checkouts"], json!(["PAID_FEATURE"]));

    // checkout: false: the 402, no checkout.
    let never = paid_fetch(
        &server,
        "2003",
        &[("IN_CHECKOUT", "buy"), ("CHECKOUT", "false")],
    );
    assert_eq!(never["status"], 402, "{never}");
    assert_eq!(never["checkouts"], json!([]));

    // A non-buyer who buys: in, on a second token minted after checkout.
    let bought = paid_fetch(
        &server,
        "2003",
        &[("IN_CHECKOUT", "buy"), ("CHECKOUT", "TRIAL_ENDED")],
    );
    assert_eq!(bought["status"], 200, "{bought}");
    assert_eq!(bought["body"]["user_id"], "2003");
    assert_eq!(bought["checkouts"], json!(["TRIAL_ENDED"]));
    assert_eq!(bought["tokensMinted"], 2);
}

#[test]
fn in_development_the_helper_gets_the_status_it_chose_and_a_server_on_figma_refuses_it() {
    let server = AiEndpoint::start(&[]);
    // The plugin chose PAID in development: in, with a token the mock
    // never issued, as the mock's creator; no checkout.
    let paid = paid_fetch(&server, "2003", &[("DEVELOPMENT", "PAID")]);
    assert_eq!(paid["status"], 200, "{paid}");
    assert_eq!(
        paid["body"]["user_id"],
        figma_paywall::mock::MOCK_CREATOR_ID
    );
    assert_eq!(paid["body"]["payment_status"]["type"], "PAID");
    assert_eq!(paid["checkouts"], json!([]));

    // UNPAID: checkout opens, the user closes it, the 402 comes back.
    let closed = paid_fetch(&server, "2003", &[("DEVELOPMENT", "UNPAID")]);
    assert_eq!(closed["status"], 402, "{closed}");
    assert_eq!(closed["body"]["reason"], "not_paid");
    assert_eq!(closed["checkouts"], json!(["PAID_FEATURE"]));

    // UNPAID, and the user buys in development's checkout: in.
    let bought = paid_fetch(
        &server,
        "2003",
        &[("DEVELOPMENT", "UNPAID"), ("IN_CHECKOUT", "buy")],
    );
    assert_eq!(bought["status"], 200, "{bought}");
    assert_eq!(bought["checkouts"], json!(["PAID_FEATURE"]));
    assert_eq!(bought["tokensMinted"], 2);

    // ai_endpoint on Figma (FIGMA_TOKEN set; here the mock plays Figma):
    // not in development mode, so it refuses the status, asking Figma
    // nothing, and the helper opens no checkout.
    let figma = figma_paywall::mock::MockFigma::start_on_own_thread().unwrap();
    let on_figma = ai_endpoint_on(&figma);
    let refused = paid_fetch_at(
        &on_figma.1,
        &figma.url(),
        "2003",
        &[("DEVELOPMENT", "PAID")],
    );
    assert_eq!(refused["status"], 400, "{refused}");
    assert_eq!(refused["body"]["reason"], "development_only");
    let message = refused["body"]["message"].as_str().unwrap();
    assert!(message.contains("development mode only"), "{message}");
    assert_eq!(refused["checkouts"], json!([]));
    assert_eq!(figma.payment_requests(), 0);
}

/// `ai_endpoint` asking `figma` as the real Figma (`FIGMA_TOKEN`,
/// `FIGMA_API_URL`), once it listens: the process and its base URL.
fn ai_endpoint_on(figma: &figma_paywall::mock::MockFigma) -> (Killed, String) {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = Killed(
        Command::new(common::example::example("ai_endpoint"))
            .env("FIGMA_TOKEN", figma_paywall::mock::MOCK_ACCESS_TOKEN)
            .env("FIGMA_API_URL", figma.url())
            .env("FIGMA_PLUGIN_ID", PLUGIN_ID)
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .env_remove("FIGMA_PAYWALL_CREDITS")
            .env_remove("FIGMA_PAYWALL_STORE")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("ai_endpoint listening on ")
                .map(str::to_owned)
        })
        .expect("ai_endpoint says where it listens");
    std::thread::spawn(move || lines.for_each(drop));
    (child, base)
}

#[test]
fn the_helper_reads_free_tries_and_credits_then_opens_checkout_against_ai_endpoint() {
    let server = AiEndpoint::start(&[("FIGMA_PAYWALL_CREDITS", "paid=100/day,unpaid=2/day")]);

    // A non-buyer's two free tries, then the 402 (no checkout asked).
    for left in [1, 0] {
        let free = paid_fetch(&server, "2003", &[("CHECKOUT", "false")]);
        assert_eq!(free["status"], 200, "{free}");
        assert_eq!(free["body"]["payment_status"]["type"], "UNPAID");
        assert_eq!(free["credits"]["remaining"], left, "{free}");
        assert_eq!(free["credits"]["limit"], 2);
        assert_eq!(free["credits"]["window"], "day");
        assert!(free["credits"]["resetsInSeconds"].as_u64().unwrap() <= 86_400);
    }
    let out = paid_fetch(&server, "2003", &[("CHECKOUT", "false")]);
    assert_eq!(out["status"], 402, "{out}");
    assert_eq!(out["body"]["reason"], "not_paid");
    assert_eq!(out["credits"]["remaining"], 0);

    // With checkout, the tries spent open it; the user buys and is in, on
    // the buyers' allowance.
    let bought = paid_fetch(&server, "2003", &[("IN_CHECKOUT", "buy")]);
    assert_eq!(bought["status"], 200, "{bought}");
    assert_eq!(bought["checkouts"], json!(["PAID_FEATURE"]));
    assert_eq!(bought["credits"]["remaining"], 99);
    assert_eq!(bought["credits"]["limit"], 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_reads_credits_through_the_gateway_as_its_upstream_charges_them() {
    use axum::response::IntoResponse;
    // Each call really costs 1, whatever the path's cost.
    let upstream = serve(axum::Router::new().fallback(|| async {
        (
            [("x-figma-credits-used", "1")],
            axum::Json(json!({ "result": "generated" })),
        )
            .into_response()
    }))
    .await;
    let (_gateway, base, _, figma) = gateway_with(
        &upstream,
        &[
            "--credits",
            "paid=10/day,unpaid=5/day",
            "--credit-cost",
            "/generate=3",
        ],
    );
    let run = move |user: &'static str, env: &'static [(&'static str, &'static str)]| {
        let (base, figma) = (base.clone(), figma.clone());
        tokio::task::spawn_blocking(move || paid_fetch_at(&base, &figma, user, env))
    };
    // A non-buyer: 3 reserved, 1 charged, twice.
    for left in [4, 3] {
        let free = run("2003", &[("CHECKOUT", "false")]).await.unwrap();
        assert_eq!(free["status"], 200, "{free}");
        assert_eq!(free["credits"]["remaining"], left, "{free}");
        assert_eq!(free["credits"]["limit"], 5);
    }
    let buyer = run("2001", &[("STATUS", "PAID")]).await.unwrap();
    assert_eq!(buyer["status"], 200, "{buyer}");
    assert_eq!(buyer["credits"]["remaining"], 9, "{buyer}");
    assert_eq!(buyer["credits"]["limit"], 10);
}

#[test]
fn the_helper_waits_out_retry_after_from_ai_endpoint() {
    // A budget of 4 a minute, one at once: a slot every 15 s, and a new
    // caller's about 19 s after the last (it leaves refreshes a quarter of
    // a slot). A second new token within 15 s waits longer than a caller
    // may (2 s), however slow node is to start on a busy machine: refused
    // for now (503 rate_limited), with Retry-After.
    let server = AiEndpoint::start(&[("FIGMA_RATE_LIMIT", "4"), ("FIGMA_RATE_BURST", "1")]);
    let first = paid_fetch(&server, "2001", &[("STATUS", "PAID")]);
    assert_eq!(first["status"], 200, "{first}");

    // Not worth waiting for: the refusal as it came, Retry-After readable.
    let busy = paid_fetch(&server, "2002", &[("STATUS", "PAID"), ("MAX_WAIT_MS", "0")]);
    let status = busy["status"].as_u64().unwrap();
    assert!(status == 429 || status == 503, "{busy}");
    let reason = busy["body"]["reason"].as_str().unwrap();
    assert!(
        ["too_many_lookups", "rate_limited"].contains(&reason),
        "{busy}"
    );
    let retry_after: u64 = busy["retryAfter"].as_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{busy}");

    // Worth waiting for: one wait, then in.
    let waited = paid_fetch(
        &server,
        "2002",
        &[("STATUS", "PAID"), ("MAX_WAIT_MS", "25000")],
    );
    assert_eq!(waited["status"], 200, "{waited}");
    assert_eq!(waited["body"]["user_id"], "2002");
    assert_eq!(waited["checkouts"], json!([]));
}

/// A gateway `--demo --cors '*' --upstream` an upstream that answers
/// every buyer: its base URL and demo tokens.
fn gateway_with_cors(upstream: &str) -> (Killed, String, Vec<String>) {
    let (child, base, tokens, _) = gateway_with(upstream, &[]);
    (child, base, tokens)
}

/// The gateway with `--demo --cors '*' --upstream upstream` and `args`: the
/// process, its base URL, the demo's tokens and the mock Figma's URL.
fn gateway_with(upstream: &str, args: &[&str]) -> (Killed, String, Vec<String>, String) {
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_figma-paywall"))
            .args([
                "--demo",
                "--listen",
                "127.0.0.1:0",
                "--cors",
                "*",
                "--upstream",
                upstream,
            ])
            .args(args)
            .env_remove("FIGMA_TOKEN")
            .env_remove("REDIS_URL")
            .env_remove("FIGMA_PAYWALL_STORE")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the gateway starts"),
    );
    let demo = Demo::read(&mut child.0);
    let base = demo
        .after("figma-paywall listening on ")
        .expect("the gateway says where it listens");
    let figma = demo
        .after("mock Figma on ")
        .expect("the gateway names its mock Figma");
    (child, base, demo.tokens, figma)
}

/// Serves `app` on a free loopback port: its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// What a plugin's UI does: from a sandboxed iframe (origin `null`),
/// `fetch(url, {method: 'POST', …})` with the token and a JSON body. The
/// iframe posts back its origin and what it could read.
const FROM_NULL_ORIGIN: &str = r#"
const [url, token, done] = arguments;
const frame = document.createElement('iframe');
frame.sandbox = 'allow-scripts';
frame.srcdoc = `<script>
  const headers = {'Content-Type': 'application/json'};
  const token = ${JSON.stringify(token)};
  if (token) headers['X-Figma-Payment-Token'] = token;
  fetch(${JSON.stringify(url)}, {method: 'POST', headers, body: JSON.stringify({prompt: 'a cat'})})
    .then(async (r) => parent.postMessage({origin: self.origin, status: r.status, body: await r.text()}, '*'))
    .catch((e) => parent.postMessage({origin: self.origin, error: String(e)}, '*'));
<\/script>`;
window.addEventListener('message', (event) => { frame.remove(); done(event.data); }, {once: true});
document.body.appendChild(frame);
"#;

/// The status curl gets for the same call.
async fn status_without_a_browser(url: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(r#"{"prompt": "a cat"}"#);
    if let Some(token) = token {
        req = req.header("x-figma-payment-token", token);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_origin_null_gets_what_curl_gets_from_ai_endpoint_and_the_gateway() {
    common::chromium::require("plugin browser test");
    let ai = AiEndpoint::start(&[]);
    let upstream = serve(axum::Router::new().fallback(|| async { "generated upstream" })).await;
    let (_gateway, gateway, gateway_tokens) = gateway_with_cors(&upstream);
    let host = serve(axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html("<!doctype html><title>plugin host</title><body></body>")
        }),
    ))
    .await;

    let cases = [
        (format!("{}/generate", ai.base), ai.tokens.clone()),
        (format!("{gateway}/generate"), gateway_tokens),
    ];
    in_browser("plugin-null-origin", |client| async move {
        client.goto(&format!("{host}/")).await.unwrap();
        for (url, tokens) in &cases {
            let [buyer, _, unpaid] = <[String; 3]>::try_from(tokens.clone()).unwrap();
            for (token, status, reason) in [
                (Some(buyer.as_str()), 200, None),
                (Some(unpaid.as_str()), 402, Some("not_paid")),
                (None, 401, Some("no_identity")),
            ] {
                let got = client
                    .execute_async(FROM_NULL_ORIGIN, vec![json!(url), json!(token)])
                    .await
                    .unwrap();
                assert_eq!(got["origin"], "null", "{got}");
                assert_eq!(got["status"], status, "{url} {got}");
                assert_eq!(status_without_a_browser(url, token).await, status);
                if let Some(reason) = reason {
                    let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
                    assert_eq!(body["reason"], reason, "{url}");
                }
            }
        }
    })
    .await;
}

/// The pages whose TypeScript and JavaScript blocks are checked here.
const PAGES: [&str; 4] = [
    "README.md",
    "docs/plugin.md",
    "docs/gateway.md",
    "plugin/README.md",
];

#[test]
fn the_typescript_and_javascript_the_docs_show_type_check_against_the_package() {
    package_tested();
    let dir = plugin_dir().join("build-docs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Main-thread code (Figma's typings) and UI code (the DOM) apart.
    let (mut main, mut ui) = (Vec::new(), Vec::new());
    for page in PAGES {
        for block in common::fenced::blocks(page) {
            let name = format!("{}-{}", page.replace(['/', '.'], "_"), block.line);
            match block.info.as_str() {
                // A plugin's code: the imports first, the rest in a
                // function, with the package's own sources in place of the
                // published package.
                "ts" => {
                    let (imports, body): (Vec<&str>, Vec<&str>) =
                        block.text.lines().partition(|l| l.starts_with("import "));
                    let source = format!(
                        "{}\ndeclare const prompt: string\nexport async function example(): Promise<void> {{\n{}\n}}\n",
                        imports
                            .join("\n")
                            .replace("'figma-paywall-plugin/ui'", "'../src/ui'")
                            .replace("'figma-paywall-plugin'", "'../src/index'"),
                        body.join("\n")
                    );
                    std::fs::write(dir.join(format!("{name}.ts")), source).unwrap();
                    if block.text.contains("'figma-paywall-plugin/ui'") {
                        ui.push(format!("{name}.ts"));
                    } else {
                        main.push(format!("{name}.ts"));
                    }
                }
                // A backend's code (a Worker's handler): node parses it.
                "js" => {
                    let file = dir.join(format!("{name}.mjs"));
                    let source = format!(
                        "export async function handler(request) {{\n{}}}\n",
                        block.text
                    );
                    std::fs::write(&file, source).unwrap();
                    run_in_plugin("node", &["--check", file.to_str().unwrap()], &[]);
                }
                _ => {}
            }
        }
    }
    assert!(
        main.len() >= 3 && !ui.is_empty(),
        "the READMEs and docs/plugin.md show paidFetch, in the main thread and the UI"
    );
    // The main thread has no DOM: the package's stand-in for the one DOM
    // type its Structured Fields parser names, as its own tsconfig.json.
    main.push("../src/buffer-source.d.ts".to_owned());
    for (config, files, lib, types) in [
        (
            "tsconfig.json",
            main,
            vec!["ES2017"],
            vec!["@figma/plugin-typings"],
        ),
        ("tsconfig.ui.json", ui, vec!["ES2017", "DOM"], vec![]),
    ] {
        let tsconfig = json!({
            "extends": "../tsconfig.base.json",
            "compilerOptions": {
                "noEmit": true,
                "declaration": false,
                // A snippet may leave what it makes unused.
                "noUnusedLocals": false,
                "lib": lib,
                "types": types
            },
            "files": files,
        });
        std::fs::write(dir.join(config), tsconfig.to_string()).unwrap();
        let project = format!("build-docs/{config}");
        run_in_plugin(
            "node",
            &["node_modules/typescript/bin/tsc", "-p", &project],
            &[],
        );
    }
}
