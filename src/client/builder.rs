//! [`PaymentsClientBuilder`]: every setting of a client, checked when it is
//! built.

use std::{
    num::NonZeroU32,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};

use tokio::sync::Semaphore;
use url::Url;

use super::{Inner, PaymentsClient, DEFAULT_BASE_URL};
use crate::{
    admission::{Admission, Rate},
    clock::Clock,
    error::ConfigError,
    AccessToken, UserId,
};

/// Builds a [`PaymentsClient`]; see its docs for the defaults.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use figma_paywall::{AccessToken, PaymentsClient};
///
/// let client = PaymentsClient::builder(AccessToken::new("figd_example")?)
///     .base_url("http://127.0.0.1:8080")
///     .timeout(Duration::from_secs(3))
///     .rate_limit(50, 5)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct PaymentsClientBuilder {
    token: AccessToken,
    base_url: String,
    connect_timeout: Duration,
    timeout: Duration,
    pool_idle_timeout: Duration,
    per_minute: u32,
    burst: u32,
    max_waiting: usize,
    /// `None`: two slots of the budget and a second (one without bursts),
    /// within 2 to 10 s.
    max_wait: Option<Duration>,
    clock: Clock,
    /// The mock's creator, when this builder was made by
    /// [`MockFigma::client_builder`](crate::mock::MockFigma::client_builder)
    /// and still points at the mock: development mode names them.
    pub(crate) mock_creator: Option<UserId>,
    development: bool,
}

impl PaymentsClientBuilder {
    pub(super) fn new(token: AccessToken) -> Self {
        Self {
            token,
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(30),
            per_minute: 9,
            burst: 3,
            max_waiting: 256,
            max_wait: None,
            clock: Clock::default(),
            mock_creator: None,
            development: false,
        }
    }

