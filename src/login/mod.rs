//! "Sign in with Figma" for creator websites (feature `login`).
//!
//! [`FigmaLogin`] is a small router for Figma's OAuth 2 authorization-code
//! flow with PKCE (scope `current_user:read`), which learns a visitor's Figma
//! user ID and keeps it in an encrypted, `HttpOnly`, `SameSite=Lax` cookie;
//! its [`layer`](FigmaLogin::layer) puts a [`UserId`] on every request of
//! a signed-in visitor, which is what [`RequirePaid`](crate::RequirePaid)
//! reads, and their [`Profile`] (handle and avatar) for a page to show.
//! Figma's access token is used once, to learn the ID and ask `GET /v1/me`
//! for the profile, and then dropped.
//!
//! Routes (under `/auth` by default): `GET /auth/login?next=/docs` sends the
//! visitor to Figma, `GET /auth/callback` is where Figma sends them back
//! (register `https://your.site/auth/callback` as the app's callback URL),
//! and `POST /auth/logout` signs them out.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use figma_paywall::{login::FigmaLogin, RequirePaid};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // FIGMA_CLIENT_ID and FIGMA_CLIENT_SECRET from the environment.
//! let login = FigmaLogin::from_env("https://docs.example.com")?;
//! let app: Router = Router::new()
//!     .route("/docs/intro", get(|| async { "for buyers" }))
//!     .layer(RequirePaid::community_file("9876543210"))
//!     .merge(login.router())
//!     .layer(login.layer());
//! # Ok(()) }
//! ```

mod budget;
mod layer;
mod profile;
mod routes;
mod session;
#[cfg(feature = "redis")]
mod shared;

use std::{fmt, sync::Arc, time::Duration};

use axum::{routing::get, Router};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use base64::Engine;
use url::Url;

use self::session::{Session, Sessions, SignOut};
pub use self::{
    layer::{SignedIn, SignedInLayer},
    profile::Profile,
};
use crate::UserId;

/// Figma's authorization page.
pub const DEFAULT_AUTHORIZE_URL: &str = "https://www.figma.com/oauth";

/// The scope that reveals who the visitor is.
pub const SCOPE: &str = "current_user:read";

const FLOW_COOKIE: &str = "figma_oauth";

/// How long a visitor has to come back from Figma's authorization page.
const FLOW_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Why a [`FigmaLogin`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginConfigError {
    /// A required environment variable is unset.
    #[error("{0} is not set: create an OAuth app at https://www.figma.com/developers/apps and export its client ID and secret as FIGMA_CLIENT_ID and FIGMA_CLIENT_SECRET")]
    MissingVariable(&'static str),
    /// A URL does not parse.
    #[error("{what} {url:?} is not a usable URL: {reason}")]
    InvalidUrl {
        /// Which URL.
        what: &'static str,
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The session key is not 64 bytes of base64.
    #[error("FIGMA_SESSION_KEY must be at least 64 random bytes, base64-encoded")]
    InvalidKey,
    /// An environment variable is set but unusable.
    #[error("{name} {reason}")]
    InvalidVariable {
        /// The variable.
        name: &'static str,
        /// What it must be.
        reason: &'static str,
    },
    /// The HTTP client could not be built; the source is the HTTP
    /// library's error.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// "Sign in with Figma": the OAuth routes and the layer that reads the
/// session they set. Cheap to clone.
#[derive(Clone)]
pub struct FigmaLogin {
    inner: Arc<Config>,
}

struct Config {
    client_id: String,
    client_secret: String,
    authorize_url: Url,
    token_url: Url,
    /// `GET /v1/me`, for a visitor's handle and avatar at sign-in.
    me_url: Url,
    callback_url: Url,
    prefix: String,
    key: Key,
    cookie_name: String,
    secure: bool,
    session_lifetime: Duration,
    sessions: Arc<Sessions>,
    /// Sign-outs told to and heard from other replicas (`redis`).
    #[cfg(feature = "redis")]
    shared: Option<Arc<shared::SharedSignOuts>>,
    http: reqwest::Client,
    /// The states of flows already come back: a flow is accepted once.
    used_flows: moka::sync::Cache<String, ()>,
    /// Token exchanges at Figma and sign-ins begun, for the replica and
    /// for each client.
    sign_ins: budget::SignIns,
}

impl fmt::Debug for FigmaLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FigmaLogin")
            .field("client_id", &self.inner.client_id)
            .field("client_secret", &"<redacted>")
            .field("authorize_url", &self.inner.authorize_url.as_str())
            .field("token_url", &self.inner.token_url.as_str())
            .field("callback_url", &self.inner.callback_url.as_str())
            .finish_non_exhaustive()
    }
}

/// Builds a [`FigmaLogin`].
///
/// ```
/// use std::time::Duration;
/// use figma_paywall::login::FigmaLogin;
///
/// let login = FigmaLogin::builder("client-id", "client-secret", "http://127.0.0.1:3000")
///     .session_lifetime(Duration::from_secs(24 * 3600))
///     .build()?;
/// # Ok::<(), figma_paywall::login::LoginConfigError>(())
/// ```
#[must_use]
pub struct LoginBuilder {
    client_id: String,
    client_secret: String,
    site_url: String,
    authorize_url: String,
    api_url: String,
    prefix: String,
    key: Option<Key>,
    cookie_name: String,
    session_lifetime: Duration,
    session_version: u32,
    sign_ins_per_minute: u32,
    client_key: Option<Arc<dyn crate::identity::ClientKeySource>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis::RedisTier>,
}

impl fmt::Debug for LoginBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginBuilder")
            .field("client_id", &self.client_id)
            .field("site_url", &self.site_url)
            .finish_non_exhaustive()
    }
}

