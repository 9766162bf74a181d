//! [`PaywallBuilder`]: the cache's size and lifetimes, and its tier.

use std::{
    sync::{atomic::AtomicU64, Arc, Weak},
    time::Duration,
};

use moka::future::Cache;

use super::{
    entry::{EntryExpiry, Lifetimes},
    fair::FairShare,
    flight::Flights,
    refused::Refused,
    Inner, Paywall,
};
use crate::{
    stats::Counters,
    tier::{Invalidations, Tier},
    PaymentsClient,
};

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
    tier: Option<Box<dyn Tier>>,
    client_share: Option<u32>,
}

impl PaywallBuilder {
    pub(super) fn new(client: PaymentsClient) -> Self {
        Self {
            client,
            max_entries: 1_000_000,
            lifetimes: Lifetimes::default(),
            tier: None,
            client_share: None,
        }
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

    /// How many cold lookups of plugin payment tokens one client may make
    /// a minute (default a quarter of the client's budget, at least 1); all
    /// clients together may make three quarters of the budget, so that
    /// refreshes of known buyers and user IDs the app authenticated (which
    /// no share limits) always find room. Clients are told apart by the
    /// layer's [`with_client_key`](crate::RequirePaidLayer::with_client_key)
    /// (the connection's address by default).
    ///
    /// ```
    /// # use figma_paywall::{AccessToken, Paywall, PaymentsClient};
    /// let client = PaymentsClient::builder(AccessToken::new("figd_example")?)
    ///     .rate_limit(100, 10)
    ///     .build()?;
    /// // An office of buyers behind one address may need more than 25.
    /// let paywall = Paywall::builder(client).client_share(40).build();
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
        self.tier = Some(Box::new(tier));
        self
    }

    /// Builds the paywall. It reads time from its client's clock (see
    /// `PaymentsClientBuilder::clock`, feature `mock`).
    pub fn build(self) -> Paywall {
        let clock = self.client.clock().clone();
        let cache = Cache::builder()
            .max_capacity(self.max_entries)
            .expire_after(EntryExpiry {
                lifetimes: self.lifetimes,
                clock: clock.clone(),
            })
            .support_invalidation_closures()
            .build();
        let budget = self.client.configured_rate();
        let fair = FairShare::new(budget.per_minute, budget.burst, self.client_share, &clock);
        let inner = Arc::new(Inner {
            client: self.client,
            cache,
            tier: self.tier,
            flights: Flights::default(),
            refused: Refused::default(),
            fair,
            lifetimes: self.lifetimes,
            generation: AtomicU64::new(0),
            pat_check: tokio::sync::Mutex::default(),
            stats: Counters::default(),
            clock,
        });
        if let Some(tier) = &inner.tier {
            let engine: Weak<dyn Invalidations> = Arc::downgrade(&inner) as Weak<Inner>;
            tier.listen(engine);
        }
        Paywall { inner }
    }
}
