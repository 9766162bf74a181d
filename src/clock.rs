//! The time the paywall and the client read.
//!
//! Real time by default. A test moves it forward with a
//! [`MockClock`](crate::mock::MockClock) (feature `mock`) instead of
//! sleeping, so expiry, refresh-ahead, stale grace, the client's 429
//! back-off and its rate budget are tested without waiting and cannot flake
//! on a loaded machine. Two things keep real time: moka's own eviction (the
//! engine treats an entry that this clock says is past its keep time as
//! absent, whatever moka holds), and what a Redis tier shares (its back-off
//! and budget run on Redis's clock, its key lifetimes on Redis's expiry).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Real time, plus an offset that only a [`MockClock`](crate::mock::MockClock)
/// moves. Cheap to clone and to read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    /// Nanoseconds added to real time; `None` for the real clock.
    offset: Option<Arc<AtomicU64>>,
    /// Told each time a mock clock moves.
    moved: Option<Arc<tokio::sync::Notify>>,
}

impl Clock {
    fn offset(&self) -> Duration {
        self.offset.as_ref().map_or(Duration::ZERO, |o| {
            Duration::from_nanos(o.load(Ordering::Relaxed))
        })
    }

    /// Now, monotonic.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        let now = Instant::now();
        match &self.offset {
            None => now,
            Some(_) => later(now, self.offset()),
        }
    }

    /// Resolves when a mock clock moves; never for the real clock. What
    /// waits for a time by this clock (a lookup in the budget's queue) looks
    /// again then, so a test that moves the clock need not wait in real
    /// time for it to notice.
    pub(crate) async fn moved(&self) {
        match &self.moved {
            Some(moved) => moved.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Now, in milliseconds since the Unix epoch: the time stored beside an
    /// answer that leaves the process.
    pub(crate) fn unix_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .saturating_add(self.offset());
        u64::try_from(wall.as_millis()).unwrap_or(u64::MAX)
    }
}

/// `at + d`, or far in the future where that overflows (huge configured
/// lifetimes and `Retry-After`s of years must not panic).
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(at)
}

/// A clock for tests: real time plus however far the test has moved it.
///
/// Give it to the client ([`PaymentsClientBuilder::clock`](crate::PaymentsClientBuilder::clock));
/// the [`Paywall`](crate::Paywall) built on that client reads it too. Then
/// expiry, refresh-ahead, stale grace, the 429 back-off and the rate budget
/// move when the test says, not when the machine gets round to it; a
/// lookup waiting in the budget's queue looks again each time it moves.
///
/// ```
/// use std::time::Duration;
/// use figma_paywall::{mock::{MockClock, MockFigma}, Paywall, PaymentStatus, Resource, UserId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let figma = MockFigma::start().await?;
/// let clock = MockClock::new();
/// let paywall = Paywall::new(figma.client_builder().clock(&clock).build()?);
/// let (buyer, plugin) = (UserId::new("2001")?, Resource::plugin("1122334455")?);
/// figma.set_status(&buyer, &plugin, PaymentStatus::Paid);
///
/// paywall.lookup_user(&buyer, &plugin).await?;
/// assert!(paywall.lookup_user(&buyer, &plugin).await?.from_cache());
/// clock.advance(Duration::from_secs(11 * 60)); // past the 10-minute PAID lifetime
/// assert!(!paywall.lookup_user(&buyer, &plugin).await?.from_cache());
/// assert_eq!(figma.payment_requests(), 2);
/// # Ok(()) }
/// ```
#[cfg(feature = "mock")]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
#[derive(Debug, Clone, Default)]
pub struct MockClock {
    offset_nanos: Arc<AtomicU64>,
    moved: Arc<tokio::sync::Notify>,
}

#[cfg(feature = "mock")]
impl MockClock {
    /// A clock at real time, until it is advanced.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(nanos))
            });
        self.moved.notify_waiters();
    }

    /// Moves the clock forward to the wall-clock time `at` (a month's last
    /// minute, say, for credits' windows); no move if `at` has passed.
    pub fn advance_to(&self, at: SystemTime) {
        let now = SystemTime::now() + self.offset();
        if let Ok(by) = at.duration_since(now) {
            self.advance(by);
        }
    }

    /// How far the clock has been moved.
    pub fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn clock(&self) -> Clock {
        Clock {
            offset: Some(self.offset_nanos.clone()),
            moved: Some(self.moved.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_clock_has_no_offset_and_a_moved_one_moves() {
        let real = Clock::default();
        let mock = MockClock::new();
        let moved = mock.clock();
        let before = moved.now();
        mock.advance(Duration::from_secs(3600));
        assert_eq!(mock.offset(), Duration::from_secs(3600));
        assert!(moved.now().saturating_duration_since(before) >= Duration::from_secs(3600));
        assert!(real.now().saturating_duration_since(before) < Duration::from_secs(3600));
        assert!(moved.unix_ms() >= real.unix_ms() + 3_600_000);
    }

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert_eq!(
            later(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }
}
