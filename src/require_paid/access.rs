//! How a request got through the gate: [`PaidAccess`] and [`AccessVia`].

use http::Request;

use super::meter::Meter;
use crate::{Lookup, PaymentInformation, Paywall};

/// How a request got through the gate: a request extension the gate puts
/// on every request it lets in, and an extractor. Handlers that only need
/// Figma's answer take [`PaymentInformation`] instead, the extension the
/// gate puts beside this one (but for [`AccessVia::FailOpen`]).
///
/// ```
/// use figma_paywall::{AccessVia, PaidAccess};
///
/// async fn generate(access: PaidAccess) -> String {
///     let age = access.lookup.as_ref().map(|lookup| lookup.age().as_secs());
///     match access.via {
///         AccessVia::Trial => format!("generated (trial, answer {age:?} s old)"),
///         _ => "generated".to_owned(),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PaidAccess {
    /// Why the caller was let through.
    pub via: AccessVia,
    /// The lookup that let them in: Figma's answer, how old it was, whether
    /// it came from the cache or was past its lifetime. `None` when no
    /// answer did ([`AccessVia::FailOpen`]).
    pub lookup: Option<Lookup>,
}

impl PaidAccess {
    /// Figma's answer that let the caller in; `None` when the gate failed
    /// open.
    pub fn info(&self) -> Option<PaymentInformation> {
        self.lookup.as_ref().map(Lookup::info)
    }
}

/// Why a caller was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessVia {
    /// Figma says `PAID`.
    Paid,
    /// Figma says `TRIAL`, and the gate lets trials through.
    Trial,
    /// The user is on the gate's bypass list (the resource's creators, whom
    /// Figma answers `UNPAID`).
    Bypass,
    /// Figma is failing (the circuit breaker is open) and the gate fails
    /// open: nobody checked that this caller paid, and there is no
    /// [`PaymentInformation`] to extract.
    FailOpen,
    /// Figma says `UNPAID`, and the gate's credits gave this user a free
    /// try ([`Credits::unpaid`](crate::credits::Credits::unpaid)): the
    /// [`PaymentInformation`] says `UNPAID`.
    FreeTry,
}

/// A caller the gate lets in: how, and the credits it reserved.
pub(crate) struct Granted {
    access: PaidAccess,
    /// The credits it reserved, when the gate meters its status.
    pub(crate) meter: Option<Box<Meter>>,
}

impl Granted {
    pub(crate) fn new(access: PaidAccess) -> Self {
        Self {
            access,
            meter: None,
        }
    }

    pub(crate) fn access(&self) -> &PaidAccess {
        &self.access
    }

    /// Lets `req` in: Figma's answer that let them in as a
    /// `PaymentInformation` extension (none when the gate failed open),
    /// how they got in as a [`PaidAccess`] one, and what it may report
    /// it cost as a [`CreditCharge`](crate::credits::CreditCharge) when
    /// it is metered. The meter settles once the response is made.
    pub(crate) fn admit<B>(self, paywall: &Paywall, req: &mut Request<B>) -> Option<Box<Meter>> {
        paywall.counters().granted.add();
        let extensions = req.extensions_mut();
        if let Some(info) = self.access.info() {
            extensions.insert(info);
        }
        extensions.insert(self.access);
        if let Some(meter) = &self.meter {
            extensions.insert(meter.charge());
        }
        self.meter
    }
}
