//! Where counts live: the [`Counts`] trait, and the in-process counts.

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasher, Hash, Hasher},
    sync::Mutex,
};

use futures_util::{future::BoxFuture, FutureExt};

use super::{window::Span, Allowance, Bucket, Window};
use crate::UserId;

/// What a reservation asks: `cost` of `user`'s `bucket`, within each of
/// `allowances`, at `now` (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub(crate) user: &'a UserId,
    pub(crate) bucket: Bucket,
    pub(crate) allowances: &'a [Allowance],
    pub(crate) cost: u64,
    pub(crate) now: i64,
}

/// One window's count after a reservation (or a refusal): what it allows,
/// when it started and renews, and how much of it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Used {
    pub(crate) allowance: Allowance,
    pub(crate) span: Span,
    pub(crate) used: i64,
}

impl Used {
    pub(crate) fn remaining(&self) -> i64 {
        (self.allowance.amount.min(i64::MAX as u64) as i64).saturating_sub(self.used)
    }
}

/// A reservation's outcome: every window's count, and whether the cost was
/// taken (all windows had room) or not (nothing was taken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reserved {
    pub(crate) admitted: bool,
    pub(crate) windows: Vec<Used>,
}

/// The counts could not be read or written (Redis unreachable, with no
/// share of the user's credits left in this replica): a request is
/// refused, never let in uncounted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("credits could not be counted ({0}); check that Redis or the store is reachable")]
pub struct CountsError(pub(crate) String);

/// Where counts live: in process, the store, or Redis. Each reservation is
/// one atomic step over every window of the ask.
pub(crate) trait Counts: Send + Sync + fmt::Debug {
    /// Whether counts outlive the process (the store, Redis).
    fn outlive_the_process(&self) -> bool {
        true
    }

    /// The reservation at once, where it needs no wait (in process), else
    /// `None`: the caller awaits [`reserve`](Self::reserve).
    fn reserve_now(&self, ask: &Ask<'_>) -> Option<Result<Reserved, CountsError>>;

    /// Takes `ask.cost` from every window, or nothing if any lacks room.
    fn reserve<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Reserved, CountsError>>;

    /// Adds `delta` (negative: gives back) to the windows reserved, those
    /// that have not renewed since.
    fn settle(&self, user: &UserId, bucket: Bucket, windows: &[Used], delta: i64);

    /// `user`'s counts in each of `allowances`' current windows.
    fn read<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Vec<Used>, CountsError>>;
}

/// A user's count in one allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowBalance {
    /// The allowance.
    pub allowance: Allowance,
    /// What is left of it in the current window: below zero when a
    /// reported cost took more than was left.
    pub remaining: i64,
    /// Seconds until it renews; `None` for [`Window::Ever`].
    pub renews_in: Option<u64>,
}

/// What a user has left of each allowance of one status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Balance {
    /// One a window of the status's allowances.
    pub windows: Vec<WindowBalance>,
}

impl Balance {
    pub(crate) fn of(windows: &[Used], now: i64) -> Self {
        Self {
            windows: windows
                .iter()
                .map(|u| WindowBalance {
                    allowance: u.allowance,
                    remaining: u.remaining(),
                    renews_in: u.span.renews_in(now),
                })
                .collect(),
        }
    }

    /// The least left in any window: what the next requests may spend.
    pub fn remaining(&self) -> Option<i64> {
        self.windows.iter().map(|w| w.remaining).min()
    }
}

/// One window's count as kept: the window, its start and end, and what was
/// used in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) window: Window,
    pub(crate) span: Span,
    pub(crate) used: i64,
}

