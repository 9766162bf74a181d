//! A plugin's backend: `POST /generate` (a stand-in for a costly AI model
//! call) for buyers only, `GET /health` for everyone. It answers plugins
//! out of the box: a plugin's UI iframe has the origin `null`, so every
//! answer carries `Access-Control-Allow-Origin: *` (tower-http's
//! `CorsLayer`, outside the gate so that refusals carry it too).
//!
//! ```text
//! cargo run --example ai_endpoint
//! ```
//!
//! Without `FIGMA_TOKEN` it starts the embedded mock Figma, seeded with demo
//! buyers and non-buyers, and prints curl commands to try. On the mock it
//! is in development mode: a plugin running in Figma's desktop app in
//! development gets the status it chose with
//! `setPaymentStatusInDevelopment` (see docs/plugin.md). With
//! `FIGMA_TOKEN` (and `FIGMA_PLUGIN_ID`) it asks the real Figma
//! (`FIGMA_API_URL` overrides the base URL). `PORT` overrides 3000, and
//! `FIGMA_RATE_LIMIT` (`FIGMA_RATE_BURST`) the budget, on the mock too.
//! `FIGMA_PAYWALL_BYPASS` (user IDs, comma-separated) lets those users in
//! whatever Figma says: you, the creator, whom Figma answers `UNPAID` for
//! your own plugin. `FIGMA_PAYWALL_CREDITS` meters `/generate` with
//! credits, as the gateway's `--credits` does: `paid=100/day,unpaid=20/day`
//! gives buyers 100 calls a day and everyone else 20 free tries a day.

use std::{net::SocketAddr, time::Duration};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderName, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use figma_paywall::{
    credits::Credits,
    identity,
    mock::{MockFigma, DEMO_USERS},
    PaidAccess, PaymentInformation, PaymentsClient, Paywall, RequirePaidLayer, Resource, UserId,
};
use serde_json::{json, Value};
use tower_http::cors::{Any, CorsLayer};

