//! A miss beyond the in-process cache: the tiers (the store on local disk,
//! then Redis), then Figma.
//!
//! A lookup reads each tier in order and opens what it finds (an answer
//! whose seal does not hold is ignored and logged). An answer before its
//! refresh point is used, and copied into the tiers before the one it came
//! from (a Redis answer lands on disk too); one that is fresh but due for a
//! refresh is kept as the fallback should Figma fail. Then, with a tier
//! shared by replicas, the lookup takes its lock on the key (so that one
//! replica asks Figma), asks within the back-off and budget it shares, and
//! writes the answer through to every tier; a replica that finds the lock
//! taken polls the shared tier until the lock's lifetime has passed.

use std::{
    sync::{atomic::AtomicU64, Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{future::BoxFuture, FutureExt};

use super::{forgotten::Forgotten, Inner, Shared, REFRESH_AT};
use crate::{
    admission::{Ask, Need, Patience, Renewal, SharedBudget},
    client::Question,
    credits::Counts,
    error::Error,
    tier::{Charge, Keyring, Opened, Refused, StoreKey, Stored, Tier, TierResult, Unavailable},
    PaymentInformation,
};

/// How often waiters look for the answer another replica is fetching.
const POLL: Duration = Duration::from_millis(20);

/// Stored answers whose seal does not hold are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

type Fetched = Result<(PaymentInformation, Instant), Error>;

/// The tiers beyond this process: the local ones (the store) and the one
/// replicas share (Redis), the key that seals what they keep, and what
/// this replica forgot and heard from the others.
pub(super) struct Tiers {
    /// Asked in order on a miss, before the shared one.
    pub(super) local: Vec<Box<dyn Tier>>,
    pub(super) shared: Option<Shared>,
    /// Seals and opens what the tiers keep.
    pub(super) keyring: Keyring,
    /// When an answer with a broken seal was last logged.
    pub(super) seal_warned_at: Mutex<Option<Instant>>,
    /// What this replica forgot lately, and the sealed messages it heard.
    pub(super) forgotten: Forgotten,
    /// Until when (Unix ms) replicas were last told that Figma is failing.
    pub(super) told_failing_until: AtomicU64,
    /// Where the gates' credits are counted: in process, the store, or
    /// Redis.
    pub(super) counts: Arc<dyn Counts>,
}

impl Tiers {
    pub(super) fn new(
        local: Vec<Box<dyn Tier>>,
        shared: Option<Shared>,
        keyring: Keyring,
        forgotten: Forgotten,
        counts: Arc<dyn Counts>,
    ) -> Self {
        Self {
            local,
            shared,
            keyring,
            seal_warned_at: Mutex::new(None),
            forgotten,
            told_failing_until: AtomicU64::new(0),
            counts,
        }
    }

    /// Whether there is no tier at all.
    pub(super) fn is_empty(&self) -> bool {
        self.local.is_empty() && self.shared.is_none()
    }

    /// Every tier, in the order a miss reads them.
    pub(super) fn all(&self) -> impl Iterator<Item = &dyn Tier> {
        let shared = self.shared.as_ref().map(|s| s.tier.as_ref());
        self.local.iter().map(|t| t.as_ref()).chain(shared)
    }
}

/// A stored answer found young enough to use.
enum Found {
    /// Use it: before its refresh point, or, for a caller who waits, a
    /// PAID/TRIAL answer within the refresh cycle the budget achieves (let
    /// in on it as on an answer held in memory, while its refresh waits
    /// for a spare slot).
    Fresh(Stored),
    /// Fresh, but due for a refresh: the fallback should the refresh not
    /// be made.
    Refreshable(Stored),
    /// Past its lifetime, within its grace (PAID and TRIAL): the fallback
    /// should Figma fail.
    Stale(Stored),
}

/// What a lookup falls back on if it cannot ask Figma: the youngest stored
/// answer found, and whether it is still fresh.
#[derive(Default)]
struct Fallback(Option<(Stored, bool)>);

impl Fallback {
    /// A first lookup whose stored answer lets a buyer in is that known
    /// buyer's refresh, in its lane, not a new caller's.
    fn known_buyer(&self, ask: Ask, inner: &Inner) -> Ask {
        match &self.0 {
            Some((stored, _))
                if matches!(ask.need, Need::Cold { .. }) && stored.info.payment_status.grants() =>
            {
                Ask {
                    need: Need::Renewal(Renewal::Waited),
                    renews: Some(inner.fetched_at(stored)),
                    ..ask
                }
            }
            _ => ask,
        }
    }

    fn offer(&mut self, found: Found) {
        let (stored, fresh) = match found {
            Found::Fresh(stored) | Found::Refreshable(stored) => (stored, true),
            Found::Stale(stored) => (stored, false),
        };
        if self
            .0
            .as_ref()
            .is_none_or(|(s, _)| s.fetched_ms < stored.fetched_ms)
        {
            self.0 = Some((stored, fresh));
        }
    }
}

impl Inner {
    /// Asks for an answer beyond the in-process cache. `generation` is the
    /// invalidation count when the lookup started: an answer fetched across
    /// an invalidation is not written through.
    pub(super) async fn fetch(
        &self,
        key: StoreKey,
        question: &Question,
        ask: Ask,
        generation: u64,
    ) -> Fetched {
        if self.tiers.local.is_empty() && self.tiers.shared.is_none() {
            return self.ask_figma(question, ask, None).await;
        }
        // A caller who waits may be let in on a stored answer within the
        // refresh cycle, as on one held in memory; a refresh asks Figma.
        let cycle =
            (ask.patience == Patience::Caller).then(|| self.client.admission().refresh_cycle());
        let mut fallback = Fallback::default();
        for (i, tier) in self.tiers.local.iter().enumerate() {
            match self.read(tier.as_ref(), true, key, cycle).await {
                Ok(Some(Found::Fresh(stored))) => {
                    self.stats.store_hits.add();
                    self.copy(self.local_before(i), key, &stored).await;
                    return Ok(self.answer(stored));
                }
                Ok(Some(found)) => fallback.offer(found),
                Ok(None) | Err(Unavailable) => {}
            }
        }
        let Some(shared) = &self.tiers.shared else {
            let ask = fallback.known_buyer(ask, self);
            let result = self.ask_figma(question, ask, None).await;
            self.write_through(key, &result, generation, false).await;
            return self.or_fallback(result, fallback);
        };
        // Read between attempts at its lock.
        let (tier, replicas) = (shared.tier.as_ref(), shared.replicas.as_ref());
        let mut shared_down = false;
        let deadline = Instant::now() + replicas.lock_ttl();
        loop {
            match self.read(tier, false, key, cycle).await {
                Ok(Some(Found::Fresh(stored))) => return self.shared_hit(key, stored).await,
                Ok(Some(found)) => fallback.offer(found),
                Ok(None) => {}
                Err(Unavailable) => break,
            }
            match replicas.lock(key).await {
                Ok(true) => {
                    // The holder before us may have written its answer
                    // and let go between our read and our lock: look
                    // once more before asking Figma.
                    if let Ok(Some(Found::Fresh(stored))) = self.read(tier, false, key, None).await
                    {
                        replicas.unlock(key).await;
                        return self.shared_hit(key, stored).await;
                    }
                    let ask = fallback.known_buyer(ask, self);
                    let result = self.ask_shared(shared, question, ask).await;
                    self.write_through(key, &result, generation, true).await;
                    replicas.unlock(key).await;
                    return self.or_fallback(result, fallback);
                }
                Ok(false) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                // The holder is gone: ask directly.
                Ok(false) => break,
                Err(Unavailable) => {
                    shared_down = true;
                    break;
                }
            }
        }
        // No lock: Redis is out of reach, or the holder is gone. A shared
        // budget is still kept to (or this replica's share of it).
        let ask = fallback.known_buyer(ask, self);
        let result = self.ask_shared(shared, question, ask).await;
        self.write_through(key, &result, generation, !shared_down)
            .await;
        self.or_fallback(result, fallback)
    }

    /// A fresh answer the shared tier held: copied into the local tiers,
    /// and used.
    async fn shared_hit(&self, key: StoreKey, stored: Stored) -> Fetched {
        self.stats.tier_hits.add();
        self.copy(self.local_before(self.tiers.local.len()), key, &stored)
            .await;
        Ok(self.answer(stored))
    }

    /// What `tier` holds for `key`, opened and judged by its age (and, for
    /// a caller who waits, the refresh `cycle`).
    async fn read(
        &self,
        tier: &dyn Tier,
        local: bool,
        key: StoreKey,
        cycle: Option<Duration>,
    ) -> Result<Option<Found>, Unavailable> {
        let Some(bytes) = tier.get(key).await? else {
            return Ok(None);
        };
        let stored = match self.tiers.keyring.open(key, &bytes) {
            Ok(Opened::Current(stored)) => stored,
            Ok(Opened::Previous(stored)) => {
                // Sealed under the key being retired: seal it anew, so that
                // rotating the key asks Figma nothing.
                self.copy([tier], key, &stored).await;
                stored
            }
            Err(Refused::BadSeal) => {
                self.warn_bad_seal("a stored answer", tier.name());
                return Ok(None);
            }
            Err(Refused::NotSealed) => {
                tracing::debug!(
                    tier = tier.name(),
                    "ignored a stored answer of another version"
                );
                return Ok(None);
            }
        };
        // From before this replica forgot it: put back by someone who can
        // write to the tier, or written by a lookup an invalidation overtook.
        if self.tiers.forgotten.covers(key, &stored) {
            tracing::debug!(
                tier = tier.name(),
                "ignored a stored answer from before an invalidation"
            );
            return Ok(None);
        }
        let age = self.age(&stored);
        let fresh = self
            .answers
            .lifetimes
            .fresh_for(&stored.info.payment_status);
        // A local tier's answer from before invalidations may have been
        // missed is asked about again (Redis's own were invalidated there).
        let demoted = local && self.answers.demoted_since(stored.fetched_ms);
        let grace = self
            .answers
            .lifetimes
            .grace_for(&stored.info.payment_status);
        let stand_in = cycle
            .filter(|_| !demoted)
            .and_then(|cycle| {
                self.answers
                    .lifetimes
                    .unverified_for(&stored.info.payment_status, cycle)
            })
            .is_some_and(|window| age < window);
        Ok(if age < fresh.mul_f32(REFRESH_AT) && !demoted {
            Some(Found::Fresh(stored))
        } else if stand_in {
            if age >= fresh {
                self.stats.unverified_served.add();
            }
            Some(Found::Fresh(stored))
        } else if age < fresh {
            Some(Found::Refreshable(stored))
        } else if age < fresh.saturating_add(grace) {
            Some(Found::Stale(stored))
        } else {
            None
        })
    }

    /// How old a stored answer is; one from the future (a forged entry, or
    /// a replica whose clock runs ahead) counts as fetched now.
    fn age(&self, stored: &Stored) -> Duration {
        Duration::from_millis(self.clock.unix_ms().saturating_sub(stored.fetched_ms))
    }

    /// A stored answer as the cache keeps it: when it was fetched, by this
    /// process's clock.
    fn answer(&self, stored: Stored) -> (PaymentInformation, Instant) {
        let fetched_at = self.fetched_at(&stored);
        (stored.info, fetched_at)
    }

    /// When Figma gave a stored answer, by this process's clock.
    fn fetched_at(&self, stored: &Stored) -> Instant {
        let now = self.clock.now();
        now.checked_sub(self.age(stored)).unwrap_or(now)
    }

    /// The local tiers read before the `i`th.
    fn local_before(&self, i: usize) -> impl Iterator<Item = &dyn Tier> {
        self.tiers.local[..i].iter().map(|t| t.as_ref())
    }

    /// Copies a stored answer into `tiers`, keeping its age.
    async fn copy<'a>(
        &self,
        tiers: impl IntoIterator<Item = &'a dyn Tier>,
        key: StoreKey,
        stored: &Stored,
    ) {
        let keep = self.answers.lifetimes.keep_for(&stored.info.payment_status);
        let left = keep.saturating_sub(self.age(stored));
        if left.is_zero() {
            return;
        }
        let mut sealed = None;
        for tier in tiers {
            let sealed = sealed.get_or_insert_with(|| self.tiers.keyring.seal(key, stored));
            let _ = tier
                .put(
                    key,
                    sealed,
                    &stored.info.user_id,
                    left,
                    self.answers.lifetimes.longest_keep(),
                )
                .await;
        }
    }

    /// Writes Figma's answer through to every tier (the shared one only if
    /// it answers), unless an invalidation came while it was fetched.
    async fn write_through(&self, key: StoreKey, result: &Fetched, generation: u64, shared: bool) {
        let Ok((info, _)) = result else { return };
        if self.answers.generation() != generation {
            return;
        }
        let stored = Stored {
            info: info.clone(),
            fetched_ms: self.clock.unix_ms(),
        };
        let sealed = self.tiers.keyring.seal(key, &stored);
        let keep_for = self.answers.lifetimes.keep_for(&info.payment_status);
        let shared = self
            .tiers
            .shared
            .as_ref()
            .filter(|_| shared)
            .map(|s| s.tier.as_ref());
        for tier in self.tiers.local.iter().map(|t| t.as_ref()).chain(shared) {
            let _ = tier
                .put(
                    key,
                    &sealed,
                    &info.user_id,
                    keep_for,
                    self.answers.lifetimes.longest_keep(),
                )
                .await;
        }
    }

    /// Logs (at most every 30 s) that `what` read from `tier` was ignored
    /// because its seal does not hold.
    pub(super) fn warn_bad_seal(&self, what: &str, tier: &str) {
        let now = Instant::now();
        let mut warned = self
            .tiers
            .seal_warned_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY) {
            *warned = Some(now);
            tracing::warn!(
                tier,
                "ignored {what} whose seal does not hold: written without FIGMA_PAYWALL_KEY, or altered; whoever writes to {tier} may be tampering with access",
            );
        }
    }

    /// Asks Figma within the back-off and budget replicas share.
    async fn ask_shared(&self, shared: &Shared, question: &Question, ask: Ask) -> Fetched {
        let budget = TierBudget {
            inner: self,
            shared,
        };
        let result = self.ask_figma(question, ask, Some(&budget)).await;
        if let Err(Error::RateLimited(limit)) = &result {
            let delay = limit.back_off();
            let message = self.seal_back_off(delay);
            shared.replicas.back_off(delay, message).await;
        }
        result
    }

    /// Asks Figma once admission gives a slot (of the budget `shared` by
    /// replicas, if there is one).
    async fn ask_figma(
        &self,
        question: &Question,
        ask: Ask,
        shared: Option<&dyn SharedBudget>,
    ) -> Fetched {
        let claim = self.client.admit_call(ask, shared).await?;
        let info = self.client.ask(question, claim).await?;
        Ok((info, self.clock.now()))
    }
}

