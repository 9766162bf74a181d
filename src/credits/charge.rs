//! [`CreditCharge`]: what a handler reports a request cost; and the meter
//! that settles it and writes the headers.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

/// Not reported.
const NONE: u64 = u64::MAX;

/// What a metered request cost, as its handler reports it: a request
/// extension on every request the gate meters.
///
/// The gate reserved the route's cost before the handler ran; a report
/// settles the difference once the response is made, and 0 gives the whole
/// reservation back (the model call failed). A report past what was left
/// takes the balance below zero, and the next request is refused until the
/// window renews.
///
/// ```
/// use axum::Extension;
/// use figma_paywall::credits::CreditCharge;
///
/// async fn generate(charge: Option<Extension<CreditCharge>>) -> &'static str {
///     let tokens_used = 3_200; // what the model answered
///     if let Some(Extension(charge)) = charge {
///         charge.report(tokens_used / 1_000 + 1); // 4 credits, not the 1 reserved
///     }
///     "generated"
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CreditCharge {
    reported: Arc<AtomicU64>,
    reserved: u64,
    remaining: Option<i64>,
}

impl CreditCharge {
    /// Reports what the request really cost, in credits (the last report
    /// counts).
    pub fn report(&self, used: u64) {
        self.reported.store(used.min(NONE - 1), Ordering::Relaxed);
    }

    /// What the handler reported, if it did.
    pub fn reported(&self) -> Option<u64> {
        match self.reported.load(Ordering::Relaxed) {
            NONE => None,
            used => Some(used),
        }
    }

    /// What the gate reserved for this request.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// What the caller had left after the reservation (the least of its
    /// windows).
    pub fn remaining(&self) -> Option<i64> {
        self.remaining
    }

    /// A charge of `reserved` credits, with `remaining` left after it,
    /// nothing reported yet.
    pub(crate) fn new(reserved: u64, remaining: Option<i64>) -> Self {
        Self {
            reported: Arc::new(AtomicU64::new(NONE)),
            reserved,
            remaining,
        }
    }
}

/// One request's cost in credits, set by a middleware before the gate: it
/// replaces the layer's [`Credits::cost`](super::Credits::cost) for this
/// request (the gateway's `--credit-cost` sets it by path).
///
/// ```
/// use axum::{extract::Request, middleware::Next, response::Response};
/// use figma_paywall::credits::CreditCost;
///
/// // Outside the gate: a long prompt costs more.
/// async fn price(mut req: Request, next: Next) -> Response {
///     let length = req.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
///     req.extensions_mut().insert(CreditCost(if length > Some(10_000) { 5 } else { 1 }));
///     next.run(req).await
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditCost(pub u64);