    /// The API's base URL; default `https://api.figma.com`. A path is kept
    /// (`http://localhost:8080/figma` asks `…/figma/v1/payments`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        // Another Figma than the mock: development mode is no longer allowed.
        self.mock_creator = None;
        self
    }

    /// How long to wait for a connection to Figma; default 3 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a whole request to Figma may take; default 5 s, at most
    /// 10 s is accepted. A hung Figma never holds a lookup longer.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept; default 30 s.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The payment-lookup budget: `per_minute` calls a minute, with bursts
    /// of up to `burst`. Default 9 a minute, bursts of 3.
    ///
    /// All lookups made with one access token share one budget at Figma
    /// (Tier 3: about 10 a minute on View and Collab seats, 50 to 150 on Dev
    /// and Full seats). Every clone of this client shares this budget; give
    /// separate clients of one token separate shares of it.
    pub fn rate_limit(mut self, per_minute: u32, burst: u32) -> Self {
        self.per_minute = per_minute;
        self.burst = burst;
        self
    }

    /// Reads the budget from `FIGMA_RATE_LIMIT` and `FIGMA_RATE_BURST`
    /// where they are set; see [`PaymentsClient::from_env`].
    pub fn rate_limit_from_env(mut self) -> Result<Self, ConfigError> {
        let per_minute = positive_var(
            "FIGMA_RATE_LIMIT",
            "lookups a minute for the creator's token, such as FIGMA_RATE_LIMIT=50 on a Dev or Full seat of a Professional plan (10 on View and Collab seats; see https://developers.figma.com/docs/rest-api/rate-limits)",
        )?;
        let burst = positive_var(
            "FIGMA_RATE_BURST",
            "lookups at once, such as FIGMA_RATE_BURST=5",
        )?;
        if let Some(per_minute) = per_minute {
            self.per_minute = per_minute;
            self.burst = (per_minute / 10).max(1);
        }
        if let Some(burst) = burst {
            self.burst = burst;
        }
        Ok(self)
    }

    /// How many lookups may wait for a budget slot at once (default 256) and
    /// for how long (default: two slots of the budget and a second, one slot
    /// without bursts, within 2 to 10 s: 10 s on the default 9 a minute,
    /// 3.4 s on 50 a minute). Slots no caller wants go to refresh-ahead, so
    /// a caller often arrives just after a slot was taken: two callers who
    /// arrive together then both get the next slots instead of a refusal.
    /// Past either bound, a lookup fails at once with
    /// [`Error::Throttled`](crate::Error::Throttled) instead of hanging.
    pub fn queue(mut self, max_waiting: usize, max_wait: Duration) -> Self {
        self.max_waiting = max_waiting;
        self.max_wait = Some(max_wait);
        self
    }

    /// Reads time from `clock` instead of the real clock, for the rate
    /// budget and the 429 back-off: a test moves it forward instead of
    /// sleeping. A [`Paywall`](crate::Paywall) built on this client reads
    /// the same clock.
    ///
    /// ```
    /// use std::time::Duration;
    /// use figma_paywall::{mock::MockClock, AccessToken, PaymentsClient};
    ///
    /// let clock = MockClock::new();
    /// let client = PaymentsClient::builder(AccessToken::new("figd_example")?)
    ///     .clock(&clock)
    ///     .build()?;
    /// clock.advance(Duration::from_secs(60)); // a minute of budget comes back
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "mock")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
    pub fn clock(mut self, clock: &crate::clock::MockClock) -> Self {
        self.clock = clock.clock();
        self
    }

    /// Development mode, for a server on the mock Figma while a plugin is
    /// developed: a gate honours the payment status that a plugin in
    /// development chose with `figma.payments.setPaymentStatusInDevelopment`,
    /// sent by figma-paywall-plugin in
    /// [`DEVELOPMENT_STATUS_HEADER`](crate::identity::DEVELOPMENT_STATUS_HEADER),
    /// with any plugin payment token, for the mock's creator. Figma's own
    /// API ignores that status, so only a client of the mock
    /// ([`MockFigma::client_builder`](crate::mock::MockFigma::client_builder))
    /// can be in development mode: on any other,
    /// [`build`](Self::build) fails. A gate whose client is not in
    /// development mode refuses the header (400 `development_only`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use figma_paywall::{mock::MockFigma, AccessToken, PaymentsClient};
    ///
    /// let mock = MockFigma::start().await?;
    /// let client = mock.client_builder().development_mode().build()?;
    /// assert!(PaymentsClient::builder(AccessToken::new("figd_example")?)
    ///     .development_mode()
    ///     .build()
    ///     .is_err());
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "mock")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
    pub fn development_mode(mut self) -> Self {
        self.development = true;
        self
    }

    /// Builds the client, checking every setting.
    pub fn build(self) -> Result<PaymentsClient, ConfigError> {
        let (payments_url, me_url) = endpoint_urls(&self.base_url)?;
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(10) {
            return Err(ConfigError::InvalidSetting(format!(
                "timeout must be between 1 ms and 10 s, not {:?}",
                self.timeout
            )));
        }
        let per_minute = NonZeroU32::new(self.per_minute).ok_or_else(|| {
            ConfigError::InvalidSetting("rate_limit: per_minute must be at least 1".into())
        })?;
        let burst = NonZeroU32::new(self.burst).ok_or_else(|| {
            ConfigError::InvalidSetting("rate_limit: burst must be at least 1".into())
        })?;
        if self.max_waiting > Semaphore::MAX_PERMITS {
            return Err(ConfigError::InvalidSetting(format!(
                "queue: at most {} lookups can wait",
                Semaphore::MAX_PERMITS
            )));
        }
        let development = match (self.development, self.mock_creator) {
            (false, _) => None,
            (true, Some(creator)) => {
                tracing::warn!(
                    "development mode: gates honour the status a plugin in development sends (X-Figma-Payment-Status-In-Development); never deploy this"
                );
                Some(creator)
            }
            (true, None) => return Err(ConfigError::InvalidSetting(
                "development_mode is for a client of the mock Figma (MockFigma::client_builder) only: Figma's API ignores setPaymentStatusInDevelopment, so a server that asks it must take the status from Figma".into(),
            )),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("figma-paywall/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::HttpClient(Box::new(e)))?;
        Ok(PaymentsClient {
            inner: Arc::new(Inner {
                http,
                token: self.token,
                payments_url,
                me_url,
                timeout: self.timeout,
                admission: Admission::new(
                    Rate {
                        per_minute: per_minute.get(),
                        burst: burst.get(),
                    },
                    self.max_waiting,
                    self.max_wait.unwrap_or_else(|| {
                        (Duration::from_secs(60) * burst.get().min(2) / per_minute.get()
                            + Duration::from_secs(1))
                        .clamp(Duration::from_secs(2), Duration::from_secs(10))
                    }),
                    self.clock.clone(),
                ),
                clock: self.clock,
                development,
                breaker: Default::default(),
                health: Default::default(),
                calls: AtomicU64::new(0),
                latency_micros: AtomicU64::new(0),
            }),
        })
    }
}

/// An environment variable that must be a positive whole number when set.
fn positive_var(name: &'static str, what: &str) -> Result<Option<u32>, ConfigError> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    let value = value.to_string_lossy();
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(ConfigError::InvalidVariable {
            name,
            reason: format!(
                "must be a positive whole number of {what}, not {:?}",
                value.chars().take(40).collect::<String>()
            ),
        }),
    }
}