/// The budget replicas share, as admission asks for it: the engine opens
/// the sealed back-off the shared tier holds.
struct TierBudget<'a> {
    inner: &'a Inner,
    shared: &'a Shared,
}

impl SharedBudget for TierBudget<'_> {
    fn backing_off_for(&self) -> BoxFuture<'_, Option<Duration>> {
        async move {
            let (left, message) = self.shared.replicas.backing_off_for().await.ok()??;
            self.inner
                .open_back_off(left, &message, self.shared.tier.name())
        }
        .boxed()
    }

    fn take(
        &self,
        per_minute: u32,
        burst: u32,
        reserve: Duration,
        charge: Charge,
    ) -> BoxFuture<'_, TierResult<Option<Duration>>> {
        self.shared
            .replicas
            .take_slot(per_minute, burst, reserve, charge)
    }

    fn unreachable_for(&self) -> Duration {
        self.shared.replicas.unreachable_for()
    }

    fn replicas(&self) -> u32 {
        self.shared.replicas.replicas()
    }
}

impl Inner {
    /// Figma's answer, else what was stored: a fresh answer when no
    /// refresh could be made, one in its grace only when Figma failed.
    fn or_fallback(&self, result: Fetched, fallback: Fallback) -> Fetched {
        match (result, fallback.0) {
            (Err(e), Some((stored, fresh)))
                if (fresh && e.could_not_refresh()) || e.is_figma_failure() =>
            {
                tracing::debug!(error = %e, fresh, "could not ask Figma; using a stored answer");
                Ok(self.answer(stored))
            }
            (result, _) => result,
        }
    }
}
