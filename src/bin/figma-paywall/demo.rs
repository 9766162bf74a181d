//! `--demo`: the embedded mock Figma, its users and their tokens, and the
//! commands to try.

use std::{net::SocketAddr, time::Duration};

use figma_paywall::{mock::MockFigma, PaymentStatus, PluginPaymentToken, Resource, UserId};

/// The demo's plugin, when `--demo` names none.
pub(crate) const DEMO_PLUGIN: &str = "1122334455";

/// With `--demo`: the demo's tokens, and commands to try at `addr`.
pub(crate) fn print(tokens: &[(&'static str, PluginPaymentToken)], addr: SocketAddr) {
    println!("\nRunning on the embedded mock Figma (--demo). Try:\n");
    for (who, token) in tokens {
        println!("# {who}");
        println!(
            "curl -i http://{addr}/_figma_paywall/auth -H 'X-Figma-Payment-Token: {}'\n",
            token.expose_secret()
        );
    }
    println!("# nobody\ncurl -i http://{addr}/_figma_paywall/auth\n");
}

/// The mock Figma of `--demo`: a buyer, a user in a trial and a user who
/// has not paid, with day-long tokens.
pub(crate) async fn demo_figma(
    resource: &Resource,
) -> Result<(MockFigma, Vec<(&'static str, PluginPaymentToken)>), String> {
    let mock = MockFigma::start()
        .await
        .map_err(|e| format!("could not start the mock Figma: {e}"))?;
    let mut tokens = Vec::new();
    for (id, who, status) in [
        ("2001", "a buyer", PaymentStatus::Paid),
        ("2002", "a user in a trial", PaymentStatus::Trial),
        ("2003", "a user who has not paid", PaymentStatus::Unpaid),
    ] {
        let user = UserId::new(id).map_err(|e| e.to_string())?;
        mock.set_status(&user, resource, status);
        tokens.push((
            who,
            mock.issue_token_for(&user, resource, Duration::from_secs(86_400)),
        ));
    }
    Ok((mock, tokens))
}
