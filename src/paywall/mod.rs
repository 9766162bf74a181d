//! [`Paywall`]: the cache and lookup engine that every gate built from one
//! client shares.
//!
//! One file a concern: the key of an answer (`key.rs`), the cached answer
//! and its lifetimes (`entry.rs`), the answers held and what invalidations
//! make of them (`answers.rs`, the type `Answers`), the tiers and what
//! replicas tell each other (`tiered.rs`, the type `Tiers`, and
//! `messages.rs`), the hit path and stale fallback
//! (`lookup.rs`), coalescing of concurrent misses (`flight.rs`), what a miss
//! asks beyond the cache (`tiered.rs`), the check of the creator's access
//! token (`credentials.rs`) and the builder (`builder.rs`).
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use figma_paywall::{Paywall, PaymentsClient, RequirePaidLayer, Resource};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One client, one cache, one upstream budget for every gated router.
//! let paywall = Paywall::new(PaymentsClient::from_env()?);
//! let plugin = Resource::plugin("1122334455")?;
//! let file = Resource::community_file("9876543210")?;
//!
//! let api: Router = Router::new()
//!     .route("/generate", post(|| async { "ok" }))
//!     .layer(RequirePaidLayer::new(&paywall, plugin.clone()));
//! let docs: Router = Router::new()
//!     .route("/docs", post(|| async { "docs" }))
//!     .layer(RequirePaidLayer::new(&paywall, plugin).or_buyers_of(file));
//! # Ok(()) }
//! ```

mod ahead;
mod answers;
mod builder;
mod credentials;
mod entry;
mod flight;
mod forgotten;
mod index;
mod key;
mod lookup;
mod messages;
mod refused;
mod tiered;

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

pub use self::{builder::PaywallBuilder, lookup::Lookup};
use self::{
    credentials::PatAlarm, entry::REFRESH_AT, flight::Flights, key::CacheKey, refused::Refused,
};
use crate::{
    admission::{Lane, Patience},
    clock::Clock,
    credits::{Ask, Balance, Bucket, Counts, CountsError, Credits},
    error::{ceil_secs, ConfigError},
    stats::{Counters, PaywallStats},
    tier::{Invalidation, Replicas, Tier},
    PaymentStatus, PaymentsClient, PluginPaymentToken, UserId,
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
    inner: Arc<Inner>,
}

struct Inner {
    client: PaymentsClient,
    /// The answers this process holds.
    answers: answers::Answers,
    /// The tiers beyond this process, and what replicas tell each other.
    tiers: tiered::Tiers,
    flights: Flights,
    /// Active buyers' answers, renewed in idle slots.
    ahead: ahead::Ahead,
    /// Tokens Figma refused lately.
    refused: Refused,
    pat_alarm: PatAlarm,
    stats: Counters,
    clock: Clock,
    /// When the paywall started, by its clock.
    started: std::time::Instant,
}

/// The tier replicas share: what it stores, and what they coordinate
/// through it (one Redis tier, seen as each).
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) tier: Arc<dyn Tier>,
    pub(super) replicas: Arc<dyn Replicas>,
    /// Where the gates' credits are counted, exactly across replicas.
    pub(super) counts: Arc<dyn Counts>,
}

impl Shared {
    /// `tier`, as both.
    #[cfg(feature = "redis")]
    pub(super) fn of<T: Tier + Replicas + Counts>(tier: T) -> Self {
        let tier = Arc::new(tier);
        Self {
            tier: tier.clone(),
            replicas: tier.clone(),
            counts: tier,
        }
    }
}

impl fmt::Debug for Paywall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paywall")
            .field("client", &self.inner.client)
            .field("entries", &self.inner.answers.cache.entry_count())
            .field("lifetimes", &self.inner.answers.lifetimes)
            .field("local", &self.inner.tiers.local)
            .field(
                "shared",
                &self.inner.tiers.shared.as_ref().map(|s| s.tier.name()),
            )
            .finish()
    }
}

