//! Admission: the one owner of "may we spend a slot of Figma's budget
//! now?".
//!
//! Every call to `GET /v1/payments` spends a slot of one budget, the
//! creator's token's at Figma, shared by every gate and every replica. The
//! engine asks [`Admission::admit`] once before each call, saying what the
//! call is for ([`Need`]) and how long its caller can wait
//! ([`Patience`]); the answer is a slot in a [`Lane`], or why not and for
//! how long.
//!
//! One file a concern: `rate.rs` is the budget in this process (a GCRA on
//! the paywall's clock, Figma's 429 back-off, the budget lowered after a
//! 429); `shared.rs` the budget replicas share through Redis (the
//! [`SharedBudget`] the engine implements over its tier) and this
//! replica's share of it while Redis is out of reach; `fair.rs` the new
//! callers' lane shared among clients, and suspects; `report.rs` what it
//! did, the active buyers and the refresh cycle the budget achieves.
//!
//! # Lanes
//!
//! Strict priority, kept by reserves: a call in a lane may only take a
//! slot that leaves the budget more than the lanes above it need, so that
//! whatever the lanes below spend, a slot comes to the lanes above first.
//!
//! | lane | what | must leave in the budget |
//! |---|---|---|
//! | [`Lane::Refresh`] | a known buyer's (PAID/TRIAL) answer is past its lifetime, and they wait on it | nothing |
//! | [`Lane::NewCaller`] | a first lookup; served client by client, the one with the fewest slots lately first | a quarter of a slot |
//! | [`Lane::RefreshAhead`] | an active buyer's answer renewed before it is needed, in slots no one wants (`paywall/ahead.rs`) | the budget whole but for the slot it takes (whole and unused for a slot more, without bursts) |
//! | [`Lane::Suspect`] | a client Figma mostly refused | the whole budget, unused for a minute |
//!
//! Cold lookups, and so forged tokens, can never take the slot a due
//! refresh wants; a suspect only gets slots no one else wants, plus one a
//! minute in the new callers' lane for a token it asked about again.

mod fair;
mod rate;
mod report;
mod shared;
mod turns;

use std::time::{Duration, Instant};

#[cfg(feature = "login")]
pub(crate) use self::rate::Gcra;
use self::{
    fair::Clients,
    rate::LocalBudget,
    report::{Report, ACTIVE_WINDOW},
    shared::Unshared,
    turns::Turns,
};
pub(crate) use self::{rate::Rate, report::LaneCounts, shared::SharedBudget};
use crate::{
    clock::{later, Clock},
    error::{Error, RateLimit, ThrottleReason},
    ClientKey, UserId,
};

/// Refreshes of active buyers' answers get one slot in this many on
/// average (the refresh cycle counts on it); new callers the rest.
const REFRESH_SHARE_INVERSE: u32 = 2;

/// Whether a buyer let in `ago` is still active: their answer is renewed
/// ahead, and they count in the refresh cycle.
pub(crate) fn active(ago: Duration) -> bool {
    ago < ACTIVE_WINDOW
}

/// A let-in buyer's refresh comes ahead of new callers once their answer
/// is this share of the refresh cycle old. At a half, such refreshes could
/// take the whole budget (one a buyer every half cycle, where the cycle
/// counts on half the budget); at one, a flood of new callers holds them
/// off until their buyers are refused.
const REFRESH_FIRST_AT: f32 = 0.75;

/// A lane of the budget; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// A known buyer's answer is past its lifetime and they wait on it.
    Refresh,
    /// A first lookup of a new caller.
    NewCaller,
    /// An active buyer's answer, renewed before it is needed.
    RefreshAhead,
    /// A lookup of a client Figma mostly refused.
    Suspect,
}

impl Lane {
    pub(crate) const ALL: [Self; 4] = [
        Self::Refresh,
        Self::NewCaller,
        Self::RefreshAhead,
        Self::Suspect,
    ];

