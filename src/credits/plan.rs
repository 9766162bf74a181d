//! What a creator allows: [`Credits`], its [`Allowance`]s, and the gateway's
//! text form of them.

use std::{
    fmt,
    str::FromStr,
    sync::{Arc, OnceLock},
};

use http::HeaderValue;

use super::{counts::Used, Window};
use crate::PaymentStatus;

/// An amount of credits a [`Window`] may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Allowance {
    /// How many credits the window allows.
    pub amount: u64,
    /// The window: an hour, a day, a calendar month (UTC), or ever.
    pub window: Window,
}

/// Which allowance a caller spends: the status of Figma's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Bucket {
    Paid,
    Trial,
    Unpaid,
}

impl Bucket {
    pub(crate) const ALL: [Self; 3] = [Self::Paid, Self::Trial, Self::Unpaid];

    /// The allowance a status spends: `None` for `NOT_SUPPORTED` and
    /// unknown statuses, which never get in.
    pub(crate) fn of(status: &PaymentStatus) -> Option<Self> {
        match status {
            PaymentStatus::Paid => Some(Self::Paid),
            PaymentStatus::Trial => Some(Self::Trial),
            PaymentStatus::Unpaid => Some(Self::Unpaid),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Trial => "trial",
            Self::Unpaid => "unpaid",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The allowances of each payment status, and what a request costs; give
/// it to [`RequirePaidLayer::credits`](crate::RequirePaidLayer::credits).
///
/// ```
/// use figma_paywall::credits::{Credits, Window};
///
/// let built = Credits::new().paid(1_000, Window::Month).paid(100, Window::Day).unpaid(5, Window::Ever);
/// let parsed: Credits = "paid=1000/month,paid=100/day,unpaid=5".parse()?;
/// assert_eq!(built, parsed);
/// assert_eq!(parsed.to_string(), "paid=1000/month,paid=100/day,unpaid=5");
/// assert_eq!(parsed.cost(5).charge(), 5);
/// # Ok::<(), figma_paywall::credits::InvalidCredits>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct Credits {
    plan: Arc<Plan>,
    cost: u64,
}

/// The allowances, and the `RateLimit-Policy` each bucket's answers carry.
#[derive(Clone, Default)]
struct Plan {
    /// Each bucket's allowances, in [`Bucket`] order.
    allowances: [Vec<Allowance>; 3],
    /// Each bucket's `RateLimit-Policy`, by the month's length (28 to 31
    /// days): the same for every answer of that month.
    policies: [[OnceLock<Option<HeaderValue>>; 4]; 3],
}

impl PartialEq for Credits {
    fn eq(&self, other: &Self) -> bool {
        self.plan.allowances == other.plan.allowances && self.cost == other.cost
    }
}

impl Eq for Credits {}

impl Default for Credits {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Credits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credits")
            .field("allowances", &self.to_string())
            .field("cost", &self.cost)
            .finish()
    }
}

impl Credits {
    /// No allowance yet: every status unmetered, `UNPAID` refused. Each
    /// request costs 1.
    pub fn new() -> Self {
        Self {
            plan: Arc::default(),
            cost: 1,
        }
    }

    /// Allows a `PAID` user `amount` credits a `window`; several windows
    /// combine (1,000 a month and at most 100 a day).
    pub fn paid(self, amount: u64, window: Window) -> Self {
        self.allow(Bucket::Paid, amount, window)
    }

    /// Allows a `TRIAL` user `amount` credits a `window`.
    pub fn trial(self, amount: u64, window: Window) -> Self {
        self.allow(Bucket::Trial, amount, window)
    }

    /// Gives a non-buyer (`UNPAID`) `amount` free tries a `window`
    /// ([`Window::Ever`]: in all). Past them, 402 as without credits.
    pub fn unpaid(self, amount: u64, window: Window) -> Self {
        self.allow(Bucket::Unpaid, amount, window)
    }

    /// What each request through this layer costs (default 1): give each
    /// route its own with `credits.cost(5)`; the clones share one count.
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// What each request costs before a handler reports its own.
    pub fn charge(&self) -> u64 {
        self.cost
    }

