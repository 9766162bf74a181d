//! A tunnel (a WebSocket, any upgrade) outlives the request the gate let
//! in: its caller is checked again whenever the answer that let them in
//! expires (its lifetime, `--paid-lifetime` or `--trial-lifetime`, less
//! its age), with the lookup the gate makes, and the tunnel closes once no
//! answer lets them in any more (a refund: `UNPAID`) or none can be had.
//! A user on `--bypass` keeps it, and so does a plugin let in on a status
//! chosen in development.

use std::{sync::Arc, time::Duration};

use figma_paywall::{
    identity::Identity, AccessVia, Lookup, PaidAccess, PaymentStatus, Paywall, Resource, UserId,
};

/// The shortest wait between two checks: an answer past its lifetime that
/// still lets its caller in (Figma failing, or its refresh waiting for a
/// slot) is asked about again this often.
const AGAIN_AFTER: Duration = Duration::from_secs(2);

/// What the gate checks, to check a tunnel's caller again.
#[derive(Clone)]
pub(crate) struct Recheck {
    paywall: Paywall,
    resources: Arc<[Resource]>,
    allow_trial: bool,
    bypass: Arc<[UserId]>,
    paid_lifetime: Duration,
    trial_lifetime: Duration,
}

impl Recheck {
    /// The gate's settings: the resources whose buyers pass, whether
    /// trials do, the users who pass whatever Figma says; and the answers'
    /// lifetimes (`--paid-lifetime`, `--trial-lifetime`).
    pub(crate) fn new(
        paywall: Paywall,
        resources: &[Resource],
        allow_trial: bool,
        bypass: &[UserId],
        (paid_lifetime, trial_lifetime): (Duration, Duration),
    ) -> Self {
        Self {
            paywall,
            resources: resources.into(),
            allow_trial,
            bypass: bypass.into(),
            paid_lifetime,
            trial_lifetime,
        }
    }

    /// Resolves once the caller who opened a tunnel as `identity`, let in
    /// with `access`, may no longer hold it. One let in on a status chosen
    /// in development (`--demo --development`) keeps it: Figma knows
    /// nothing of that status, and nothing refunds it.
    pub(crate) async fn revoked(
        self,
        identity: Option<Identity>,
        access: PaidAccess,
        chosen_in_development: bool,
    ) {
        if access.via == AccessVia::Bypass || chosen_in_development {
            return std::future::pending().await;
        }
        let Some(identity) = identity else {
            tracing::error!("a tunnel's caller cannot be checked again: closing it");
            return;
        };
        let mut lookup = access.lookup;
        loop {
            tokio::time::sleep(self.fresh_for(lookup.as_ref())).await;
            lookup = match self.ask(&identity, lookup.as_ref()).await {
                Some(again) => Some(again),
                None => return,
            };
        }
    }

    /// How long `lookup`'s answer has left (at least [`AGAIN_AFTER`]).
    fn fresh_for(&self, lookup: Option<&Lookup>) -> Duration {
        let Some(lookup) = lookup else {
            return self.paid_lifetime;
        };
        let lifetime = match lookup.payment_status() {
            PaymentStatus::Trial => self.trial_lifetime,
            _ => self.paid_lifetime,
        };
        lifetime.saturating_sub(lookup.age()).max(AGAIN_AFTER)
    }

    /// The answer that still lets `identity` in, if any: by its token, or
    /// for a signed-in user by each resource in turn, the one that let
    /// them in first.
    async fn ask(&self, identity: &Identity, last: Option<&Lookup>) -> Option<Lookup> {
        match identity {
            Identity::PaymentToken(token) => match self.paywall.lookup_token(token).await {
                Ok(lookup) if self.resources.contains(lookup.resource()) => {
                    self.lets_in(&lookup).then_some(lookup)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::info!(error = %e, "a tunnel's caller could not be checked again: closing it");
                    None
                }
            },
            Identity::User(user) => {
                let first = last.map(Lookup::resource);
                let resources = first
                    .into_iter()
                    .chain(self.resources.iter().filter(|r| Some(*r) != first));
                for resource in resources {
                    match self.paywall.lookup_user(user, resource).await {
                        Ok(lookup)
                            if lookup.user_id() == user
                                && lookup.resource() == resource
                                && self.lets_in(&lookup) =>
                        {
                            return Some(lookup);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::info!(error = %e, "a tunnel's caller could not be checked again");
                        }
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// Whether `lookup`'s answer lets its user in, as the gate decides.
    fn lets_in(&self, lookup: &Lookup) -> bool {
        match lookup.payment_status() {
            PaymentStatus::Paid => true,
            PaymentStatus::Trial => self.allow_trial,
            _ => self.bypass.contains(lookup.user_id()),
        }
    }
}
