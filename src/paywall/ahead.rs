//! Refresh-ahead: the active buyers' answers, asked about again in slots
//! of the budget no one else wants, oldest first, so that a buyer who comes
//! back finds an answer the budget renewed for them while they were away.
//!
//! A buyer let in is noted (once a minute at most, with the question that
//! asks about them again: their token or their user ID, in memory only,
//! never in a tier or a log). Once a slot of the budget (60 s / the
//! budget a minute), any request that passes through the paywall looks at
//! the oldest answer of a buyer active within
//! [`ACTIVE_WINDOW`](crate::admission::ACTIVE_WINDOW) that is past its
//! refresh point, and asks Figma again about it without waiting, in the
//! refresh-ahead lane: it takes a slot only when the budget keeps one more
//! for a buyer or a new caller, so it uses the slots no one else wants.
//!
//! Only answers that let their buyer in (PAID, TRIAL) are noted, so what a
//! caller without one sends never spends a slot here.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use super::{key::CacheKey, Paywall};
use crate::{
    admission::{Ask, Need, Patience, ACTIVE_WINDOW},
    client::Question,
};

/// The most answers kept for refresh-ahead (past it, new buyers are not
/// noted until some go inactive).
const MAX_NOTED: usize = 100_000;

/// Active buyers' questions, by the key of their answer.
#[derive(Default)]
pub(super) struct Ahead {
    noted: Mutex<HashMap<CacheKey, Noted>>,
    /// When the next look may be made: milliseconds since the paywall
    /// started.
    next_ms: AtomicU64,
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
            noted.retain(|_, n| now.saturating_duration_since(n.seen) < ACTIVE_WINDOW);
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

impl Paywall {
    /// Once a slot of the budget: asks Figma again about the oldest active
    /// buyer's answer past its refresh point, if the budget has a slot no
    /// one else wants. A load and a compare otherwise.
    pub(super) fn refresh_ahead(&self, now: Instant) {
        let inner = &self.inner;
        let ahead = &inner.ahead;
        let ms = |at: Instant| at.saturating_duration_since(inner.started).as_millis() as u64;
        let next = ahead.next_ms.load(Ordering::Relaxed);
        if ms(now) < next {
            return;
        }
        let admission = inner.client.admission();
        let every = Duration::from_secs(60) / admission.rate().per_minute.max(1);
        if ahead
            .next_ms
            .compare_exchange(next, ms(now + every), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Some((key, question, fetched_at)) = self.oldest_due(now) else {
            return;
        };
        let ask = Ask {
            need: Need::RefreshAhead,
            patience: Patience::None,
            renews: Some(fetched_at),
        };
        drop(self.flight(key, Some(fetched_at), question, ask));
    }

    /// The oldest answer of an active buyer past its refresh point and not
    /// being asked about; forgets buyers no longer active and answers no
    /// longer cached or no longer letting anyone in.
    fn oldest_due(&self, now: Instant) -> Option<(CacheKey, Question, Instant)> {
        let inner = &self.inner;
        let mut oldest: Option<(CacheKey, Instant)> = None;
        let mut noted = inner.ahead.lock();
        let flights = inner.flights.keys();
        noted.retain(|key, n| {
            if now.saturating_duration_since(n.seen) >= ACTIVE_WINDOW {
                return false;
            }
            let Some(entry) = inner.cache.get(key) else {
                return false;
            };
            if !entry.grants() {
                return false;
            }
            let due = now >= inner.lifetimes.refresh_at(&entry) || entry.epoch != inner.epoch();
            if due && !flights.contains(key) && oldest.is_none_or(|(_, at)| entry.fetched_at < at) {
                oldest = Some((*key, entry.fetched_at));
            }
            true
        });
        let (key, fetched_at) = oldest?;
        Some((key, noted.get(&key)?.question.clone(), fetched_at))
    }
}
