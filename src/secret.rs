//! Secrets: the creator's personal access token and callers' plugin payment
//! tokens. Neither ever shows in `Debug`, `Display`, a log line, an error or a
//! response.
//!
//! # Example
//!
//! ```
//! use figma_paywall::{AccessToken, PluginPaymentToken};
//!
//! let pat = AccessToken::new("figd_very-secret")?;
//! assert_eq!(format!("{pat:?}"), "AccessToken(<redacted>)");
//!
//! let token = PluginPaymentToken::new("ppt_abc123")?;
//! assert!(!format!("{token:?}").contains("abc123"));
//!
//! // Spaces, control characters and oversized values are refused.
//! assert!(PluginPaymentToken::new("a b").is_err());
//! # Ok::<(), figma_paywall::InvalidToken>(())
//! ```

use std::fmt;

/// The longest plugin payment token accepted, in bytes.
pub(crate) const MAX_PAYMENT_TOKEN_LEN: usize = 2048;

/// The longest personal access token accepted, in bytes.
pub(crate) const MAX_ACCESS_TOKEN_LEN: usize = 1024;

/// Why a token was refused. It never includes the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The token is empty.
    #[error("the {what} is empty")]
    Empty {
        /// Which token was being checked.
        what: &'static str,
    },
    /// The token is longer than its bound.
    #[error("the {what} is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// Which token was being checked.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The token holds a byte that is not visible ASCII (space, control
    /// character or non-ASCII).
    #[error("the {what} may hold only visible ASCII characters; byte {position} is not one")]
    NotVisibleAscii {
        /// Which token was being checked.
        what: &'static str,
        /// Byte offset of the first offending byte.
        position: usize,
    },
}

fn check(what: &'static str, max: usize, s: &str) -> Result<(), InvalidToken> {
    if s.is_empty() {
        return Err(InvalidToken::Empty { what });
    }
    if s.len() > max {
        return Err(InvalidToken::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    if let Some(position) = s.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(InvalidToken::NotVisibleAscii { what, position });
    }
    Ok(())
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Box<str>);

        impl $name {
            /// The longest token accepted, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Checks the token (1 to [`MAX_LEN`](Self::MAX_LEN) visible
            /// ASCII characters) and wraps it.
            pub fn new(token: impl AsRef<str>) -> Result<Self, InvalidToken> {
                let token = token.as_ref();
                check($what, $max, token)?;
                Ok(Self(token.into()))
            }

            /// The token itself. Send it where it belongs; never log it.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
    };
}

secret_type!(
    /// The creator's Figma personal access token, sent as `X-Figma-Token`.
    ///
    /// Personal access tokens expire (90 days at most); a rejected one shows
    /// as [`Error::Unauthorized`](crate::Error::Unauthorized) from
    /// [`PaymentsClient::verify_credentials`](crate::PaymentsClient::verify_credentials).
    AccessToken,
    "Figma access token",
    MAX_ACCESS_TOKEN_LEN
);

secret_type!(
    /// A short-lived token from the plugin's
    /// `figma.payments.getPluginPaymentTokenAsync()`, naming one user of one
    /// plugin or widget.
    PluginPaymentToken,
    "plugin payment token",
    MAX_PAYMENT_TOKEN_LEN
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print() {
        let t = PluginPaymentToken::new("ppt_SECRET").unwrap();
        assert!(!format!("{t:?} {t} {t:#?}").contains("SECRET"));
        let t = AccessToken::new("figd_SECRET").unwrap();
        assert!(!format!("{t:?} {t} {t:#?}").contains("SECRET"));
    }

    #[test]
    fn tokens_are_bounded_visible_ascii() {
        assert!(PluginPaymentToken::new("a&b=c#d%20e").is_ok());
        assert!(PluginPaymentToken::new("x".repeat(MAX_PAYMENT_TOKEN_LEN)).is_ok());
        assert!(matches!(
            PluginPaymentToken::new("x".repeat(MAX_PAYMENT_TOKEN_LEN + 1)),
            Err(InvalidToken::TooLong { .. })
        ));
        assert!(matches!(
            PluginPaymentToken::new(""),
            Err(InvalidToken::Empty { .. })
        ));
        for bad in ["a b", "a\tb", "a\nb", "a\u{0}b", "a\u{7f}b", "tökén", "ａ"] {
            assert!(
                matches!(
                    PluginPaymentToken::new(bad),
                    Err(InvalidToken::NotVisibleAscii { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn errors_do_not_echo_the_token() {
        let err = PluginPaymentToken::new("SECRET with space").unwrap_err();
        assert!(!err.to_string().contains("SECRET"));
        assert!(!format!("{err:?}").contains("SECRET"));
    }
}
