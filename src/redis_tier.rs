//! A shared cache tier in Redis (feature `redis`), for deployments with
//! several replicas.
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
//! use figma_paywall::{redis_tier::RedisTier, Paywall, PaymentsClient};
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
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::StreamExt;
use redis::{aio::ConnectionManager, AsyncCommands, Script};

use crate::{
    client::{Question, Wait},
    error::{Error, ThrottleReason},
    paywall::{CacheKey, Inner, REFRESH_AT},
    PaymentInformation, PaymentStatus, ResourceId, ResourceType, UserId,
};

/// The encoding version written first in every value.
const VERSION: u8 = 1;

/// How often waiters look for the answer another replica is fetching.
const POLL: Duration = Duration::from_millis(20);

/// Redis failures are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// GCRA: allow a call, or say how many milliseconds until one is allowed.
const GCRA: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now_ms)
if tat < now_ms then tat = now_ms end
local allow_at = tat - tolerance
if now_ms < allow_at then return allow_at - now_ms end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now_ms + interval))
return 0
";

/// Sets the shared back-off, never shortening a longer one.
const BACK_OFF: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
end
return 0
";

/// The longest shared back-off kept in Redis: a Retry-After of days is
/// honoured, one past this is capped.
const MAX_BACK_OFF: Duration = Duration::from_secs(30 * 86_400);

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
    client: redis::Client,
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
/// use figma_paywall::redis_tier::RedisTier;
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
    pub fn build(self) -> Result<RedisTier, redis::RedisError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err((
                redis::ErrorKind::Client,
                "RedisTier::build must be called inside a Tokio runtime",
            )
                .into());
        }
        let client = redis::Client::open(self.url.as_str())?;
        let config = redis::aio::ConnectionManagerConfig::new()
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A key's hash as it appears in Redis names and invalidation messages.
fn hex(key: CacheKey) -> String {
    format!("{:032x}", key.0)
}

