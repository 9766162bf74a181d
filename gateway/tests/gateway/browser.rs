//! `--demo --login` in a real browser, as a new user tries it first: with
//! no `--upstream`, in front of the demo's own site. A visitor signs in
//! with Figma (the mock's OAuth pages) through the gateway and reads a page
//! behind it; a non-buyer gets the paywall page, naming their account, and
//! can sign out. (`site.rs` does the same over HTTP in front of a site of
//! the test's own.)

#[path = "../common/chromium.rs"]
mod chromium;
use super::scratch;

use fantoccini::Locator;

use chromium::{click, in_browser, link, text};

use super::demo;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_signs_in_through_the_gateway_and_reads_a_page_behind_it() {
    chromium::require("gateway browser test");
    let gateway = demo(&["--login", "--product-name", "Acme Icons"]);
    let page = format!("{}/docs/intro", gateway.base);
    let base = gateway.base.clone();
    let on_sign_in_page = move |url: url::Url| {
        assert!(
            url.path() == "/oauth" && !url.as_str().starts_with(&base),
            "not on Figma's sign-in page: {url}"
        );
    };
    in_browser("gateway-chromium", |client| async move {
        // Signed out: the page sends the browser to sign in with Figma.
        client.goto(&page).await.unwrap();
        on_sign_in_page(client.current_url().await.unwrap());

        // Someone who has not bought it: the paywall page, with its buy link.
        click(&client, "user-2003").await;
        assert_eq!(
            link(&client, "buy").await,
            "https://www.figma.com/community/plugin/1122334455"
        );
        let shown = text(&client).await;
        assert!(shown.contains("Acme Icons is for buyers"), "{shown}");
        // Named by the handle Figma gave at sign-in, with their avatar.
        assert!(shown.contains("signed in with Figma as Bob"), "{shown}");
        let avatar = client
            .execute(
                "return document.getElementById('avatar')?.getAttribute('src') ?? null",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(avatar, "https://www.figma.com/api/mock/avatar/2003.png");
        assert!(!shown.contains("the gateway let in"), "{shown}");

        // They sign out: logout sends them home, and home (gated too) on to
        // sign in. Only once that has settled do they ask for the page, or
        // the sign-in the logout started could win and bring them home.
        click(&client, "signout").await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while client.current_url().await.unwrap().path() != "/oauth" {
            assert!(
                std::time::Instant::now() < deadline,
                "sign-out never reached the sign-in page"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        client.goto(&page).await.unwrap();
        on_sign_in_page(client.current_url().await.unwrap());

        // A buyer signs in and lands on the page they asked for.
        click(&client, "user-2001").await;
        let user = client
            .wait()
            .for_element(Locator::Id("user"))
            .await
            .unwrap();
        assert_eq!(user.text().await.unwrap(), "2001");
        assert_eq!(client.current_url().await.unwrap().as_str(), page);
        assert!(text(&client).await.contains("/docs/intro"));
    })
    .await;
}
