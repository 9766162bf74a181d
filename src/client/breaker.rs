//! The circuit breaker: whether Figma as a whole is failing, judged from
//! the outcomes of every recent lookup (never from one caller's) and
//! confirmed by `GET /v1/me`.
//!
//! - **Closed**: lookups go to Figma and their outcomes are counted over a
//!   30-second window. When at least 3 of them failed (5xx, timeout,
//!   unreachable, an unreadable 200), and at least half, `GET /v1/me` is
//!   asked (at most every 10 s): if it fails too, the breaker opens. If it
//!   answers, the failures were the callers' own (a token that makes Figma
//!   fail), and the window starts again.
//! - **Open**: no lookup is sent. Lookups fail at once with
//!   [`ThrottleReason::FigmaFailing`](crate::error::ThrottleReason::FigmaFailing),
//!   which lets a stale PAID/TRIAL answer stand in and a fail-open gate let
//!   callers through. After a cool-down (5 s, doubled by each failed probe up
//!   to 30 s) one lookup goes through as a probe: any answer from Figma
//!   closes the breaker, a failure opens it again. The probe is claimed
//!   before a slot of the budget is taken ([`Breaker::claim`]) and takes
//!   one at once or gives the probe back, so while it is under way no
//!   lookup that claims after it spends a slot on a call that would be
//!   refused.
//!
//! Figma's 429 is an answer, not a failure: the back-off handles it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{clock::later, Error};

/// The window failures are counted over.
const WINDOW: Duration = Duration::from_secs(30);
/// Failures in a window (and at least half its lookups) that call for
/// asking `GET /v1/me`.
const MIN_FAILURES: u32 = 3;
/// How long a `GET /v1/me` that answered vouches for Figma.
pub(super) const CONFIRMED_FOR: Duration = Duration::from_secs(10);
/// The first cool-down, and the longest.
const COOL_DOWN: Duration = Duration::from_secs(5);
const MAX_COOL_DOWN: Duration = Duration::from_secs(30);

/// Whether a call's outcome says that Figma failed (`Some(true)`), that it
/// answered (`Some(false)`), or nothing about Figma (no call was made).
pub(super) fn failed<T>(result: &Result<T, Error>) -> Option<bool> {
    match result {
        Ok(_) => Some(false),
        Err(Error::InvalidId(_) | Error::InvalidToken(_) | Error::Throttled { .. }) => None,
        Err(e) => Some(e.is_outage()),
    }
}

#[derive(Debug, Default)]
pub(super) struct Breaker(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    window_started: Option<Instant>,
    calls: u32,
    failures: u32,
    /// When `GET /v1/me` last answered while lookups failed.
    vouched_at: Option<Instant>,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    until: Instant,
    cool_down: Duration,
    /// When the probe under way was let through, if one is.
    probing_since: Option<Instant>,
}

