//! What replicas tell each other through a shared tier, sealed like the
//! answers (see `tier/seal.rs`): the 429 back-off every replica keeps to,
//! invalidations, and that Figma is failing (every replica's breaker opens). Whoever can write to Redis but lacks the app's key
//! can neither stop every replica's lookups with a back-off of their own,
//! nor empty every replica's cache with invalidations; an old message
//! replayed is refused too.

use std::time::Duration;

use futures_util::{future::BoxFuture, FutureExt};

use super::Inner;
use crate::{
    error::MAX_BACK_OFF,
    tier::{
        codec::{decode_invalidation, decode_message, encode_invalidation, encode_message},
        Invalidation, Invalidations, Message,
    },
};

/// How far from this replica's clock an invalidation's time may be: a
/// message older than this is a replay, and is ignored.
pub(super) const MESSAGE_WINDOW: Duration = Duration::from_secs(60);

impl Inner {
    /// The back-off `delay` from now, sealed for every replica.
    pub(super) fn seal_back_off(&self, delay: Duration) -> Vec<u8> {
        let until = self
            .clock
            .unix_ms()
            .saturating_add(millis(delay.min(MAX_BACK_OFF)));
        self.tiers
            .keyring
            .seal_message(Message::BackOff, &encode_message(until, b""))
    }

    /// How long a back-off a shared tier holds still asks for: the least of
    /// its own lifetime, the time its sealed message names and 30 days.
    /// `None` when its seal does not hold (logged) or it has passed.
    pub(super) fn open_back_off(
        &self,
        left: Duration,
        message: &[u8],
        tier: &str,
    ) -> Option<Duration> {
        let Some((until, _)) = self
            .tiers
            .keyring
            .open_message(Message::BackOff, message)
            .and_then(decode_message)
        else {
            self.warn_bad_seal("a 429 back-off", tier);
            return None;
        };
        let named = Duration::from_millis(until.saturating_sub(self.clock.unix_ms()));
        Some(left.min(named).min(MAX_BACK_OFF)).filter(|d| !d.is_zero())
    }

    /// `what`, sealed for every replica, with the time it was sent.
    pub(super) fn seal_invalidation(&self, what: &Invalidation) -> Vec<u8> {
        let text = encode_invalidation(what);
        self.tiers.keyring.seal_message(
            Message::Invalidation,
            &encode_message(self.clock.unix_ms(), text.as_bytes()),
        )
    }

    /// The invalidation another replica sent, if its seal holds and it was
    /// sent within a minute of now.
    fn open_invalidation(&self, message: &[u8]) -> Option<Invalidation> {
        let Some((sent, text)) = self
            .tiers
            .keyring
            .open_message(Message::Invalidation, message)
            .and_then(decode_message)
        else {
            self.warn_bad_seal("an invalidation", "the shared tier");
            return None;
        };
        let now = self.clock.unix_ms();
        if now.abs_diff(sent) > millis(MESSAGE_WINDOW) {
            tracing::debug!(
                age_ms = i128::from(now) - i128::from(sent),
                "ignored an invalidation sent more than a minute from now (a replay, or a clock far off)"
            );
            return None;
        }
        decode_invalidation(text)
    }
}

impl Inner {
    /// This replica's breaker is open: tell the others, once an opening,
    /// so that they stop asking Figma too.
    pub(super) async fn tell_figma_failing(&self) {
        let Some(shared) = &self.tiers.shared else {
            return;
        };
        let Some(left) = self.client.figma_failing_for() else {
            return;
        };
        let until = self.clock.unix_ms().saturating_add(millis(left));
        // An opening already told (by this replica or heard from another).
        let told = self
            .tiers
            .told_failing_until
            .load(std::sync::atomic::Ordering::Acquire);
        if until <= told.saturating_add(1_000) {
            return;
        }
        self.tiers
            .told_failing_until
            .fetch_max(until, std::sync::atomic::Ordering::AcqRel);
        let message = self
            .tiers
            .keyring
            .seal_message(Message::FigmaFailing, &encode_message(until, b""));
        shared.replicas.announce(&message).await;
    }

    /// Another replica says Figma is failing until a time: if sealed, new
    /// and at most the longest cool-down away, this replica's breaker opens
    /// too. Whether `message` was one.
    fn heard_figma_failing(&self, message: &[u8]) -> bool {
        let Some((until, _)) = self
            .tiers
            .keyring
            .open_message(Message::FigmaFailing, message)
            .and_then(decode_message)
        else {
            return false;
        };
        let now = self.clock.unix_ms();
        let left = Duration::from_millis(until.saturating_sub(now));
        if left.is_zero() || left > MESSAGE_WINDOW || !self.tiers.forgotten.first_hearing(message) {
            tracing::debug!(
                "ignored a \"Figma is failing\" that is past, too far ahead, or heard before"
            );
            return true;
        }
        self.tiers
            .told_failing_until
            .fetch_max(until, std::sync::atomic::Ordering::AcqRel);
        self.client.hear_figma_failing(left);
        true
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Other replicas' invalidations, heard by the tier, are applied like this
/// replica's own: lookups under way here do not cache what they get either.
impl Invalidations for Inner {
    fn missed(&self) {
        self.demote();
    }

    fn heard<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            if self.heard_figma_failing(message) {
                return;
            }
            if let Some(what) = self.open_invalidation(message) {
                // Sealed and recent, but heard before: a replay.
                if !self.tiers.forgotten.first_hearing(message) {
                    tracing::debug!("ignored an invalidation heard before (a replay)");
                    return;
                }
                self.forget(&what).await;
            }
        }
        .boxed()
    }
}