    /// Its name in stats and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::NewCaller => "new_caller",
            Self::RefreshAhead => "refresh_ahead",
            Self::Suspect => "suspect",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// How much of `rate`'s budget, in calls, a call in this lane must
    /// leave: more than the budget holds means time it must have stood
    /// unused.
    fn reserve(self, rate: Rate) -> f64 {
        match self {
            Self::Refresh => 0.0,
            Self::NewCaller => 0.25,
            // The budget whole but for this slot (it waits behind every
            // caller in the queue, and takes what stood unused), and never
            // the only slot of a budget without bursts.
            Self::RefreshAhead => f64::from(rate.burst.max(2) - 1),
            // The budget whole, and unused for a minute more.
            Self::Suspect => f64::from(rate.burst.max(1) - 1) + f64::from(rate.per_minute),
        }
    }

    /// Why a call in this lane found no slot: the budget is spent, or (a
    /// suspect) this client's lookups wait for idle slots.
    fn throttle_reason(self) -> ThrottleReason {
        match self {
            Self::Suspect => ThrottleReason::ClientShare,
            _ => ThrottleReason::BudgetExhausted,
        }
    }
}

/// What the engine knows of a call to Figma; admission picks its lane
/// from it ([`Admission::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// A call through the client itself, outside any paywall.
    Direct,
    /// Renews an answer Figma gave at [`Ask::renews`].
    Renewal(Renewal),
    /// A first lookup: of a token, from `client` when the gate knows it;
    /// of a user ID the app authenticated, or through the client directly.
    /// `question` tells its questions apart (a fingerprint of the cache
    /// key, never the token).
    Cold {
        client: Option<ClientKey>,
        question: u64,
    },
}

/// Why an answer is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Its caller waits on it: the answer is past its lifetime, or it is a
    /// buyer's answer a tier held.
    Waited,
    /// Its buyer is let in on it meanwhile, past its lifetime, within the
    /// refresh cycle.
    LetIn,
    /// Before it is needed: past its refresh point, or an active buyer's.
    Ahead,
}

/// How long the call's caller can wait for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Patience {
    /// Not at all: a slot now, or nothing. A refresh no request waits on
    /// asks this way, and again at its buyer's next visit: it never camps
    /// on the budget ahead of the callers who do wait.
    None,
    /// A caller's request waits, within the queue's bounds
    /// ([`PaymentsClientBuilder::queue`](crate::PaymentsClientBuilder::queue)).
    Caller,
}

/// What a lookup asks [`Admission::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ask {
    pub(crate) need: Need,
    pub(crate) patience: Patience,
    /// For a refresh, when Figma gave the answer it renews: the oldest
    /// answers are renewed first.
    pub(crate) renews: Option<Instant>,
}

impl Ask {
    /// A call through the client itself, outside any paywall: nothing
    /// orders it among other calls, so it may take any slot.
    pub(crate) const DIRECT: Self = Self {
        need: Need::Direct,
        patience: Patience::Caller,
        renews: None,
    };
}

/// Every decision to spend a slot of Figma's budget; see the
/// [module docs](self). One per client, shared by its clones and every
/// paywall built on it.
#[derive(Debug)]
pub(crate) struct Admission {
    local: LocalBudget,
    clients: Clients,
    /// New callers' turns at a budget replicas share.
    turns: Turns,
    unshared: Unshared,
    report: Report,
    clock: Clock,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clients")
    }
}

impl std::fmt::Debug for Unshared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unshared")
    }
}

impl Admission {
    /// A budget of `rate`; at most `max_waiting` callers wait for a slot,
    /// each at most `max_wait`.
    pub(crate) fn new(rate: Rate, max_waiting: usize, max_wait: Duration, clock: Clock) -> Self {
        Self {
            local: LocalBudget::new(rate, max_waiting, max_wait, clock.clone()),
            clients: Clients::new(&clock),
            turns: Turns::default(),
            unshared: Unshared::default(),
            report: Report::new(&clock),
            clock,
        }
    }

