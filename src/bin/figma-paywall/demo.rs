//! `--demo`: the embedded mock Figma, its users and their tokens, the
//! commands to try, and with `--login` a small site to sign in to.

use std::{net::SocketAddr, time::Duration};

use axum::{
    http::{HeaderMap, Uri},
    response::Html,
};

use figma_paywall::{mock::MockFigma, PaymentStatus, PluginPaymentToken, Resource, UserId};

/// The demo's plugin, when `--demo` names none.
pub(crate) const DEMO_PLUGIN: &str = "1122334455";

/// The demo's users: their IDs, and who they are.
const USERS: [(&str, &str, PaymentStatus); 3] = [
    ("2001", "a buyer", PaymentStatus::Paid),
    ("2002", "a user in a trial", PaymentStatus::Trial),
    ("2003", "a user who has not paid", PaymentStatus::Unpaid),
];

/// With `--demo`: the demo's tokens, and commands to try at `addr`; with
/// `--login` too, the site to open in a browser and whom to sign in as.
pub(crate) fn print(tokens: &[(&'static str, PluginPaymentToken)], addr: SocketAddr, login: bool) {
    println!("\nRunning on the embedded mock Figma (--demo).");
    if login {
        println!("\nOpen http://{addr}/ in a browser and sign in with the mock Figma as:");
        for (id, who, _) in USERS {
            println!("  {who} (user {id})");
        }
    }
    println!("\nTry:\n");
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
    for (id, who, status) in USERS {
        let user = UserId::new(id).map_err(|e| e.to_string())?;
        mock.set_status(&user, resource, status);
        mock.add_user(&user, who);
        tokens.push((
            who,
            mock.issue_token_for(&user, resource, Duration::from_secs(86_400)),
        ));
    }
    Ok((mock, tokens))
}

/// With `--demo --login` and no `--upstream`: a small site behind the
/// gateway, on a free loopback port, whose every page says whom the
/// gateway let in; its URL.
pub(crate) async fn site() -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("could not start the demo site: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("could not start the demo site: {e}"))?;
    let app = axum::Router::new().fallback(page);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

/// A page of the demo site, for the buyer the gateway names.
async fn page(uri: Uri, headers: HeaderMap) -> Html<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map_or_else(String::new, crate::site::esc)
    };
    Html(format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Demo site</title>\
         <h1>{path}</h1><p>For buyers only: the gateway let in Figma user \
         <b id=\"user\">{user}</b> ({status}).</p>\
         <form method=\"post\" action=\"/auth/logout\"><button>Sign out</button></form>",
        path = crate::site::esc(uri.path()),
        user = header("x-figma-user-id"),
        status = header("x-figma-payment-status"),
    ))
}
