//! A cache tier in Redis shared by replicas (feature `redis`).
//!
//! # Example
//!
//! ```no_run
//! use figma_paywall::{redis::RedisTier, Paywall, PaymentsClient};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tier = RedisTier::builder("redis://127.0.0.1:6379").build()?;
//! let paywall = Paywall::builder(PaymentsClient::from_env()?)
//!     .redis(tier)
//!     .build();
//! # Ok(()) }
//! ```
//!
//! With a [`RedisTier`], a lookup goes to the in-process cache, then Redis,
//! then Figma; Figma's answers are written through to Redis with the same
//! per-status lifetimes. Replicas also share, through Redis:
//!
//! - the **429 back-off**: one replica's 429 stops every replica until
//!   `Retry-After` has passed;
//! - the **rate budget**: a GCRA limiter in a Lua script, with the client's
//!   [`rate_limit`](crate::PaymentsClientBuilder::rate_limit) as the budget of
//!   all replicas together;
//! - **coalescing**: a short lock per cold key, so replicas asking for the
//!   same cold key make one call to Figma (the lock expires if its holder
//!   dies, bounding the wait);
//! - **invalidation**: [`Paywall::invalidate_user`](crate::Paywall::invalidate_user)
//!   deletes in Redis and tells every replica, over pub/sub, to drop its
//!   in-process copy.
//!
//! Redis down or slow is never a reason to refuse a caller: every Redis
//! command has a short timeout (default 100 ms), after which the lookup goes
//! on with the in-process cache and Figma directly; the tier is used again
//! as soon as Redis answers.

mod builder;
mod counts;
mod listen;
mod scripts;

pub use self::builder::{RedisTierBuilder, RedisTierError};

use std::{
    fmt,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};

use ::redis::{aio::ConnectionManager, AsyncCommands, Script, ScriptInvocation};

use self::scripts::{still_heard, FORGOTTEN_AFTER, FRESH_FOR};
use futures_util::{future::BoxFuture, FutureExt};

use super::{
    Charge, Invalidation, Invalidations, Replicas, SharedBackOff, StoreKey, Tier, TierResult,
    Unavailable,
};
use crate::{error::MAX_BACK_OFF, UserId};

/// Redis failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The shared Redis tier; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct RedisTier {
    inner: Arc<TierInner>,
}

struct TierInner {
    client: ::redis::Client,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    lock_ttl: Duration,
    replica: String,
    gcra: Script,
    heartbeat: Script,
    unlock: Script,
    back_off: Script,
    reserve_credits: Script,
    settle_credits: Script,
    /// Each user's count as last read, for an outage.
    offline: counts::OfflineCounts,
    health: Mutex<Health>,
    /// How many replicas share the budget: the most Redis has heard from in
    /// a minute, over the last minute it answered (so that a Redis restart,
    /// which forgets them, does not), and at least `replicas_floor`. Kept
    /// while Redis is unreachable.
    replicas: AtomicU32,
    replicas_floor: u32,
}

