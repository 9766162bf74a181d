//! A cache tier in Redis shared by replicas (feature `redis`).
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

use std::{
    fmt,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use ::redis::{aio::ConnectionManager, AsyncCommands, Script};
use futures_util::{future::BoxFuture, FutureExt, StreamExt};

use super::{Invalidation, Invalidations, SharedBackOff, StoreKey, Tier, TierResult, Unavailable};
use crate::{error::MAX_BACK_OFF, UserId};

/// Redis failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// GCRA: allow a call, or say how many milliseconds until one is allowed.
/// A state this budget cannot reach (not a number, or further ahead than
/// its burst: written by someone else, or by a larger budget) starts afresh,
/// so that nobody can stop every replica by writing to it.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now_ms) or now_ms
if tat < now_ms or tat > now_ms + tolerance + interval then tat = now_ms end
local allow_at = tat - tolerance
if now_ms < allow_at then return allow_at - now_ms end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now_ms + interval))
return 0
";

/// Sets the shared back-off (its sealed message), never shortening a
/// longer one.
const BACK_OFF: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
end
return 0
";

/// Releases a lock only if this replica still holds it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

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
    unlock: Script,
    back_off: Script,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    failing: bool,
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

/// Builds a [`RedisTier`].
///
/// ```
/// use std::time::Duration;
/// use figma_paywall::redis::RedisTier;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), redis::RedisError> {
/// let tier = RedisTier::builder("redis://127.0.0.1:6379")
///     .prefix("my-plugin:")
///     .timeout(Duration::from_millis(50))
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct RedisTierBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    lock_ttl: Duration,
}

impl fmt::Debug for RedisTierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password.
        f.debug_struct("RedisTierBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("lock_ttl", &self.lock_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisTierBuilder {
    /// Prefix of every key and of the pub/sub channel; default
    /// `figma-paywall:v1:`. Replicas that share answers share a prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long any Redis command may take before the lookup goes on
    /// without Redis; default 100 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a replica holds the lock on a cold key while it asks Figma,
    /// and so the longest other replicas wait for it; default 6 s (the
    /// client's default timeout plus a second).
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// Builds the tier, inside a Tokio runtime. Connects lazily: Redis need
    /// not be up yet.
    pub fn build(self) -> Result<RedisTier, ::redis::RedisError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err((
                ::redis::ErrorKind::Client,
                "RedisTier::build must be called inside a Tokio runtime",
            )
                .into());
        }
        let client = ::redis::Client::open(self.url.as_str())?;
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(RedisTier {
            inner: Arc::new(TierInner {
                client,
                conn,
                prefix: self.prefix,
                timeout: self.timeout,
                lock_ttl: self.lock_ttl,
                replica: format!("{:032x}", rand::random::<u128>()),
                gcra: Script::new(GCRA),
                unlock: Script::new(UNLOCK),
                back_off: Script::new(BACK_OFF),
                health: Mutex::new(Health::default()),
            }),
        })
    }
}

/// A duration as Redis's `PX`/`PEXPIRE` take it: whole milliseconds, at
/// least one (zero would be refused), saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisTier {
    /// Starts a builder for the Redis server at `url`
    /// (`redis://[:password@]host:port[/db]`).
    pub fn builder(url: impl Into<String>) -> RedisTierBuilder {
        RedisTierBuilder {
            url: url.into(),
            prefix: "figma-paywall:v1:".to_owned(),
            timeout: Duration::from_millis(100),
            lock_ttl: Duration::from_secs(6),
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
        self.key("invalidate", "")
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
                if health.failing {
                    health.failing = false;
                    tracing::info!("Redis answers again; using the shared tier");
                }
                Ok(value)
            }
            Err(reason) => {
                health.failing = true;
                if health.warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    health.warned_at = Some(Instant::now());
                    tracing::warn!(command = what, %reason, "Redis is unavailable; going on with the in-process cache and Figma directly");
                }
                Err(Unavailable)
            }
        }
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

    async fn take_shared_slot(&self, per_minute: u32, burst: u32) -> TierResult<Option<Duration>> {
        let mut conn = self.conn();
        let name = self.key("budget", "");
        let script = self.inner.gcra.clone();
        let interval_ms = (60_000 / u64::from(per_minute.max(1))).max(1);
        let wait_ms: i64 = self
            .run("budget", async move {
                script
                    .key(name)
                    .arg(interval_ms)
                    .arg(burst.max(1))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
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

    /// Listens for invalidations from other replicas until the paywall is
    /// dropped, reconnecting when Redis goes away.
    fn spawn_listener(&self, engine: Weak<dyn Invalidations>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime while building the Paywall: invalidations from other replicas will not be heard");
            return;
        };
        let tier = self.clone();
        runtime.spawn(async move {
            let mut first = true;
            loop {
                if engine.strong_count() == 0 {
                    return;
                }
                let subscribed = async {
                    let mut pubsub = tier.inner.client.get_async_pubsub().await?;
                    pubsub.subscribe(tier.channel()).await?;
                    Ok::<_, ::redis::RedisError>(pubsub)
                };
                if let Ok(Ok(pubsub)) =
                    tokio::time::timeout(Duration::from_secs(2), subscribed).await
                {
                    // Invalidations sent while this replica was not listening
                    // are lost: what it holds is asked about again.
                    if !std::mem::take(&mut first) {
                        if let Some(engine) = engine.upgrade() {
                            engine.missed();
                        }
                    }
                    let mut messages = pubsub.into_on_message();
                    loop {
                        // Wake now and then to notice a dropped paywall.
                        match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                            Ok(Some(message)) => {
                                let Some(engine) = engine.upgrade() else {
                                    return;
                                };
                                engine.heard(message.get_payload_bytes()).await;
                            }
                            Ok(None) => break,
                            Err(_) if engine.strong_count() == 0 => return,
                            Err(_) => {}
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
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

    fn listen(&self, engine: Weak<dyn Invalidations>) {
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
    ) -> BoxFuture<'_, TierResult<Option<Duration>>> {
        self.take_shared_slot(per_minute, burst).boxed()
    }
}
