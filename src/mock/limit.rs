//! Figma's own rate limit on the creator's token, simulated: a leaky bucket
//! that answers 429 with `Retry-After` and the tier headers when it is full.

use std::time::{Duration, Instant};

/// The budget the mock enforces; see
/// [`MockFigma::set_rate_limit`](super::MockFigma::set_rate_limit).
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    interval: Duration,
    tolerance: Duration,
    pub(super) plan_tier: String,
    pub(super) rate_limit_type: String,
    /// When the bucket is next empty (GCRA's theoretical arrival time).
    empty_at: Option<Instant>,
}

impl Bucket {
    pub(super) fn new(per_minute: u32, burst: u32, plan_tier: &str, rate_limit_type: &str) -> Self {
        let interval = Duration::from_secs(60) / per_minute.max(1);
        Self {
            interval,
            tolerance: interval * burst.max(1).saturating_sub(1),
            plan_tier: plan_tier.to_owned(),
            rate_limit_type: rate_limit_type.to_owned(),
            empty_at: None,
        }
    }

    /// Lets one lookup through at `now`, or says how long until one may go.
    pub(super) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let empty_at = self.empty_at.map_or(now, |at| at.max(now));
        let allowed_at = empty_at.checked_sub(self.tolerance).unwrap_or(now);
        if now < allowed_at {
            return Err(allowed_at - now);
        }
        self.empty_at = Some(empty_at + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_an_interval() {
        let mut bucket = Bucket::new(10, 2, "starter", "low");
        let t0 = Instant::now();
        assert!(bucket.take(t0).is_ok());
        assert!(bucket.take(t0).is_ok());
        let wait = bucket.take(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6));
        assert!(bucket.take(t0 + Duration::from_secs(6)).is_ok());
        assert!(bucket.take(t0 + Duration::from_secs(7)).is_err());
        assert!(bucket.take(t0 + Duration::from_secs(12)).is_ok());
    }
}
