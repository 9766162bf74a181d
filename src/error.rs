//! Errors: [`Error`] for a lookup, [`ConfigError`] for building a client,
//! and what a throttled lookup says: [`ThrottleReason`], and the
//! [`RateLimit`] of Figma's 429.
//!
//! # Example
//!
//! ```
//! use figma_paywall::{error::ThrottleReason, Error};
//!
//! fn advice(error: &Error) -> String {
//!     match error {
//!         Error::Throttled { retry_after, reason: ThrottleReason::BudgetExhausted } => {
//!             format!("our budget of lookups is spent: try again in {} s", retry_after.as_secs())
//!         }
//!         Error::RateLimited(limit) => format!("Figma said 429: retry after {:?}", limit.retry_after),
//!         other => other.to_string(),
//!     }
//! }
//! # let _ = advice;
//! ```

use std::{fmt, time::Duration};

use http::StatusCode;

use crate::{InvalidId, InvalidToken};

/// Why a payment lookup did not give an answer.
///
/// Every variant says whose problem it is: the input ([`InvalidId`],
/// [`InvalidToken`]: nothing was sent), the caller's token or the creator's
/// access token ([`Unauthorized`](Error::Unauthorized)), Figma's budget
/// ([`RateLimited`](Error::RateLimited), [`Throttled`](Error::Throttled)) or
/// Figma itself. No variant ever holds a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An ID was not a string of ASCII digits; nothing was sent to Figma.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// A token was empty, too long or not visible ASCII; nothing was sent.
    #[error(transparent)]
    InvalidToken(#[from] InvalidToken),
    /// Figma answered 400: a parameter was invalid (for a plugin payment
    /// token, often an expired or forged one).
    #[error("Figma refused the request as invalid (400): {message}")]
    InvalidRequest {
        /// Figma's `message`, shortened, with any token removed.
        message: String,
    },
    /// Figma answered 401 or 403: the access token or the plugin payment
    /// token was refused. Figma does not say which; a failing
    /// [`PaymentsClient::verify_credentials`](crate::PaymentsClient::verify_credentials)
    /// means it is the access token (they expire after 90 days at most).
    #[error("Figma refused the credentials ({status}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: StatusCode,
        /// Figma's `message`, shortened, with any token removed.
        message: String,
    },
    /// Figma answered 429: the access token's budget for this endpoint is
    /// spent. No call should go to Figma before `retry_after`.
    #[error("Figma rate-limited the access token (429){}", RetryIn(.0.retry_after))]
    RateLimited(RateLimit),
    /// No call was made: this client's own budget is spent, its queue is
    /// full, or Figma asked it to back off after a 429.
    #[error("no call was made to Figma: {reason}; try again in {}s", ceil_secs(*.retry_after))]
    Throttled {
        /// How long until a call may be made.
        retry_after: Duration,
        /// Why no call was made.
        reason: ThrottleReason,
    },
    /// Figma answered with a 5xx, or another status it does not document.
    #[error("Figma failed to answer ({status}): {message}")]
    Upstream {
        /// The status Figma answered with.
        status: StatusCode,
        /// Figma's `message` if there was one, shortened, with any token removed.
        message: String,
    },
    /// Figma did not answer within the client's timeout.
    #[error("Figma did not answer in time (timeout {}ms)", .0.as_millis())]
    Timeout(Duration),
    /// The request could not be sent or its answer not read (DNS,
    /// connection refused or dropped, TLS). The source is the HTTP
    /// library's error, without the URL (which carries the token).
    #[error("could not reach Figma: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Figma answered 200 with something that is not its success envelope
    /// (`{"status": 200, "error": false, "meta": {...}}`).
    #[error("Figma's answer could not be read: {reason}")]
    MalformedResponse {
        /// What was wrong with it.
        reason: String,
    },
}

impl Error {
    /// How long to wait before asking again, where Figma or the budget said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(limit) => limit.retry_after,
            Self::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Whether the error lies in what the caller sent (bad ID or token, or a
    /// 400/401/403 from Figma) rather than in Figma or the network.
    pub fn is_caller_error(&self) -> bool {
        matches!(
            self,
            Self::InvalidId(_)
                | Self::InvalidToken(_)
                | Self::InvalidRequest { .. }
                | Self::Unauthorized { .. }
        )
    }

    /// Whether Figma itself could not give an answer: a 5xx (or another
    /// status that is neither success nor 4xx), a timeout, a network error,
    /// an unreadable answer, its 429 and the back-off after it, or the
    /// circuit breaker open because Figma is failing. These are the only
    /// errors an expired PAID/TRIAL answer stands in for.
    ///
    /// Not our own budget or queue running out
    /// ([`ThrottleReason::BudgetExhausted`], [`ThrottleReason::QueueFull`],
    /// [`ThrottleReason::ClientShare`]): anyone can spend the budget with a
    /// few bad tokens, so a refunded buyer could keep access on a stale
    /// answer that way. Not a 4xx, which is about what the caller sent.
    pub fn is_figma_failure(&self) -> bool {
        self.is_outage()
            || matches!(
                self,
                Self::RateLimited(_)
                    | Self::Throttled {
                        reason: ThrottleReason::BackingOff | ThrottleReason::FigmaFailing,
                        ..
                    }
            )
    }

    /// Whether nothing could be asked: Figma is failing, or our own budget,
    /// queue or back-off held the call. A still *fresh* answer stands in
    /// for such a refresh (it is as good as it was); only Figma's failure
    /// lets a stale one stand in, since anyone can spend our budget.
    pub(crate) fn could_not_refresh(&self) -> bool {
        self.is_figma_failure() || matches!(self, Self::Throttled { .. })
    }

    /// Whether a call found Figma down rather than answering: a 5xx (or
    /// another status that is neither success nor 4xx), a timeout, a network
    /// error, an unreadable 200. A 429 is an answer.
    pub(crate) fn is_outage(&self) -> bool {
        match self {
            Self::Upstream { status, .. } => !status.is_client_error(),
            Self::Timeout(_) | Self::Transport(_) | Self::MalformedResponse { .. } => true,
            _ => false,
        }
    }
}

/// What Figma sent with a 429.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    /// `Retry-After`, in seconds; it can be days.
    pub retry_after: Option<Duration>,
    /// `X-Figma-Plan-Tier`.
    pub plan_tier: Option<String>,
    /// `X-Figma-Rate-Limit-Type` (`low` or `high`).
    pub rate_limit_type: Option<String>,
    /// `X-Figma-Upgrade-Link`.
    pub upgrade_link: Option<String>,
}

