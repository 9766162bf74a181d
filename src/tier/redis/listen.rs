//! The Redis tier's background tasks: a heartbeat that counts the replicas
//! sharing the budget, and the listener that hands other replicas'
//! invalidations to the engine.

use std::{
    sync::{atomic::Ordering, Weak},
    time::Duration,
};

use futures_util::StreamExt;

use super::{
    millis,
    scripts::{ALIVE_FOR, HEARTBEAT_EVERY},
    RedisTier,
};
use crate::tier::{Invalidations, TierResult};

impl RedisTier {
    /// Says every 10 s that this replica is alive, and learns how many are,
    /// until the engine is dropped.
    pub(super) fn spawn_heartbeat(&self, engine: Weak<dyn Invalidations>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tier = self.clone();
        runtime.spawn(async move {
            while engine.strong_count() > 0 {
                let mut conn = tier.conn();
                let script = tier.inner.heartbeat.clone();
                let (key, replica) = (tier.key("replicas", ""), tier.inner.replica.clone());
                let alive: TierResult<u32> = tier
                    .run("heartbeat", async move {
                        script
                            .key(key)
                            .arg(replica)
                            .arg(millis(ALIVE_FOR))
                            .invoke_async(&mut conn)
                            .await
                    })
                    .await;
                if let Ok(alive) = alive {
                    let replicas = alive.max(tier.inner.replicas_floor);
                    tier.inner.replicas.store(replicas, Ordering::Relaxed);
                }
                tokio::time::sleep(HEARTBEAT_EVERY).await;
            }
        });
    }

    /// Listens for invalidations from other replicas until the paywall is
    /// dropped, reconnecting when Redis goes away.
    pub(super) fn spawn_listener(&self, engine: Weak<dyn Invalidations>) {
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
                    pubsub.subscribe(tier.channel()).await?;
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
