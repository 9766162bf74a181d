//! The hit path, and what a miss does: wait for the shared flight, or
//! serve a stale PAID/TRIAL answer when Figma itself fails (5xx, timeout,
//! unreachable, its 429, the circuit breaker open), never when only our own
//! budget is spent.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use super::{entry::Entry, key::CacheKey, Paywall};
use crate::{
    admission::{Ask, Need, Patience, Renewal},
    client::Question,
    error::ThrottleReason,
    ClientKey, Error, PaymentInformation, PaymentStatus, PluginPaymentToken, Resource, UserId,
};

/// The answer to one lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    entry: Arc<Entry>,
    /// When the lookup read the answer, by the paywall's clock.
    at: Instant,
    from_cache: bool,
    stale: bool,
}

impl Lookup {
    /// Whether the answer came from the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// Whether the answer is past its lifetime (only ever `PAID` or
    /// `TRIAL`): served because Figma could not be asked (within
    /// [`stale_grace`](crate::PaywallBuilder::stale_grace)), or while its
    /// refresh waits for a slot of the budget (within the refresh cycle,
    /// [`max_unverified`](crate::PaywallBuilder::max_unverified)).
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Figma's answer. Built from the compact cached answer: a copy, with
    /// no allocation.
    pub fn info(&self) -> PaymentInformation {
        self.entry.info()
    }

    /// The user the answer is about.
    pub fn user_id(&self) -> &UserId {
        &self.entry.user
    }

    /// The plugin, widget or Community file the answer is about.
    pub fn resource(&self) -> &Resource {
        self.entry.resource()
    }

    /// Whether the user has paid.
    pub fn payment_status(&self) -> &PaymentStatus {
        self.entry.status()
    }

    /// How old the answer was when this lookup read it, since Figma gave
    /// it, on this replica or another (by the paywall's clock).
    pub fn age(&self) -> Duration {
        self.at.saturating_duration_since(self.entry.fetched_at)
    }
}

impl Paywall {
    /// The payment information behind a plugin payment token, from the cache
    /// or from Figma.
    ///
    /// A token Figma refused (400, or 401 while the creator's access token
    /// is good) is refused again for 10 minutes without asking Figma, with
    /// the same error.
    pub async fn lookup_token(&self, token: &PluginPaymentToken) -> Result<Lookup, Arc<Error>> {
        self.lookup_token_as(token, || None).await
    }

    /// [`lookup_token`](Self::lookup_token) for the client `client` names
    /// (asked only on a cold miss), within that client's fair share.
    pub(crate) async fn lookup_token_as(
        &self,
        token: &PluginPaymentToken,
        client: impl FnOnce() -> Option<ClientKey>,
    ) -> Result<Lookup, Arc<Error>> {
        self.lookup(CacheKey::token(token), Some(client), || {
            Question::Token(token.clone())
        })
        .await
    }

    /// `info` as a lookup's answer, never cached and never asked of Figma:
    /// development mode's answer, with the status a plugin chose.
    pub(crate) fn development_lookup(&self, info: PaymentInformation) -> Lookup {
        let inner = &self.inner;
        let at = inner.clock.now();
        Lookup {
            entry: Entry::new(info, at, &inner.answers.verdicts, inner.answers.epoch()),
            at,
            from_cache: false,
            stale: false,
        }
    }

    /// A fresh cached answer for a token, without waiting for anything:
    /// the gate's hit path. `None` means the full lookup is needed.
    pub(crate) fn cached_token(&self, token: &PluginPaymentToken) -> Option<Lookup> {
        self.hit(CacheKey::token(token), &|| Question::Token(token.clone()))
            .ok()
    }

    /// [`cached_token`](Self::cached_token) for a user's answer.
    pub(crate) fn cached_user(&self, user: &UserId, resource: &Resource) -> Option<Lookup> {
        self.hit(CacheKey::user(user, resource), &|| {
            Question::User(user.clone(), resource.clone())
        })
        .ok()
    }

    /// A user's payment information on a resource, from the cache or from
    /// Figma.
    pub async fn lookup_user(
        &self,
        user: &UserId,
        resource: &Resource,
    ) -> Result<Lookup, Arc<Error>> {
        // Each signed-in user is a client of their own in the new callers'
        // lane.
        let client = || Some(ClientKey::from_user(user.as_str()));
        self.lookup(CacheKey::user(user, resource), Some(client), || {
            Question::User(user.clone(), resource.clone())
        })
        .await
    }

