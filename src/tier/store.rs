//! The store: a tier on local disk (feature `store`), so that a restart or
//! a deploy asks Figma nothing it already knew.
//!
//! One [redb](https://docs.rs/redb) file (pure Rust, ACID: a write is on
//! disk when it returns, so a `kill -9` loses at most the answers in
//! flight). It holds sealed answers under their store keys, hashes that
//! never hold a plugin payment token, beside when each may be dropped and
//! whose it is (for invalidation). Expired answers are removed when the
//! store opens and every 256 writes, so the file holds at most the answers
//! of the last keep time (about an hour and ten minutes of lookups, which
//! the rate budget bounds). The file is created readable by its owner only.
//!
//! A file that is not a store, is corrupt or is from another version is set
//! aside (renamed `<file>.unreadable-<unix time>`) and a new store is
//! started, never a panic and never a grant: the answers in it are only
//! asked of Figma again.

// redb's error type is large; it only travels off the hot path, from the
// blocking pool to one log line.
#![allow(clippy::result_large_err)]

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{future::BoxFuture, FutureExt};
use redb::{Database, ReadableTable, TableDefinition, TableHandle};

use super::{Invalidation, StoreKey, Tier, TierResult, Unavailable};
use crate::{ConfigError, UserId};

/// Answers: the store key, then `[drop at, Unix ms: 8][user ID length: 1][user ID][sealed answer]`.
const ANSWERS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("answers");

/// What the file is: `format` names this crate's store and its version.
const META: TableDefinition<'_, &str, &str> = TableDefinition::new("meta");

const FORMAT: &str = "figma-paywall store 1";

/// How many writes between two sweeps of expired answers.
const SWEEP_EVERY: u64 = 256;

/// The store on local disk; see the [module docs](self).
pub(crate) struct StoreTier {
    db: Arc<Database>,
    path: PathBuf,
    writes: AtomicU64,
}

impl std::fmt::Debug for StoreTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTier")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn store_error(path: &Path, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Store {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Why a file cannot be used as a store as it is.
enum Unusable {
    /// Not a store, corrupt, or another version: set it aside.
    SetAside(String),
    /// Cannot be opened at all (permissions, a missing folder, another
    /// process holding it): stop.
    Fatal(String),
}

impl StoreTier {
    /// Opens the store at `path`, creating it (readable by its owner only)
    /// if it does not exist, and setting aside a file it cannot use.
    pub(crate) fn open(path: &Path) -> Result<Self, ConfigError> {
        let db = match Self::try_open(path) {
            Ok(db) => db,
            Err(Unusable::Fatal(reason)) => return Err(store_error(path, reason)),
            Err(Unusable::SetAside(reason)) => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(format!(".unreadable-{}", unix_ms() / 1000));
                let aside = PathBuf::from(aside);
                std::fs::rename(path, &aside).map_err(|e| {
                    store_error(
                        path,
                        format!("{reason}, and it could not be set aside: {e}"),
                    )
                })?;
                tracing::warn!(
                    path = %path.display(),
                    set_aside = %aside.display(),
                    "the store could not be used ({reason}): set it aside and started a new one; answers it held will be asked of Figma again"
                );
                Self::try_open(path).map_err(|e| match e {
                    Unusable::Fatal(r) | Unusable::SetAside(r) => store_error(path, r),
                })?
            }
        };
        let store = Self {
            db: Arc::new(db),
            path: path.to_owned(),
            writes: AtomicU64::new(0),
        };
        store
            .sweep_now()
            .map_err(|e| store_error(path, format!("could not remove expired answers: {e}")))?;
        Ok(store)
    }

    fn try_open(path: &Path) -> Result<Database, Unusable> {
        create_private(path).map_err(Unusable::Fatal)?;
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Unusable::Fatal(
                "another process has it open: give each replica its own store file".into(),
            ),
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() != std::io::ErrorKind::InvalidData =>
            {
                Unusable::Fatal(io.to_string())
            }
            other => Unusable::SetAside(format!("not a store this version can read: {other}")),
        })?;
        check_format(&db).map_err(Unusable::SetAside)?;
        Ok(db)
    }

    /// Removes expired answers.
    fn sweep_now(&self) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        sweep(&mut txn.open_table(ANSWERS)?)?;
        txn.commit()?;
        Ok(())
    }

    /// Runs `work` on the blocking pool; a failure is logged and makes the
    /// store unavailable for this lookup.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    ) -> TierResult<T> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || work(&db)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                tracing::warn!(operation = what, error = %e, "the store failed; going on without it");
                Err(Unavailable)
            }
            Err(e) => {
                tracing::warn!(operation = what, error = %e, "the store's task failed; going on without it");
                Err(Unavailable)
            }
        }
    }
}