const DEMO_PLUGIN: &str = "1122334455";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,figma_paywall=debug".into()),
        )
        .init();

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // Keep the mock alive as long as the server runs.
    let (client, plugin, _mock, demo) = if std::env::var_os("FIGMA_TOKEN").is_some() {
        let client = PaymentsClient::from_env()?;
        let me = client.verify_credentials().await.map_err(|e| {
            format!("FIGMA_TOKEN was not accepted by Figma ({e}); personal access tokens expire, create a new one")
        })?;
        tracing::info!(creator = %me.handle, "Figma accepted FIGMA_TOKEN");
        let id = std::env::var("FIGMA_PLUGIN_ID").map_err(|_| {
            "set FIGMA_PLUGIN_ID to your plugin's ID (the `id` in its manifest.json)"
        })?;
        (client, Resource::plugin(id)?, None, Vec::new())
    } else {
        let mock = MockFigma::start().await?;
        let plugin = Resource::plugin(DEMO_PLUGIN)?;
        let mut demo = Vec::new();
        for (id, _handle, who, status) in DEMO_USERS {
            let user = UserId::new(id)?;
            mock.set_status(&user, &plugin, status);
            let token = mock.issue_token_for(&user, &plugin, Duration::from_secs(86_400));
            demo.push((who, token));
        }
        println!("mock Figma on {}", mock.url());
        // Development mode: a plugin in development gets the status it
        // chose with setPaymentStatusInDevelopment (docs/plugin.md).
        let client = mock
            .client_builder()
            .development_mode()
            .rate_limit_from_env()?
            .build()?;
        (client, plugin, Some(mock), demo)
    };

    // FIGMA_PAYWALL_STORE keeps answers across restarts (feature `store`).
    let paywall = Paywall::builder(client).store_from_env()?.build()?;
    // The paywall's counters say who was refused and why: served only to
    // whoever sends PAYWALL_STATS_TOKEN as a bearer token, and only when
    // it is set.
    let stats_token = std::env::var("PAYWALL_STATS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let bypass = std::env::var("FIGMA_PAYWALL_BYPASS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| UserId::new(id).map_err(|e| format!("FIGMA_PAYWALL_BYPASS {id:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut gate = RequirePaidLayer::new(&paywall, plugin).bypass(bypass);
    if let Some(credits) = std::env::var("FIGMA_PAYWALL_CREDITS")
        .ok()
        .filter(|c| !c.is_empty())
    {
        gate = gate.credits(credits.parse::<Credits>()?);
    }
    let mut app = Router::new()
        .route("/generate", post(generate))
        // On the routes above only: any other path is a 404, not a 401.
        .route_layer(gate)
        .route("/health", get(|| async { "ok" }));
    if let Some(token) = stats_token.clone() {
        app = app.route(
            "/paywall/stats",
            get(move |paywall, headers| stats(paywall, headers, token.clone())),
        );
    }
    let app = app.with_state(paywall).layer(cors_for_plugins());

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ai_endpoint listening on http://{addr}");
    if !demo.is_empty() {
        println!(
            "\nRunning on the embedded mock Figma (set FIGMA_TOKEN to use the real one). Try:\n"
        );
        for (who, token) in &demo {
            println!("# {who}");
            println!(
                "curl -i -X POST http://{addr}/generate -H 'X-Figma-Payment-Token: {}' -d 'a cat in a hat'\n",
                token.expose_secret()
            );
        }
        println!("# nobody\ncurl -i -X POST http://{addr}/generate -d 'a cat in a hat'\n");
        println!(
            "# a plugin in development that chose PAID (any token: development mode, docs/plugin.md)\ncurl -i -X POST http://{addr}/generate -H 'X-Figma-Payment-Token: from-figma-in-development' -H 'X-Figma-Payment-Status-In-Development: PAID' -d 'a cat in a hat'\n"
        );
        match &stats_token {
            Some(token) => println!(
                "# what the paywall did\ncurl http://{addr}/paywall/stats -H 'Authorization: Bearer {token}'\n"
            ),
            None => println!(
                "# the paywall's counters: set PAYWALL_STATS_TOKEN to serve them at /paywall/stats\n"
            ),
        }
    }
    // Each request carries its connection's address: the fair share of
    // Figma's budget tells clients apart by it.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// CORS for plugins: their UI iframe's origin is `null`, and Figma says
/// their calls succeed only against `Access-Control-Allow-Origin: *`. Put
/// outside the gate, so that a non-buyer's plugin can read the 402's
/// `reason` and open checkout, and scripts can read `Retry-After` on a 429
/// or 503, and `RateLimit` with credits. It answers preflights too: the
/// gate never lets one through.
fn cors_for_plugins() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            identity::PAYMENT_TOKEN_HEADER,
            identity::DEVELOPMENT_STATUS_HEADER,
        ])
        // Retry-After on a 429 or 503; what credits are left (RateLimit).
        .expose_headers([
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(Duration::from_secs(600))
}

/// The expensive part: only buyers get here. The prompt is the body, as
/// text or as JSON `{"prompt": "..."}`.
async fn generate(payment: PaymentInformation, access: PaidAccess, body: String) -> Json<Value> {
    let prompt = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("prompt")?.as_str().map(str::to_owned))
        .unwrap_or(body);
    Json(json!({
        "result": format!("a picture of {}", prompt.trim()),
        "user_id": payment.user_id,
        "payment_status": payment.payment_status,
        "served_from_cache": access.lookup.is_some_and(|l| l.from_cache()),
    }))
}

async fn stats(State(paywall): State<Paywall>, headers: HeaderMap, token: String) -> Response {
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in constant time: the token is a secret.
    let same = sent.len() == token.len()
        && sent
            .bytes()
            .zip(token.bytes())
            .fold(0, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!(paywall.stats())).into_response()
}
