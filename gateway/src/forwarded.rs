//! What the upstream hears of a request, in reverse-proxy mode: the
//! request's path as it came (never one that climbs out of the upstream's
//! prefix), no hop-by-hop header (RFC 9110 §7.6.1), the forwarding headers
//! as the gateway or a proxy it trusts says (never as the client says), and
//! the caller's identity as the gate found it, for a request with one
//! `Host`. And what a shared cache in front may keep of the answer:
//! nothing.

use std::{fmt::Write, net::IpAddr};

use axum::{
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri},
    response::Response,
};
use figma_paywall::PaymentInformation;
use ipnet::IpNet;

use crate::envelope::envelope;

/// The headers that name the buyer on a 200.
pub(crate) const USER_ID: HeaderName = HeaderName::from_static("x-figma-user-id");
pub(crate) const PAYMENT_STATUS: HeaderName = HeaderName::from_static("x-figma-payment-status");
pub(crate) const RESOURCE_ID: HeaderName = HeaderName::from_static("x-figma-resource-id");
pub(crate) const RESOURCE_TYPE: HeaderName = HeaderName::from_static("x-figma-resource-type");
/// On forward auth's 200: how many seconds ago Figma gave the answer that
/// let the caller in.
pub(crate) const ANSWER_AGE: HeaderName = HeaderName::from_static("x-figma-answer-age");