/// The reservation itself, on one user's slots: the same rule wherever
/// counts live (the Redis script is its twin in Lua).
pub(crate) fn reserve_in(slots: &mut Vec<Slot>, ask: &Ask<'_>) -> Reserved {
    let windows = current(slots, ask);
    let cost = i64::try_from(ask.cost).unwrap_or(i64::MAX);
    let room = windows.iter().all(|u| {
        let amount = i64::try_from(u.allowance.amount).unwrap_or(i64::MAX);
        u.used.saturating_add(cost) <= amount && u.used <= amount
    });
    if !room {
        return Reserved {
            admitted: false,
            windows,
        };
    }
    for slot in slots.iter_mut() {
        if windows.iter().any(|u| u.allowance.window == slot.window) {
            slot.used = slot.used.saturating_add(cost);
        }
    }
    Reserved {
        admitted: true,
        windows: windows
            .into_iter()
            .map(|u| Used {
                used: u.used.saturating_add(cost),
                ..u
            })
            .collect(),
    }
}

/// The slots of `ask`'s windows, renewed where their window has passed (a
/// slot of a window no longer allowed stays, unread).
fn current(slots: &mut Vec<Slot>, ask: &Ask<'_>) -> Vec<Used> {
    ask.allowances
        .iter()
        .map(|allowance| {
            let span = allowance.window.span(ask.now);
            let slot = match slots.iter_mut().find(|s| s.window == allowance.window) {
                Some(slot) => slot,
                None => {
                    slots.push(Slot {
                        window: allowance.window,
                        span,
                        used: 0,
                    });
                    slots.last_mut().expect("just pushed")
                }
            };
            if slot.span.start != span.start {
                *slot = Slot {
                    window: allowance.window,
                    span,
                    used: 0,
                };
            }
            Used {
                allowance: *allowance,
                span,
                used: slot.used,
            }
        })
        .collect()
}

/// Adds `delta` to the slots of `windows` that have not renewed since.
pub(crate) fn settle_in(slots: &mut [Slot], windows: &[Used], delta: i64) {
    for slot in slots {
        if windows
            .iter()
            .any(|u| u.allowance.window == slot.window && u.span.start == slot.span.start)
        {
            slot.used = slot.used.saturating_add(delta);
        }
    }
}

const SHARDS: usize = 16;

/// Whose slots: a user and the allowance they spend.
pub(crate) type Owner = (UserId, Bucket);

/// Counts in this process: exact among its requests, gone with it.
#[derive(Default)]
pub(crate) struct MemoryCounts {
    shards: [Mutex<Shard>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Default)]
struct Shard {
    /// Each bucket's users' slots, looked up by a borrowed user ID.
    slots: [HashMap<UserId, Vec<Slot>>; 3],
    /// How many owners the shard held after its last sweep.
    swept_at: usize,
}

impl fmt::Debug for MemoryCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCounts").finish_non_exhaustive()
    }
}

impl MemoryCounts {
    fn shard(&self, user: &UserId, bucket: Bucket) -> std::sync::MutexGuard<'_, Shard> {
        let mut h = self.hasher.build_hasher();
        user.hash(&mut h);
        bucket.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % SHARDS];
        // A panic elsewhere while it was held leaves the counts as they were.
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the slots of `user`'s `bucket`.
    pub(crate) fn with<R>(
        &self,
        user: &UserId,
        bucket: Bucket,
        now: i64,
        f: impl FnOnce(&mut Vec<Slot>) -> R,
    ) -> R {
        let mut shard = self.shard(user, bucket);
        shard.sweep(now);
        let users = &mut shard.slots[bucket.index()];
        // No allocation for a user seen before.
        if let Some(slots) = users.get_mut(user) {
            return f(slots);
        }
        f(users.entry(user.clone()).or_default())
    }

    /// Sets an owner's slots, as read back from the store.
    #[cfg_attr(not(feature = "store"), allow(dead_code))]
    pub(crate) fn load(&self, owner: Owner, slots: Vec<Slot>) {
        let mut shard = self.shard(&owner.0, owner.1);
        shard.slots[owner.1.index()].insert(owner.0, slots);
    }
}

