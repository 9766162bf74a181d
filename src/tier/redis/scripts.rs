//! The Lua scripts the Redis tier runs: each is one atomic step on Redis's
//! own clock.

use std::time::Duration;

/// Marks replica `ARGV[1]` as heard from now (unless `ARGV[4]` is `0`: it
/// has not reached Redis lately, and this command may have waited in a
/// stalled connection), forgets replicas not heard from for `ARGV[2]` ms
/// (and any heard from in the future: a forged or mistimed score), and
/// sets `known` (the replicas heard from in that time, at least `ARGV[3]`,
/// at most [`MAX_REPLICAS`]) and `now_ms`. Replicas are the members of the
/// sorted set `KEYS[1]`, scored by when they were last heard from. Both
/// scripts that take a replica's word start with it.
const TOUCH: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '(' .. now_ms, '+inf')
if ARGV[4] ~= '0' then redis.call('ZADD', KEYS[1], now_ms, ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
local known = math.min(math.max(redis.call('ZCARD', KEYS[1]), tonumber(ARGV[3]) or 1, 1), MAX_REPLICAS)
";

/// GCRA: allow a call, or say how many milliseconds until one is allowed.
/// `KEYS[1]` and `ARGV[1..4]` are [`TOUCH`]'s; `KEYS[2]` is the budget's
/// state, `ARGV[5]` the interval in ms and `ARGV[6]` the burst.
///
/// - **Replicas out of reach keep their shares**: a replica not heard from
///   for `ARGV[7]` ms may be spending its share of the budget without
///   Redis (it does after [`UNREACHABLE`] without it, which is longer), so
///   the replicas Redis hears from spend only theirs: each call costs
///   `known / fresh` intervals, where `fresh` replicas were heard from
///   lately. While every replica counts itself among `known`, the shares
///   and the calls through Redis never add up to more than the budget.
/// - **No state** (Redis lost it in a restart, or none was ever written):
///   the calls of the last minute cannot be known, so the budget starts
///   with its burst spent. The state never expires otherwise.
/// - **A state that is not a number** (written by someone else) is taken
///   as a spent burst too, and **one further ahead** than its burst and
///   one call at the highest cost as that far ahead: writing to it stops
///   the replicas for no longer than `known` intervals, and a state another
///   replica wrote when it knew of more replicas keeps its debt.
/// - **`ARGV[8]` ms of spending at the full rate** (the time a replica kept
///   to its share without Redis, as if every replica had spent its whole
///   share then) are charged first, then **`ARGV[9]` ms more** (calls the
///   shares' phases may add): the budget is left no fuller than it was when
///   Redis went out of reach, and spent if it was spent then.
/// - **`ARGV[10]` ms of reserve** (a lane's): the call may go only while
///   the budget keeps that much unspent after it, so that a call in a
///   lower lane never takes the slot a higher one wants. The state never
///   falls behind now, so a reserve of more than the whole budget (a
///   suspect's, which waits for a budget unused for a minute) is never
///   met here: through Redis a suspect has its trickle alone.
///
/// [`UNREACHABLE`]: crate::tier::UNREACHABLE
pub(super) fn gcra() -> String {
    script(
        r"
local interval = tonumber(ARGV[5])
local tolerance = interval * (tonumber(ARGV[6]) - 1)
local fresh = redis.call('ZCOUNT', KEYS[1], now_ms - tonumber(ARGV[7]), '+inf')
local cost = math.ceil(interval * known / math.max(math.min(fresh, known), 1))
local charge = tonumber(ARGV[8]) or 0
local margin = tonumber(ARGV[9]) or 0
local spent = now_ms + tolerance + interval
local tat = tonumber(redis.call('GET', KEYS[2]) or spent) or spent
if tat ~= tat then tat = spent end
tat = math.min(tat, now_ms + tolerance + interval * known)
local charged = math.max(tat, now_ms - charge) + charge
charged = math.max(charged, now_ms) + margin
tat = math.max(tat, math.min(charged, spent), now_ms)
local allow_at = tat - tolerance + (tonumber(ARGV[10]) or 0)
if now_ms < allow_at then
  redis.call('SET', KEYS[2], tat)
  return allow_at - now_ms
end
redis.call('SET', KEYS[2], tat + cost)
return 0
",
    )
}

/// A replica says it is alive and learns how many replicas share the
/// budget. `KEYS[1]` and `ARGV[1..4]` are [`TOUCH`]'s.
pub(super) fn heartbeat() -> String {
    script("return known\n")
}

fn script(body: &str) -> String {
    [TOUCH, body]
        .concat()
        .replace("MAX_REPLICAS", &MAX_REPLICAS.to_string())
}

/// The most replicas a budget is divided among, whatever Redis holds (and
/// the most [`replicas`](super::RedisTierBuilder::replicas) takes).
pub(super) const MAX_REPLICAS: u32 = 64;

/// How often a replica says it is alive.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A replica not heard from for this long may be spending its share
/// without Redis. It must not be longer than the time without Redis after
/// which a replica does ([`UNREACHABLE`]): a replica's last word to Redis
/// came before its first failed command. Two heartbeats, so that a late
/// one does not make a replica that reaches Redis look out of reach.
///
/// [`UNREACHABLE`]: crate::tier::UNREACHABLE
pub(super) const FRESH_FOR: Duration = Duration::from_secs(2);
const _: () = assert!(FRESH_FOR.as_millis() <= crate::tier::UNREACHABLE.as_millis());
const _: () = assert!(HEARTBEAT_EVERY.as_millis() * 2 <= FRESH_FOR.as_millis());

/// Whether a replica whose commands have all failed for `unreachable_for`
/// may still say it is heard from: not once it may be close to keeping to
/// its share, since a command sent then may reach Redis only after it does.
pub(super) fn still_heard(unreachable_for: Duration) -> bool {
    unreachable_for + FRESH_FOR < crate::tier::UNREACHABLE
}

/// A replica not heard from for this long is forgotten: it no longer
/// counts among those the budget is divided by.
pub(super) const FORGOTTEN_AFTER: Duration = Duration::from_secs(60);

/// Sets the shared back-off (its sealed message), never shortening a
/// longer one.
pub(super) const BACK_OFF: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
end
return 0
";

/// Releases a lock only if this replica still holds it.
pub(super) const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";
