//! What a refused caller gets: [`Refusal`] and its [`RefusalReason`],
//! answered in Figma's own error envelope unless the layer was given another
//! response.
//!
//! # Example
//!
//! ```
//! use axum::response::IntoResponse;
//! use figma_paywall::{Refusal, RefusalReason};
//!
//! # fn show(refusal: Refusal) {
//! // In a `on_refusal` closure, or wherever a refusal is at hand:
//! if refusal.reason == RefusalReason::NotPaid {
//!     let response = refusal.into_response(); // 402 in Figma's envelope
//!     // Every refusal of a gate carries its reason as a response extension.
//!     assert_eq!(response.extensions().get(), Some(&RefusalReason::NotPaid));
//! }
//! # }
//! ```

use std::{fmt, time::Duration};

use axum::{
    response::{IntoResponse, Response},
    Json,
};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use crate::{error::ceil_secs, PaymentStatus, ResourceId};

/// Why a gate refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// No plugin payment token and no user ID (401).
    NoIdentity,
    /// The identity was malformed (400), or not acceptable (401).
    InvalidIdentity,
    /// Figma refused the caller's plugin payment token (401).
    TokenRejected,
    /// The token was issued for another plugin or widget (401).
    WrongResource,
    /// The caller has not paid (402).
    NotPaid,
    /// Figma's answer was about another user or resource than asked (502).
    AnswerMismatch,
    /// Figma refused the creator's access token (503): `FIGMA_TOKEN` is wrong
    /// or expired.
    AccessTokenRejected,
    /// Figma is rate-limiting, or the upstream budget is spent (503).
    RateLimited,
    /// This client asked for too many new lookups: more than its share of
    /// the budget (429).
    TooManyLookups,
    /// Figma failed, timed out or could not be reached (502/503).
    FigmaUnavailable,
    /// A buyer spent an allowance of the gate's credits (429, with
    /// `Retry-After` until it renews).
    CreditsExhausted,
    /// The credits' counts could not be reached (503): nobody is let in
    /// uncounted.
    CreditsUnavailable,
    /// The request carried a payment status chosen in development
    /// ([`DEVELOPMENT_STATUS_HEADER`](crate::identity::DEVELOPMENT_STATUS_HEADER))
    /// and this server is not in
    /// [development mode](crate::PaymentsClientBuilder::development_mode)
    /// (400), or the status was not one (400). Figma was not asked.
    DevelopmentOnly,
}

impl RefusalReason {
    /// Every reason, in the order of their counters.
    pub(crate) const ALL: [Self; 13] = [
        Self::NoIdentity,
        Self::InvalidIdentity,
        Self::TokenRejected,
        Self::WrongResource,
        Self::NotPaid,
        Self::AnswerMismatch,
        Self::AccessTokenRejected,
        Self::RateLimited,
        Self::TooManyLookups,
        Self::FigmaUnavailable,
        Self::CreditsExhausted,
        Self::CreditsUnavailable,
        Self::DevelopmentOnly,
    ];

    /// Its place in [`ALL`](Self::ALL), for counters.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case name, as used in stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoIdentity => "no_identity",
            Self::InvalidIdentity => "invalid_identity",
            Self::TokenRejected => "token_rejected",
            Self::WrongResource => "wrong_resource",
            Self::NotPaid => "not_paid",
            Self::AnswerMismatch => "answer_mismatch",
            Self::AccessTokenRejected => "access_token_rejected",
            Self::RateLimited => "rate_limited",
            Self::TooManyLookups => "too_many_lookups",
            Self::FigmaUnavailable => "figma_unavailable",
            Self::CreditsExhausted => "credits_exhausted",
            Self::CreditsUnavailable => "credits_unavailable",
            Self::DevelopmentOnly => "development_only",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused request: status, reason and the words for the caller.
///
/// Its [`IntoResponse`] writes Figma's error envelope,
/// `{"error": true, "status": 402, "message": "...", "payment_status": "UNPAID", "resource_id": "..."}`,
/// with `Retry-After` on 503s. It never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The HTTP status to answer with.
    pub status: StatusCode,
    /// Why.
    pub reason: RefusalReason,
    /// What happened, for the caller.
    pub message: String,
    /// The caller's payment status, when Figma gave one.
    pub payment_status: Option<PaymentStatus>,
    /// The resource the caller needs to buy, when known.
    pub resource_id: Option<ResourceId>,
    /// When to try again, for 503s and 429s.
    pub retry_after: Option<Duration>,
    /// Headers the answer carries beside the envelope: the credits'
    /// `RateLimit` fields, when an allowance refused.
    pub(crate) headers: Option<Box<HeaderMap>>,
}

impl Refusal {
    pub(crate) fn new(
        status: StatusCode,
        reason: RefusalReason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            payment_status: None,
            resource_id: None,
            retry_after: None,
            headers: None,
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: bool,
    status: u16,
    message: &'a str,
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<&'a ResourceId>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = Envelope {
            error: true,
            status: self.status.as_u16(),
            message: &self.message,
            reason: self.reason.as_str(),
            payment_status: self.payment_status.as_ref().map(PaymentStatus::as_str),
            resource_id: self.resource_id.as_ref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(self.reason);
        if let Some(headers) = self.headers {
            response.headers_mut().extend(*headers);
        }
        if let Some(retry_after) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(ceil_secs(retry_after).max(1)),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_place_in_all() {
        for (i, reason) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
    }

    #[tokio::test]
    async fn the_envelope_carries_status_reason_and_retry_after() {
        let mut refusal = Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RefusalReason::RateLimited,
            "later",
        );
        refusal.retry_after = Some(Duration::from_millis(1500));
        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            response.extensions().get::<RefusalReason>(),
            Some(&RefusalReason::RateLimited)
        );
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": true, "status": 503, "message": "later", "reason": "rate_limited"})
        );
    }
}