impl Shard {
    /// Drops the owners whose every window has ended, each time the shard
    /// has doubled since it last looked: a month's users at most stay.
    fn sweep(&mut self, now: i64) {
        let held: usize = self.slots.iter().map(HashMap::len).sum();
        if held < 1_024 || held < self.swept_at * 2 {
            return;
        }
        for users in &mut self.slots {
            users.retain(|_, slots| slots.iter().any(|s| s.span.end.is_none_or(|end| end > now)));
        }
        self.swept_at = self.slots.iter().map(HashMap::len).sum();
    }
}

impl Counts for MemoryCounts {
    fn outlive_the_process(&self) -> bool {
        false
    }

    fn reserve_now(&self, ask: &Ask<'_>) -> Option<Result<Reserved, CountsError>> {
        Some(Ok(self.with(ask.user, ask.bucket, ask.now, |slots| {
            reserve_in(slots, ask)
        })))
    }

    fn reserve<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Reserved, CountsError>> {
        let reserved = self.reserve_now(&ask).expect("in process, at once");
        async move { reserved }.boxed()
    }

    fn settle(&self, user: &UserId, bucket: Bucket, windows: &[Used], delta: i64) {
        let now = windows.first().map_or(0, |u| u.span.start);
        self.with(user, bucket, now, |slots| settle_in(slots, windows, delta));
    }

    fn read<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Vec<Used>, CountsError>> {
        let windows = self.with(ask.user, ask.bucket, ask.now, |slots| current(slots, &ask));
        async move { Ok(windows) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(user: &'a UserId, allowances: &'a [Allowance], cost: u64, now: i64) -> Ask<'a> {
        Ask {
            user,
            bucket: Bucket::Paid,
            allowances,
            cost,
            now,
        }
    }

    #[test]
    fn a_reservation_takes_from_every_window_or_from_none() {
        let counts = MemoryCounts::default();
        let user = UserId::new("2001").unwrap();
        let plan = [
            Allowance {
                amount: 10,
                window: Window::Month,
            },
            Allowance {
                amount: 3,
                window: Window::Day,
            },
        ];
        let now = 1_800_000_000;
        for _ in 0..3 {
            assert!(
                counts
                    .reserve_now(&ask(&user, &plan, 1, now))
                    .unwrap()
                    .unwrap()
                    .admitted
            );
        }
        let refused = counts
            .reserve_now(&ask(&user, &plan, 1, now))
            .unwrap()
            .unwrap();
        assert!(!refused.admitted);
        assert_eq!(
            refused.windows[0].used, 3,
            "the month kept what the day refused"
        );
        // The next day renews the day, not the month.
        let tomorrow = now + 86_400;
        let next = counts
            .reserve_now(&ask(&user, &plan, 2, tomorrow))
            .unwrap()
            .unwrap();
        assert!(next.admitted);
        assert_eq!((next.windows[0].used, next.windows[1].used), (5, 2));
        // A settlement of -2 gives both back; one past the balance refuses the next.
        counts.settle(&user, Bucket::Paid, &next.windows, -2);
        counts.settle(&user, Bucket::Paid, &next.windows, 4);
        let after = counts
            .reserve_now(&ask(&user, &plan, 0, tomorrow))
            .unwrap()
            .unwrap();
        assert!(!after.admitted, "the day is at 4 of 3");
        assert_eq!(after.windows[1].remaining(), -1);
    }

    #[test]
    fn a_settlement_after_the_window_renewed_leaves_the_new_one_alone() {
        let counts = MemoryCounts::default();
        let user = UserId::new("2001").unwrap();
        let plan = [Allowance {
            amount: 3,
            window: Window::Hour,
        }];
        let now = 1_800_000_000; // on the hour
        let first = counts
            .reserve_now(&ask(&user, &plan, 3, now))
            .unwrap()
            .unwrap();
        let later = counts
            .reserve_now(&ask(&user, &plan, 1, now + 3_600))
            .unwrap()
            .unwrap();
        assert!(first.admitted && later.admitted);
        counts.settle(&user, Bucket::Paid, &first.windows, 5);
        let read = counts.with(&user, Bucket::Paid, now + 3_600, |s| s[0].used);
        assert_eq!(read, 1);
    }
}
