//! What the attack review of the reverse proxy found, over loopback with
//! the binary: a client cannot speak for the gateway (identity and
//! forwarding headers, in any spelling a server behind may fold), a path
//! cannot climb out of the upstream's prefix, gated answers stay out of
//! shared caches, and a hung upstream costs the caller `--upstream-timeout`.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use reqwest::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// An upstream that says what it received: every header, and the path; and
/// `/slow`, which answers after 30 s.
async fn telling_upstream() -> String {
    use axum::{extract::Request, routing::get, Json, Router};
    let app = Router::new()
        .route(
            "/app/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route(
            "/app/upload",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/app/stall",
            get(|| async {
                // The head and a first chunk, then nothing, ever.
                use futures_util::StreamExt;
                let first = futures_util::stream::once(async { Ok::<_, std::io::Error>("start") });
                axum::body::Body::from_stream(first.chain(futures_util::stream::pending()))
            }),
        )
        .fallback(|req: Request| async move {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
                .collect();
            Json(serde_json::json!({
                "path": req.uri().path(),
                "query": req.uri().query(),
                "headers": headers,
            }))
        });
    serve(app).await
}

/// What the upstream heard of a GET `path` with `headers`, and the answer's
/// headers.
async fn heard(base: &str, path: &str, headers: &[(&str, &str)]) -> (serde_json::Value, HeaderMap) {
    let mut request = Client::new().get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    (response.json().await.unwrap(), headers)
}

/// A buyer's upload of `length` bytes to `gateway`'s `/upload`, its head
/// sent on a connection of its own: the body is the caller's to write.
async fn upload_begun(gateway: &super::Gateway, length: usize) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(gateway.base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nX-Figma-Payment-Token: {}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        gateway.tokens[0]
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The status line of a request written as is (no client tidies its path).
async fn raw_status(base: &str, path: &str, token: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-Figma-Payment-Token: {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_client_cannot_speak_for_the_gateway_nor_climb_out_of_the_upstream() {
    let upstream = telling_upstream().await;
    let app = format!("{upstream}/app");
    // The client here is on loopback: trust only another network's proxies.
    let gateway = demo(&["--upstream", &app, "--trusted-proxies", "10.0.0.0/8"]);
    let buyer = gateway.tokens[0].clone();
    let (seen, answer) = heard(
        &gateway.base,
        "/docs",
        &[
            ("X-Figma-Payment-Token", &buyer),
            ("X_Figma_User_Id", "90003"),
            ("X_Figma_Payment_Status", "PAID"),
            ("X-Figma-Resource-Id", "1"),
            ("X-Figma-Answer-Age", "0"),
            ("Connection", "host, x-custom"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=198.51.100.9;host=evil.example"),
            ("X-Real-IP", "198.51.100.9"),
            ("X_Forwarded_For", "198.51.100.9"),
            ("X-Forwarded-Port", "8443"),
            ("X-Forwarded-Prefix", "/admin"),
            ("X-Original-URL", "/admin/secret"),
            ("Fastly-Client-IP", "198.51.100.9"),
            ("X-Host", "evil.example"),
        ],
    )
    .await;
    assert_eq!(seen["path"], "/app/docs");
    let headers = seen["headers"].as_object().unwrap();
    let folded: Vec<&str> = headers
        .keys()
        .map(String::as_str)
        .filter(|n| n.contains('_'))
        .collect();
    assert!(
        folded.is_empty(),
        "the upstream heard the client's {folded:?}"
    );
    assert_eq!(headers["x-figma-user-id"], "2001");
    assert_eq!(headers["x-figma-payment-status"], "PAID");
    assert_eq!(headers["x-figma-resource-id"], "1122334455");
    assert!(!headers.contains_key("x-figma-answer-age"));
    assert!(!headers.contains_key("forwarded"));
    assert!(!headers.contains_key("x-real-ip"));
    assert!(!headers.contains_key("x-forwarded-port"));
    assert!(!headers.contains_key("x-forwarded-prefix"));
    assert!(!headers.contains_key("x-original-url"));
    assert!(!headers.contains_key("fastly-client-ip"));
    assert!(!headers.contains_key("x-host"));
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    let base_host = gateway.base.trim_start_matches("http://");
    assert_eq!(headers["x-forwarded-host"], base_host);
    // A buyer's answer is theirs alone.
    assert_eq!(answer["cache-control"], "private");
    let vary: Vec<&str> = answer
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        vary.contains(&"x-figma-payment-token") && vary.contains(&"cookie"),
        "{vary:?}"
    );

    // Paths that climb, however spelt, never reach the upstream.
    for path in [
        "/../admin/secret",
        "/docs/%2e%2e/%2E%2E/admin",
        "/docs/..;/admin",
        "/docs/%252e%252e/admin",
        "/a/./b",
        "/docs/..%2fadmin",
        "/docs%5C..%5Cadmin",
    ] {
        let status = raw_status(&gateway.base, path, &buyer).await;
        assert!(status.contains(" 400 "), "{path}: {status}");
    }
    assert!(raw_status(&gateway.base, "/docs/a..b", &buyer)
        .await
        .contains(" 200 "));

    // A hung upstream: 504 after --upstream-timeout.
    let impatient = demo(&["--upstream", &app, "--upstream-timeout", "1s"]);
    let buyer_asks = |path: &str| {
        Client::new()
            .get(format!("{}{path}", impatient.base))
            .header("X-Figma-Payment-Token", &impatient.tokens[0])
            .send()
    };
    let started = Instant::now();
    let response = buyer_asks("/slow").await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(20));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "upstream_timeout");
    assert_eq!(body["error"], true);
    // An upstream that stalls within its body: cut off after as long.
    let response = buyer_asks("/stall").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(20), response.bytes())
        .await
        .expect("the stalled body is cut off");
    assert!(body.is_err(), "{body:?}");
    // A client that stalls within its upload: 408, the client's doing.
    let mut stream = upload_begun(&impatient, 10).await;
    stream.write_all(b"abc").await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut answer))
        .await
        .expect("an answer to the stalled upload")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 408");
    // One that keeps moving may take longer than that: the upstream's
    // deadline starts once the body is sent.
    let mut stream = upload_begun(&impatient, 6).await;
    for byte in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stream.write_all(&[*byte]).await.unwrap();
    }
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut answer))
        .await
        .expect("an answer to the slow upload")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n6"), "{answer}");
}

