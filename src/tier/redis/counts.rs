//! Credits' counts in Redis: one atomic script a reservation, exact across
//! replicas; and, while Redis is out of reach, each replica's share of
//! what was left.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{future::BoxFuture, FutureExt};
use redis::AsyncCommands;

use super::RedisTier;
use crate::{
    credits::{Ask, Bucket, Counts, CountsError, Reserved, Used},
    UserId,
};

/// Takes `ARGV[1]` from every window's count `KEYS[i]` whose allowance is
/// `ARGV[1 + 2i]`, or from none if any lacks room; first adds `ARGV[2]`,
/// what this replica let in while Redis was out of reach. A count that is
/// not a number is taken as spent. Each key lives `ARGV[2 + 2i]` seconds
/// (0: for ever). Returns `{taken (1 or 0), count of each window}`.
pub(super) const RESERVE: &str = r"
local cost = tonumber(ARGV[1])
local pending = tonumber(ARGV[2])
local used = {}
local room = 1
for i = 1, #KEYS do
  local ttl = tonumber(ARGV[2 + 2 * i])
  local raw = redis.call('GET', KEYS[i])
  local u = 0
  if raw then u = tonumber(raw) or 9007199254740991 end
  if pending ~= 0 and u < 9007199254740991 then
    u = redis.call('INCRBY', KEYS[i], pending)
    if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
  used[i] = u
  local amount = tonumber(ARGV[1 + 2 * i])
  if u + cost > amount or u > amount then room = 0 end
end
if room == 1 and cost > 0 then
  for i = 1, #KEYS do
    used[i] = redis.call('INCRBY', KEYS[i], cost)
    local ttl = tonumber(ARGV[2 + 2 * i])
    if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
local out = {room}
for i = 1, #KEYS do out[i + 1] = used[i] end
return out
";

/// Adds `ARGV[1]` to the counts `KEYS` that still exist (a window that
/// renewed since has another key).
pub(super) const SETTLE: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
end
return 0
";

/// A window's count outlives its end by this much, for late settlements.
const KEPT_AFTER_END: i64 = 86_400;

/// What this replica knows of one user's count while Redis is out of reach:
/// the counts it last read, and what it let in since, to add once Redis
/// answers again.
#[derive(Debug, Clone, Default)]
pub(super) struct Offline {
    seen: Vec<Used>,
    spent: i64,
}

pub(super) type OfflineCounts = moka::sync::Cache<(UserId, Bucket), Arc<Mutex<Offline>>>;

/// At most this many users' last counts are kept for an outage.
pub(super) fn offline_counts() -> OfflineCounts {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_idle(Duration::from_secs(3 * 86_400))
        .build()
}

impl RedisTier {
    fn count_key(&self, user: &UserId, bucket: Bucket, u: &Used) -> String {
        self.key(
            "c",
            &format!(
                "{}:{}:{}:{}",
                bucket.as_str(),
                user.as_str(),
                u.allowance.window.as_str(),
                u.span.start
            ),
        )
    }

    fn offline(&self, user: &UserId, bucket: Bucket) -> Arc<Mutex<Offline>> {
        self.inner
            .offline
            .get_with((user.clone(), bucket), Default::default)
    }

    /// The windows of `ask` as of now, counts unknown.
    fn windows(ask: &Ask<'_>) -> Vec<Used> {
        ask.allowances
            .iter()
            .map(|a| Used {
                allowance: *a,
                span: a.window.span(ask.now),
                used: 0,
            })
            .collect()
    }

    async fn reserve_in_redis(&self, ask: &Ask<'_>, pending: i64) -> Result<Reserved, ()> {
        let mut windows = Self::windows(ask);
        let mut script = self.inner.reserve_credits.prepare_invoke();
        script.arg(ask.cost).arg(pending);
        for u in &windows {
            let ttl = u.span.end.map_or(0, |end| {
                end.saturating_sub(ask.now)
                    .saturating_add(KEPT_AFTER_END)
                    .max(1)
            });
            script
                .key(self.count_key(ask.user, ask.bucket, u))
                .arg(u.allowance.amount.min(1 << 53))
                .arg(ttl);
        }
        let mut conn = self.conn();
        let out: Vec<i64> = self
            .run(
                "credits",
                async move { script.invoke_async(&mut conn).await },
            )
            .await
            .map_err(drop)?;
        if out.len() != windows.len() + 1 {
            return Err(());
        }
        for (u, used) in windows.iter_mut().zip(&out[1..]) {
            u.used = *used;
        }
        Ok(Reserved {
            admitted: out[0] == 1,
            windows,
        })
    }

