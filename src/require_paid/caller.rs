//! Which client a request comes from ([`ClientKeySource`]), so that cold
//! lookups share Figma's budget fairly among clients; see
//! [`RequirePaidLayer::client_key`](crate::RequirePaidLayer::client_key).
//!
//! # Example
//!
//! ```
//! use figma_paywall::{identity::ForwardedFor, AccessToken, Paywall, PaymentsClient, RequirePaidLayer, Resource};
//!
//! # let paywall = Paywall::new(PaymentsClient::new(AccessToken::new("t")?)?);
//! // Behind a load balancer on 10.0.0.0/8: the client is the address it
//! // appended to X-Forwarded-For, not whatever the client wrote there.
//! let layer = RequirePaidLayer::new(&paywall, Resource::plugin("1")?)
//!     .client_key(ForwardedFor::trusting(["10.0.0.0/8".parse()?]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use axum::extract::ConnectInfo;
use http::request::Parts;
use ipnet::IpNet;

use crate::ClientKey;

/// Where a gate finds which client a request comes from. `None`: not
/// known, and no share is kept for it.
///
/// Closures `Fn(&Parts) -> Option<ClientKey>` implement it, as do
/// [`PeerAddr`] (the default) and [`ForwardedFor`].
pub trait ClientKeySource: Send + Sync + 'static {
    /// The client of a request.
    fn client_key(&self, parts: &Parts) -> Option<ClientKey>;
}

impl<F> ClientKeySource for F
where
    F: Fn(&Parts) -> Option<ClientKey> + Send + Sync + 'static,
{
    fn client_key(&self, parts: &Parts) -> Option<ClientKey> {
        self(parts)
    }
}

/// The address the connection comes from: axum's `ConnectInfo<SocketAddr>`,
/// which an app serving with
/// `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`
/// puts on every request. Behind a proxy every request comes from the
/// proxy: use [`ForwardedFor`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerAddr;

impl ClientKeySource for PeerAddr {
    fn client_key(&self, parts: &Parts) -> Option<ClientKey> {
        let peer = peer_ip(parts);
        if peer.is_none() {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!("no ConnectInfo<SocketAddr> on requests, so clients share the budget unfairly: serve with into_make_service_with_connect_info, or set client_key");
            }
        }
        peer.map(ClientKey::from_ip)
    }
}

fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// The client address that proxies the app trusts appended to
/// `X-Forwarded-For`: walking the header from the right, the first address
/// that is not one of the trusted proxies. The left-most entries are
/// whatever the client wrote, and are never used. A request that does not
/// come from a trusted proxy is keyed by its peer address.
#[derive(Debug, Clone)]
pub struct ForwardedFor {
    trusted: Arc<[IpNet]>,
}

impl ForwardedFor {
    /// Trusts the proxies in `networks` (a load balancer's subnet, a CDN's
    /// ranges) to append the address they got the request from.
    pub fn trusting(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            trusted: networks.into_iter().collect(),
        }
    }

    fn is_trusted(&self, ip: &IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }
}

impl ClientKeySource for ForwardedFor {
    fn client_key(&self, parts: &Parts) -> Option<ClientKey> {
        let peer = peer_ip(parts)?;
        if !self.is_trusted(&peer) {
            return Some(ClientKey::from_ip(peer));
        }
        let mut hops = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| {
                let list: Vec<&str> = value.to_str().unwrap_or("").split(',').collect();
                list.into_iter().rev()
            });
        // The nearest address no trusted proxy owns; an unreadable one
        // ends the walk (nobody trusted vouches for what lies beyond).
        let client = hops.find_map(|hop| match hop.trim().parse::<IpAddr>() {
            Ok(ip) if self.is_trusted(&ip) => None,
            Ok(ip) => Some(Some(ip)),
            Err(_) => Some(None),
        });
        Some(ClientKey::from_ip(client.flatten().unwrap_or(peer)))
    }
}

/// A gate's [`ClientKeySource`], shared by its clones.
#[derive(Clone)]
pub(crate) struct ClientKeys(pub(crate) Arc<dyn ClientKeySource>);

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKeys(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, forwarded: &[&str]) -> Parts {
        let mut builder = http::Request::builder();
        for value in forwarded {
            builder = builder.header("x-forwarded-for", *value);
        }
        let mut req = builder.body(()).unwrap();
        let addr: SocketAddr = format!("{peer}:443").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        req.into_parts().0
    }

    fn ip(s: &str) -> Option<ClientKey> {
        Some(ClientKey::from_ip(s.parse().unwrap()))
    }

    #[test]
    fn the_peer_is_the_client_unless_a_trusted_proxy_says_otherwise() {
        let source = ForwardedFor::trusting(["10.0.0.0/8".parse().unwrap()]);
        // From the internet directly: the header is the client's own words.
        assert_eq!(
            source.client_key(&parts("203.0.113.9", &["1.2.3.4"])),
            ip("203.0.113.9")
        );
        // Through the load balancer: the address it appended.
        assert_eq!(
            source.client_key(&parts("10.0.0.2", &["1.2.3.4, 198.51.100.7"])),
            ip("198.51.100.7")
        );
        // Through two trusted hops, in two headers.
        assert_eq!(
            source.client_key(&parts("10.0.0.2", &["6.6.6.6, 198.51.100.7", "10.1.1.1"])),
            ip("198.51.100.7")
        );
        // Garbage nearest the proxy: nobody vouches for what lies beyond.
        assert_eq!(
            source.client_key(&parts("10.0.0.2", &["198.51.100.7, not-an-ip"])),
            ip("10.0.0.2")
        );
        assert_eq!(
            PeerAddr.client_key(&parts("192.0.2.1", &["1.2.3.4"])),
            ip("192.0.2.1")
        );
        let no_peer = http::Request::new(()).into_parts().0;
        assert_eq!(PeerAddr.client_key(&no_peer), None);
    }
}