    /// The hit path: one hash, one moka `get`, one clock read, no
    /// allocation, nothing awaited. The question for Figma is only built
    /// for a refresh. A miss hands back what the cache held, if anything.
    fn hit(
        &self,
        key: CacheKey,
        question: &impl Fn() -> Question,
    ) -> Result<Lookup, Option<Arc<Entry>>> {
        let inner = &self.inner;
        let lifetimes = &inner.answers.lifetimes;
        let now = inner.clock.now();
        self.inner.start_refresh_ahead();
        let Some(entry) = inner.answers.cache.get(&key) else {
            return Err(None);
        };
        if now >= lifetimes.fresh_until(&entry) || entry.epoch != inner.answers.epoch() {
            return Err(Some(entry));
        }
        inner.stats.hits.add();
        self.count_buyer(key, &entry, question, now);
        self.refresh_in_background(key, &entry, question, now);
        Ok(Lookup {
            entry,
            at: now,
            from_cache: true,
            stale: false,
        })
    }

    /// Past its refresh point, an answer is asked about again in the
    /// background, in slots no one else wants, once.
    fn refresh_in_background(
        &self,
        key: CacheKey,
        entry: &Entry,
        question: &impl Fn() -> Question,
        now: Instant,
    ) {
        let inner = &self.inner;
        if now >= inner.answers.lifetimes.refresh_at(entry)
            && !entry.refreshing.swap(true, Ordering::AcqRel)
        {
            inner.stats.refreshes.add();
            self.inner
                .renew_behind(key, entry.fetched_at, question(), Renewal::Ahead);
        }
    }

    /// Counts the buyer of a PAID/TRIAL answer as active, and notes their
    /// answer for refresh-ahead, once a minute at most: a load and a
    /// compare on the hit path.
    fn count_buyer(
        &self,
        key: CacheKey,
        entry: &Entry,
        question: &impl Fn() -> Question,
        now: Instant,
    ) {
        let inner = &self.inner;
        let minute = now.saturating_duration_since(inner.started).as_secs() / 60;
        if entry.grants() && entry.count_in(u32::try_from(minute).unwrap_or(u32::MAX)) {
            inner.client.admission().buyer_seen(&entry.user);
            inner.ahead.note(key, question, now);
        }
    }

