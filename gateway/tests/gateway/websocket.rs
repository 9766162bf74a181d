//! A WebSocket outlives the request that opened it: the gateway checks its
//! caller again whenever the answer that let them in expires, and closes
//! it once Figma says they no longer paid.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use figma_paywall::{mock::MockFigma, PaymentStatus, Resource, UserId};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{
    command,
    hardening::{echo_upstream, echoed, open_websocket},
    Gateway,
};

/// The gateway on the mock Figma `figma` (whose ledger the test changes),
/// for plugin `plugin`, with `args`, once it listens.
pub(super) fn on_figma(figma: &MockFigma, plugin: &Resource, args: &[&str]) -> Gateway {
    let mut child = command(
        &[
            &["--plugin", plugin.id().as_str(), "--listen", "127.0.0.1:0"],
            args,
        ]
        .concat(),
    )
    .env("FIGMA_API_URL", figma.url())
    .env("FIGMA_TOKEN", figma_paywall::mock::MOCK_ACCESS_TOKEN)
    // Every lookup has a slot: the refund shows at the next one.
    .env("FIGMA_RATE_LIMIT", "600")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("the gateway starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("figma-paywall listening on ")
                .map(str::to_owned)
        })
        .expect("the gateway says where it listens");
    std::thread::spawn(move || lines.for_each(drop));
    Gateway {
        child,
        base,
        tokens: Vec::new(),
        printed: Vec::new(),
    }
}

#[tokio::test]
async fn a_buyer_s_websocket_is_checked_again_and_closed_after_a_refund() {
    // Figma on a thread of its own: the gateway asks it while this test
    // waits for the gateway to start.
    let figma = MockFigma::start_on_own_thread().unwrap();
    let plugin = Resource::plugin("1122334455").unwrap();
    let buyer = UserId::new("2001").unwrap();
    figma.set_status(&buyer, &plugin, PaymentStatus::Paid);
    let token = figma.issue_token(&buyer, &plugin);
    let upstream = echo_upstream().await;
    let gateway = on_figma(
        &figma,
        &plugin,
        &["--upstream", &upstream, "--paid-lifetime", "2s"],
    );
    let mut socket = open_websocket(&gateway.base, token.expose_secret())
        .await
        .expect("a buyer's WebSocket opens");
    // A buyer's tunnel outlives the answer that let them in: checked again
    // (Figma still says PAID), it stays open.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        assert_eq!(echoed(&mut socket, "ping").await, "ping");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Refunded: the tunnel closes within about one paid lifetime (2 s),
    // not 125 s of echoes.
    figma.set_status(&buyer, &plugin, PaymentStatus::Unpaid);
    let refunded = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if socket.send(Message::text("ping")).await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
                Ok(None | Some(Err(_))) => return,
                Ok(Some(Ok(message))) if message.is_close() => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a refunded buyer's WebSocket stayed open");
    eprintln!("closed {:?} after the refund", refunded.elapsed());
    // And the refunded buyer cannot open another.
    let again = open_websocket(&gateway.base, token.expose_secret()).await;
    assert_eq!(again.err(), Some(reqwest::StatusCode::PAYMENT_REQUIRED));
}
