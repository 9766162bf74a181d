//! The plugin side of Figma, over HTTP, for tests of plugin code:
//! `POST /plugin/payment-token` (a new token, as
//! `figma.payments.getPluginPaymentTokenAsync()` gives one) and `POST
//! /plugin/checkout` (a purchase, as a completed
//! `figma.payments.initiateCheckoutAsync()` makes one).

use std::sync::Arc;

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{Shared, TOKEN_LIFETIME};
use crate::{PaymentStatus, Resource, UserId};

/// Whose token, or whose purchase: `?user_id=…&plugin_id=…`.
#[derive(Deserialize)]
pub(super) struct PluginUser {
    user_id: String,
    plugin_id: String,
}

impl PluginUser {
    fn parse(&self) -> Result<(UserId, Resource), (StatusCode, String)> {
        let bad = |e: crate::InvalidId| (StatusCode::BAD_REQUEST, e.to_string());
        Ok((
            UserId::new(&self.user_id).map_err(bad)?,
            Resource::plugin(&self.plugin_id).map_err(bad)?,
        ))
    }
}

/// A new plugin payment token for the user of the plugin, as text.
pub(super) async fn payment_token(
    State(shared): State<Arc<Shared>>,
    Query(who): Query<PluginUser>,
) -> Response {
    match who.parse() {
        Ok((user, plugin)) => shared
            .issue_token(&user, &plugin, TOKEN_LIFETIME)
            .expose_secret()
            .to_owned()
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// The user buys the plugin.
pub(super) async fn checkout(
    State(shared): State<Arc<Shared>>,
    Query(who): Query<PluginUser>,
) -> Response {
    match who.parse() {
        Ok((user, plugin)) => {
            shared.set_status(&user, &plugin, PaymentStatus::Paid);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}
