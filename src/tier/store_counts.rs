//! Credits' counts in the store (feature `store`): kept in process, and
//! written to the store's file before a reservation lets its request in,
//! so a restart or a `kill -9` loses no count.

// redb's error type is large; it only travels off the hot path.
#![allow(clippy::result_large_err)]

use std::{fmt, sync::Arc};

use futures_util::{future::BoxFuture, FutureExt};
use redb::{Database, ReadableTable, TableDefinition};

use crate::{
    credits::{Ask, Bucket, Counts, CountsError, MemoryCounts, Reserved, Slot, Span, Used, Window},
    UserId,
};

/// `bucket:user ID` → its slots, [`SLOT`] bytes each.
const COUNTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("credits");

/// A slot: window (1), start (8), end (8, `i64::MIN` for none), used (8).
const SLOT: usize = 25;

/// Counts kept in process and in the store's file.
#[derive(Clone)]
pub(crate) struct StoreCounts {
    memory: Arc<MemoryCounts>,
    db: Arc<Database>,
}

impl fmt::Debug for StoreCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCounts").finish_non_exhaustive()
    }
}

impl StoreCounts {
    /// The counts the file holds. A row that cannot be read stands for a
    /// spent allowance in every window until it renews: a count is never
    /// lost to corruption, at worst a caller waits.
    pub(crate) fn open(db: Arc<Database>, now: i64) -> Result<Self, redb::Error> {
        let memory = Arc::new(MemoryCounts::default());
        let txn = db.begin_write()?;
        {
            let table = txn.open_table(COUNTS)?;
            for row in table.iter()? {
                let (key, value) = row?;
                let Some((bucket, user)) = owner(key.value()) else {
                    tracing::warn!("a credits row of the store has a key it cannot read; skipped");
                    continue;
                };
                let slots = decode(value.value()).unwrap_or_else(|| {
                    tracing::warn!(user = %user, "a credits row of the store cannot be read: its allowances count as spent until they renew");
                    spent(now)
                });
                memory.load((user, bucket), slots);
            }
        }
        txn.commit()?;
        Ok(Self { memory, db })
    }

    /// Writes `user`'s slots as they are when the write begins: writes are
    /// one at a time, so the last one holds the last count.
    async fn persist(&self, user: &UserId, bucket: Bucket, now: i64) -> Result<(), CountsError> {
        let (memory, db, user) = (self.memory.clone(), self.db.clone(), user.clone());
        let work = move || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let slots = memory.with(&user, bucket, now, |slots| slots.clone());
                let mut table = txn.open_table(COUNTS)?;
                table.insert(key(bucket, &user).as_str(), encode(&slots).as_slice())?;
            }
            txn.commit()?;
            Ok(())
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CountsError(format!("the store could not write: {e}"))),
            Err(e) => Err(CountsError(format!("the store's task failed: {e}"))),
        }
    }
}

impl Counts for StoreCounts {
    fn reserve_now(&self, _ask: &Ask<'_>) -> Option<Result<Reserved, CountsError>> {
        // On disk before the request goes on: never at once.
        None
    }

    fn reserve<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Reserved, CountsError>> {
        async move {
            let reserved = self
                .memory
                .reserve_now(&ask)
                .expect("in process, at once")?;
            if reserved.admitted {
                if let Err(e) = self.persist(ask.user, ask.bucket, ask.now).await {
                    let cost = i64::try_from(ask.cost).unwrap_or(i64::MAX);
                    self.memory
                        .settle(ask.user, ask.bucket, &reserved.windows, -cost);
                    return Err(e);
                }
            }
            Ok(reserved)
        }
        .boxed()
    }

    fn settle(&self, user: &UserId, bucket: Bucket, windows: &[Used], delta: i64) {
        self.memory.settle(user, bucket, windows, delta);
        let (this, user) = (self.clone(), user.clone());
        let now = windows.first().map_or(0, |u| u.span.start);
        let write = async move {
            if let Err(e) = this.persist(&user, bucket, now).await {
                tracing::warn!(error = %e, "a settled credit count could not be written to the store");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(write)),
            Err(_) => tracing::warn!("a settled credit count was not written: no runtime"),
        }
    }

    fn read<'a>(&'a self, ask: Ask<'a>) -> BoxFuture<'a, Result<Vec<Used>, CountsError>> {
        self.memory.read(ask)
    }
}

fn key(bucket: Bucket, user: &UserId) -> String {
    format!("{}:{}", bucket.as_str(), user.as_str())
}

fn owner(key: &str) -> Option<(Bucket, UserId)> {
    let (bucket, user) = key.split_once(':')?;
    let bucket = Bucket::ALL.into_iter().find(|b| b.as_str() == bucket)?;
    Some((bucket, UserId::new(user).ok()?))
}

const WINDOWS: [Window; 4] = [Window::Hour, Window::Day, Window::Month, Window::Ever];

fn encode(slots: &[Slot]) -> Vec<u8> {
    let mut out = Vec::with_capacity(slots.len() * SLOT);
    for slot in slots {
        let window = WINDOWS.iter().position(|w| *w == slot.window).unwrap_or(0) as u8;
        out.push(window);
        out.extend_from_slice(&slot.span.start.to_le_bytes());
        out.extend_from_slice(&slot.span.end.unwrap_or(i64::MIN).to_le_bytes());
        out.extend_from_slice(&slot.used.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Option<Vec<Slot>> {
    if !bytes.len().is_multiple_of(SLOT) {
        return None;
    }
    let int = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
    bytes
        .chunks_exact(SLOT)
        .map(|c| {
            let window = *WINDOWS.get(usize::from(c[0]))?;
            let end = int(&c[9..17]);
            Some(Slot {
                window,
                span: Span {
                    start: int(&c[1..9]),
                    end: (end != i64::MIN).then_some(end),
                },
                used: int(&c[17..25]),
            })
        })
        .collect()
}

/// Every window spent, as of `now`.
fn spent(now: i64) -> Vec<Slot> {
    WINDOWS
        .iter()
        .map(|&window| Slot {
            window,
            span: window.span(now),
            used: i64::MAX / 2,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_read_back_what_was_written_and_garbage_reads_as_nothing() {
        let slots = spent(1_800_000_000);
        assert_eq!(decode(&encode(&slots)), Some(slots));
        assert_eq!(decode(&[1, 2, 3]), None);
        let mut bad = encode(&spent(0));
        bad[0] = 9;
        assert_eq!(decode(&bad), None);
        assert_eq!(
            owner("paid:2001").map(|(b, u)| (b, u.as_str().to_owned())),
            Some((Bucket::Paid, "2001".into()))
        );
        assert_eq!(owner("gold:2001").map(|(b, _)| b), None);
    }
}
