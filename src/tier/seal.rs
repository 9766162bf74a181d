//! Answers stored outside the process are sealed: a MAC under a key only
//! the app holds, bound to the key the answer is stored under, so that an
//! entry written by anyone without the key, altered, or moved under
//! another key (another token's, another user's) is refused.
//!
//! `[2][HMAC-SHA256(key, store key ‖ body), first 16 bytes][body]`, the body
//! being the codec's encoding.
//!
//! What replicas tell each other through a shared tier (the 429 back-off,
//! invalidations) is sealed the same way, under a key derived for messages
//! and labelled by what the message is, so that no sealed answer or
//! message can pass for another kind: `[3][HMAC-SHA256(message key, kind ‖
//! body), first 16 bytes][body]`. Each message's body carries its time,
//! so that a replayed one is refused once it is old. The previous key is accepted too while a
//! key is rotated; the engine seals such an answer again under the current
//! one when it reads it, so rotating asks Figma nothing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{
    codec::{decode, encode},
    StoreKey, Stored,
};
use crate::AccessToken;

/// The first byte of a sealed value.
const SEALED: u8 = 2;

/// The first byte of a sealed message.
const SEALED_MESSAGE: u8 = 3;

/// What a sealed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Message {
    /// The 429 back-off every replica keeps to.
    BackOff,
    /// An invalidation every replica applies.
    Invalidation,
    /// Figma is failing: every replica's circuit breaker opens until then.
    FigmaFailing,
}

impl Message {
    fn label(self) -> &'static [u8] {
        match self {
            Self::BackOff => b"back-off",
            Self::Invalidation => b"invalidation",
            Self::FigmaFailing => b"figma-failing",
        }
    }
}

/// Bytes of MAC kept: 128 bits.
const MAC_LEN: usize = 16;

/// The shortest secret accepted as a key.
pub(crate) const MIN_SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The keys that seal and open stored answers. Never printed.
#[derive(Clone)]
pub(crate) struct Keyring {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(<redacted>)")
    }
}

/// A 32-byte key from any secret, labelled so that it is used for nothing
/// else.
fn derive(secret: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"figma-paywall: the key that seals stored answers, v1");
    mac.finalize().into_bytes().into()
}

impl Keyring {
    /// From a secret of the app's (`FIGMA_PAYWALL_KEY`), at least 32 bytes.
    pub(crate) fn from_secret(secret: &[u8]) -> Option<Self> {
        (secret.len() >= MIN_SECRET_LEN).then(|| Self {
            current: derive(secret),
            previous: None,
        })
    }

    /// From the creator's access token, which every replica has: the
    /// default when no secret is given.
    pub(crate) fn from_access_token(token: &AccessToken) -> Self {
        Self {
            current: derive(token.expose_secret().as_bytes()),
            previous: None,
        }
    }

    /// This keyring with `other`'s previous key, if it has one.
    pub(crate) fn keep_previous_of(mut self, other: Keyring) -> Self {
        self.previous = other.previous;
        self
    }

    /// Also accepts answers sealed under `secret` (the key being retired).
    pub(crate) fn with_previous(mut self, secret: &[u8]) -> Option<Self> {
        (secret.len() >= MIN_SECRET_LEN).then(|| {
            self.previous = Some(derive(secret));
            self
        })
    }

    fn mac(key: &[u8; 32], at: StoreKey, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(&at.0.to_le_bytes());
        mac.update(body);
        mac
    }

    fn message_mac(key: &[u8; 32], kind: Message, body: &[u8]) -> HmacSha256 {
        let mut derived = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        derived.update(b"figma-paywall: the key that seals messages between replicas, v1");
        let derived = derived.finalize().into_bytes();
        let mut mac = HmacSha256::new_from_slice(&derived).expect("HMAC takes keys of any length");
        mac.update(kind.label());
        mac.update(&[0]);
        mac.update(body);
        mac
    }

    /// `body`, sealed as a message of `kind`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn seal_message(&self, kind: Message, body: &[u8]) -> Vec<u8> {
        let tag = Self::message_mac(&self.current, kind, body)
            .finalize()
            .into_bytes();
        let mut out = Vec::with_capacity(1 + MAC_LEN + body.len());
        out.push(SEALED_MESSAGE);
        out.extend_from_slice(&tag[..MAC_LEN]);
        out.extend_from_slice(body);
        out
    }

    /// The body of a message of `kind`, if its seal holds under the
    /// current or the previous key.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn open_message<'a>(&self, kind: Message, bytes: &'a [u8]) -> Option<&'a [u8]> {
        let (&SEALED_MESSAGE, rest) = bytes.split_first()? else {
            return None;
        };
        let (tag, body) = rest.split_at_checked(MAC_LEN)?;
        let verifies = |key: &[u8; 32]| {
            Self::message_mac(key, kind, body)
                .verify_truncated_left(tag)
                .is_ok()
        };
        (verifies(&self.current) || self.previous.as_ref().is_some_and(verifies)).then_some(body)
    }

    /// `answer`, sealed for storing under `at`.
    pub(crate) fn seal(&self, at: StoreKey, answer: &Stored) -> Vec<u8> {
        let body = encode(answer);
        let tag = Self::mac(&self.current, at, &body).finalize().into_bytes();
        let mut out = Vec::with_capacity(1 + MAC_LEN + body.len());
        out.push(SEALED);
        out.extend_from_slice(&tag[..MAC_LEN]);
        out.extend_from_slice(&body);
        out
    }

    /// The answer stored under `at`, if its seal holds.
    pub(crate) fn open(&self, at: StoreKey, bytes: &[u8]) -> Result<Opened, Refused> {
        let Some((&SEALED, rest)) = bytes.split_first() else {
            return Err(Refused::NotSealed);
        };
        let (tag, body) = rest.split_at_checked(MAC_LEN).ok_or(Refused::NotSealed)?;
        let verifies = |key: &[u8; 32]| Self::mac(key, at, body).verify_truncated_left(tag).is_ok();
        let opened = if verifies(&self.current) {
            Opened::Current
        } else if self.previous.as_ref().is_some_and(verifies) {
            Opened::Previous
        } else {
            return Err(Refused::BadSeal);
        };
        // A body that verifies but does not decode is from a newer version.
        decode(body).map(opened).ok_or(Refused::NotSealed)
    }
}

