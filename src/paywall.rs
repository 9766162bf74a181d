//! [`Paywall`]: the cache and lookup engine that every gate built from one
//! client shares.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use figma_paywall::{Paywall, PaymentsClient, Resource};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One client, one cache, one upstream budget for every gated router.
//! let paywall = Paywall::new(PaymentsClient::from_env()?);
//! let plugin = Resource::plugin("1122334455")?;
//! let file = Resource::community_file("9876543210")?;
//!
//! let api: Router = Router::new()
//!     .route("/generate", post(|| async { "ok" }))
//!     .layer(paywall.require(plugin.clone()));
//! let docs: Router = Router::new()
//!     .route("/docs", post(|| async { "docs" }))
//!     .layer(paywall.require_any_of([plugin, file]));
//! # Ok(()) }
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt,
};
use moka::{future::Cache, Expiry};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    client::{Question, Wait},
    error::ConfigError,
    Error, PaymentInformation, PaymentStatus, PaymentsClient, PluginPaymentToken, Resource, UserId,
};

/// The cache and lookup engine shared by every [`RequirePaidLayer`](crate::RequirePaidLayer)
/// built from it.
///
/// Cheap to clone. Holds a [`PaymentsClient`] (and so its rate budget and
/// 429 back-off) and one `moka` cache of Figma's answers, with per-status
/// lifetimes:
///
/// | status | fresh for | then served while Figma fails |
/// |---|---|---|
/// | `PAID` | 10 min | up to 1 h more ([`stale_grace`](PaywallBuilder::stale_grace)) |
/// | `TRIAL` | 2 min | up to 1 h more |
/// | `UNPAID`, `NOT_SUPPORTED`, others | 5 s | never |
///
/// Errors are never cached. Concurrent lookups of one key make one call to
/// Figma, run in a spawned task so that a caller who goes away does not
/// cancel it for the others. A `PAID` or `TRIAL` answer used in the last
/// 20 % of its life is refreshed in the background.
#[derive(Clone)]
pub struct Paywall {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    client: PaymentsClient,
    cache: Cache<CacheKey, Arc<Entry>>,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis_tier::RedisTier>,
    flights: Mutex<HashMap<CacheKey, Flight>>,
    lifetimes: Lifetimes,
    /// Bumped by every invalidation: a lookup that started before one does
    /// not cache what it got.
    generation: AtomicU64,
    pat_check: tokio::sync::Mutex<PatCheck>,
    pub(crate) stats: Counters,
}

impl fmt::Debug for Paywall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paywall")
            .field("client", &self.inner.client)
            .field("entries", &self.inner.cache.entry_count())
            .field("lifetimes", &self.inner.lifetimes)
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    paid: Duration,
    trial: Duration,
    unpaid: Duration,
    stale_grace: Duration,
}

impl Lifetimes {
    fn fresh_for(&self, status: &PaymentStatus) -> Duration {
        match status {
            PaymentStatus::Paid => self.paid,
            PaymentStatus::Trial => self.trial,
            _ => self.unpaid,
        }
    }

    fn grace_for(&self, status: &PaymentStatus) -> Duration {
        match status {
            PaymentStatus::Paid | PaymentStatus::Trial => self.stale_grace,
            _ => Duration::ZERO,
        }
    }
}

/// `at + d`, or far in the future where that overflows (huge configured
/// lifetimes must not panic).
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}

/// The share of an answer's fresh lifetime after which a hit refreshes it
/// in the background.
pub(crate) const REFRESH_AT: f32 = 0.8;

/// How long a verdict on the creator's access token stands, and how often
/// its rejection is logged.
const PAT_RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct PatCheck {
    checked_at: Option<Instant>,
    rejected: bool,
    alarmed_at: Option<Instant>,
}

/// A cache key: 128 bits of SHA-256 over the question asked, so that plugin
/// payment tokens are never stored and keys are small and fixed-size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey(pub(crate) u128);

