#![doc = include_str!("docs.md")]
#![warn(missing_docs, rust_2018_idioms)]
#![deny(unsafe_code, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The core: private modules, their types flat at the root. See
// ARCHITECTURE.md for the request's path through them and who may import
// whom (require_paid -> paywall -> client -> admission -> tier -> the vocabulary).
mod admission;
mod caller;
mod client;
mod clock;
pub mod error;
mod id;
#[cfg(feature = "metrics")]
mod metrics;
mod payment;
mod paywall;
mod refusal;
mod require_paid;
mod secret;
mod stats;
mod tier;

// Concepts with several types of their own, as namespaces.
pub mod identity;

// Feature modules, as namespaces named after their feature.
#[cfg(feature = "login")]
#[cfg_attr(docsrs, doc(cfg(feature = "login")))]
pub mod login;
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use tier::redis;

pub(crate) use caller::ClientKey;
pub use client::{FigmaUser, PaymentsClient, PaymentsClientBuilder};
pub use error::{ConfigError, Error};
pub use id::{InvalidId, Resource, ResourceId, ResourceType, UserId};
pub use payment::{PaymentInformation, PaymentStatus, PurchaseDate};
pub use paywall::{Lookup, Paywall, PaywallBuilder};
pub use refusal::{Refusal, RefusalReason};
pub use require_paid::{
    is_cors_preflight, AccessVia, MissingPaywall, PaidAccess, RequirePaid, RequirePaidFuture,
    RequirePaidLayer,
};
pub use secret::{AccessToken, InvalidToken, PluginPaymentToken};
pub use stats::PaywallStats;

/// The README, BENCHMARKS.md and the guide in `docs/`: each of their Rust examples runs
/// as a doctest (`tests/docs.rs` checks the other code blocks).
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../BENCHMARKS.md")]
    struct Benchmarks;
    #[doc = include_str!("../docs/benchmarks-history.md")]
    struct BenchmarksHistory;
    #[doc = include_str!("../docs/budget.md")]
    struct Budget;
    #[doc = include_str!("../docs/examples.md")]
    struct Examples;
    #[doc = include_str!("../docs/gateway.md")]
    struct Gateway;
    #[doc = include_str!("../docs/operations.md")]
    struct Operations;
    #[doc = include_str!("../docs/plugin.md")]
    struct Plugin;
    #[doc = include_str!("../docs/replicas.md")]
    struct Replicas;
    #[doc = include_str!("../docs/security.md")]
    struct Security;
}
