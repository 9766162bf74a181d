//! Plugin payment tokens Figma refused, remembered for a while, so that
//! replaying a forged or expired token costs Figma one lookup, not one a
//! request.
//!
//! A token is remembered when Figma answers 400, or 401 while the
//! creator's access token is known good (`GET /v1/me` says so; Figma's 401
//! does not say whose token it refused). Tokens are short-lived, so a
//! refusal is remembered for 10 minutes, for at most 100,000 tokens.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::sync::Cache;

use super::{
    key::{CacheKey, KeyHasher},
    Inner,
};
use crate::{client::Question, Error};

/// How long a refusal is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(10 * 60);

/// The most refusals remembered; least used go first.
const MAX_REMEMBERED: u64 = 100_000;

/// Refusals by token key, with when Figma gave them.
pub(super) struct Refused(Cache<CacheKey, (Arc<Error>, Instant), KeyHasher>);

impl Default for Refused {
    fn default() -> Self {
        Self(
            Cache::builder()
                .max_capacity(MAX_REMEMBERED)
                // Bounds memory in real time; `get` applies the clock.
                .time_to_live(REMEMBER_FOR)
                .build_with_hasher(KeyHasher::default()),
        )
    }
}

impl Refused {
    pub(super) fn invalidate_all(&self) {
        self.0.invalidate_all();
    }

    pub(super) fn invalidate(&self, key: &CacheKey) {
        self.0.invalidate(key);
    }

    /// Whether Figma refused this token lately (whatever the clock says).
    pub(super) fn contains(&self, key: &CacheKey) -> bool {
        self.0.contains_key(key)
    }
}

impl Inner {
    /// Figma's refusal of this token, if it refused it in the last 10
    /// minutes.
    pub(super) fn remembered_refusal(&self, key: &CacheKey) -> Option<Arc<Error>> {
        let (error, at) = self.refused.0.get(key)?;
        (self.clock.now().saturating_duration_since(at) < REMEMBER_FOR).then(|| {
            self.stats.refusals_remembered.add();
            error
        })
    }

    /// Remembers `error` if it is Figma refusing the caller's token.
    pub(super) async fn remember_refusal(
        &self,
        key: CacheKey,
        question: &Question,
        error: &Arc<Error>,
    ) {
        if !matches!(question, Question::Token(_)) {
            return;
        }
        let refused = match **error {
            Error::InvalidRequest { .. } => true,
            Error::Unauthorized { .. } => !self.access_token_rejected(false).await,
            _ => false,
        };
        if refused {
            let at = self.clock.now();
            self.refused.0.insert(key, (error.clone(), at));
        }
    }
}
