//! How a request got through the gate: [`PaidAccess`] and [`AccessVia`].

use crate::{Lookup, PaymentInformation};

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
}