impl Paywall {
    /// A paywall with the default cache settings.
    pub fn new(client: PaymentsClient) -> Self {
        // No store and no signing key of its own: nothing that can fail.
        Self::builder(client).assemble(None, None)
    }

    /// Starts a builder.
    pub fn builder(client: PaymentsClient) -> PaywallBuilder {
        PaywallBuilder::new(client)
    }

    /// A paywall configured from the environment: the client of
    /// [`PaymentsClient::from_env`] (`FIGMA_TOKEN`, `FIGMA_API_URL`,
    /// `FIGMA_RATE_LIMIT`, `FIGMA_RATE_BURST`), the store on local disk at
    /// `FIGMA_PAYWALL_STORE` (feature `store`), the key that seals
    /// stored answers from `FIGMA_PAYWALL_KEY` and
    /// `FIGMA_PAYWALL_KEY_PREVIOUS`, and the cap on answers used past their
    /// lifetime from `FIGMA_PAYWALL_MAX_UNVERIFIED`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::builder_from_env()?.build()
    }

    /// Like [`from_env`](Self::from_env), but returns the builder so more
    /// can be set.
    pub fn builder_from_env() -> Result<PaywallBuilder, ConfigError> {
        Self::builder(PaymentsClient::from_env()?)
            .store_from_env()?
            .max_unverified_from_env()
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

    /// What the gates built from this paywall count.
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.stats
    }

    /// Where the credits of the gates built from this paywall are counted.
    pub(crate) fn credit_counts(&self) -> Arc<dyn Counts> {
        self.inner.tiers.counts.clone()
    }

    /// Now, in Unix milliseconds, by the paywall's clock.
    pub(crate) fn unix_ms(&self) -> u64 {
        self.inner.clock.unix_ms()
    }

    /// The question of `user`'s balance in `status`'s allowance, now;
    /// `None` for a status that has none.
    fn balance_ask<'a>(
        &self,
        credits: &'a Credits,
        user: &'a UserId,
        status: &PaymentStatus,
    ) -> Option<Ask<'a>> {
        let bucket = Bucket::of(status)?;
        Some(Ask {
            user,
            bucket,
            allowances: credits.of(bucket),
            cost: 0,
            now: i64::try_from(self.unix_ms() / 1000).unwrap_or(i64::MAX),
        })
    }

    /// What `user` has left of `credits`' allowance for `status` (each
    /// window's), as the gates built from this paywall count it.
    ///
    /// ```
    /// use figma_paywall::{credits::{Credits, Window}, mock::MockFigma, Paywall, PaymentStatus, UserId};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let paywall = Paywall::new(MockFigma::start().await?.client()?);
    /// let credits = Credits::new().paid(100, Window::Day);
    /// let user = UserId::new("2001")?;
    /// paywall.grant_credits(&credits, &user, &PaymentStatus::Paid, 10).await?;
    /// let left = paywall.credits_left(&credits, &user, &PaymentStatus::Paid).await?;
    /// assert_eq!(left.remaining(), Some(110));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// When the counts cannot be reached (Redis down).
    pub async fn credits_left(
        &self,
        credits: &Credits,
        user: &UserId,
        status: &PaymentStatus,
    ) -> Result<Balance, CountsError> {
        let Some(ask) = self.balance_ask(credits, user, status) else {
            return Ok(Balance::of(&[], 0));
        };
        let now = ask.now;
        let windows = self.inner.tiers.counts.read(ask).await?;
        Ok(Balance::of(&windows, now))
    }

    /// Gives `user` `amount` more credits in each current window of
    /// `credits`' allowance for `status` (after a failed generation, say),
    /// and says what is left; see [`credits_left`](Self::credits_left).
    ///
    /// # Errors
    ///
    /// When the counts cannot be reached (Redis down).
    pub async fn grant_credits(
        &self,
        credits: &Credits,
        user: &UserId,
        status: &PaymentStatus,
        amount: u64,
    ) -> Result<Balance, CountsError> {
        let Some(ask) = self.balance_ask(credits, user, status) else {
            return Ok(Balance::of(&[], 0));
        };
        let (bucket, now) = (ask.bucket, ask.now);
        let counts = &self.inner.tiers.counts;
        let windows = counts.read(ask).await?;
        let amount = i64::try_from(amount).unwrap_or(i64::MAX);
        counts.settle(user, bucket, &windows, -amount);
        let windows: Vec<_> = windows
            .into_iter()
            .map(|mut u| {
                u.used = u.used.saturating_sub(amount);
                u
            })
            .collect();
        Ok(Balance::of(&windows, now))
    }

    /// Whether Figma refuses the creator's access token; see
    /// `credentials.rs`.
    pub(crate) async fn access_token_rejected(&self, known: bool) -> bool {
        self.inner.access_token_rejected(known).await
    }

    /// Drops every cached answer about `user` (by user ID or by token), for
    /// example right after the plugin's checkout completes, so their next
    /// request asks Figma. With a Redis tier, every replica drops them.
    pub async fn invalidate_user(&self, user: &UserId) {
        self.invalidate(Invalidation::User(user.clone())).await;
    }

    /// Drops the cached answer for one plugin payment token, on every
    /// replica.
    pub async fn invalidate_token(&self, token: &PluginPaymentToken) {
        self.invalidate(Invalidation::Key(CacheKey::token(token).store_key()))
            .await;
    }

    /// Drops every cached answer in this process, and tells other replicas
    /// to do the same (answers in Redis stay until they expire).
    pub async fn invalidate_all(&self) {
        self.invalidate(Invalidation::All).await;
    }

    async fn invalidate(&self, what: Invalidation) {
        self.inner.forget(&what).await;
        if self.inner.tiers.is_empty() {
            return;
        }
        let message = self.inner.seal_invalidation(&what);
        for tier in self.inner.tiers.all() {
            tier.invalidate(&what, &message).await;
        }
    }

    /// Publishes this paywall's counters and gauges to the installed
    /// `metrics` recorder: call it before each scrape (or on a timer).
    ///
    /// - `figma_paywall_lookups_total{outcome}`: `hit`, `miss`, `stale`
    ///   (an expired answer stood in while Figma failed), `store` and
    ///   `redis` (a miss answered by a tier), `refused_again` (a token Figma
    ///   refused lately, refused without asking);
    /// - `figma_paywall_requests_total{outcome}`: `granted`, or the refusal
    ///   reason (`not_paid`, `rate_limited`, …);
    /// - `figma_paywall_upstream_calls_total`;
    /// - gauges `figma_paywall_cached_answers`,
    ///   `figma_paywall_lookups_in_flight`,
    ///   `figma_paywall_backing_off_seconds`,
    ///   `figma_paywall_budget_per_minute`, `figma_paywall_figma_failing`;
    /// - the capacity report: gauges `figma_paywall_active_buyers` and
    ///   `figma_paywall_refresh_cycle_seconds`, and the counters
    ///   `figma_paywall_budget_slots_total{lane, outcome}` (`lane`:
    ///   `refresh`, `new_caller`, `refresh_ahead`, `suspect`; `outcome`:
    ///   `used` or `refused`), `figma_paywall_budget_slots_idle_total`,
    ///   `figma_paywall_unverified_served_total` and
    ///   `figma_paywall_credits_requests_total{status, outcome}` (metered
    ///   requests, `spent` or `refused`, by `paid`, `trial`, `unpaid`).
    ///
    /// Recorded as they happen: the histogram
    /// `figma_paywall_upstream_latency_seconds{endpoint}`, and the counters
    /// `figma_paywall_rate_limited_total` (Figma's 429s) and
    /// `figma_paywall_budget_waits_total` (lookups that queued for a slot).
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient};
    /// # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("figd_x")?)?);
    /// // In the handler of your metrics endpoint, before rendering:
    /// paywall.record_metrics();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_metrics(&self) {
        crate::metrics::record(self.stats());
    }

    /// A snapshot of what the paywall has done since it started. The
    /// cache's pending upkeep (expiry, invalidation, counting) is done
    /// first, so that `cached_entries` counts what was just cached.
    pub fn stats(&self) -> PaywallStats {
        self.inner.answers.cache.run_pending_tasks();
        let s = &self.inner.stats;
        let admission = self.inner.client.admission();
        let lanes = admission.lane_counts();
        let by_lane = |counts: [u64; 4]| {
            Lane::ALL
                .iter()
                .map(|lane| (lane.as_str(), counts[lane.index()]))
                .collect()
        };
        let (calls, latency) = self.inner.client.upstream_calls();
        let (credits_spent, credits_refused) = s.credits_by_status();
        PaywallStats {
            cache_hits: s.hits.get(),
            cache_misses: s.misses.get(),
            redis_hits: s.tier_hits.get(),
            store_hits: s.store_hits.get(),
            stale_served: s.stale_served.get(),
            refusals_remembered: s.refusals_remembered.get(),
            background_refreshes: s.refreshes.get(),
            cached_entries: self.inner.answers.cache.entry_count(),
            lookups_in_flight: self.inner.flights.len(),
            waiting_for_slot: admission.waiting(),
            upstream_calls: calls,
            upstream_mean_latency_ms: if calls == 0 {
                0.0
            } else {
                latency.as_secs_f64() * 1000.0 / calls as f64
            },
            backing_off_secs: self.inner.client.backing_off_for().map(ceil_secs),
            figma_failing: self.inner.client.figma_failing_for().is_some(),
            budget_per_minute: self.inner.client.rate_limit().0,
            granted: s.granted.get(),
            refused: s.refused_by_reason(),
            unverified_served: s.unverified_served.get(),
            active_buyers: admission.active_buyers(),
            refresh_cycle_secs: ceil_secs(admission.refresh_cycle()),
            slots_used: by_lane(lanes.used),
            slots_refused: by_lane(lanes.refused),
            slots_idle: admission.idle_slots(),
            credits_spent,
            credits_refused,
        }
    }

    /// A paywall whose client reaches nothing (a closed loopback port): a
    /// miss is an error. For unit tests, which run without a mock Figma.
    #[cfg(test)]
    pub(crate) fn unreachable_for_tests() -> Self {
        let client = PaymentsClient::builder(crate::AccessToken::new("figd_unit").unwrap())
            .base_url("http://127.0.0.1:9")
            .build()
            .unwrap();
        Self::new(client)
    }

    /// Stores `info` as the answer to `question`, as if Figma had just given
    /// it: for the unit tests of the gate, which run without a mock Figma.
    #[cfg(test)]
    pub(crate) async fn seed(
        &self,
        question: &crate::client::Question,
        info: crate::PaymentInformation,
    ) {
        let key = CacheKey::of(question);
        let entry = entry::Entry::new(
            info,
            self.inner.clock.now(),
            &self.inner.answers.verdicts,
            self.inner.answers.epoch(),
        );
        self.inner.answers.file(question, &entry, key);
        self.inner.answers.cache.insert(key, entry);
    }
}

