//! The mock Figma as a standalone server, for developing a plugin offline.
//!
//! ```text
//! cargo run --example mock_figma -- examples/ledger.json
//! ```
//!
//! Point your backend at it with `FIGMA_API_URL=http://127.0.0.1:8787` and
//! `FIGMA_TOKEN` set to the ledger's `access_token`. `PORT` overrides 8787.

use std::net::SocketAddr;

use figma_paywall::mock::{Ledger, MockFigma};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ledger: Ledger = match std::env::args().nth(1) {
        Some(path) => serde_json::from_str(
            &std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?,
        )
        .map_err(|e| format!("{path} is not a ledger: {e}"))?,
        None => Ledger::default(),
    };
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8787);
    let mock = MockFigma::start_with(ledger, SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("mock Figma on {}", mock.url());
    println!(
        "export FIGMA_API_URL={} FIGMA_TOKEN={}",
        mock.url(),
        mock.access_token().expose_secret()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
