//! The reverse proxy (`--upstream`): a request that passes the gate goes on
//! to the upstream, bodies streamed both ways, with hop-by-hop headers
//! dropped (RFC 9110 §7.6.1), `X-Forwarded-For/-Proto/-Host` set, and the
//! caller's identity in the `X-Figma-*` headers, which are always removed
//! from what the client sent first.

use std::net::SocketAddr;

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use figma_paywall::{is_cors_preflight, PaidAccess, PaymentInformation};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use crate::auth::{identity_headers, IDENTITY_HEADERS};

/// The upstream, and the client that streams to it.
#[derive(Clone)]
pub(crate) struct Upstream {
    base: Uri,
    client: Client<HttpConnector, Body>,
}

impl Upstream {
    /// `url` must be `http://host[:port][/path]`.
    pub(crate) fn new(url: &str) -> Result<Self, String> {
        let base: Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?} is not a URL: {e}"))?;
        if base.scheme_str() != Some("http") || base.authority().is_none() {
            return Err(format!(
                "--upstream {url:?}: give an http:// URL with a host, such as http://127.0.0.1:3000 (the upstream is reached over a private network or loopback)"
            ));
        }
        let mut connector = HttpConnector::new();
        // Small requests and answers: send them now, not after a delay.
        connector.set_nodelay(true);
        Ok(Self {
            base,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Where `uri` (a path and query) goes upstream.
    fn target(&self, uri: &Uri) -> Result<Uri, String> {
        let prefix = self.base.path().trim_end_matches('/');
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme("http")
            .authority(self.base.authority().cloned().ok_or("no host")?)
            .path_and_query(format!("{prefix}{path_and_query}"))
            .build()
            .map_err(|e| e.to_string())
    }
}

/// The headers that concern one connection only, never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Drops hop-by-hop headers, and those the `Connection` header names.
fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// A request that passed the gate, on its way to the upstream.
pub(crate) async fn forward(
    State(upstream): State<Upstream>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    info: Option<PaymentInformation>,
    access: Option<PaidAccess>,
    mut req: Request,
) -> Response {
    // Only the gate's grant, or a CORS preflight it let by (no --cors: the
    // upstream answers preflights), goes on.
    if access.is_none() && !is_cors_preflight(&req) {
        tracing::error!("a request reached the proxy without the gate's grant");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let target = match upstream.target(req.uri()) {
        Ok(target) => target,
        Err(e) => {
            tracing::warn!(error = %e, "could not build the upstream URI");
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    let headers = req.headers_mut();
    drop_hop_by_hop(headers);
    // Whatever the client claims, the upstream hears only the gate.
    for name in IDENTITY_HEADERS {
        headers.remove(name);
    }
    if let Some(info) = &info {
        identity_headers(info, headers);
    }
    let host = headers.remove(header::HOST);
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
    *req.uri_mut() = target;
    match upstream.client.request(req).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the upstream did not answer");
            (StatusCode::BAD_GATEWAY, "the upstream did not answer").into_response()
        }
    }
}
