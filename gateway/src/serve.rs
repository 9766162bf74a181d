//! Serving connections: HTTP/1.1 (what every proxy in front speaks, and
//! plugins' `fetch`) with hyper, at most `--max-connections` at once and
//! `--max-connections-per-client` from one client address (a proxy in
//! `--trusted-proxies` aside), a deadline for each request's headers (`--header-timeout`, which closes
//! idle keep-alive connections too), and a graceful shutdown that waits for
//! the requests in flight no longer than `--shutdown-timeout`.
//!
//! `--workers` threads serve, each with a runtime of its own (as nginx's
//! worker processes): a worker accepts from a listening socket of its own,
//! which the kernel gives its share of new connections (`SO_REUSEPORT`),
//! serves each connection to its end, and reaches the upstream over
//! connections of its own, so a request never waits for another thread.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    pin::pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo, http::header, Router};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
};
use tower_service::Service;

use crate::forwarded::{several_hosts, TrustedProxies};
use futures_util::future::Either;

/// What one client may hold, and how long the gateway waits at shutdown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_client: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

/// A listening socket on `addr` for each of `workers`, among which the
/// kernel spreads new connections. Refused if anyone listens there
/// already, even another gateway that would share the port.
pub(crate) fn listen(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<TcpListener>> {
    let socket = |reuse_port: bool| {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        // A restart need not wait for the last run's connections to time out.
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        socket.set_reuseport(reuse_port)?;
        #[cfg(not(unix))]
        let _ = reuse_port;
        Ok::<_, std::io::Error>(socket)
    };
    // Without SO_REUSEPORT, so that a socket listening there already, with
    // it or not, is an error; and the port, if the system chooses it.
    let probe = socket(false)?;
    probe.bind(addr)?;
    let addr = probe.local_addr()?;
    drop(probe);
    // Without SO_REUSEPORT (not on Unix), one socket serves them all.
    let sockets = if cfg!(unix) { workers.max(1) } else { 1 };
    (0..sockets)
        .map(|_| {
            let socket = socket(true)?;
            socket.bind(addr)?;
            socket.listen(1024)
        })
        .collect()
}

/// A connection's place among `--max-connections` (and its client's among
/// `--max-connections-per-client`), on each request that asks to upgrade:
/// a WebSocket keeps it until its tunnel ends, after hyper is done with
/// the connection, and ends when the gateway is told to stop.
#[derive(Clone)]
pub(crate) struct Place {
    _held: Arc<(OwnedSemaphorePermit, Option<ClientPlace>)>,
    stopping: watch::Receiver<bool>,
}

/// The connections each client holds, by [`client_of`] their address,
/// shared by the workers.
#[derive(Clone, Default)]
struct Clients(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl Clients {
    /// A place for one more connection of `client`, if it holds fewer than
    /// `cap`.
    fn take(&self, client: IpAddr, cap: usize) -> Option<ClientPlace> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(client).or_default();
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(ClientPlace {
            clients: self.clone(),
            client,
        })
    }
}

/// One connection counted against its client's cap, until dropped.
struct ClientPlace {
    clients: Clients,
    client: IpAddr,
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut held = self.clients.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// The client a connection from `addr` counts for: an IPv4 address (an
/// IPv4-mapped IPv6 one too), or an IPv6 address's /64, which one host
/// usually has whole.
fn client_of(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

impl Place {
    /// Once the gateway is told to stop (at once if it has been).
    pub(crate) async fn stopping(&self) {
        told_to_stop(self.stopping.clone()).await;
    }
}

/// Once the workers are told to stop through `stopping` (at once if they
/// have been, or if the word can no longer come).
async fn told_to_stop(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// What the workers share: the connection places of `--max-connections`,
/// those each client holds, and the word to stop.
#[derive(Clone)]
pub(crate) struct Workers {
    limits: Limits,
    places: Arc<Semaphore>,
    clients: Clients,
    /// `--trusted-proxies`: not capped as one client.
    proxies: Arc<TrustedProxies>,
    stopping: watch::Receiver<bool>,
}

impl Workers {
    /// Workers within `limits`, the proxies in front, `proxies`, not capped
    /// as one client; and what tells them all to stop.
    pub(crate) fn new(limits: Limits, proxies: TrustedProxies) -> (Self, watch::Sender<bool>) {
        let (stop, stopping) = watch::channel(false);
        let workers = Self {
            limits,
            places: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            clients: Clients::default(),
            proxies: Arc::new(proxies),
            stopping,
        };
        (workers, stop)
    }

    /// Serves `app` on `listener` until told to stop, then lets the
    /// requests in flight (every worker's) finish within the limit.
    /// Whether every connection finished.
    pub(crate) async fn serve(self, listener: TcpListener, app: Router) -> bool {
        let Self {
            limits,
            places,
            clients,
            proxies,
            stopping,
        } = self;
        let mut http = http1::Builder::new();
        // Small answers: the head and body copied into one buffer and
        // written at once cost less than a vectored write (3 % in the
        // proxy bench, BENCHMARKS).
        http.timer(TokioTimer::new())
            .writev(false)
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true);
        let mut full_warned = false;
        let mut client_warned: Option<Instant> = None;
        let mut stop_asked = pin!(told_to_stop(stopping.clone()));
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, a connection reset before
                        // it was accepted: wait a moment, go on.
                        tracing::warn!(error = %e, "could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop_asked => break,
            };
            // First its client's place (a proxy in front carries many):
            // past the client's cap, closed at once, so that it neither
            // waits for a place nor holds a file here.
            let client_place = if proxies.trusts(&peer.ip().to_canonical()) {
                None
            } else {
                let client = client_of(peer.ip());
                let cap = limits.max_connections_per_client;
                match clients.take(client, cap) {
                    Some(place) => Some(place),
                    None => {
                        if client_warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!(
                                %client,
                                max_connections_per_client = cap,
                                "a client holds all its connections: its next ones are closed (a proxy in front? name it in --trusted-proxies)"
                            );
                            client_warned = Some(Instant::now());
                        }
                        drop(stream);
                        continue;
                    }
                }
            };
            // Then a place: past the cap, this worker stops accepting (the
            // next connections wait in the kernel's queue, not as open
            // files here) and this one waits for a place, served before any
            // other. A place is only ever held by a connection, so whichever
            // worker's queue a connection is in, it is served in its turn.
            let place = if let Ok(place) = places.clone().try_acquire_owned() {
                full_warned = false;
                place
            } else {
                if !full_warned {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "every connection place is taken: new ones wait (raise --max-connections if the machine allows)"
                    );
                    full_warned = true;
                }
                tokio::select! {
                    place = places.clone().acquire_owned() => match place {
                        Ok(place) => place,
                        Err(_) => break,
                    },
                    () = &mut stop_asked => break,
                }
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let place = Place {
                _held: Arc::new((place, client_place)),
                stopping: stopping.clone(),
            };
            let upgrades_keep = place.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                if req.headers().contains_key(header::UPGRADE) {
                    req.extensions_mut().insert(upgrades_keep.clone());
                }
                // Several Hosts: refused before anything reads the request.
                if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
                    return Either::Left(std::future::ready(Ok(several_hosts())));
                }
                // A router is always ready.
                Either::Right(app.clone().call(req.map(Body::new)))
            });
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::spawn(async move {
                // The place is held until the connection ends.
                let mut connection = pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    () = place.stopping() => {}
                }
                // Finish the request under way, then close.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            });
        }
        drop(listener);
        // Every worker's connections hold places: they are all gone once
        // every place is free again.
        let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
        let finished = tokio::time::timeout(limits.shutdown_timeout, places.acquire_many(all))
            .await
            .is_ok();
        finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_64() {
        let of = |addr: &str| client_of(addr.parse().unwrap()).to_string();
        assert_eq!(of("203.0.113.7"), "203.0.113.7");
        assert_eq!(of("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff::9"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
    }

    #[test]
    fn a_client_s_places_come_back_when_its_connections_end() {
        let clients = Clients::default();
        let client = client_of("203.0.113.7".parse().unwrap());
        let first = clients.take(client, 2).unwrap();
        let second = clients.take(client, 2).unwrap();
        assert!(clients.take(client, 2).is_none());
        // Another client is not counted with it.
        assert!(clients
            .take(client_of("203.0.113.8".parse().unwrap()), 2)
            .is_some());
        drop(first);
        let third = clients.take(client, 2).unwrap();
        drop((second, third));
        assert!(clients.0.lock().unwrap().is_empty());
    }
}
