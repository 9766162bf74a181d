//! A creator's website: `/` for everyone, `/docs/*` for buyers of a
//! Community file or a plugin, with "Sign in with Figma".
//!
//! ```text
//! cargo run --features login --example docs_site   # then open http://127.0.0.1:3001/docs/intro
//! ```
//!
//! Without `FIGMA_TOKEN` it runs on the embedded mock Figma: its sign-in page
//! lets you pick a demo buyer or non-buyer. With `FIGMA_TOKEN`,
//! `FIGMA_CLIENT_ID`, `FIGMA_CLIENT_SECRET`, `FIGMA_FILE_ID` and
//! `FIGMA_PLUGIN_ID` it runs on the real Figma; `SITE_URL` is its public
//! address (default `http://127.0.0.1:$PORT`).
#![allow(dead_code)] // testbed/tests/browser.rs reuses this file as a module

use std::{error::Error, net::SocketAddr};

use axum::{
    extract::Path,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use figma_paywall::{
    login::{FigmaLogin, Profile},
    mock::{Ledger, MockFigma, DEMO_USERS, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET},
    PaymentInformation, PaymentStatus, PaymentsClient, Paywall, Refusal, RefusalReason,
    RequirePaidLayer, Resource, UserId,
};
use http::{header, request::Parts};

pub const DEMO_FILE: &str = "9876543210";
pub const DEMO_PLUGIN: &str = "1122334455";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,figma_paywall=debug".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let site_url = std::env::var("SITE_URL").unwrap_or_else(|_| format!("http://{addr}"));

    let (app, _mock) = if std::env::var_os("FIGMA_TOKEN").is_some() {
        let client = PaymentsClient::from_env()?;
        client.verify_credentials().await?;
        let resources = [
            Resource::community_file(std::env::var("FIGMA_FILE_ID")?)?,
            Resource::plugin(std::env::var("FIGMA_PLUGIN_ID")?)?,
        ];
        let login = FigmaLogin::from_env(&site_url)?;
        (site(Paywall::new(client), login, resources), None)
    } else {
        let (app, mock) = demo_site(&site_url).await?;
        println!("Running on the embedded mock Figma: its sign-in page lets you pick a demo user.");
        (app, Some(mock))
    };
    println!("docs_site on {site_url}: open {site_url}/docs/intro");
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

/// The site on a fresh mock Figma seeded with the demo users.
pub async fn demo_site(site_url: &str) -> Result<(Router, MockFigma), Box<dyn Error>> {
    let mock = MockFigma::start_with(Ledger::default(), "127.0.0.1:0".parse()?).await?;
    let file = Resource::community_file(DEMO_FILE)?;
    let plugin = Resource::plugin(DEMO_PLUGIN)?;
    // The demo's users: Ada bought the Community file, Cleo is in a trial
    // of the plugin, Bob has bought nothing.
    for (id, handle, _who, status) in DEMO_USERS {
        let user = UserId::new(id)?;
        mock.add_user(&user, handle);
        match status {
            PaymentStatus::Paid => mock.set_status(&user, &file, status),
            PaymentStatus::Trial => mock.set_status(&user, &plugin, status),
            _ => {}
        }
    }
    let login = FigmaLogin::builder(MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, site_url)
        .authorize_url(format!("{}/oauth", mock.url()))
        .api_url(mock.url())
        .build()?;
    Ok((
        site(Paywall::new(mock.client()?), login, [file, plugin]),
        mock,
    ))
}

/// The website: public home, docs for buyers of either resource.
pub fn site(paywall: Paywall, login: FigmaLogin, resources: [Resource; 2]) -> Router {
    let [file, _] = &resources;
    let buy = file.clone();
    let to_login = login.clone();
    let docs = Router::new()
        .route("/docs/{*page}", get(doc_page))
        .route_layer(
            RequirePaidLayer::new(&paywall, file.clone())
                .or_buyers_of(resources[1].clone())
                .on_refusal(move |refusal, parts| refuse(refusal, parts, &to_login, &buy)),
        );
    Router::new()
        .route("/", get(home))
        .with_state(paywall)
        .merge(docs)
        .merge(login.router())
        .layer(login.layer())
}

fn wants_html(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

// Readable on a phone too: the viewport follows the device.
const STYLE: &str = "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>body{font:16px/1.5 system-ui;max-width:40em;margin:3em auto;padding:0 1em}</style>";

/// Browsers get a page (or are sent to sign in); API clients get JSON.
fn refuse(refusal: Refusal, parts: &Parts, login: &FigmaLogin, buy: &Resource) -> Response {
    if !wants_html(parts) {
        return refusal.into_response();
    }
    match refusal.reason {
        RefusalReason::NoIdentity | RefusalReason::InvalidIdentity => {
            let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            Redirect::to(&login.login_path(next)).into_response()
        }
        RefusalReason::NotPaid => (
            refusal.status,
            Html(format!(
                "<!doctype html><title>Payment required</title>{STYLE}\
                 <h1>Payment required</h1>\
                 <p>These docs are for buyers of our Figma Community file or plugin. \
                 You are signed in, but Figma says you have not bought either yet \
                 (status: {status}).</p>\
                 <p><a id=\"buy\" href=\"{url}\">Buy it on Figma Community</a></p>\
                 <form method=\"post\" action=\"/auth/logout\"><button id=\"signout\">Sign out</button></form>",
                status = refusal.payment_status.as_ref().map_or("UNPAID", |s| s.as_str()),
                url = buy.community_url(),
            )),
        )
            .into_response(),
        _ => (
            refusal.status,
            Html(format!(
                "<!doctype html><title>Try again later</title>{STYLE}<h1>We cannot check your purchase right now</h1><p>{}</p>",
                refusal.message
            )),
        )
            .into_response(),
    }
}

/// `user`'s name: the Figma handle they signed in with, if `profile` is
/// theirs (a request may carry another user's plugin payment token), else
/// their user ID.
fn name(user: &UserId, profile: Option<&Profile>) -> String {
    match profile {
        Some(profile) if profile.user_id == *user => html_escape(&profile.handle),
        _ => format!("Figma user {}", user.as_str()),
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn home(
    user: Option<axum::Extension<UserId>>,
    profile: Option<axum::Extension<Profile>>,
) -> Html<String> {
    let who = match user {
        Some(axum::Extension(user)) => format!(
            "<p>Signed in as {}.</p><form method=\"post\" action=\"/auth/logout\"><button id=\"signout\">Sign out</button></form>",
            name(&user, profile.as_ref().map(|p| &p.0))
        ),
        None => "<p><a id=\"signin\" href=\"/auth/login?next=/docs/intro\">Sign in with Figma</a></p>".to_owned(),
    };
    Html(format!(
        "<!doctype html><title>Our plugin</title>{STYLE}<h1>Our plugin</h1>\
         <p>Public page. The <a href=\"/docs/intro\">docs and tutorials</a> are for buyers.</p>{who}"
    ))
}

async fn doc_page(
    Path(page): Path<String>,
    payment: PaymentInformation,
    profile: Option<axum::Extension<Profile>>,
) -> Html<String> {
    let page: String = page
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    Html(format!(
        "<!doctype html><title>Docs: {page}</title>{STYLE}<h1 id=\"doc-title\">Docs: {page}</h1>\
         <p>Welcome, {user} ({status} for {kind} {id}).</p>\
         <form method=\"post\" action=\"/auth/logout\"><button id=\"signout\">Sign out</button></form>",
        user = name(&payment.user_id, profile.as_ref().map(|p| &p.0)),
        status = payment.payment_status,
        kind = payment.resource_type,
        id = payment.resource_id,
    ))
}
