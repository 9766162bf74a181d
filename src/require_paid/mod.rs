//! The [`RequirePaid`] layer: lets buyers through, refuses everyone else.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use figma_paywall::{PaymentInformation, RequirePaid};
//!
//! async fn generate(payment: PaymentInformation) -> String {
//!     format!("hello {}, you are {}", payment.user_id, payment.payment_status)
//! }
//!
//! // FIGMA_TOKEN and FIGMA_API_URL from the environment.
//! let app: Router = Router::new()
//!     .route("/generate", post(generate))
//!     .layer(RequirePaid::plugin("1122334455"));
//! ```

mod future;
mod gate;
pub mod identity;
mod layer;
mod refusal;
mod service;

pub(crate) use self::gate::check;
pub(crate) use self::refusal::{RefusalCounters, RefusalHandler};
pub use self::{
    future::ResponseFuture,
    identity::{DefaultIdentity, FigmaUserId, Identity, IdentityError, IdentitySource},
    layer::RequirePaidLayer,
    refusal::{Refusal, RefusalReason},
    service::RequirePaid,
};

/// How a request got through the gate; a request extension next to
/// [`PaymentInformation`](crate::PaymentInformation), and an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PaidAccess {
    /// Why the caller was let through.
    pub via: AccessVia,
    /// The answer was past its lifetime, served because Figma could not be
    /// asked (see [`PaywallBuilder::stale_grace`](crate::PaywallBuilder::stale_grace)).
    pub stale: bool,
    /// The answer came from the cache.
    pub from_cache: bool,
}

/// Why a caller was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessVia {
    /// Figma says `PAID`.
    Paid,
    /// Figma says `TRIAL`, and the gate lets trials through.
    Trial,
    /// The user is on the gate's bypass list (the resource's creators, whom
    /// Figma answers `UNPAID`).
    Bypass,
    /// Figma could not answer and the gate fails open: nobody checked that
    /// this caller paid, and no [`PaymentInformation`](crate::PaymentInformation) is on the request.
    FailOpen,
}
