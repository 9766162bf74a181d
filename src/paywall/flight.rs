//! Coalescing: one call to Figma per key, shared by every concurrent lookup
//! of it, run in a spawned task so that a caller who goes away does not
//! cancel it for the others.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt,
};

use super::{entry::Entry, key::CacheKey, Inner};
use crate::{
    admission::{Ask, Need, Patience, Renewal},
    client::Question,
    Error,
};

pub(super) type SharedResult = Result<Arc<Entry>, Arc<Error>>;
pub(super) type Flight = Shared<BoxFuture<'static, SharedResult>>;

/// The lookups of Figma under way, by key.
#[derive(Default)]
pub(super) struct Flights(Mutex<HashMap<CacheKey, Flight>>);

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Flight>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The keys under way.
    pub(super) fn keys(&self) -> std::collections::HashSet<CacheKey> {
        self.lock().keys().copied().collect()
    }
}

/// Removes a finished flight from the map when dropped.
struct Landed<'a>(&'a Inner, CacheKey);

impl Drop for Landed<'_> {
    fn drop(&mut self) {
        self.0.flights.lock().remove(&self.1);
    }
}

impl Inner {
    /// Joins the lookup of `key` under way, or starts one in a spawned task.
    ///
    /// `seen` is when the entry the caller saw was fetched: a flight that
    /// finds a newer entry in the cache uses it instead of asking Figma, so
    /// a caller who saw an old entry just before another flight finished
    /// does not cause a second call.
    pub(super) fn flight(
        self: &Arc<Self>,
        key: CacheKey,
        seen: Option<Instant>,
        question: Question,
        ask: Ask,
    ) -> Flight {
        let mut flights = self.flights.lock();
        if let Some(flight) = flights.get(&key) {
            return flight.clone();
        }
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            // Leaves the map however the lookup ends, panics included.
            let _landed = Landed(&this, key);
            this.fetch_and_store(key, seen, question, ask).await
        });
        let flight = async move {
            task.await.unwrap_or_else(|e| {
                Err(Arc::new(Error::MalformedResponse {
                    reason: format!("the lookup task failed: {e}"),
                }))
            })
        }
        .boxed()
        .shared();
        flights.insert(key, flight.clone());
        flight
    }

    /// Asks Figma again about the answer at `key` (given at `fetched_at`)
    /// in the background, for a slot now or not at all: no caller waits on
    /// it.
    pub(super) fn renew_behind(
        self: &Arc<Self>,
        key: CacheKey,
        fetched_at: Instant,
        question: Question,
        why: Renewal,
    ) {
        let ask = Ask {
            need: Need::Renewal(why),
            patience: Patience::None,
            renews: Some(fetched_at),
        };
        drop(self.flight(key, Some(fetched_at), question, ask));
    }

    /// Tells admission what Figma said of a client's cold lookup: its
    /// suspicion comes from these.
    fn answered_cold(&self, ask: Ask, refused: bool) {
        if let Need::Cold {
            client: Some(client),
            ..
        } = ask.need
        {
            self.client.admission().answered(&client, refused);
        }
    }

    async fn fetch_and_store(
        &self,
        key: CacheKey,
        seen: Option<Instant>,
        question: Question,
        ask: Ask,
    ) -> SharedResult {
        let inner = self;
        if let Some(entry) = inner.answers.cache.get(&key) {
            if seen.is_none_or(|seen| entry.fetched_at > seen)
                && inner.clock.now() < inner.answers.lifetimes.fresh_until(&entry)
                && entry.epoch == inner.answers.epoch()
            {
                return Ok(entry);
            }
        }
        let started = Instant::now();
        let generation = inner.answers.generation();
        // An answer fetched across a demotion is cached, but of the epoch
        // the lookup started in: not trusted as fresh.
        let epoch = inner.answers.epoch();
        // The client's own timeouts bound the request; this bounds the
        // whole lookup (budget wait, a tier's lock included) whatever happens.
        let deadline = inner.lookup_deadline(ask.patience);
        let result = match tokio::time::timeout(
            deadline,
            inner.fetch(key.store_key(), &question, ask, generation),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(deadline)),
        };
        tracing::debug!(
            upstream_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "asked Figma"
        );
        let (info, fetched_at) = match result {
            Ok(answer) => {
                self.answered_cold(ask, false);
                answer
            }
            Err(error) => {
                if error.is_figma_failure() {
                    // The breaker may have just opened: the other replicas
                    // should stop asking too.
                    inner.tell_figma_failing().await;
                }
                let error = Arc::new(error);
                self.remember_refusal(key, &question, &error).await;
                if inner.refused.contains(&key) {
                    self.answered_cold(ask, true);
                }
                return Err(error);
            }
        };
        let entry = Entry::new(info, fetched_at, &inner.answers.verdicts, epoch);
        if inner.answers.generation() == generation {
            inner.answers.file(&question, &entry, key);
            inner.answers.cache.insert(key, entry.clone());
        }
        Ok(entry)
    }
}