/// The longest back-off a 429 is taken for: a `Retry-After` of days is
/// honoured, one of years is not.
pub(crate) const MAX_BACK_OFF: Duration = Duration::from_secs(30 * 86_400);

/// How long to stop calling after a 429 that carries no `Retry-After`.
const DEFAULT_BACK_OFF: Duration = Duration::from_secs(60);

impl RateLimit {
    /// How long every call must stop: `Retry-After`, or a minute when
    /// Figma gave none, never more than 30 days.
    pub(crate) fn back_off(&self) -> Duration {
        self.retry_after
            .unwrap_or(DEFAULT_BACK_OFF)
            .min(MAX_BACK_OFF)
    }
}

/// Why [`Error::Throttled`] made no call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThrottleReason {
    /// Figma answered 429 and its `Retry-After` has not passed.
    BackingOff,
    /// No slot in the client's rate budget came free in time.
    BudgetExhausted,
    /// Too many lookups were already waiting for a slot.
    QueueFull,
    /// This client has used its share of cold lookups (the fair share).
    ClientShare,
    /// Figma is failing: the circuit breaker is open and only a probe goes
    /// to Figma until it answers again.
    FigmaFailing,
}

impl fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BackingOff => "Figma asked to back off (429 Retry-After)",
            Self::BudgetExhausted => "the rate budget for Figma is spent",
            Self::QueueFull => "too many lookups are waiting for the rate budget",
            Self::ClientShare => "this client has used its share of new lookups",
            Self::FigmaFailing => "Figma is failing (the circuit breaker is open)",
        })
    }
}

struct RetryIn(Option<Duration>);

impl fmt::Display for RetryIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "; retry after {}s", ceil_secs(d)),
            None => Ok(()),
        }
    }
}

/// Whole seconds, rounded up, as `Retry-After` wants them.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Why a [`PaymentsClient`](crate::PaymentsClient) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `FIGMA_TOKEN` is not set.
    #[error("FIGMA_TOKEN is not set: create a personal access token at https://www.figma.com/developers/api#access-tokens and export it as FIGMA_TOKEN")]
    MissingToken,
    /// The access token is not a plausible token.
    #[error("the Figma access token is not usable: {0}")]
    InvalidToken(#[from] InvalidToken),
    /// The base URL does not parse or is not http(s).
    #[error("the Figma API base URL {url:?} is not usable ({reason}); set FIGMA_API_URL to something like https://api.figma.com")]
    InvalidBaseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),
    /// An environment variable is set to something unusable.
    #[error("{name} {reason}")]
    InvalidVariable {
        /// The variable.
        name: &'static str,
        /// What it must be, with an example.
        reason: String,
    },
    /// The store on local disk (`FIGMA_PAYWALL_STORE`) cannot be opened.
    #[error("the store {path:?} cannot be used: {reason}")]
    Store {
        /// The store's file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built (TLS set-up); the source is the
    /// HTTP library's error.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(Duration::from_millis(0)), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(2000)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn messages_say_what_to_do() {
        assert!(ConfigError::MissingToken
            .to_string()
            .contains("FIGMA_TOKEN"));
        let e = Error::Throttled {
            retry_after: Duration::from_millis(1500),
            reason: ThrottleReason::BackingOff,
        };
        assert!(e.to_string().contains("try again in 2s"), "{e}");
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        assert!(e.is_figma_failure());
    }

    #[test]
    fn only_figma_failing_is_a_figma_failure() {
        let throttled = |reason| Error::Throttled {
            retry_after: Duration::from_secs(1),
            reason,
        };
        let upstream = |code| Error::Upstream {
            status: StatusCode::from_u16(code).unwrap(),
            message: String::new(),
        };
        for failing in [
            upstream(500),
            upstream(503),
            Error::Timeout(Duration::from_secs(5)),
            Error::MalformedResponse {
                reason: String::new(),
            },
            Error::RateLimited(RateLimit::default()),
            throttled(ThrottleReason::BackingOff),
            throttled(ThrottleReason::FigmaFailing),
        ] {
            assert!(failing.is_figma_failure(), "{failing:?}");
        }
        // Our own budget, and whatever the caller's request made Figma say.
        for not in [
            throttled(ThrottleReason::BudgetExhausted),
            throttled(ThrottleReason::QueueFull),
            throttled(ThrottleReason::ClientShare),
            upstream(404),
            upstream(413),
            upstream(431),
            Error::InvalidRequest {
                message: String::new(),
            },
            Error::Unauthorized {
                status: StatusCode::UNAUTHORIZED,
                message: String::new(),
            },
        ] {
            assert!(!not.is_figma_failure(), "{not:?}");
        }
        assert!(!Error::RateLimited(RateLimit::default()).is_outage());
    }
}
