//! The budget in this process: a GCRA on the paywall's clock, the lanes'
//! reserves in it, Figma's 429 back-off, and the budget lowered after a
//! 429.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use super::{fair::Clients, Lane};
use crate::{
    clock::{later, Clock},
    error::{Error, RateLimit, ThrottleReason},
    ClientKey,
};

/// How long a budget lowered after a 429 stays lowered before the
/// configured one applies again.
const ADAPTED_FOR: Duration = Duration::from_secs(30 * 60);

/// How often the budget running out is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How often a lookup waiting for a slot looks again. Waits end on time
/// with the real clock; a mock one wakes them when it moves.
const POLL: Duration = Duration::from_millis(20);

/// Calls a minute, and bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) per_minute: u32,
    pub(crate) burst: u32,
}

impl Rate {
    /// The time one call takes of the budget.
    pub(crate) fn interval(self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }
}

/// The generic cell rate algorithm: `tat` is when the budget would be
/// whole again ("theoretical arrival time"); a call may go while the budget
/// keeps more than its lane's reserve, and moves `tat` one interval on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gcra {
    interval: Duration,
    burst: u32,
    /// `None`: never spent.
    tat: Option<Instant>,
}

impl Gcra {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            interval: rate.interval(),
            burst: rate.burst.max(1),
            tat: None,
        }
    }

    /// One call every `interval`, no burst, the first only one interval
    /// from `now`: a replica's share of a shared budget it cannot reach.
    pub(super) fn spent(interval: Duration, now: Instant) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            burst: 1,
            tat: Some(later(now, interval)),
        }
    }

    /// When a call that must leave `reserve` intervals of the budget may
    /// go; `None` is now (the budget was never spent).
    fn ready_at(&self, reserve: f64) -> Option<Instant> {
        let tat = self.tat?;
        let slack = f64::from(self.burst - 1) - reserve;
        if slack >= 0.0 {
            tat.checked_sub(self.interval.mul_f64(slack))
        } else {
            Some(later(tat, self.interval.mul_f64(-slack)))
        }
    }

    /// Takes a slot if the budget keeps `reserve` intervals after it, or
    /// says how long until it does.
    pub(crate) fn take(&mut self, now: Instant, reserve: f64) -> Result<(), Duration> {
        if let Some(ready) = self.ready_at(reserve) {
            if now < ready {
                return Err(ready - now);
            }
        }
        let from = self.tat.map_or(now, |tat| tat.max(now));
        self.tat = Some(later(from, self.interval));
        Ok(())
    }
}

/// The budget every clone of a client shares: `per_minute` calls a minute
/// in bursts of `burst`, a bounded queue of lookups waiting for a slot, and
/// the back-off Figma asked for.
///
/// After a 429 the budget in force drops to 90 % of the Tier 3 limit that
/// Figma's `X-Figma-Plan-Tier` and `X-Figma-Rate-Limit-Type` name (half the
/// budget in force when they name none), never above the configured one,
/// so that a budget set too high does not earn a second 429; after
/// 30 minutes without another 429 the configured budget applies again.
#[derive(Debug)]
pub(super) struct LocalBudget {
    configured: Rate,
    current: Mutex<Current>,
    /// The lookups waiting for a slot: by lane, then oldest first, but for
    /// the new callers' lane, served client by client (`fair.rs`). A slot
    /// that comes free goes to the next of them at once, whoever notices it
    /// (it is taken on their behalf), so that no slot waits for its waiter
    /// to look.
    queue: Mutex<BTreeMap<Place, Waiter>>,
    arrivals: AtomicU64,
    waiting: Semaphore,
    pub(super) max_wait: Duration,
    backoff_until: Mutex<Option<Instant>>,
    warned_at: Mutex<Option<Instant>>,
    clock: Clock,
}

/// A waiting lookup's place: its lane, then its order in the lane (the
/// answer it renews was fetched then, or it arrived then), then its
/// arrival.
type Place = (usize, Instant, u64);

/// A lookup waiting for a slot.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) granted: Arc<Granted>,
    /// The client of a cold lookup, served in turn with the others.
    pub(super) client: Option<ClientKey>,
}

