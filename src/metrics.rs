//! The paywall's counters through the [`metrics`] facade (feature
//! `metrics`), for whatever exporter the app installs (Prometheus, StatsD,
//! OpenTelemetry). Every name starts `figma_paywall_`.
//!
//! [`Paywall::record_metrics`] publishes the counters the paywall keeps
//! anyway (the hit path pays nothing for metrics); Figma's latency, its
//! 429s and waits for the rate budget are recorded as they happen, on the
//! miss path only.

use crate::PaywallStats;

/// Publishes `s` to the installed `metrics` recorder; see
/// [`Paywall::record_metrics`](crate::Paywall::record_metrics).
pub(crate) fn record(s: PaywallStats) {
    for (outcome, n) in [
        ("hit", s.cache_hits),
        ("miss", s.cache_misses),
        ("stale", s.stale_served),
        ("store", s.store_hits),
        ("redis", s.redis_hits),
        ("refused_again", s.refusals_remembered),
    ] {
        ::metrics::counter!("figma_paywall_lookups_total", "outcome" => outcome).absolute(n);
    }
    ::metrics::counter!("figma_paywall_requests_total", "outcome" => "granted").absolute(s.granted);
    for (reason, n) in &s.refused {
        ::metrics::counter!("figma_paywall_requests_total", "outcome" => *reason).absolute(*n);
    }
    ::metrics::counter!("figma_paywall_upstream_calls_total").absolute(s.upstream_calls);
    ::metrics::gauge!("figma_paywall_cached_answers").set(s.cached_entries as f64);
    ::metrics::gauge!("figma_paywall_lookups_in_flight").set(s.lookups_in_flight as f64);
    ::metrics::gauge!("figma_paywall_backing_off_seconds")
        .set(s.backing_off_secs.unwrap_or(0) as f64);
    ::metrics::gauge!("figma_paywall_budget_per_minute").set(f64::from(s.budget_per_minute));
    ::metrics::gauge!("figma_paywall_figma_failing").set(f64::from(u8::from(s.figma_failing)));
    ::metrics::gauge!("figma_paywall_active_buyers").set(s.active_buyers as f64);
    ::metrics::gauge!("figma_paywall_refresh_cycle_seconds").set(s.refresh_cycle_secs as f64);
    for (outcome, by_lane) in [("used", &s.slots_used), ("refused", &s.slots_refused)] {
        for (lane, n) in by_lane {
            ::metrics::counter!("figma_paywall_budget_slots_total", "lane" => *lane, "outcome" => outcome)
                .absolute(*n);
        }
    }
    ::metrics::counter!("figma_paywall_budget_slots_idle_total").absolute(s.slots_idle);
    ::metrics::counter!("figma_paywall_unverified_served_total").absolute(s.unverified_served);
    for (outcome, by_status) in [("spent", &s.credits_spent), ("refused", &s.credits_refused)] {
        for (status, n) in by_status {
            ::metrics::counter!("figma_paywall_credits_requests_total", "status" => *status, "outcome" => outcome)
                .absolute(*n);
        }
    }
}
