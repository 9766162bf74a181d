//! Whether Figma refuses the creator's access token (`FIGMA_TOKEN`), asked
//! of `GET /v1/me` at most once a minute, and said loudly when it does.

use std::time::{Duration, Instant};

use super::Paywall;
use crate::Error;

/// How long a verdict on the creator's access token stands, and how often
/// its rejection is logged.
const PAT_RECHECK: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(super) struct PatCheck {
    checked_at: Option<Instant>,
    rejected: bool,
    alarmed_at: Option<Instant>,
}

impl Paywall {
    /// Whether Figma refuses the creator's access token: known from a 401
    /// or 403 on a user-ID lookup (`known`), or asked of `GET /v1/me` (at
    /// most once a minute) when a plugin payment token is refused, since
    /// Figma's 401 does not say which token it refused.
    pub(crate) async fn access_token_rejected(&self, known: bool) -> bool {
        let mut check = self.inner.pat_check.lock().await;
        let now = self.inner.clock.now();
        let fresh = check
            .checked_at
            .is_some_and(|at| now.saturating_duration_since(at) < PAT_RECHECK);
        if known {
            check.rejected = true;
            check.checked_at = Some(now);
        } else if !fresh {
            check.rejected = matches!(
                self.inner.client.verify_credentials().await,
                Err(Error::Unauthorized { .. })
            );
            check.checked_at = Some(now);
        }
        if check.rejected
            && check
                .alarmed_at
                .is_none_or(|at| now.saturating_duration_since(at) >= PAT_RECHECK)
        {
            check.alarmed_at = Some(now);
            tracing::error!("Figma rejects FIGMA_TOKEN, the creator's personal access token: it is wrong, revoked or expired (personal access tokens last 90 days at most). Create a new one at https://www.figma.com/developers/api#access-tokens; until then every caller gets 503");
        }
        check.rejected
    }
}