    /// May a call for `ask` go now? A slot in its lane, taken, or why not
    /// and for how long. With `shared`, the slot comes from the budget
    /// replicas share.
    pub(crate) async fn admit(
        &self,
        ask: Ask,
        shared: Option<&dyn SharedBudget>,
    ) -> Result<Lane, Error> {
        self.local.check_backoff()?;
        let rate = self.local.rate();
        let mut cold = None;
        let lane = match ask.need {
            Need::Direct | Need::Renewal(Renewal::Waited) => Lane::Refresh,
            Need::Renewal(Renewal::Ahead) => Lane::RefreshAhead,
            // Made before its buyer's cycle ends: ahead of new callers
            // once the answer is old enough, in idle slots until then.
            Need::Renewal(Renewal::LetIn) => {
                let age = ask.renews.map_or(Duration::MAX, |at| {
                    self.clock.now().saturating_duration_since(at)
                });
                if age >= self.refresh_cycle().mul_f32(REFRESH_FIRST_AT) {
                    Lane::Refresh
                } else {
                    Lane::RefreshAhead
                }
            }
            Need::Cold { client: None, .. } => Lane::NewCaller,
            Need::Cold {
                client: Some(client),
                question,
            } => match self.clients.lane(&client, question, rate.per_minute) {
                Ok(grant) => {
                    cold = Some((client, grant));
                    grant.lane
                }
                Err(e) => {
                    self.report.counted(Lane::NewCaller, false);
                    return Err(e);
                }
            },
        };
        let patience = match ask.patience {
            Patience::None => Duration::ZERO,
            Patience::Caller => self.local.max_wait,
        };
        // Whom a cold lookup's slot is charged to: its client, or the one
        // client of every lookup that names none.
        let client = match ask.need {
            Need::Cold { client, .. } => Some(client.unwrap_or_else(ClientKey::nobody)),
            _ => None,
        };
        let result = match shared {
            Some(shared) => {
                let give_up_at = later(Instant::now(), patience);
                let pair = (rate.per_minute, rate.burst);
                // New callers take turns on this replica before they ask.
                let _turn = match (lane, client) {
                    (Lane::NewCaller, Some(client)) => {
                        let per_client = self.local.waiting_per_client(rate);
                        let turn = self
                            .turns
                            .take(client, give_up_at, &self.clients, per_client)
                            .await;
                        match turn {
                            Ok(turn) => Some(turn),
                            Err(e) => {
                                self.report.counted(lane, false);
                                return Err(e);
                            }
                        }
                    }
                    _ => None,
                };
                let slot = shared::shared_slot(
                    shared,
                    &self.unshared,
                    pair,
                    lane,
                    give_up_at,
                    &self.clock,
                )
                .await
                // This replica may have heard of a 429 meanwhile.
                .and_then(|()| self.local.check_backoff());
                // No queue here: the client is charged as it gets its slot.
                if let (Ok(()), Some(client), Lane::NewCaller) = (&slot, &client, lane) {
                    self.clients.charge(client);
                }
                slot
            }
            None => {
                let queued = ask.patience == Patience::Caller;
                let now = self.clock.now();
                // A new caller refused for the budget lately, with no slot in
                // the last minute, queues from then, but never more than one
                // wait ahead of now.
                let kept = client.filter(|_| lane == Lane::NewCaller);
                let order = match (kept, ask.renews, cold.and_then(|(_, g)| g.senior_since)) {
                    (_, Some(renews), _) => renews,
                    (Some(client), None, _) => {
                        let floor = now.checked_sub(self.local.max_wait).unwrap_or(now);
                        self.clients.queues_from(&client, now).max(floor)
                    }
                    // A suspect's token asked about again: from when it was first.
                    (None, None, Some(since)) => since,
                    (None, None, None) => now,
                };
                let result = self
                    .local
                    .acquire((lane, order), client, (patience, queued), &self.clients)
                    .await;
                if let (
                    Err(Error::Throttled {
                        reason: ThrottleReason::BudgetExhausted,
                        ..
                    }),
                    Some(client),
                ) = (&result, kept)
                {
                    self.clients.found_no_slot(&client, order);
                }
                result
            }
        };
        self.report.counted(lane, result.is_ok());
        if let (Ok(()), Some((client, grant))) = (&result, cold) {
            self.clients.took(&client, grant);
        }
        result.map(|()| lane)
    }

