//! What admission did, for the capacity report: slots used and refused by
//! lane, and the buyers active lately (whose number, with the budget,
//! makes the refresh cycle).

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use super::Lane;
use crate::{clock::Clock, UserId};

/// A buyer let in within this long is active: their answer needs asking
/// about again within the refresh cycle.
pub(crate) const ACTIVE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// The most active buyers counted one by one (past it, the oldest go).
const MAX_ACTIVE: usize = 1_000_000;

/// How often the active buyers are counted again.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// How often the refresh cycle being too long is logged.
const WARN_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub(super) struct Report {
    used: [AtomicU64; 4],
    refused: [AtomicU64; 4],
    /// Buyers let in, and when last.
    active: Mutex<HashMap<UserId, Instant>>,
    /// Their number, counted at most once a second: (when, how many).
    counted: Mutex<Option<(Instant, usize)>>,
    started: Instant,
    warned_at: Mutex<Option<Instant>>,
    clock: Clock,
}

/// Slots used and refused, by lane ([`Lane::ALL`]'s order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LaneCounts {
    pub(crate) used: [u64; 4],
    pub(crate) refused: [u64; 4],
}

impl Report {
    pub(super) fn new(clock: &Clock) -> Self {
        Self {
            used: Default::default(),
            refused: Default::default(),
            active: Mutex::default(),
            counted: Mutex::new(None),
            started: clock.now(),
            warned_at: Mutex::new(None),
            clock: clock.clone(),
        }
    }

    pub(super) fn counted(&self, lane: Lane, used: bool) {
        let counts = if used { &self.used } else { &self.refused };
        counts[lane.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn lane_counts(&self) -> LaneCounts {
        let read = |counts: &[AtomicU64; 4]| counts.each_ref().map(|c| c.load(Ordering::Relaxed));
        LaneCounts {
            used: read(&self.used),
            refused: read(&self.refused),
        }
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.started)
    }

    pub(super) fn buyer_seen(&self, user: &UserId) {
        let now = self.clock.now();
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.len() >= MAX_ACTIVE && !active.contains_key(user) {
            forget_inactive(&mut active, now);
            if active.len() >= MAX_ACTIVE {
                return;
            }
        }
        active.insert(user.clone(), now);
    }

    /// How many buyers are active: counted at most once a second, as every
    /// lookup of an expired answer asks.
    pub(super) fn active_buyers(&self) -> usize {
        let now = self.clock.now();
        let mut counted = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, n)) = *counted {
            if now.saturating_duration_since(at) < COUNT_EVERY {
                return n;
            }
        }
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        forget_inactive(&mut active, now);
        *counted = Some((now, active.len()));
        active.len()
    }

    pub(super) fn warn_cycle(&self) -> bool {
        let now = self.clock.now();
        let mut warned_at = self.warned_at.lock().unwrap_or_else(|e| e.into_inner());
        if warned_at.is_some_and(|at| now.saturating_duration_since(at) < WARN_EVERY) {
            return false;
        }
        *warned_at = Some(now);
        true
    }
}

fn forget_inactive(active: &mut HashMap<UserId, Instant>, now: Instant) {
    active.retain(|_, seen| now.saturating_duration_since(*seen) < ACTIVE_WINDOW);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::MockClock;

    #[test]
    fn a_buyer_is_active_for_half_an_hour_after_they_were_let_in() {
        let clock = MockClock::new();
        let report = Report::new(&clock.clock());
        let user = |i: u32| UserId::new(i.to_string()).unwrap();
        for i in 0..10 {
            report.buyer_seen(&user(i));
        }
        // One buyer with many tokens is one buyer.
        report.buyer_seen(&user(3));
        assert_eq!(report.active_buyers(), 10);
        // Counted again a second later at most.
        report.buyer_seen(&user(11));
        assert_eq!(report.active_buyers(), 10);
        clock.advance(COUNT_EVERY);
        assert_eq!(report.active_buyers(), 11);
        clock.advance(ACTIVE_WINDOW / 2);
        report.buyer_seen(&user(3));
        clock.advance(ACTIVE_WINDOW / 2 - COUNT_EVERY);
        assert_eq!(report.active_buyers(), 1);
        report.counted(Lane::Refresh, true);
        report.counted(Lane::Suspect, false);
        let counts = report.lane_counts();
        assert_eq!(counts.used, [1, 0, 0, 0]);
        assert_eq!(counts.refused, [0, 0, 0, 1]);
    }
}