/// Leaves the queue however the wait ends, cancellation included.
struct InQueue<'a> {
    budget: &'a LocalBudget,
    place: Place,
    /// Set when a slot was taken on its behalf.
    granted: Arc<Granted>,
}

impl InQueue<'_> {
    /// Leaves the queue; `false` if it was no longer in it: a slot was
    /// taken on its behalf.
    fn leave(&self) -> bool {
        self.budget.queue().remove(&self.place).is_some()
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.budget.queue().remove(&self.place);
    }
}

/// A waiting lookup's slot, taken on its behalf by whoever noticed it was
/// free, and the word that wakes it.
#[derive(Debug, Default)]
pub(super) struct Granted {
    pub(super) taken: AtomicBool,
    pub(super) told: tokio::sync::Notify,
}

impl Granted {
    /// Marks the slot (or turn) taken on the waiter's behalf, and wakes it.
    pub(super) fn grant(&self) {
        self.taken.store(true, Ordering::Release);
        self.told.notify_one();
    }

    pub(super) fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

/// Whether `client` already has `cap` of `waiting`.
pub(super) fn has_its_fill<'a>(
    waiting: impl Iterator<Item = &'a Waiter>,
    client: &ClientKey,
    cap: usize,
) -> bool {
    waiting
        .filter(|w| w.client.as_ref() == Some(client))
        .count()
        >= cap
}

/// The lane of a place in the queue.
fn lane_of(place: &Place) -> Lane {
    Lane::ALL[place.0]
}

/// The place of the waiting lookup the next slot goes to: the first of the
/// highest lane, but in the new callers' lane, the next client's in turn.
fn next_in_line(queue: &BTreeMap<Place, Waiter>, fair: &Clients) -> Option<Place> {
    let (first, _) = queue.first_key_value()?;
    if lane_of(first) != Lane::NewCaller {
        return Some(*first);
    }
    let new_callers = queue
        .iter()
        .take_while(|(p, _)| lane_of(p) == Lane::NewCaller)
        .map(|(p, w)| (*p, w.client));
    fair.next_in_turn(new_callers)
}

#[derive(Debug)]
struct Current {
    rate: Rate,
    gcra: Gcra,
    /// When a 429 lowered the budget, if one did.
    adapted_at: Option<Instant>,
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

impl LocalBudget {
    pub(super) fn new(rate: Rate, max_waiting: usize, max_wait: Duration, clock: Clock) -> Self {
        Self {
            configured: rate,
            current: Mutex::new(Current {
                rate,
                gcra: Gcra::new(rate),
                adapted_at: None,
            }),
            queue: Mutex::default(),
            arrivals: AtomicU64::new(0),
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
                gcra: Gcra::new(self.configured),
                adapted_at: None,
            };
        }
        current
    }

    /// The budget in force: the configured one, or lower after a 429.
    pub(super) fn rate(&self) -> Rate {
        self.current().rate
    }

    /// The budget configured.
    pub(super) fn configured(&self) -> Rate {
        self.configured
    }

    /// Lowers the budget after Figma's 429; returns the budget now in force
    /// and the Tier 3 limit the 429's headers name, if they name one.
    pub(super) fn after_429(&self, limit: &RateLimit) -> (Rate, Option<u32>) {
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
        // What was spent stays spent: the new budget starts from it.
        let mut gcra = Gcra::new(rate);
        gcra.tat = current.gcra.tat;
        *current = Current {
            rate,
            gcra,
            adapted_at: Some(self.clock.now()),
        };
        (rate, published)
    }

    /// Whether the budget running out should be logged now (once a minute
    /// at most).
    pub(super) fn warn_exhausted(&self) -> bool {
        let now = self.clock.now();
        let mut warned_at = self.warned_at.lock().unwrap_or_else(|e| e.into_inner());
        if warned_at.is_some_and(|at| now.saturating_duration_since(at) < WARN_EVERY) {
            return false;
        }
        *warned_at = Some(now);
        true
    }