/// A duration as Redis's `PX`/`PEXPIRE` take it: whole milliseconds, at
/// least one (zero would be refused), saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A Redis failure (error or timeout), already logged.
#[derive(Debug)]
pub(crate) struct Unavailable;

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

    fn answer_key(&self, key: CacheKey) -> String {
        self.key("a", &hex(key))
    }

    fn lock_key(&self, key: CacheKey) -> String {
        self.key("l", &hex(key))
    }

    fn channel(&self) -> String {
        self.key("invalidate", "")
    }

    /// Runs a Redis command with the tier's timeout; logs failures (at most
    /// every 30 s) and recoveries.
    async fn run<T, F>(&self, what: &'static str, f: F) -> Result<T, Unavailable>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
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

    /// The stored answer for `key`, and when it was fetched (Unix ms).
    pub(crate) async fn get(
        &self,
        key: CacheKey,
    ) -> Result<Option<(PaymentInformation, u64)>, Unavailable> {
        let mut conn = self.conn();
        let name = self.answer_key(key);
        let bytes: Option<Vec<u8>> = self.run("GET", async move { conn.get(name).await }).await?;
        Ok(bytes.and_then(|b| decode(&b)))
    }

    /// Writes an answer through, for `keep_for`, and files the key under
    /// its user for invalidation. `index_for` is how long the user's index
    /// of keys lives: the longest any answer is kept, so that a short answer
    /// never ends a long one's entry.
    pub(crate) async fn put(
        &self,
        key: CacheKey,
        info: &PaymentInformation,
        fetched_ms: u64,
        keep_for: Duration,
        index_for: Duration,
    ) -> Result<(), Unavailable> {
        let index_ttl = i64::try_from(millis(index_for)).unwrap_or(i64::MAX);
        let mut conn = self.conn();
        let name = self.answer_key(key);
        let user_set = self.key("u", info.user_id.as_str());
        let ttl = millis(keep_for);
        let value = encode(info, fetched_ms);
        self.run("SET", async move {
            redis::pipe()
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

    /// Takes the lock on a cold key; `false` when another replica holds it.
    pub(crate) async fn lock(&self, key: CacheKey) -> Result<bool, Unavailable> {
        let mut conn = self.conn();
        let name = self.lock_key(key);
        let replica = self.inner.replica.clone();
        let ttl = millis(self.inner.lock_ttl);
        let set: Option<String> = self
            .run("SET NX", async move {
                redis::cmd("SET")
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

    pub(crate) async fn unlock(&self, key: CacheKey) {
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

    /// How long all replicas must still back off after a 429, if any.
    pub(crate) async fn backing_off_for(&self) -> Result<Option<Duration>, Unavailable> {
        let mut conn = self.conn();
        let name = self.key("backoff", "");
        let ttl: i64 = self
            .run("PTTL", async move { conn.pttl(name).await })
            .await?;
        Ok((ttl > 0).then(|| Duration::from_millis(ttl.unsigned_abs())))
    }

    pub(crate) async fn back_off(&self, delay: Duration) {
        let mut conn = self.conn();
        let name = self.key("backoff", "");
        let ms = millis(delay.min(MAX_BACK_OFF));
        let script = self.inner.back_off.clone();
        let _ = self
            .run("back off", async move {
                script
                    .key(name)
                    .arg(ms)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
    }

    /// How long a replica may hold the lock on a cold key.
    pub(crate) fn lock_ttl(&self) -> Duration {
        self.inner.lock_ttl
    }

    /// Takes a slot of the shared budget: `Ok(None)` when taken, else how
    /// long until one is free.
    pub(crate) async fn take_slot(
        &self,
        per_minute: u32,
        burst: u32,
    ) -> Result<Option<Duration>, Unavailable> {
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
    pub(crate) async fn invalidate_user(&self, user: &UserId) {
        let mut conn = self.conn();
        let user_set = self.key("u", user.as_str());
        let channel = self.channel();
        let message = format!("u:{user}");
        let _ = self
            .run("invalidate user", async move {
                let keys: Vec<String> = conn.smembers(&user_set).await?;
                let mut pipe = redis::pipe();
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
    pub(crate) async fn invalidate_key(&self, key: CacheKey) {
        let mut conn = self.conn();
        let name = self.answer_key(key);
        let channel = self.channel();
        let message = format!("k:{}", hex(key));
        let _ = self
            .run("invalidate key", async move {
                redis::pipe()
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
    pub(crate) async fn invalidate_all(&self) {
        let mut conn = self.conn();
        let channel = self.channel();
        let _ = self
            .run("invalidate all", async move {
                conn.publish::<_, _, ()>(channel, "all").await
            })
            .await;
    }

    /// Listens for invalidations from other replicas until the paywall is
    /// dropped, reconnecting when Redis goes away.
    pub(crate) fn spawn_listener(&self, paywall: Weak<Inner>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime while building the Paywall: invalidations from other replicas will not be heard");
            return;
        };
        let tier = self.clone();
        runtime.spawn(async move {
            let mut first = true;
            loop {
                if paywall.strong_count() == 0 {
                    return;
                }
                let subscribed = async {
                    let mut pubsub = tier.inner.client.get_async_pubsub().await?;
                    pubsub.subscribe(tier.channel()).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                if let Ok(Ok(pubsub)) =
                    tokio::time::timeout(Duration::from_secs(2), subscribed).await
                {
                    // Invalidations sent while this replica was not listening
                    // are lost: drop everything it holds instead.
                    if !std::mem::take(&mut first) {
                        if let Some(inner) = paywall.upgrade() {
                            inner.cache().invalidate_all();
                        }
                    }
                    let mut messages = pubsub.into_on_message();
                    loop {
                        // Wake now and then to notice a dropped paywall.
                        match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                            Ok(Some(message)) => {
                                let Some(inner) = paywall.upgrade() else {
                                    return;
                                };
                                apply_invalidation(&inner, message.get_payload_bytes());
                            }
                            Ok(None) => break,
                            Err(_) if paywall.strong_count() == 0 => return,
                            Err(_) => {}
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

fn apply_invalidation(inner: &Inner, message: &[u8]) {
    let Ok(message) = std::str::from_utf8(message) else {
        return;
    };
    if message == "all" {
        inner.cache().invalidate_all();
    } else if let Some(user) = message.strip_prefix("u:").and_then(|u| UserId::new(u).ok()) {
        let _ = inner
            .cache()
            .invalidate_entries_if(move |_, entry| entry.info.user_id == user);
    } else if let Some(key) = message
        .strip_prefix("k:")
        .and_then(|k| u128::from_str_radix(k, 16).ok())
    {
        let cache = inner.cache().clone();
        tokio::spawn(async move { cache.invalidate(&CacheKey(key)).await });
    }
}

impl Inner {
    /// Asks Redis, then Figma, as one replica among several.
    pub(crate) async fn fetch_tiered(
        &self,
        tier: &RedisTier,
        key: CacheKey,
        question: &Question,
        wait: Wait,
    ) -> Result<(PaymentInformation, Instant), Error> {
        let deadline = Instant::now() + tier.inner.lock_ttl;
        // A stored answer past its refresh point but still fresh: used if
        // Figma cannot answer the refresh.
        let mut fallback = None;
        loop {
            match tier.get(key).await {
                Ok(Some((info, fetched_ms))) => {
                    let age = Duration::from_millis(unix_ms().saturating_sub(fetched_ms));
                    let fresh = self.fresh_for(&info.payment_status);
                    let fetched_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    if age < fresh.mul_f32(REFRESH_AT) {
                        self.count_redis_hit();
                        return Ok((info, fetched_at));
                    }
                    if age < fresh {
                        fallback = Some((info, fetched_at));
                    }
                }
                Ok(None) => {}
                Err(Unavailable) => break,
            }
            match tier.lock(key).await {
                Ok(true) => {
                    let result = self.ask_shared(tier, question, wait).await;
                    if let Ok((info, _)) = &result {
                        let keep_for = self.keep_for(&info.payment_status);
                        let _ = tier
                            .put(key, info, unix_ms(), keep_for, self.longest_keep())
                            .await;
                    }
                    tier.unlock(key).await;
                    return or_fallback(result, fallback);
                }
                Ok(false) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                // The holder is gone or Redis is: ask directly.
                Ok(false) | Err(Unavailable) => break,
            }
        }
        or_fallback(self.ask_figma(question, wait).await, fallback)
    }

    /// Asks Figma within the back-off and budget shared through Redis.
    async fn ask_shared(
        &self,
        tier: &RedisTier,
        question: &Question,
        wait: Wait,
    ) -> Result<(PaymentInformation, Instant), Error> {
        if let Ok(Some(retry_after)) = tier.backing_off_for().await {
            return Err(Error::Throttled {
                retry_after,
                reason: ThrottleReason::BackingOff,
            });
        }
        let (per_minute, burst, max_wait) = self.client().budget_settings();
        let give_up_at = Instant::now() + max_wait;
        loop {
            match tier.take_slot(per_minute, burst).await {
                Ok(None) | Err(Unavailable) => break,
                Ok(Some(retry_after)) => {
                    if wait == Wait::No || Instant::now() + retry_after > give_up_at {
                        return Err(Error::Throttled {
                            retry_after,
                            reason: ThrottleReason::BudgetExhausted,
                        });
                    }
                    tokio::time::sleep(retry_after).await;
                }
            }
        }
        let result = self.ask_figma(question, wait).await;
        if let Err(Error::RateLimited(limit)) = &result {
            tier.back_off(limit.retry_after.unwrap_or(Duration::from_secs(60)))
                .await;
        }
        result
    }

    async fn ask_figma(
        &self,
        question: &Question,
        wait: Wait,
    ) -> Result<(PaymentInformation, Instant), Error> {
        let info = self.client().ask(question, wait).await?;
        Ok((info, Instant::now()))
    }
}

fn or_fallback(
    result: Result<(PaymentInformation, Instant), Error>,
    fallback: Option<(PaymentInformation, Instant)>,
) -> Result<(PaymentInformation, Instant), Error> {
    match (result, fallback) {
        (Err(e), Some(fallback)) if e.is_upstream_failure() => {
            tracing::debug!(error = %e, "Figma could not refresh an answer; using the one in Redis");
            Ok(fallback)
        }
        (result, _) => result,
    }
}

/// `[version][status][type][fetched ms: 8][user][resource][date][other status][other type]`,
/// each string as a one-byte length and its bytes.
fn encode(info: &PaymentInformation, fetched_ms: u64) -> Vec<u8> {
    let status = match info.payment_status {
        PaymentStatus::Paid => 1,
        PaymentStatus::Trial => 2,
        PaymentStatus::Unpaid => 3,
        PaymentStatus::NotSupported => 4,
        _ => 0,
    };
    let kind = match info.resource_type {
        ResourceType::Plugin => 1,
        ResourceType::Widget => 2,
        ResourceType::CommunityFile => 3,
        _ => 0,
    };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[VERSION, status, kind]);
    out.extend_from_slice(&fetched_ms.to_le_bytes());
    let mut string = |s: &str| {
        let s = &s.as_bytes()[..s.len().min(255)];
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    };
    string(info.user_id.as_str());
    string(info.resource_id.as_str());
    string(info.date_of_purchase.as_deref().unwrap_or(""));
    string(if status == 0 {
        info.payment_status.as_str()
    } else {
        ""
    });
    string(if kind == 0 {
        info.resource_type.as_str()
    } else {
        ""
    });
    out
}

/// The inverse of [`encode`]; `None` for anything else (another version,
/// truncated, invalid IDs). Never panics.
fn decode(bytes: &[u8]) -> Option<(PaymentInformation, u64)> {
    let (&[version, status, kind], rest) = bytes.split_first_chunk::<3>()?;
    if version != VERSION {
        return None;
    }
    let (fetched, mut rest) = rest.split_first_chunk::<8>()?;
    let mut string = || -> Option<&str> {
        let (&len, tail) = rest.split_first()?;
        let (s, tail) = tail.split_at_checked(usize::from(len))?;
        rest = tail;
        std::str::from_utf8(s).ok()
    };
    let user_id = UserId::new(string()?).ok()?;
    let resource_id = ResourceId::new(string()?).ok()?;
    let date = string()?;
    let other_status = string()?;
    let other_kind = string()?;
    let payment_status = match status {
        1 => PaymentStatus::Paid,
        2 => PaymentStatus::Trial,
        3 => PaymentStatus::Unpaid,
        4 => PaymentStatus::NotSupported,
        _ => PaymentStatus::from_name(other_status),
    };
    let resource_type = match kind {
        1 => ResourceType::Plugin,
        2 => ResourceType::Widget,
        3 => ResourceType::CommunityFile,
        _ => serde_json::from_value(serde_json::Value::String(other_kind.to_owned())).ok()?,
    };
    Some((
        PaymentInformation {
            user_id,
            resource_id,
            resource_type,
            payment_status,
            date_of_purchase: (!date.is_empty()).then(|| date.to_owned()),
        },
        u64::from_le_bytes(*fetched),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn values_round_trip(
            user in "[0-9]{1,32}", resource in "[0-9]{1,32}",
            status in prop_oneof![Just("PAID".to_owned()), Just("TRIAL".to_owned()), Just("UNPAID".to_owned()), Just("NOT_SUPPORTED".to_owned()), "[A-Z_]{1,12}"],
            kind in prop_oneof![Just("PLUGIN".to_owned()), Just("WIDGET".to_owned()), Just("COMMUNITY_FILE".to_owned()), "[A-Z_]{1,12}"],
            date in proptest::option::of("[0-9T:Z-]{1,24}"),
            fetched in any::<u64>(),
        ) {
            let info = PaymentInformation {
                user_id: UserId::new(&user).unwrap(),
                resource_id: ResourceId::new(&resource).unwrap(),
                resource_type: serde_json::from_value(serde_json::Value::String(kind)).unwrap(),
                payment_status: PaymentStatus::from_name(&status),
                date_of_purchase: date,
            };
            let bytes = encode(&info, fetched);
            prop_assert!(bytes.len() < 3 + 8 + 5 + 32 + 32 + 24 + 12 + 12);
            prop_assert_eq!(decode(&bytes), Some((info, fetched)));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn other_versions_are_ignored() {
        let info: PaymentInformation = serde_json::from_str(
            r#"{"user_id":"1","resource_id":"2","resource_type":"PLUGIN","payment_status":"PAID"}"#,
        )
        .unwrap();
        let mut bytes = encode(&info, 7);
        assert!(decode(&bytes).is_some());
        bytes[0] = 2;
        assert_eq!(decode(&bytes), None);
        assert_eq!(decode(&bytes[..5]), None);
    }
}
