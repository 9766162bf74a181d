//! A miss beyond the in-process cache: the tier (Redis), then Figma, as one
//! replica among several.
//!
//! With a tier, a lookup reads the stored answer; uses it while it is before
//! its refresh point; keeps one that is fresh but due for a refresh as the
//! fallback should Figma fail; otherwise takes the tier's lock on the key
//! (so that one replica asks Figma), asks within the back-off and budget the
//! tier shares, and writes the answer through. A replica that finds the
//! lock taken polls for the answer until the lock's lifetime has passed.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::{Inner, REFRESH_AT};
use crate::{
    client::{Question, Wait},
    error::{Error, ThrottleReason},
    tier::{StoreKey, Stored, Tier, Unavailable},
    PaymentInformation,
};

/// How often waiters look for the answer another replica is fetching.
const POLL: Duration = Duration::from_millis(20);

type Fetched = Result<(PaymentInformation, Instant), Error>;

impl Inner {
    /// Asks for an answer beyond the in-process cache. `generation` is the
    /// invalidation count when the lookup started: an answer fetched across
    /// an invalidation is not written through.
    pub(super) async fn fetch(
        &self,
        key: StoreKey,
        question: &Question,
        wait: Wait,
        generation: u64,
    ) -> Fetched {
        match &self.tier {
            Some(tier) => {
                self.fetch_tiered(tier.as_ref(), key, question, wait, generation)
                    .await
            }
            None => self.ask_figma(question, wait).await,
        }
    }

    async fn fetch_tiered(
        &self,
        tier: &dyn Tier,
        key: StoreKey,
        question: &Question,
        wait: Wait,
        generation: u64,
    ) -> Fetched {
        let deadline = Instant::now() + tier.lock_ttl();
        // A stored answer past its refresh point but still fresh: used if
        // Figma cannot answer the refresh.
        let mut fallback = None;
        loop {
            match tier.get(key).await {
                Ok(Some(stored)) => {
                    let age = Duration::from_millis(
                        self.clock.unix_ms().saturating_sub(stored.fetched_ms),
                    );
                    let fresh = self.lifetimes.fresh_for(&stored.info.payment_status);
                    let now = self.clock.now();
                    let fetched_at = now.checked_sub(age).unwrap_or(now);
                    if age < fresh.mul_f32(REFRESH_AT) {
                        self.stats.tier_hits.add();
                        return Ok((stored.info, fetched_at));
                    }
                    if age < fresh {
                        fallback = Some((stored.info, fetched_at));
                    }
                }
                Ok(None) => {}
                Err(Unavailable) => break,
            }
            match tier.lock(key).await {
                Ok(true) => {
                    let result = self.ask_shared(tier, question, wait).await;
                    let current = self.generation.load(Ordering::Acquire) == generation;
                    if let (Ok((info, _)), true) = (&result, current) {
                        let stored = Stored {
                            info: info.clone(),
                            fetched_ms: self.clock.unix_ms(),
                        };
                        let keep_for = self.lifetimes.keep_for(&info.payment_status);
                        let _ = tier
                            .put(key, &stored, keep_for, self.lifetimes.longest_keep())
                            .await;
                    }
                    tier.unlock(key).await;
                    return or_fallback(result, fallback);
                }
                Ok(false) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                // The holder is gone or the tier is: ask directly.
                Ok(false) | Err(Unavailable) => break,
            }
        }
        or_fallback(self.ask_figma(question, wait).await, fallback)
    }

    /// Asks Figma within the back-off and budget the tier shares.
    async fn ask_shared(&self, tier: &dyn Tier, question: &Question, wait: Wait) -> Fetched {
        if let Ok(Some(retry_after)) = tier.backing_off_for().await {
            return Err(Error::Throttled {
                retry_after,
                reason: ThrottleReason::BackingOff,
            });
        }
        let (per_minute, burst, max_wait) = self.client.budget_settings();
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

    async fn ask_figma(&self, question: &Question, wait: Wait) -> Fetched {
        let info = self.client.ask(question, wait).await?;
        Ok((info, self.clock.now()))
    }
}

fn or_fallback(result: Fetched, fallback: Option<(PaymentInformation, Instant)>) -> Fetched {
    match (result, fallback) {
        (Err(e), Some(fallback)) if e.is_upstream_failure() => {
            tracing::debug!(error = %e, "Figma could not refresh an answer; using the one in the shared tier");
            Ok(fallback)
        }
        (result, _) => result,
    }
}
