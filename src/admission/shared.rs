//! The budget replicas share (Redis), and this replica's share of it while
//! it cannot be reached.
//!
//! The engine reaches the shared budget through [`SharedBudget`] (it seals
//! and opens what replicas tell each other); the lanes' reserves hold there
//! too, as far as Redis can tell: a call in a lower lane must leave the
//! budget more than it takes.
//!
//! **While Redis is out of reach** each replica keeps to its share: the
//! budget divided by the replicas, with no burst, starting spent (the
//! minute before, the replicas may have spent the whole budget through
//! Redis). When Redis answers again the shared budget is charged as if the
//! replicas had spent the whole budget while it could not count, so that no
//! minute holds more calls than the budget, whatever Redis does. Lanes that
//! take only idle slots (refresh-ahead, suspects) get none of a share: no
//! replica can tell what is idle then.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;

use super::{rate::Gcra, Lane};
use crate::{
    clock::{later, Clock},
    error::{Error, ThrottleReason},
    tier::{Charge, TierResult, Unavailable, UNREACHABLE},
};

/// How often a lookup asks the shared budget again after a command failed.
const POLL: Duration = Duration::from_millis(20);

/// The slots of a budget replicas share, as the engine reaches them.
pub(crate) trait SharedBudget: Send + Sync {
    /// The back-off every replica keeps to after a 429, if one is set and
    /// its seal holds.
    fn backing_off_for(&self) -> BoxFuture<'_, Option<Duration>>;

    /// Takes a slot of `per_minute` in bursts of `burst` that leaves
    /// `reserve` of the budget, charging `charge` first: `None`, or how
    /// long until one is free.
    fn take(
        &self,
        per_minute: u32,
        burst: u32,
        reserve: Duration,
        charge: Charge,
    ) -> BoxFuture<'_, TierResult<Option<Duration>>>;

    /// How long the shared budget has been out of reach.
    fn unreachable_for(&self) -> Duration;

    /// How many replicas share it, as far as this replica knows.
    fn replicas(&self) -> u32;
}

#[derive(Default)]
pub(super) struct Unshared(Mutex<Option<Share>>);

/// This replica's share, while the shared budget is out of reach.
struct Share {
    gcra: Gcra,
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
    /// `replicas` (on the paywall's clock), waiting until `give_up_at` at
    /// most (in real time, as Redis keeps it).
    pub(super) async fn slot(
        &self,
        per_minute: u32,
        replicas: u32,
        give_up_at: Instant,
        clock: &Clock,
    ) -> Result<(), Error> {
        loop {
            let wait = {
                let mut share = self.share();
                let share = share.get_or_insert_with(|| {
                    let period = Duration::from_secs(60) * replicas.max(1) / per_minute.max(1);
                    Share {
                        gcra: Gcra::spent(period, clock.now()),
                        since: clock.now(),
                        replicas: replicas.max(1),
                    }
                });
                match share.gcra.take(clock.now(), 0.0) {
                    Ok(()) => return Ok(()),
                    Err(wait) => wait,
                }
            };
            if later(Instant::now(), wait) > give_up_at {
                return Err(Error::Throttled {
                    retry_after: wait.max(Duration::from_millis(1)),
                    reason: ThrottleReason::BudgetExhausted,
                });
            }
            tokio::time::sleep(wait.min(POLL)).await;
        }
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

/// A slot of the shared budget for `lane` (per minute and burst in
/// `rate`), or this replica's share of it when it has been out of reach
/// long enough; waiting until `give_up_at` at most, in real time: the
/// shared budget runs on Redis's clock.
pub(super) async fn shared_slot(
    shared: &dyn SharedBudget,
    unshared: &Unshared,
    (per_minute, burst): (u32, u32),
    lane: Lane,
    give_up_at: Instant,
    clock: &Clock,
) -> Result<(), Error> {
    let interval = Duration::from_secs(60) / per_minute.max(1);
    let reserve = interval.mul_f64(lane.reserve(super::rate::Rate { per_minute, burst }));
    loop {
        // Asked again after every wait: another replica may have been told
        // to back off meanwhile.
        if let Some(retry_after) = shared.backing_off_for().await {
            return Err(Error::Throttled {
                retry_after,
                reason: ThrottleReason::BackingOff,
            });
        }
        let charge = unshared.to_charge(per_minute, clock);
        match shared.take(per_minute, burst, reserve, charge).await {
            Ok(slot) => {
                unshared.reached();
                let Some(retry_after) = slot else {
                    return Ok(());
                };
                if later(Instant::now(), retry_after) > give_up_at {
                    return Err(Error::Throttled {
                        retry_after,
                        reason: lane.throttle_reason(),
                    });
                }
                tokio::time::sleep(retry_after).await;
            }
            // The shared budget is out of reach: this replica's share, for
            // the lanes that do not need to know what is idle.
            Err(Unavailable) if shared.unreachable_for() >= UNREACHABLE => {
                if matches!(lane, Lane::RefreshAhead | Lane::Suspect) {
                    return Err(Error::Throttled {
                        retry_after: UNREACHABLE,
                        reason: lane.throttle_reason(),
                    });
                }
                return unshared
                    .slot(per_minute, shared.replicas(), give_up_at, clock)
                    .await;
            }
            // One command failed (Redis slow, or just gone): the shared
            // budget again, shortly, rather than a share while the other
            // replicas still spend the whole budget through Redis.
            Err(Unavailable) => {
                if later(Instant::now(), POLL) > give_up_at {
                    return Err(Error::Throttled {
                        retry_after: UNREACHABLE,
                        reason: ThrottleReason::BudgetExhausted,
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
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
        // No waiting: give up now, in real time.
        let now = Instant::now;
        // 60 a minute among 2 replicas: one call every 2 s, none at first.
        let first = unshared.slot(60, 2, now(), &clock).await;
        assert!(matches!(
            first,
            Err(Error::Throttled {
                reason: ThrottleReason::BudgetExhausted,
                ..
            })
        ));
        mock.advance(Duration::from_secs(2));
        unshared.slot(60, 2, now(), &clock).await.unwrap();
        assert!(unshared.slot(60, 2, now(), &clock).await.is_err());
        mock.advance(Duration::from_secs(2));
        unshared.slot(60, 2, now(), &clock).await.unwrap();
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
        assert!(unshared.slot(60, 2, now(), &clock).await.is_err());
    }
}