/// What the breaker lets a lookup do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// Call Figma.
    Call,
    /// Call Figma: this lookup is the probe of an open breaker.
    Probe,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a lookup may call Figma now, or how long until it may.
    fn pass(&self, now: Instant, timeout: Duration) -> Result<Pass, Duration> {
        let mut state = self.lock();
        let Some(open) = &mut state.open else {
            return Ok(Pass::Call);
        };
        if now < open.until {
            return Err(open.until - now);
        }
        // One probe at a time; a probe that never reported (its caller
        // went away) is replaced after the client's timeout.
        if let Some(since) = open.probing_since {
            let ends = later(since, timeout);
            if now < ends {
                return Err(ends - now);
            }
        }
        open.probing_since = Some(now);
        Ok(Pass::Probe)
    }

    /// Leave to call Figma, claimed before a slot of the budget is spent on
    /// the call: while Figma is failing only the probe takes a slot, and
    /// every other lookup fails at once with how long until the next one.
    pub(super) fn claim(&self, now: Instant, timeout: Duration) -> Result<Claim<'_>, Duration> {
        let pass = self.pass(now, timeout)?;
        Ok(Claim {
            breaker: self,
            pass,
            at: now,
            reported: false,
        })
    }

    /// The probe let through at `since` ended without a word about Figma
    /// (it found no slot, or Figma's answer said nothing of its health):
    /// the next lookup may probe at once.
    fn abandon_probe(&self, since: Instant) {
        if let Some(open) = &mut self.lock().open {
            if open.probing_since == Some(since) {
                open.probing_since = None;
            }
        }
    }

    /// Counts a call's outcome. Returns whether `GET /v1/me` should now be
    /// asked whether Figma is failing.
    #[cfg(test)]
    fn record(&self, failed: bool, pass: Pass, now: Instant) -> bool {
        self.record_probe(failed, pass, None, now)
    }

    /// [`record`](Self::record), for a probe let through at `probe_at`: a
    /// probe replaced since (it outlived the timeout) reports as any call
    /// would, and leaves its successor the probe.
    fn record_probe(
        &self,
        failed: bool,
        pass: Pass,
        probe_at: Option<Instant>,
        now: Instant,
    ) -> bool {
        let mut state = self.lock();
        if let Some(open) = &mut state.open {
            let still_the_probe =
                pass == Pass::Probe && probe_at.is_none_or(|at| open.probing_since == Some(at));
            if !failed {
                tracing::info!("Figma answers again: lookups go to Figma again");
                *state = State::default();
            } else if still_the_probe {
                open.cool_down = (open.cool_down * 2).min(MAX_COOL_DOWN);
                open.until = later(now, open.cool_down);
                open.probing_since = None;
            }
            return false;
        }
        if state
            .window_started
            .is_none_or(|at| now.saturating_duration_since(at) >= WINDOW)
        {
            state.window_started = Some(now);
            state.calls = 0;
            state.failures = 0;
        }
        state.calls += 1;
        state.failures += u32::from(failed);
        failed
            && state.failures >= MIN_FAILURES
            && state.failures * 2 >= state.calls
            && state
                .vouched_at
                .is_none_or(|at| now.saturating_duration_since(at) >= CONFIRMED_FOR)
    }

    /// What `GET /v1/me` said after lookups failed: Figma fails too (the
    /// breaker opens), or it answers (the window starts again).
    pub(super) fn confirm(&self, figma_fails: bool, now: Instant) {
        let mut state = self.lock();
        if state.open.is_some() {
            return;
        }
        if figma_fails {
            tracing::warn!(
                failures = state.failures,
                lookups = state.calls,
                "Figma is failing (GET /v1/me fails too): no lookup goes to Figma for {}s, then one probes; stale PAID/TRIAL answers stand in meanwhile",
                COOL_DOWN.as_secs()
            );
            state.open = Some(Open {
                until: later(now, COOL_DOWN),
                cool_down: COOL_DOWN,
                probing_since: None,
            });
        } else {
            tracing::debug!(
                failures = state.failures,
                "lookups failed but GET /v1/me answers: not an outage of Figma"
            );
            state.vouched_at = Some(now);
            state.window_started = None;
        }
    }

    /// Another replica found Figma failing: open until `until`, but for
    /// one cool-down at most, after which this replica probes for itself
    /// (the other's probe may find Figma back before its own opening ends).
    pub(super) fn open_until(&self, until: Instant, now: Instant) {
        let until = until.min(later(now, COOL_DOWN));
        let mut state = self.lock();
        match &mut state.open {
            Some(open) => open.until = open.until.max(until),
            None => {
                tracing::warn!(
                    for_secs = until.saturating_duration_since(now).as_secs(),
                    "another replica found Figma failing: no lookup goes to Figma until then; stale PAID/TRIAL answers stand in meanwhile"
                );
                state.open = Some(Open {
                    until,
                    cool_down: COOL_DOWN,
                    probing_since: None,
                });
            }
        }
    }

    /// How long until the open breaker lets a probe through (zero when one
    /// may go now), or `None` while it is closed.
    pub(super) fn open_for(&self, now: Instant) -> Option<Duration> {
        let state = self.lock();
        let open = state.open.as_ref()?;
        Some(open.until.saturating_duration_since(now))
    }
}

/// The breaker's leave for one call ([`Breaker::claim`]). A probe dropped
/// without [`record`](Self::record) (it found no slot) lets the next
/// lookup probe at once.
#[must_use = "a claimed probe holds back every other lookup until it reports"]
pub(crate) struct Claim<'a> {
    breaker: &'a Breaker,
    pass: Pass,
    at: Instant,
    reported: bool,
}

