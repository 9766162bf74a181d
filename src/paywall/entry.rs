//! A cached answer ([`Entry`]), how long each status lives ([`Lifetimes`]),
//! and the moka expiry that drops it.

use std::{
    collections::HashSet,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use moka::Expiry;

use super::key::CacheKey;
use crate::{
    clock::{later, Clock},
    PaymentInformation, PaymentStatus, PurchaseDate, Resource, UserId,
};

/// The share of an answer's fresh lifetime after which a hit refreshes it
/// in the background.
pub(crate) const REFRESH_AT: f32 = 0.8;

/// A cached answer, compact: the user's ID and the date of purchase
/// inline, and what Figma said of which resource ([`Verdict`]) shared with
/// every answer that says the same. Its deadlines derive from `fetched_at`
/// and the status's lifetimes, so they take no room in each of a million
/// entries. [`Entry::info`] builds the [`PaymentInformation`] handed to
/// handlers without touching the heap.
pub(crate) struct Entry {
    pub(crate) user: UserId,
    verdict: Arc<Verdict>,
    date: Option<PurchaseDate>,
    pub(crate) fetched_at: Instant,
    /// The paywall's epoch when it was cached: from another epoch, it is
    /// not fresh (invalidations may have been missed since).
    pub(crate) epoch: u32,
    /// Set by the first hit past the refresh point, so one refresh starts.
    pub(crate) refreshing: AtomicBool,
    /// The minute (of the paywall's life) its buyer was last counted as
    /// active, plus one; 0 never.
    pub(crate) counted_in: AtomicU32,
}

/// What Figma said of a resource: a million buyers of one plugin share
/// one.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Verdict {
    resource: Resource,
    status: PaymentStatus,
}

impl Entry {
    /// Figma's answer `info`, fetched at `fetched_at`, its verdict shared
    /// through `verdicts`.
    pub(crate) fn new(
        info: PaymentInformation,
        fetched_at: Instant,
        verdicts: &Verdicts,
        epoch: u32,
    ) -> Arc<Self> {
        let verdict = verdicts.share(Verdict {
            resource: Resource::new(info.resource_type, info.resource_id),
            status: info.payment_status,
        });
        Arc::new(Self {
            user: info.user_id,
            verdict,
            date: info.date_of_purchase,
            fetched_at,
            epoch,
            refreshing: AtomicBool::new(false),
            counted_in: AtomicU32::new(0),
        })
    }

    /// Whether this answer lets a buyer in (PAID or TRIAL).
    pub(crate) fn grants(&self) -> bool {
        self.status().grants()
    }

    /// Marks its buyer counted in `minute`: whether they were not yet.
    pub(crate) fn count_in(&self, minute: u32) -> bool {
        let mark = minute.saturating_add(1);
        // A read on the hit path; a write once a minute.
        self.counted_in.load(Ordering::Relaxed) != mark
            && self.counted_in.swap(mark, Ordering::Relaxed) != mark
    }

    /// The resource the answer is about.
    pub(crate) fn resource(&self) -> &Resource {
        &self.verdict.resource
    }

    /// The user's status on it.
    pub(crate) fn status(&self) -> &PaymentStatus {
        &self.verdict.status
    }

    /// Figma's answer as it came.
    pub(crate) fn info(&self) -> PaymentInformation {
        let mut info =
            PaymentInformation::new(self.user.clone(), self.resource(), self.status().clone());
        info.date_of_purchase = self.date.clone();
        info
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("user", &self.user)
            .field("verdict", &self.verdict)
            .field("fetched_at", &self.fetched_at)
            .finish_non_exhaustive()
    }
}

/// The verdicts cached answers hold, one shared copy each, and the
/// resources they are about. Figma's answers name the resources and a
/// handful of statuses, so there are few; past [`Verdicts::MAX`] distinct
/// ones (a bug, never an attack: a forged token gets no answer), an answer
/// gets its own copy.
#[derive(Default)]
pub(crate) struct Verdicts(Mutex<Shared>);

