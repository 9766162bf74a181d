//! `--login`: a website behind the gateway, gated by the visitor signed in
//! with Figma (the mock's OAuth pages), with the paywall page for
//! non-buyers.

use std::{
    sync::{atomic::AtomicUsize, Arc},
    time::Duration,
};

use reqwest::{
    header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE},
    redirect::Policy,
    Client, Response, StatusCode,
};
use serde_json::Value;
use url::Url;

use super::{demo, upstream};

fn location(response: &Response) -> String {
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

fn cookie(response: &Response, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_owned()
}

/// A browser's whole sign-in as `user`, from a gated page: its session
/// cookie.
async fn sign_in(http: &Client, base: &str, user: &str) -> String {
    let page = http
        .get(format!("{base}/docs/intro"))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/auth/login?next=%2Fdocs%2Fintro");
    let login = http
        .get(format!("{base}{}", location(&page)))
        .send()
        .await
        .unwrap();
    let flow = cookie(&login, "figma_oauth");
    let authorize = Url::parse(&location(&login)).unwrap();
    let chooser = http.get(authorize.clone()).send().await.unwrap();
    let chooser = chooser.text().await.unwrap();
    let marker = format!("id=\"user-{user}\" href=\"");
    let start = chooser.find(&marker).expect("the user on the page") + marker.len();
    let href = chooser[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let grant = http
        .get(authorize.join(&href).unwrap())
        .send()
        .await
        .unwrap();
    let back = http
        .get(location(&grant))
        .header(COOKIE, flow)
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&back), "/docs/intro");
    cookie(&back, "figma_session")
}

/// The page a browser signed in with `session` gets for `page`, which
/// must be the paywall's (402).
async fn paywall_page(http: &Client, page: &str, session: &str) -> String {
    let response = http
        .get(page)
        .header(COOKIE, session)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_website_signs_visitors_in_and_shows_non_buyers_the_paywall() {
    let calls = Arc::new(AtomicUsize::new(0));
    let upstream = upstream(calls.clone()).await;
    let gateway = demo(&[
        "--upstream",
        &upstream,
        "--login",
        "--product-name",
        "Acme <Icons>",
        "--page-stylesheet",
        "/assets/paywall.css",
        "--page-logo",
        "https://cdn.example.com/logo.png?a=1&b=2",
    ]);
    let http = Client::builder().redirect(Policy::none()).build().unwrap();
    let page = format!("{}/docs/intro", gateway.base);

    // A buyer signs in and reads the page; the site hears who they are.
    let buyer = sign_in(&http, &gateway.base, "2001").await;
    let seen: Value = http
        .get(&page)
        .header(COOKIE, format!("theme=dark; {buyer}; lang=en"))
        .header("X-Figma-User-Id", "9999")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["user"], "2001");
    // The site's own cookies go on; the gateway's session stops here.
    assert_eq!(seen["cookie"], "theme=dark; lang=en");

    // Someone who has not bought it gets the paywall page.
    let other = sign_in(&http, &gateway.base, "2003").await;
    let html = paywall_page(&http, &page, &other).await;
    for part in [
        "Acme &lt;Icons&gt; is for buyers",
        "Buy on Figma Community",
        "https://www.figma.com/community/plugin/1122334455",
        "Already bought?",
        "id=\"signout\"",
        "name=\"viewport\"",
        "<link rel=\"stylesheet\" href=\"/assets/paywall.css\">",
        "<img id=\"logo\" src=\"https://cdn.example.com/logo.png?a=1&amp;b=2\"",
    ] {
        assert!(html.contains(part), "no {part:?} in {html}");
    }
    assert!(!html.contains("<Icons>"), "the product name is escaped");
    // The page's links stay on the site whatever path was asked for: a
    // network-path reference (`//evil.example/x`) is not a way off it.
    let html = paywall_page(&http, &format!("{}//evil.example/x", gateway.base), &other).await;
    assert!(
        html.contains("id=\"refresh\" href=\"/evil.example/x\""),
        "{html}"
    );
    assert!(!html.contains("href=\"//"), "{html}");
    let to_sign_in = http
        .get(format!("{}//evil.example/x", gateway.base))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        location(&to_sign_in),
        "/auth/login?next=%2Fevil.example%2Fx"
    );
    // An API client gets Figma's envelope, not a page.
    let response = http.get(&page).header(COOKIE, &other).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "not_paid");

    // Signing out ends the session: the same cookie is sent to sign in.
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    let out = http
        .post(format!("{}/auth/logout", gateway.base))
        .header(COOKIE, &buyer)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let response = http
        .get(&page)
        .header(COOKIE, &buyer)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), before);
}