impl LoginBuilder {
    /// Figma's authorization page; default `https://www.figma.com/oauth`
    /// (point it at the mock's `/oauth` in tests).
    pub fn authorize_url(mut self, url: impl Into<String>) -> Self {
        self.authorize_url = url.into();
        self
    }

    /// Figma's API base URL, for the token exchange at `/v1/oauth/token`;
    /// default `https://api.figma.com`.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// Where the routes live; default `/auth`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key that encrypts and signs cookies (64 bytes or more). Default:
    /// a random key, so sessions end when the process restarts and are not
    /// shared by replicas; give all replicas the same key.
    pub fn key(mut self, key: &[u8]) -> Result<Self, LoginConfigError> {
        self.key = Some(Key::try_from(key).map_err(|_| LoginConfigError::InvalidKey)?);
        Ok(self)
    }

    /// The session cookie's name; default `figma_session`.
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// How long a sign-in lasts; default 7 days.
    pub fn session_lifetime(mut self, lifetime: Duration) -> Self {
        self.session_lifetime = lifetime;
        self
    }

    /// The session version (default 0): a session signed in under another
    /// version is over. Raising it signs everybody out on every replica at
    /// the next deploy, without changing the cookie key
    /// (`FIGMA_SESSION_VERSION`).
    ///
    /// ```
    /// # use figma_paywall::login::FigmaLogin;
    /// let login = FigmaLogin::builder("client-id", "client-secret", "https://docs.example.com")
    ///     .session_version(2) // everyone signed in before is signed out
    ///     .build()?;
    /// # Ok::<(), figma_paywall::login::LoginConfigError>(())
    /// ```
    pub fn session_version(mut self, version: u32) -> Self {
        self.session_version = version;
        self
    }

    /// The most sign-ins a minute this replica completes (default 30, in
    /// bursts of a third of it, at least 5). Each spends a token exchange
    /// at Figma with your app's client credentials, which anyone can start
    /// by following the sign-in link; past it, a sign-in is refused with
    /// 429 and `Retry-After` before Figma is asked.
    ///
    /// ```
    /// # use figma_paywall::login::FigmaLogin;
    /// let login = FigmaLogin::builder("client-id", "client-secret", "https://docs.example.com")
    ///     .sign_ins_per_minute(120) // a busy site
    ///     .build()?;
    /// # Ok::<(), figma_paywall::login::LoginConfigError>(())
    /// ```
    pub fn sign_ins_per_minute(mut self, per_minute: u32) -> Self {
        self.sign_ins_per_minute = per_minute;
        self
    }