/// Creates the file readable by its owner only if it is missing, and makes
/// an existing one so.
fn create_private(path: &Path) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| e.to_string())?;
    }
    drop(file);
    Ok(())
}

/// Checks, or writes into a new file, which store this is.
fn check_format(db: &Database) -> Result<(), String> {
    let inner = || -> Result<Result<(), String>, redb::Error> {
        let txn = db.begin_write()?;
        let verdict = {
            let found = {
                let meta = txn.open_table(META)?;
                let format = meta.get("format")?.map(|v| v.value().to_owned());
                format
            };
            match found.as_deref() {
                Some(FORMAT) => Ok(()),
                Some(other) => Err(format!("it is {other:?}, not {FORMAT:?}")),
                None => {
                    let others = txn.list_tables()?.any(|t| t.name() != "meta");
                    if others {
                        Err("it is a redb file of something else".to_owned())
                    } else {
                        txn.open_table(META)?.insert("format", FORMAT)?;
                        txn.open_table(ANSWERS)?;
                        Ok(())
                    }
                }
            }
        };
        if verdict.is_ok() {
            txn.commit()?;
        }
        Ok(verdict)
    };
    match inner() {
        Ok(verdict) => verdict,
        Err(e) => Err(format!("it cannot be read as a store: {e}")),
    }
}

/// Removes the answers whose time to be dropped has come (and anything that
/// is not a record).
fn sweep(table: &mut redb::Table<'_, u128, &[u8]>) -> Result<(), redb::StorageError> {
    let now = unix_ms();
    table.retain(|_, record| record_drop_at(record).is_some_and(|at| at > now))
}

/// When a record may be dropped, if it is a record at all.
fn record_drop_at(record: &[u8]) -> Option<u64> {
    let (at, _) = record.split_first_chunk::<8>()?;
    Some(u64::from_le_bytes(*at))
}

/// A record's user ID and sealed answer.
fn record_parts(record: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, rest) = record.split_first_chunk::<8>()?;
    let (&len, rest) = rest.split_first()?;
    rest.split_at_checked(usize::from(len))
}

fn record(drop_at: u64, user: &UserId, sealed: &[u8]) -> Vec<u8> {
    let user = user.as_str().as_bytes();
    let mut out = Vec::with_capacity(9 + user.len() + sealed.len());
    out.extend_from_slice(&drop_at.to_le_bytes());
    out.push(u8::try_from(user.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(&user[..user.len().min(255)]);
    out.extend_from_slice(sealed);
    out
}

impl Tier for StoreTier {
    fn name(&self) -> &'static str {
        "the store"
    }

    fn get(&self, key: StoreKey) -> BoxFuture<'_, TierResult<Option<Vec<u8>>>> {
        self.blocking("read", move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(ANSWERS)?;
            let Some(value) = table.get(key.0)? else {
                return Ok(None);
            };
            let record = value.value();
            let live = record_drop_at(record).is_some_and(|at| at > unix_ms());
            Ok(live
                .then(|| record_parts(record).map(|(_, sealed)| sealed.to_vec()))
                .flatten())
        })
        .boxed()
    }

    fn put<'a>(
        &'a self,
        key: StoreKey,
        sealed: &'a [u8],
        user: &'a UserId,
        keep_for: Duration,
        _index_for: Duration,
    ) -> BoxFuture<'a, TierResult<()>> {
        let keep_ms = u64::try_from(keep_for.as_millis()).unwrap_or(u64::MAX);
        let value = record(unix_ms().saturating_add(keep_ms), user, sealed);
        let sweep_now =
            self.writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1;
        async move {
            self.blocking("write", move |db| {
                let txn = db.begin_write()?;
                {
                    let mut table = txn.open_table(ANSWERS)?;
                    table.insert(key.0, value.as_slice())?;
                    if sweep_now {
                        sweep(&mut table)?;
                    }
                }
                txn.commit()?;
                Ok(())
            })
            .await
        }
        .boxed()
    }

    fn invalidate<'a>(&'a self, what: &'a Invalidation, _message: &'a [u8]) -> BoxFuture<'a, ()> {
        let what = what.clone();
        async move {
            let _ = self
                .blocking("invalidate", move |db| {
                    let txn = db.begin_write()?;
                    {
                        let mut table = txn.open_table(ANSWERS)?;
                        match &what {
                            Invalidation::All => table.retain(|_, _| false)?,
                            Invalidation::Key(key) => {
                                table.remove(key.0)?;
                            }
                            Invalidation::User(user) => {
                                let user = user.as_str().as_bytes();
                                table.retain(|_, v| {
                                    record_parts(v).is_none_or(|(u, _)| u != user)
                                })?;
                            }
                        }
                    }
                    txn.commit()?;
                    Ok(())
                })
                .await;
        }
        .boxed()
    }
}