#[derive(Default)]
struct Shared {
    verdicts: HashSet<Arc<Verdict>>,
    resources: Vec<Resource>,
}

impl Verdicts {
    pub(crate) const MAX: usize = 1024;

    fn share(&self, verdict: Verdict) -> Arc<Verdict> {
        let mut shared = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(one) = shared.verdicts.get(&verdict) {
            return one.clone();
        }
        if shared.verdicts.len() >= Self::MAX {
            return Arc::new(verdict);
        }
        if !shared.resources.contains(&verdict.resource) {
            shared.resources.push(verdict.resource.clone());
        }
        let one = Arc::new(verdict);
        shared.verdicts.insert(one.clone());
        one
    }

    /// Whether a shared verdict is about `resource`: then `resources`
    /// names it.
    pub(crate) fn holds(&self, resource: &Resource) -> bool {
        let shared = self.0.lock().unwrap_or_else(|e| e.into_inner());
        shared.resources.contains(resource)
    }

    /// Every resource a shared verdict is about.
    pub(crate) fn resources(&self) -> Vec<Resource> {
        let shared = self.0.lock().unwrap_or_else(|e| e.into_inner());
        shared.resources.clone()
    }

    /// Shares a PAID verdict on `resource`, for tests that fill the table.
    #[cfg(test)]
    pub(crate) fn fill(&self, resource: Resource) {
        self.share(Verdict {
            resource,
            status: PaymentStatus::Paid,
        });
    }
}

/// How long answers are fresh, and how long PAID/TRIAL ones may stand in
/// after that while Figma fails.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub(crate) paid: Duration,
    pub(crate) trial: Duration,
    pub(crate) unpaid: Duration,
    pub(crate) stale_grace: Duration,
    /// The longest a PAID/TRIAL answer past its lifetime lets its buyer in
    /// while its refresh waits (within the refresh cycle).
    pub(crate) max_unverified: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            paid: Duration::from_secs(10 * 60),
            trial: Duration::from_secs(2 * 60),
            unpaid: Duration::from_secs(5),
            stale_grace: Duration::from_secs(60 * 60),
            max_unverified: Duration::from_secs(60 * 60),
        }
    }
}

impl Lifetimes {
    pub(crate) fn fresh_for(&self, status: &PaymentStatus) -> Duration {
        match status {
            PaymentStatus::Paid => self.paid,
            PaymentStatus::Trial => self.trial,
            _ => self.unpaid,
        }
    }

    pub(crate) fn grace_for(&self, status: &PaymentStatus) -> Duration {
        match status {
            PaymentStatus::Paid | PaymentStatus::Trial => self.stale_grace,
            _ => Duration::ZERO,
        }
    }

    /// How long an answer is kept: its fresh lifetime plus its stale grace.
    pub(crate) fn keep_for(&self, status: &PaymentStatus) -> Duration {
        self.fresh_for(status)
            .saturating_add(self.grace_for(status))
    }

    /// How long an answer is held in the process: as long as it is kept,
    /// or used unverified, whichever is longer.
    fn hold_for(&self, status: &PaymentStatus) -> Duration {
        let unverified = match status {
            PaymentStatus::Paid | PaymentStatus::Trial => self.max_unverified,
            _ => Duration::ZERO,
        };
        self.keep_for(status)
            .max(self.fresh_for(status).saturating_add(unverified))
    }

    /// Until when a PAID/TRIAL answer past its lifetime may keep letting
    /// its buyer in while its refresh waits: the refresh cycle `cycle`
    /// from when Figma gave it (never less than its lifetime), capped by
    /// `max_unverified`. `None` for every other answer.
    pub(crate) fn unverified_until(&self, entry: &Entry, cycle: Duration) -> Option<Instant> {
        let window = self.unverified_for(entry.status(), cycle)?;
        Some(later(entry.fetched_at, window))
    }