    /// Tells clients apart by `source`, for what each may spend of
    /// sign-ins. Within its share, a fifth of
    /// [`sign_ins_per_minute`](Self::sign_ins_per_minute) (at least 3 a
    /// minute), a client takes from the replica's whole budget; past it,
    /// only while more than half the burst would be left, which clients
    /// within their shares keep, so that one client cannot lock everyone
    /// else out. Sign-ins begun have a budget twice as large, shared the
    /// same way. Past them, 429 with `Retry-After`.
    ///
    /// By default a client is the connection's address, where the app
    /// serves with `into_make_service_with_connect_info::<SocketAddr>()`
    /// (without it, only the replica's budget holds). Behind a proxy, use
    /// [`ForwardedFor`](crate::identity::ForwardedFor) with the proxy's
    /// addresses, as for [`RequirePaidLayer::client_key`](crate::RequirePaidLayer::client_key).
    ///
    /// ```
    /// use figma_paywall::{identity::ForwardedFor, login::FigmaLogin};
    ///
    /// let login = FigmaLogin::builder("client-id", "client-secret", "https://docs.example.com")
    ///     .client_key(ForwardedFor::trusting(["10.0.0.0/8".parse()?]))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_key(mut self, source: impl crate::identity::ClientKeySource) -> Self {
        self.client_key = Some(Arc::new(source));
        self
    }

    /// Replicas sharing `tier` tell each other of sign-outs (a logout,
    /// [`sign_out_user`](FigmaLogin::sign_out_user),
    /// [`sign_out_everyone`](FigmaLogin::sign_out_everyone)), sealed under
    /// the session key they share ([`key`](Self::key)), so that a session
    /// ended on one replica signs in on none. Without it, each replica ends
    /// sessions for itself. Feature `redis`.
    ///
    /// ```no_run
    /// # use figma_paywall::{login::FigmaLogin, redis::RedisTier};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tier = RedisTier::builder(std::env::var("REDIS_URL")?).build()?;
    /// let login = FigmaLogin::builder("client-id", "client-secret", "https://docs.example.com")
    ///     .key(&std::fs::read("/run/secrets/session-key")?)?
    ///     .redis(tier)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, tier: crate::redis::RedisTier) -> Self {
        self.redis = Some(tier);
        self
    }

    /// Builds the login.
    pub fn build(self) -> Result<FigmaLogin, LoginConfigError> {
        let parse = |what: &'static str, url: &str| {
            Url::parse(url).map_err(|e| LoginConfigError::InvalidUrl {
                what,
                url: url.to_owned(),
                reason: e.to_string(),
            })
        };
        let prefix = format!("/{}", self.prefix.trim_matches('/'));
        let site = parse("the site URL", &self.site_url)?;
        // The routes are served from the site's root, whatever path the
        // site URL has.
        let callback_url =
            site.join(&format!("{prefix}/callback"))
                .map_err(|e| LoginConfigError::InvalidUrl {
                    what: "the site URL",
                    url: self.site_url.clone(),
                    reason: e.to_string(),
                })?;
        let api = parse("the Figma API URL", &self.api_url)?;
        // `path` under the API's base URL, as the client joins its own.
        let endpoint = |path: &str| {
            crate::client::api_endpoint(&api, path).map_err(|e| LoginConfigError::InvalidUrl {
                what: "the Figma API URL",
                url: self.api_url.clone(),
                reason: e.to_string(),
            })
        };
        let token_url = endpoint("v1/oauth/token")?;
        let me_url = endpoint("v1/me")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LoginConfigError::HttpClient(Box::new(e)))?;
        let key = self.key.unwrap_or_else(Key::generate);
        let sessions = Arc::new(Sessions::new(self.session_version, self.session_lifetime));
        #[cfg(feature = "redis")]
        let shared = self
            .redis
            .map(|tier| shared::SharedSignOuts::start(tier, key.signing(), sessions.clone()));
        Ok(FigmaLogin {
            inner: Arc::new(Config {
                #[cfg(feature = "redis")]
                shared,
                secure: callback_url.scheme() == "https",
                client_id: self.client_id,
                client_secret: self.client_secret,
                authorize_url: parse("the authorize URL", &self.authorize_url)?,
                token_url,
                me_url,
                callback_url,
                prefix,
                key,
                cookie_name: self.cookie_name,
                session_lifetime: self.session_lifetime,
                sessions,
                http,
                used_flows: moka::sync::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(FLOW_LIFETIME)
                    .build(),
                sign_ins: budget::SignIns::new(self.sign_ins_per_minute, self.client_key),
            }),
        })
    }
}