impl Claim<'_> {
    /// Whether the call is the probe of an open breaker.
    pub(super) fn pass(&self) -> Pass {
        self.pass
    }

    /// Counts the call's outcome ([`Breaker::record`]).
    pub(super) fn record(mut self, failed: bool, now: Instant) -> bool {
        self.reported = true;
        self.breaker
            .record_probe(failed, self.pass, Some(self.at), now)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.reported && self.pass == Pass::Probe {
            self.breaker.abandon_probe(self.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn failures_of_many_lookups_ask_for_a_confirmation_and_one_does_not() {
        let breaker = Breaker::default();
        let t = Instant::now();
        assert!(!breaker.record(true, Pass::Call, t));
        assert!(!breaker.record(false, Pass::Call, t));
        assert!(!breaker.record(true, Pass::Call, t));
        // Three failures of four lookups.
        assert!(breaker.record(true, Pass::Call, t));
        // Still closed until GET /v1/me says so.
        assert_eq!(breaker.pass(t, TIMEOUT), Ok(Pass::Call));
    }

    #[test]
    fn failures_among_many_answers_are_the_callers_own() {
        let breaker = Breaker::default();
        let t = Instant::now();
        for _ in 0..10 {
            breaker.record(false, Pass::Call, t);
        }
        for _ in 0..5 {
            assert!(!breaker.record(true, Pass::Call, t));
        }
        // A new window counts afresh.
        let later = t + WINDOW;
        breaker.record(true, Pass::Call, later);
        breaker.record(true, Pass::Call, later);
        assert!(breaker.record(true, Pass::Call, later));
    }

    #[test]
    fn an_answering_v1_me_keeps_it_closed_and_is_trusted_for_a_while() {
        let breaker = Breaker::default();
        let t = Instant::now();
        for _ in 0..3 {
            breaker.record(true, Pass::Call, t);
        }
        breaker.confirm(false, t);
        assert_eq!(breaker.open_for(t), None);
        for _ in 0..10 {
            assert!(!breaker.record(true, Pass::Call, t + s(1)));
        }
        assert!(breaker.record(true, Pass::Call, t + CONFIRMED_FOR));
    }

    #[test]
    fn open_it_refuses_then_lets_one_probe_through_whose_answer_closes_it() {
        let breaker = Breaker::default();
        let t = Instant::now();
        breaker.confirm(true, t);
        assert_eq!(breaker.open_for(t), Some(COOL_DOWN));
        assert_eq!(breaker.pass(t + s(1), TIMEOUT), Err(s(4)));
        let after = t + COOL_DOWN;
        assert_eq!(breaker.pass(after, TIMEOUT), Ok(Pass::Probe));
        // One probe at a time.
        assert_eq!(breaker.pass(after, TIMEOUT), Err(TIMEOUT));
        breaker.record(false, Pass::Probe, after);
        assert_eq!(breaker.open_for(after), None);
        assert_eq!(breaker.pass(after, TIMEOUT), Ok(Pass::Call));
    }

    #[test]
    fn failed_probes_double_the_cool_down_up_to_its_cap() {
        let breaker = Breaker::default();
        let mut t = Instant::now();
        breaker.confirm(true, t);
        let mut cool_downs = Vec::new();
        for _ in 0..5 {
            t += breaker.open_for(t).unwrap();
            assert_eq!(breaker.pass(t, TIMEOUT), Ok(Pass::Probe));
            breaker.record(true, Pass::Probe, t);
            cool_downs.push(breaker.open_for(t).unwrap().as_secs());
        }
        assert_eq!(cool_downs, [10, 20, 30, 30, 30]);
        // A lookup that was under way when it opened does not extend it.
        breaker.record(true, Pass::Call, t);
        assert_eq!(breaker.open_for(t), Some(s(30)));
    }

    /// A breaker opened by `GET /v1/me`, and when its first probe is due.
    fn probe_due() -> (Breaker, Instant) {
        let breaker = Breaker::default();
        let t = Instant::now();
        breaker.confirm(true, t);
        (breaker, t + COOL_DOWN)
    }

    #[test]
    fn a_claimed_probe_holds_off_every_other_call_until_it_reports_or_gives_up() {
        let (breaker, after) = probe_due();
        let probe = breaker.claim(after, TIMEOUT).expect("the probe is due");
        assert_eq!(probe.pass(), Pass::Probe);
        // Claimed, not yet sent (it waits for a slot): no one else may call,
        // so no one else spends a slot on a call the breaker would refuse.
        assert_eq!(breaker.claim(after, TIMEOUT).err(), Some(TIMEOUT));
        // It found no slot: the next lookup probes at once.
        drop(probe);
        let next = breaker
            .claim(after, TIMEOUT)
            .expect("the probe is free again");
        assert_eq!(next.pass(), Pass::Probe);
        // A failed probe reports, and holds the breaker open for longer.
        assert!(!next.record(true, after));
        assert_eq!(breaker.claim(after, TIMEOUT).err(), Some(2 * COOL_DOWN));
    }

    #[test]
    fn a_probe_replaced_after_the_timeout_does_not_free_its_successor() {
        let (breaker, after) = probe_due();
        let first = breaker.claim(after, TIMEOUT).unwrap();
        let second = breaker.claim(after + TIMEOUT, TIMEOUT).unwrap();
        drop(first);
        assert!(breaker.claim(after + TIMEOUT, TIMEOUT).is_err());
        drop(second);
        assert!(breaker.claim(after + TIMEOUT, TIMEOUT).is_ok());
    }

    #[test]
    fn a_replaced_probe_that_fails_late_leaves_its_successor_the_probe() {
        let (breaker, after) = probe_due();
        let first = breaker.claim(after, TIMEOUT).unwrap();
        let _second = breaker.claim(after + TIMEOUT, TIMEOUT).unwrap();
        // The first one's failure comes in: it does not free the probe.
        assert!(!first.record(true, after + TIMEOUT));
        assert_eq!(breaker.claim(after + TIMEOUT, TIMEOUT).err(), Some(TIMEOUT));
    }

    #[test]
    fn a_probe_that_never_reports_is_replaced_after_the_timeout() {
        let (breaker, after) = probe_due();
        assert_eq!(breaker.pass(after, TIMEOUT), Ok(Pass::Probe));
        assert_eq!(breaker.pass(after + TIMEOUT, TIMEOUT), Ok(Pass::Probe));
    }
}
