//! Which cached answers are about which user, so that invalidating a user
//! drops exactly their answers by key. Never a predicate: moka checks
//! pending invalidation predicates on every read until it has scanned the
//! whole cache, so each `invalidate_user` would slow every hit.
//!
//! The index follows the cache: a key is filed under its answer's user when
//! the answer is cached, and taken out when moka drops the answer (expiry,
//! eviction, invalidation), so it holds no more than the cache does: an
//! `Arc` of the user's ID the answer already holds, and the key.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use super::key::CacheKey;
use crate::UserId;

const SHARDS: usize = 16;

/// Keys by user, in shards that workers rarely share.
pub(super) struct UserIndex {
    shards: [Mutex<HashMap<UserId, Keys>>; SHARDS],
    hasher: RandomState,
}

/// A user's keys: mostly one (a user ID on one resource, or one token).
type Keys = Vec<CacheKey>;

impl Default for UserIndex {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
        }
    }
}

impl UserIndex {
    fn shard(&self, user: &UserId) -> std::sync::MutexGuard<'_, HashMap<UserId, Keys>> {
        let i = (self.hasher.hash_one(user.as_str()) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Files `key` under `user`.
    pub(super) fn add(&self, user: &UserId, key: CacheKey) {
        let mut shard = self.shard(user);
        let keys = shard.entry(user.clone()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    /// Takes `key` out from under `user` (moka dropped its answer).
    pub(super) fn remove(&self, user: &UserId, key: &CacheKey) {
        let mut shard = self.shard(user);
        if let Some(keys) = shard.get_mut(user) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                shard.remove(user);
            }
        }
    }

    /// Takes all of `user`'s keys.
    pub(super) fn take(&self, user: &UserId) -> Keys {
        self.shard(user).remove(user).unwrap_or_default()
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
    }
}