fn endpoint_urls(base: &str) -> Result<(Url, Url), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidBaseUrl {
        // A URL with credentials in it is not repeated.
        url: if base.contains('@') {
            "<redacted: it contains credentials>".to_owned()
        } else {
            base.to_owned()
        },
        reason,
    };
    let url = Url::parse(base.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https".into()));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(
            "a base URL has no query, fragment or credentials".into(),
        ));
    }
    let join = |p: &str| api_endpoint(&url, p).map_err(|e| invalid(e.to_string()));
    Ok((join("v1/payments")?, join("v1/me")?))
}

/// `path` under the API's base URL, keeping any path the base has
/// (`http://host/figma` + `v1/me` is `http://host/figma/v1/me`).
pub(crate) fn api_endpoint(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_their_path() {
        let (p, m) = endpoint_urls("http://127.0.0.1:9/figma").unwrap();
        assert_eq!(p.as_str(), "http://127.0.0.1:9/figma/v1/payments");
        assert_eq!(m.as_str(), "http://127.0.0.1:9/figma/v1/me");
        let (p, _) = endpoint_urls("https://api.figma.com").unwrap();
        assert_eq!(p.as_str(), "https://api.figma.com/v1/payments");
        for bad in [
            "",
            "api.figma.com",
            "ftp://x",
            "http://x/?a=1",
            "http://u:p@x/",
        ] {
            assert!(endpoint_urls(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_caller_waits_for_the_next_slot_of_the_budget_by_default() {
        let token = || AccessToken::new("t").unwrap();
        let wait = |per_minute, burst| {
            PaymentsClient::builder(token())
                .rate_limit(per_minute, burst)
                .build()
                .unwrap()
                .admission()
                .max_wait()
        };
        // Without bursts, one slot and a second, within 2 to 10 s.
        assert_eq!(wait(10, 1), Duration::from_secs(7));
        assert_eq!(wait(50, 1), Duration::from_millis(2_200));
        assert_eq!(wait(600, 1), Duration::from_secs(2));
        assert_eq!(wait(1, 1), Duration::from_secs(10));
        // With bursts, two slots and a second.
        assert_eq!(wait(50, 5), Duration::from_millis(3_400));
        assert_eq!(wait(30, 3), Duration::from_secs(5));
        assert_eq!(wait(9, 3), Duration::from_secs(10));
        // Or as set.
        let set = PaymentsClient::builder(token())
            .rate_limit(10, 1)
            .queue(8, Duration::from_millis(500))
            .build()
            .unwrap();
        assert_eq!(set.admission().max_wait(), Duration::from_millis(500));
    }

    #[test]
    fn settings_are_checked() {
        let token = || AccessToken::new("t").unwrap();
        assert!(PaymentsClient::builder(token())
            .timeout(Duration::from_secs(11))
            .build()
            .is_err());
        assert!(PaymentsClient::builder(token())
            .rate_limit(0, 1)
            .build()
            .is_err());
        assert!(PaymentsClient::builder(token()).build().is_ok());
    }
}
