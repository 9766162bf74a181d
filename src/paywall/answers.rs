//! [`Answers`]: the answers this process holds (the cache, its index of
//! users, what the answers say of which resource, their lifetimes) and
//! what invalidations make of them.

use std::sync::{
    atomic::{AtomicU32, AtomicU64, Ordering},
    Arc,
};

use moka::sync::Cache;

use super::{
    entry::{Entry, Lifetimes, Verdicts},
    index::UserIndex,
    key::{CacheKey, KeyHasher},
};
use crate::{client::Question, tier::Invalidation};

/// The answers this process holds; see the [module docs](self).
pub(super) struct Answers {
    pub(super) cache: Cache<CacheKey, Arc<Entry>, KeyHasher>,
    /// Which cached answers are about which user.
    pub(super) index: Arc<UserIndex>,
    /// What cached answers say of which resource, shared.
    pub(super) verdicts: Verdicts,
    pub(super) lifetimes: Lifetimes,
    /// Bumped by every invalidation: a lookup that started before one does
    /// not cache what it got.
    generation: AtomicU64,
    /// Bumped when invalidations may have been lost: an answer cached
    /// before (another epoch) is no longer fresh.
    epoch: AtomicU32,
    /// When that last happened (Unix ms): an answer a local tier stored
    /// before is no longer fresh either.
    demoted_ms: AtomicU64,
}

impl Answers {
    pub(super) fn new(
        cache: Cache<CacheKey, Arc<Entry>, KeyHasher>,
        index: Arc<UserIndex>,
        lifetimes: Lifetimes,
    ) -> Self {
        Self {
            cache,
            index,
            verdicts: Verdicts::default(),
            lifetimes,
            generation: AtomicU64::new(0),
            epoch: AtomicU32::new(0),
            demoted_ms: AtomicU64::new(0),
        }
    }

    /// Files the key of a new answer so that invalidating its user finds it.
    /// A user's own answer about a shared resource needs no filing: its key
    /// follows from the user and the resource (see `forget`). A token's
    /// answer (the key hides the token) and anything else goes in the index.
    pub(super) fn file(&self, question: &Question, entry: &Entry, key: CacheKey) {
        let found_by_user = match question {
            Question::User(user, resource) => *user == entry.user && self.verdicts.holds(resource),
            Question::Token(_) => false,
        };
        if !found_by_user {
            self.index.add(&entry.user, key);
        }
    }

    /// Invalidations may have been lost (at `now_ms`): answers held so far
    /// are asked about again before they are trusted as fresh (they keep
    /// their grace).
    pub(super) fn demote(&self, now_ms: u64) {
        self.demoted_ms.store(now_ms, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The epoch an answer cached now belongs to.
    pub(super) fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::Acquire)
    }

    /// How many invalidations there have been: a lookup compares it before
    /// and after.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether an answer a local tier stored at `fetched_ms` predates the
    /// last demotion.
    pub(super) fn demoted_since(&self, fetched_ms: u64) -> bool {
        fetched_ms < self.demoted_ms.load(Ordering::Acquire)
    }

    /// Forgets `what` in the cache; lookups under way do not cache what
    /// they get.
    pub(super) fn forget(&self, what: &Invalidation) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        match what {
            Invalidation::All => {
                self.cache.invalidate_all();
                self.index.clear();
            }
            Invalidation::User(user) => {
                // By key, never by predicate (see index.rs): the user's own
                // answers about each resource, and what the index filed.
                let own = self.verdicts.resources();
                let own = own.iter().map(|resource| CacheKey::user(user, resource));
                for key in own.chain(self.index.take(user)) {
                    self.cache.invalidate(&key);
                }
            }
            Invalidation::Key(key) => {
                self.cache.invalidate(&CacheKey::from_store_key(*key));
            }
        }
    }
}
