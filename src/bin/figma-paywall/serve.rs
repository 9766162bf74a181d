//! Serving connections: HTTP/1.1 (what every proxy in front speaks, and
//! plugins' `fetch`) with hyper, at most `--max-connections` at once, a
//! deadline for each request's headers (`--header-timeout`, which closes
//! idle keep-alive connections too), and a graceful shutdown that waits for
//! the requests in flight no longer than `--shutdown-timeout`.

use std::{net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use axum::{body::Body, extract::ConnectInfo, Router};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};
use tower_service::Service;

/// What one client may hold, and how long the gateway waits at shutdown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` ends, then lets the requests
/// in flight finish within the limit. Whether every connection finished.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> bool {
    let places = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop, stopping) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut shutdown = pin!(shutdown);
    let mut full_warned = false;
    loop {
        // A place first: past the cap, new connections wait in the
        // kernel's queue, not as open files here.
        let place = if let Ok(place) = places.clone().try_acquire_owned() {
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
                () = &mut shutdown => break,
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, a connection reset before it
                    // was accepted: wait a moment, go on.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        full_warned = false;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            // A router is always ready.
            app.clone().call(req.map(Body::new))
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _place = place;
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            // Finish the request under way, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let finished = tokio::time::timeout(limits.shutdown_timeout, places.acquire_many(all))
        .await
        .is_ok();
    finished
}
