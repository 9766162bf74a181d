//! The rate budget and the 429 back-off that every clone of a client shares,
//! and how the budget adapts after Figma answers 429.

use std::{
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use governor::{middleware::NoOpMiddleware, state::InMemoryState, Quota, RateLimiter};
use tokio::sync::Semaphore;

use crate::{
    clock::{later, Clock},
    error::{Error, RateLimit, ThrottleReason},
};

/// How long a budget lowered after a 429 stays lowered before the
/// configured one applies again.
const ADAPTED_FOR: Duration = Duration::from_secs(30 * 60);

/// How often the budget running out is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Whether a lookup waits for a budget slot or gives up at once (when a
/// stale answer can stand in, waiting would only delay the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    ForSlot,
    No,
    /// A slot of the budget replicas share was taken (or of this replica's
    /// share of it): no local slot on top, which would only delay the call
    /// and bunch calls at Figma. The back-off still holds.
    Taken,
}

pub(crate) type Limiter =
    RateLimiter<governor::state::NotKeyed, InMemoryState, Clock, NoOpMiddleware<Instant>>;

/// `per_minute` calls a minute with bursts of `burst`, a bounded queue of
/// lookups waiting for a slot, and the back-off Figma asked for.
///
/// After a 429 the budget in force drops to 90 % of the Tier 3 limit that
/// Figma's `X-Figma-Plan-Tier` and `X-Figma-Rate-Limit-Type` name (half the
/// budget in force when they name none), never above the configured one,
/// so that a budget set too high does not earn a second 429; after
/// 30 minutes without another 429 the configured budget applies again.
#[derive(Debug)]
pub(crate) struct Budget {
    configured: Rate,
    current: Mutex<Current>,
    waiting: Semaphore,
    pub(crate) max_wait: Duration,
    backoff_until: Mutex<Option<Instant>>,
    warned_at: Mutex<Option<Instant>>,
    clock: Clock,
}

/// Calls a minute, and bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) per_minute: u32,
    pub(crate) burst: u32,
}

#[derive(Debug)]
struct Current {
    rate: Rate,
    limiter: Arc<Limiter>,
    /// When a 429 lowered the budget, if one did.
    adapted_at: Option<Instant>,
}

fn limiter(rate: Rate, clock: &Clock) -> Arc<Limiter> {
    let per_minute = NonZeroU32::new(rate.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct_with_clock(
        Quota::per_minute(per_minute).allow_burst(burst),
        clock.clone(),
    ))
}

