//! What this replica forgot lately, so that nobody can make it remember:
//! an answer a shared tier holds from before an invalidation is not
//! trusted (whoever can write to Redis could put back a sealed PAID answer
//! that `invalidate_user` deleted, sealed by us and so accepted), and a
//! sealed invalidation heard once is not applied again (a replay within
//! its minute would otherwise empty caches at will).

use std::{
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use moka::sync::Cache;

use crate::{
    tier::{Invalidation, StoreKey, Stored},
    UserId,
};

/// The most invalidations of users and of keys remembered, each.
const MAX_REMEMBERED: u64 = 100_000;

pub(super) struct Forgotten {
    /// Users, and keys, invalidated: when (Unix ms).
    users: Cache<UserId, u64>,
    keys: Cache<StoreKey, u64>,
    /// When everything was invalidated last (Unix ms; 0 never).
    all_ms: AtomicU64,
    /// Sealed messages heard within the window they are good for.
    heard: Cache<u64, ()>,
    hasher: RandomState,
}

impl Forgotten {
    /// Invalidations are remembered as long as a tier's answer may be used
    /// (`keep`), messages as long as they are good for (`window`, both
    /// ways).
    pub(super) fn new(keep: Duration, window: Duration) -> Self {
        // moka takes at most 1,000 years; a year is past any sane lifetime.
        let keep = keep.clamp(Duration::from_secs(1), Duration::from_secs(365 * 86_400));
        Self {
            users: Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(keep)
                .build(),
            keys: Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(keep)
                .build(),
            all_ms: AtomicU64::new(0),
            heard: Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                .time_to_live(window * 2)
                .build(),
            hasher: RandomState::new(),
        }
    }

    /// `what` was forgotten at `now_ms`.
    pub(super) fn record(&self, what: &Invalidation, now_ms: u64) {
        match what {
            Invalidation::All => {
                self.all_ms.fetch_max(now_ms, Ordering::AcqRel);
            }
            Invalidation::User(user) => self.users.insert(user.clone(), now_ms),
            Invalidation::Key(key) => self.keys.insert(*key, now_ms),
        }
    }

    /// Whether `stored`, found at `key`, was fetched before something that
    /// covers it was forgotten here.
    pub(super) fn covers(&self, key: StoreKey, stored: &Stored) -> bool {
        let before = |at: u64| stored.fetched_ms <= at;
        before(self.all_ms.load(Ordering::Acquire))
            || self.users.get(&stored.info.user_id).is_some_and(before)
            || self.keys.get(&key).is_some_and(before)
    }

    /// Whether the sealed `message` is heard here for the first time.
    pub(super) fn first_hearing(&self, message: &[u8]) -> bool {
        let id = self.hasher.hash_one(message);
        let first = !self.heard.contains_key(&id);
        self.heard.insert(id, ());
        first
    }
}
