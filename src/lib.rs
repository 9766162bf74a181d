#![doc = include_str!("../README.md")]
#![warn(missing_docs, rust_2018_idioms)]
#![deny(unsafe_code, unreachable_pub)]

mod client;
mod error;
mod extract;
pub mod id;
#[cfg(feature = "login")]
pub mod login;
#[cfg(feature = "mock")]
pub mod mock;
pub mod payment;
mod paywall;
#[cfg(feature = "redis")]
pub mod redis_tier;
pub mod require_paid;
pub mod secret;

#[doc(hidden)]
pub use client::parse_payments_answer;
pub use client::{
    FigmaUser, PaymentsClient, PaymentsClientBuilder, ACCESS_TOKEN_HEADER, DEFAULT_BASE_URL,
};
pub use error::{ConfigError, Error, RateLimit, ThrottleReason};
pub use extract::MissingPaywall;
pub use id::{InvalidId, Resource, ResourceId, ResourceType, UserId, MAX_ID_LEN};
pub use payment::{PaymentInformation, PaymentStatus};
pub use paywall::{Lookup, Paywall, PaywallBuilder, PaywallStats};
pub use require_paid::{
    AccessVia, FigmaUserId, Identity, IdentityError, IdentitySource, PaidAccess, Refusal,
    RefusalReason, RequirePaid, RequirePaidLayer,
};
pub use secret::{AccessToken, InvalidToken, PluginPaymentToken};
