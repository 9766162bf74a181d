//! Cache tiers beyond the in-process cache: the small trait the engine
//! calls on a miss, and its implementations (Redis, feature `redis`).
//!
//! A tier keeps sealed answers (bytes: see [`seal`]) under [`StoreKey`]s,
//! hashes that never hold a plugin payment token. It knows nothing of the
//! engine: the engine seals and opens answers and decides what is fresh,
//! what to refresh and what to fall back on (`paywall/tiered.rs`); a tier
//! only keeps, finds, forgets and, when it is shared by replicas,
//! coordinates them.
//!
//! Every tier implements [`Tier`] (get, put, invalidate). A tier shared by
//! replicas (Redis) also implements [`Replicas`]: it shares the 429
//! back-off, the rate budget and a lock per cold key, and tells the engine
//! of what other replicas send through [`Replicas::listen`].

pub(crate) mod codec;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub(crate) mod seal;
#[cfg(feature = "store")]
pub(crate) mod store;
#[cfg(feature = "store")]
pub(crate) mod store_counts;

use std::{fmt, sync::Weak, time::Duration};

use futures_util::future::BoxFuture;

use crate::{PaymentInformation, UserId};

pub(crate) use self::seal::{Keyring, Message, Opened, Refused};

/// The key of an answer outside the process: 128 bits of a hash of the
/// question, never the question itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StoreKey(pub(crate) u128);

impl StoreKey {
    /// As it appears in Redis key names and invalidation messages.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// An answer as a tier keeps it: Figma's answer and when Figma gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) info: PaymentInformation,
    /// Milliseconds since the Unix epoch.
    pub(crate) fetched_ms: u64,
}

/// What to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalidation {
    /// Every answer.
    All,
    /// Every answer about this user.
    User(UserId),
    /// The answer under this key.
    Key(StoreKey),
}

/// The engine, as a tier that hears of other replicas' invalidations sees
/// it. Only a shared tier calls it, hence no caller without one.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait Invalidations: Send + Sync + 'static {
    /// Invalidations may have been lost (the tier was unreachable): every
    /// answer held so far is asked about again before it is trusted as
    /// fresh. It may still stand in, within its grace, while Figma fails.
    fn missed(&self);

    /// Opens an invalidation message another replica sent and applies it,
    /// if its seal holds and it is recent.
    fn heard<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, ()>;
}

/// What to charge a shared budget with when it answers again after
/// replicas kept to their shares without it: `spent_for` of spending at
/// its full rate (as if every replica had spent its whole share then), and
/// `margin` more, for calls the shares' phases may add in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Charge {
    pub(crate) spent_for: Duration,
    pub(crate) margin: Duration,
}

/// How long a shared budget must have been out of reach before a replica
/// keeps to its share of it instead: longer than a Redis restart or a
/// reconnection takes, so that replicas rarely disagree on whether Redis
/// answers, and longer than Redis waits before it takes a replica it no
/// longer hears from for one spending its share.
pub(crate) const UNREACHABLE: Duration = Duration::from_secs(3);

/// The tier did not answer in time or failed; it has already logged why.
/// The lookup goes on without it.
#[derive(Debug)]
pub(crate) struct Unavailable;

pub(crate) type TierResult<T> = Result<T, Unavailable>;

/// A back-off a shared tier holds: how long it has left, and its sealed
/// message.
pub(crate) type SharedBackOff = (Duration, Vec<u8>);

/// A cache tier. Futures are boxed: tiers are only asked on an in-process
/// miss, where a call to Figma costs a thousand times more.
pub(crate) trait Tier: fmt::Debug + Send + Sync + 'static {
    /// What the tier is, for logs: "Redis", "the store".
    fn name(&self) -> &'static str;

    /// The sealed answer stored under `key`, if any.
    fn get(&self, key: StoreKey) -> BoxFuture<'_, TierResult<Option<Vec<u8>>>>;

    /// Stores the sealed answer `sealed` for `keep_for`, and files it under
    /// `user` for invalidation. `index_for` is the longest any answer is
    /// kept, so that a short-lived answer never ends a long-lived one's
    /// index entry.
    fn put<'a>(
        &'a self,
        key: StoreKey,
        sealed: &'a [u8],
        user: &'a UserId,
        keep_for: Duration,
        index_for: Duration,
    ) -> BoxFuture<'a, TierResult<()>>;

    /// Forgets `what`, and tells other replicas to forget it too by sending
    /// them `message` (`what`, sealed by the engine). A user or a key is
    /// deleted from the tier; `All` may only be told (Redis keeps its
    /// answers until they expire).
    fn invalidate<'a>(&'a self, what: &'a Invalidation, message: &'a [u8]) -> BoxFuture<'a, ()>;
}

/// What replicas sharing a tier (Redis) coordinate through it: the
/// messages they send each other, a lock per cold key, the 429 back-off
/// and the rate budget. Only a tier shared by replicas has it; the engine
/// holds it as an `Option`.
pub(crate) trait Replicas: fmt::Debug + Send + Sync + 'static {
    /// Tells every replica `message` (sealed).
    fn announce<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, ()>;

    /// Hands `engine` every message another replica sends (the engine opens
    /// it), until the engine is dropped.
    fn listen(&self, engine: Weak<dyn Invalidations>);

    /// Takes the lock on a cold key so that one replica asks Figma for it:
    /// `false` when another replica holds it.
    fn lock(&self, key: StoreKey) -> BoxFuture<'_, TierResult<bool>>;

    /// Releases a lock this replica holds.
    fn unlock(&self, key: StoreKey) -> BoxFuture<'_, ()>;

    /// The longest a replica holds the lock on a cold key, and so the
    /// longest others wait for it.
    fn lock_ttl(&self) -> Duration;

    /// The back-off after a 429 that every replica keeps to, if one is set:
    /// how long it has left, and the sealed message that set it (the engine
    /// opens it, and ignores a back-off whose seal does not hold).
    fn backing_off_for(&self) -> BoxFuture<'_, TierResult<Option<SharedBackOff>>>;

    /// Stops every replica's calls to Figma for `delay`, never shortening a
    /// longer back-off; `message` is the back-off, sealed by the engine.
    fn back_off(&self, delay: Duration, message: Vec<u8>) -> BoxFuture<'_, ()>;

    /// Takes a slot of a budget shared by replicas, if the budget keeps
    /// `reserve` after it (a lane's reserve: the time it must hold unspent
    /// beyond the call): `None` when taken, else how long until one is
    /// free. First the budget is charged with what replicas may have spent
    /// while it was out of reach ([`Charge`]).
    fn take_slot(
        &self,
        per_minute: u32,
        burst: u32,
        reserve: Duration,
        charge: Charge,
    ) -> BoxFuture<'_, TierResult<Option<Duration>>>;

    /// How many replicas share the budget; while the tier is unreachable
    /// each keeps to its share.
    fn replicas(&self) -> u32;

    /// How long every command to the tier has failed (zero while it
    /// answers).
    fn unreachable_for(&self) -> Duration;
}