impl FigmaLogin {
    /// Starts a builder. `site_url` is the site's public base URL; Figma
    /// sends visitors back to `{site_url}/auth/callback`.
    pub fn builder(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        site_url: impl Into<String>,
    ) -> LoginBuilder {
        LoginBuilder {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            site_url: site_url.into(),
            authorize_url: DEFAULT_AUTHORIZE_URL.to_owned(),
            api_url: crate::client::DEFAULT_BASE_URL.to_owned(),
            prefix: "/auth".to_owned(),
            key: None,
            cookie_name: "figma_session".to_owned(),
            session_lifetime: Duration::from_secs(7 * 24 * 3600),
            session_version: 0,
            sign_ins_per_minute: 30,
            client_key: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// A login configured from the environment: `FIGMA_CLIENT_ID` and
    /// `FIGMA_CLIENT_SECRET` (required), `FIGMA_OAUTH_URL` (the authorize
    /// page), `FIGMA_API_URL` (the token exchange's base URL),
    /// `FIGMA_SESSION_KEY` (64+ bytes, base64), `FIGMA_SIGN_INS_PER_MINUTE`
    /// and `FIGMA_SESSION_VERSION`
    /// (see [`LoginBuilder::session_version`]) where set.
    pub fn from_env(site_url: impl Into<String>) -> Result<Self, LoginConfigError> {
        Self::builder_from_env(site_url)?.build()
    }

    /// [`from_env`](Self::from_env)'s builder, to set more on (such as
    /// [`LoginBuilder::redis`]) before building.
    ///
    /// ```no_run
    /// # use figma_paywall::login::FigmaLogin;
    /// let login = FigmaLogin::builder_from_env("https://docs.example.com")?
    ///     .sign_ins_per_minute(120)
    ///     .build()?;
    /// # Ok::<(), figma_paywall::login::LoginConfigError>(())
    /// ```
    pub fn builder_from_env(site_url: impl Into<String>) -> Result<LoginBuilder, LoginConfigError> {
        let var = |name: &'static str| {
            std::env::var(name).map_err(|_| LoginConfigError::MissingVariable(name))
        };
        let mut builder = Self::builder(
            var("FIGMA_CLIENT_ID")?,
            var("FIGMA_CLIENT_SECRET")?,
            site_url,
        );
        if let Ok(url) = var("FIGMA_OAUTH_URL") {
            builder = builder.authorize_url(url);
        }
        if let Ok(url) = var("FIGMA_API_URL") {
            builder = builder.api_url(url);
        }
        if let Ok(key) = var("FIGMA_SESSION_KEY") {
            let key = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|_| LoginConfigError::InvalidKey)?;
            builder = builder.key(&key)?;
        }
        if let Ok(version) = var("FIGMA_SESSION_VERSION") {
            let version =
                version
                    .trim()
                    .parse()
                    .map_err(|_| LoginConfigError::InvalidVariable {
                        name: "FIGMA_SESSION_VERSION",
                        reason: "must be a whole number from 0 to 4294967295",
                    })?;
            builder = builder.session_version(version);
        }
        if let Ok(per_minute) = var("FIGMA_SIGN_INS_PER_MINUTE") {
            let per_minute =
                per_minute
                    .trim()
                    .parse()
                    .map_err(|_| LoginConfigError::InvalidVariable {
                        name: "FIGMA_SIGN_INS_PER_MINUTE",
                        reason: "must be a whole number from 1 to 4294967295",
                    })?;
            builder = builder.sign_ins_per_minute(per_minute);
        }
        Ok(builder)
    }

