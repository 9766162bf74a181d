//! The Lua scripts the Redis tier runs: each is one atomic step on Redis's
//! own clock.

use std::time::Duration;

/// GCRA: allow a call, or say how many milliseconds until one is allowed.
///
/// - **No state** (Redis lost it in a restart, or none was ever written):
///   the calls of the last minute cannot be known, so the budget starts
///   with its burst spent. The state never expires otherwise.
/// - **A state this budget cannot reach** (not a number, or further ahead
///   than its burst: written by someone else, or by a larger budget) is
///   taken as a spent burst too: nobody can stop every replica for longer
///   than one interval by writing to it.
/// - **`ARGV[3]` ms of spending at the full rate** (the time a replica kept
///   to its share without Redis, as if every replica had spent its whole
///   share then) are charged first, then **`ARGV[4]` ms more** (calls the
///   shares' phases may add): the budget is left no fuller than it was when
///   Redis went out of reach, and spent if it was spent then.
pub(super) const GCRA: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local charge = tonumber(ARGV[3]) or 0
local margin = tonumber(ARGV[4]) or 0
local spent = now_ms + tolerance + interval
local tat = tonumber(redis.call('GET', KEYS[1]) or spent) or spent
if tat > spent then tat = spent end
if tat < now_ms - charge then tat = now_ms - charge end
tat = tat + charge
if tat < now_ms then tat = now_ms end
tat = math.min(tat + margin, spent)
local allow_at = tat - tolerance
if now_ms < allow_at then
  redis.call('SET', KEYS[1], tat)
  return allow_at - now_ms
end
redis.call('SET', KEYS[1], tat + interval)
return 0
";

/// A replica says it is alive (for `ARGV[2]` ms) and learns how many are.
pub(super) const HEARTBEAT: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
return redis.call('ZCARD', KEYS[1])
";

/// How often a replica says it is alive, and how long that holds.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
pub(super) const ALIVE_FOR: Duration = Duration::from_secs(30);

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
