//! Refresh-ahead: the active buyers' answers, asked about again in slots
//! of the budget no one else wants, oldest first, so that a buyer who comes
//! back finds an answer the budget renewed for them while they were away.
//!
//! A buyer let in is noted (once a minute at most, with the question that
//! asks about them again: their token or their user ID, in memory only,
//! never in a tier or a log). A task, started by the paywall's first
//! lookup on its runtime, waits for a slot no one else wants (the budget
//! whole but for it, and no lookup waiting), then asks Figma again about
//! the oldest answer of a buyer still active (`admission::active`) that
//! is past its refresh point, without waiting, in the refresh-ahead lane. So a slot
//! left idle by the callers goes to a buyer's renewal even when no request
//! comes, and never one a caller wants. The task ends with the paywall.
//!
//! Only answers that let their buyer in (PAID, TRIAL) are noted, so what a
//! caller without one sends never spends a slot here.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};

use super::{key::CacheKey, Inner};
use crate::{
    admission::{active, Renewal},
    client::Question,
};

/// The most answers kept for refresh-ahead (past it, new buyers are not
/// noted until some go inactive).
const MAX_NOTED: usize = 100_000;

/// The longest the task sleeps: a buyer noted meanwhile (whose answer,
/// read from a tier after a restart, may be due at once), a back-off that
/// ends, or a dropped paywall is noticed within this.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(5);

/// Active buyers' questions, by the key of their answer.
#[derive(Default)]
pub(super) struct Ahead {
    noted: Mutex<HashMap<CacheKey, Noted>>,
    /// Whether the task was started.
    started: AtomicBool,
}

/// The answer refresh-ahead renews next.
enum Due {
    /// This one now (its key, the question, when Figma gave it).
    Now(CacheKey, Question, Instant),
    /// None before then.
    At(Instant),
    /// None noted.
    Nothing,
}

struct Noted {
    question: Question,
    /// When its buyer was last let in.
    seen: Instant,
}

impl Ahead {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Noted>> {
        self.noted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a buyer let in on the answer at `key`.
    pub(super) fn note(&self, key: CacheKey, question: impl FnOnce() -> Question, now: Instant) {
        let mut noted = self.lock();
        if let Some(known) = noted.get_mut(&key) {
            known.seen = now;
            return;
        }
        if noted.len() >= MAX_NOTED {
            noted.retain(|_, n| active(now.saturating_duration_since(n.seen)));
            if noted.len() >= MAX_NOTED {
                return;
            }
        }
        let question = question();
        noted.insert(
            key,
            Noted {
                question,
                seen: now,
            },
        );
    }
}

/// Marks the refresh-ahead task not started when it ends.
struct Restart(Weak<super::Inner>);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            inner.ahead.started.store(false, Ordering::Release);
        }
    }
}

impl Inner {
    /// Starts the refresh-ahead task, once, on the runtime of the lookup
    /// that calls it: a load on the hit path otherwise.
    pub(super) fn start_refresh_ahead(self: &Arc<Self>) {
        let ahead = &self.ahead;
        if ahead.started.load(Ordering::Relaxed) || ahead.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            ahead.started.store(false, Ordering::Release);
            return;
        };
        let paywall = Arc::downgrade(self);
        let clock = self.clock.clone();
        runtime.spawn(async move {
            // If the runtime ends the task (a lookup on a short-lived
            // runtime started it), the next lookup starts it again.
            let _restart = Restart(paywall.clone());
            loop {
                // Listening for a mock clock's move before the look, so
                // that one made meanwhile is not missed.
                let moved = clock.moved();
                tokio::pin!(moved);
                let moved_already = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(moved.as_mut(), cx).is_ready())
                })
                .await;
                // Held for the look only, never while the task sleeps: the
                // paywall ends when its last user lets it go.
                let Some(wait) = paywall
                    .upgrade()
                    .map(|inner| inner.refresh_ahead(clock.now()).min(LOOK_AT_LEAST_EVERY))
                else {
                    return;
                };
                if !moved_already {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = moved => {}
                    }
                }
            }
        });
    }

    /// If a slot no one else wants is free, asks Figma again about the
    /// oldest active buyer's answer past its refresh point. Returns how long
    /// until the next look.
    fn refresh_ahead(self: &Arc<Self>, now: Instant) -> Duration {
        let admission = self.client.admission();
        let idle_in = admission.idle_slot_in();
        if !idle_in.is_zero() {
            return idle_in;
        }
        match self.oldest_due(now) {
            Due::Now(key, question, fetched_at) => {
                self.renew_behind(key, fetched_at, question, Renewal::Ahead);
                // The slot it took (if it found one) is spent by then.
                admission.rate().interval()
            }
            // One look a slot at most, and one every few seconds at least
            // (which wins on a budget of fewer than 12 a minute, whose
            // slot is longer: `clamp` would panic there).
            Due::At(at) => at
                .saturating_duration_since(now)
                .max(admission.rate().interval())
                .min(LOOK_AT_LEAST_EVERY),
            Due::Nothing => LOOK_AT_LEAST_EVERY,
        }
    }

    /// The oldest answer of an active buyer past its refresh point and not
    /// being asked about, else when the next one will be; forgets buyers no
    /// longer active and answers no longer cached or no longer letting
    /// anyone in.
    fn oldest_due(&self, now: Instant) -> Due {
        let inner = self;
        let mut oldest: Option<(CacheKey, Instant)> = None;
        let mut next: Option<Instant> = None;
        let mut noted = inner.ahead.lock();
        let flights = inner.flights.keys();
        noted.retain(|key, n| {
            if !active(now.saturating_duration_since(n.seen)) {
                return false;
            }
            let Some(entry) = inner.answers.cache.get(key) else {
                return false;
            };
            if !entry.grants() {
                return false;
            }
            let refresh_at = inner.answers.lifetimes.refresh_at(&entry);
            let due = now >= refresh_at || entry.epoch != inner.answers.epoch();
            // Due but asked about already: look again soon.
            let due_at = if due { now } else { refresh_at };
            if due && !flights.contains(key) {
                if oldest.is_none_or(|(_, at)| entry.fetched_at < at) {
                    oldest = Some((*key, entry.fetched_at));
                }
            } else {
                next = Some(next.map_or(due_at, |n| n.min(due_at)));
            }
            true
        });
        match (
            oldest.and_then(|(key, at)| Some((key, noted.get(&key)?.question.clone(), at))),
            next,
        ) {
            (Some((key, question, at)), _) => Due::Now(key, question, at),
            (None, Some(at)) => Due::At(at),
            (None, None) => Due::Nothing,
        }
    }
}
