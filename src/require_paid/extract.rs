//! axum extractors for what the gate put on the request: [`PaidAccess`],
//! and [`PaymentInformation`] read from it (both also as an `Option`).

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use http::{request::Parts, StatusCode};

use crate::{PaidAccess, PaymentInformation};

/// The rejection of the [`PaymentInformation`] and [`PaidAccess`]
/// extractors: the route has no [`RequirePaid`](crate::RequirePaid) layer in
/// front of it (or, for `PaymentInformation`, the layer failed open).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("{0}")]
pub struct MissingPaywall(&'static str);

impl IntoResponse for MissingPaywall {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PaymentInformation {
    type Rejection = MissingPaywall;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        answer(parts).ok_or(MissingPaywall(
            "no PaymentInformation on this request: add a RequirePaid layer in front of this route (for example `.route_layer(RequirePaid::plugin(\"...\"))`); with fail-open, requests let through while Figma was down carry none",
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PaidAccess {
    type Rejection = MissingPaywall;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or(MissingPaywall(
            "no PaidAccess on this request: add a RequirePaid layer in front of this route (for example `.route_layer(RequirePaid::plugin(\"...\"))`)",
        ))
    }
}

/// `Option<PaymentInformation>`: `None` where the gate let a request through
/// without an answer from Figma (fail-open), or where there is no gate.
impl<S: Send + Sync> OptionalFromRequestParts<S> for PaymentInformation {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(answer(parts))
    }
}

/// Figma's answer the gate put on the request.
fn answer(parts: &Parts) -> Option<PaymentInformation> {
    parts.extensions.get::<PaymentInformation>().cloned()
}

/// `Option<PaidAccess>`: `None` where there is no gate.
impl<S: Send + Sync> OptionalFromRequestParts<S> for PaidAccess {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