#[tokio::test]
async fn the_demo_of_a_website_brings_a_site_and_says_whom_to_sign_in_as() {
    let gateway = demo(&["--login"]);
    let printed = gateway.printed.join("\n");
    for line in [
        format!("Open {}/ in a browser", gateway.base),
        "a buyer (user 2001)".to_owned(),
        "a user who has not paid (user 2003)".to_owned(),
    ] {
        assert!(printed.contains(&line), "no {line:?} in:\n{printed}");
    }
    let http = Client::builder().redirect(Policy::none()).build().unwrap();
    let page = format!("{}/docs/intro", gateway.base);

    // The buyer reaches the demo's own site, which names them.
    let buyer = sign_in(&http, &gateway.base, "2001").await;
    let response = http.get(&page).header(COOKIE, &buyer).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let html = response.text().await.unwrap();
    assert!(html.contains("<b id=\"user\">2001</b> (PAID)"), "{html}");

    // Someone who has not bought it sees the paywall, with the account
    // they signed in with, and a heading that reads as a sentence.
    let other = sign_in(&http, &gateway.base, "2003").await;
    let html = paywall_page(&http, &page, &other).await;
    // The account by the handle and avatar Figma's /v1/me gave at sign-in.
    for part in [
        "<h1>This plugin is for buyers</h1>",
        "<img id=\"avatar\" src=\"https://www.figma.com/api/mock/avatar/2003.png\"",
        "<b id=\"account\">Bob</b>",
        "another Figma account",
    ] {
        assert!(html.contains(part), "no {part:?} in {html}");
    }
}

#[tokio::test]
async fn the_paywall_page_takes_only_https_urls_and_paths_of_the_site() {
    for bad in [
        "javascript:alert(1)",
        "//evil.example/x.css",
        "http://cdn.example.com/a.css",
    ] {
        for flag in ["--page-stylesheet", "--page-logo"] {
            let mut child = super::demo_command(&["--login", flag, bad])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("the gateway runs");
            // It must stop at start; one that serves is killed, and fails.
            let Some(status) = super::exit_within(&mut child, Duration::from_secs(15)).await else {
                let _ = child.kill();
                panic!("{flag} {bad}: the gateway started");
            };
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            assert!(!status.success(), "{flag} {bad} started");
            assert!(
                stderr.contains("give an https:// URL"),
                "{flag} {bad}: {stderr}"
            );
        }
    }
}

#[test]
fn login_needs_an_upstream_and_outside_the_demo_its_settings() {
    for (args, says) in [
        (&["--login", "--plugin", "1"][..], "--upstream"),
        (
            &[
                "--login",
                "--plugin",
                "1",
                "--upstream",
                "http://127.0.0.1:9",
            ][..],
            "--site-url",
        ),
        (
            &[
                "--login",
                "--plugin",
                "1",
                "--upstream",
                "http://127.0.0.1:9",
                "--site-url",
                "https://docs.example.com",
            ][..],
            "FIGMA_CLIENT_ID",
        ),
    ] {
        let output = super::command(args)
            .env("FIGMA_TOKEN", "figd_x")
            .env("FIGMA_API_URL", "http://127.0.0.1:9")
            .env_remove("FIGMA_CLIENT_ID")
            .output()
            .expect("the gateway runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
