#![doc = include_str!("../README.md")]
#![warn(missing_docs, rust_2018_idioms)]
#![deny(unsafe_code, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod client;
#[cfg(feature = "mock")]
pub mod mock;
mod error;
pub mod id;
pub mod payment;
pub mod secret;

pub use client::{
    FigmaUser, PaymentsClient, PaymentsClientBuilder, ACCESS_TOKEN_HEADER, DEFAULT_BASE_URL,
};
#[doc(hidden)]
pub use client::parse_payments_answer;
pub use error::{ConfigError, Error, RateLimit, ThrottleReason};
pub use id::{InvalidId, Resource, ResourceId, ResourceType, UserId, MAX_ID_LEN};
pub use payment::{PaymentInformation, PaymentStatus};
pub use secret::{AccessToken, InvalidToken, PluginPaymentToken};
