//! Who is calling, and which client a caller counts as.
//!
//! # Example
//!
//! ```
//! use figma_paywall::identity::{Identity, IdentityError};
//! use figma_paywall::{AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource, UserId};
//! use http::request::Parts;
//!
//! // Trust a user ID that an authenticating proxy in front of the app sets.
//! // The proxy MUST remove this header from what clients send: otherwise
//! // anybody can claim to be any buyer.
//! let from_proxy = |parts: &Parts| -> Result<Option<Identity>, IdentityError> {
//!     match parts.headers.get("x-authenticated-figma-user") {
//!         None => Ok(None),
//!         Some(value) => {
//!             let id = value.to_str().map_err(|_| IdentityError::invalid("unreadable user ID"))?;
//!             let user = UserId::new(id).map_err(|e| IdentityError::invalid(e.to_string()))?;
//!             Ok(Some(Identity::User(user)))
//!         }
//!     }
//! };
//! # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
//! let layer = RequirePaidLayer::new(&paywall, Resource::plugin("1")?).identity(from_proxy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Who:** by default ([`DefaultIdentity`]) the gate reads, in this order,
//! the header `X-Figma-Payment-Token`, the query parameter
//! `plugin_payment_token`, and a [`UserId`](crate::UserId) request
//! extension that the app's own authentication put there (the `login`
//! feature's layer does). A user ID is never read from what the client
//! sends, since anyone can claim any ID. Another [`IdentitySource`] goes in
//! with [`RequirePaidLayer::identity`](crate::RequirePaidLayer::identity);
//! any closure from the request's parts is one, and [`IdentitySource::or`]
//! chains them.
//!
//! **Which client:** the fair share of Figma's budget tells clients apart
//! by a [`ClientKey`], which a [`ClientKeySource`] reads from each request:
//! by default [`PeerAddr`], the connection's address; behind a load
//! balancer, [`ForwardedFor`], the address a trusted proxy appended
//! ([`RequirePaidLayer::client_key`](crate::RequirePaidLayer::client_key)).

pub use crate::{
    caller::ClientKey,
    require_paid::{
        ClientKeySource, DefaultIdentity, ForwardedFor, Identity, IdentityError, IdentitySource,
        Or, PaymentTokenHeader, PaymentTokenQuery, PeerAddr, UserIdExtension,
        DEVELOPMENT_STATUS_HEADER, PAYMENT_TOKEN_HEADER, PAYMENT_TOKEN_QUERY,
    },
};
