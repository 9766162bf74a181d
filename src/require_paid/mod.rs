//! The [`RequirePaid`] layer: lets buyers through, refuses everyone else.
//!
//! A request's path, one file a step: `service.rs` reads the caller's
//! identity (`identity.rs`) and starts the check; `gate.rs` asks the
//! [`Paywall`](crate::Paywall), checks the answer against the gated
//! resources and decides; `failure.rs` says what a caller is told when the
//! lookup failed; `future.rs` runs the check, then the inner service.
//! `access.rs` and `extract.rs` are what a handler gets; `layer.rs` holds
//! the settings.
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

mod access;
mod caller;
mod development;
mod extract;
mod failure;
mod future;
mod gate;
mod identity;
mod layer;
mod meter;
mod metered;
mod service;

#[cfg(test)]
mod tests;

pub use self::{
    access::{AccessVia, PaidAccess},
    caller::{ClientKeySource, ForwardedFor, PeerAddr},
    extract::MissingPaywall,
    future::RequirePaidFuture,
    identity::{
        DefaultIdentity, Identity, IdentityError, IdentitySource, Or, PaymentTokenHeader,
        PaymentTokenQuery, UserIdExtension, DEVELOPMENT_STATUS_HEADER, PAYMENT_TOKEN_HEADER,
        PAYMENT_TOKEN_QUERY,
    },
    layer::RequirePaidLayer,
    service::{is_cors_preflight, RequirePaid},
};
