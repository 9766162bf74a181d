//! The fair share: cold lookups of plugin payment tokens (misses that need
//! a call to Figma, for callers nobody has vouched for) are admitted per
//! client, so that one client flooding forged tokens spends at most its
//! share of the budget, and together they spend at most three quarters of
//! it: the rest stays for refreshes of known buyers and for user IDs the app
//! authenticated itself, which no share limits.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use governor::{
    middleware::NoOpMiddleware,
    state::{keyed::DashMapStateStore, InMemoryState, NotKeyed},
    Quota, RateLimiter,
};

use super::Paywall;
use crate::{
    clock::Clock,
    error::{Error, ThrottleReason},
    ClientKey,
};

type PerClient =
    RateLimiter<ClientKey, DashMapStateStore<ClientKey>, Clock, NoOpMiddleware<Instant>>;
type Together = RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<Instant>>;

/// How often the per-client state forgets clients it has not seen lately.
const TIDY_EVERY: u64 = 1024;

pub(super) struct FairShare {
    per_client: PerClient,
    together: Together,
    admitted: AtomicU64,
    clock: Clock,
}

impl FairShare {
    /// Shares a budget of `per_minute` with bursts of `burst`: a client
    /// gets `client_share` cold lookups a minute (default a quarter of the
    /// budget, at least one), all anonymous clients together three quarters.
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
        let together = Quota::per_minute(nonzero(per_minute * 3 / 4)).allow_burst(nonzero(burst));
        Self {
            per_client: RateLimiter::new(per_client, DashMapStateStore::default(), clock.clone()),
            together: RateLimiter::new(together, InMemoryState::default(), clock.clone()),
            admitted: AtomicU64::new(0),
            clock: clock.clone(),
        }
    }

    fn admit(&self, client: &ClientKey) -> Result<(), Error> {
        if self.admitted.fetch_add(1, Ordering::Relaxed) % TIDY_EVERY == TIDY_EVERY - 1 {
            self.per_client.retain_recent();
            self.per_client.shrink_to_fit();
        }
        let throttled = |retry_after: Duration| Error::Throttled {
            retry_after: retry_after.max(Duration::from_millis(1)),
            reason: ThrottleReason::ClientShare,
        };
        self.per_client
            .check_key(client)
            .map_err(|not_until| throttled(not_until.wait_time_from(self.clock.now())))?;
        self.together
            .check()
            .map_err(|not_until| throttled(not_until.wait_time_from(self.clock.now())))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[test]
    fn a_client_gets_its_share_and_all_together_three_quarters() {
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
        // Another client has its own share…
        fair.admit(&b).unwrap();
        // …until together they reach three quarters of the budget's burst.
        for i in 0..3 {
            fair.admit(&ClientKey::from_bytes(format!("c{i}"))).unwrap();
        }
        assert!(fair.admit(&ClientKey::from_bytes("d")).is_err());
        clock.advance(Duration::from_secs(60));
        fair.admit(&a).unwrap();
    }
}
