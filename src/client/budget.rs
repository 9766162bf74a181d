//! The rate budget and the 429 back-off that every clone of a client shares.

use std::{
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{middleware::NoOpMiddleware, state::InMemoryState, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::{
    clock::{later, Clock},
    error::{Error, ThrottleReason},
};

/// Whether a lookup waits for a budget slot or gives up at once (when a
/// stale answer can stand in, waiting would only delay the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    ForSlot,
    No,
}

type Limiter =
    RateLimiter<governor::state::NotKeyed, InMemoryState, Clock, NoOpMiddleware<Instant>>;

/// `per_minute` calls a minute with bursts of `burst`, a bounded queue of
/// lookups waiting for a slot, and the back-off Figma asked for.
#[derive(Debug)]
pub(crate) struct Budget {
    limiter: Limiter,
    pub(crate) per_minute: u32,
    pub(crate) burst: u32,
    waiting: Semaphore,
    pub(crate) max_wait: Duration,
    backoff_until: Mutex<Option<Instant>>,
    clock: Clock,
}

impl Budget {
    pub(crate) fn new(
        per_minute: NonZeroU32,
        burst: NonZeroU32,
        max_waiting: usize,
        max_wait: Duration,
        clock: Clock,
    ) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(
                Quota::per_minute(per_minute).allow_burst(burst),
                clock.clone(),
            ),
            per_minute: per_minute.get(),
            burst: burst.get(),
            waiting: Semaphore::new(max_waiting),
            max_wait,
            backoff_until: Mutex::new(None),
            clock,
        }
    }

    /// Takes a slot, waiting for one (within the queue's bounds) if `wait`
    /// says so; fails at once while backing off after a 429.
    pub(crate) async fn acquire(&self, wait: Wait) -> Result<(), Error> {
        self.check_backoff()?;
        if let Err(not_until) = self.limiter.check() {
            // When the next slot comes free.
            let next_slot = not_until
                .wait_time_from(self.clock.now())
                .max(Duration::from_millis(1));
            let throttled = |reason| Error::Throttled {
                retry_after: next_slot,
                reason,
            };
            if wait == Wait::No || next_slot > self.max_wait {
                return Err(throttled(ThrottleReason::BudgetExhausted));
            }
            let _waiting = self
                .waiting
                .try_acquire()
                .map_err(|_| throttled(ThrottleReason::QueueFull))?;
            tokio::time::timeout(self.max_wait, self.limiter.until_ready())
                .await
                .map_err(|_| throttled(ThrottleReason::BudgetExhausted))?;
            // A 429 may have come in while this lookup waited.
            self.check_backoff()?;
        }
        Ok(())
    }

    fn check_backoff(&self) -> Result<(), Error> {
        match self.backing_off_for() {
            Some(retry_after) => Err(Error::Throttled {
                retry_after,
                reason: ThrottleReason::BackingOff,
            }),
            None => Ok(()),
        }
    }

    /// How long Figma's last 429 still asks us to wait, if at all.
    pub(crate) fn backing_off_for(&self) -> Option<Duration> {
        let until = (*self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        until
            .checked_duration_since(self.clock.now())
            .filter(|d| !d.is_zero())
    }

    /// Stops every call for `delay`, never shortening a longer back-off.
    pub(crate) fn back_off(&self, delay: Duration) {
        // An overflowing Retry-After (days, years) means "not in this process's life".
        let until = later(self.clock.now(), delay);
        let mut slot = self.backoff_until.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none_or(|current| current < until) {
            *slot = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    fn budget(per_minute: u32, burst: u32) -> (Budget, MockClock) {
        let clock = MockClock::new();
        let budget = Budget::new(
            NonZeroU32::new(per_minute).unwrap(),
            NonZeroU32::new(burst).unwrap(),
            4,
            Duration::from_millis(50),
            clock.clock(),
        );
        (budget, clock)
    }

    #[tokio::test]
    async fn a_burst_is_spent_then_slots_come_back_with_time() {
        let (budget, clock) = budget(60, 2);
        budget.acquire(Wait::No).await.unwrap();
        budget.acquire(Wait::No).await.unwrap();
        let Err(Error::Throttled {
            retry_after,
            reason: ThrottleReason::BudgetExhausted,
        }) = budget.acquire(Wait::No).await
        else {
            panic!("the third call of a burst of 2 must be throttled");
        };
        assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
        clock.advance(Duration::from_secs(1));
        budget.acquire(Wait::No).await.unwrap();
    }

    #[tokio::test]
    async fn a_back_off_stops_every_call_until_it_has_passed_and_never_shrinks() {
        let (budget, clock) = budget(60_000, 100);
        budget.back_off(Duration::from_secs(30));
        budget.back_off(Duration::from_secs(3));
        let left = budget.backing_off_for().unwrap();
        assert!(left > Duration::from_secs(29), "{left:?}");
        assert!(matches!(
            budget.acquire(Wait::ForSlot).await,
            Err(Error::Throttled {
                reason: ThrottleReason::BackingOff,
                ..
            })
        ));
        clock.advance(Duration::from_secs(30));
        assert_eq!(budget.backing_off_for(), None);
        budget.acquire(Wait::ForSlot).await.unwrap();
    }

    #[tokio::test]
    async fn a_retry_after_of_years_does_not_panic() {
        let (budget, _) = budget(60, 1);
        budget.back_off(Duration::MAX);
        assert!(budget.backing_off_for().unwrap() > Duration::from_secs(86_400 * 365));
    }
}
