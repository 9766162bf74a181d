//! The access log: one line a request at `info` (target
//! `figma_paywall::access`), as nginx's access log, through tower-http's
//! `TraceLayer`. It names the client, the method and the path (never the
//! query, where a token may be), the status, a refusal's reason, the user
//! the gate let in, the time taken, the body's length and the upstream's
//! time.

use std::time::Duration;

use axum::{
    body::Body,
    extract::ConnectInfo,
    http::{header, Request, Response},
};
use figma_paywall::{RefusalReason, UserId};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{MakeSpan, OnResponse, TraceLayer},
};
use tracing::Span;

/// What the proxy and forward auth tell the access log of a request they
/// answered: whom the gate let in, and how long the upstream took.
#[derive(Debug, Clone, Default)]
pub(crate) struct Served {
    pub(crate) user: Option<UserId>,
    pub(crate) upstream: Option<Duration>,
}

/// The layer that writes the access log.
pub(crate) type AccessLog =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, Spans, (), Line, (), (), ()>;

/// The layer; `--access-log off` leaves it out.
pub(crate) fn layer() -> AccessLog {
    TraceLayer::new_for_http()
        .make_span_with(Spans)
        .on_request(())
        .on_response(Line)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// A request's span: the client, the method and the path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spans;

impl<B> MakeSpan<B> for Spans {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        let client = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        tracing::info_span!(
            target: "figma_paywall::access",
            "request",
            client = client.map(tracing::field::display),
            method = %req.method(),
            // The path alone: a query may hold a payment token.
            path = req.uri().path(),
        )
    }
}

/// The line written once the answer's head is ready.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line;

impl OnResponse<Body> for Line {
    fn on_response(self, response: &Response<Body>, latency: Duration, span: &Span) {
        let served = response.extensions().get::<Served>();
        let reason = response
            .extensions()
            .get::<RefusalReason>()
            .map(|r| r.as_str());
        let bytes = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        tracing::info!(
            target: "figma_paywall::access",
            parent: span,
            status = response.status().as_u16(),
            reason,
            user = served.and_then(|s| s.user.as_ref()).map(tracing::field::display),
            ms = latency.as_secs_f64() * 1000.0,
            bytes,
            upstream_ms = served.and_then(|s| s.upstream).map(|d| d.as_secs_f64() * 1000.0),
            "answered"
        );
    }
}
