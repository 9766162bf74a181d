//! The gateway behind the real nginx (`auth_request`) and Caddy
//! (`forward_auth`), configured as README's "Gateway" section says, each on
//! free loopback ports in a temporary folder, in front of a small upstream.
//! `.ci/run` installs Debian's `nginx` and `caddy`; without them these tests
//! say they were skipped.

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{atomic::AtomicUsize, Arc},
    time::{Duration, Instant},
};

use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::{
    demo, get,
    scratch::{free_port, TempDir},
    upstream,
};

/// A proxy process, stopped when dropped, and its folder.
struct Proxy {
    child: Child,
    base: String,
    _dir: TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn installed(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!(
            "skipped: {program} is not installed (Debian: apt-get install {program}; .ci/run does)"
        );
    }
    found
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

fn nginx(gateway: &str, upstream: &str) -> Proxy {
    let scratch = TempDir::new("nginx");
    let dir = scratch.path().to_owned();
    let port = free_port();
    let d = dir.display();
    let gateway = gateway.trim_start_matches("http://");
    let upstream = upstream.trim_start_matches("http://");
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
        location / {{
            auth_request /_figma_paywall/auth;
            auth_request_set $figma_user $upstream_http_x_figma_user_id;
            auth_request_set $figma_status $upstream_http_x_figma_payment_status;
            auth_request_set $figma_resource $upstream_http_x_figma_resource_id;
            auth_request_set $figma_type $upstream_http_x_figma_resource_type;
            proxy_set_header X-Figma-User-Id $figma_user;
            proxy_set_header X-Figma-Payment-Status $figma_status;
            proxy_set_header X-Figma-Resource-Id $figma_resource;
            proxy_set_header X-Figma-Resource-Type $figma_type;
            proxy_set_header X-Figma-Answer-Age "";
            proxy_pass http://{upstream};
        }}
        location = /_figma_paywall/auth {{
            internal;
            proxy_pass http://{gateway};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
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

fn caddy(gateway: &str, upstream: &str) -> Proxy {
    let scratch = TempDir::new("caddy");
    let dir = scratch.path().to_owned();
    let port = free_port();
    let gateway = gateway.trim_start_matches("http://");
    let upstream = upstream.trim_start_matches("http://");
    let caddyfile = format!(
        r#"{{
    admin off
    auto_https off
    log {{
        output file {dir}/caddy.log
    }}
}}
http://127.0.0.1:{port} {{
    route {{
        request_header -X-Figma-User-Id
        request_header -X-Figma-Payment-Status
        request_header -X-Figma-Resource-Id
        request_header -X-Figma-Resource-Type
        request_header -X-Figma-Answer-Age
        forward_auth {gateway} {{
            uri /_figma_paywall/auth
            copy_headers X-Figma-User-Id X-Figma-Payment-Status X-Figma-Resource-Id X-Figma-Resource-Type
        }}
        reverse_proxy {upstream}
    }}
}}
"#,
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

/// What every proxy must do with the gateway beside it; `deny` is what a
/// non-buyer gets through that proxy.
async fn check_proxy(proxy: &Proxy, tokens: &[String], calls: &AtomicUsize, deny: StatusCode) {
    use std::sync::atomic::Ordering::SeqCst;
    let (buyer, unpaid) = (&tokens[0], &tokens[2]);
    let page = format!("{}/docs/page", proxy.base);

    // A buyer passes, and the upstream hears who they are from the gateway,
    // never from the client.
    let (status, _, body) = get(
        &page,
        &[
            ("X-Figma-Payment-Token", buyer),
            ("X-Figma-User-Id", "9999"),
            ("X-Figma-Payment-Status", "TRIAL"),
            ("X-Figma-Resource-Id", "1"),
            ("X-Figma-Resource-Type", "WIDGET"),
            ("X-Figma-Answer-Age", "0"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["user"], "2001");
    assert_eq!(seen["status"], "PAID");
    assert_eq!(seen["resource"], "1122334455");
    assert_eq!(seen["resource_type"], "PLUGIN");
    assert_eq!(seen["answer_age"], Value::Null);

    // The token in the page's query passes too (the original URI).
    let (status, _, body) = get(&format!("{page}?plugin_payment_token={buyer}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["user"],
        "2001"
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
    let passed = calls.load(SeqCst);
    assert_eq!(passed, 3);

    // A non-buyer, and a spoofed identity without a token, never reach it.
    let (status, _, _) = get(&page, &[("X-Figma-Payment-Token", unpaid)]).await;
    assert_eq!(status, deny);
    let (status, _, _) = get(&page, &[("X-Figma-User-Id", "2001")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(SeqCst), passed);
}

#[tokio::test]
async fn behind_nginx_auth_request() {
    if !installed("nginx") {
        return;
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = upstream(calls.clone()).await;
    // nginx passes only 401 and 403 on.
    let gateway = demo(&["--deny-status", "403"]);
    let proxy = nginx(&gateway.base, &upstream);
    check_proxy(&proxy, &gateway.tokens, &calls, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn behind_caddy_forward_auth() {
    if !installed("caddy") {
        return;
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = upstream(calls.clone()).await;
    let gateway = demo(&[]);
    let proxy = caddy(&gateway.base, &upstream);
    check_proxy(
        &proxy,
        &gateway.tokens,
        &calls,
        StatusCode::PAYMENT_REQUIRED,
    )
    .await;
    // Caddy hands the gateway's refusal to the client: Figma's envelope.
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