    /// What Figma said of a cold lookup `client` made: it refused the
    /// token, or it answered. Suspicion comes from these.
    pub(crate) fn answered(&self, client: &ClientKey, refused: bool) {
        self.clients.answered(client, refused);
    }

    /// A buyer (PAID or TRIAL) was let in: they are active.
    pub(crate) fn buyer_seen(&self, user: &UserId) {
        self.report.buyer_seen(user);
    }

    /// How many buyers were let in within [`ACTIVE_WINDOW`].
    pub(crate) fn active_buyers(&self) -> usize {
        self.report.active_buyers()
    }

    /// The refresh cycle: how long the budget takes to ask Figma again
    /// about every active buyer with half its slots, the other half left
    /// to new callers. Past an answer's lifetime, its buyer is let in on it
    /// for up to this long while its refresh waits; a refresh whose answer
    /// is three quarters this old comes ahead of new callers. It depends on the
    /// active buyers and the budget alone, never on what anyone sends.
    pub(crate) fn refresh_cycle(&self) -> Duration {
        let per_minute = self.local.rate().per_minute.max(1);
        let active = u32::try_from(self.active_buyers()).unwrap_or(u32::MAX);
        (Duration::from_secs(60) * REFRESH_SHARE_INVERSE)
            .saturating_mul(active)
            .checked_div(per_minute)
            .unwrap_or(Duration::MAX)
    }

    /// Slots used and refused, by lane, since the start.
    pub(crate) fn lane_counts(&self) -> LaneCounts {
        self.report.lane_counts()
    }

    /// Whether the cycle being longer than `lifetime` should be logged now
    /// (every few minutes at most).
    pub(crate) fn warn_cycle(&self) -> bool {
        self.report.warn_cycle()
    }

    /// Slots the budget offered since the start but nobody took.
    pub(crate) fn idle_slots(&self) -> u64 {
        let used: u64 = self.lane_counts().used.iter().sum();
        let per_minute = u64::from(self.local.configured().per_minute);
        let minutes = self.report.elapsed().as_secs_f64() / 60.0;
        ((minutes * per_minute as f64) as u64).saturating_sub(used)
    }

    /// The budget in force: the configured one, or lower after a 429.
    pub(crate) fn rate(&self) -> Rate {
        self.local.rate()
    }

    /// The budget configured.
    pub(crate) fn configured(&self) -> Rate {
        self.local.configured()
    }

    /// How long until a slot no one else wants (one a refresh-ahead may
    /// take) comes free in this process's budget: zero if one is free now.
    /// With a budget shared by replicas, what they spent is only known when
    /// a slot is asked for.
    pub(crate) fn idle_slot_in(&self) -> Duration {
        self.local.ready_in(Lane::RefreshAhead)
    }

    /// How many lookups wait for a slot now.
    pub(crate) fn waiting(&self) -> usize {
        self.local.waiting()
    }

    /// The longest a caller waits for a slot.
    pub(crate) fn max_wait(&self) -> Duration {
        self.local.max_wait
    }

    /// A floor under every client's share of the new callers' lane, a
    /// minute.
    pub(crate) fn set_client_floor(&self, per_minute: u32) {
        self.clients.set_floor(per_minute);
    }

    /// Figma answered 429: stop every call for `limit`'s back-off and lower
    /// the budget; returns the budget now in force and the Tier 3 limit the
    /// 429 names, if it names one.
    pub(crate) fn after_429(&self, limit: &RateLimit) -> (Rate, Option<u32>) {
        self.local.back_off(limit.back_off());
        self.local.after_429(limit)
    }

    /// How long Figma's last 429 still asks us to wait, if at all.
    pub(crate) fn backing_off_for(&self) -> Option<Duration> {
        self.local.backing_off_for()
    }

