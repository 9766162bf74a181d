//! Who is calling: where the gate finds a plugin payment token or a user ID.
//!
//! By default ([`DefaultIdentity`]) the gate reads, in this order, the header
//! `X-Figma-Payment-Token`, the query parameter `plugin_payment_token`, and a
//! [`UserId`] request extension that the app's own authentication put there
//! (the `login` feature's layer does). A user ID is never read from what the
//! client sends, since anyone can claim any ID:
//!
//! ```
//! use figma_paywall::UserId;
//!
//! let mut req = http::Request::new(());
//! req.extensions_mut().insert(UserId::new("1234567890")?);
//! # Ok::<(), figma_paywall::InvalidId>(())
//! ```
//!

use std::fmt;

use http::{request::Parts, HeaderName, StatusCode};

use crate::{PluginPaymentToken, UserId};

/// The header a plugin sends its payment token in, `X-Figma-Payment-Token`.
pub const PAYMENT_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-figma-payment-token");

/// The header figma-paywall-plugin sends, only while the plugin runs in
/// development, with the payment status the plugin chose there
/// (`figma.payments.setPaymentStatusInDevelopment`):
/// `X-Figma-Payment-Status-In-Development`. A gate honours it only when its
/// client is in
/// [development mode](crate::PaymentsClientBuilder::development_mode), and
/// refuses it anywhere else (400 `development_only`).
pub const DEVELOPMENT_STATUS_HEADER: HeaderName =
    HeaderName::from_static("x-figma-payment-status-in-development");

/// The query parameter a plugin may send its payment token in.
pub const PAYMENT_TOKEN_QUERY: &str = "plugin_payment_token";

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Identity {
    /// A plugin payment token from `figma.payments.getPluginPaymentTokenAsync()`.
    PaymentToken(PluginPaymentToken),
    /// A Figma user ID the app established itself (OAuth, its own session).
    User(UserId),
}

/// Why a request's identity could not be read. Never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError {
    status: StatusCode,
    message: String,
}

impl IdentityError {
    /// The request is malformed (answered 400): several tokens, a token in
    /// two places, a repeated parameter.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The identity is not acceptable (answered 401).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    /// 400 or 401.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What is wrong, in words for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IdentityError {}

/// Where a gate finds who is calling.
///
/// `Ok(None)` means "no identity here" (the gate answers 401); an error is a
/// malformed or unacceptable one. Closures `Fn(&Parts) -> Result<Option<Identity>, IdentityError>`
/// implement it; so do the ready-made sources of this module, which combine
/// with [`or`](IdentitySource::or).
pub trait IdentitySource: Clone + Send + Sync + 'static {
    /// Reads the identity from the request's parts.
    fn identify(&self, parts: &Parts) -> Result<Option<Identity>, IdentityError>;

    /// Tries `self`, then `other` when `self` finds nothing.
    fn or<O: IdentitySource>(self, other: O) -> Or<Self, O>
    where
        Self: Sized,
    {
        Or(self, other)
    }
}

impl<F> IdentitySource for F
where
    F: Fn(&Parts) -> Result<Option<Identity>, IdentityError> + Clone + Send + Sync + 'static,
{
    fn identify(&self, parts: &Parts) -> Result<Option<Identity>, IdentityError> {
        self(parts)
    }
}

/// Tries one source, then another; see [`IdentitySource::or`].
#[derive(Debug, Clone)]
pub struct Or<A, B>(A, B);

impl<A: IdentitySource, B: IdentitySource> IdentitySource for Or<A, B> {
    fn identify(&self, parts: &Parts) -> Result<Option<Identity>, IdentityError> {
        match self.0.identify(parts)? {
            Some(identity) => Ok(Some(identity)),
            None => self.1.identify(parts),
        }
    }
}

/// The plugin payment token in the `X-Figma-Payment-Token` header.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentTokenHeader;

impl IdentitySource for PaymentTokenHeader {
    fn identify(&self, parts: &Parts) -> Result<Option<Identity>, IdentityError> {
        let mut values = parts.headers.get_all(&PAYMENT_TOKEN_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(IdentityError::malformed(
                "send one X-Figma-Payment-Token header, not several",
            ));
        }
        let value = value.to_str().map_err(|_| {
            IdentityError::malformed("the X-Figma-Payment-Token header is not visible ASCII")
        })?;
        token_identity(value).map(Some)
    }
}

/// The plugin payment token in the `plugin_payment_token` query parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentTokenQuery;

impl IdentitySource for PaymentTokenQuery {
    fn identify(&self, parts: &Parts) -> Result<Option<Identity>, IdentityError> {
        let Some(query) = parts.uri.query() else {
            return Ok(None);
        };
        let mut found = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == PAYMENT_TOKEN_QUERY {
                if found.is_some() {
                    return Err(IdentityError::malformed(
                        "send the plugin_payment_token query parameter once, not several times",
                    ));
                }
                found = Some(value);
            }
        }
        found.map(|value| token_identity(&value)).transpose()
    }
}

/// The [`UserId`] request extension set by the app's authentication.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserIdExtension;