    /// The allowances of `status`: empty for a status that is not metered.
    pub fn allowances(&self, status: &PaymentStatus) -> &[Allowance] {
        Bucket::of(status).map_or(&[], |bucket| self.of(bucket))
    }

    pub(crate) fn of(&self, bucket: Bucket) -> &[Allowance] {
        &self.plan.allowances[bucket.index()]
    }

    /// The `RateLimit-Policy` of `bucket`'s `windows`, written once a
    /// month's length.
    pub(crate) fn policy(&self, bucket: Bucket, windows: &[Used]) -> Option<HeaderValue> {
        let month = windows
            .iter()
            .find(|u| u.allowance.window == Window::Month)
            .and_then(|u| u.span.end.map(|end| (end - u.span.start) / 86_400 - 28))
            .and_then(|i| usize::try_from(i).ok())
            .filter(|i| *i < 4)
            .unwrap_or(0);
        self.plan.policies[bucket.index()][month]
            .get_or_init(|| super::headers::policy(windows))
            .clone()
    }

    fn allow(mut self, bucket: Bucket, amount: u64, window: Window) -> Self {
        let plan = Arc::make_mut(&mut self.plan);
        let list = &mut plan.allowances[bucket.index()];
        // One allowance a window: the last one set wins.
        list.retain(|a| a.window != window);
        list.push(Allowance { amount, window });
        plan.policies = Default::default();
        self
    }
}

impl fmt::Display for Credits {
    /// The gateway's form: `paid=1000/month,paid=100/day,unpaid=5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for bucket in Bucket::ALL {
            for a in self.of(bucket) {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{}={}", bucket.as_str(), a.amount)?;
                if a.window != Window::Ever {
                    write!(f, "/{}", a.window.as_str())?;
                }
            }
        }
        Ok(())
    }
}

/// A text that is not a list of allowances; says which part and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credits: {part:?} is not an allowance ({why}); write status=amount/window, as paid=1000/month,trial=50/day,unpaid=5")]
pub struct InvalidCredits {
    part: String,
    why: &'static str,
}

impl FromStr for Credits {
    type Err = InvalidCredits;

    /// `status=amount[/window]`, comma-separated: status `paid`, `trial` or
    /// `unpaid`; window `hour`, `day`, `month` or `ever` (no window: ever).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut credits = Self::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why| InvalidCredits {
                part: part.chars().take(64).collect(),
                why,
            };
            let (status, rest) = part.split_once('=').ok_or_else(|| bad("no '='"))?;
            let bucket = match status.trim().to_ascii_lowercase().as_str() {
                "paid" => Bucket::Paid,
                "trial" => Bucket::Trial,
                "unpaid" => Bucket::Unpaid,
                _ => return Err(bad("the status is not paid, trial or unpaid")),
            };
            let (amount, window) = match rest.split_once('/') {
                Some((amount, window)) => (amount, window.trim().parse().map_err(bad)?),
                None => (rest, Window::Ever),
            };
            let amount = amount
                .trim()
                .replace('_', "")
                .parse::<u64>()
                .map_err(|_| bad("the amount is not a whole number"))?;
            credits = credits.allow(bucket, amount, window);
        }
        Ok(credits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_form_reads_back_what_it_writes() {
        let credits: Credits = "paid=1000/month, paid=100/day,trial=50/day,unpaid=5"
            .parse()
            .unwrap();
        assert_eq!(
            credits.to_string(),
            "paid=1000/month,paid=100/day,trial=50/day,unpaid=5"
        );
        assert_eq!(credits.of(Bucket::Unpaid)[0].window, Window::Ever);
        assert_eq!(credits.allowances(&PaymentStatus::NotSupported), &[]);
    }

    #[test]
    fn a_bad_allowance_says_which_and_why() {
        for (text, why) in [
            ("paid", "no '='"),
            ("gold=5/day", "the status is not paid, trial or unpaid"),
            ("paid=-1/day", "the amount is not a whole number"),
            ("paid=5/week", "the window is not hour, day, month or ever"),
        ] {
            let e = text.parse::<Credits>().unwrap_err();
            assert_eq!(e.why, why, "{text}");
            assert!(e.to_string().contains("paid=1000/month"), "{e}");
        }
    }
}
