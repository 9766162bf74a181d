//! `--cors`: the gateway answers browsers on other origins, a plugin's UI
//! (origin `null`) with `*`, a list of sites by name.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc, Mutex,
};

use reqwest::{Client, Method, Response, StatusCode};

use crate::{demo, serve};

/// An upstream that counts its calls and sets its own CORS header, which
/// `--cors` must replace, not repeat.
async fn upstream(calls: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().fallback(move |method: axum::http::Method| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            (
                [("access-control-allow-origin", "https://upstream.example")],
                format!("upstream saw {method}"),
            )
        }
    });
    serve(app).await
}

async fn send(method: Method, url: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = Client::new().request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The one `Access-Control-Allow-Origin` of an answer, if any.
fn allowed_origin(response: &Response) -> Option<String> {
    let values: Vec<_> = response
        .headers()
        .get_all("access-control-allow-origin")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(values.len() <= 1, "{values:?}");
    values.into_iter().next()
}

const PREFLIGHT: [(&str, &str); 3] = [
    ("origin", "null"),
    ("access-control-request-method", "POST"),
    (
        "access-control-request-headers",
        "content-type,x-figma-payment-token",
    ),
];

#[tokio::test]
async fn with_cors_star_a_plugin_reads_every_answer_and_preflights_stay_here() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = demo(&["--upstream", &upstream(calls.clone()).await, "--cors", "*"]);
    let [buyer, _, unpaid] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();
    let url = format!("{}/generate", gateway.base);

    let preflight = send(Method::OPTIONS, &url, &PREFLIGHT).await;
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(allowed_origin(&preflight).as_deref(), Some("*"));
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("x-figma-payment-token"), "{allowed}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a preflight went upstream");

    let null = ("origin", "null");
    let paid = send(
        Method::POST,
        &url,
        &[null, ("x-figma-payment-token", &buyer)],
    )
    .await;
    assert_eq!(paid.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&paid).as_deref(), Some("*"));
    assert_eq!(paid.text().await.unwrap(), "upstream saw POST");

    let refused = send(
        Method::POST,
        &url,
        &[null, ("x-figma-payment-token", &unpaid)],
    )
    .await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(allowed_origin(&refused).as_deref(), Some("*"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["reason"], "not_paid");

    let nobody = send(Method::POST, &url, &[null]).await;
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allowed_origin(&nobody).as_deref(), Some("*"));

    // Forward auth's answers too, for a proxy that passes them on.
    let auth = format!("{}/_figma_paywall/auth", gateway.base);
    let passed = send(
        Method::GET,
        &auth,
        &[null, ("x-figma-payment-token", &buyer)],
    )
    .await;
    assert_eq!(passed.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&passed).as_deref(), Some("*"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn with_a_list_of_sites_only_those_are_answered_and_with_credentials() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = demo(&[
        "--upstream",
        &upstream(calls.clone()).await,
        "--cors",
        "https://docs.example.com,https://example.com",
    ]);
    let [buyer, ..] = <[String; 3]>::try_from(gateway.tokens.clone()).unwrap();
    let url = format!("{}/guide", gateway.base);
    let token = ("x-figma-payment-token", buyer.as_str());

    let site = send(
        Method::GET,
        &url,
        &[("origin", "https://docs.example.com"), token],
    )
    .await;
    assert_eq!(site.status(), StatusCode::OK);
    assert_eq!(
        allowed_origin(&site).as_deref(),
        Some("https://docs.example.com")
    );
    assert_eq!(site.headers()["access-control-allow-credentials"], "true");

    for stranger in ["https://evil.example", "null"] {
        let answer = send(Method::GET, &url, &[("origin", stranger), token]).await;
        assert_eq!(allowed_origin(&answer), None, "{stranger}");
    }
}

/// What a method-agnostic upstream heard of each request: its method,
/// headers and body.
type Heard = Arc<Mutex<Vec<(String, axum::http::HeaderMap, usize)>>>;

/// An upstream whose one handler serves any method, as Go's `HandleFunc`,
/// a Django function view or an axum `any(...)` do: it notes what it
/// heard, answers its paid content with its own CORS headers, and switches
/// protocols (101) for whoever asks to upgrade.
async fn method_agnostic_upstream(heard: Heard) -> String {
    use axum::{
        extract::Request,
        http::{header, StatusCode},
        response::IntoResponse,
    };
    let app = axum::Router::new().fallback(move |req: Request| {
        let heard = heard.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            heard.lock().unwrap().push((
                parts.method.to_string(),
                parts.headers.clone(),
                body.len(),
            ));
            if parts.headers.contains_key(header::UPGRADE) {
                return (
                    StatusCode::SWITCHING_PROTOCOLS,
                    [
                        (header::UPGRADE, "websocket"),
                        (header::CONNECTION, "upgrade"),
                    ],
                )
                    .into_response();
            }
            (
                [
                    ("access-control-allow-origin", "*"),
                    (
                        "access-control-allow-headers",
                        "content-type, x-figma-payment-token",
                    ),
                    ("vary", "Origin"),
                    ("x-paid", "yes"),
                ],
                "the paid content, generated at a cost",
            )
                .into_response()
        }
    });
    serve(app).await
}

