//! `GET /v1/me`, asked for everything that needs to know whether Figma
//! answers and whether it takes the creator's access token (the circuit
//! breaker's confirmation, the paywall's check of `FIGMA_TOKEN`).
//!
//! One call at a time, run in its own task so that a caller who goes away
//! does not cancel it for the others, shared by everyone who waits for
//! it; its verdict is reused while young enough for the asker. No lock is
//! held across the call.

use std::{
    fmt,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::{
    future::{BoxFuture, Shared},
    FutureExt,
};

use super::PaymentsClient;
use crate::Error;

/// What `GET /v1/me` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// Figma answered and took the access token (or answered 429 or
    /// another 4xx: it is up).
    Answers,
    /// Figma refused the access token (401 or 403).
    RejectsToken,
    /// Figma did not answer (5xx, timeout, unreachable, unreadable).
    Fails,
}

impl Health {
    fn of<T>(result: &Result<T, Error>) -> Self {
        match result {
            Ok(_) => Self::Answers,
            Err(Error::Unauthorized { .. }) => Self::RejectsToken,
            Err(e) if e.is_outage() => Self::Fails,
            Err(_) => Self::Answers,
        }
    }
}

type Pending = Shared<BoxFuture<'static, Health>>;

#[derive(Default)]
pub(super) struct HealthCheck(Mutex<State>);

#[derive(Default)]
struct State {
    last: Option<(Instant, Health)>,
    /// The `GET /v1/me` under way.
    pending: Option<Pending>,
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("last", &self.lock().last)
            .finish_non_exhaustive()
    }
}

impl HealthCheck {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PaymentsClient {
    /// What `GET /v1/me` says: a verdict younger than `max_age` if there is
    /// one, else the call under way, else a new call.
    pub(crate) async fn health(&self, max_age: Duration) -> Health {
        let check = &self.inner.health;
        let pending = {
            let mut state = check.lock();
            let now = self.inner.clock.now();
            if let Some((at, health)) = state.last {
                if now.saturating_duration_since(at) < max_age {
                    return health;
                }
            }
            match &state.pending {
                Some(pending) => pending.clone(),
                None => {
                    let client = self.clone();
                    let task =
                        tokio::spawn(async move { Health::of(&client.verify_credentials().await) });
                    let pending = async move { task.await.unwrap_or(Health::Fails) }
                        .boxed()
                        .shared();
                    state.pending = Some(pending.clone());
                    pending
                }
            }
        };
        let health = pending.clone().await;
        let mut state = check.lock();
        if state.pending.as_ref().is_some_and(|p| p.ptr_eq(&pending)) {
            state.pending = None;
            state.last = Some((self.inner.clock.now(), health));
        }
        health
    }

    /// Records what is known without asking: a 401 or 403 on a user-ID
    /// lookup can only be about the access token.
    pub(crate) fn health_known(&self, health: Health) {
        self.inner.health.lock().last = Some((self.inner.clock.now(), health));
    }
}
