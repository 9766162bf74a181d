//! Serving connections: HTTP/1.1 (what every proxy in front speaks, and
//! plugins' `fetch`) with hyper, at most `--max-connections` at once, a
//! deadline for each request's headers (`--header-timeout`, which closes
//! idle keep-alive connections too), and a graceful shutdown that waits for
//! the requests in flight no longer than `--shutdown-timeout`.
//!
//! `--workers` threads serve, each with a runtime of its own (as nginx's
//! worker processes): a worker accepts from a listening socket of its own,
//! which the kernel gives its share of new connections (`SO_REUSEPORT`),
//! serves each connection to its end, and reaches the upstream over
//! connections of its own, so a request never waits for another thread.

use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use axum::{body::Body, extract::ConnectInfo, http::header, Router};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
};
use tower_service::Service;

/// What one client may hold, and how long the gateway waits at shutdown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
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

/// A connection's place among `--max-connections`, on each request that asks
/// to upgrade: a WebSocket keeps it until its tunnel ends, after hyper is
/// done with the connection, and ends when the gateway is told to stop.
#[derive(Clone)]
pub(crate) struct Place {
    _permit: Arc<OwnedSemaphorePermit>,
    stopping: watch::Receiver<bool>,
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
/// and the word to stop.
#[derive(Clone)]
pub(crate) struct Workers {
    limits: Limits,
    places: Arc<Semaphore>,
    stopping: watch::Receiver<bool>,
}

impl Workers {
    /// Workers within `limits`, and what tells them all to stop.
    pub(crate) fn new(limits: Limits) -> (Self, watch::Sender<bool>) {
        let (stop, stopping) = watch::channel(false);
        let workers = Self {
            limits,
            places: Arc::new(Semaphore::new(limits.max_connections.max(1))),
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
                _permit: Arc::new(place),
                stopping: stopping.clone(),
            };
            let upgrades_keep = place.clone();
            let service = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                if req.headers().contains_key(header::UPGRADE) {
                    req.extensions_mut().insert(upgrades_keep.clone());
                }
                // A router is always ready.
                app.clone().call(req.map(Body::new))
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
