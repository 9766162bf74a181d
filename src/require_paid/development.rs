//! Development mode: the payment status a plugin in development chose
//! (`figma.payments.setPaymentStatusInDevelopment`), honoured only by a
//! gate whose client is in
//! [development mode](crate::PaymentsClientBuilder::development_mode).

use http::{request::Parts, StatusCode};

use super::{Identity, DEVELOPMENT_STATUS_HEADER};
use crate::{
    Lookup, PaymentInformation, PaymentStatus, Paywall, Refusal, RefusalReason, Resource, UserId,
};

/// Whether the request carries a status chosen in development: it takes
/// the full check, never the hit path.
pub(crate) fn asked(parts: &Parts) -> bool {
    parts.headers.contains_key(DEVELOPMENT_STATUS_HEADER)
}

/// A status chosen in development, honoured.
pub(crate) struct Chosen {
    /// Whom a plugin payment token stands for: the mock's creator.
    creator: UserId,
    status: PaymentStatus,
}

/// The status a request in development chose. Refused, without asking
/// Figma, when the paywall is not in development mode, or when the header
/// names no status a plugin can have.
pub(crate) fn status(paywall: &Paywall, parts: &Parts) -> Result<Chosen, Refusal> {
    let Some(creator) = paywall.client().development_user() else {
        tracing::debug!("refused: a status chosen in development, outside development mode");
        return Err(refused(
            "this server takes the payment status from Figma only: X-Figma-Payment-Status-In-Development, which figma-paywall-plugin sends while the plugin runs in development (setPaymentStatusInDevelopment), is honoured by a server in development mode only (`cargo run --example ai_endpoint` or `figma-paywall --demo --development`, on the mock Figma). Point the plugin in development at one of those, or stop calling setPaymentStatusInDevelopment",
        ));
    };
    let mut values = parts.headers.get_all(DEVELOPMENT_STATUS_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(refused(
            "X-Figma-Payment-Status-In-Development was sent more than once",
        ));
    };
    match PaymentStatus::from_name(value.to_str().unwrap_or_default()) {
        status @ (PaymentStatus::Paid | PaymentStatus::Trial | PaymentStatus::Unpaid) => {
            Ok(Chosen {
                creator: creator.clone(),
                status,
            })
        }
        PaymentStatus::NotSupported => Err(refused(
            "X-Figma-Payment-Status-In-Development is NOT_SUPPORTED: Figma could not tell the plugin its payment status; call figma.payments.setPaymentStatusInDevelopment({ type: 'PAID' }) or { type: 'UNPAID' }",
        )),
        _ => Err(refused(
            "X-Figma-Payment-Status-In-Development must be PAID, TRIAL or UNPAID",
        )),
    }
}

/// Development mode's answer about `identity` on `resource`, with
/// the status `chosen`: for the mock's creator when the caller sent a plugin payment
/// token (any: Figma is not asked), for the user when the app named one.
/// Never cached.
pub(crate) fn lookup(
    paywall: &Paywall,
    identity: &Identity,
    chosen: Chosen,
    resource: &Resource,
) -> Lookup {
    let Chosen { creator, status } = chosen;
    let user = match identity {
        Identity::User(user) => user.clone(),
        _ => creator,
    };
    tracing::debug!(%status, user_id = %user, "development mode: the status the plugin chose");
    paywall.development_lookup(PaymentInformation::new(user, resource, status))
}

fn refused(message: &str) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        RefusalReason::DevelopmentOnly,
        message,
    )
}
