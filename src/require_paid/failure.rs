//! What a caller is told when its lookup fails: the mapping from a lookup
//! [`Error`] to a [`Refusal`], and the level each is logged at (the
//! caller's mistakes at `debug`, Figma's and the configuration's at `warn`
//! and `error`).

use http::StatusCode;

use super::identity::Mode;
use crate::{error::ThrottleReason, Error, Paywall, Refusal, RefusalReason};

/// Maps a lookup error to what the caller is told. Only the creator's
/// access token needs asking about (`GET /v1/me`, through the paywall, at
/// most once a minute): Figma's 401 does not say whose token it refused.
pub(super) async fn refusal_for(paywall: &Paywall, error: &Error, mode: Mode) -> Refusal {
    use RefusalReason as R;
    let unavailable = |status, message: &str, retry_after| {
        let mut r = Refusal::new(status, R::FigmaUnavailable, message);
        r.retry_after = Some(retry_after);
        r
    };
    let retry_soon = std::time::Duration::from_secs(5);
    match error {
        Error::InvalidId(e) => {
            Refusal::new(StatusCode::UNAUTHORIZED, R::InvalidIdentity, e.to_string())
        }
        Error::InvalidToken(e) => {
            Refusal::new(StatusCode::BAD_REQUEST, R::InvalidIdentity, e.to_string())
        }
        Error::InvalidRequest { .. } | Error::Unauthorized { .. }
            if matches!(mode, Mode::Token)
                && !(matches!(error, Error::Unauthorized { .. })
                    && paywall.access_token_rejected(false).await) =>
        {
            tracing::debug!(error = %error, "refused: Figma refused the plugin payment token");
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                R::TokenRejected,
                "Figma refused this plugin payment token (expired or forged); get a fresh one with figma.payments.getPluginPaymentTokenAsync()",
            )
        }
        Error::Unauthorized { .. } => {
            // In user mode only the access token can be refused; in token
            // mode, GET /v1/me just said so.
            paywall.access_token_rejected(true).await;
            let mut r = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                R::AccessTokenRejected,
                "payment status cannot be checked right now",
            );
            r.retry_after = Some(std::time::Duration::from_secs(60));
            r
        }
        Error::Throttled {
            reason: ThrottleReason::ClientShare,
            retry_after,
        } => {
            tracing::debug!(error = %error, "refused: the client has used its share of cold lookups");
            let mut r = Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                R::TooManyLookups,
                "too many new lookups from this client; try again later",
            );
            r.retry_after = Some(*retry_after);
            r
        }
        Error::Throttled {
            reason: ThrottleReason::BudgetExhausted | ThrottleReason::QueueFull,
            ..
        } => {
            let client = paywall.client();
            let (per_minute, _) = client.rate_limit();
            if let Some((now, configured)) = client.budget_exhausted() {
                tracing::warn!(
                    budget_per_minute = now,
                    configured_per_minute = configured,
                    "the budget of {now} payment lookups a minute at Figma is spent: callers get 503 until a slot frees; set FIGMA_RATE_LIMIT higher if your seat allows (10 to 150)"
                );
            }
            let mut r = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                R::RateLimited,
                format!(
                    "payment status cannot be checked right now: this app asks Figma at most {per_minute} times a minute (FIGMA_RATE_LIMIT) and that budget is spent; try again later"
                ),
            );
            r.retry_after = Some(error.retry_after().unwrap_or(retry_soon));
            r
        }
        Error::Throttled {
            reason: ThrottleReason::FigmaFailing,
            retry_after,
        } => {
            tracing::debug!(error = %error, "refused: Figma is failing and no stale answer stands in");
            unavailable(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment status cannot be checked right now: Figma is failing; try again later",
                *retry_after,
            )
        }
        Error::RateLimited(_) | Error::Throttled { .. } => {
            tracing::warn!(error = %error, "Figma is rate-limiting this token's lookups; refusing");
            let mut r = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                R::RateLimited,
                "payment status cannot be checked right now: Figma is rate-limiting this app's lookups; try again later",
            );
            r.retry_after = Some(error.retry_after().unwrap_or(retry_soon));
            r
        }
        Error::MalformedResponse { .. } | Error::InvalidRequest { .. } => {
            tracing::error!(error = %error, "Figma's answer could not be used");
            unavailable(
                StatusCode::BAD_GATEWAY,
                "Figma's answer about payment could not be read; try again later",
                retry_soon,
            )
        }
        _ => {
            tracing::warn!(error = %error, "Figma could not answer");
            unavailable(
                StatusCode::SERVICE_UNAVAILABLE,
                "payment status cannot be checked right now; try again later",
                retry_soon,
            )
        }
    }
}