    /// How long after Figma gave it a `status` answer may let its buyer in
    /// while its refresh waits: the refresh cycle `cycle` (never less than
    /// its lifetime), capped by `max_unverified` past its lifetime. `None`
    /// for any answer but PAID and TRIAL.
    pub(crate) fn unverified_for(
        &self,
        status: &PaymentStatus,
        cycle: Duration,
    ) -> Option<Duration> {
        if !status.grants() {
            return None;
        }
        let fresh_for = self.fresh_for(status);
        let cap = fresh_for.saturating_add(self.max_unverified);
        Some(cycle.max(fresh_for).min(cap))
    }

    /// The longest any answer is kept.
    pub(crate) fn longest_keep(&self) -> Duration {
        self.keep_for(&PaymentStatus::Paid)
            .max(self.keep_for(&PaymentStatus::Trial))
            .max(self.keep_for(&PaymentStatus::Unpaid))
    }

    pub(crate) fn fresh_until(&self, entry: &Entry) -> Instant {
        later(entry.fetched_at, self.fresh_for(entry.status()))
    }

    pub(crate) fn refresh_at(&self, entry: &Entry) -> Instant {
        later(
            entry.fetched_at,
            self.fresh_for(entry.status()).mul_f32(REFRESH_AT),
        )
    }

    /// The end of the fresh lifetime plus the stale grace: until when the
    /// answer may stand in while Figma fails, counted from when Figma
    /// answered.
    pub(crate) fn stale_until(&self, entry: &Entry) -> Instant {
        later(entry.fetched_at, self.keep_for(entry.status()))
    }

    /// When the entry is dropped: past its stale grace and the most it may
    /// be used unverified, counted from when Figma answered, not from
    /// insertion.
    pub(crate) fn expires_at(&self, entry: &Entry) -> Instant {
        later(entry.fetched_at, self.hold_for(entry.status()))
    }
}

/// Tells moka when to drop an entry: at [`Lifetimes::expires_at`], by the
/// paywall's clock.
pub(crate) struct EntryExpiry {
    pub(crate) lifetimes: Lifetimes,
    pub(crate) clock: Clock,
}

impl EntryExpiry {
    fn left(&self, entry: &Entry) -> Option<Duration> {
        Some(
            self.lifetimes
                .expires_at(entry)
                .saturating_duration_since(self.clock.now()),
        )
    }
}

impl Expiry<CacheKey, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        entry: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        self.left(entry)
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        entry: &Arc<Entry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.left(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paid_and_trial_have_grace() {
        let l = Lifetimes {
            paid: Duration::from_secs(10),
            trial: Duration::from_secs(5),
            unpaid: Duration::from_secs(1),
            stale_grace: Duration::from_secs(100),
            max_unverified: Duration::from_secs(100),
        };
        assert_eq!(l.grace_for(&PaymentStatus::Paid), Duration::from_secs(100));
        assert_eq!(l.grace_for(&PaymentStatus::Trial), Duration::from_secs(100));
        for status in [
            PaymentStatus::Unpaid,
            PaymentStatus::NotSupported,
            PaymentStatus::Other("X".into()),
        ] {
            assert_eq!(l.grace_for(&status), Duration::ZERO);
            assert_eq!(l.fresh_for(&status), Duration::from_secs(1));
        }
        assert_eq!(l.longest_keep(), Duration::from_secs(110));
    }

    #[test]
    fn deadlines_count_from_when_figma_answered() {
        let l = Lifetimes::default();
        let fetched_at = Instant::now();
        let info: PaymentInformation = serde_json::from_str(
            r#"{"user_id":"1","resource_id":"2","resource_type":"PLUGIN","payment_status":"PAID"}"#,
        )
        .unwrap();
        let entry = Entry::new(info, fetched_at, &Verdicts::default(), 0);
        assert_eq!(l.fresh_until(&entry), fetched_at + l.paid);
        assert_eq!(l.refresh_at(&entry), fetched_at + l.paid.mul_f32(0.8));
        assert_eq!(l.expires_at(&entry), fetched_at + l.paid + l.stale_grace);
    }
}