impl CacheKey {
    fn digest(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            // Length-prefixed, so no two different questions hash the same
            // input. Two bytes are enough (IDs and tokens are bounded far
            // below 64 KiB) and keep a typical key within one SHA-256 block.
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            hasher.update(len.to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        Self(u128::from_le_bytes(first))
    }

    /// The key of a plugin payment token's answer. The answer names its own
    /// resource and is checked against the gate on every use, so one token's
    /// answer serves every gate without serving the wrong resource.
    pub(crate) fn token(token: &PluginPaymentToken) -> Self {
        Self::digest(&[b"token", token.expose_secret().as_bytes()])
    }

    /// The key of a user's answer on one resource.
    pub(crate) fn user(user: &UserId, resource: &Resource) -> Self {
        Self::digest(&[
            b"user",
            resource.kind_ref().as_str().as_bytes(),
            resource.id().as_str().as_bytes(),
            user.as_str().as_bytes(),
        ])
    }
}

/// A cached answer. Its deadlines derive from `fetched_at` and the status's
/// lifetimes, so they take no room in each of a million entries.
pub(crate) struct Entry {
    pub(crate) info: PaymentInformation,
    fetched_at: Instant,
    refreshing: AtomicBool,
}

impl Lifetimes {
    fn fresh_until(&self, entry: &Entry) -> Instant {
        later(entry.fetched_at, self.fresh_for(&entry.info.payment_status))
    }

    fn refresh_at(&self, entry: &Entry) -> Instant {
        later(
            entry.fetched_at,
            self.fresh_for(&entry.info.payment_status)
                .mul_f32(REFRESH_AT),
        )
    }

    /// The end of the fresh lifetime plus the stale grace: when moka drops
    /// the entry, counted from when Figma answered, not from insertion.
    fn expires_at(&self, entry: &Entry) -> Instant {
        later(entry.fetched_at, self.keep_for(&entry.info.payment_status))
    }

    /// How long an answer is kept: its fresh lifetime plus its stale grace.
    fn keep_for(&self, status: &PaymentStatus) -> Duration {
        self.fresh_for(status)
            .saturating_add(self.grace_for(status))
    }
}

struct EntryExpiry(Lifetimes);

impl Expiry<CacheKey, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        entry: &Arc<Entry>,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(
            self.0
                .expires_at(entry)
                .saturating_duration_since(created_at),
        )
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        entry: &Arc<Entry>,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(
            self.0
                .expires_at(entry)
                .saturating_duration_since(updated_at),
        )
    }
}

/// Removes a finished flight from the map when dropped.
struct Landed<'a>(&'a Paywall, CacheKey);

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.0
            .inner
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

type SharedResult = Result<Arc<Entry>, Arc<Error>>;
type Flight = Shared<BoxFuture<'static, SharedResult>>;

/// The answer to one lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    entry: Arc<Entry>,
    /// Whether the answer came from the cache.
    pub from_cache: bool,
    /// Whether the answer is past its lifetime, served because Figma could
    /// not be asked (only ever `PAID` or `TRIAL`).
    pub stale: bool,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("info", &self.info)
            .field("age", &self.fetched_at.elapsed())
            .finish_non_exhaustive()
    }
}

impl Lookup {
    /// Figma's answer.
    pub fn info(&self) -> &PaymentInformation {
        &self.entry.info
    }

    /// How old the answer is.
    pub fn age(&self) -> Duration {
        self.entry.fetched_at.elapsed()
    }
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
///     .build();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use]
pub struct PaywallBuilder {
    client: PaymentsClient,
    max_entries: u64,
    lifetimes: Lifetimes,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis_tier::RedisTier>,
}

impl PaywallBuilder {
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

    /// Shares answers, the 429 back-off, the rate budget, cold-key
    /// coalescing and invalidations with other replicas through Redis; see
    /// [`redis_tier`](crate::redis_tier). Call `build` inside a Tokio
    /// runtime, which runs the listener for other replicas' invalidations.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, tier: crate::redis_tier::RedisTier) -> Self {
        self.redis = Some(tier);
        self
    }

    /// Builds the paywall.
    pub fn build(self) -> Paywall {
        let cache = Cache::builder()
            .max_capacity(self.max_entries)
            .expire_after(EntryExpiry(self.lifetimes))
            .support_invalidation_closures()
            .build();
        let paywall = Paywall {
            inner: Arc::new(Inner {
                client: self.client,
                cache,
                #[cfg(feature = "redis")]
                redis: self.redis,
                flights: Mutex::new(HashMap::new()),
                lifetimes: self.lifetimes,
                generation: AtomicU64::new(0),
                pat_check: tokio::sync::Mutex::new(PatCheck::default()),
                stats: Counters::default(),
            }),
        };
        #[cfg(feature = "redis")]
        if let Some(tier) = &paywall.inner.redis {
            tier.spawn_listener(Arc::downgrade(&paywall.inner));
        }
        paywall
    }
}

