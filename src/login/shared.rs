//! Sign-outs every replica applies (`LoginBuilder::redis`): a logout,
//! `sign_out_user` and `sign_out_everyone` on one replica reach the others
//! through the Redis tier's pub/sub, sealed with a MAC under a key derived
//! from the session key (which every replica shares), carrying when they
//! were sent: one more than a minute away, or heard before, is a replay
//! and changes nothing. Whoever can write to Redis but lacks the key can
//! neither sign anyone out nor keep anyone in.

use std::sync::{Arc, Weak};

use futures_util::{future::BoxFuture, FutureExt};
use hmac::{Hmac, Mac};
use moka::sync::Cache;
use sha2::Sha256;

use super::session::{unix_ms, Sessions, SignOut};
use crate::{redis::RedisTier, tier::Invalidations, UserId};

/// How far from this replica's clock a sign-out's time may be.
const WINDOW_MS: u64 = 60_000;

/// What the MAC covers first: a sign-out of this crate, this version.
const LABEL: &[u8] = b"figma-paywall sign-out v1";

/// A MAC's length.
const MAC_LEN: usize = 32;

/// The sign-outs replicas tell each other, and the one place they hear
/// them: kept alive by the login, listened for while it lives.
pub(super) struct SharedSignOuts {
    tier: RedisTier,
    channel: String,
    key: [u8; 32],
    sessions: Arc<Sessions>,
    /// The MACs of sign-outs heard lately.
    heard: Cache<[u8; MAC_LEN], ()>,
}

impl SharedSignOuts {
    /// Sign-outs through `tier`, sealed with a key derived from
    /// `signing_key`, applied to `sessions`; listening starts now (within a
    /// Tokio runtime).
    pub(super) fn start(tier: RedisTier, signing_key: &[u8], sessions: Arc<Sessions>) -> Arc<Self> {
        let mut derive = <Hmac<Sha256> as Mac>::new_from_slice(signing_key)
            .expect("HMAC takes a key of any length");
        derive.update(b"figma-paywall sign-out messages");
        let shared = Arc::new(Self {
            channel: tier.channel_of("signout"),
            tier,
            key: derive.finalize().into_bytes().into(),
            sessions,
            heard: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_millis(2 * WINDOW_MS))
                .build(),
        });
        let engine: Weak<dyn Invalidations> = Arc::downgrade(&shared) as Weak<Self>;
        shared.tier.listen_on(shared.channel.clone(), engine);
        shared
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(LABEL);
        mac.update(body);
        mac
    }

    /// Tells the other replicas of `out` (in the background).
    pub(super) fn tell(self: &Arc<Self>, out: &SignOut) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime: a sign-out was not told to the other replicas");
            return;
        };
        let body = encode(out, unix_ms());
        let mut message = self.mac(&body).finalize().into_bytes().to_vec();
        message.extend_from_slice(&body);
        let this = self.clone();
        runtime.spawn(async move { this.tier.publish_on(this.channel.clone(), message).await });
    }

    /// The sign-out in `message`, if its seal holds, it is recent and it
    /// was not heard before.
    fn open(&self, message: &[u8]) -> Option<SignOut> {
        if message.len() < MAC_LEN {
            return None;
        }
        let (tag, body) = message.split_at(MAC_LEN);
        if self.mac(body).verify_slice(tag).is_err() {
            tracing::warn!("ignored a sign-out whose seal does not hold (written to Redis by someone without the session key, or a replica with another FIGMA_SESSION_KEY)");
            return None;
        }
        let (out, sent) = decode(body)?;
        if unix_ms().abs_diff(sent) > WINDOW_MS {
            tracing::debug!("ignored a sign-out sent more than a minute from now (a replay)");
            return None;
        }
        let tag: [u8; MAC_LEN] = tag.try_into().ok()?;
        if self.heard.contains_key(&tag) {
            tracing::debug!("ignored a sign-out heard before (a replay)");
            return None;
        }
        self.heard.insert(tag, ());
        Some(out)
    }
}

impl Invalidations for SharedSignOuts {
    fn missed(&self) {
        tracing::warn!("sign-outs from other replicas may have been missed while Redis was unreachable: a session another replica ended may still sign in here until it expires");
    }

    fn heard<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            if let Some(out) = self.open(message) {
                self.sessions.apply(&out);
            }
        }
        .boxed()
    }
}

/// `[kind][sent: 8][fields]`, big-endian.
fn encode(out: &SignOut, sent: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    match out {
        SignOut::Session { id, issued_at } => {
            body.push(0);
            body.extend_from_slice(&sent.to_be_bytes());
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&issued_at.to_be_bytes());
        }
        SignOut::User { user, at } => {
            body.push(1);
            body.extend_from_slice(&sent.to_be_bytes());
            body.extend_from_slice(&at.to_be_bytes());
            body.extend_from_slice(user.as_str().as_bytes());
        }
        SignOut::Everyone { at } => {
            body.push(2);
            body.extend_from_slice(&sent.to_be_bytes());
            body.extend_from_slice(&at.to_be_bytes());
        }
    }
    body
}

fn decode(body: &[u8]) -> Option<(SignOut, u64)> {
    let (&kind, rest) = body.split_first()?;
    let (sent, rest) = rest.split_first_chunk::<8>()?;
    let out = match kind {
        0 => {
            let (id, rest) = rest.split_first_chunk::<16>()?;
            let issued_at: &[u8; 8] = rest.try_into().ok()?;
            SignOut::Session {
                id: u128::from_be_bytes(*id),
                issued_at: u64::from_be_bytes(*issued_at),
            }
        }
        1 => {
            let (at, user) = rest.split_first_chunk::<8>()?;
            SignOut::User {
                user: UserId::new(std::str::from_utf8(user).ok()?).ok()?,
                at: u64::from_be_bytes(*at),
            }
        }
        2 => SignOut::Everyone {
            at: u64::from_be_bytes(*<&[u8; 8]>::try_from(rest).ok()?),
        },
        _ => return None,
    };
    Some((out, u64::from_be_bytes(*sent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_outs_read_back_as_written_and_junk_reads_as_nothing() {
        let user = UserId::new("2001").unwrap();
        for out in [
            SignOut::Session {
                id: u128::MAX - 7,
                issued_at: 1_700_000_000_000,
            },
            SignOut::User { user, at: 42 },
            SignOut::Everyone { at: 43 },
        ] {
            assert_eq!(decode(&encode(&out, 99)), Some((out, 99)));
        }
        for junk in [
            &b""[..],
            b"\x00",
            b"\x03aaaaaaaa",
            b"\x02aaaaaaa",
            b"\x01aaaaaaaabbbbbbbb",
        ] {
            assert_eq!(decode(junk), None, "{junk:?}");
        }
    }
}
