//! `--credits` end to end: the gateway in front of an upstream that
//! reports what each call cost, counts kept in the store over a `kill -9`,
//! and the balance endpoint behind the metrics token.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use reqwest::{Client, StatusCode};
use serde_json::Value;
use sfv::{BareItem, List, ListEntry, Parser};

use super::{demo_command, serve, start, Gateway};
use crate::scratch::TempDir;

/// An upstream that charges what `?used=N` says, and tells what credits
/// the gateway said the caller had left.
async fn charging_upstream(calls: Arc<AtomicUsize>) -> String {
    use axum::{extract::RawQuery, http::HeaderMap, response::IntoResponse, Json, Router};
    let app = Router::new().fallback(move |headers: HeaderMap, RawQuery(query): RawQuery| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let remaining = headers
                .get("x-figma-credits-remaining")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = Json(serde_json::json!({ "remaining": remaining }));
            match query.as_deref().and_then(|q| q.strip_prefix("used=")) {
                Some(used) => ([("x-figma-credits-used", used.to_owned())], body).into_response(),
                None => body.into_response(),
            }
        }
    });
    serve(app).await
}

/// The `r` of each member of `RateLimit`, as a parser reads it.
fn remaining(headers: &reqwest::header::HeaderMap) -> Vec<i64> {
    let value = headers
        .get("ratelimit")
        .expect("RateLimit")
        .to_str()
        .unwrap();
    let list: List = Parser::new(value).parse().unwrap();
    list.iter()
        .map(|member| {
            let ListEntry::Item(item) = member else {
                panic!("{value}")
            };
            match item.params.get("r") {
                Some(BareItem::Integer(r)) => i64::from(*r),
                _ => panic!("no r in {value}"),
            }
        })
        .collect()
}

/// `request` with the metrics token: the JSON answer.
async fn as_operator(request: reqwest::RequestBuilder) -> Value {
    let response = request
        .bearer_auth("a-metrics-token-of-32-characters!")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn gateway(upstream: &str, store: &std::path::Path) -> Gateway {
    let mut command = demo_command(&[
        "--upstream",
        upstream,
        "--credits",
        "paid=10/day,unpaid=2",
        "--credit-cost",
        "/generate=3",
        "--metrics-token",
        "a-metrics-token-of-32-characters!",
        "--cors",
        "https://docs.example.com",
    ]);
    command.env("FIGMA_PAYWALL_STORE", store);
    start(command)
}

async fn get(gateway: &Gateway, path: &str, token: &str) -> reqwest::Response {
    Client::new()
        .get(format!("{}{path}", gateway.base))
        .header("x-figma-payment-token", token)
        .header("origin", "https://docs.example.com")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_upstream_reports_the_cost_and_counts_outlive_a_kill_9_in_the_store() {
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = charging_upstream(calls.clone()).await;
    let dir = TempDir::new("credits");
    let store = dir.path().join("paywall.redb");
    let mut first = gateway(&upstream, &store);
    let [buyer, _, unpaid] = <[String; 3]>::try_from(first.tokens.clone()).unwrap();

    // /generate reserves 3; the upstream says it cost 1.
    let reply = get(&first, "/generate?used=1", &buyer).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(
        reply.headers().get("x-figma-credits-used").is_none(),
        "the client never sees it"
    );
    assert_eq!(remaining(reply.headers()), [9]);
    let exposed = reply.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    let exposed: Vec<&str> = exposed.split(',').map(str::trim).collect();
    assert!(
        exposed.contains(&"ratelimit") && exposed.contains(&"ratelimit-policy"),
        "{exposed:?}"
    );
    let seen: Value = reply.json().await.unwrap();
    assert_eq!(
        seen["remaining"], "7",
        "the upstream hears what is left after the reservation"
    );
    // Anywhere else costs 1.
    assert_eq!(
        remaining(get(&first, "/other", &buyer).await.headers()),
        [8]
    );
    // A non-buyer: two free tries, then checkout.
    for left in [1, 0] {
        let reply = get(&first, "/other", &unpaid).await;
        assert_eq!(reply.status(), StatusCode::OK);
        assert_eq!(remaining(reply.headers()), [left]);
    }
    let refused = get(&first, "/other", &unpaid).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["reason"], "not_paid");
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    // kill -9, and a new process over the same store.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let second = gateway(&upstream, &store);
    let [buyer, _, unpaid] = <[String; 3]>::try_from(second.tokens.clone()).unwrap();
    assert_eq!(
        remaining(get(&second, "/other", &buyer).await.headers()),
        [7]
    );
    assert_eq!(
        get(&second, "/other", &unpaid).await.status(),
        StatusCode::PAYMENT_REQUIRED
    );

    // The balance, and a grant, behind the metrics token only.
    let url = format!("{}/_figma_paywall/credits/2001", second.base);
    let client = Client::new();
    let without = client.get(&url).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(&url)
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let grant = client
        .post(format!("{url}/grant?amount=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), StatusCode::UNAUTHORIZED);
    let balance = as_operator(client.get(&url)).await;
    assert_eq!(balance["credits"]["paid"][0]["remaining"], 7);
    assert_eq!(
        balance["credits"]["unpaid"][0]["remaining"], 2,
        "the buyer's free tries are their own"
    );
    let non_buyer =
        as_operator(client.get(format!("{}/_figma_paywall/credits/2003", second.base))).await;
    assert_eq!(non_buyer["credits"]["unpaid"][0]["remaining"], 0);
    let granted = as_operator(client.post(format!("{url}/grant?amount=5"))).await;
    assert_eq!(granted["credits"]["paid"][0]["remaining"], 12);
    assert_eq!(
        remaining(get(&second, "/other", &buyer).await.headers()),
        [11]
    );
}