#[derive(Default)]
struct Health {
    failing: bool,
    /// Since when every command has failed, if the last one did.
    failing_since: Option<Instant>,
    warned_at: Option<Instant>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: show only the prefix.
        f.debug_struct("RedisTier")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// A duration as Redis's `PX`/`PEXPIRE` take it: whole milliseconds, at
/// least one (zero would be refused), saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisTier {
    /// Asks the server for a `PONG` within `within`: whether Redis answers
    /// at this URL, with its password and (for `rediss://`) its
    /// certificate. The gateway's `--check` uses it; the paywall never
    /// needs to (it treats Redis being away as it comes).
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use figma_paywall::redis::RedisTier;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tier = RedisTier::builder("redis://127.0.0.1:6379").build()?;
    /// tier.ping(Duration::from_secs(2)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self, within: Duration) -> Result<(), RedisTierError> {
        let mut conn = self.conn();
        let ping = ::redis::cmd("PING");
        let pong = ping.query_async::<String>(&mut conn);
        match tokio::time::timeout(within, pong).await {
            Ok(answer) => answer.map(drop).map_err(RedisTierError::redis),
            Err(_) => Err(RedisTierError::Timeout(within)),
        }
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.inner.prefix)
    }

    fn answer_key(&self, key: StoreKey) -> String {
        self.key("a", &key.hex())
    }

    fn lock_key(&self, key: StoreKey) -> String {
        self.key("l", &key.hex())
    }

    fn channel(&self) -> String {
        self.channel_of("invalidate")
    }

    /// The pub/sub channel of `what` replicas tell each other, under the
    /// tier's prefix.
    pub(crate) fn channel_of(&self, what: &str) -> String {
        self.key(what, "")
    }

    /// Publishes `message` on `channel`, within the tier's timeout.
    pub(crate) async fn publish_on(&self, channel: String, message: Vec<u8>) {
        let mut conn = self.conn();
        let _ = self
            .run("publish", async move {
                conn.publish::<_, _, ()>(channel, message).await
            })
            .await;
    }

    /// Runs a Redis command with the tier's timeout; logs failures (at most
    /// every 30 s) and recoveries.
    async fn run<T, F>(&self, what: &'static str, f: F) -> Result<T, Unavailable>
    where
        F: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        let result = match tokio::time::timeout(self.inner.timeout, f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.inner.timeout)),
        };
        let mut health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(value) => {
                health.failing_since = None;
                if health.failing {
                    health.failing = false;
                    tracing::info!("Redis answers again; using the shared tier");
                }
                Ok(value)
            }
            Err(reason) => {
                health.failing = true;
                health.failing_since.get_or_insert_with(Instant::now);
                if health.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    health.warned_at = Some(Instant::now());
                    tracing::warn!(command = what, %reason, "Redis is unavailable; going on with the in-process cache and Figma directly");
                }
                Err(Unavailable)
            }
        }
    }

    /// `script` with the keys and arguments every script that takes this
    /// replica's word starts with (`TOUCH` in [`scripts`]): the replicas'
    /// set, this replica's name, how long until a silent replica is
    /// forgotten, the `known` replicas at least, and whether this replica
    /// may still say it is heard from ([`scripts::still_heard`]).
    fn touch<'s>(&self, script: &'s Script, known: u32) -> ScriptInvocation<'s> {
        let mut invocation = script.key(self.key("replicas", ""));
        invocation
            .arg(&self.inner.replica)
            .arg(millis(FORGOTTEN_AFTER))
            .arg(known)
            .arg(u8::from(still_heard(Replicas::unreachable_for(self))));
        invocation
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    async fn get_answer(&self, key: StoreKey) -> TierResult<Option<Vec<u8>>> {
        let mut conn = self.conn();
        let name = self.answer_key(key);
        let bytes: Option<Vec<u8>> = self.run("GET", async move { conn.get(name).await }).await?;
        Ok(bytes)
    }

    async fn put_answer(
        &self,
        key: StoreKey,
        sealed: &[u8],
        user: &UserId,
        keep_for: Duration,
        index_for: Duration,
    ) -> TierResult<()> {
        let index_ttl = i64::try_from(millis(index_for)).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let name = self.answer_key(key);
        let user_set = self.key("u", user.as_str());
        let ttl = millis(keep_for);
        let value = sealed.to_vec();
        self.run("SET", async move {
            ::redis::pipe()
                .set(&name, value)
                .arg("PX")
                .arg(ttl)
                .ignore()
                .sadd(&user_set, &name)
                .ignore()
                .pexpire(&user_set, index_ttl)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn lock_key_now(&self, key: StoreKey) -> TierResult<bool> {
        let mut conn = self.conn();
        let name = self.lock_key(key);
        let replica = self.inner.replica.clone();
        let ttl = millis(self.inner.lock_ttl);
        let set: Option<String> = self
            .run("SET NX", async move {
                ::redis::cmd("SET")
                    .arg(name)
                    .arg(replica)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    async fn unlock_key(&self, key: StoreKey) {
        let mut conn = self.conn();
        let name = self.lock_key(key);
        let replica = self.inner.replica.clone();
        let script = self.inner.unlock.clone();
        let _ = self
            .run("unlock", async move {
                script
                    .key(name)
                    .arg(replica)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }

    async fn shared_back_off(&self) -> TierResult<Option<SharedBackOff>> {
        let mut conn = self.conn();
        let name = self.key("backoff", "");
        let (ttl, message): (i64, Option<Vec<u8>>) = self
            .run("back-off", async move {
                ::redis::pipe()
                    .pttl(&name)
                    .get(&name)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(message
            .filter(|_| ttl > 0)
            .map(|m| (Duration::from_millis(ttl.unsigned_abs()), m)))
    }

    async fn set_back_off(&self, delay: Duration, message: Vec<u8>) {
        let mut conn = self.conn();
        let name = self.key("backoff", "");
        let ms = millis(delay.min(MAX_BACK_OFF));
        let script = self.inner.back_off.clone();
        let _ = self
            .run("back off", async move {
                script
                    .key(name)
                    .arg(ms)
                    .arg(message)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }

    async fn take_shared_slot(
        &self,
        per_minute: u32,
        burst: u32,
        reserve: Duration,
        charge: Charge,
    ) -> TierResult<Option<Duration>> {
        let mut conn = self.conn();
        let interval_ms = (60_000 / u64::from(per_minute.max(1))).max(1);
        let mut gcra = self.touch(&self.inner.gcra, self.replicas());
        gcra.key(self.key("budget", ""))
            .arg(interval_ms)
            .arg(burst.max(1))
            .arg(millis(FRESH_FOR))
            .arg(u64::try_from(charge.spent_for.as_millis()).unwrap_or(u64::MAX))
            .arg(u64::try_from(charge.margin.as_millis()).unwrap_or(u64::MAX))
            .arg(u64::try_from(reserve.as_millis()).unwrap_or(u64::MAX));
        let wait_ms: i64 = self.run("budget", gcra.invoke_async(&mut conn)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs())))
    }

    /// Deletes a user's answers in Redis and tells every replica.
    async fn invalidate_user(&self, user: &UserId, message: &[u8]) {
        let mut conn = self.conn();
        let user_set = self.key("u", user.as_str());
        let channel = self.channel();
        let message = message.to_vec();
        let _ = self
            .run("invalidate user", async move {
                let keys: Vec<String> = conn.smembers(&user_set).await?;
                let mut pipe = ::redis::pipe();
                for key in keys {
                    pipe.del(key).ignore();
                }
                pipe.del(&user_set)
                    .ignore()
                    .publish(channel, message)
                    .ignore();
                pipe.query_async::<()>(&mut conn).await
            })
            .await;
    }

    /// Deletes one answer in Redis and tells every replica.
    async fn invalidate_key(&self, key: StoreKey, message: &[u8]) {
        let mut conn = self.conn();
        let name = self.answer_key(key);
        let channel = self.channel();
        let message = message.to_vec();
        let _ = self
            .run("invalidate key", async move {
                ::redis::pipe()
                    .del(name)
                    .ignore()
                    .publish(channel, message)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    /// Tells every replica to drop its whole in-process cache.
    async fn invalidate_all(&self, message: &[u8]) {
        let mut conn = self.conn();
        let channel = self.channel();
        let message = message.to_vec();
        let _ = self
            .run("invalidate all", async move {
                conn.publish::<_, _, ()>(channel, message).await
            })
            .await;
    }
}

impl Tier for RedisTier {
    fn name(&self) -> &'static str {
        "Redis"
    }

    fn get(&self, key: StoreKey) -> BoxFuture<'_, TierResult<Option<Vec<u8>>>> {
        self.get_answer(key).boxed()
    }

    fn put<'a>(
        &'a self,
        key: StoreKey,
        sealed: &'a [u8],
        user: &'a UserId,
        keep_for: Duration,
        index_for: Duration,
    ) -> BoxFuture<'a, TierResult<()>> {
        self.put_answer(key, sealed, user, keep_for, index_for)
            .boxed()
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation, message: &'a [u8]) -> BoxFuture<'a, ()> {
        async move {
            match what {
                Invalidation::All => self.invalidate_all(message).await,
                Invalidation::User(user) => self.invalidate_user(user, message).await,
                Invalidation::Key(key) => self.invalidate_key(*key, message).await,
            }
        }
        .boxed()
    }
}

impl Replicas for RedisTier {
    fn announce<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, ()> {
        self.publish_on(self.channel(), message.to_vec()).boxed()
    }

    fn listen(&self, engine: Weak<dyn Invalidations>) {
        self.spawn_heartbeat(engine.clone());
        self.spawn_listener(engine);
    }

    fn lock(&self, key: StoreKey) -> BoxFuture<'_, TierResult<bool>> {
        self.lock_key_now(key).boxed()
    }

    fn unlock(&self, key: StoreKey) -> BoxFuture<'_, ()> {
        self.unlock_key(key).boxed()
    }

    fn lock_ttl(&self) -> Duration {
        self.inner.lock_ttl
    }

    fn backing_off_for(&self) -> BoxFuture<'_, TierResult<Option<SharedBackOff>>> {
        self.shared_back_off().boxed()
    }

    fn back_off(&self, delay: Duration, message: Vec<u8>) -> BoxFuture<'_, ()> {
        self.set_back_off(delay, message).boxed()
    }

    fn take_slot(
        &self,
        per_minute: u32,
        burst: u32,
        reserve: Duration,
        charge: Charge,
    ) -> BoxFuture<'_, TierResult<Option<Duration>>> {
        self.take_shared_slot(per_minute, burst, reserve, charge)
            .boxed()
    }

    fn replicas(&self) -> u32 {
        self.inner.replicas.load(Ordering::Relaxed)
    }

    fn unreachable_for(&self) -> Duration {
        let health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        health
            .failing_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }
}
