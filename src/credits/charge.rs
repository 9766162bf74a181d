//! [`CreditCharge`]: what a handler reports a request cost; and the meter
//! that settles it and writes the headers.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use axum::response::Response;

use super::{counts::Used, headers, Bucket, Counts, Reserved};
use crate::UserId;

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

/// A metered request on its way: its reservation, settled and written
/// into the response's headers when the response is made.
pub(crate) struct Meter {
    pub(crate) counts: Arc<dyn Counts>,
    pub(crate) user: UserId,
    pub(crate) bucket: Bucket,
    pub(crate) reserved: Reserved,
    pub(crate) cost: u64,
    pub(crate) now: i64,
    pub(crate) charge: CreditCharge,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("bucket", &self.bucket)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl Meter {
    pub(crate) fn new(
        counts: Arc<dyn Counts>,
        user: UserId,
        bucket: Bucket,
        reserved: Reserved,
        cost: u64,
        now: i64,
    ) -> Self {
        let charge = CreditCharge {
            reported: Arc::new(AtomicU64::new(NONE)),
            reserved: cost,
            remaining: reserved.windows.iter().map(Used::remaining).min(),
        };
        Self {
            counts,
            user,
            bucket,
            reserved,
            cost,
            now,
            charge,
        }
    }

    /// The handle the handler reports through.
    pub(crate) fn charge(&self) -> CreditCharge {
        self.charge.clone()
    }

    /// What the reported cost changes: settled, and the headers written.
    pub(crate) fn finish(self, response: &mut Response) -> i64 {
        let cost = i64::try_from(self.cost).unwrap_or(i64::MAX);
        let delta = self.charge.reported().map_or(0, |used| {
            i64::try_from(used).unwrap_or(i64::MAX).saturating_sub(cost)
        });
        if delta != 0 {
            self.counts
                .settle(&self.user, self.bucket, &self.reserved.windows, delta);
        }
        let windows: Vec<Used> = self
            .reserved
            .windows
            .iter()
            .map(|u| Used {
                used: u.used.saturating_add(delta),
                ..*u
            })
            .collect();
        headers::write(response.headers_mut(), &windows, self.now);
        cost.saturating_add(delta)
    }
}
