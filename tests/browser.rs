//! The docs site in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against the mock Figma. `.ci/run` installs Debian's
//! `chromium` and `chromium-driver`; without them the test says it was
//! skipped, and why.

#[path = "../examples/docs_site.rs"]
mod docs_site;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser(profile: &Path) -> (Driver, Client) {
    let port = free_port();
    let driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }
    });
    let caps = caps.as_object().unwrap().clone();
    let mut last_error = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not start a WebDriver session: {last_error:?}");
}

/// Clicks the element with this ID.
async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Opens the docs signed out: the browser must land on Figma's (the
/// mock's) sign-in page.
async fn docs_send_to_sign_in(client: &Client, base: &str, figma: &str) {
    client.goto(&format!("{base}/docs/intro")).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert!(url.as_str().starts_with(&format!("{figma}/oauth")), "{url}");
}

async fn text(client: &Client) -> String {
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_read_docs_sign_out_and_hit_the_paywall() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        use std::io::Write;
        // Straight to stderr, past the harness's output capture.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED browser test: {CHROMIUM} or {CHROMEDRIVER} is missing (install Debian's chromium and chromium-driver; .ci/run does)"
        );
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (app, mock) = docs_site::demo_site(&base).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let profile =
        std::env::temp_dir().join(format!("figma-paywall-chromium-{}", std::process::id()));
    let (_driver, client) = browser(&profile).await;
    let run = async {
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
        assert!(text(&client).await.contains("Figma user 2001 (PAID"));

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
        let buy = client.wait().for_element(Locator::Id("buy")).await.unwrap();
        assert_eq!(
            buy.attr("href").await.unwrap().as_deref(),
            Some("https://www.figma.com/community/file/9876543210")
        );
        let page = text(&client).await;
        assert!(page.contains("Payment required"), "{page}");
        assert!(page.contains("UNPAID"), "{page}");
        // To look at the page: PAYWALL_SCREENSHOT=/tmp/paywall.png cargo test --test browser
        if let Some(path) = std::env::var_os("PAYWALL_SCREENSHOT") {
            std::fs::write(path, client.screenshot().await.unwrap()).unwrap();
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(60), run).await;
    let _ = client.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    outcome.expect("the browser test finished within a minute");
}
