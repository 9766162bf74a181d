//! Credits: how much each buyer may spend of an expensive endpoint, and a
//! few free tries for everyone else, counted by the Figma user that
//! Figma's answer names.
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use figma_paywall::{credits::{Credits, Window}, RequirePaid};
//!
//! let credits = Credits::new()
//!     .paid(1_000, Window::Month) // 1,000 a calendar month (UTC) ...
//!     .paid(100, Window::Day)     // ... and at most 100 a day
//!     .trial(50, Window::Day)
//!     .unpaid(5, Window::Ever);   // 5 free tries, ever, then checkout
//!
//! let app: Router = Router::new()
//!     .route("/generate", post(|| async { "generated" }))
//!     .layer(RequirePaid::plugin("1122334455").credits(credits.cost(5)));
//! ```
//!
//! A request the gate passes on reserves its cost first, atomically across
//! every window of the caller's status: nothing is ever let in past an
//! allowance, however many requests arrive at once. A handler that knows
//! the real cost afterwards reports it through the [`CreditCharge`]
//! request extension, and the difference is settled (0 gives it all back).
//! Every metered answer carries the `RateLimit-Policy` and `RateLimit`
//! fields of draft-ietf-httpapi-ratelimit-headers-11.
//!
//! Counts are keyed by Figma's user ID and the status's allowance, never by
//! a token: a user's every token shares one count, and a refund moves the
//! user to the `UNPAID` allowance at once. A status without an allowance is
//! not metered; `UNPAID` without one is refused with 402, as without
//! credits. Where counts live, and what a restart keeps:
//! [`guide::credits`](crate::guide::credits).

mod charge;
mod counts;
mod headers;
mod plan;
mod window;

pub use charge::{CreditCharge, CreditCost};
pub use counts::CountsError;
#[cfg(feature = "store")]
pub(crate) use counts::Slot;
pub(crate) use counts::Used;
pub(crate) use counts::{Ask, Reserved};
pub use counts::{Balance, WindowBalance};
pub(crate) use counts::{Counts, MemoryCounts};
pub(crate) use headers::write as write_headers;
pub(crate) use plan::Bucket;
pub use plan::{Allowance, Credits, InvalidCredits};
#[cfg(feature = "store")]
pub(crate) use window::Span;
pub use window::Window;