#[tokio::test]
async fn without_cors_a_preflight_goes_on_as_a_preflight_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let heard = Heard::default();
    let gateway = demo(&["--upstream", &method_agnostic_upstream(heard.clone()).await]);
    let url = format!("{}/generate", gateway.base);

    // A preflight, with what a browser never sends on one: a body, the
    // payment token, a cookie, credentials.
    let mut request = Client::new()
        .request(Method::OPTIONS, &url)
        .header("cookie", "session=abc")
        .header("x-figma-payment-token", "ppt_not-checked-on-a-preflight")
        .header("authorization", "Bearer secret")
        .header("x-custom", "1")
        .body(r#"{"prompt":"a cat, for free"}"#);
    for (name, value) in PREFLIGHT {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    // The upstream's status and CORS headers come back, nothing else.
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&answer).as_deref(), Some("*"));
    assert_eq!(
        answer.headers()["access-control-allow-headers"],
        "content-type, x-figma-payment-token"
    );
    assert_eq!(answer.headers()["vary"], "Origin");
    assert!(!answer.headers().contains_key("x-paid"));
    assert_eq!(
        answer.text().await.unwrap(),
        "",
        "the paid content came back"
    );
    {
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 1);
        let (method, headers, body) = &heard[0];
        assert_eq!(method, "OPTIONS");
        assert_eq!(*body, 0, "the body reached the upstream");
        assert_eq!(headers["origin"], "null");
        assert_eq!(headers["access-control-request-method"], "POST");
        assert_eq!(
            headers["access-control-request-headers"],
            "content-type,x-figma-payment-token"
        );
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        for name in [
            "cookie",
            "x-figma-payment-token",
            "authorization",
            "x-custom",
            "content-length",
            "transfer-encoding",
        ] {
            assert!(!headers.contains_key(name), "the upstream heard {name}");
        }
    }

    // A preflight that asks to upgrade: no tunnel, and the upstream is
    // never asked to switch.
    let mut stream = tokio::net::TcpStream::connect(gateway.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stream
        .write_all(
            b"OPTIONS /ws HTTP/1.1\r\nHost: x\r\nOrigin: null\r\nAccess-Control-Request-Method: GET\r\n\
              Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    {
        let heard = heard.lock().unwrap();
        assert_eq!(heard.len(), 2);
        assert!(!heard[1].1.contains_key("upgrade"), "{:?}", heard[1].1);
        assert!(!heard[1].1.contains_key("sec-websocket-key"));
    }

    // An OPTIONS request that is no preflight is gated as any other.
    let options = send(Method::OPTIONS, &url, &[]).await;
    assert_eq!(options.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(heard.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_preflight_to_forward_auth_is_refused_in_the_envelope_with_cors_or_without() {
    // A proxy lets a request through on forward auth's 2xx: a preflight
    // (or a request shaped like one, with a body) must get a refusal, one
    // that nginx passes on too (401 or 403), even with a buyer's token,
    // and even with --cors, whose layer would answer it 2xx.
    for args in [&[][..], &["--refusals-as", "403"][..], &["--cors", "*"][..]] {
        let gateway = demo(args);
        let buyer = ("x-figma-payment-token", gateway.tokens[0].as_str());
        for path in ["/_figma_paywall/auth", "/_figma_paywall/auth/generate"] {
            let url = format!("{}{path}", gateway.base);
            let answer = send(Method::OPTIONS, &url, &[&PREFLIGHT[..], &[buyer]].concat()).await;
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{args:?} {path}");
            assert_eq!(answer.headers()["x-figma-refusal-status"], "403");
            assert!(!answer.headers().contains_key("x-figma-user-id"));
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["reason"], "cors_preflight", "{body}");
            assert_eq!(body["error"], true);
        }
        // An OPTIONS that is no preflight is asked about as any request.
        let auth = format!("{}/_figma_paywall/auth", gateway.base);
        let options = send(Method::OPTIONS, &auth, &[buyer]).await;
        assert_eq!(options.status(), StatusCode::OK);
        assert_eq!(options.headers()["x-figma-user-id"], "2001");
        let anyone = send(Method::OPTIONS, &auth, &[("origin", "null")]).await;
        assert_eq!(anyone.status(), StatusCode::UNAUTHORIZED, "{args:?}");
    }
}
