//! What a paywall counts, and [`PaywallStats`], the snapshot it reports.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::get, Json, Router};
//! use figma_paywall::{Paywall, PaywallStats};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let paywall = Paywall::from_env()?;
//! // Serve it to operators only: it says how many callers were refused and why.
//! let admin: Router = Router::new().route(
//!     "/paywall/stats",
//!     get(move || async move { Json::<PaywallStats>(paywall.stats()) }),
//! );
//! # Ok(()) }
//! ```

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

use serde::Serialize;

use crate::{credits::Bucket, RefusalReason};

/// Everything a paywall and the gates built from it count.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) tier_hits: Counter,
    pub(crate) store_hits: Counter,
    pub(crate) stale_served: Counter,
    pub(crate) refusals_remembered: Counter,
    pub(crate) refreshes: Counter,
    pub(crate) unverified_served: Counter,
    pub(crate) granted: Counter,
    refused: [Counter; RefusalReason::ALL.len()],
    /// Metered requests let in (a reservation taken), by allowance.
    credits_spent: [Counter; 3],
    /// Metered requests refused for want of credits, by allowance.
    credits_refused: [Counter; 3],
}

impl Counters {
    pub(crate) fn refused(&self, reason: RefusalReason) {
        self.refused[reason.index()].add();
    }

    /// A metered request let in (`taken`) or refused, spending `bucket`.
    pub(crate) fn credits(&self, bucket: Bucket, taken: bool) {
        let counters = if taken {
            &self.credits_spent
        } else {
            &self.credits_refused
        };
        counters[bucket.index()].add();
    }

    /// Metered requests let in and refused, by status (`paid`, `trial`,
    /// `unpaid`).
    pub(crate) fn credits_by_status(
        &self,
    ) -> (BTreeMap<&'static str, u64>, BTreeMap<&'static str, u64>) {
        let by = |counters: &[Counter; 3]| {
            Bucket::ALL
                .iter()
                .map(|b| (b.as_str(), counters[b.index()].get()))
                .collect()
        };
        (by(&self.credits_spent), by(&self.credits_refused))
    }

    pub(crate) fn refused_by_reason(&self) -> BTreeMap<&'static str, u64> {
        RefusalReason::ALL
            .iter()
            .zip(&self.refused)
            .map(|(r, c)| (r.as_str(), c.get()))
            .collect()
    }
}

/// A counter that worker threads bump without fighting over one cache line:
/// each thread adds to its own padded slot, and reading sums them.
#[derive(Debug, Default)]
pub(crate) struct Counter([Slot; SLOTS]);

const SLOTS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

thread_local! {
    static SLOT: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS
    };
}

impl Counter {
    pub(crate) fn add(&self) {
        let slot = SLOT.with(|slot| *slot);
        self.0[slot].0.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// What a [`Paywall`](crate::Paywall) has done since it started; serializes
/// to JSON for a stats endpoint.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PaywallStats {
    /// Lookups answered from the cache with a fresh answer.
    pub cache_hits: u64,
    /// Lookups that had to wait on Figma (missing or expired answers).
    pub cache_misses: u64,
    /// Misses answered from the Redis tier instead of Figma.
    pub redis_hits: u64,
    /// Misses answered from the store on local disk instead of Figma.
    pub store_hits: u64,
    /// Expired PAID/TRIAL answers served because Figma could not answer.
    pub stale_served: u64,
    /// Lookups of a plugin payment token that Figma refused in the last
    /// 10 minutes, refused again without asking Figma.
    pub refusals_remembered: u64,
    /// Refreshes started in the background before an answer expired.
    pub background_refreshes: u64,
    /// Answers in the cache (approximate).
    pub cached_entries: u64,
    /// Lookups of Figma under way.
    pub lookups_in_flight: usize,
    /// Of them, those waiting in this process's queue for a slot of the
    /// budget (none with the Redis tier, whose replicas share it).
    pub waiting_for_slot: usize,
    /// Requests sent to Figma.
    pub upstream_calls: u64,
    /// Their mean latency.
    pub upstream_mean_latency_ms: f64,
    /// Seconds left of a 429 back-off, if Figma asked for one.
    pub backing_off_secs: Option<u64>,
    /// Whether the circuit breaker is open: Figma is failing (many lookups
    /// failed and `GET /v1/me` failed too), so lookups are not sent, stale
    /// PAID/TRIAL answers stand in, and fail-open gates let callers in
    /// until a probe gets an answer.
    pub figma_failing: bool,
    /// Lookups a minute the budget allows now (lower than configured for a
    /// while after a 429).
    pub budget_per_minute: u32,
    /// Requests let through by the gates.
    pub granted: u64,
    /// Requests refused by the gates, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// PAID/TRIAL answers past their lifetime that let their buyer in
    /// while a refresh waited for a slot, within the refresh cycle (see
    /// [`PaywallBuilder::max_unverified`](crate::PaywallBuilder::max_unverified)).
    pub unverified_served: u64,
    /// Buyers (PAID or TRIAL) let in within the last 30 minutes: whose
    /// answers the budget must keep asking about.
    pub active_buyers: usize,
    /// How long the budget takes to ask Figma again about every active
    /// buyer, refreshes coming first: active buyers divided by the budget.
    /// Past an answer's lifetime, a refunded buyer keeps access up to this
    /// long (capped by `max_unverified`).
    pub refresh_cycle_secs: u64,
    /// Slots of Figma's budget taken since the start, by lane: `refresh`
    /// (a known buyer's answer, past its lifetime), `new_caller`,
    /// `refresh_ahead`, `suspect`.
    pub slots_used: BTreeMap<&'static str, u64>,
    /// Lookups that found no slot in their lane, by lane.
    pub slots_refused: BTreeMap<&'static str, u64>,
    /// Slots the configured budget offered since the start that nobody
    /// took.
    pub slots_idle: u64,
    /// Metered requests let in by a gate with credits, by the status whose
    /// allowance they spent (`paid`, `trial`, `unpaid`: free tries).
    pub credits_spent: BTreeMap<&'static str, u64>,
    /// Metered requests refused because that allowance was spent.
    pub credits_refused: BTreeMap<&'static str, u64>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn counters_sum_their_slots_across_threads() {
        let counter = Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| counter.add()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.get(), 4000);
    }

    #[test]
    fn refusals_are_counted_under_their_own_reason() {
        let counters = Counters::default();
        counters.refused(RefusalReason::NotPaid);
        counters.refused(RefusalReason::NotPaid);
        counters.refused(RefusalReason::FigmaUnavailable);
        let by_reason = counters.refused_by_reason();
        assert_eq!(by_reason.len(), RefusalReason::ALL.len());
        assert_eq!(by_reason["not_paid"], 2);
        assert_eq!(by_reason["figma_unavailable"], 1);
        assert_eq!(by_reason["no_identity"], 0);
    }
}
