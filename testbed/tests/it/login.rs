//! "Sign in with Figma" against the mock's OAuth endpoints, over real HTTP,
//! on the docs_site example.

#[path = "../../../examples/docs_site.rs"]
mod docs_site;

use figma_paywall::mock::MockFigma;
use http::StatusCode;
use reqwest::{header, redirect::Policy, Client, Response};
use url::Url;

struct Site {
    base: String,
    mock: MockFigma,
    http: Client,
}

async fn start_site() -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (app, mock) = docs_site::demo_site(&base).await.unwrap();
    // As the example serves: the connection's address tells clients apart.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = Client::builder().redirect(Policy::none()).build().unwrap();
    Site { base, mock, http }
}

fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn location(response: &Response) -> String {
    response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The `state` of Figma's authorize URL.
fn state_of(authorize: &Url) -> String {
    authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

/// A browser at 127.0.0.`last`.
fn client_at(last: u8) -> Client {
    Client::builder()
        .redirect(Policy::none())
        .local_address(std::net::IpAddr::from([127, 0, 0, last]))
        .build()
        .unwrap()
}

impl Site {
    /// An attacker's try from `http`: start a sign-in, then come back with
    /// a made-up code and the flow's own state. The callback's answer, or
    /// the sign-in's own refusal (and `false`) if it could not begin.
    async fn forge(&self, http: &Client) -> (Response, bool) {
        let begun = http
            .get(format!("{}/auth/login", self.base))
            .send()
            .await
            .unwrap();
        if begun.status() != StatusCode::SEE_OTHER {
            return (begun, false);
        }
        let flow = cookie_pair(&set_cookies(&begun)[0]);
        let state = state_of(&Url::parse(&location(&begun)).unwrap());
        let mut callback = Url::parse(&format!("{}/auth/callback", self.base)).unwrap();
        callback
            .query_pairs_mut()
            .append_pair("code", "made-up")
            .append_pair("state", &state);
        let answer = http
            .get(callback)
            .header(header::COOKIE, flow)
            .send()
            .await
            .unwrap();
        (answer, true)
    }

    /// `POST /auth/logout` with the session `cookie` and `headers`.
    async fn log_out(&self, cookie: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/auth/logout", self.base))
            .header(header::COOKIE, cookie);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Starts a sign-in: the flow cookie and Figma's authorize URL.
    async fn begin(&self, next: &str) -> (String, Url) {
        let response = self
            .http
            .get(format!("{}/auth/login", self.base))
            .query(&[("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let cookie = cookie_pair(&set_cookies(&response)[0]);
        assert!(cookie.starts_with("figma_oauth="));
        (cookie, Url::parse(&location(&response)).unwrap())
    }

    /// Picks `user` on the mock's authorize page: the callback URL Figma
    /// sends the browser to.
    async fn pick(&self, authorize: &Url, user: &str) -> Url {
        let page = self.http.get(authorize.clone()).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        let marker = format!("id=\"user-{user}\" href=\"");
        let start = page.find(&marker).expect("user on the page") + marker.len();
        let href = page[start..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&");
        let grant = self
            .http
            .get(format!("{}{href}", self.mock.url()))
            .send()
            .await
            .unwrap();
        Url::parse(&location(&grant)).unwrap()
    }

    async fn callback(&self, url: &Url, flow_cookie: &str) -> Response {
        self.http
            .get(url.clone())
            .header(header::COOKIE, flow_cookie)
            .send()
            .await
            .unwrap()
    }

    /// A whole sign-in: the session cookie.
    async fn sign_in(&self, user: &str) -> String {
        let (flow, authorize) = self.begin("/docs/intro").await;
        let callback = self.pick(&authorize, user).await;
        let response = self.callback(&callback, &flow).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&response), "/docs/intro");
        set_cookies(&response)
            .into_iter()
            .find(|c| c.starts_with("figma_session="))
            .map(|c| cookie_pair(&c))
            .expect("a session cookie")
    }

    /// The home page's text, for the session `cookie`.
    async fn home(&self, cookie: &str) -> String {
        let response = self
            .http
            .get(format!("{}/", self.base))
            .header(header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    }

    async fn docs(&self, cookie: Option<&str>, accept: &str) -> Response {
        let mut req = self
            .http
            .get(format!("{}/docs/intro", self.base))
            .header(header::ACCEPT, accept);
        if let Some(cookie) = cookie {
            req = req.header(header::COOKIE, cookie);
        }
        req.send().await.unwrap()
    }
}

#[tokio::test]
async fn the_authorize_request_uses_pkce_and_the_identity_scope() {
    let site = start_site().await;
    let (_, authorize) = site.begin("/docs/intro").await;
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(authorize.path(), "/oauth");
    assert_eq!(q["client_id"], figma_paywall::mock::MOCK_CLIENT_ID);
    assert_eq!(q["scope"], "current_user:read");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["redirect_uri"], format!("{}/auth/callback", site.base));
    assert!(q["state"].len() >= 43);
}

#[tokio::test]
async fn buyers_sign_in_and_read_the_docs_and_non_buyers_get_the_paywall() {
    let site = start_site().await;
    // Signed out: browsers are sent to sign in, API clients get 401 JSON.
    let response = site.docs(None, "text/html").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&response), "/auth/login?next=%2Fdocs%2Fintro");
    let response = site.docs(None, "application/json").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // A buyer of the file; one in a trial of the plugin, not the file,
    // whom or_buyers_of lets in too.
    for (user, welcome) in [
        ("2001", "Welcome, Ada (PAID for COMMUNITY_FILE"),
        ("2002", "Welcome, Cleo (TRIAL for PLUGIN"),
    ] {
        let session = site.sign_in(user).await;
        let response = site.docs(Some(&session), "text/html").await;
        assert_eq!(response.status(), StatusCode::OK);
        let page = response.text().await.unwrap();
        assert!(page.contains(welcome), "{page}");
    }

    let session = site.sign_in("2003").await;
    let response = site.docs(Some(&session), "text/html").await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("https://www.figma.com/community/file/9876543210"),
        "{page}"
    );
    let response = site.docs(Some(&session), "application/json").await;
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["reason"], "not_paid");
}

#[tokio::test]
async fn the_visitor_is_greeted_by_handle_and_a_failing_profile_does_not_stop_sign_in() {
    let site = start_site().await;
    let me_before = site.mock.me_requests();
    let session = site.sign_in("2003").await;
    // One GET /v1/me at sign-in, with the visitor's OAuth token; none on
    // later requests (the profile is in the session).
    assert_eq!(site.mock.me_requests(), me_before + 1);
    let home = site.home(&session).await;
    assert!(home.contains("Signed in as Bob."), "{home}");
    assert_eq!(site.mock.me_requests(), me_before + 1);

    // Figma fails /v1/me: the visitor is still signed in, by user ID.
    site.mock
        .push_fault(figma_paywall::mock::Fault::Status(500));
    let session = site.sign_in("2003").await;
    let home = site.home(&session).await;
    assert!(home.contains("Signed in as Figma user 2003."), "{home}");
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_cleared_on_logout() {
    let site = start_site().await;
    let (flow, authorize) = site.begin("/").await;
    let callback = site.pick(&authorize, "2001").await;
    let response = site.callback(&callback, &flow).await;
    let session = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("figma_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(session.contains(attribute), "{session}");
    }
    // The user ID is encrypted, not readable in the cookie.
    assert!(!cookie_pair(&session).contains("2001"));
    let logout = site.log_out(&cookie_pair(&session), &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let cleared = set_cookies(&logout)
        .into_iter()
        .find(|c| c.starts_with("figma_session="))
        .unwrap();
    assert!(
        cleared.contains("Max-Age=0") || cleared.contains("Expires=Thu, 01 Jan 1970"),
        "{cleared}"
    );
}

#[tokio::test]
async fn logging_out_ends_the_session_not_only_the_cookie() {
    let site = start_site().await;
    // 2001 bought the demo's Community file.
    let copied = site.sign_in("2001").await;
    let other_device = site.sign_in("2001").await;
    assert_eq!(site.docs(Some(&copied), "text/html").await.status(), 200);
    let logout = site.log_out(&copied, &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    // A copy of the logged-out cookie no longer signs anyone in…
    let response = site.docs(Some(&copied), "text/html").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(location(&response).starts_with("/auth/login"));
    // …and the user's other sign-in is untouched.
    assert_eq!(
        site.docs(Some(&other_device), "text/html").await.status(),
        200
    );
}

#[tokio::test]
async fn a_bad_state_is_refused_before_any_exchange() {
    let site = start_site().await;
    let (flow, authorize) = site.begin("/docs/intro").await;
    // Another state, and the flow's own cut short by one character.
    let forged: [fn(&str) -> String; 2] = [|_| "forged".repeat(8), |v| v[..v.len() - 1].to_owned()];
    for forge in forged {
        let mut callback = site.pick(&authorize, "2001").await;
        let pairs: Vec<(String, String)> = callback
            .query_pairs()
            .into_owned()
            .map(|(k, v)| if k == "state" { (k, forge(&v)) } else { (k, v) })
            .collect();
        callback.query_pairs_mut().clear().extend_pairs(pairs);
        let response = site.callback(&callback, &flow).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(!set_cookies(&response)
            .iter()
            .any(|c| c.starts_with("figma_session=")));
        assert_eq!(site.mock.token_exchanges(), 0);
    }
    // Without the flow cookie (a callback sent to another browser) too.
    let callback = site.pick(&authorize, "2001").await;
    let response = site.callback(&callback, "").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(site.mock.token_exchanges(), 0);
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let site = start_site().await;
    let (flow, authorize) = site.begin("/").await;
    let callback = site.pick(&authorize, "2001").await;
    assert_eq!(
        site.callback(&callback, &flow).await.status(),
        StatusCode::SEE_OTHER
    );
    // The same code again, even with a fresh flow whose state it carries.
    let (flow2, authorize2) = site.begin("/").await;
    let state2 = state_of(&authorize2);
    let mut replay = callback.clone();
    let code: String = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    replay
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &state2);
    let response = site.callback(&replay, &flow2).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("expired or was already used"));
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let site = start_site().await;
    site.mock.set_code_lifetime(std::time::Duration::ZERO);
    let (flow, authorize) = site.begin("/").await;
    let callback = site.pick(&authorize, "2001").await; // a code expired at once
    let response = site.callback(&callback, &flow).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!set_cookies(&response)
        .iter()
        .any(|c| c.starts_with("figma_session=")));
}

#[tokio::test]
async fn a_tampered_session_cookie_is_signed_out() {
    let site = start_site().await;
    let session = site.sign_in("2001").await;
    assert_eq!(
        site.docs(Some(&session), "text/html").await.status(),
        StatusCode::OK
    );
    let (name, value) = session.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let response = site.docs(Some(&tampered), "text/html").await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "tampered cookie accepted"
    );
    // A cookie made with another key (another site) is no better.
    let other = start_site().await;
    let foreign = other.sign_in("2001").await;
    assert_eq!(
        site.docs(Some(&foreign), "application/json").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn next_never_leaves_the_site() {
    let site = start_site().await;
    let (flow, authorize) = site.begin("https://evil.example/steal").await;
    let callback = site.pick(&authorize, "2001").await;
    let response = site.callback(&callback, &flow).await;
    assert_eq!(location(&response), "/");
}

#[tokio::test]
async fn no_code_cookie_or_secret_reaches_the_logs() {
    let logs = crate::common::CapturedLogs::start();
    let site = start_site().await;
    let (flow, authorize) = site.begin("/docs/intro").await;
    let callback = site.pick(&authorize, "2003").await;
    let code: String = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let response = site.callback(&callback, &flow).await;
    let session = set_cookies(&response)
        .into_iter()
        .find(|c| c.starts_with("figma_session="))
        .map(|c| cookie_pair(&c))
        .unwrap();
    // Replay (refused) and a paywalled visit, to log the refusal paths too.
    site.callback(&callback, &flow).await;
    site.docs(Some(&session), "text/html").await;
    let text = logs.text();
    assert!(text.contains("signed in with Figma"), "{text}");
    for secret in [
        code.as_str(),
        flow.split_once('=').unwrap().1,
        session.split_once('=').unwrap().1,
        figma_paywall::mock::MOCK_CLIENT_SECRET,
    ] {
        assert!(!text.contains(secret), "{secret} in logs");
    }
}

#[tokio::test]
async fn a_captured_flow_cookie_is_good_for_one_callback() {
    let site = start_site().await;
    let (flow, authorize) = site.begin("/").await;
    let state = state_of(&authorize);
    // Someone who captured the flow cookie tries forged codes with it.
    for i in 0..20 {
        let mut forged = Url::parse(&format!("{}/auth/callback", site.base)).unwrap();
        forged
            .query_pairs_mut()
            .append_pair("code", &format!("code_forged_{i}"))
            .append_pair("state", &state);
        let response = site.callback(&forged, &flow).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        site.mock.token_exchanges(),
        1,
        "each forged code cost an exchange"
    );
}

#[tokio::test]
async fn anonymous_sign_ins_cannot_spend_token_exchanges_without_bound() {
    let site = start_site().await;
    // One client's loop: its own share of token exchanges (3 at once), then
    // only what leaves half the replica's burst (2 more), then 429 with
    // when to come back, before Figma hears of them.
    let attacker = client_at(2);
    let mut refused = 0;
    for _ in 0..10 {
        let (answer, begun) = site.forge(&attacker).await;
        assert!(begun, "sign-ins begun have a budget of their own");
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(answer.headers().contains_key(header::RETRY_AFTER));
            refused += 1;
        }
    }
    // (One more if the loop took over 2 s: the replica's budget refills.)
    let spent = site.mock.token_exchanges();
    assert!((5..=6).contains(&spent), "{spent} token exchanges");
    assert_eq!(refused, 10 - spent);
    // It locked nobody else out: a visitor elsewhere signs in.
    site.sign_in("2001").await;
    // Many clients at once: no more than the replica's budget (30 a minute
    // in bursts of 10) reaches Figma; the rest are refused.
    let mut refused = 0;
    for last in 10..50 {
        let (answer, _) = site.forge(&client_at(last)).await;
        refused += usize::from(answer.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    let exchanges = site.mock.token_exchanges();
    assert!(
        (10..=12).contains(&exchanges),
        "{exchanges} token exchanges"
    );
    assert_eq!(refused, 40 - (exchanges - spent - 1));
}

#[tokio::test]
async fn another_site_cannot_sign_a_visitor_out() {
    let site = start_site().await;
    let session = site.sign_in("2001").await;
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let response = site.log_out(&session, &[(name, value)]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
        assert_eq!(site.docs(Some(&session), "text/html").await.status(), 200);
    }
    // From the site itself, it signs out.
    let response = site
        .log_out(
            &session,
            &[("origin", &site.base), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        site.docs(Some(&session), "text/html").await.status(),
        StatusCode::SEE_OTHER
    );
}

/// Two replicas of the docs site, sharing the session key and a Redis tier.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_on_one_replica_signs_out_on_every_replica() {
    use crate::redis::{prefix, redis_url, wait_until_listening};
    use figma_paywall::{
        login::FigmaLogin,
        mock::{MOCK_CLIENT_ID, MOCK_CLIENT_SECRET},
        redis::RedisTier,
        PaymentStatus, Paywall, Resource, UserId,
    };
    let url = redis_url();
    let prefix = prefix();
    let mock = MockFigma::start().await.unwrap();
    let file = Resource::community_file(docs_site::DEMO_FILE).unwrap();
    let plugin = Resource::plugin(docs_site::DEMO_PLUGIN).unwrap();
    for id in ["2001", "2004"] {
        let user = UserId::new(id).unwrap();
        mock.add_user(&user, "a buyer");
        mock.set_status(&user, &file, PaymentStatus::Paid);
    }
    let key = [7u8; 64];
    let mut bases = Vec::new();
    let mut logins = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let tier = RedisTier::builder(url.as_str())
            .prefix(&prefix)
            .build()
            .unwrap();
        let login = FigmaLogin::builder(MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, &base)
            .authorize_url(format!("{}/oauth", mock.url()))
            .api_url(mock.url())
            .key(&key)
            .unwrap()
            .redis(tier)
            .build()
            .unwrap();
        let app = docs_site::site(
            Paywall::new(mock.client().unwrap()),
            login.clone(),
            [file.clone(), plugin.clone()],
        );
        // As the example serves: the connection's address tells clients apart.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        bases.push(base);
        logins.push(login);
    }
    let mut redis = crate::redis::connect(&url).await;
    wait_until_listening(&mut redis, &format!("{prefix}signout:"), 2).await;
    let http = Client::builder().redirect(Policy::none()).build().unwrap();
    let a = Site {
        base: bases[0].clone(),
        mock,
        http: http.clone(),
    };
    // Signed in on one replica: the session reads on the other (one key).
    let docs_on_b = |cookie: String| {
        let http = http.clone();
        let url = format!("{}/docs/intro", bases[1]);
        async move {
            http.get(url)
                .header(header::ACCEPT, "text/html")
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let until_signed_out = |cookie: String| {
        let docs_on_b = &docs_on_b;
        async move {
            crate::common::eventually("the sign-out reached the other replica", async || {
                docs_on_b(cookie.clone()).await != StatusCode::OK
            })
            .await;
            assert_eq!(docs_on_b(cookie).await, StatusCode::SEE_OTHER);
        }
    };
    let session = a.sign_in("2001").await;
    assert_eq!(docs_on_b(session.clone()).await, StatusCode::OK);
    // A logout on the first ends the session on the second.
    let logout = a.log_out(&session, &[]).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    until_signed_out(session).await;
    // So does sign_out_user, and sign_out_everyone.
    let session = a.sign_in("2004").await;
    let other = a.sign_in("2001").await;
    assert_eq!(docs_on_b(session.clone()).await, StatusCode::OK);
    logins[0].sign_out_user(&UserId::new("2004").unwrap());
    until_signed_out(session).await;
    assert_eq!(docs_on_b(other.clone()).await, StatusCode::OK);
    logins[0].sign_out_everyone();
    until_signed_out(other).await;
}
