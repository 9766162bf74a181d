//! Figma's budget while the budget replicas share cannot be reached
//! (Redis down): each replica keeps to its share, and when Redis answers
//! again the shared budget is charged as if the replicas had spent the
//! whole budget while it could not count, so that no minute holds more
//! calls than the budget, whatever Redis does.
//!
//! The share is the budget divided by the replicas ([`Tier::replicas`]),
//! with no burst, and starts spent: the minute before, the replicas may
//! have spent the whole budget through Redis.
//!
//! [`Tier::replicas`]: crate::tier::Tier::replicas

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    client::{spent_share, Limiter, Wait},
    clock::Clock,
    tier::Charge,
    Error, ThrottleReason,
};

#[derive(Default)]
pub(super) struct Unshared(Mutex<Option<Share>>);

/// This replica's share, while the shared budget is out of reach.
struct Share {
    limiter: Arc<Limiter>,
    /// When this replica began to keep to it.
    since: Instant,
    /// The replicas it was shared among.
    replicas: u32,
}

impl Unshared {
    fn share(&self) -> std::sync::MutexGuard<'_, Option<Share>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot of this replica's share of `per_minute` among
    /// `replicas`, waiting until `give_up_at` at most if `wait` says so.
    pub(super) async fn slot(
        &self,
        per_minute: u32,
        replicas: u32,
        wait: Wait,
        give_up_at: Instant,
        clock: &Clock,
    ) -> Result<(), Error> {
        let limiter = self
            .share()
            .get_or_insert_with(|| {
                let period = Duration::from_secs(60) * replicas.max(1) / per_minute.max(1);
                Share {
                    limiter: spent_share(period, clock),
                    since: clock.now(),
                    replicas: replicas.max(1),
                }
            })
            .limiter
            .clone();
        if let Err(not_until) = limiter.check() {
            let next = not_until.wait_time_from(clock.now());
            let throttled = || Error::Throttled {
                retry_after: next.max(Duration::from_millis(1)),
                reason: ThrottleReason::BudgetExhausted,
            };
            let left = give_up_at.saturating_duration_since(Instant::now());
            if wait == Wait::No || next > left {
                return Err(throttled());
            }
            if tokio::time::timeout(left, limiter.until_ready())
                .await
                .is_err()
            {
                return Err(throttled());
            }
        }
        Ok(())
    }

    /// What to charge the shared budget with at the next slot: the time
    /// this replica kept to its share (at most a minute), as if the
    /// replicas had spent the whole budget then, and one call each for
    /// their shares' phases. Nothing when it did not.
    pub(super) fn to_charge(&self, per_minute: u32, clock: &Clock) -> Charge {
        self.share().as_ref().map_or(Charge::default(), |share| {
            let interval = Duration::from_secs(60) / per_minute.max(1);
            Charge {
                spent_for: clock
                    .now()
                    .saturating_duration_since(share.since)
                    .min(Duration::from_secs(60)),
                margin: interval * share.replicas,
            }
        })
    }

    /// The shared budget answered (and was charged): the share ends.
    pub(super) fn reached(&self) {
        *self.share() = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[tokio::test]
    async fn a_share_starts_spent_and_is_charged_as_the_whole_budget_when_redis_is_back() {
        let mock = MockClock::new();
        let (clock, unshared) = (mock.clock(), Unshared::default());
        let soon = Instant::now() + Duration::from_secs(60);
        // 60 a minute among 2 replicas: one call every 2 s, none at first.
        let first = unshared.slot(60, 2, Wait::No, soon, &clock).await;
        assert!(matches!(
            first,
            Err(Error::Throttled {
                reason: ThrottleReason::BudgetExhausted,
                ..
            })
        ));
        mock.advance(Duration::from_secs(2));
        unshared.slot(60, 2, Wait::No, soon, &clock).await.unwrap();
        assert!(unshared.slot(60, 2, Wait::No, soon, &clock).await.is_err());
        mock.advance(Duration::from_secs(2));
        unshared.slot(60, 2, Wait::No, soon, &clock).await.unwrap();
        // 4 s at its share: charged as 4 s of the whole budget, and a call
        // (an interval of a second) for each replica's phase.
        let charge = unshared.to_charge(60, &clock);
        assert!(charge.spent_for >= Duration::from_secs(4));
        assert!(charge.spent_for < Duration::from_secs(5));
        assert_eq!(charge.margin, Duration::from_secs(2));

        // Redis counted it: nothing left to charge, and the next share
        // starts spent again.
        unshared.reached();
        assert_eq!(unshared.to_charge(60, &clock), Charge::default());
        assert!(unshared.slot(60, 2, Wait::No, soon, &clock).await.is_err());
    }
}