impl Inner {
    /// Invalidations may have been lost: answers held so far are asked about
    /// again before they are trusted as fresh (they keep their grace).
    pub(super) fn demote(&self) {
        self.answers.demote(self.clock.unix_ms());
        tracing::warn!("invalidations may have been missed while Redis was unreachable: cached answers are asked about again before they are trusted");
    }

    /// Forgets `what` in this process: the answers, the refusals, and what
    /// a tier may put back. Lookups under way do not cache what they get.
    pub(super) async fn forget(&self, what: &Invalidation) {
        self.tiers.forgotten.record(what, self.clock.unix_ms());
        self.answers.forget(what);
        match what {
            Invalidation::All => self.refused.invalidate_all(),
            Invalidation::Key(key) => self.refused.invalidate(&CacheKey::from_store_key(*key)),
            Invalidation::User(_) => {}
        }
    }

    /// The most one lookup may take: waiting for a budget slot as long as
    /// `patience` allows (and for another replica's lock), then Figma's
    /// timeout, and a second more.
    fn lookup_deadline(&self, patience: Patience) -> Duration {
        let max_wait = match patience {
            Patience::None => Duration::ZERO,
            Patience::Caller => self.client.admission().max_wait(),
        };
        let mut deadline = max_wait + self.client.timeout() + Duration::from_secs(1);
        // A tier shared by replicas adds its lock and its shared budget.
        if let Some(shared) = &self.tiers.shared {
            deadline += shared.replicas.lock_ttl() + max_wait;
        }
        deadline
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{client::Question, PaymentInformation, PaymentStatus, Resource};

    #[tokio::test]
    async fn invalidating_a_user_drops_exactly_their_answers_by_key() {
        let paywall = Paywall::unreachable_for_tests();
        let plugin = Resource::plugin("11").unwrap();
        let user = |i: u32| UserId::new(i.to_string()).unwrap();
        for i in 1..=1000 {
            let info = PaymentInformation::new(user(i), &plugin, PaymentStatus::Paid);
            paywall
                .seed(&Question::User(user(i), plugin.clone()), info)
                .await;
        }
        let token = PluginPaymentToken::new("ppt_of_5").unwrap();
        let info = PaymentInformation::new(user(5), &plugin, PaymentStatus::Paid);
        paywall.seed(&Question::Token(token.clone()), info).await;
        // Users' own answers need no filing; the token's is filed.
        assert_eq!(paywall.inner.answers.index.users(), 1);

        paywall.invalidate_user(&user(5)).await;
        assert!(
            paywall.lookup_user(&user(5), &plugin).await.is_err(),
            "by ID"
        );
        assert!(paywall.lookup_token(&token).await.is_err(), "by token");
        for i in [1, 4, 6, 1000] {
            let lookup = paywall.lookup_user(&user(i), &plugin).await.unwrap();
            assert!(lookup.from_cache(), "user {i} lost their answer");
        }
        assert_eq!(paywall.inner.answers.index.users(), 0);
    }

    #[tokio::test]
    async fn a_demoted_answer_is_asked_about_again_and_stands_in_while_it_is_fresh() {
        let paywall = Paywall::unreachable_for_tests();
        let plugin = Resource::plugin("11").unwrap();
        let (paid, unpaid) = (UserId::new("1").unwrap(), UserId::new("2").unwrap());
        for (user, status) in [
            (&paid, PaymentStatus::Paid),
            (&unpaid, PaymentStatus::Unpaid),
        ] {
            let info = PaymentInformation::new(user.clone(), &plugin, status);
            paywall
                .seed(&Question::User(user.clone(), plugin.clone()), info)
                .await;
        }
        assert!(paywall.cached_user(&paid, &plugin).is_some());

        // Invalidations may have been missed: no longer a hit.
        paywall.inner.demote();
        assert!(paywall.cached_user(&paid, &plugin).is_none());
        let misses = paywall.stats().cache_misses;
        // Figma cannot be asked (nothing listens): the PAID answer, still
        // fresh, stands in, and is not stale.
        let lookup = paywall.lookup_user(&paid, &plugin).await.unwrap();
        assert!(lookup.from_cache() && !lookup.stale());
        assert_eq!(paywall.stats().cache_misses, misses + 1, "asked again");
        // A refusing answer has no grace: it is not served unverified.
        assert!(paywall.lookup_user(&unpaid, &plugin).await.is_err());
    }

    #[tokio::test]
    async fn a_users_answer_about_a_resource_not_shared_is_filed_and_found() {
        let paywall = Paywall::unreachable_for_tests();
        for i in 0..entry::Verdicts::MAX {
            paywall
                .inner
                .answers
                .verdicts
                .fill(Resource::widget(i.to_string()).unwrap());
        }
        let plugin = Resource::plugin("11").unwrap();
        let user = UserId::new("7").unwrap();
        let info = PaymentInformation::new(user.clone(), &plugin, PaymentStatus::Paid);
        paywall
            .seed(&Question::User(user.clone(), plugin.clone()), info)
            .await;
        assert_eq!(paywall.inner.answers.index.users(), 1);
        paywall.invalidate_user(&user).await;
        assert!(paywall.lookup_user(&user, &plugin).await.is_err());
    }
}
