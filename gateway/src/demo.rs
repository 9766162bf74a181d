//! `--demo`: the embedded mock Figma, its users and their tokens, the
//! commands to try, and with `--login` a small site to sign in to. The
//! mock comes with the feature `demo` (a default one); a build without it
//! refuses `--demo`, and links no mock.

#[cfg(feature = "demo")]
pub(crate) use self::mock::Demo;
use axum::{
    http::{HeaderMap, Uri},
    response::Html,
};

/// Without the feature `demo`: no demo can be made.
#[cfg(not(feature = "demo"))]
pub(crate) enum Demo {}

#[cfg(not(feature = "demo"))]
impl Demo {
    pub(crate) async fn start(
        _resources: &mut Vec<figma_paywall::Resource>,
        _development: bool,
    ) -> Result<(figma_paywall::PaymentsClient, Self), String> {
        Err("--demo needs the embedded mock Figma, which this build left out (--no-default-features): build with the feature `demo`, or drop --demo".to_owned())
    }

    pub(crate) fn print(&self, _addr: std::net::SocketAddr, _login: bool) {
        match *self {}
    }

    pub(crate) fn login(&self, _site: String) -> figma_paywall::login::LoginBuilder {
        match *self {}
    }
}

#[cfg(feature = "demo")]
mod mock {
    use std::{net::SocketAddr, time::Duration};

    use figma_paywall::{
        login::{FigmaLogin, LoginBuilder},
        mock::{MockFigma, DEMO_USERS, MOCK_CLIENT_ID, MOCK_CLIENT_SECRET},
        PaymentsClient, PluginPaymentToken, Resource, UserId,
    };

    /// The demo's plugin, when `--demo` names none.
    const DEMO_PLUGIN: &str = "1122334455";

    /// The mock Figma of `--demo`, and the demo's tokens.
    pub(crate) struct Demo {
        mock: MockFigma,
        tokens: Vec<(&'static str, PluginPaymentToken)>,
        /// `--development`: in development mode.
        development: bool,
    }

    impl Demo {
        /// The mock Figma, on the resource `resources` names first (the demo's
        /// plugin, if none), and a client of it.
        /// With `development`, in development mode: a plugin in
        /// development is let in or not by the status it chose
        /// (setPaymentStatusInDevelopment).
        pub(crate) async fn start(
            resources: &mut Vec<Resource>,
            development: bool,
        ) -> Result<(PaymentsClient, Self), String> {
            if resources.is_empty() {
                resources.push(Resource::plugin(DEMO_PLUGIN).map_err(|e| e.to_string())?);
            }
            let (mock, tokens) = demo_figma(&resources[0]).await?;
            // FIGMA_RATE_LIMIT tries a small budget on the mock too.
            let mut client = mock.client_builder();
            if development {
                client = client.development_mode();
            }
            let client = client
                .rate_limit_from_env()
                .and_then(|b| b.build())
                .map_err(|e| e.to_string())?;
            Ok((
                client,
                Self {
                    mock,
                    tokens,
                    development,
                },
            ))
        }

        /// "Sign in with Figma" against the mock, for the site at `site`.
        pub(crate) fn login(&self, site: String) -> LoginBuilder {
            FigmaLogin::builder(MOCK_CLIENT_ID, MOCK_CLIENT_SECRET, site)
                .authorize_url(format!("{}/oauth", self.mock.url()))
                .api_url(self.mock.url())
        }

        /// The demo's tokens, and commands to try at `addr`.
        pub(crate) fn print(&self, addr: SocketAddr, login: bool) {
            print(&self.tokens, addr, login, &self.mock.url());
            if self.development {
                println!(
                    "# development mode (--development): a plugin in development that chose PAID, any token\ncurl -i http://{addr}/_figma_paywall/auth -H 'X-Figma-Payment-Token: from-figma-in-development' -H 'X-Figma-Payment-Status-In-Development: PAID'\n"
                );
            }
        }
    }

    /// With `--demo`: the demo's tokens, and commands to try at `addr`; with
    /// `--login` too, the site to open in a browser and whom to sign in as.
    fn print(
        tokens: &[(&'static str, PluginPaymentToken)],
        addr: SocketAddr,
        login: bool,
        figma: &str,
    ) {
        println!("\nRunning on the embedded mock Figma (--demo).");
        println!("mock Figma on {figma}");
        if login {
            println!("\nOpen http://{addr}/ in a browser and sign in with the mock Figma as:");
            for (id, handle, who, _) in DEMO_USERS {
                println!("  {handle}, {who} (user {id})");
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
    async fn demo_figma(
        resource: &Resource,
    ) -> Result<(MockFigma, Vec<(&'static str, PluginPaymentToken)>), String> {
        let mock = MockFigma::start()
            .await
            .map_err(|e| format!("could not start the mock Figma: {e}"))?;
        let mut tokens = Vec::new();
        for (id, handle, who, status) in DEMO_USERS {
            let user = UserId::new(id).map_err(|e| e.to_string())?;
            mock.set_status(&user, resource, status);
            mock.add_user(&user, handle);
            tokens.push((
                who,
                mock.issue_token_for(&user, resource, Duration::from_secs(86_400)),
            ));
        }
        Ok((mock, tokens))
    }
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