    /// Whether our own budget running out should be logged now (at most
    /// once a minute).
    pub(crate) fn warn_exhausted(&self) -> bool {
        self.local.warn_exhausted()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::mock::MockClock;

    fn cold(client: &str) -> Ask {
        static QUESTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ask {
            need: Need::Cold {
                client: Some(ClientKey::from_bytes(client)),
                question: QUESTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            },
            patience: Patience::Caller,
            renews: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_refused_for_the_budget_comes_back_ahead_of_those_who_came_after() {
        // A slot every 10 s (a new caller's 2.5 s after it, its reserve);
        // a caller waits 10 s at most.
        let clock = MockClock::new();
        let rate = Rate {
            per_minute: 6,
            burst: 1,
        };
        let admission = Arc::new(Admission::new(
            rate,
            8,
            Duration::from_secs(10),
            clock.clock(),
        ));
        assert!(matches!(
            admission.admit(cold("a"), None).await,
            Ok(Lane::NewCaller)
        ));
        // The next slot is 12.5 s away: refused at once.
        let refused = admission.admit(cold("b"), None).await;
        assert!(
            matches!(
                refused,
                Err(Error::Throttled {
                    reason: ThrottleReason::BudgetExhausted,
                    ..
                })
            ),
            "{refused:?}"
        );
        // Another caller arrives and waits for it, then the refused one
        // comes back: it is served first, the other is refused.
        let ask = |client: &'static str| {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(cold(client), None).await })
        };
        clock.advance(Duration::from_secs(3));
        let waiting = async |n: usize| {
            let since = std::time::Instant::now();
            while admission.waiting() < n {
                assert!(since.elapsed() < Duration::from_secs(5), "not queued");
                tokio::task::yield_now().await;
            }
        };
        let later = ask("c");
        waiting(1).await;
        clock.advance(Duration::from_secs(1));
        let back = ask("b");
        waiting(2).await;
        clock.advance(Duration::from_secs(9));
        let back = back.await.unwrap();
        assert!(matches!(back, Ok(Lane::NewCaller)), "{back:?}");
        assert!(later.await.unwrap().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slot_goes_to_the_client_with_the_fewest_lately_and_a_flood_waits_its_turn() {
        // A slot every 10 s, 2 at once; a caller waits 30 s at most.
        let clock = MockClock::new();
        let rate = Rate {
            per_minute: 6,
            burst: 2,
        };
        let admission = Arc::new(Admission::new(
            rate,
            64,
            Duration::from_secs(30),
            clock.clock(),
        ));
        // The flood takes the burst: it has had two slots lately.
        for _ in 0..2 {
            assert!(matches!(
                admission.admit(cold("flood"), None).await,
                Ok(Lane::NewCaller)
            ));
        }
        let ask = |client: &'static str| {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit(cold(client), None).await })
        };
        let waiting = async |n: usize| {
            let since = std::time::Instant::now();
            while admission.waiting() < n {
                assert!(since.elapsed() < Duration::from_secs(5), "not queued");
                tokio::task::yield_now().await;
            }
        };
        // The flood queues what a wait holds (3 slots in 30 s, and a burst
        // of 2: 5); one more is refused at once, its share of the queue
        // spent.
        let mut flood = Vec::new();
        for n in 1..=5 {
            flood.push(ask("flood"));
            waiting(n).await;
        }
        let refused = admission.admit(cold("flood"), None).await;
        assert!(
            matches!(
                refused,
                Err(Error::Throttled {
                    reason: ThrottleReason::ClientShare,
                    ..
                })
            ),
            "{refused:?}"
        );
        // A newcomer arrives last, and gets the next slot.
        let newcomer = ask("newcomer");
        waiting(6).await;
        clock.advance(Duration::from_secs(10));
        let newcomer = newcomer.await.unwrap();
        assert!(matches!(newcomer, Ok(Lane::NewCaller)), "{newcomer:?}");
        assert_eq!(admission.waiting(), 5, "a flood's lookup went first");
        // A client that had slots lately keeps no place: after the flood's
        // lookups time out, its next one queues from now.
        clock.advance(Duration::from_secs(60));
        for lookup in flood {
            let _ = lookup.await.unwrap();
        }
        let now = clock.clock().now();
        let flood_key = ClientKey::from_bytes("flood");
        assert!(admission.clients.slots_lately(Some(&flood_key)) > 0);
        assert_eq!(admission.clients.queues_from(&flood_key, now), now);
    }
}
