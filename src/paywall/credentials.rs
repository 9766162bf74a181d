//! Whether Figma refuses the creator's access token (`FIGMA_TOKEN`), asked
//! of `GET /v1/me` at most once a minute, and said loudly when it does.
//!
//! No lock is held across the call: concurrent checks share one pending
//! result, and a verdict already known (a 401 on a user-ID lookup) never
//! waits behind a slow `GET /v1/me`.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt,
};

use super::Paywall;
use crate::Error;

/// How long a verdict on the creator's access token stands, and how often
/// its rejection is logged.
const PAT_RECHECK: Duration = Duration::from_secs(60);

type Pending = Shared<BoxFuture<'static, bool>>;

#[derive(Default)]
pub(super) struct PatCheck(Mutex<State>);

#[derive(Default)]
struct State {
    checked_at: Option<Instant>,
    rejected: bool,
    alarmed_at: Option<Instant>,
    /// The `GET /v1/me` under way, shared by every check that needs it.
    pending: Option<Pending>,
}

impl PatCheck {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn settle(&mut self, rejected: bool, now: Instant) -> bool {
        self.rejected = rejected;
        self.checked_at = Some(now);
        if rejected
            && self
                .alarmed_at
                .is_none_or(|at| now.saturating_duration_since(at) >= PAT_RECHECK)
        {
            self.alarmed_at = Some(now);
            tracing::error!("Figma rejects FIGMA_TOKEN, the creator's personal access token: it is wrong, revoked or expired (personal access tokens last 90 days at most). Create a new one at https://www.figma.com/developers/api#access-tokens; until then every caller gets 503");
        }
        rejected
    }
}

impl Paywall {
    /// Whether Figma refuses the creator's access token: known from a 401
    /// or 403 on a user-ID lookup (`known`), or asked of `GET /v1/me` (at
    /// most once a minute) when a plugin payment token is refused, since
    /// Figma's 401 does not say which token it refused.
    pub(crate) async fn access_token_rejected(&self, known: bool) -> bool {
        let check = &self.inner.pat_check;
        let pending = {
            let mut state = check.lock();
            let now = self.inner.clock.now();
            if known {
                return state.settle(true, now);
            }
            let fresh = state
                .checked_at
                .is_some_and(|at| now.saturating_duration_since(at) < PAT_RECHECK);
            if fresh {
                return state.rejected;
            }
            match &state.pending {
                Some(pending) => pending.clone(),
                None => {
                    let client = self.inner.client.clone();
                    let pending = async move {
                        matches!(
                            client.verify_credentials().await,
                            Err(Error::Unauthorized { .. })
                        )
                    }
                    .boxed()
                    .shared();
                    state.pending = Some(pending.clone());
                    pending
                }
            }
        };
        let rejected = pending.clone().await;
        let mut state = check.lock();
        if state.pending.as_ref().is_some_and(|p| p.ptr_eq(&pending)) {
            state.pending = None;
            state.settle(rejected, self.inner.clock.now())
        } else {
            // Another check sharing this call settled it already.
            rejected
        }
    }
}
