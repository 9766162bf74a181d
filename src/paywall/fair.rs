//! The fair share: cold lookups of plugin payment tokens (misses that need
//! a call to Figma, for callers nobody has vouched for) are admitted per
//! client, so that a client flooding forged tokens cannot spend the budget
//! that buyers need.
//!
//! A client may make a share of the budget a minute (a quarter by
//! default). A client whose token Figma refused in the last hour is a
//! suspect: it may make one cold lookup every 10 minutes, whatever its
//! share. A buyer, whose first lookup is never refused, keeps the whole
//! share. Refreshes of known buyers and user IDs the app authenticated are
//! never held back. Many flooding addresses (a botnet) each get one refused
//! lookup, then one every 10 minutes: this bounds a flood by the number of
//! addresses, which no rate limit alone can do better.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use governor::{middleware::NoOpMiddleware, state::keyed::DashMapStateStore, Quota, RateLimiter};
use moka::sync::Cache;

use super::Paywall;
use crate::{
    clock::Clock,
    error::{Error, ThrottleReason},
    ClientKey,
};

type PerClient =
    RateLimiter<ClientKey, DashMapStateStore<ClientKey>, Clock, NoOpMiddleware<Instant>>;

/// How often the per-client state forgets clients it has not seen lately.
const TIDY_EVERY: u64 = 1024;

/// How often a suspect may make a cold lookup.
const SUSPECT_EVERY: Duration = Duration::from_secs(10 * 60);

/// How long a client stays a suspect after Figma refused its token.
const SUSPECT_FOR: Duration = Duration::from_secs(60 * 60);

pub(super) struct FairShare {
    per_client: PerClient,
    per_suspect: PerClient,
    /// Clients whose token Figma refused lately (bounded, in real time).
    suspects: Cache<ClientKey, ()>,
    admitted: AtomicU64,
    clock: Clock,
}

impl FairShare {
    /// Shares a budget of `per_minute` with bursts of `burst`: a client
    /// gets `client_share` cold lookups a minute (default a quarter of the
    /// budget, at least one).
    pub(super) fn new(
        per_minute: u32,
        burst: u32,
        client_share: Option<u32>,
        clock: &Clock,
    ) -> Self {
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let share = client_share.unwrap_or(per_minute / 4).max(1);
        let per_client =
            Quota::per_minute(nonzero(share)).allow_burst(nonzero((burst / 2).min(share)));
        let per_suspect = Quota::with_period(SUSPECT_EVERY)
            .expect("a period of 10 minutes")
            .allow_burst(NonZeroU32::MIN);
        Self {
            per_client: RateLimiter::new(per_client, DashMapStateStore::default(), clock.clone()),
            per_suspect: RateLimiter::new(per_suspect, DashMapStateStore::default(), clock.clone()),
            suspects: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(SUSPECT_FOR)
                .build(),
            admitted: AtomicU64::new(0),
            clock: clock.clone(),
        }
    }

    fn admit(&self, client: &ClientKey) -> Result<(), Error> {
        if self.admitted.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == TIDY_EVERY - 1 {
            for limiter in [&self.per_client, &self.per_suspect] {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        let limiter = if self.suspects.contains_key(client) {
            &self.per_suspect
        } else {
            &self.per_client
        };
        limiter
            .check_key(client)
            .map_err(|not_until| Error::Throttled {
                retry_after: not_until
                    .wait_time_from(self.clock.now())
                    .max(Duration::from_millis(1)),
                reason: ThrottleReason::ClientShare,
            })
    }
}

impl Paywall {
    /// Admits a cold token lookup from `client`, or says how long it must
    /// wait. No client known: no share to keep (the layer warns once).
    pub(super) fn admit_cold(&self, client: Option<&ClientKey>) -> Result<(), Error> {
        match client {
            Some(client) => self.inner.fair.admit(client),
            None => Ok(()),
        }
    }

    /// Marks `client` a suspect: Figma refused a token it brought.
    pub(super) fn suspect(&self, client: Option<&ClientKey>) {
        if let Some(client) = client {
            self.inner.fair.suspects.insert(*client, ());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[tokio::test]
    async fn a_client_gets_its_share_and_a_suspect_one_lookup_in_ten_minutes() {
        let clock = MockClock::new();
        let fair = FairShare::new(40, 8, None, &clock.clock());
        let (a, b) = (ClientKey::from_bytes("a"), ClientKey::from_bytes("b"));
        // A share of 10 a minute in bursts of 4.
        for _ in 0..4 {
            fair.admit(&a).unwrap();
        }
        let Err(Error::Throttled {
            retry_after,
            reason: ThrottleReason::ClientShare,
        }) = fair.admit(&a)
        else {
            panic!("a's fifth cold lookup at once must wait");
        };
        assert!(retry_after <= Duration::from_secs(6), "{retry_after:?}");
        // Another client has its own share.
        for _ in 0..4 {
            fair.admit(&b).unwrap();
        }
        clock.advance(Duration::from_secs(60));
        fair.admit(&a).unwrap();
        // A suspect: one cold lookup, then one in ten minutes.
        let c = ClientKey::from_bytes("c");
        fair.suspects.insert(c, ());
        fair.admit(&c).unwrap();
        assert!(fair.admit(&c).is_err());
        clock.advance(Duration::from_secs(9 * 60));
        assert!(fair.admit(&c).is_err());
        clock.advance(Duration::from_secs(60));
        fair.admit(&c).unwrap();
    }
}
