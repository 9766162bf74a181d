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
    client::{Question, Wait},
    ClientKey, Error, PaymentInformation, PaymentStatus, PluginPaymentToken, Resource, UserId,
};

/// The answer to one lookup.
#[derive(Debug, Clone)]
pub struct Lookup {
    entry: Arc<Entry>,
    /// When the lookup read the answer, by the paywall's clock.
    at: Instant,
    /// Whether the answer came from the cache.
    pub from_cache: bool,
    /// Whether the answer is past its lifetime, served because Figma could
    /// not be asked (only ever `PAID` or `TRIAL`).
    pub stale: bool,
}

impl Lookup {
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

    /// How old the answer was when this lookup read it (by the paywall's
    /// clock).
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
        self.lookup(CacheKey::user(user, resource), None::<fn() -> _>, || {
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
        let lifetimes = &inner.lifetimes;
        let now = inner.clock.now();
        let Some(entry) = inner.cache.get(&key) else {
            return Err(None);
        };
        if now >= lifetimes.fresh_until(&entry) || entry.epoch != inner.epoch() {
            return Err(Some(entry));
        }
        inner.stats.hits.add();
        if now >= lifetimes.refresh_at(&entry) && !entry.refreshing.swap(true, Ordering::AcqRel) {
            inner.stats.refreshes.add();
            drop(self.flight(key, Some(entry.fetched_at), question(), Wait::No));
        }
        Ok(Lookup {
            entry,
            at: now,
            from_cache: true,
            stale: false,
        })
    }

    /// A lookup: the hit path, else a miss (wait for the shared flight, or
    /// a stale answer when Figma fails).
    /// `client` is `Some` for token lookups: who asks, for the fair share.
    async fn lookup(
        &self,
        key: CacheKey,
        client: Option<impl FnOnce() -> Option<ClientKey>>,
        question: impl Fn() -> Question,
    ) -> Result<Lookup, Arc<Error>> {
        let inner = &self.inner;
        let stats = &inner.stats;
        let lifetimes = &inner.lifetimes;
        let cached = match self.hit(key, &question) {
            Ok(lookup) => return Ok(lookup),
            Err(cached) => cached,
        };
        let now = inner.clock.now();
        stats.misses.add();
        // Who asks, for the fair share: learnt only when it matters.
        let mut client = client.map(|f| Who::Unasked(Some(f)));
        if let Some(who) = &mut client {
            if let Some(refusal) = self.remembered_refusal(&key) {
                self.suspect(who.key());
                return Err(refusal);
            }
        }
        // Only PAID and TRIAL answers may stand in once expired; a refusing
        // answer moka has not dropped yet is as good as none, and so is one
        // past its keep time by this paywall's clock.
        let cached = cached.filter(|e| {
            now < lifetimes.expires_at(e) && lifetimes.grace_for(e.status()) > Duration::ZERO
        });
        // A cold token lookup that no flight will answer spends the client's
        // share; a known buyer's renewal and a user ID spend none.
        if let (Some(who), None) = (&mut client, &cached) {
            if !self.inner.flights.contains(&key) {
                self.admit_cold(who.key()).map_err(Arc::new)?;
            }
        }
        // A stale answer stands in only when Figma fails, never because our
        // own budget is spent (anyone can spend it): so wait for a slot even
        // with one to fall back on. While the breaker is open or Figma asks
        // to back off, the flight fails at once instead.
        let flight = self.flight(
            key,
            cached.as_ref().map(|e| e.fetched_at),
            question(),
            Wait::ForSlot,
        );
        let result = flight.await;
        if let (Err(_), Some(Who::Asked(Some(asker)))) = (&result, &client) {
            // Figma refused the token this client brought.
            if self.inner.refused.contains(&key) {
                self.suspect(Some(asker));
            }
        }
        match (result, cached) {
            (Ok(entry), _) => {
                let at = inner.clock.now();
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
            // Figma's own failure lets them stand in.
            (Err(error), Some(entry)) if error.is_figma_failure() => {
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
}

/// The client of a token lookup: not asked yet, or asked (and perhaps not
/// known).
enum Who<F> {
    Unasked(Option<F>),
    Asked(Option<ClientKey>),
}

impl<F: FnOnce() -> Option<ClientKey>> Who<F> {
    fn key(&mut self) -> Option<&ClientKey> {
        if let Self::Unasked(f) = self {
            *self = Self::Asked(f.take().and_then(|f| f()));
        }
        match self {
            Self::Asked(key) => key.as_ref(),
            Self::Unasked(_) => None,
        }
    }
}
