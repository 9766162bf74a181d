//! The Redis tier's background tasks: a heartbeat that counts the replicas
//! sharing the budget, and the listener that hands other replicas'
//! invalidations to the engine.

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Weak},
    time::Duration,
};

use futures_util::StreamExt;

use super::{
    scripts::{FORGOTTEN_AFTER, HEARTBEAT_EVERY, MAX_REPLICAS},
    RedisTier,
};
use crate::tier::{Invalidations, TierResult};

impl RedisTier {
    /// Says every second that this replica is alive, and learns how many
    /// share the budget, until the engine is dropped.
    pub(super) fn spawn_heartbeat(&self, engine: Weak<dyn Invalidations>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tier = self.clone();
        runtime.spawn(async move {
            let mut heard = Heard::default();
            let mut every = tokio::time::interval(HEARTBEAT_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if engine.strong_count() == 0 {
                    return;
                }
                let mut conn = tier.conn();
                let floor = tier.inner.replicas_floor;
                let heartbeat = tier.touch(&tier.inner.heartbeat, floor);
                let known: TierResult<u32> = tier
                    .run("heartbeat", heartbeat.invoke_async(&mut conn))
                    .await;
                if let Ok(known) = known {
                    // Within [floor, MAX_REPLICAS] as the script answers, and
                    // kept there whatever Redis answers.
                    let replicas = heard.add(known).clamp(floor, MAX_REPLICAS);
                    tier.inner.replicas.store(replicas, Ordering::Relaxed);
                }
            }
        });
    }

    /// Listens for invalidations from other replicas until the paywall is
    /// dropped, reconnecting when Redis goes away.
    pub(super) fn spawn_listener(&self, engine: Weak<dyn Invalidations>) {
        self.listen_on(self.channel(), engine);
    }

    /// Listens on `channel` for what `engine` hears, until it is dropped,
    /// reconnecting when Redis goes away.
    pub(crate) fn listen_on(&self, channel: String, engine: Weak<dyn Invalidations>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no Tokio runtime while building the Paywall: invalidations from other replicas will not be heard");
            return;
        };
        let tier = self.clone();
        runtime.spawn(async move {
            let mut first = true;
            loop {
                if engine.strong_count() == 0 {
                    return;
                }
                let subscribed = async {
                    let mut pubsub = tier.inner.client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, ::redis::RedisError>(pubsub)
                };
                if let Ok(Ok(pubsub)) =
                    tokio::time::timeout(Duration::from_secs(2), subscribed).await
                {
                    // Invalidations sent while this replica was not listening
                    // are lost: what it holds is asked about again.
                    if !std::mem::take(&mut first) {
                        if let Some(engine) = engine.upgrade() {
                            engine.missed();
                        }
                    }
                    let mut messages = pubsub.into_on_message();
                    loop {
                        // Wake now and then to notice a dropped paywall.
                        match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                            Ok(Some(message)) => {
                                let Some(engine) = engine.upgrade() else {
                                    return;
                                };
                                engine.heard(message.get_payload_bytes()).await;
                            }
                            Ok(None) => break,
                            Err(_) if engine.strong_count() == 0 => return,
                            Err(_) => {}
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

/// The replicas Redis said it heard from, at its last answers to the
/// heartbeat: a minute of them, however long Redis was away in between.
#[derive(Default)]
struct Heard(VecDeque<u32>);

impl Heard {
    /// Adds Redis's latest answer; the most it gave in the last minute of
    /// answers. A Redis restart forgets the replicas that have not been
    /// heard from since; this does not, for a minute.
    fn add(&mut self, known: u32) -> u32 {
        const KEPT: u64 = FORGOTTEN_AFTER.as_secs() / HEARTBEAT_EVERY.as_secs();
        if self.0.len() as u64 >= KEPT {
            self.0.pop_front();
        }
        self.0.push_back(known);
        self.0.iter().copied().max().unwrap_or(known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_heard_from_are_kept_for_a_minute_of_answers() {
        let mut heard = Heard::default();
        assert_eq!(heard.add(3), 3);
        // Redis restarted: only this replica has been heard from since.
        for _ in 1..60 {
            assert_eq!(heard.add(1), 3);
        }
        assert_eq!(heard.add(1), 1);
    }
}
