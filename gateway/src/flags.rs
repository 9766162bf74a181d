//! The values of the gateway's flags, as people write them: durations,
//! statuses, secrets. Each says what to write instead.

use std::time::Duration;

/// A secret flag: never printed.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl Secret {
    /// Whether `headers` carry this secret as a bearer token, compared in
    /// constant time.
    pub(crate) fn held_by(&self, headers: &axum::http::HeaderMap) -> bool {
        use subtle::ConstantTimeEq;
        let sent = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        bool::from(sent.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() < 16 {
            return Err("use at least 16 characters (openssl rand -hex 16)".to_owned());
        }
        Ok(Self(s.to_owned()))
    }
}

/// The address to listen on: `127.0.0.1:4180`, `[::1]:4180`, or a name
/// and port such as `localhost:4180` (its first address, IPv4 first).
pub(crate) fn listen_addr(value: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    let usage = "give an address and port, such as 127.0.0.1:4180, [::]:4180 or localhost:4180";
    let addrs: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(value)
        .map_err(|e| format!("{value:?}: {e}; {usage}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{value:?} names no address; {usage}"))
}

/// A duration as people write it: `90s`, `10m`, `1h 30m`.
pub(crate) fn duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{value:?} is not a duration such as 90s, 10m or 1h ({e})"))
}

/// A deny status: a 4xx that tells a proxy "no" (not 407, which asks for
/// proxy credentials).
pub(crate) fn deny_status(value: &str) -> Result<u16, String> {
    let code: u16 = value
        .parse()
        .map_err(|_| format!("{value:?} is not an HTTP status code"))?;
    if (400..500).contains(&code) && code != 407 {
        Ok(code)
    } else {
        Err(format!(
            "{code} is not a refusal: use a 4xx code, such as 402 (the default) or 403 (behind nginx)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_a_name_and_a_port() {
        assert_eq!(
            listen_addr("127.0.0.1:4180").unwrap().to_string(),
            "127.0.0.1:4180"
        );
        assert_eq!(listen_addr("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert_eq!(
            listen_addr("localhost:4180").unwrap().to_string(),
            "127.0.0.1:4180"
        );
        assert!(listen_addr("localhost")
            .unwrap_err()
            .contains("localhost:4180"));
    }
}
