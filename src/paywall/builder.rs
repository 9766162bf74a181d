//! [`PaywallBuilder`]: the cache's size and lifetimes, and its tier.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use moka::sync::Cache;

use super::{
    entry::Entry,
    entry::{EntryExpiry, Lifetimes},
    flight::Flights,
    index::UserIndex,
    key::{CacheKey, KeyHasher},
    refused::Refused,
    Inner, Paywall,
};
use crate::{
    credits::Counts,
    stats::Counters,
    tier::{Invalidations, Keyring, Tier},
    ConfigError, PaymentsClient,
};

fn short_key() -> ConfigError {
    ConfigError::InvalidSetting(format!(
        "a signing key must be at least {} bytes of secret (for example the output of `openssl rand -hex 32`)",
        crate::tier::seal::MIN_SECRET_LEN
    ))
}

/// Builds a [`Paywall`]; see its docs for the defaults.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use figma_paywall::{AccessToken, Paywall, PaymentsClient};
///
/// let client = PaymentsClient::new(AccessToken::new("figd_example")?)?;
/// let paywall = Paywall::builder(client)
///     .max_entries(100_000)
///     .paid_lifetime(Duration::from_secs(30 * 60))
///     .unpaid_lifetime(Duration::from_secs(3))
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct PaywallBuilder {
    client: PaymentsClient,
    max_entries: u64,
    lifetimes: Lifetimes,
    /// The store's file, opened by `build`.
    #[cfg(feature = "store")]
    store: Option<std::path::PathBuf>,
    shared: Option<super::Shared>,
    keyring: Option<Keyring>,
    client_share: Option<u32>,
    /// The first setting that could not be used, which `build` returns.
    error: Option<ConfigError>,
}

impl PaywallBuilder {
    pub(super) fn new(client: PaymentsClient) -> Self {
        Self {
            client,
            max_entries: 1_000_000,
            lifetimes: Lifetimes::default(),
            #[cfg(feature = "store")]
            store: None,
            shared: None,
            keyring: None,
            client_share: None,
            error: None,
        }
    }

    /// Keeps the first error of a setting, for `build` to return.
    fn failed(mut self, error: ConfigError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// The most answers kept (default 1,000,000); least used go first.
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// How long a `PAID` answer is used without asking Figma again (default
    /// 10 minutes). A refund takes up to this long to take effect.
    pub fn paid_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.paid = lifetime;
        self
    }