impl IdentitySource for UserIdExtension {
    fn identify(&self, parts: &Parts) -> Result<Option<Identity>, IdentityError> {
        Ok(parts
            .extensions
            .get::<UserId>()
            .cloned()
            .map(Identity::User))
    }
}

/// The default: the `X-Figma-Payment-Token` header, else the
/// `plugin_payment_token` query parameter, else the [`UserId`]
/// extension. A token in both the header and the query is refused (400), so
/// that no proxy or cache can be confused about which one counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultIdentity;

impl IdentitySource for DefaultIdentity {
    fn identify(&self, parts: &Parts) -> Result<Option<Identity>, IdentityError> {
        let header = PaymentTokenHeader.identify(parts)?;
        let query = PaymentTokenQuery.identify(parts)?;
        match (header, query) {
            (Some(_), Some(_)) => Err(IdentityError::malformed(
                "send the plugin payment token in the X-Figma-Payment-Token header or the plugin_payment_token query parameter, not both",
            )),
            (Some(identity), None) | (None, Some(identity)) => Ok(Some(identity)),
            (None, None) => UserIdExtension.identify(parts),
        }
    }
}

fn token_identity(value: &str) -> Result<Identity, IdentityError> {
    PluginPaymentToken::new(value)
        .map(Identity::PaymentToken)
        .map_err(|e| IdentityError::malformed(e.to_string()))
}

/// How the caller identified itself.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    Token,
    User,
}

impl Mode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::User => "user",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "x-figma-payment-token";

    #[test]
    fn the_header_is_the_one_plugins_send() {
        assert_eq!(PAYMENT_TOKEN_HEADER, HEADER);
    }

    fn parts(uri: &str, headers: &[(&str, &[u8])], user: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, http::HeaderValue::from_bytes(value).unwrap());
        }
        let mut req = builder.body(()).unwrap();
        if let Some(user) = user {
            req.extensions_mut().insert(UserId::new(user).unwrap());
        }
        req.into_parts().0
    }

    fn token(t: &str) -> Option<Identity> {
        Some(Identity::PaymentToken(PluginPaymentToken::new(t).unwrap()))
    }

    #[test]
    fn default_order_is_header_query_extension() {
        let id = DefaultIdentity;
        let hdr: &[(&str, &[u8])] = &[(HEADER, b"ppt_h")];
        assert_eq!(
            id.identify(&parts("/", hdr, Some("5"))).unwrap(),
            token("ppt_h")
        );
        assert_eq!(
            id.identify(&parts("/?plugin_payment_token=ppt_q", &[], Some("5")))
                .unwrap(),
            token("ppt_q")
        );
        assert_eq!(
            id.identify(&parts("/", &[], Some("5"))).unwrap(),
            Some(Identity::User(UserId::new("5").unwrap()))
        );
        assert_eq!(id.identify(&parts("/", &[], None)).unwrap(), None);
    }

    #[test]
    fn user_ids_never_come_from_the_client() {
        let id = DefaultIdentity;
        let p = parts("/?user_id=5", &[("x-figma-user-id", b"5")], None);
        assert_eq!(id.identify(&p).unwrap(), None);
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        let p = parts("/?plugin_payment_token=a%26b%3Dc", &[], None);
        assert_eq!(DefaultIdentity.identify(&p).unwrap(), token("a&b=c"));
    }

    #[test]
    fn ambiguous_or_malformed_identities_are_400() {
        let cases: Vec<Parts> = vec![
            parts("/?plugin_payment_token=a", &[(HEADER, b"b")], None),
            parts("/?plugin_payment_token=a&plugin_payment_token=b", &[], None),
            parts("/?plugin_payment_token=", &[], None),
            parts("/?plugin_payment_token=a%20b", &[], None),
            parts("/?plugin_payment_token=%FF%FE", &[], None),
            parts("/?plugin_payment_token=%EF%BC%91", &[], None),
            parts("/", &[(HEADER, b"t\xffx")], None),
            parts("/", &[(HEADER, b"a b")], None),
            parts("/", &[(HEADER, &[b'x'; 5000])], None),
            {
                let mut p = parts("/", &[(HEADER, b"a")], None);
                p.headers.append(PAYMENT_TOKEN_HEADER, "b".parse().unwrap());
                p
            },
        ];
        for p in cases {
            let err = DefaultIdentity.identify(&p).unwrap_err();
            assert_eq!(
                err.status(),
                StatusCode::BAD_REQUEST,
                "{:?} -> {err}",
                p.uri
            );
        }
    }

    #[test]
    fn sources_combine_and_closures_are_sources() {
        let fixed = |_: &Parts| Ok(Some(Identity::User(UserId::new("7").unwrap())));
        let src = PaymentTokenHeader.or(fixed);
        assert_eq!(
            src.identify(&parts("/", &[], None)).unwrap(),
            Some(Identity::User(UserId::new("7").unwrap()))
        );
        let hdr: &[(&str, &[u8])] = &[(HEADER, b"ppt_h")];
        assert_eq!(
            src.identify(&parts("/", hdr, None)).unwrap(),
            token("ppt_h")
        );
    }
}