    /// A lookup: the hit path, else a miss (wait for the shared flight, or
    /// let a buyer in on an answer whose refresh waits for a slot, or a
    /// stale answer when Figma fails).
    /// `client` names who asks, for the fair share: the gate's client for a
    /// token, the user for a user ID.
    async fn lookup(
        &self,
        key: CacheKey,
        client: Option<impl FnOnce() -> Option<ClientKey>>,
        question: impl Fn() -> Question,
    ) -> Result<Lookup, Arc<Error>> {
        let inner = &self.inner;
        let stats = &inner.stats;
        let lifetimes = &inner.answers.lifetimes;
        let cached = match self.hit(key, &question) {
            Ok(lookup) => return Ok(lookup),
            Err(cached) => cached,
        };
        let now = inner.clock.now();
        stats.misses.add();
        // A token Figma refused lately is refused again from memory: it
        // costs nothing, and renews nothing (no suspicion, no share).
        if client.is_some() {
            if let Some(refusal) = self.inner.remembered_refusal(&key) {
                return Err(refusal);
            }
        }
        // Only PAID and TRIAL answers may stand in once expired; a refusing
        // answer moka has not dropped yet is as good as none, and so is one
        // past its keep time by this paywall's clock.
        let cached = cached.filter(|e| now < lifetimes.expires_at(e) && e.grants());
        // Past its lifetime, a buyer's answer keeps letting them in while
        // its refresh waits in the refresh lane, for as long as the budget
        // needs to ask about every active buyer again (capped).
        if let Some(entry) = &cached {
            if let Some(until) = self.unverified_until(entry, now) {
                stats.unverified_served.add();
                self.count_buyer(key, entry, &question, now);
                // Its refresh waits for a spare slot until the answer is
                // old enough to come ahead of new callers (admission says).
                self.inner
                    .renew_behind(key, entry.fetched_at, question(), Renewal::LetIn);
                tracing::trace!(
                    left_secs = until.saturating_duration_since(now).as_secs(),
                    "a buyer let in while their answer's refresh waits"
                );
                return Ok(Lookup {
                    entry: entry.clone(),
                    at: now,
                    from_cache: true,
                    stale: true,
                });
            }
        }
        // A known buyer's refresh, or a first lookup (of a token: within
        // the client's share of new callers, asked only now). A stale
        // answer stands in only when Figma fails, never because our own
        // budget is spent (anyone can spend it): so wait for a slot even
        // with one to fall back on. While the breaker is open or Figma asks
        // to back off, the flight fails at once instead.
        let need = match &cached {
            Some(_) => Need::Renewal(Renewal::Waited),
            None => Need::Cold {
                client: client.and_then(|who| who()),
                question: key.halves()[0],
            },
        };
        let ask = Ask {
            need,
            patience: Patience::Caller,
            renews: cached.as_ref().map(|e| e.fetched_at),
        };
        let flight = self
            .inner
            .flight(key, cached.as_ref().map(|e| e.fetched_at), question(), ask);
        // A caller waits no longer than a lookup of its own would, even on a
        // refresh that waits in the background.
        let result =
            match tokio::time::timeout(inner.lookup_deadline(Patience::Caller), flight).await {
                Ok(result) => result,
                Err(_) => Err(Arc::new(Error::Throttled {
                    retry_after: inner.client.admission().max_wait(),
                    reason: ThrottleReason::BudgetExhausted,
                })),
            };
        match (result, cached) {
            (Ok(entry), _) => {
                let at = inner.clock.now();
                self.count_buyer(key, &entry, &question, at);
                // A stored answer let the caller in (a tier's, past its
                // refresh point, within the cycle): renewed as one held here
                // would be, unless Figma is failing.
                if entry.grants() && inner.client.figma_failing_for().is_none() {
                    self.refresh_in_background(key, &entry, &question, at);
                }
                Ok(Lookup {
                    // A stored answer in its grace, when Figma failed.
                    stale: at >= lifetimes.fresh_until(&entry),
                    entry,
                    at,
                    from_cache: false,
                })
            }
            // A fresh answer asked about again (invalidations may have been
            // missed) stands in for a refresh that could not be made: it is
            // as good as it was, and an invalidation it missed takes effect
            // within its lifetime, as without invalidation.
            (Err(error), Some(entry))
                if now < lifetimes.fresh_until(&entry) && error.could_not_refresh() =>
            {
                Ok(Lookup {
                    entry,
                    at: now,
                    from_cache: true,
                    stale: false,
                })
            }
            // Only PAID and TRIAL entries outlive their freshness, and only
            // Figma's own failure lets them stand in, within their grace.
            (Err(error), Some(entry))
                if error.is_figma_failure() && now < lifetimes.stale_until(&entry) =>
            {
                stats.stale_served.add();
                tracing::debug!(error = %error, age_secs = now.saturating_duration_since(entry.fetched_at).as_secs(), "Figma could not answer; serving a stale PAID/TRIAL answer");
                Ok(Lookup {
                    entry,
                    at: now,
                    from_cache: true,
                    stale: true,
                })
            }
            (Err(error), _) => Err(error),
        }
    }

    /// Until when `entry`, past its lifetime, may still let its buyer in
    /// while its refresh waits: within the refresh cycle the budget
    /// achieves, capped by `max_unverified`. `None` when it may not (it is
    /// fresh, from before invalidations may have been missed, or past that).
    fn unverified_until(&self, entry: &Entry, now: Instant) -> Option<Instant> {
        let inner = &self.inner;
        if now < inner.answers.lifetimes.fresh_until(entry) || entry.epoch != inner.answers.epoch()
        {
            return None;
        }
        let admission = inner.client.admission();
        let cycle = admission.refresh_cycle();
        let fresh_for = inner.answers.lifetimes.fresh_for(entry.status());
        if cycle > fresh_for && admission.warn_cycle() {
            let per_minute = admission.rate().per_minute;
            let active = admission.active_buyers();
            let needed = (active as f64 * 60.0 / fresh_for.as_secs_f64().max(1.0)).ceil() as u64;
            tracing::warn!(
                active_buyers = active,
                budget_per_minute = per_minute,
                refresh_cycle_secs = cycle.as_secs(),
                "{per_minute} lookups a minute re-ask {active} active buyers every {} min, past a {}-min lifetime: refunds apply that late; FIGMA_RATE_LIMIT={needed} would fix it",
                cycle.as_secs().div_ceil(60),
                fresh_for.as_secs().div_ceil(60),
            );
        }
        inner
            .answers
            .lifetimes
            .unverified_until(entry, cycle)
            .filter(|&until| now < until)
    }
}
