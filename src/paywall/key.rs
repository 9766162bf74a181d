//! [`CacheKey`]: the key of an answer in the in-process cache.

use std::hash::{BuildHasherDefault, Hasher};

use sha2::{Digest, Sha256};

use crate::{tier::StoreKey, PluginPaymentToken, Resource, UserId};

/// A cache key: 128 bits of SHA-256 over the question asked, so that plugin
/// payment tokens are never stored and keys are small and fixed-size.
///
/// The same bits key the answer in a tier ([`StoreKey`]), and another
/// replica's invalidation of one token's answer names its store key, which
/// [`from_store_key`](Self::from_store_key) maps back. The two are separate
/// types so that each use is visible: an in-process key derived another way
/// (a faster keyed hash) must keep that mapping, for example by carrying
/// both keys in the invalidation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey(u128);

impl CacheKey {
    fn digest(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            // Length-prefixed, so no two different questions hash the same
            // input. Two bytes are enough (IDs and tokens are bounded far
            // below 64 KiB) and keep a typical key within one SHA-256 block.
            let len = u16::try_from(part.len()).unwrap_or(u16::MAX);
            hasher.update(len.to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        Self(u128::from_le_bytes(first))
    }

    /// The key of a plugin payment token's answer. The answer names its own
    /// resource and is checked against the gate on every use, so one token's
    /// answer serves every gate without serving the wrong resource.
    pub(crate) fn token(token: &PluginPaymentToken) -> Self {
        Self::digest(&[b"token", token.expose_secret().as_bytes()])
    }

    /// The key of a user's answer on one resource.
    pub(crate) fn user(user: &UserId, resource: &Resource) -> Self {
        Self::digest(&[
            b"user",
            resource.kind().as_str().as_bytes(),
            resource.id().as_str().as_bytes(),
            user.as_str().as_bytes(),
        ])
    }

    /// The key of `question`'s answer.
    #[cfg(test)]
    pub(crate) fn of(question: &crate::client::Question) -> Self {
        use crate::client::Question;
        match question {
            Question::Token(token) => Self::token(token),
            Question::User(user, resource) => Self::user(user, resource),
        }
    }

    /// The key's bits as two `u64`s, low half first.
    pub(crate) fn halves(self) -> [u64; 2] {
        [self.0 as u64, (self.0 >> 64) as u64]
    }

    /// The key whose [`halves`](Self::halves) these are.
    pub(crate) fn from_halves([low, high]: [u64; 2]) -> Self {
        Self(u128::from(high) << 64 | u128::from(low))
    }

    /// The key of the same answer in a tier.
    pub(crate) fn store_key(self) -> StoreKey {
        StoreKey(self.0)
    }

    /// The in-process key of an answer a tier names (another replica's
    /// invalidation).
    pub(crate) fn from_store_key(key: StoreKey) -> Self {
        Self(key.0)
    }
}

/// How moka hashes a [`CacheKey`] (to pick a shard and count its use): the
/// key is already 128 bits of SHA-256, uniformly spread and not chosen by
/// anyone, so hashing it again (SipHash, moka's default) buys nothing; fold
/// its two halves instead. The user index hashes its slots (a keyed hash
/// already) the same way.
pub(crate) type KeyHasher = BuildHasherDefault<KeyBits>;

/// The [`Hasher`] of [`KeyHasher`].
#[derive(Default)]
pub(crate) struct KeyBits(u64);

impl Hasher for KeyBits {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, bits: u128) {
        self.0 ^= bits as u64 ^ (bits >> 64) as u64;
    }

    /// The user index's slots: already a keyed hash.
    fn write_u64(&mut self, bits: u64) {
        self.0 ^= bits;
    }

    /// Only a `CacheKey`'s `u128` is ever hashed; anything else still
    /// spreads (FNV-1a).
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moka_sees_the_keys_bits_folded() {
        use std::hash::BuildHasher;
        let key = CacheKey(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(
            KeyHasher::default().hash_one(key),
            0x0123_4567_89ab_cdef ^ 0xfedc_ba98_7654_3210
        );
        // Keys that differ in either half land apart.
        assert_ne!(
            KeyHasher::default().hash_one(CacheKey(1)),
            KeyHasher::default().hash_one(CacheKey(1 << 64 | 2))
        );
    }
    use crate::client::Question;

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    #[test]
    fn keys_tell_every_question_apart() {
        let plugin = Resource::plugin("12").unwrap();
        let widget = Resource::widget("12").unwrap();
        let keys = [
            CacheKey::user(&user("3"), &plugin),
            CacheKey::user(&user("3"), &widget),
            CacheKey::user(&user("31"), &Resource::plugin("2").unwrap()),
            CacheKey::user(&user("4"), &plugin),
            CacheKey::token(&PluginPaymentToken::new("3").unwrap()),
            CacheKey::token(&PluginPaymentToken::new("user").unwrap()),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(keys[0], CacheKey::user(&user("3"), &plugin));
        assert_eq!(
            keys[0],
            CacheKey::of(&Question::User(user("3"), plugin.clone()))
        );
        assert_eq!(CacheKey::from_store_key(keys[4].store_key()), keys[4]);
        assert_eq!(CacheKey::from_halves(keys[4].halves()), keys[4]);
    }
}
