//! A cached answer ([`Entry`]), how long each status lives ([`Lifetimes`]),
//! and the moka expiry that drops it.

use std::{
    fmt,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use moka::Expiry;

use super::key::CacheKey;
use crate::{
    clock::{later, Clock},
    PaymentInformation, PaymentStatus,
};

/// The share of an answer's fresh lifetime after which a hit refreshes it
/// in the background.
pub(crate) const REFRESH_AT: f32 = 0.8;

/// A cached answer. Its deadlines derive from `fetched_at` and the status's
/// lifetimes, so they take no room in each of a million entries.
pub(crate) struct Entry {
    pub(crate) info: PaymentInformation,
    pub(crate) fetched_at: Instant,
    /// Set by the first hit past the refresh point, so one refresh starts.
    pub(crate) refreshing: AtomicBool,
}

impl Entry {
    pub(crate) fn new(info: PaymentInformation, fetched_at: Instant) -> Arc<Self> {
        Arc::new(Self {
            info,
            fetched_at,
            refreshing: AtomicBool::new(false),
        })
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("info", &self.info)
            .field("fetched_at", &self.fetched_at)
            .finish_non_exhaustive()
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
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            paid: Duration::from_secs(10 * 60),
            trial: Duration::from_secs(2 * 60),
            unpaid: Duration::from_secs(5),
            stale_grace: Duration::from_secs(60 * 60),
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

    /// The longest any answer is kept.
    pub(crate) fn longest_keep(&self) -> Duration {
        self.keep_for(&PaymentStatus::Paid)
            .max(self.keep_for(&PaymentStatus::Trial))
            .max(self.keep_for(&PaymentStatus::Unpaid))
    }

    pub(crate) fn fresh_until(&self, entry: &Entry) -> Instant {
        later(entry.fetched_at, self.fresh_for(&entry.info.payment_status))
    }

    pub(crate) fn refresh_at(&self, entry: &Entry) -> Instant {
        later(
            entry.fetched_at,
            self.fresh_for(&entry.info.payment_status)
                .mul_f32(REFRESH_AT),
        )
    }

    /// The end of the fresh lifetime plus the stale grace: when the entry
    /// is dropped, counted from when Figma answered, not from insertion.
    pub(crate) fn expires_at(&self, entry: &Entry) -> Instant {
        later(entry.fetched_at, self.keep_for(&entry.info.payment_status))
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
        let entry = Entry::new(info, fetched_at);
        assert_eq!(l.fresh_until(&entry), fetched_at + l.paid);
        assert_eq!(l.refresh_at(&entry), fetched_at + l.paid.mul_f32(0.8));
        assert_eq!(l.expires_at(&entry), fetched_at + l.paid + l.stale_grace);
    }
}
