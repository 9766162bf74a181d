//! Which cached answers are about which user, so that invalidating a user
//! drops exactly their answers by key. Never a predicate: moka checks
//! pending invalidation predicates on every read until it has scanned the
//! whole cache, so each `invalidate_user` would slow every hit.
//!
//! The index follows the cache: a key is filed under its answer's user when
//! the answer is cached, and taken out when moka drops the answer (expiry,
//! eviction, invalidation), so it holds no more than the cache does: a
//! hash of the user's ID and the key, 32 bytes a user.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{Mutex, MutexGuard},
};

use super::key::{CacheKey, KeyHasher};
use crate::UserId;

const SHARDS: usize = 16;

/// Keys by user, in shards that workers rarely share.
///
/// A user is filed under a keyed 64-bit hash of their ID (random per
/// process), not the ID itself: a slot is 32 bytes instead of 64 with a
/// `Vec`, in a table that holds one slot per cached user. Two users whose
/// hashes collide (about one chance in 10^7 among a million users, and
/// nobody can aim for it) share a slot: invalidating one also drops the
/// other's answers, which costs a lookup, never an answer it should not
/// give.
pub(super) struct UserIndex {
    shards: [Mutex<HashMap<u64, Keys, KeyHasher>>; SHARDS],
    hasher: RandomState,
}

/// A user's keys: nearly always one (a user ID on one resource, or one
/// token), held in the slot; more go to the heap.
enum Keys {
    One(Halves),
    Many(Vec<Halves>),
}

/// A [`CacheKey`] as two `u64`s: a `u128` would align the slot to 16
/// bytes.
type Halves = [u64; 2];

impl Keys {
    fn contains(&self, key: Halves) -> bool {
        match self {
            Self::One(one) => *one == key,
            Self::Many(many) => many.contains(&key),
        }
    }

    fn push(&mut self, key: Halves) {
        match self {
            Self::One(one) => *self = Self::Many(vec![*one, key]),
            Self::Many(many) => many.push(key),
        }
    }

    /// Takes `key` out; `true` when none is left.
    fn remove(&mut self, key: Halves) -> bool {
        match self {
            Self::One(one) => *one == key,
            Self::Many(many) => {
                many.retain(|k| *k != key);
                many.is_empty()
            }
        }
    }

    fn into_keys(self) -> Vec<CacheKey> {
        match self {
            Self::One(one) => vec![CacheKey::from_halves(one)],
            Self::Many(many) => many.into_iter().map(CacheKey::from_halves).collect(),
        }
    }
}

impl Default for UserIndex {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::default())),
            hasher: RandomState::new(),
        }
    }
}

impl UserIndex {
    /// The user's slot, and its shard.
    fn shard(&self, user: &UserId) -> (u64, MutexGuard<'_, HashMap<u64, Keys, KeyHasher>>) {
        let slot = self.hasher.hash_one(user.as_str());
        // Middle bits: the table itself uses the low bits (the bucket) and
        // the top seven (its control bytes).
        let shard = &self.shards[(slot >> 32) as usize % SHARDS];
        (slot, shard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Files `key` under `user`.
    pub(super) fn add(&self, user: &UserId, key: CacheKey) {
        let key = key.halves();
        let (slot, mut shard) = self.shard(user);
        match shard.get_mut(&slot) {
            Some(keys) if keys.contains(key) => {}
            Some(keys) => keys.push(key),
            None => {
                shard.insert(slot, Keys::One(key));
            }
        }
    }

    /// Takes `key` out from under `user` (moka dropped its answer).
    pub(super) fn remove(&self, user: &UserId, key: &CacheKey) {
        let (slot, mut shard) = self.shard(user);
        if shard
            .get_mut(&slot)
            .is_some_and(|keys| keys.remove(key.halves()))
        {
            shard.remove(&slot);
        }
    }

    /// Takes all of `user`'s keys (and those of a user whose hash
    /// collides).
    pub(super) fn take(&self, user: &UserId) -> Vec<CacheKey> {
        let (slot, mut shard) = self.shard(user);
        shard.remove(&slot).map(Keys::into_keys).unwrap_or_default()
    }

    pub(super) fn clear(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    /// How many users are filed.
    #[cfg(test)]
    pub(super) fn users(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PluginPaymentToken, Resource};

    #[test]
    fn keys_are_filed_taken_and_removed_by_user() {
        let index = UserIndex::default();
        let (ada, bob) = (UserId::new("1").unwrap(), UserId::new("2").unwrap());
        let plugin = Resource::plugin("9").unwrap();
        let by_id = CacheKey::user(&ada, &plugin);
        let by_token = CacheKey::token(&PluginPaymentToken::new("ppt_a").unwrap());
        index.add(&ada, by_id);
        index.add(&ada, by_token);
        index.add(&ada, by_id);
        index.add(&bob, CacheKey::user(&bob, &plugin));
        assert_eq!(index.take(&ada), vec![by_id, by_token]);
        assert!(index.take(&ada).is_empty());
        index.remove(&bob, &CacheKey::user(&bob, &plugin));
        assert_eq!(index.users(), 0);

        // Of two keys, removing one leaves the other; removing both, nothing.
        index.add(&ada, by_id);
        index.add(&ada, by_token);
        index.remove(&ada, &by_id);
        assert_eq!(index.users(), 1);
        index.remove(&ada, &by_token);
        assert_eq!(index.users(), 0);
        index.add(&ada, by_id);
        index.add(&ada, by_token);
        index.remove(&ada, &by_token);
        assert_eq!(index.take(&ada), vec![by_id]);
    }
}
