//! Credits at the gate: a grant reserves its cost, a non-buyer may spend a
//! free try, and an exhausted allowance refuses.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};

use super::{access::Granted, meter::Meter, AccessVia, PaidAccess};
use crate::{
    credits::{Ask, Bucket, Counts, CountsError, Credits, Reserved},
    Lookup, PaymentStatus, Paywall, Refusal, RefusalReason, Resource, UserId,
};

/// A gate's credits: what it allows, and where the counts live (the
/// paywall's).
#[derive(Debug, Clone)]
pub(crate) struct Metering {
    pub(crate) plan: Credits,
    pub(crate) counts: Arc<dyn Counts>,
}

impl Metering {
    /// Whose count `granted` would spend, and which allowance: `None` when
    /// its status has none (or nobody's answer let it in: bypass,
    /// fail-open).
    fn whose(&self, granted: &Granted) -> Option<(Lookup, Bucket)> {
        let access = granted.access();
        if !matches!(
            access.via,
            AccessVia::Paid | AccessVia::Trial | AccessVia::FreeTry
        ) {
            return None;
        }
        let lookup = access.lookup.as_ref()?;
        let bucket = Bucket::of(lookup.payment_status())?;
        // The lookup (an `Arc`) names the user for as long as the meter lives.
        (!self.plan.of(bucket).is_empty()).then(|| (lookup.clone(), bucket))
    }

    fn ask<'a>(&'a self, user: &'a UserId, bucket: Bucket, cost: Option<u64>, now: i64) -> Ask<'a> {
        Ask {
            user,
            bucket,
            allowances: self.plan.of(bucket),
            cost: cost.unwrap_or(self.plan.charge()),
            now,
        }
    }

    /// Whether a non-buyer's answer may spend a free try.
    pub(crate) fn gives_free_tries(&self, lookup: &Lookup) -> bool {
        *lookup.payment_status() == PaymentStatus::Unpaid
            && !self.plan.of(Bucket::Unpaid).is_empty()
    }

    fn outcome(
        &self,
        mut granted: Granted,
        lookup: &Lookup,
        ask: &Ask<'_>,
        reserved: Result<Reserved, CountsError>,
    ) -> Result<Granted, Refusal> {
        let reserved = match reserved {
            Ok(reserved) => reserved,
            Err(e) => {
                tracing::warn!(error = %e, "refused: credits could not be counted; is the counts' store or Redis reachable?");
                let mut refusal = Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    RefusalReason::CreditsUnavailable,
                    "your credits could not be counted just now; try again in a few seconds",
                );
                refusal.retry_after = Some(std::time::Duration::from_secs(5));
                return Err(refusal);
            }
        };
        if !reserved.admitted {
            let resource = granted.access().lookup.as_ref().map(Lookup::resource);
            return Err(exhausted(ask, &reserved, resource));
        }
        let policy = self.plan.policy(ask.bucket, &reserved.windows);
        granted.meter = Some(Box::new(Meter::new(
            self.counts.clone(),
            lookup.clone(),
            ask.bucket,
            reserved,
            ask.cost,
            ask.now,
            policy,
        )));
        Ok(granted)
    }
}

impl Metering {
    /// Reserves `granted`'s cost if it needs no wait (in-process counts):
    /// `None` sends the request the full check's way. `cost` is the
    /// request's own ([`CreditCost`](crate::credits::CreditCost)), if a
    /// middleware set one.
    pub(super) fn meter_now(
        &self,
        paywall: &Paywall,
        granted: Granted,
        cost: Option<u64>,
    ) -> Option<Granted> {
        let Some((lookup, bucket)) = self.whose(&granted) else {
            return Some(granted);
        };
        let ask = self.ask(lookup.user_id(), bucket, cost, unix_now(paywall));
        let reserved = self.counts.reserve_now(&ask)?;
        // A refusal takes the full check, which words it and counts it;
        // nothing was taken.
        let outcome = self.outcome(granted, &lookup, &ask, reserved).ok()?;
        paywall.counters().credits(bucket, true);
        Some(outcome)
    }

