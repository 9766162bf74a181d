//! Without `--cors`, a browser's CORS preflight goes to the upstream,
//! which answers CORS itself, before the gate (which never passes one
//! on): as a preflight only. The upstream hears `OPTIONS` with no body
//! and no upgrade, what the browser asks (`Origin`,
//! `Access-Control-Request-*`) and the forwarding headers, never the
//! payment token, a cookie or an identity header; the client gets back
//! the upstream's status and CORS headers (`Access-Control-*`, `Vary`),
//! never its body. A handler that serves any method (Go's `HandleFunc`, a
//! Django function view) so runs for nobody unchecked, with a body or not.

use std::{
    convert::Infallible,
    net::SocketAddr,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::{header, HeaderMap, HeaderName, Method, StatusCode},
    response::Response,
};
use figma_paywall::is_cors_preflight;
use futures_util::future::{BoxFuture, Either};
use tower_service::Service;

use crate::{
    envelope::envelope,
    forwarded::{climbs, forwarding, request_headers},
    proxy::Upstream,
};

/// What a preflight asks, passed on: besides these, only the forwarding
/// headers.
const ASKS: [HeaderName; 4] = [
    header::ORIGIN,
    header::ACCESS_CONTROL_REQUEST_METHOD,
    header::ACCESS_CONTROL_REQUEST_HEADERS,
    // Private Network Access's preflights.
    HeaderName::from_static("access-control-request-private-network"),
];

/// `inner` (the gate, then the proxy), but a preflight goes to the
/// upstream as one first. A service of its own, not a `from_fn`
/// middleware: a request that is no preflight goes on with nothing boxed.
#[derive(Clone)]
pub(crate) struct PreflightFirst<S> {
    upstream: Upstream,
    inner: S,
}

impl<S> PreflightFirst<S> {
    pub(crate) fn new(upstream: Upstream, inner: S) -> Self {
        Self { upstream, inner }
    }
}

impl<S> Service<Request> for PreflightFirst<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if !is_cors_preflight(&req) {
            return Either::Right(self.inner.call(req));
        }
        let upstream = self.upstream.clone();
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Either::Left(Box::pin(async move {
            Ok(match peer {
                Some(peer) => preflight(upstream, peer, req).await,
                None => {
                    tracing::error!("a preflight without the connection's address: refused");
                    envelope(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the gateway could not tell who asked",
                    )
                }
            })
        }))
    }
}

/// The preflight `req`, from `peer`, asked of the upstream as a preflight
/// only.
async fn preflight(upstream: Upstream, peer: SocketAddr, req: Request) -> Response {
    if climbs(req.uri()) {
        return envelope(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "the path has a . or .. segment: ask for the resource by its own path",
        );
    }
    let Ok(target) = upstream.target(req.uri()) else {
        return envelope(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "the path cannot be joined to the upstream's URL",
        );
    };
    let mut headers = req.headers().clone();
    // The forwarding headers as for any request; then only what a
    // preflight asks.
    request_headers(&mut headers, peer.ip(), upstream.trusted());
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| !ASKS.contains(name) && !forwarding(name))
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
    let mut preflight = Request::new(Body::empty());
    *preflight.method_mut() = Method::OPTIONS;
    *preflight.uri_mut() = target;
    *preflight.headers_mut() = headers;
    let answer = match upstream.send(preflight).await {
        Ok(answer) => answer,
        Err(failure) => return failure,
    };
    // It was asked for no upgrade.
    if answer.status().is_informational() {
        tracing::warn!(status = %answer.status(), "the upstream answered a preflight with a 1xx");
        return envelope(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the upstream's answer to the preflight was not one; try again later",
        );
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = answer.status();
    *response.headers_mut() = cors_headers(answer.headers());
    response
}

/// The upstream's CORS headers: `Access-Control-*` and `Vary`.
fn cors_headers(theirs: &HeaderMap) -> HeaderMap {
    theirs
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("access-control-") || *name == header::VARY)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}