impl StoreTier {
    /// The credits' counts this store's file keeps, as of `now` (Unix
    /// seconds).
    pub(crate) fn counts(&self, now: i64) -> Result<super::store_counts::StoreCounts, ConfigError> {
        super::store_counts::StoreCounts::open(self.db.clone(), now).map_err(|e| {
            store_error(
                &self.path,
                format!("could not read the credits' counts: {e}"),
            )
        })
    }
}

impl StoreTier {
    /// How many answers the store holds (expired ones not yet swept
    /// included).
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().expect("a read transaction");
        txn.open_table(ANSWERS)
            .expect("the table")
            .len()
            .expect("a length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserId {
        UserId::new(id).unwrap()
    }

    #[tokio::test]
    async fn answers_survive_a_reopen_and_expire() {
        let dir = tempdir();
        let path = dir.join("answers.redb");
        {
            let store = StoreTier::open(&path).unwrap();
            let day = Duration::from_secs(86_400);
            store
                .put(StoreKey(1), b"sealed-1", &user("5"), day, day)
                .await
                .unwrap();
            store
                .put(StoreKey(2), b"sealed-2", &user("6"), Duration::ZERO, day)
                .await
                .unwrap();
            assert_eq!(
                store.get(StoreKey(1)).await.unwrap().as_deref(),
                Some(&b"sealed-1"[..])
            );
            assert_eq!(store.get(StoreKey(2)).await.unwrap(), None, "expired");
        }
        let store = StoreTier::open(&path).unwrap();
        assert_eq!(
            store.get(StoreKey(1)).await.unwrap().as_deref(),
            Some(&b"sealed-1"[..])
        );
        assert_eq!(store.len(), 1, "the expired answer was swept at open");
        store.invalidate(&Invalidation::User(user("5")), b"").await;
        assert_eq!(store.get(StoreKey(1)).await.unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
    }

    #[test]
    fn an_unusable_file_is_set_aside_and_a_held_one_is_an_error() {
        let dir = tempdir();
        let path = dir.join("answers.redb");
        std::fs::write(
            &path,
            b"this is not a store at all, just some text".repeat(100),
        )
        .unwrap();
        let store = StoreTier::open(&path).unwrap();
        let aside: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("unreadable"))
            .collect();
        assert_eq!(aside.len(), 1);
        // The same file, held by this process: a clear error, no panic.
        let err = StoreTier::open(&path).unwrap_err().to_string();
        assert!(err.contains("another process has it open"), "{err}");
        drop(store);
        // A redb file of something else is set aside too.
        let other = dir.join("other.redb");
        {
            let db = Database::create(&other).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(TableDefinition::<&str, u64>::new("accounts"))
                .unwrap();
            txn.commit().unwrap();
        }
        StoreTier::open(&other).unwrap();
        assert!(std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e
                .file_name()
                .to_string_lossy()
                .starts_with("other.redb.unreadable")));
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "figma-paywall-store-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