    /// The reservation while Redis is out of reach: this replica's share of
    /// what was left when it last read the count, a share a replica.
    fn reserve_offline(
        &self,
        ask: &Ask<'_>,
        offline: &mut Offline,
    ) -> Result<Reserved, CountsError> {
        if offline.seen.is_empty() {
            return Err(CountsError(
                "Redis is out of reach, and this replica has not read this user's count yet".into(),
            ));
        }
        let replicas = i64::from(crate::tier::Replicas::replicas(self).max(1));
        let cost = i64::try_from(ask.cost).unwrap_or(i64::MAX);
        let mut windows = Self::windows(ask);
        let mut room = true;
        for u in &mut windows {
            let seen = offline
                .seen
                .iter()
                .find(|s| s.allowance.window == u.allowance.window && s.span.start == u.span.start);
            // A window that renewed since: all of it was left.
            let seen_used = seen.map_or(0, |s| s.used);
            let left = u.remaining().saturating_sub(seen_used).max(0);
            let share = left / replicas;
            u.used = seen_used.saturating_add(offline.spent);
            if offline.spent.saturating_add(cost) > share {
                room = false;
            }
        }
        if room {
            offline.spent = offline.spent.saturating_add(cost);
            for u in &mut windows {
                u.used = u.used.saturating_add(cost);
            }
        }
        Ok(Reserved {
            admitted: room,
            windows,
        })
    }
}

impl Counts for RedisTier {
    fn reserve_now(&self, _ask: &Ask<'_>) -> Option<Result<Reserved, CountsError>> {
        None
    }

    fn reserve<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Reserved, CountsError>> {
        async move {
            let offline = self.offline(ask.user, ask.bucket);
            let pending = offline.lock().unwrap_or_else(|p| p.into_inner()).spent;
            match self.reserve_in_redis(&ask, pending).await {
                Ok(reserved) => {
                    let mut offline = offline.lock().unwrap_or_else(|p| p.into_inner());
                    offline.spent -= pending;
                    offline.seen.clone_from(&reserved.windows);
                    Ok(reserved)
                }
                Err(()) => {
                    let mut offline = offline.lock().unwrap_or_else(|p| p.into_inner());
                    self.reserve_offline(&ask, &mut offline)
                }
            }
        }
        .boxed()
    }

    fn settle(&self, user: &UserId, bucket: Bucket, windows: &[Used], delta: i64) {
        let keys: Vec<String> = windows
            .iter()
            .map(|u| self.count_key(user, bucket, u))
            .collect();
        let (this, user) = (self.clone(), user.clone());
        let settle = async move {
            let mut script = this.inner.settle_credits.prepare_invoke();
            script.arg(delta);
            for key in keys {
                script.key(key);
            }
            let mut conn = this.conn();
            let done = this
                .run("credits", async move {
                    script.invoke_async::<i64>(&mut conn).await
                })
                .await;
            if done.is_err() {
                // Added with the user's next reservation that reaches Redis.
                let offline = this.offline(&user, bucket);
                let mut offline = offline.lock().unwrap_or_else(|p| p.into_inner());
                offline.spent = offline.spent.saturating_add(delta);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(settle)),
            Err(_) => tracing::warn!("a settled credit count was not written: no runtime"),
        }
    }

    fn read<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Vec<Used>, CountsError>> {
        async move {
            let mut windows = Self::windows(&ask);
            let keys: Vec<String> = windows
                .iter()
                .map(|u| self.count_key(ask.user, ask.bucket, u))
                .collect();
            if keys.is_empty() {
                return Ok(windows);
            }
            let mut conn = self.conn();
            let counts: Vec<Option<String>> = self
                .run("credits", async move { conn.mget(keys).await })
                .await
                .map_err(|_| CountsError("Redis is out of reach".into()))?;
            for (u, count) in windows.iter_mut().zip(counts) {
                // Not a number: spent, as the script reads it.
                u.used = count.map_or(0, |c| c.parse().unwrap_or(i64::MAX / 2));
            }
            Ok(windows)
        }
        .boxed()
    }
}