/// The whole answer to `request`, written as is on a connection of its own.
async fn raw(base: &str, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    answer
}

#[tokio::test]
async fn a_request_with_two_hosts_is_refused() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let gateway = demo(&["--upstream", &upstream(calls.clone()).await]);
    let buyer = &gateway.tokens[0];
    // Which one the upstream, a cache or a log would take is anyone's
    // guess (RFC 9112 3.2: 400).
    for path in ["/docs", "/_figma_paywall/auth"] {
        let answer = raw(
            &gateway.base,
            &format!("GET {path} HTTP/1.1\r\nHost: docs.example.com\r\nHost: evil.example\r\nX-Figma-Payment-Token: {buyer}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{path}: {answer}");
        assert!(answer.contains(r#""reason":"invalid_host""#), "{answer}");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    // One Host is served.
    let answer = raw(
        &gateway.base,
        &format!("GET /docs HTTP/1.1\r\nHost: docs.example.com\r\nX-Figma-Payment-Token: {buyer}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// An upstream whose answers ask shared caches to keep them: the
/// `Cache-Control` in the query's `cc`, and the CDNs' own headers.
async fn caching_upstream() -> String {
    use axum::{extract::Query, Router};
    let app = Router::new().fallback(
        |Query(query): Query<std::collections::HashMap<String, String>>| async move {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in [
                ("cdn-cache-control", "public, max-age=86400"),
                ("cloudflare-cdn-cache-control", "max-age=86400"),
                ("surrogate-control", "max-age=86400"),
                ("surrogate-key", "user-2001 invoices"),
                ("edge-control", "cache-maxage=1d"),
                ("x-accel-expires", "86400"),
            ] {
                headers.insert(name, value.parse().unwrap());
            }
            if let Some(cc) = query.get("cc") {
                headers.insert("cache-control", cc.parse().unwrap());
            }
            (headers, "the buyer's page")
        },
    );
    serve(app).await
}

#[tokio::test]
async fn gated_answers_stay_out_of_shared_caches_whatever_the_upstream_says() {
    let gateway = demo(&["--upstream", &caching_upstream().await]);
    let client = Client::new();
    for (upstream_says, sent) in [
        (None, "private"),
        (Some("public, max-age=600"), "private, max-age=600"),
        (Some("s-maxage=60, max-age=5"), "private, max-age=5"),
        // A qualified private lets a shared cache keep the rest.
        (
            Some(r#"private="set-cookie", max-age=60"#),
            "private, max-age=60",
        ),
        (
            Some(r#"public, private="set-cookie, x-user", s-maxage=600"#),
            "private",
        ),
        (Some("no-store"), "no-store"),
        (Some("private, max-age=60"), "private, max-age=60"),
    ] {
        let mut request = client
            .get(format!("{}/page", gateway.base))
            .header("X-Figma-Payment-Token", &gateway.tokens[0]);
        if let Some(cc) = upstream_says {
            request = request.query(&[("cc", cc)]);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let headers = answer.headers();
        assert_eq!(headers["cache-control"], sent, "{upstream_says:?}");
        for name in [
            "cdn-cache-control",
            "cloudflare-cdn-cache-control",
            "surrogate-control",
            "surrogate-key",
            "edge-control",
            "x-accel-expires",
        ] {
            assert!(!headers.contains_key(name), "{name} on a gated answer");
        }
    }
}

/// A token in the query lets the caller in, and never reaches the
/// upstream, whose access logs would keep it, however its name is
/// written; the rest of the query goes on as sent.
#[tokio::test]
async fn a_token_in_the_query_never_reaches_the_upstream() {
    let gateway = demo(&["--upstream", &format!("{}/app", telling_upstream().await)]);
    let token = &gateway.tokens[0];
    let client = Client::new();
    for (query, heard) in [
        (format!("plugin_payment_token={token}"), None),
        (
            format!("a=1&plugin_payment_token={token}&b=%20x"),
            Some("a=1&b=%20x"),
        ),
        (
            format!("plugin%5Fpayment%5Ftoken={token}&page=2"),
            Some("page=2"),
        ),
    ] {
        let answer = client
            .get(format!("{}/docs?{query}", gateway.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{query}");
        let told: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(told["query"].as_str(), heard, "{query}");
        assert!(!told.to_string().contains(token.as_str()), "{told}");
    }
}

#[tokio::test]
async fn only_the_proxies_it_trusts_say_who_the_client_is() {
    let upstream = telling_upstream().await;
    let forwarded = [
        ("X-Forwarded-For", "198.51.100.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "docs.example.com"),
        ("X-Forwarded-Port", "443"),
    ];
    // Loopback is trusted by default: a proxy on this host.
    let gateway = demo(&["--upstream", &upstream]);
    let token = gateway.tokens[0].clone();
    let with_token = [&[("X-Figma-Payment-Token", token.as_str())][..], &forwarded].concat();
    let (seen, _) = heard(&gateway.base, "/", &with_token).await;
    assert_eq!(
        seen["headers"]["x-forwarded-for"],
        "198.51.100.9, 127.0.0.1"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    assert_eq!(seen["headers"]["x-forwarded-host"], "docs.example.com");
    assert_eq!(seen["headers"]["x-forwarded-port"], "443");
    // Trusting only the load balancer's network, a caller on loopback is
    // the client itself.
    let gateway = demo(&["--upstream", &upstream, "--trusted-proxies", "10.0.0.0/8"]);
    let token = gateway.tokens[0].clone();
    let with_token = [&[("X-Figma-Payment-Token", token.as_str())][..], &forwarded].concat();
    let (seen, _) = heard(&gateway.base, "/", &with_token).await;
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_ne!(seen["headers"]["x-forwarded-host"], "docs.example.com");
    assert!(seen["headers"].get("x-forwarded-port").is_none());
    // A network that is not one stops the gateway at start.
    let output = command(&["--demo", "--trusted-proxies", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--trusted-proxies"));
}

/// Whether the server closes `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {} // an answer: read on
        }
    }
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_and_cannot_take_every_place() {
    let gateway = demo(&["--header-timeout", "1s", "--max-connections", "4"]);
    let addr = gateway.base.trim_start_matches("http://").to_owned();
    // Headers trickling in, never finished: closed at the deadline.
    let mut trickle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(b"GET /_figma_paywall/health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert!(
        closed_within(&mut trickle, Duration::from_secs(15)).await,
        "a request trickling its headers was kept open"
    );
    // A keep-alive connection left idle after its answer: closed too.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /_figma_paywall/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(15)).await,
        "an idle keep-alive connection was kept open"
    );
    // Every place taken by connections that send nothing: a buyer's request
    // still gets its answer once they are closed.
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let answer = Client::new()
        .get(format!("{}/_figma_paywall/auth", gateway.base))
        .header("X-Figma-Payment-Token", &gateway.tokens[0])
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("answered once the silent connections were closed");
    assert_eq!(answer.status(), StatusCode::OK);
    // The silent ones were closed.
    for stream in &mut silent[..4] {
        assert!(closed_within(stream, Duration::from_secs(15)).await);
    }
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_place() {
    // Loopback is no proxy here: each address is a client of its own.
    let gateway = demo(&[
        "--max-connections",
        "4",
        "--max-connections-per-client",
        "2",
        "--header-timeout",
        "30s",
        "--trusted-proxies",
        "10.0.0.0/8",
    ]);
    let addr: std::net::SocketAddr = gateway.base.trim_start_matches("http://").parse().unwrap();
    // 127.0.0.2 opens more silent connections than the whole cap.
    let mut silent = Vec::new();
    for _ in 0..6 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        silent.push(socket.connect(addr).await.unwrap());
    }
    // Another address is served at once, not once the header deadline
    // (30 s) closes the silent ones.
    let other = Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let answer = other
        .get(format!("{}/_figma_paywall/auth", gateway.base))
        .header("X-Figma-Payment-Token", &gateway.tokens[0])
        .send()
        .await
        .expect("served beside 127.0.0.2's silent connections");
    assert_eq!(answer.status(), StatusCode::OK);
    // 127.0.0.2 keeps its two; the others were closed at once.
    let mut closed = 0;
    for stream in &mut silent {
        closed += usize::from(closed_within(stream, Duration::from_secs(3)).await);
    }
    assert_eq!(closed, 4);
}

#[tokio::test]
async fn the_connection_cap_counts_every_worker_s_connections() {
    let gateway = demo(&[
        "--header-timeout",
        "3s",
        "--max-connections",
        "2",
        "--workers",
        "3",
    ]);
    let addr = gateway.base.trim_start_matches("http://").to_owned();
    // Six keep-alive connections, each with a request: whichever workers
    // the kernel hands them to, two are served (and then held, idle) and
    // the others wait for a place.
    let mut answers = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        answers.spawn(async move {
            stream
                .write_all(b"GET /_figma_paywall/health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await;
            assert!(
                matches!(read, Ok(Ok(n)) if n > 0),
                "never answered: {read:?}"
            );
            // Kept open (so holding its place) until every one is answered.
            (started.elapsed(), stream)
        });
    }
    let (mut waited, _open): (Vec<Duration>, Vec<_>) = answers.join_all().await.into_iter().unzip();
    waited.sort();
    // At once: no more than the cap, across every worker.
    let at_once = waited
        .iter()
        .filter(|w| **w < Duration::from_secs(1))
        .count();
    assert!(
        (1..=2).contains(&at_once),
        "{at_once} connections served at once past --max-connections 2: {waited:?}"
    );
    // The rest once the first were closed idle: every one is answered.
    assert_eq!(waited.len(), 6);
}

#[tokio::test]
async fn sigterm_waits_for_requests_in_flight_no_longer_than_the_shutdown_timeout() {
    // An upstream that holds a request for 30 s, and says when it has one.
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let told = arrived.clone();
    let upstream = serve(axum::Router::new().fallback(move || {
        let told = told.clone();
        async move {
            told.notify_one();
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }
    }))
    .await;
    let mut gateway = demo(&[
        "--upstream",
        &upstream,
        "--shutdown-timeout",
        "1s",
        "--header-timeout",
        "60s",
    ]);
    let buyer = gateway.tokens[0].clone();
    // A request half sent, which its header deadline alone would keep a
    // minute.
    let mut half = tokio::net::TcpStream::connect(gateway.base.trim_start_matches("http://"))
        .await
        .unwrap();
    half.write_all(b"GET /_figma_paywall/health HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let slow = tokio::spawn(
        Client::new()
            .get(format!("{}/slow", gateway.base))
            .header("X-Figma-Payment-Token", buyer)
            .timeout(Duration::from_secs(60))
            .send(),
    );
    tokio::time::timeout(Duration::from_secs(20), arrived.notified())
        .await
        .expect("the request reached the upstream");
    super::sigterm(&gateway.child);
    let exit = super::exit_within(&mut gateway.child, Duration::from_secs(20)).await;
    assert!(exit
        .expect("the gateway exits after its shutdown timeout, not the upstream's 30 s nor the half-sent request's 60 s")
        .success());
    // The held request got no answer from a gateway that is gone.
    assert!(slow.await.unwrap().is_err());
}

/// An upstream that echoes the messages of a WebSocket on any path.
pub(super) async fn echo_upstream() -> String {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    let app = axum::Router::new().fallback(|ws: WebSocketUpgrade| async move {
        ws.on_upgrade(|mut socket| async move {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) || socket.send(message).await.is_err() {
                    break;
                }
            }
        })
    });
    serve(app).await
}

pub(super) type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to `base`'s `/ws` with the plugin payment `token`, or the
/// gateway's refusal.
pub(super) async fn open_websocket(base: &str, token: &str) -> Result<WebSocket, StatusCode> {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Error};
    let mut request = format!("{}/ws", base.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-figma-payment-token", token.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(Error::Http(refusal)) => Err(refusal.status()),
        Err(e) => panic!("the WebSocket failed: {e}"),
    }
}

/// Sends `text` on `socket` and reads the echo.
pub(super) async fn echoed(socket: &mut WebSocket, text: &str) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    socket.send(Message::text(text)).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("the upstream's echo")
        .expect("an open WebSocket")
        .unwrap();
    echo.into_text().unwrap().to_string()
}

#[tokio::test]
async fn a_buyer_s_websocket_goes_through_and_a_non_buyer_s_does_not() {
    use futures_util::StreamExt;
    let upstream = echo_upstream().await;
    let mut gateway = demo(&[
        "--upstream",
        &upstream,
        "--upstream-timeout",
        "5s",
        "--max-connections",
        "1",
        "--shutdown-timeout",
        "60s",
    ]);
    let health = format!("{}/_figma_paywall/health", gateway.base);
    let mut socket = open_websocket(&gateway.base, &gateway.tokens[0])
        .await
        .expect("a buyer's WebSocket opens");
    assert_eq!(echoed(&mut socket, "hello").await, "hello");
    // Talk keeps it open past --upstream-timeout.
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(echoed(&mut socket, &i.to_string()).await, i.to_string());
    }
    // It holds its connection's place: with one place, nobody else is served.
    let waiting = Client::new()
        .get(&health)
        .timeout(Duration::from_millis(1500))
        .send()
        .await;
    assert!(waiting.is_err(), "served beside the WebSocket: {waiting:?}");
    // Silent both ways past --upstream-timeout: closed, its place freed.
    let end = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(message)) if message.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "a silent WebSocket stayed open");
    let served = Client::new()
        .get(&health)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    // A non-buyer is refused before anything switches.
    let refused = open_websocket(&gateway.base, &gateway.tokens[2]).await;
    assert_eq!(refused.err(), Some(StatusCode::PAYMENT_REQUIRED));
    // SIGTERM closes an open WebSocket: it does not hold the shutdown.
    let mut socket = open_websocket(&gateway.base, &gateway.tokens[0])
        .await
        .expect("a buyer's WebSocket opens");
    assert_eq!(echoed(&mut socket, "still here").await, "still here");
    super::sigterm(&gateway.child);
    let exit = super::exit_within(&mut gateway.child, Duration::from_secs(20)).await;
    assert!(exit
        .expect("the gateway exits at once, not after --shutdown-timeout's 60 s")
        .success());
}
