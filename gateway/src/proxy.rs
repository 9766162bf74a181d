//! The reverse proxy (`--upstream`): a request that passes the gate (only
//! one with its grant: a preflight went on before it, `preflight.rs`) goes
//! on to the upstream, bodies streamed both ways, with its headers as
//! `forwarded.rs` makes them (the caller's identity in the `X-Figma-*`
//! headers, never the client's own), within `--upstream-timeout` (to
//! start the answer, and for any pause in a body or a WebSocket: see
//! `idle.rs`).

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::{Body, HttpBody},
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use figma_paywall::{
    credits::CreditCharge,
    identity::{DefaultIdentity, IdentitySource, DEVELOPMENT_STATUS_HEADER, PAYMENT_TOKEN_QUERY},
    PaidAccess,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};

use crate::{
    credits::{remaining_header, take_reported},
    envelope::envelope,
    forwarded::{
        climbs, drop_cookies, drop_hop_by_hop, identity_headers, list_items, private_answer,
        request_headers, vary_on_caller, TrustedProxies,
    },
    idle::{splice, Stalled, Stalls},
    recheck::Recheck,
    serve::Place,
};

/// The proxy's handler's state: the upstream, and how a tunnel's caller
/// is checked again.
#[derive(Clone)]
pub(crate) struct Proxy {
    pub(crate) upstream: Upstream,
    pub(crate) recheck: Recheck,
    /// The gateway's own cookies (`--login`'s session), never passed on.
    pub(crate) own_cookies: Arc<[String]>,
}

/// The upstream, and the client that streams to it.
#[derive(Clone)]
pub(crate) struct Upstream {
    base: Uri,
    client: Client<HttpConnector, Body>,
    trusted: TrustedProxies,
    timeout: Duration,
}

impl Upstream {
    /// `url` must be `http://host[:port][/path]`; `trusted` are the proxies
    /// whose forwarding headers go on; the upstream has `timeout` to start
    /// its answer.
    pub(crate) fn new(
        url: &str,
        trusted: TrustedProxies,
        timeout: Duration,
    ) -> Result<Self, String> {
        let base: Uri = url
            .parse()
            .map_err(|e| format!("--upstream {url:?} is not a URL: {e}"))?;
        if base.scheme_str() != Some("http") || base.authority().is_none() {
            return Err(format!(
                "--upstream {url:?}: give an http:// URL with a host, such as http://127.0.0.1:3000 (the upstream is reached over a private network or loopback)"
            ));
        }
        Ok(Self {
            base,
            client: pool(),
            trusted,
            timeout,
        })
    }

    /// The same upstream over connections of its own. Each worker's routes
    /// have their own, so that a connection is driven by the runtime of
    /// the worker that uses it.
    pub(crate) fn own_pool(&self) -> Self {
        Self {
            client: pool(),
            ..self.clone()
        }
    }

    /// The proxies whose forwarding headers go on.
    pub(crate) fn trusted(&self) -> &TrustedProxies {
        &self.trusted
    }

    /// Sends `req`, which has no body, within `--upstream-timeout`: the
    /// upstream's answer, or the gateway's failure to tell the client.
    pub(crate) async fn send(
        &self,
        req: Request,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Response> {
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                tracing::warn!(upstream = %self.base, error = %causes(&e), "the upstream did not answer");
                Err(unavailable())
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    /// `--check`: whether the upstream answers `GET /` (any status), or
    /// why not, naming it.
    pub(crate) async fn probe(&self) -> Result<StatusCode, String> {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = self.base.clone();
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(answer)) => Ok(answer.status()),
            Ok(Err(e)) => Err(format!("{}: {}", self.base, causes(&e))),
            Err(_) => Err(format!(
                "{}: no answer within {:?} (--upstream-timeout)",
                self.base, self.timeout
            )),
        }
    }

    /// The upstream named in a log line or `--check`.
    pub(crate) fn url(&self) -> &Uri {
        &self.base
    }

    /// 504: the upstream did not answer within `--upstream-timeout`.
    fn timed_out(&self) -> Response {
        tracing::warn!(
            upstream = %self.base,
            timeout_secs = self.timeout.as_secs_f64(),
            "the upstream did not answer in time"
        );
        envelope(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            &format!(
                "the upstream did not answer within {} s; try again later",
                self.timeout.as_secs_f64()
            ),
        )
    }

