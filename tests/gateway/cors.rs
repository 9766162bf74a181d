//! `--cors`: the gateway answers browsers on other origins, a plugin's UI
//! (origin `null`) with `*`, a list of sites by name.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
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

#[tokio::test]
async fn without_cors_preflights_go_on_to_the_upstream_which_answers_them() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gateway = demo(&["--upstream", &upstream(calls.clone()).await]);
    let url = format!("{}/generate", gateway.base);
    let preflight = send(Method::OPTIONS, &url, &PREFLIGHT).await;
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(preflight.text().await.unwrap(), "upstream saw OPTIONS");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // An OPTIONS request that is no preflight is gated as any other.
    let options = send(Method::OPTIONS, &url, &[]).await;
    assert_eq!(options.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_cors_a_preflight_to_forward_auth_is_refused_in_the_envelope() {
    // A proxy lets a request through on forward auth's 2xx: a preflight
    // (or a request shaped like one, with a body) must get a refusal, one
    // that nginx passes on too (401 or 403), even with a buyer's token.
    for args in [&[][..], &["--refusals-as", "403"][..]] {
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
    }
}
