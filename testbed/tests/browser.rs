//! The docs site in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against the mock Figma. `.ci/run` installs Debian's
//! `chromium` and `chromium-driver`; without them the test fails, saying
//! what to install.

#[path = "../../examples/docs_site.rs"]
mod docs_site;

mod common {
    pub mod chromium;
    pub mod scratch;
}

use common::chromium::{click, in_browser, link, text};
use fantoccini::{Client, Locator};

/// Opens the docs signed out: the browser must land on Figma's (the
/// mock's) sign-in page.
async fn docs_send_to_sign_in(client: &Client, base: &str, figma: &str) {
    client.goto(&format!("{base}/docs/intro")).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().starts_with(&format!("{figma}/oauth")), "{url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_read_docs_sign_out_and_hit_the_paywall() {
    common::chromium::require("browser test");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (app, mock) = docs_site::demo_site(&base).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    in_browser("chromium", |client| async move {
        // Signed out: the docs send the browser to sign in, on Figma (the mock).
        docs_send_to_sign_in(&client, &base, &mock.url()).await;
        // Pick a buyer: back on the docs.
        click(&client, "user-2001").await;
        let title = client
            .wait()
            .for_element(Locator::Id("doc-title"))
            .await
            .unwrap();
        assert_eq!(title.text().await.unwrap(), "Docs: intro");
        assert_eq!(
            client.current_url().await.unwrap().as_str(),
            format!("{base}/docs/intro")
        );
        // Greeted by the handle Figma gave at sign-in.
        assert!(text(&client).await.contains("Welcome, Ada (PAID"));

        // Sign out: home, and the docs are closed again.
        click(&client, "signout").await;
        client
            .wait()
            .for_element(Locator::Id("signin"))
            .await
            .unwrap();
        docs_send_to_sign_in(&client, &base, &mock.url()).await;

        // Sign in as a non-buyer: the paywall page with its buy link.
        click(&client, "user-2003").await;
        assert_eq!(
            link(&client, "buy").await,
            "https://www.figma.com/community/file/9876543210"
        );
        let page = text(&client).await;
        assert!(page.contains("Payment required"), "{page}");
        assert!(page.contains("UNPAID"), "{page}");
        // Readable on a phone: the page sets its viewport.
        let viewport = client
            .execute(
                "return document.querySelector('meta[name=viewport]')?.content ?? null",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            viewport, "width=device-width, initial-scale=1",
            "the paywall page has no viewport"
        );
        // To look at the page: PAYWALL_SCREENSHOT=/tmp/paywall.png cargo test --test browser
        if let Some(path) = std::env::var_os("PAYWALL_SCREENSHOT") {
            std::fs::write(path, client.screenshot().await.unwrap()).unwrap();
        }
    })
    .await;
}