/// An answer whose seal holds, and under which key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    Current(Stored),
    /// Sealed under the previous key: seal it again under the current one.
    Previous(Stored),
}

/// Why a stored value was not used.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a sealed answer of this version (an earlier version's, or not an
    /// answer at all).
    NotSealed,
    /// Sealed, but not by a key this app holds, or altered since.
    BadSeal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PaymentInformation, PaymentStatus, Resource, UserId};

    fn answer(status: PaymentStatus) -> Stored {
        Stored {
            info: PaymentInformation::new(
                UserId::new("2001").unwrap(),
                &Resource::plugin("11").unwrap(),
                status,
            ),
            fetched_ms: 1_700_000_000_000,
        }
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const OTHER: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn a_sealed_answer_opens_under_its_key_only() {
        let keys = Keyring::from_secret(SECRET).unwrap();
        let at = StoreKey(7);
        let sealed = keys.seal(at, &answer(PaymentStatus::Paid));
        assert_eq!(
            keys.open(at, &sealed),
            Ok(Opened::Current(answer(PaymentStatus::Paid)))
        );
        // Moved under another key: refused.
        assert_eq!(keys.open(StoreKey(8), &sealed), Err(Refused::BadSeal));
        // Sealed by someone without the key: refused.
        let forger = Keyring::from_secret(OTHER).unwrap();
        assert_eq!(
            keys.open(at, &forger.seal(at, &answer(PaymentStatus::Paid))),
            Err(Refused::BadSeal)
        );
        // Unsealed, truncated or empty: refused.
        assert_eq!(
            keys.open(at, &encode(&answer(PaymentStatus::Paid))),
            Err(Refused::NotSealed)
        );
        assert_eq!(keys.open(at, &sealed[..10]), Err(Refused::NotSealed));
        assert_eq!(keys.open(at, &[]), Err(Refused::NotSealed));
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let keys = Keyring::from_secret(SECRET).unwrap();
        let at = StoreKey(7);
        let sealed = keys.seal(at, &answer(PaymentStatus::Unpaid));
        for i in 1..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert!(keys.open(at, &altered).is_err(), "byte {i} altered");
        }
    }

    #[test]
    fn a_sealed_message_opens_as_its_own_kind_only() {
        let keys = Keyring::from_secret(SECRET).unwrap();
        let sealed = keys.seal_message(Message::Invalidation, b"all");
        assert_eq!(
            keys.open_message(Message::Invalidation, &sealed),
            Some(&b"all"[..])
        );
        assert_eq!(keys.open_message(Message::BackOff, &sealed), None);
        let forger = Keyring::from_secret(OTHER).unwrap();
        let forged = forger.seal_message(Message::Invalidation, b"all");
        assert_eq!(keys.open_message(Message::Invalidation, &forged), None);
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert_eq!(keys.open_message(Message::Invalidation, &altered), None);
        }
        assert_eq!(keys.open_message(Message::Invalidation, b"all"), None);
        // An answer's seal is no message's, nor the other way round.
        let answer = keys.seal(StoreKey(7), &answer(PaymentStatus::Paid));
        assert_eq!(keys.open_message(Message::BackOff, &answer), None);
        assert!(keys.open(StoreKey(7), &sealed).is_err());
        // While a key is rotated, the previous one opens messages too.
        let rotated = Keyring::from_secret(OTHER)
            .unwrap()
            .with_previous(SECRET)
            .unwrap();
        assert!(rotated
            .open_message(Message::Invalidation, &sealed)
            .is_some());
    }

    #[test]
    fn the_previous_key_opens_while_a_key_is_rotated() {
        let old = Keyring::from_secret(OTHER).unwrap();
        let new = Keyring::from_secret(SECRET)
            .unwrap()
            .with_previous(OTHER)
            .unwrap();
        let at = StoreKey(1);
        let sealed = old.seal(at, &answer(PaymentStatus::Trial));
        assert_eq!(
            new.open(at, &sealed),
            Ok(Opened::Previous(answer(PaymentStatus::Trial)))
        );
        assert!(Keyring::from_secret(b"short").is_none());
        assert!(!format!("{new:?}").contains("0123"));
    }
}
