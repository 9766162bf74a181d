//! The meter a metered request carries: its reservation, settled and
//! written into the answer's headers when the answer is made.

use std::sync::Arc;

use axum::response::Response;
use http::HeaderValue;

use crate::{
    credits::{write_headers, Bucket, Counts, CreditCharge, Reserved, Used},
    Lookup,
};

/// A metered request on its way: its reservation, settled and written
/// into the response's headers when the response is made.
pub(crate) struct Meter {
    pub(crate) counts: Arc<dyn Counts>,
    /// The answer that let the caller in: it names the user counted.
    pub(crate) lookup: Lookup,
    pub(crate) bucket: Bucket,
    pub(crate) reserved: Reserved,
    pub(crate) cost: u64,
    pub(crate) now: i64,
    pub(crate) charge: CreditCharge,
    /// `RateLimit-Policy`, the same for every answer of the allowance.
    pub(crate) policy: Option<HeaderValue>,
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
        lookup: Lookup,
        bucket: Bucket,
        reserved: Reserved,
        cost: u64,
        now: i64,
        policy: Option<HeaderValue>,
    ) -> Self {
        let charge = CreditCharge::new(cost, reserved.windows.iter().map(Used::remaining).min());
        Self {
            counts,
            lookup,
            bucket,
            reserved,
            cost,
            now,
            charge,
            policy,
        }
    }

    /// The handle the handler reports through.
    pub(crate) fn charge(&self) -> CreditCharge {
        self.charge.clone()
    }

    /// What the reported cost changes: settled, and the headers written.
    pub(crate) fn finish(self, response: &mut Response) {
        let cost = i64::try_from(self.cost).unwrap_or(i64::MAX);
        let delta = self.charge.reported().map_or(0, |used| {
            i64::try_from(used).unwrap_or(i64::MAX).saturating_sub(cost)
        });
        if delta != 0 {
            self.counts.settle(
                self.lookup.user_id(),
                self.bucket,
                &self.reserved.windows,
                delta,
            );
        }
        write_headers(
            response.headers_mut(),
            &self.reserved.windows,
            self.policy,
            delta,
            self.now,
        );
    }
}