    /// Where `uri` (a path and query) goes upstream: without a plugin
    /// payment token in its query, which the upstream's access logs would
    /// keep.
    pub(crate) fn target(&self, uri: &Uri) -> Result<Uri, String> {
        let prefix = self.base.path().trim_end_matches('/');
        let path = uri.path();
        let query = uri.query().map(without_token).unwrap_or_default();
        Uri::builder()
            .scheme("http")
            .authority(self.base.authority().cloned().ok_or("no host")?)
            .path_and_query(format!("{prefix}{path}{query}"))
            .build()
            .map_err(|e| e.to_string())
    }
}

/// `query` as `?query`, without its `plugin_payment_token` pairs (by the
/// name as the gate decodes it); the rest as sent. Empty if nothing is
/// left.
fn without_token(query: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded = form_urlencoded::parse(name.as_bytes()).next();
            decoded.is_none_or(|(name, _)| name != PAYMENT_TOKEN_QUERY)
        })
        .collect();
    if kept.iter().all(|pair| pair.is_empty()) {
        return String::new();
    }
    format!("?{}", kept.join("&"))
}

/// 502: the upstream could not be reached, or failed to answer.
fn unavailable() -> Response {
    envelope(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "the upstream did not answer; try again later",
    )
}

/// A pool of connections to the upstream.
fn pool() -> Client<HttpConnector, Body> {
    let mut connector = HttpConnector::new();
    // Small requests and answers: send them now, not after a delay.
    connector.set_nodelay(true);
    // One buffer, one write, as the server side (serve.rs).
    Client::builder(TokioExecutor::new())
        .http1_writev(false)
        .build(connector)
}

/// The protocol a request asks to switch to (`Connection: upgrade` and
/// `Upgrade: websocket`), if it asks.
fn upgrade_asked(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks =
        list_items(headers, header::CONNECTION).any(|token| token.eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Copies bytes both ways between the client's upgraded connection and the
/// upstream's, until both close, neither says anything for `idle`, the
/// caller may no longer hold it (`revoked`: a refund), or the gateway
/// stops. The client's connection `place` is held until then.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: Duration,
    place: Option<Place>,
    revoked: impl Future<Output = ()>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "an upgrade did not complete");
            return;
        }
    };
    let spliced = splice(TokioIo::new(client), TokioIo::new(upstream), idle);
    let stopping = async {
        match &place {
            Some(place) => place.stopping().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        spliced = spliced => if let Err(e) = spliced {
            tracing::debug!(error = %e, "an upgraded connection ended");
        },
        () = stopping => tracing::debug!("an upgraded connection closed: the gateway stops"),
        () = revoked => tracing::info!(
            "an upgraded connection closed: the answer that let its caller in no longer does"
        ),
    }
}