impl Paywall {
    /// A paywall with the default cache settings.
    pub fn new(client: PaymentsClient) -> Self {
        Self::builder(client).build()
    }

    /// Starts a builder.
    pub fn builder(client: PaymentsClient) -> PaywallBuilder {
        PaywallBuilder {
            client,
            max_entries: 1_000_000,
            #[cfg(feature = "redis")]
            redis: None,
            lifetimes: Lifetimes {
                paid: Duration::from_secs(10 * 60),
                trial: Duration::from_secs(2 * 60),
                unpaid: Duration::from_secs(5),
                stale_grace: Duration::from_secs(60 * 60),
            },
        }
    }

    /// A paywall over [`PaymentsClient::from_env`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(PaymentsClient::from_env()?))
    }

    /// The process-wide paywall that [`RequirePaid::plugin`](crate::RequirePaid::plugin)
    /// and its siblings share, built from the environment on first use.
    pub(crate) fn shared_from_env() -> Result<Self, String> {
        static SHARED: OnceLock<Result<Paywall, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::from_env().map_err(|e| e.to_string()))
            .clone()
    }

    /// The client this paywall asks Figma with.
    pub fn client(&self) -> &PaymentsClient {
        &self.inner.client
    }

    /// The payment information behind a plugin payment token, from the cache
    /// or from Figma.
    pub async fn lookup_token(&self, token: &PluginPaymentToken) -> Result<Lookup, Arc<Error>> {
        self.lookup(CacheKey::token(token), || Question::Token(token.clone()))
            .await
    }

    /// A user's payment information on a resource, from the cache or from
    /// Figma.
    pub async fn lookup_user(
        &self,
        user: &UserId,
        resource: &Resource,
    ) -> Result<Lookup, Arc<Error>> {
        self.lookup(CacheKey::user(user, resource), || {
            Question::User(user.clone(), resource.clone())
        })
        .await
    }

    /// The hit path: one hash, one moka `get`, no allocation. The question
    /// for Figma is only built on a miss.
    async fn lookup(
        &self,
        key: CacheKey,
        question: impl FnOnce() -> Question,
    ) -> Result<Lookup, Arc<Error>> {
        let stats = &self.inner.stats;
        let lifetimes = &self.inner.lifetimes;
        let now = Instant::now();
        let cached = self.inner.cache.get(&key).await;
        if let Some(entry) = &cached {
            if now < lifetimes.fresh_until(entry) {
                stats.hits.add();
                if now >= lifetimes.refresh_at(entry)
                    && !entry.refreshing.swap(true, Ordering::AcqRel)
                {
                    stats.refreshes.add();
                    drop(self.flight(key, Some(entry.fetched_at), question(), Wait::No));
                }
                return Ok(Lookup {
                    entry: cached.expect("matched Some above"),
                    from_cache: true,
                    stale: false,
                });
            }
        }
        stats.misses.add();
        // Only PAID and TRIAL answers may stand in once expired; a refusing
        // answer moka has not dropped yet is as good as none.
        let cached = cached.filter(|e| {
            now < lifetimes.expires_at(e)
                && lifetimes.grace_for(&e.info.payment_status) > Duration::ZERO
        });
        // With a stale answer to fall back on, do not queue for the budget.
        let wait = if cached.is_some() {
            Wait::No
        } else {
            Wait::ForSlot
        };
        let flight = self.flight(key, cached.as_ref().map(|e| e.fetched_at), question(), wait);
        match (flight.await, cached) {
            (Ok(entry), _) => Ok(Lookup {
                from_cache: false,
                entry,
                stale: false,
            }),
            // Only PAID and TRIAL entries outlive their freshness.
            (Err(error), Some(entry)) if error.is_upstream_failure() => {
                stats.stale_served.add();
                tracing::debug!(error = %error, age_secs = entry.fetched_at.elapsed().as_secs(), "Figma could not answer; serving a stale PAID/TRIAL answer");
                Ok(Lookup {
                    entry,
                    from_cache: true,
                    stale: true,
                })
            }
            (Err(error), _) => Err(error),
        }
    }

    /// Joins the lookup of `key` under way, or starts one in a spawned task.
    ///
    /// `seen` is when the entry the caller saw was fetched: a flight that
    /// finds a newer entry in the cache uses it instead of asking Figma, so
    /// a caller who saw an old entry just before another flight finished
    /// does not cause a second call.
    fn flight(
        &self,
        key: CacheKey,
        seen: Option<Instant>,
        question: Question,
        wait: Wait,
    ) -> Flight {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = flights.get(&key) {
            return flight.clone();
        }
        let this = self.clone();
        let task = tokio::spawn(async move {
            // Leaves the map however the lookup ends, panics included.
            let _landed = Landed(&this, key);
            this.fetch_and_store(key, seen, question, wait).await
        });
        let flight = async move {
            task.await.unwrap_or_else(|e| {
                Err(Arc::new(Error::MalformedResponse {
                    reason: format!("the lookup task failed: {e}"),
                }))
            })
        }
        .boxed()
        .shared();
        flights.insert(key, flight.clone());
        flight
    }

    /// Stores `info` as Figma's answer to a token or user lookup, without
    /// asking Figma. For benchmarks and tests only (feature `mock`): nothing
    /// checks it.
    #[cfg(feature = "mock")]
    #[doc(hidden)]
    pub async fn insert_answer_for_benchmarks(
        &self,
        token: Option<&PluginPaymentToken>,
        resource: &Resource,
        info: PaymentInformation,
    ) {
        let mut info = info;
        let key = match token {
            Some(token) => CacheKey::token(token),
            None => CacheKey::user(&info.user_id, resource),
        };
        if info.resource_id == *resource.id() {
            info.resource_id = resource.id().clone();
        }
        let entry = self.new_entry(info, Instant::now());
        self.inner.cache.insert(key, entry).await;
    }

    fn new_entry(&self, info: PaymentInformation, fetched_at: Instant) -> Arc<Entry> {
        Arc::new(Entry {
            fetched_at,
            refreshing: AtomicBool::new(false),
            info,
        })
    }

    async fn fetch_and_store(
        &self,
        key: CacheKey,
        seen: Option<Instant>,
        question: Question,
        wait: Wait,
    ) -> SharedResult {
        if let Some(entry) = self.inner.cache.get(&key).await {
            if seen.is_none_or(|seen| entry.fetched_at > seen)
                && Instant::now() < self.inner.lifetimes.fresh_until(&entry)
            {
                return Ok(entry);
            }
        }
        let started = Instant::now();
        let generation = self.inner.generation.load(Ordering::Acquire);
        // The client's own timeouts bound the request; this bounds the
        // whole lookup (budget wait, Redis lock included) whatever happens.
        let deadline = self.inner.lookup_deadline();
        let result =
            match tokio::time::timeout(deadline, self.inner.fetch(key, &question, wait)).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout(deadline)),
            };
        tracing::debug!(
            upstream_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "asked Figma"
        );
        let (mut info, fetched_at) = result.map_err(Arc::new)?;
        // A million answers about one resource share one copy of its ID.
        if let Question::User(_, resource) = &question {
            if info.resource_id == *resource.id() {
                info.resource_id = resource.id().clone();
            }
        }
        let entry = self.new_entry(info, fetched_at);
        if self.inner.generation.load(Ordering::Acquire) == generation {
            self.inner.cache.insert(key, entry.clone()).await;
        }
        Ok(entry)
    }

    /// Whether Figma refuses the creator's access token: known from a 401
    /// or 403 on a user-ID lookup, or asked of `GET /v1/me` (at most once a
    /// minute) when a plugin payment token is refused, since Figma's 401
    /// does not say which token it refused.
    pub(crate) async fn access_token_rejected(&self, known: bool) -> bool {
        let mut check = self.inner.pat_check.lock().await;
        let now = Instant::now();
        let fresh = check
            .checked_at
            .is_some_and(|at| now.duration_since(at) < PAT_RECHECK);
        if known {
            check.rejected = true;
            check.checked_at = Some(now);
        } else if !fresh {
            check.rejected = matches!(
                self.inner.client.verify_credentials().await,
                Err(Error::Unauthorized { .. })
            );
            check.checked_at = Some(now);
        }
        if check.rejected
            && check
                .alarmed_at
                .is_none_or(|at| now.duration_since(at) >= PAT_RECHECK)
        {
            check.alarmed_at = Some(now);
            tracing::error!("Figma rejects FIGMA_TOKEN, the creator's personal access token: it is wrong, revoked or expired (personal access tokens last 90 days at most). Create a new one at https://www.figma.com/developers/api#access-tokens; until then every caller gets 503");
        }
        check.rejected
    }

    /// Drops every cached answer about `user` (by user ID or by token), for
    /// example right after the plugin's checkout completes, so their next
    /// request asks Figma. With a Redis tier, every replica drops them.
    pub async fn invalidate_user(&self, user: &UserId) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        let owned = user.clone();
        // Only fails when invalidation closures are not enabled; they are.
        let _ = self
            .inner
            .cache
            .invalidate_entries_if(move |_, entry| entry.info.user_id == owned);
        #[cfg(feature = "redis")]
        if let Some(tier) = &self.inner.redis {
            tier.invalidate_user(user).await;
        }
    }

    /// Drops the cached answer for one plugin payment token, on every
    /// replica.
    pub async fn invalidate_token(&self, token: &PluginPaymentToken) {
        let key = CacheKey::token(token);
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.cache.invalidate(&key).await;
        #[cfg(feature = "redis")]
        if let Some(tier) = &self.inner.redis {
            tier.invalidate_key(key).await;
        }
    }

    /// Drops every cached answer in this process, and tells other replicas
    /// to do the same (answers in Redis stay until they expire).
    pub async fn invalidate_all(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        self.inner.cache.invalidate_all();
        #[cfg(feature = "redis")]
        if let Some(tier) = &self.inner.redis {
            tier.invalidate_all().await;
        }
    }

    /// A snapshot of what the paywall has done since it started.
    pub fn stats(&self) -> PaywallStats {
        let s = &self.inner.stats;
        let (calls, latency) = self.inner.client.upstream_calls();
        let load = Counter::get;
        PaywallStats {
            cache_hits: load(&s.hits),
            cache_misses: load(&s.misses),
            redis_hits: load(&s.redis_hits),
            stale_served: load(&s.stale_served),
            background_refreshes: load(&s.refreshes),
            cached_entries: self.inner.cache.entry_count(),
            lookups_in_flight: self
                .inner
                .flights
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            upstream_calls: calls,
            upstream_mean_latency_ms: if calls == 0 {
                0.0
            } else {
                latency.as_secs_f64() * 1000.0 / calls as f64
            },
            backing_off_secs: self
                .inner
                .client
                .backing_off_for()
                .map(crate::error::ceil_secs),
            granted: load(&s.granted),
            refused: s.refused.snapshot(),
        }
    }

    /// Runs moka's pending maintenance (expiry, invalidation); useful in tests.
    pub async fn run_pending_tasks(&self) {
        self.inner.cache.run_pending_tasks().await;
    }
}