    /// The sign-in routes: `{prefix}/login`, `{prefix}/callback` and
    /// `{prefix}/logout`.
    pub fn router<S>(&self) -> Router<S> {
        let p = &self.inner.prefix;
        Router::new()
            .route(&format!("{p}/login"), get(routes::login))
            .route(&format!("{p}/callback"), get(routes::callback))
            // POST only: a link or image on another site cannot sign anyone out.
            .route(&format!("{p}/logout"), axum::routing::post(routes::logout))
            .with_state(self.clone())
    }

    /// The layer that puts a [`UserId`] on requests of signed-in
    /// visitors. Put it outside the [`RequirePaid`](crate::RequirePaid)
    /// layers.
    pub fn layer(&self) -> SignedInLayer {
        SignedInLayer {
            login: self.clone(),
        }
    }

    /// The cookies sign-in sets (the session's and the sign-in flow's):
    /// a proxy in front of a site drops them before the site sees the
    /// request, as the gateway does, since each holds a sealed session.
    ///
    /// ```no_run
    /// # use figma_paywall::login::FigmaLogin;
    /// # fn run(login: FigmaLogin) {
    /// assert!(login.cookie_names().contains(&"figma_session"));
    /// # }
    /// ```
    pub fn cookie_names(&self) -> [&str; 2] {
        [self.inner.cookie_name.as_str(), FLOW_COOKIE]
    }

    /// Where to send a visitor to sign in and come back to `next`.
    pub fn login_path(&self, next: &str) -> String {
        let mut url = Url::parse("http://x/").expect("valid URL");
        url.set_path(&format!("{}/login", self.inner.prefix));
        url.query_pairs_mut().append_pair("next", next);
        format!("{}?{}", url.path(), url.query().unwrap_or_default())
    }

    /// Signs `user` out of every session they started until now: for a
    /// refund, a ban, or "sign out everywhere" in your account page. On
    /// every replica that shares a Redis tier
    /// ([`LoginBuilder::redis`]); without one, on this replica only (other
    /// replicas keep their sessions until they expire, or until you raise
    /// [`session_version`](LoginBuilder::session_version) or change the
    /// key).
    pub fn sign_out_user(&self, user: &UserId) {
        let out = self.inner.sessions.sign_out_user(user);
        self.tell(&out);
    }

    /// Signs everybody out of every session started until now (on every
    /// replica as [`sign_out_user`](Self::sign_out_user) says).
    pub fn sign_out_everyone(&self) {
        let out = self.inner.sessions.sign_out_everyone();
        self.tell(&out);
    }

    /// Tells the other replicas of a sign-out, if they share a tier.
    fn tell(&self, out: &SignOut) {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            shared.tell(out);
        }
        #[cfg(not(feature = "redis"))]
        let _ = out;
    }

    /// The session of a request's cookies, if it still signs its user in.
    fn session(&self, headers: &http::HeaderMap) -> Option<Session> {
        let jar = PrivateCookieJar::from_headers(headers, self.inner.key.clone());
        let session: Session =
            serde_json::from_str(jar.get(&self.inner.cookie_name)?.value()).ok()?;
        self.inner.sessions.valid(&session).then_some(session)
    }

    fn cookie<'c>(
        &self,
        name: String,
        value: String,
        path: String,
        max_age: Duration,
    ) -> Cookie<'c> {
        Cookie::build((name, value))
            .path(path)
            .http_only(true)
            .secure(self.inner.secure)
            .same_site(SameSite::Lax)
            .max_age(cookie_duration(max_age))
            .build()
    }
}

fn cookie_duration(d: Duration) -> time::Duration {
    time::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Now, in Unix seconds.
fn unix_now() -> u64 {
    session::unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let login = FigmaLogin::builder("id", "very-secret", "http://127.0.0.1:1")
            .build()
            .unwrap();
        assert!(!format!("{login:?}").contains("very-secret"));
        assert_eq!(
            login.inner.callback_url.as_str(),
            "http://127.0.0.1:1/auth/callback"
        );
        assert_eq!(
            login.login_path("/docs/a b"),
            "/auth/login?next=%2Fdocs%2Fa+b"
        );
    }
}