    /// How many lookups wait for a slot now.
    pub(super) fn waiting(&self) -> usize {
        self.queue().len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, BTreeMap<Place, Waiter>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many cold lookups of one client may wait in the new callers'
    /// lane: as many slots as the budget gives within a wait.
    pub(super) fn waiting_per_client(&self, rate: Rate) -> usize {
        let slots = self.max_wait.as_secs_f64() / rate.interval().as_secs_f64();
        (slots.ceil() as usize)
            .saturating_add(rate.burst as usize)
            .max(1)
    }

    /// Takes the slots that are free for the waiting lookups, next first,
    /// on their behalf (and charges a new caller's client then); returns the
    /// place of the next one that must still wait, and for how long.
    fn serve(
        &self,
        current: &mut Current,
        fair: &Clients,
        now: Instant,
    ) -> Option<(Place, Duration)> {
        let mut queue = self.queue();
        loop {
            let next = next_in_line(&queue, fair)?;
            if let Err(wait) = current.gcra.take(now, lane_of(&next).reserve(current.rate)) {
                return Some((next, wait));
            }
            let waiter = queue.remove(&next)?;
            if let (Lane::NewCaller, Some(client)) = (lane_of(&next), &waiter.client) {
                fair.charge(client);
            }
            waiter.granted.grant();
        }
    }

    /// Takes a slot for `lane`, waiting up to `patience` for one (within
    /// the queue's bound when `queued`); fails at once while backing off
    /// after a 429. Among lookups that wait, the next slot goes to the
    /// highest lane, and within it to the one `order`ed first (the oldest
    /// answer, or the first to arrive), but for the new callers' lane,
    /// whose slots go client by client ([`Clients::next_in_turn`]): no
    /// later lookup jumps the queue. A new caller's `client` is charged
    /// when it gets its slot.
    pub(super) async fn acquire(
        &self,
        (lane, order): (Lane, Instant),
        client: Option<ClientKey>,
        (patience, queued): (Duration, bool),
        fair: &Clients,
    ) -> Result<(), Error> {
        self.check_backoff()?;
        let give_up_at = later(self.clock.now(), patience);
        let place: Place = (
            lane.index(),
            order,
            self.arrivals.fetch_add(1, Ordering::Relaxed),
        );
        let granted = Arc::new(Granted::default());
        // Read before the queue is locked (`current` comes first).
        let cap = (lane == Lane::NewCaller)
            .then(|| self.waiting_per_client(self.rate()))
            .zip(client);
        // In the queue from the start, so that the next slot goes by the
        // queue's order, this lookup's too; it leaves however the wait ends.
        {
            let mut queue = self.queue();
            if let Some((cap, client)) = cap {
                let new_callers = queue
                    .iter()
                    .filter(|(p, _)| lane_of(p) == Lane::NewCaller)
                    .map(|(_, w)| w);
                if has_its_fill(new_callers, &client, cap) {
                    return Err(Error::Throttled {
                        retry_after: self.max_wait,
                        reason: ThrottleReason::ClientShare,
                    });
                }
            }
            queue.insert(
                place,
                Waiter {
                    granted: granted.clone(),
                    client,
                },
            );
        }
        let in_queue = InQueue {
            budget: self,
            place,
            granted,
        };
        // Held until the wait ends: a place in the bounded queue.
        let mut _waiting = None;
        loop {
            // How long until a slot: known from the budget when this lookup
            // is the next, else (someone else is) not before the next look.
            // One reading of the clock for the wait and the give-up both: a
            // clock that moves between them must not make a wait look late.
            let now = self.clock.now();
            let wait = {
                let mut current = self.current();
                let next = self.serve(&mut current, fair, now);
                if in_queue.granted.is_taken() {
                    return Ok(());
                }
                match next {
                    Some((next, wait)) if next == place => wait.max(Duration::from_millis(1)),
                    _ => POLL,
                }
            };
            let throttled = |reason| Error::Throttled {
                retry_after: wait,
                reason,
            };
            // A slot taken on its behalf meanwhile is not given up: the
            // queue's lock tells, since a slot is taken and its waiter
            // removed under it.
            let given_up = |reason| match in_queue.leave() {
                true => Err(throttled(reason)),
                false => Ok(()),
            };
            if later(now, wait) > give_up_at {
                return given_up(lane.throttle_reason());
            }
            if queued && _waiting.is_none() {
                match self.waiting.try_acquire() {
                    Ok(permit) => _waiting = Some(permit),
                    Err(_) => return given_up(ThrottleReason::QueueFull),
                }
                #[cfg(feature = "metrics")]
                ::metrics::counter!("figma_paywall_budget_waits_total").increment(1);
            }
            tokio::select! {
                () = tokio::time::sleep(wait.min(POLL)) => {}
                () = self.clock.moved() => {}
                () = in_queue.granted.told.notified() => {}
            }
            // A 429 may have come in while this lookup waited.
            if let Err(backing_off) = self.check_backoff() {
                return given_up(ThrottleReason::BackingOff).map_err(|_| backing_off);
            }
        }
    }

    /// How long until a call in `lane` could take a slot of this budget
    /// without waiting: zero when it could now. While lookups wait for a
    /// slot, or a 429's back-off runs, not before the next slot.
    pub(super) fn ready_in(&self, lane: Lane) -> Duration {
        let current = self.current();
        let interval = current.rate.interval();
        if let Some(left) = self.backing_off_for() {
            return left.max(interval);
        }
        if !self.queue().is_empty() {
            return interval;
        }
        let now = self.clock.now();
        current
            .gcra
            .ready_at(lane.reserve(current.rate))
            .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
    }

    pub(super) fn check_backoff(&self) -> Result<(), Error> {
        match self.backing_off_for() {
            Some(retry_after) => Err(Error::Throttled {
                retry_after,
                reason: ThrottleReason::BackingOff,
            }),
            None => Ok(()),
        }
    }

    /// How long Figma's last 429 still asks us to wait, if at all.
    pub(super) fn backing_off_for(&self) -> Option<Duration> {
        let until = (*self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        until
            .checked_duration_since(self.clock.now())
            .filter(|d| !d.is_zero())
    }

    /// Stops every call for `delay`, never shortening a longer back-off.
    pub(super) fn back_off(&self, delay: Duration) {
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

    fn budget(per_minute: u32, burst: u32) -> (LocalBudget, MockClock) {
        let clock = MockClock::new();
        let budget = LocalBudget::new(
            Rate { per_minute, burst },
            4,
            Duration::from_millis(50),
            clock.clock(),
        );
        (budget, clock)
    }

    async fn take(budget: &LocalBudget, lane: Lane) -> Result<(), Error> {
        wait_for(budget, lane, budget.clock.now(), Duration::ZERO).await
    }

    /// A slot for a lookup of no client's, within `patience`.
    async fn wait_for(
        budget: &LocalBudget,
        lane: Lane,
        order: Instant,
        patience: Duration,
    ) -> Result<(), Error> {
        let fair = Clients::new(&budget.clock);
        budget
            .acquire((lane, order), None, (patience, true), &fair)
            .await
    }

    #[tokio::test]
    async fn a_burst_is_spent_then_slots_come_back_with_time() {
        let (budget, clock) = budget(60, 2);
        take(&budget, Lane::Refresh).await.unwrap();
        take(&budget, Lane::Refresh).await.unwrap();
        let Err(Error::Throttled {
            retry_after,
            reason: ThrottleReason::BudgetExhausted,
        }) = take(&budget, Lane::Refresh).await
        else {
            panic!("the third call of a burst of 2 must be throttled");
        };
        assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}");
        clock.advance(Duration::from_secs(1));
        take(&budget, Lane::Refresh).await.unwrap();
    }

    #[tokio::test]
    async fn each_lane_leaves_the_lanes_above_it_their_reserve() {
        // 60 a minute in bursts of 3: a slot a second.
        let (budget, clock) = budget(60, 3);
        // New callers may spend the burst but for a quarter of a slot.
        take(&budget, Lane::NewCaller).await.unwrap();
        take(&budget, Lane::NewCaller).await.unwrap();
        assert!(take(&budget, Lane::NewCaller).await.is_err());
        // A known buyer's refresh takes the last slot.
        take(&budget, Lane::Refresh).await.unwrap();
        assert!(take(&budget, Lane::Refresh).await.is_err());
        // Refresh-ahead needs the budget whole again (3 s on).
        clock.advance(Duration::from_secs(2));
        assert!(take(&budget, Lane::RefreshAhead).await.is_err());
        clock.advance(Duration::from_secs(1));
        take(&budget, Lane::RefreshAhead).await.unwrap();
        assert!(take(&budget, Lane::RefreshAhead).await.is_err());
        clock.advance(Duration::from_secs(1));
        // A suspect only gets a budget left unused for a minute.
        clock.advance(Duration::from_secs(30));
        let Err(Error::Throttled { reason, .. }) = take(&budget, Lane::Suspect).await else {
            panic!("a suspect took a slot of a budget used 30 s ago");
        };
        assert_eq!(reason, ThrottleReason::ClientShare);
        clock.advance(Duration::from_secs(32));
        take(&budget, Lane::Suspect).await.unwrap();
        assert!(take(&budget, Lane::Suspect).await.is_err());
        take(&budget, Lane::NewCaller).await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_lookup_gets_the_next_slot_within_its_patience() {
        let budget = LocalBudget::new(
            Rate {
                per_minute: 600,
                burst: 1,
            },
            4,
            Duration::from_millis(500),
            Clock::default(),
        );
        take(&budget, Lane::Refresh).await.unwrap();
        // The next slot is 100 ms away: too far for no patience, near
        // enough for half a second.
        assert!(take(&budget, Lane::Refresh).await.is_err());
        wait_for(
            &budget,
            Lane::Refresh,
            Instant::now(),
            Duration::from_millis(500),
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn waiting_lookups_get_slots_by_lane_then_oldest_first() {
        use std::sync::{Arc, Mutex as StdMutex};
        // A slot every 50 ms, none at once at the start.
        let budget = Arc::new(LocalBudget::new(
            Rate {
                per_minute: 1200,
                burst: 1,
            },
            16,
            Duration::from_secs(5),
            Clock::default(),
        ));
        take(&budget, Lane::Refresh).await.unwrap();
        let served = Arc::new(StdMutex::new(Vec::new()));
        let base = Instant::now();
        let mut tasks = Vec::new();
        // Arriving in the worst order: the lowest lane and the youngest
        // answers first.
        for (name, lane, age) in [
            ("ahead", Lane::RefreshAhead, 0),
            ("new", Lane::NewCaller, 0),
            ("young", Lane::Refresh, 1),
            ("old", Lane::Refresh, 9),
        ] {
            let (budget, served) = (budget.clone(), served.clone());
            let order = base - Duration::from_secs(age);
            tasks.push(tokio::spawn(async move {
                wait_for(&budget, lane, order, Duration::from_secs(5))
                    .await
                    .unwrap();
                served.lock().unwrap().push(name);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*served.lock().unwrap(), ["old", "young", "new", "ahead"]);
    }

    #[tokio::test]
    async fn a_back_off_stops_every_call_until_it_has_passed_and_never_shrinks() {
        let (budget, clock) = budget(60_000, 100);
        budget.back_off(Duration::from_secs(30));
        budget.back_off(Duration::from_secs(3));
        let left = budget.backing_off_for().unwrap();
        assert!(left > Duration::from_secs(29), "{left:?}");
        assert!(matches!(
            take(&budget, Lane::Refresh).await,
            Err(Error::Throttled {
                reason: ThrottleReason::BackingOff,
                ..
            })
        ));
        clock.advance(Duration::from_secs(30));
        assert_eq!(budget.backing_off_for(), None);
        take(&budget, Lane::Refresh).await.unwrap();
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
        take(&budget, Lane::Refresh).await.unwrap();
        assert!(take(&budget, Lane::Refresh).await.is_err());
        clock.advance(Duration::from_millis(6_700));
        take(&budget, Lane::Refresh).await.unwrap();
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
