//! What sign-ins may spend: token exchanges at Figma with the app's client
//! credentials (anyone can start one by following the sign-in link), for
//! the whole replica and for each client, and new flows for each client.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::extract::ConnectInfo;
use http::request::Parts;

use crate::{
    admission::{Gcra, Rate},
    identity::{ClientKey, ClientKeySource},
};

/// How long a client's allowance is remembered after its last sign-in:
/// past a minute it is whole again anyway.
const REMEMBERED: Duration = Duration::from_secs(2 * 60);

/// The most clients remembered at once.
const MOST_CLIENTS: u64 = 100_000;

/// The sign-in budgets of one [`FigmaLogin`](super::FigmaLogin).
pub(super) struct SignIns {
    /// Token exchanges of the whole replica.
    exchanges: Mutex<Gcra>,
    /// Token exchanges of each client.
    exchanges_of: PerClient,
    /// Sign-ins begun by each client.
    flows_of: PerClient,
    /// Which client a request comes from; `None`: the connection's
    /// address (axum's `ConnectInfo`), where the app serves with it.
    client_key: Option<Arc<dyn ClientKeySource>>,
}

impl SignIns {
    /// `per_minute` token exchanges a minute, in bursts of a third of it
    /// (at least 5); a client gets a fifth of that (at least 3, in bursts
    /// of 3) and may begin twice as many sign-ins as it completes.
    pub(super) fn new(per_minute: u32, client_key: Option<Arc<dyn ClientKeySource>>) -> Self {
        let per_minute = per_minute.max(1);
        let per_client = (per_minute / 5).max(3);
        Self {
            exchanges: Mutex::new(Gcra::new(Rate {
                per_minute,
                burst: (per_minute / 3).max(5),
            })),
            exchanges_of: PerClient::new(Rate {
                per_minute: per_client,
                burst: 3,
            }),
            flows_of: PerClient::new(Rate {
                per_minute: 2 * per_client,
                burst: 6,
            }),
            client_key,
        }
    }

    /// Which client `parts` comes from, if known.
    pub(super) fn client_of(&self, parts: &Parts) -> Option<ClientKey> {
        match &self.client_key {
            Some(source) => source.client_key(parts),
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| ClientKey::from_ip(addr.ip())),
        }
    }

    /// A sign-in begun by `client`, or how long until it may begin one.
    pub(super) fn begin(&self, client: Option<ClientKey>) -> Result<(), Duration> {
        self.flows_of.take(client)
    }

    /// A token exchange for `client`, or how long until one is free: the
    /// client's own allowance first, so that a client past it spends none
    /// of everyone's.
    pub(super) fn exchange(&self, client: Option<ClientKey>) -> Result<(), Duration> {
        self.exchanges_of.take(client)?;
        let mut all = self.exchanges.lock().unwrap_or_else(|e| e.into_inner());
        all.take(Instant::now(), 0.0)
    }
}

/// A GCRA for each client, forgotten once whole again.
struct PerClient {
    rate: Rate,
    clients: moka::sync::Cache<ClientKey, Arc<Mutex<Gcra>>>,
}

impl PerClient {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            clients: moka::sync::Cache::builder()
                .max_capacity(MOST_CLIENTS)
                .time_to_idle(REMEMBERED)
                .build(),
        }
    }

    /// Takes one of `client`'s (an unknown client's are not counted), or
    /// says how long until one is free.
    fn take(&self, client: Option<ClientKey>) -> Result<(), Duration> {
        let Some(client) = client else {
            return Ok(());
        };
        let gcra = self
            .clients
            .get_with(client, || Arc::new(Mutex::new(Gcra::new(self.rate))));
        let mut gcra = gcra.lock().unwrap_or_else(|e| e.into_inner());
        gcra.take(Instant::now(), 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(last: u8) -> Option<ClientKey> {
        Some(ClientKey::from_ip([192, 0, 2, last].into()))
    }

    #[test]
    fn one_client_past_its_share_leaves_the_others_theirs() {
        let sign_ins = SignIns::new(30, None);
        // A client's burst is 3 exchanges; the replica's 10.
        for _ in 0..3 {
            assert!(sign_ins.exchange(client(1)).is_ok());
        }
        for _ in 0..20 {
            assert!(sign_ins.exchange(client(1)).is_err());
        }
        // Its refusals spent nothing of the replica's: others still sign in.
        for last in 2..=4 {
            for _ in 0..2 {
                assert!(sign_ins.exchange(client(last)).is_ok(), "client {last}");
            }
        }
        // New flows: six at once, then refused with a wait.
        for _ in 0..6 {
            assert!(sign_ins.begin(client(5)).is_ok());
        }
        let wait = sign_ins.begin(client(5)).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(10));
        assert!(sign_ins.begin(client(6)).is_ok());
    }

    #[test]
    fn clients_not_known_share_the_replica_s_budget_alone() {
        let sign_ins = SignIns::new(30, None);
        for _ in 0..10 {
            assert!(sign_ins.exchange(None).is_ok());
            assert!(sign_ins.begin(None).is_ok());
        }
        assert!(sign_ins.exchange(None).is_err());
    }
}
