//! Development mode: `--demo --development` takes the status a plugin in
//! development chose; `--demo` alone, and a gateway on Figma, refuse it
//! without asking Figma.

use figma_paywall::{mock::MockFigma, Resource};
use reqwest::StatusCode;

use super::{auth, demo, websocket::on_figma};

const TOKEN: (&str, &str) = ("X-Figma-Payment-Token", "from-figma-in-development");

fn chose(status: &str) -> [(&'static str, &str); 2] {
    [TOKEN, ("X-Figma-Payment-Status-In-Development", status)]
}

#[tokio::test]
async fn the_demo_takes_the_status_a_plugin_in_development_chose() {
    let gateway = demo(&["--development"]);
    let (status, headers, _) = auth(&gateway, &chose("PAID")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-figma-payment-status"], "PAID");
    assert_eq!(
        headers["x-figma-user-id"],
        figma_paywall::mock::MOCK_CREATOR_ID
    );
    let (status, _, body) = auth(&gateway, &chose("UNPAID")).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert!(body.contains("\"not_paid\""), "{body}");
    // The same token without the header: Figma (the mock) refuses it.
    assert_eq!(auth(&gateway, &[TOKEN]).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_on_figma_refuses_a_status_chosen_in_development() {
    let figma = MockFigma::start().await.unwrap();
    let plugin = Resource::plugin("1122334455").unwrap();
    let gateway = on_figma(&figma, &plugin, &[]);
    for status in ["PAID", "UNPAID"] {
        let (code, _, body) = auth(&gateway, &chose(status)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["reason"], "development_only");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("development mode only"),
            "{body}"
        );
    }
    assert_eq!(figma.payment_requests(), 0, "Figma was asked");
}

#[tokio::test]
async fn the_demo_without_development_refuses_the_status() {
    let gateway = demo(&[]);
    let (status, _, body) = auth(&gateway, &chose("PAID")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"development_only\""), "{body}");
    // --development is a demo's only.
    let refused = super::command(&["--development", "--plugin", "1"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--demo"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_opened_in_development_outlives_its_recheck() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let upstream = super::hardening::echo_upstream().await;
    let gateway = demo(&[
        "--development",
        "--upstream",
        &upstream,
        "--paid-lifetime",
        "2s",
    ]);
    let mut request = format!("{}/ws", gateway.base.replacen("http://", "ws://", 1))
        .into_client_request()
        .unwrap();
    for (name, value) in chose("PAID") {
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("a WebSocket opened in development");
    // Past the 2 s after which a buyer's tunnel is checked again (the mock
    // knows nothing of this token): still open.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(5) {
        assert_eq!(super::hardening::echoed(&mut socket, "ping").await, "ping");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