impl Inner {
    /// Asks for an answer beyond the in-process cache: Redis then Figma
    /// with a Redis tier, else Figma.
    async fn fetch(
        &self,
        key: CacheKey,
        question: &Question,
        wait: Wait,
    ) -> Result<(PaymentInformation, Instant), Error> {
        #[cfg(feature = "redis")]
        if let Some(tier) = &self.redis {
            return self.fetch_tiered(tier, key, question, wait).await;
        }
        let _ = key;
        let info = self.client.ask(question, wait).await?;
        Ok((info, Instant::now()))
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn cache(&self) -> &Cache<CacheKey, Arc<Entry>> {
        &self.cache
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn client(&self) -> &PaymentsClient {
        &self.client
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn fresh_for(&self, status: &PaymentStatus) -> Duration {
        self.lifetimes.fresh_for(status)
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn keep_for(&self, status: &PaymentStatus) -> Duration {
        self.lifetimes.keep_for(status)
    }

    /// The longest any answer is kept.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn longest_keep(&self) -> Duration {
        self.keep_for(&PaymentStatus::Paid)
            .max(self.keep_for(&PaymentStatus::Trial))
            .max(self.keep_for(&PaymentStatus::Unpaid))
    }

    /// The most one lookup may take: waiting for a budget slot (and for
    /// another replica's lock), then Figma's timeout, and a second more.
    fn lookup_deadline(&self) -> Duration {
        let (_, _, max_wait) = self.client.budget_settings();
        #[allow(unused_mut)]
        let mut deadline = max_wait + self.client.timeout() + Duration::from_secs(1);
        #[cfg(feature = "redis")]
        if let Some(tier) = &self.redis {
            deadline += tier.lock_ttl() + max_wait;
        }
        deadline
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn count_redis_hit(&self) {
        self.stats.redis_hits.add();
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    redis_hits: Counter,
    hits: Counter,
    misses: Counter,
    stale_served: Counter,
    refreshes: Counter,
    pub(crate) granted: Counter,
    pub(crate) refused: crate::require_paid::RefusalCounters,
}

/// A counter that worker threads bump without fighting over one cache line:
/// each thread adds to its own padded slot, and reading sums them.
#[derive(Debug, Default)]
pub(crate) struct Counter([Slot; SLOTS]);

const SLOTS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

thread_local! {
    static SLOT: usize = {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS
    };
}

impl Counter {
    pub(crate) fn add(&self) {
        let slot = SLOT.with(|slot| *slot);
        self.0[slot].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// What a [`Paywall`] has done since it started; serializes to JSON for a
/// stats endpoint.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PaywallStats {
    /// Lookups answered from the cache with a fresh answer.
    pub cache_hits: u64,
    /// Lookups that had to wait on Figma (missing or expired answers).
    pub cache_misses: u64,
    /// Misses answered from the Redis tier instead of Figma.
    pub redis_hits: u64,
    /// Expired PAID/TRIAL answers served because Figma could not answer.
    pub stale_served: u64,
    /// Refreshes started in the background before an answer expired.
    pub background_refreshes: u64,
    /// Answers in the cache (approximate).
    pub cached_entries: u64,
    /// Lookups of Figma under way.
    pub lookups_in_flight: usize,
    /// Requests sent to Figma.
    pub upstream_calls: u64,
    /// Their mean latency.
    pub upstream_mean_latency_ms: f64,
    /// Seconds left of a 429 back-off, if Figma asked for one.
    pub backing_off_secs: Option<u64>,
    /// Requests let through by the gates.
    pub granted: u64,
    /// Requests refused by the gates, by reason.
    pub refused: std::collections::BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    #[test]
    fn keys_tell_every_question_apart() {
        let plugin = Resource::plugin("12").unwrap();
        let widget = Resource::widget("12").unwrap();
        let keys = [
            CacheKey::user(&user("3"), &plugin),
            CacheKey::user(&user("3"), &widget),
            CacheKey::user(&user("31"), &Resource::plugin("2").unwrap()),
            CacheKey::user(&user("4"), &plugin),
            CacheKey::token(&PluginPaymentToken::new("3").unwrap()),
            CacheKey::token(&PluginPaymentToken::new("user").unwrap()),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(keys[0], CacheKey::user(&user("3"), &plugin));
    }

    #[test]
    fn counters_sum_their_slots_across_threads() {
        let counter = Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| counter.add()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 4000);
    }

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }

    #[test]
    fn only_paid_and_trial_have_grace() {
        let l = Lifetimes {
            paid: Duration::from_secs(10),
            trial: Duration::from_secs(5),
            unpaid: Duration::from_secs(1),
            stale_grace: Duration::from_secs(100),
        };
        assert_eq!(l.grace_for(&PaymentStatus::Paid), Duration::from_secs(100));
        assert_eq!(l.grace_for(&PaymentStatus::Trial), Duration::from_secs(100));
        for status in [
            PaymentStatus::Unpaid,
            PaymentStatus::NotSupported,
            PaymentStatus::Other("X".into()),
        ] {
            assert_eq!(l.grace_for(&status), Duration::ZERO);
            assert_eq!(l.fresh_for(&status), Duration::from_secs(1));
        }
    }
}
