//! How a request got through the gate: [`PaidAccess`] and [`AccessVia`].

/// How a request got through the gate; a request extension next to
/// [`PaymentInformation`](crate::PaymentInformation), and an extractor.
///
/// ```
/// use figma_paywall::{AccessVia, PaidAccess};
///
/// async fn generate(access: PaidAccess) -> &'static str {
///     match access.via {
///         AccessVia::Trial => "generated (trial)",
///         _ => "generated",
///     }
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PaidAccess {
    /// Why the caller was let through.
    pub via: AccessVia,
    /// The answer was past its lifetime: served because Figma could not be
    /// asked (see [`PaywallBuilder::stale_grace`](crate::PaywallBuilder::stale_grace)),
    /// or while its refresh waits for a slot of the budget (see
    /// [`PaywallBuilder::max_unverified`](crate::PaywallBuilder::max_unverified)).
    pub stale: bool,
    /// The answer came from the cache.
    pub from_cache: bool,
    /// How old Figma's answer was when the gate read it: since Figma gave
    /// it, on this replica or another. `None` when no answer let the caller
    /// in ([`AccessVia::FailOpen`]).
    pub age: Option<std::time::Duration>,
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
    /// open: nobody checked that
    /// this caller paid, and no [`PaymentInformation`](crate::PaymentInformation) is on the request.
    FailOpen,
}
