//! What sign-ins may spend: token exchanges at Figma with the app's client
//! credentials (anyone can start one by following the sign-in link), and
//! sign-ins begun, each a budget of the replica's shared among clients.

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
    /// Token exchanges at Figma.
    exchanges: Shared,
    /// Sign-ins begun.
    flows: Shared,
    /// Which client a request comes from; `None`: the connection's
    /// address (axum's `ConnectInfo`), where the app serves with it.
    client_key: Option<Arc<dyn ClientKeySource>>,
}

impl SignIns {
    /// `per_minute` token exchanges a minute, in bursts of a third of it
    /// (at least 5), of which a client's share is a fifth (at least 3, in
    /// bursts of 3); sign-ins begun, twice as many of each.
    pub(super) fn new(per_minute: u32, client_key: Option<Arc<dyn ClientKeySource>>) -> Self {
        let per_minute = per_minute.max(1);
        let all = Rate {
            per_minute,
            burst: (per_minute / 3).max(5),
        };
        let each = Rate {
            per_minute: (per_minute / 5).max(3),
            burst: 3,
        };
        let twice = |rate: Rate| Rate {
            per_minute: 2 * rate.per_minute,
            burst: 2 * rate.burst,
        };
        Self {
            exchanges: Shared::new(all, each),
            flows: Shared::new(twice(all), twice(each)),
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
        self.flows.take(client)
    }

    /// A token exchange for `client`, or how long until one is free.
    pub(super) fn exchange(&self, client: Option<ClientKey>) -> Result<(), Duration> {
        self.exchanges.take(client)
    }
}

/// A budget of the replica's, shared among clients: within its own share a
/// client takes from the whole budget; past it, or when it is not known,
/// only while more than half the burst would be left, which the clients
/// within their shares keep. One client cannot lock the others out, and
/// where every visitor looks like one client (a proxy the app was not told
/// of), they still share the replica's budget between them.
struct Shared {
    all: Mutex<Gcra>,
    /// Half the replica's burst, in intervals.
    reserve: f64,
    each: PerClient,
}

impl Shared {
    fn new(all: Rate, each: Rate) -> Self {
        Self {
            reserve: f64::from(all.burst) / 2.0,
            all: Mutex::new(Gcra::new(all)),
            each: PerClient::new(each),
        }
    }

    fn take(&self, client: Option<ClientKey>) -> Result<(), Duration> {
        let within_share = client.is_some_and(|client| self.each.take(client).is_ok());
        let reserve = if within_share { 0.0 } else { self.reserve };
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        all.take(Instant::now(), reserve)
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

    /// Takes one of `client`'s, or says how long until one is free.
    fn take(&self, client: ClientKey) -> Result<(), Duration> {
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
    fn one_client_past_its_share_leaves_the_others_half_the_burst() {
        // 30 a minute in bursts of 10; a client's share 3 at once.
        let sign_ins = SignIns::new(30, None);
        let mut taken = 0;
        while sign_ins.exchange(client(1)).is_ok() {
            taken += 1;
        }
        // Its 3, then the replica's down to half its burst: 3 + 2.
        assert_eq!(taken, 5);
        // Others within their shares take the rest.
        for last in 2..=6 {
            assert!(sign_ins.exchange(client(last)).is_ok(), "client {last}");
        }
        let wait = sign_ins.exchange(client(7)).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(2));
    }

    #[test]
    fn visitors_who_look_like_one_client_share_the_replica_s_budget() {
        let sign_ins = SignIns::new(30, None);
        // Unknown clients: half the burst.
        for _ in 0..5 {
            assert!(sign_ins.exchange(None).is_ok());
        }
        assert!(sign_ins.exchange(None).is_err());
        // One key for everyone (a proxy nobody set up): its share, then
        // what is left above half the burst.
        let sign_ins = SignIns::new(30, None);
        let taken = (0..20)
            .filter(|_| sign_ins.begin(client(1)).is_ok())
            .count();
        // Sign-ins begun: the replica's burst of 20 down to half.
        assert_eq!(taken, 10);
    }
}
