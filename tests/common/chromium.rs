//! Headless Chromium driven over WebDriver (chromedriver), for the tests
//! that go through a site as a visitor would: `testbed/tests/browser.rs` and the
//! gateway's `--login` test. `.ci/run` installs Debian's `chromium` and
//! `chromium-driver`; without them, `require` fails the test, saying what to install.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

// `scratch.rs`, which every includer of this file also includes.
use super::scratch::{free_port, TempDir};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
pub async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .click()
        .await
        .unwrap();
}

/// The text of the page's body.
pub async fn text(client: &Client) -> String {
    client
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Fails `test`, saying what to install, unless Chromium and chromedriver
/// are installed.
pub fn require(test: &str) {
    assert!(
        Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists(),
        "{test} needs {CHROMIUM} and {CHROMEDRIVER}: install Debian's chromium and chromium-driver (.ci/run does)"
    );
}

/// Runs `test` in a fresh headless Chromium with its own profile, then
/// closes it; fails if `test` takes over a minute.
pub async fn in_browser<F: std::future::Future<Output = ()>>(
    name: &str,
    test: impl FnOnce(Client) -> F,
) {
    let profile = TempDir::new(name);
    let (_driver, client) = browser(profile.path()).await;
    let outcome = tokio::time::timeout(Duration::from_secs(60), test(client.clone())).await;
    let _ = client.close().await;
    drop(profile);
    outcome.expect("the browser test finished within a minute");
}

/// Waits for the link with this ID: where it goes.
pub async fn link(client: &Client, id: &str) -> String {
    let link = client.wait().for_element(Locator::Id(id)).await.unwrap();
    link.attr("href")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("#{id} has no href"))
}