/// One call every `period`, no burst, the first only after `period`: a
/// replica's share of a shared budget it cannot reach.
pub(crate) fn spent_share(period: Duration, clock: &Clock) -> Arc<Limiter> {
    let quota = Quota::with_period(period.max(Duration::from_millis(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN));
    let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
    let _ = limiter.check(); // the one slot it starts with
    Arc::new(limiter)
}

/// The Tier 3 budget (`GET /v1/payments`) of a token, a minute, from the
/// headers of Figma's 429: about 10 on View and Collab seats (`low`), 50,
/// 100 or 150 on Dev and Full seats (`high`) of Professional, Organization
/// and Enterprise plans.
pub(crate) fn tier3_limit(plan_tier: Option<&str>, rate_limit_type: Option<&str>) -> Option<u32> {
    match rate_limit_type?.trim().to_ascii_lowercase().as_str() {
        "low" => Some(10),
        "high" => {
            let plan = plan_tier?.trim().to_ascii_lowercase();
            if plan.starts_with("ent") {
                Some(150)
            } else if plan.starts_with("org") {
                Some(100)
            } else if plan.starts_with("pro") {
                Some(50)
            } else {
                None
            }
        }
        _ => None,
    }
}

impl Budget {
    pub(crate) fn new(
        per_minute: NonZeroU32,
        burst: NonZeroU32,
        max_waiting: usize,
        max_wait: Duration,
        clock: Clock,
    ) -> Self {
        let configured = Rate {
            per_minute: per_minute.get(),
            burst: burst.get(),
        };
        Self {
            configured,
            current: Mutex::new(Current {
                rate: configured,
                limiter: limiter(configured, &clock),
                adapted_at: None,
            }),
            waiting: Semaphore::new(max_waiting),
            max_wait,
            backoff_until: Mutex::new(None),
            warned_at: Mutex::new(None),
            clock,
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let recovered = current
            .adapted_at
            .is_some_and(|at| self.clock.now().saturating_duration_since(at) >= ADAPTED_FOR);
        if recovered {
            tracing::info!(
                per_minute = self.configured.per_minute,
                "no 429 from Figma for 30 minutes: back to the configured budget"
            );
            *current = Current {
                rate: self.configured,
                limiter: limiter(self.configured, &self.clock),
                adapted_at: None,
            };
        }
        current
    }

    /// The budget in force: the configured one, or lower after a 429.
    pub(crate) fn rate(&self) -> Rate {
        self.current().rate
    }

    /// The budget configured.
    pub(crate) fn configured(&self) -> Rate {
        self.configured
    }

    /// Lowers the budget after Figma's 429; returns the budget now in force
    /// and the Tier 3 limit the 429's headers name, if they name one.
    pub(crate) fn after_429(&self, limit: &RateLimit) -> (Rate, Option<u32>) {
        let published = tier3_limit(limit.plan_tier.as_deref(), limit.rate_limit_type.as_deref());
        let mut current = self.current();
        let per_minute = match published {
            Some(limit) => limit.min(current.rate.per_minute) * 9 / 10,
            None => current.rate.per_minute / 2,
        }
        .max(1);
        let rate = Rate {
            per_minute,
            burst: (per_minute / 10).clamp(1, current.rate.burst),
        };
        *current = Current {
            rate,
            limiter: limiter(rate, &self.clock),
            adapted_at: Some(self.clock.now()),
        };
        (rate, published)
    }

    /// Whether the budget running out should be logged now (once a minute
    /// at most).
    pub(crate) fn warn_exhausted(&self) -> bool {
        let now = self.clock.now();
        let mut warned_at = self.warned_at.lock().unwrap_or_else(|e| e.into_inner());
        if warned_at.is_some_and(|at| now.saturating_duration_since(at) < WARN_EVERY) {
            return false;
        }
        *warned_at = Some(now);
        true
    }

    /// Takes a slot, waiting for one (within the queue's bounds) if `wait`
    /// says so; fails at once while backing off after a 429.
    pub(crate) async fn acquire(&self, wait: Wait) -> Result<(), Error> {
        self.check_backoff()?;
        if wait == Wait::Taken {
            return Ok(());
        }
        let limiter = self.current().limiter.clone();
        if let Err(not_until) = limiter.check() {
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
            #[cfg(feature = "metrics")]
            ::metrics::counter!("figma_paywall_budget_waits_total").increment(1);
            tokio::time::timeout(self.max_wait, limiter.until_ready())
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

    #[test]
    fn the_tier3_limit_comes_from_the_429s_headers() {
        assert_eq!(tier3_limit(Some("starter"), Some("low")), Some(10));
        assert_eq!(tier3_limit(Some("enterprise"), Some("low")), Some(10));
        assert_eq!(tier3_limit(Some("professional"), Some("high")), Some(50));
        assert_eq!(tier3_limit(Some("Organization"), Some("HIGH")), Some(100));
        assert_eq!(tier3_limit(Some("enterprise"), Some("high")), Some(150));
        assert_eq!(tier3_limit(Some("starter"), Some("high")), None);
        assert_eq!(tier3_limit(None, Some("high")), None);
        assert_eq!(tier3_limit(Some("pro"), None), None);
    }

    #[tokio::test]
    async fn a_429_lowers_the_budget_never_above_the_configured_one_and_it_recovers() {
        let (budget, clock) = budget(150, 15);
        let told = |plan: &str, kind: &str| RateLimit {
            plan_tier: Some(plan.into()),
            rate_limit_type: Some(kind.into()),
            ..RateLimit::default()
        };
        let (rate, published) = budget.after_429(&told("starter", "low"));
        assert_eq!(
            (rate, published),
            (
                Rate {
                    per_minute: 9,
                    burst: 1
                },
                Some(10)
            )
        );
        assert_eq!(budget.rate(), rate);
        // One slot, then nothing until 60/9 s later.
        budget.acquire(Wait::No).await.unwrap();
        assert!(budget.acquire(Wait::No).await.is_err());
        clock.advance(Duration::from_millis(6_700));
        budget.acquire(Wait::No).await.unwrap();
        // A 429 that names no tier halves the budget in force.
        assert_eq!(budget.after_429(&RateLimit::default()).0.per_minute, 4);
        // Headers naming more than is configured never raise it.
        let (budget, clock) = self::budget(20, 5);
        assert_eq!(
            budget.after_429(&told("enterprise", "high")).0.per_minute,
            18
        );
        clock.advance(ADAPTED_FOR);
        assert_eq!(budget.rate(), budget.configured());
    }

    #[test]
    fn running_out_is_logged_once_a_minute() {
        let (budget, clock) = budget(60, 1);
        assert!(budget.warn_exhausted());
        assert!(!budget.warn_exhausted());
        clock.advance(WARN_EVERY);
        assert!(budget.warn_exhausted());
    }

    #[tokio::test]
    async fn a_retry_after_of_years_does_not_panic() {
        let (budget, _) = budget(60, 1);
        budget.back_off(Duration::MAX);
        assert!(budget.backing_off_for().unwrap() > Duration::from_secs(86_400 * 365));
    }
}