    /// Reserves `granted`'s cost, or refuses: credits exhausted (429), free
    /// tries spent (402), counts out of reach (503).
    pub(super) async fn meter(
        &self,
        paywall: &Paywall,
        granted: Granted,
        cost: Option<u64>,
    ) -> Result<Granted, Refusal> {
        let Some((lookup, bucket)) = self.whose(&granted) else {
            return Ok(granted);
        };
        let ask = self.ask(lookup.user_id(), bucket, cost, unix_now(paywall));
        let reserved = self.counts.reserve(ask).await;
        let outcome = self.outcome(granted, &lookup, &ask, reserved);
        paywall.counters().credits(bucket, outcome.is_ok());
        outcome
    }

    /// A non-buyer's free try, to be metered, if `lookup` is Figma's
    /// `UNPAID` answer and non-buyers get free tries; else `refusal`
    /// stands.
    pub(super) fn free_try(
        &self,
        lookup: Option<Lookup>,
        refusal: Refusal,
    ) -> Result<Granted, Refusal> {
        match lookup {
            Some(lookup) if self.gives_free_tries(&lookup) => Ok(Granted::new(PaidAccess {
                via: AccessVia::FreeTry,
                lookup: Some(lookup),
            })),
            _ => Err(refusal),
        }
    }
}

/// The time credits' windows read (Unix seconds, by the paywall's clock).
fn unix_now(paywall: &Paywall) -> i64 {
    i64::try_from(paywall.unix_ms() / 1000).unwrap_or(i64::MAX)
}

/// The refusal of an ask with no room: 402 for a non-buyer (checkout), 429
/// until the window renews for a buyer.
fn exhausted(ask: &Ask<'_>, reserved: &Reserved, resource: Option<&Resource>) -> Refusal {
    let cost = i64::try_from(ask.cost).unwrap_or(i64::MAX);
    // The window that lacks room and renews last: the one to wait for.
    let full = reserved
        .windows
        .iter()
        .filter(|u| u.remaining() < cost.max(1) || u.remaining() < 0)
        .max_by_key(|u| u.span.end.unwrap_or(i64::MAX))
        .or(reserved.windows.first());
    let mut refusal = match (ask.bucket, full) {
        (Bucket::Unpaid, full) => {
            let tries = full.map_or(0, |u| u.allowance.amount);
            let buy = resource.map_or_else(
                || "buy it on Figma Community to go on".to_owned(),
                |r| {
                    format!(
                        "buy {r} on Figma Community ({}) to go on",
                        r.community_url()
                    )
                },
            );
            let mut refusal = Refusal::new(
                StatusCode::PAYMENT_REQUIRED,
                RefusalReason::NotPaid,
                format!(
                    "you have used your {} free {}; {buy}",
                    thousands(tries),
                    plural(tries, "try", "tries")
                ),
            );
            refusal.payment_status = Some(PaymentStatus::Unpaid);
            refusal.resource_id = resource.map(|r| r.id().clone());
            refusal
        }
        (_, Some(full)) => {
            let amount = full.allowance.amount;
            let whose = match full.allowance.window {
                crate::credits::Window::Hour => "this hour's",
                crate::credits::Window::Day => "today's",
                crate::credits::Window::Month => "this month's",
                _ => "your",
            };
            let renews = match full.span.end {
                Some(_) => format!("they renew {}", full.span.renewal(full.allowance.window)),
                None => "they do not renew".to_owned(),
            };
            let mut refusal = Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                RefusalReason::CreditsExhausted,
                format!(
                    "you have used {whose} {} {}; {renews}",
                    thousands(amount),
                    plural(amount, "credit", "credits")
                ),
            );
            refusal.retry_after = full
                .span
                .renews_in(ask.now)
                .map(std::time::Duration::from_secs);
            refusal
        }
        (_, None) => Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            RefusalReason::CreditsExhausted,
            "you have no credits left",
        ),
    };
    let mut headers = HeaderMap::new();
    crate::credits::write_headers(&mut headers, &reserved.windows, None, 0, ask.now);
    refusal.headers = Some(Box::new(headers));
    refusal
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

/// `1000000` as `1,000,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_are_separated() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_000), "1,000");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
