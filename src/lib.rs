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
pub mod credits;
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

/// The guide: the pages of the repository's `docs/` folder, so that a
/// reader on docs.rs never needs the repository. Each page's Rust examples
/// run as doctests.
pub mod guide {
    #[doc = include_str!("../docs/plugin.md")]
    pub mod plugin {}
    #[doc = include_str!("../docs/budget.md")]
    pub mod budget {}
    #[doc = include_str!("../docs/credits.md")]
    pub mod credits {}
    #[doc = include_str!("../docs/replicas.md")]
    pub mod replicas {}
    #[doc = include_str!("../docs/gateway.md")]
    pub mod gateway {}
    #[doc = include_str!("../docs/security.md")]
    pub mod security {}
    #[doc = include_str!("../docs/operations.md")]
    pub mod operations {}
    #[doc = include_str!("../docs/examples.md")]
    pub mod examples {}
}

/// The README, BENCHMARKS.md and its history: their Rust examples run as
/// doctests too (`gateway/tests/docs.rs` checks the other code blocks).
#[cfg(doctest)]
mod pages {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../BENCHMARKS.md")]
    struct Benchmarks;
    #[doc = include_str!("../docs/benchmarks-history.md")]
    struct BenchmarksHistory;
}
