//! Whether Figma refuses the creator's access token (`FIGMA_TOKEN`), asked
//! of `GET /v1/me` at most once a minute (through the client's shared
//! check: no lock across the call, one call for every concurrent asker),
//! and said loudly when it does.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use super::Inner;
use crate::client::Health;

/// How long a verdict on the creator's access token stands, and how often
/// its rejection is logged.
const PAT_RECHECK: Duration = Duration::from_secs(60);

/// When the rejection of the access token was last logged.
#[derive(Debug, Default)]
pub(super) struct PatAlarm(Mutex<Option<Instant>>);

impl Inner {
    /// Whether Figma refuses the creator's access token: known from a 401
    /// or 403 on a user-ID lookup (`known`), or asked of `GET /v1/me` (at
    /// most once a minute) when a plugin payment token is refused, since
    /// Figma's 401 does not say which token it refused.
    pub(crate) async fn access_token_rejected(&self, known: bool) -> bool {
        let client = &self.client;
        let rejected = if known {
            client.health_known(Health::RejectsToken);
            true
        } else {
            client.health(PAT_RECHECK).await == Health::RejectsToken
        };
        if rejected {
            let now = self.clock.now();
            let mut alarmed_at = self.pat_alarm.0.lock().unwrap_or_else(|e| e.into_inner());
            if alarmed_at.is_none_or(|at| now.saturating_duration_since(at) >= PAT_RECHECK) {
                *alarmed_at = Some(now);
                tracing::error!("Figma rejects FIGMA_TOKEN (wrong, revoked, or past its 90 days): callers get 503 until a new one is set (figma.com/developers/api#access-tokens)");
            }
        }
        rejected
    }
}