/// Names the caller in `headers`.
pub(crate) fn identity_headers(info: &PaymentInformation, headers: &mut HeaderMap) {
    for (name, value) in [
        (USER_ID, info.user_id.as_str()),
        (PAYMENT_STATUS, info.payment_status.as_str()),
        (RESOURCE_ID, info.resource_id.as_str()),
        (RESOURCE_TYPE, info.resource_type.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
}

/// Drops the cookies named `names` (the gateway's own: the sign-in
/// session's) from every `Cookie` header, keeping the others as sent.
pub(crate) fn drop_cookies(headers: &mut HeaderMap, names: &[String]) {
    if names.is_empty() || !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name).trim();
            !names.iter().any(|own| own == name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if kept.is_empty() {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(&kept.join("; ")) {
        headers.insert(header::COOKIE, value);
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

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The forwarding headers besides `X-Forwarded-*`: set by the gateway, or
/// passed on from a proxy it trusts. Among them, the headers CDNs and load
/// balancers name the client's address (or the host it asked for) in,
/// which some frameworks read.
const FORWARDING: [HeaderName; 11] = [
    header::FORWARDED,
    X_REAL_IP,
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("x-original-forwarded-for"),
    HeaderName::from_static("x-original-host"),
    HeaderName::from_static("x-host"),
];

/// Headers some frameworks route by instead of the request's path (IIS,
/// Symfony, Laminas): never passed on, whoever sent them, since proxies in
/// front pass them as the client wrote them.
const ROUTING: [HeaderName; 3] = [
    HeaderName::from_static("x-original-uri"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

/// Whether `name` is a forwarding header as the gateway or a proxy spells
/// it: any `X-Forwarded-*` (`-For`, `-Proto`, `-Host`, `-Port`, `-Prefix`,
/// ...) or one of [`FORWARDING`].
pub(crate) fn forwarding(name: &HeaderName) -> bool {
    name.as_str().starts_with("x-forwarded-") || FORWARDING.contains(name)
}

/// The items of the list-valued header `name` (RFC 9110, 5.6.1): every
/// value's comma-separated items, trimmed, empty ones left out.
pub(crate) fn list_items(headers: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// Drops hop-by-hop headers, and those the `Connection` header names.
pub(crate) fn drop_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = list_items(headers, header::CONNECTION)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Whether `name` is one the gateway speaks for (the identity, the answer's
/// age, the forwarding headers), spelt in any way a server behind may read
/// as it: CGI and WSGI servers fold `_` into `-`.
fn spoofs(name: &HeaderName) -> bool {
    // Header names are lower case; `_` reads as `-`. No allocation: this
    // runs for every header of every request.
    let name = name.as_str().as_bytes();
    let like = |a: &[u8], ours: &[u8]| {
        a.len() == ours.len()
            && a.iter()
                .zip(ours)
                .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
    };
    let starts_like = |prefix: &[u8]| name.get(..prefix.len()).is_some_and(|p| like(p, prefix));
    // Every X-Figma-* header is the gateway's (the identity, the answer's
    // age), every X-Forwarded-* a proxy's.
    starts_like(b"x-figma-")
        || starts_like(b"x-forwarded-")
        || FORWARDING
            .iter()
            .chain(&ROUTING)
            .any(|ours| like(name, ours.as_str().as_bytes()))
}

/// The answer to a request with more than one `Host`: 400 (RFC 9112,
/// 3.2), before anything reads it, since the upstream, a cache and a log
/// could each take a different one for the site asked.
pub(crate) fn several_hosts() -> Response {
    envelope(
        StatusCode::BAD_REQUEST,
        "invalid_host",
        "the request has several Host headers: send one",
    )
}

/// The proxies whose forwarding headers are passed on.
#[derive(Clone, Debug)]
pub(crate) struct TrustedProxies(pub(crate) Vec<IpNet>);

impl TrustedProxies {
    pub(crate) fn trusts(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }
}

/// The request's headers as the upstream hears them: the client's own
/// claims dropped, the forwarding headers set for `peer` (the address the
/// connection came from), passed on only from a proxy in `trusted`.
pub(crate) fn request_headers(headers: &mut HeaderMap, peer: IpAddr, trusted: &TrustedProxies) {
    // Read before hop-by-hop headers go: `Connection: host` must not drop
    // the host the upstream is told of.
    let host = headers.get(header::HOST).cloned();
    let from_proxy = trusted.trusts(&peer);
    let said: Vec<(HeaderName, HeaderValue)> = if from_proxy {
        headers
            .iter()
            .filter(|(name, _)| forwarding(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    } else {
        Vec::new()
    };
    drop_hop_by_hop(headers);
    headers.remove(header::HOST);
    let spoofed: Vec<HeaderName> = headers.keys().filter(|n| spoofs(n)).cloned().collect();
    for name in spoofed {
        headers.remove(name);
    }
    for (name, value) in said {
        headers.append(name, value);
    }
    let mut forwarded_for = String::new();
    for hop in list_items(headers, X_FORWARDED_FOR) {
        forwarded_for.push_str(hop);
        forwarded_for.push_str(", ");
    }
    // Writing to a String cannot fail.
    let _ = write!(forwarded_for, "{peer}");
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers
        .entry(X_FORWARDED_PROTO)
        .or_insert(HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.entry(X_FORWARDED_HOST).or_insert(host);
    }
}

/// Whether `uri`'s path climbs (a `.` or `..` segment, percent-encoded or
/// not, between separators `/` or `\\`, percent-encoded or not): refused,
/// so that `--upstream http://host/app` never serves `/app/../admin`, nor
/// `/app/..%2fadmin` to an upstream that decodes before it splits.
pub(crate) fn climbs(uri: &Uri) -> bool {
    let path = uri.path().as_bytes();
    let mut segment = 0;
    let mut at = 0;
    while at < path.len() {
        let separator = match &path[at..] {
            [b'/' | b'\\', ..] => 1,
            [b'%', b'2', b'f' | b'F', ..] | [b'%', b'5', b'c' | b'C', ..] => 3,
            // A dot or a separator encoded twice, for an upstream that
            // decodes twice: refused outright.
            [b'%', b'2', b'5', b'2', b'e' | b'E' | b'f' | b'F', ..]
            | [b'%', b'2', b'5', b'5', b'c' | b'C', ..] => return true,
            _ => 0,
        };
        if separator == 0 {
            at += 1;
            continue;
        }
        if is_dot_segment(&path[segment..at]) {
            return true;
        }
        at += separator;
        segment = at;
    }
    is_dot_segment(&path[segment..])
}

/// Whether `segment` is `.` or `..`, each dot spelt `.` or `%2e` in either
/// case, whatever parameters follow a `;` (`..;x` is `..` to Tomcat, Jetty
/// and Spring). No allocation: this runs for every segment of every request.
fn is_dot_segment(segment: &[u8]) -> bool {
    let end = segment
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(segment.len());
    let mut rest = &segment[..end];
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', b'e' | b'E', tail @ ..] => tail,
            _ => return false,
        };
        dots += 1;
    }
    matches!(dots, 1 | 2)
}

/// What a CDN reads besides `Cache-Control`, dropped from a gated answer:
/// the targeted fields (RFC 9213: `CDN-Cache-Control`, and any
/// `*-CDN-Cache-Control`), `Surrogate-Control` and Akamai's
/// `Edge-Control`, each of which a CDN obeys over `Cache-Control`; and the
/// purge tags (`Surrogate-Key`, `Cache-Tag`), which mean nothing for an
/// answer no shared cache keeps and may name the buyer.
fn for_shared_caches(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.ends_with("cdn-cache-control")
        || matches!(
            name,
            "surrogate-control"
                | "edge-control"
                | "surrogate-key"
                | "cache-tag"
                // nginx's proxy_cache obeys it over Cache-Control.
                | "x-accel-expires"
        )
}

/// The directives of the answer's `Cache-Control`, each trimmed: split at
/// the commas outside quoted strings (`private="set-cookie, x-user"` is
/// one).
fn cache_directives(headers: &HeaderMap) -> Vec<String> {
    let mut directives = Vec::new();
    let mut push = |directive: &str| {
        let directive = directive.trim();
        if !directive.is_empty() {
            directives.push(directive.to_owned());
        }
    };
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        let (mut quoted, mut escaped, mut at) = (false, false, 0);
        for (i, c) in value.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ',' if !quoted => {
                    push(&value[at..i]);
                    at = i + 1;
                }
                _ => {}
            }
        }
        push(&value[at..]);
    }
    directives
}

/// A gated answer is for its caller alone: `Cache-Control: private` unless
/// the upstream already keeps it out of shared caches (an unqualified
/// `private`, or `no-store`); `public`, `s-maxage` and a qualified
/// `private="..."` (which lets a shared cache keep all but the fields it
/// names) give way to `private`; and no CDN's own caching header is left.
pub(crate) fn private_answer(headers: &mut HeaderMap) {
    let theirs: Vec<HeaderName> = headers
        .keys()
        .filter(|name| for_shared_caches(name))
        .cloned()
        .collect();
    for name in theirs {
        headers.remove(name);
    }
    let directives = cache_directives(headers);
    let name = |d: &str| {
        d.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    // What lets a shared cache keep the answer, or part of it.
    let shared = |d: &str| match name(d).as_str() {
        "public" | "s-maxage" => true,
        "private" => d.contains('='),
        _ => false,
    };
    let kept_out = directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("private") || name(d) == "no-store");
    if kept_out && !directives.iter().any(|d| shared(d)) {
        return;
    }
    let kept = directives
        .iter()
        .filter(|d| !shared(d) && name(d) != "private");
    let value = std::iter::once("private")
        .chain(kept.map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ");
    match HeaderValue::from_str(&value) {
        Ok(value) => headers.insert(header::CACHE_CONTROL, value),
        Err(_) => headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private")),
    };
}

/// What identifies the caller, for `Vary` on a gated answer: a cache that
/// keeps it (the browser's) keeps it per token and per session.
const VARY_ON: [&str; 2] = ["x-figma-payment-token", "cookie"];

/// Adds what identifies the caller to the answer's `Vary`, unless it
/// varies on everything already.
pub(crate) fn vary_on_caller(headers: &mut HeaderMap) {
    if !headers.contains_key(header::VARY) {
        for name in VARY_ON {
            headers.append(header::VARY, HeaderValue::from_static(name));
        }
        return;
    }
    let said: Vec<String> = list_items(headers, header::VARY)
        .map(str::to_ascii_lowercase)
        .collect();
    if said.iter().any(|v| v == "*") {
        return;
    }
    for name in VARY_ON {
        if !said.iter().any(|v| v == name) {
            headers.append(header::VARY, HeaderValue::from_static(name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_own_cookies_never_go_upstream_and_the_sites_do() {
        let own = ["figma_session".to_owned(), "figma_oauth".to_owned()];
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; figma_session=sealed; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("figma_oauth=flow"));
        drop_cookies(&mut h, &own);
        assert_eq!(
            h.get_all(header::COOKIE).iter().collect::<Vec<_>>(),
            ["a=1; b=2"]
        );
        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("figma_session=sealed"),
        );
        drop_cookies(&mut only, &own);
        assert!(only.get(header::COOKIE).is_none());
        // A cookie whose name merely starts like one of ours stays.
        let mut near = HeaderMap::new();
        near.insert(header::COOKIE, HeaderValue::from_static("figma_session2=x"));
        drop_cookies(&mut near, &own);
        assert_eq!(near[header::COOKIE], "figma_session2=x");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn loopback() -> TrustedProxies {
        TrustedProxies(vec!["127.0.0.0/8".parse().unwrap()])
    }

    #[test]
    fn a_client_cannot_speak_for_the_gateway_in_any_spelling() {
        let mut h = headers(&[
            ("host", "app.example"),
            ("connection", "host, x-forwarded-host"),
            ("x_figma_user_id", "90003"),
            ("X_Figma_Payment_Status", "PAID"),
            ("x-figma-resource-id", "1"),
            ("x-figma-answer-age", "0"),
            ("x-forwarded-host", "evil.example"),
            ("x_forwarded_for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-port", "8443"),
            ("x_forwarded_prefix", "/admin"),
            ("x-original-url", "/admin"),
            ("x_rewrite_url", "/admin"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("x_client_ip", "1.2.3.4"),
            ("fastly-client-ip", "1.2.3.4"),
            ("x_host", "evil.example"),
            ("accept", "text/html"),
        ]);
        request_headers(&mut h, "203.0.113.7".parse().unwrap(), &loopback());
        let mut left: Vec<String> = h
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "accept: text/html",
                "x-forwarded-for: 203.0.113.7",
                "x-forwarded-host: app.example",
                "x-forwarded-proto: http",
            ]
        );
    }

    #[test]
    fn a_trusted_proxy_s_forwarding_headers_go_on() {
        let mut h = headers(&[
            ("host", "gateway:8080"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "docs.example.com"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-figma-user-id", "5"),
            ("x_forwarded_port", "1"),
            ("true-client-ip", "198.51.100.1"),
            ("fastly-client-ip", "198.51.100.1"),
            ("x-original-url", "/admin"),
        ]);
        request_headers(&mut h, "127.0.0.1".parse().unwrap(), &loopback());
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.0.0.2, 127.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-port"], "443");
        assert!(h.get("x_forwarded_port").is_none());
        assert_eq!(h["true-client-ip"], "198.51.100.1");
        assert_eq!(h["fastly-client-ip"], "198.51.100.1");
        assert!(h.get("x-original-url").is_none());
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "docs.example.com");
        assert!(h.get("x-figma-user-id").is_none());
    }

    #[test]
    fn paths_that_climb_are_found_however_spelt() {
        for path in [
            "/../admin",
            "/a/./b",
            "/%2e%2e/admin",
            "/%2E./x",
            "/a/..",
            "/a\\..\\b",
            "/a/..%2fadmin",
            "/a%2F..%2Fadmin",
            "/a%5c..%5Cadmin",
            "/%2e%2e%2fadmin",
            "/app/..;/admin",
            "/app/.;x/admin",
            "/app/%252e%252e/admin",
            "/app/..%252fadmin",
            "/app%255c..",
        ] {
            assert!(climbs(&path.parse().unwrap()), "{path}");
        }
        for path in [
            "/",
            "/a/b.c",
            "/...",
            "/a..b/",
            "/.well-known/x",
            "/a%2fb",
            "/..%2",
            "/a.%2f.b",
            "/a;b/c",
            "/a..;/b",
            "/100%25/x",
        ] {
            assert!(!climbs(&path.parse().unwrap()), "{path}");
        }
    }

    #[test]
    fn gated_answers_vary_on_the_caller() {
        let mut h = headers(&[("vary", "Accept-Encoding, Cookie")]);
        vary_on_caller(&mut h);
        let vary: Vec<&str> = h
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(vary, ["Accept-Encoding, Cookie", "x-figma-payment-token"]);
        let mut h = headers(&[("vary", "*")]);
        vary_on_caller(&mut h);
        assert_eq!(h.get_all("vary").iter().count(), 1);
    }

    #[test]
    fn gated_answers_stay_out_of_shared_caches() {
        for (upstream, sent) in [
            (None, "private"),
            (Some("public, max-age=600"), "private, max-age=600"),
            (Some("s-maxage=60, max-age=5"), "private, max-age=5"),
            (Some("no-store"), "no-store"),
            (Some("private, max-age=60"), "private, max-age=60"),
            (Some("no-store, public"), "private, no-store"),
            (Some(r#"private="set-cookie""#), "private"),
            (
                Some(r#"PRIVATE="set-cookie, x-user", no-cache="a,\"b", max-age=9"#),
                r#"private, no-cache="a,\"b", max-age=9"#,
            ),
            (Some("  , "), "private"),
        ] {
            let mut h = HeaderMap::new();
            if let Some(value) = upstream {
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
            }
            h.insert("cdn-cache-control", HeaderValue::from_static("max-age=600"));
            h.insert(
                "Cloudflare-CDN-Cache-Control",
                HeaderValue::from_static("max-age=600"),
            );
            h.insert("surrogate-control", HeaderValue::from_static("max-age=600"));
            h.insert("surrogate-key", HeaderValue::from_static("user-2001"));
            h.insert("etag", HeaderValue::from_static("\"1\""));
            private_answer(&mut h);
            assert_eq!(h[header::CACHE_CONTROL], sent, "{upstream:?}");
            let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            left.sort_unstable();
            assert_eq!(left, ["cache-control", "etag"], "{upstream:?}");
        }
    }
}