    /// How long a `TRIAL` answer is used (default 2 minutes).
    pub fn trial_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.trial = lifetime;
        self
    }

    /// How long `UNPAID` and every other refusing answer is used (default
    /// 5 s), so that a purchase takes effect within seconds. Call
    /// [`Paywall::invalidate_user`] after a checkout to make it immediate.
    pub fn unpaid_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetimes.unpaid = lifetime;
        self
    }

    /// How long past its lifetime a `PAID` or `TRIAL` answer may still be
    /// served while Figma fails, times out or rate-limits (default 1 hour;
    /// zero turns it off).
    ///
    /// # Warning
    ///
    /// For up to this long, a buyer who was refunded during an outage keeps
    /// access. Refusing answers (`UNPAID`, …) are never served stale.
    pub fn stale_grace(mut self, grace: Duration) -> Self {
        self.lifetimes.stale_grace = grace;
        self
    }

    /// How long past its lifetime a `PAID` or `TRIAL` answer may keep
    /// letting its buyer in while its refresh waits for a slot of the
    /// budget (default 1 hour; `FIGMA_PAYWALL_MAX_UNVERIFIED`). It does so
    /// only as long as the budget needs to ask Figma again about every
    /// active buyer (the refresh cycle: active buyers divided by the budget,
    /// [`PaywallStats::refresh_cycle_secs`](crate::PaywallStats::refresh_cycle_secs)),
    /// and never past this. Zero turns it off: an expired answer then waits
    /// for its lookup.
    ///
    /// # Warning
    ///
    /// A refunded buyer keeps access up to the longer of the lifetime and
    /// the cycle, capped by this. The cycle depends on the number of real
    /// active buyers and the budget alone, never on what anyone sends.
    pub fn max_unverified(mut self, cap: Duration) -> Self {
        self.lifetimes.max_unverified = cap;
        self
    }

    /// Reads [`max_unverified`](Self::max_unverified) from
    /// `FIGMA_PAYWALL_MAX_UNVERIFIED` (such as `30m`, `1h`, `0s`) where it
    /// is set.
    ///
    /// # Errors
    ///
    /// When it is set but not a duration.
    pub fn max_unverified_from_env(self) -> Result<Self, ConfigError> {
        let Some(value) = std::env::var("FIGMA_PAYWALL_MAX_UNVERIFIED")
            .ok()
            .filter(|v| !v.trim().is_empty())
        else {
            return Ok(self);
        };
        let cap = parse_duration(value.trim()).ok_or_else(|| ConfigError::InvalidVariable {
            name: "FIGMA_PAYWALL_MAX_UNVERIFIED",
            reason: format!("is {value:?}, not a duration such as 30m, 1h or 90s"),
        })?;
        Ok(self.max_unverified(cap))
    }

    /// A floor under the share of cold lookups of plugin payment tokens
    /// one client gets a minute. A client may use what other clients leave
    /// of the budget (max-min: a lone client, or everyone behind a proxy
    /// that is not configured, may use all of it); while n clients ask, a
    /// flood gets about 1/n. A client whose tokens Figma mostly refused
    /// waits for slots no one else wants. Refreshes of known buyers come
    /// first whatever the shares. Clients are told apart by the layer's
    /// [`client_key`](crate::RequirePaidLayer::client_key) (the
    /// connection's address by default).
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient};
    /// let client = PaymentsClient::builder(AccessToken::new("figd_example")?)
    ///     .rate_limit(100, 10)
    ///     .build()?;
    /// // An office of buyers behind one address: at least 40 a minute.
    /// let paywall = Paywall::builder(client).client_share(40).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_share(mut self, per_minute: u32) -> Self {
        self.client_share = Some(per_minute);
        self
    }

    /// Shares answers, the 429 back-off, the rate budget, cold-key
    /// coalescing and invalidations with other replicas through Redis; see
    /// [`redis`](crate::redis). Call `build` inside a Tokio runtime, which
    /// runs the listener for other replicas' invalidations.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, tier: crate::redis::RedisTier) -> Self {
        self.shared = Some(super::Shared::of(tier));
        self
    }

    /// Keeps Figma's answers in a store on local disk at `path` too, so
    /// that a restart or a deploy asks Figma nothing it knew (feature
    /// `store`; `FIGMA_PAYWALL_STORE` in [`Paywall::from_env`]). A lookup
    /// reads the in-process cache, then the store, then Redis if there is
    /// one, then Figma. The file is created readable by its owner only; a
    /// file that is not a store, corrupt or from another version is set
    /// aside and a new store started. Give each replica its own file.
    ///
    /// The file is opened by [`build`](Self::build), which fails when it
    /// cannot be created or opened (a missing folder, permissions, another
    /// process holding it).
    ///
    /// ```no_run
    /// # use figma_paywall::{Paywall, PaymentsClient};
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let paywall = Paywall::builder(PaymentsClient::from_env()?)
    ///     .store("/var/lib/my-plugin/paywall.redb")
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "store")]
    #[cfg_attr(docsrs, doc(cfg(feature = "store")))]
    pub fn store(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.store = Some(path.as_ref().to_owned());
        self
    }

    /// The secret that seals answers kept outside the process (the store,
    /// Redis), at least 32 bytes; `FIGMA_PAYWALL_KEY` in
    /// [`Paywall::from_env`]. An answer whose seal does not hold (written
    /// without this secret, or altered) is ignored and logged. Replicas
    /// that share Redis share the secret. Default: a key derived from the
    /// client's access token, which changes when the token is replaced.
    /// A secret shorter than 32 bytes makes [`build`](Self::build) fail.
    pub fn signing_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        let Some(mut keyring) = Keyring::from_secret(secret.as_ref()) else {
            return self.failed(short_key());
        };
        if let Some(previous) = self.keyring.take() {
            keyring = keyring.keep_previous_of(previous);
        }
        self.keyring = Some(keyring);
        self
    }

    /// Also accepts answers sealed with `secret`, the signing key being
    /// retired (`FIGMA_PAYWALL_KEY_PREVIOUS`); each such answer is sealed
    /// again with the current key when it is read, so that rotating the key
    /// asks Figma nothing. A secret shorter than 32 bytes makes
    /// [`build`](Self::build) fail.
    pub fn previous_signing_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        let keyring = self
            .keyring
            .take()
            .unwrap_or_else(|| Keyring::from_access_token(self.client.access_token()));
        match keyring.with_previous(secret.as_ref()) {
            Some(keyring) => {
                self.keyring = Some(keyring);
                self
            }
            None => self.failed(short_key()),
        }
    }

    /// Reads the store and its signing keys from the environment where
    /// they are set: `FIGMA_PAYWALL_STORE` (a file path, feature `store`),
    /// `FIGMA_PAYWALL_KEY` and `FIGMA_PAYWALL_KEY_PREVIOUS` (secrets of 32
    /// bytes or more); see [`store`](Self::store) and
    /// [`signing_key`](Self::signing_key).
    ///
    /// # Errors
    ///
    /// A variable that is set but unusable, naming it.
    pub fn store_from_env(self) -> Result<Self, ConfigError> {
        let mut builder = self;
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        for (name, previous) in [
            ("FIGMA_PAYWALL_KEY", false),
            ("FIGMA_PAYWALL_KEY_PREVIOUS", true),
        ] {
            if let Some(key) = var(name) {
                let failed_before = builder.error.is_some();
                builder = if previous {
                    builder.previous_signing_key(key.as_encoded_bytes())
                } else {
                    builder.signing_key(key.as_encoded_bytes())
                };
                if !failed_before {
                    if let Some(e) = builder.error.take() {
                        return Err(named(name, e));
                    }
                }
            }
        }
        if let Some(path) = var("FIGMA_PAYWALL_STORE") {
            #[cfg(feature = "store")]
            {
                builder = builder.store(std::path::PathBuf::from(path));
            }
            #[cfg(not(feature = "store"))]
            {
                let _ = path;
                return Err(ConfigError::InvalidVariable {
                    name: "FIGMA_PAYWALL_STORE",
                    reason: "is set, but this build has no store: enable the crate's `store` feature (figma-paywall = { features = [\"store\"] }), or unset it".into(),
                });
            }
        }
        Ok(builder)
    }

    /// Builds the paywall, opening its store if it has one. It reads time
    /// from its client's clock (see `PaymentsClientBuilder::clock`, feature
    /// `mock`).
    ///
    /// # Errors
    ///
    /// The first setting that could not be used (a signing key too short),
    /// or a store that cannot be opened.
    pub fn build(mut self) -> Result<Paywall, ConfigError> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        #[cfg(feature = "store")]
        let (store, counts) = match self.store.take() {
            Some(path) => {
                let store = crate::tier::store::StoreTier::open(&path)?;
                let now = i64::try_from(self.client.clock().unix_ms() / 1000).unwrap_or(i64::MAX);
                let counts: Arc<dyn Counts> = Arc::new(store.counts(now)?);
                (Some(Box::new(store) as Box<dyn Tier>), Some(counts))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "store"))]
        let (store, counts) = (None, None);
        Ok(self.assemble(store, counts))
    }

    /// The paywall, with `store` as its first tier. Fails at nothing: what
    /// could fail is done.
    pub(super) fn assemble(
        self,
        store: Option<Box<dyn Tier>>,
        counts: Option<Arc<dyn Counts>>,
    ) -> Paywall {
        let clock = self.client.clock().clone();
        let index = Arc::new(UserIndex::default());
        let unfile = index.clone();
        let cache = Cache::builder()
            .max_capacity(self.max_entries)
            .expire_after(EntryExpiry {
                lifetimes: self.lifetimes,
                clock: clock.clone(),
            })
            // The index follows the cache (a replaced answer keeps its key).
            .eviction_listener(move |key: Arc<CacheKey>, entry: Arc<Entry>, cause| {
                if cause != moka::notification::RemovalCause::Replaced {
                    unfile.remove(&entry.user, &key);
                }
            })
            .build_with_hasher(KeyHasher::default());
        if let Some(floor) = self.client_share {
            self.client.admission().set_client_floor(floor);
        }
        let keyring = self
            .keyring
            .unwrap_or_else(|| Keyring::from_access_token(self.client.access_token()));
        let local: Vec<Box<dyn Tier>> = store.into_iter().collect();
        // Redis's counts, exact across replicas; else the store's; else
        // this process's.
        let counts = self
            .shared
            .as_ref()
            .map(|shared| shared.counts.clone())
            .or(counts)
            .unwrap_or_else(|| Arc::new(crate::credits::MemoryCounts::default()));
        let inner = Arc::new(Inner {
            client: self.client,
            answers: super::answers::Answers::new(cache, index, self.lifetimes),
            tiers: super::tiered::Tiers::new(
                local,
                self.shared,
                keyring,
                super::forgotten::Forgotten::new(
                    self.lifetimes.longest_keep(),
                    super::messages::MESSAGE_WINDOW,
                ),
                counts,
            ),
            flights: Flights::default(),
            ahead: Default::default(),
            refused: Refused::default(),
            pat_alarm: Default::default(),
            stats: Counters::default(),
            started: clock.now(),
            clock,
        });
        if let Some(shared) = &inner.tiers.shared {
            let engine: Weak<dyn Invalidations> = Arc::downgrade(&inner) as Weak<Inner>;
            shared.replicas.listen(engine);
        }
        Paywall { inner }
    }
}

/// A duration as people write it: `90s`, `30m`, `1h`, `1h30m`; a bare
/// number is seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        total = total.checked_add(Duration::from_secs(n.checked_mul(unit)?))?;
    }
    number.is_empty().then_some(total)
}

/// A setting's error, naming the variable it came from.
fn named(name: &'static str, error: ConfigError) -> ConfigError {
    match error {
        ConfigError::InvalidSetting(reason) => ConfigError::InvalidVariable {
            name,
            reason: format!("is not usable: {reason}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_that_cannot_be_used_fails_build_with_the_first_reason() {
        let client =
            || crate::PaymentsClient::new(crate::AccessToken::new("figd_test").unwrap()).unwrap();
        let long = "k".repeat(32);
        let error = Paywall::builder(client())
            .signing_key("too short")
            .previous_signing_key(&long)
            .max_entries(10)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("at least 32 bytes"), "{error}");
        let error = Paywall::builder(client())
            .signing_key(&long)
            .previous_signing_key("short")
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("at least 32 bytes"), "{error}");
        assert!(Paywall::builder(client())
            .signing_key(&long)
            .build()
            .is_ok());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["", "1x", "m", "1h3", "-5m", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
