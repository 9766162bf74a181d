//! Figma's budget while the budget replicas share cannot be reached
//! (Redis down): each replica keeps to its share, and charges the shared
//! budget with what it spent once it answers again, so that no minute holds
//! more calls than the budget, whatever Redis does.
//!
//! The share is the budget divided by the replicas ([`Tier::replicas`]),
//! with no burst, and starts spent: the minute before, the replicas may
//! have spent the whole budget through Redis.
//!
//! [`Tier::replicas`]: crate::tier::Tier::replicas

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::{
    client::{spent_share, Limiter, Wait},
    clock::Clock,
    Error, ThrottleReason,
};

#[derive(Default)]
pub(super) struct Unshared {
    /// Calls made without a shared slot, not yet charged to the shared
    /// budget.
    calls: AtomicU32,
    /// This replica's share while the shared budget is out of reach.
    share: Mutex<Option<Arc<Limiter>>>,
}

impl Unshared {
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
        let share = {
            let mut share = self.share.lock().unwrap_or_else(|e| e.into_inner());
            share
                .get_or_insert_with(|| {
                    let period = Duration::from_secs(60) * replicas.max(1) / per_minute.max(1);
                    spent_share(period, clock)
                })
                .clone()
        };
        if let Err(not_until) = share.check() {
            let next = not_until.wait_time_from(clock.now());
            let left = give_up_at.saturating_duration_since(Instant::now());
            if wait == Wait::No || next > left {
                return Err(Error::Throttled {
                    retry_after: next.max(Duration::from_millis(1)),
                    reason: ThrottleReason::BudgetExhausted,
                });
            }
            if tokio::time::timeout(left, share.until_ready())
                .await
                .is_err()
            {
                return Err(Error::Throttled {
                    retry_after: next.max(Duration::from_millis(1)),
                    reason: ThrottleReason::BudgetExhausted,
                });
            }
        }
        self.calls.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// The calls to charge to the shared budget at the next slot.
    pub(super) fn to_charge(&self) -> u32 {
        self.calls.load(Ordering::Acquire)
    }

    /// The shared budget answered and counted `charged` of those calls:
    /// the share ends.
    pub(super) fn reached(&self, charged: u32) {
        if charged > 0 {
            self.calls.fetch_sub(charged, Ordering::AcqRel);
        }
        let mut share = self.share.lock().unwrap_or_else(|e| e.into_inner());
        *share = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[tokio::test]
    async fn a_share_starts_spent_counts_its_calls_and_ends_when_reached() {
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
        assert_eq!(unshared.to_charge(), 2);

        // Redis counted them: nothing left to charge, and the next share
        // starts spent again.
        unshared.reached(2);
        assert_eq!(unshared.to_charge(), 0);
        assert!(unshared.slot(60, 2, Wait::No, soon, &clock).await.is_err());
    }
}