/// A request that passed the gate, on its way to the upstream.
pub(crate) async fn forward(
    State(Proxy {
        upstream,
        recheck,
        own_cookies,
    }): State<Proxy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    access: Option<PaidAccess>,
    mut req: Request,
) -> Response {
    // Only the gate's grant goes on (a preflight went to the upstream
    // before the gate, as a preflight only: preflight.rs).
    let Some(access) = access else {
        tracing::error!("a request reached the proxy without the gate's grant");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if climbs(req.uri()) {
        return envelope(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "the path has a . or .. segment: ask for the resource by its own path",
        );
    }
    let target = match upstream.target(req.uri()) {
        Ok(target) => target,
        Err(e) => {
            tracing::warn!(error = %e, "could not build the upstream URI");
            return envelope(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "the path cannot be joined to the upstream's URL",
            );
        }
    };
    // A WebSocket (or any `Upgrade`): the protocol asked for goes on, and
    // once the upstream switches, bytes flow both ways.
    let upgrade = upgrade_asked(req.headers());
    // Who opens a tunnel, as the gate read them, to check them again; and
    // whether the gate (in development mode, or it would have refused)
    // let them in on a status chosen in development, which no refund ends.
    let (identity, chosen_in_development) = match upgrade {
        Some(_) => {
            let (parts, body) = req.into_parts();
            let identity = DefaultIdentity.identify(&parts).ok().flatten();
            let chosen = parts.headers.contains_key(DEVELOPMENT_STATUS_HEADER);
            req = Request::from_parts(parts, body);
            (identity, chosen)
        }
        None => (None, false),
    };
    let client_side = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let place = req.extensions_mut().remove::<Place>();
    let headers = req.headers_mut();
    // Whatever the client claims, the upstream hears only the gate.
    request_headers(headers, peer.ip(), &upstream.trusted);
    drop_cookies(headers, &own_cookies);
    if let Some(info) = access.info() {
        identity_headers(&info, headers);
    }
    let charge = req.extensions().get::<CreditCharge>().cloned();
    let headers = req.headers_mut();
    remaining_header(charge.as_ref(), headers);
    if let Some(protocol) = &upgrade {
        headers.insert(header::UPGRADE, protocol.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    *req.uri_mut() = target;
    // A client's body that pauses too long ends (an empty one needs no
    // watch), and the upstream has `idle` to start its answer once the
    // body is sent: an upload may take as long as it keeps moving.
    let idle = upstream.timeout;
    let (req, sent) = match req.body().is_end_stream() {
        true => (req, None),
        false => {
            let (parts, body) = req.into_parts();
            let (body, sent) = Stalls::telling_end(idle, body);
            (Request::from_parts(parts, Body::new(body)), Some(sent))
        }
    };
    let asked = std::time::Instant::now();
    let served_user = access.lookup.as_ref().map(|l| l.user_id().clone());
    let answer = upstream.client.request(req);
    let answer = async move {
        tokio::pin!(answer);
        if let Some(sent) = sent {
            tokio::select! {
                answer = &mut answer => return Ok(answer),
                _ = sent => {}
            }
        }
        tokio::time::timeout(idle, answer).await
    };
    match answer.await {
        Ok(Ok(mut response)) => {
            let switched = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            let switched_to = response.headers().get(header::UPGRADE).cloned();
            if let (true, Some(client_side)) = (switched, client_side) {
                let upstream_side = hyper::upgrade::on(&mut response);
                let revoked = recheck.revoked(identity, access, chosen_in_development);
                tokio::spawn(tunnel(client_side, upstream_side, idle, place, revoked));
            }
            let (mut parts, body) = response.into_parts();
            drop_hop_by_hop(&mut parts.headers);
            take_reported(charge.as_ref(), &mut parts.headers);
            if let (true, Some(protocol)) = (switched, switched_to) {
                parts.headers.insert(header::UPGRADE, protocol);
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            }
            private_answer(&mut parts.headers);
            vary_on_caller(&mut parts.headers);
            parts.extensions.insert(crate::access::Served {
                user: served_user,
                upstream: Some(asked.elapsed()),
            });
            Response::from_parts(parts, Body::new(Stalls::new(idle, body)))
        }
        Ok(Err(e)) if Stalled::caused(&e) => {
            tracing::debug!(error = %e, "the client's body paused too long");
            envelope(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                &format!(
                    "the request's body sent nothing for {} s; send it without pausing",
                    idle.as_secs_f64()
                ),
            )
        }
        Ok(Err(e)) => {
            tracing::warn!(upstream = %upstream.url(), error = %causes(&e), "the upstream did not answer");
            unavailable()
        }
        Err(_) => upstream.timed_out(),
    }
}

/// An error and its causes, outermost first: "client error (Connect):
/// tcp connect error: Connection refused (os error 111)".
pub(crate) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::without_token;

    #[test]
    fn the_token_leaves_the_query_and_the_rest_stays_as_sent() {
        assert_eq!(without_token("plugin_payment_token=t"), "");
        assert_eq!(
            without_token("a=1&plugin_payment_token=t&b=%20x"),
            "?a=1&b=%20x"
        );
        assert_eq!(
            without_token("plugin%5Fpayment%5Ftoken=t&page=2"),
            "?page=2"
        );
        assert_eq!(without_token("plugin_payment_token"), "");
        assert_eq!(
            without_token("q=plugin_payment_token"),
            "?q=plugin_payment_token"
        );
        assert_eq!(without_token(""), "");
    }
}
