//! [`ClientKey`]: which client a request comes from, as the fair share of
//! Figma's budget tells clients apart.
//!
//! # Example
//!
//! ```
//! use std::net::IpAddr;
//! use figma_paywall::identity::ClientKey;
//!
//! let a: IpAddr = "2001:db8::1".parse()?;
//! let b: IpAddr = "2001:db8::2".parse()?;
//! // One IPv6 /64 is one client: a host has a whole /64 to choose from.
//! assert_eq!(ClientKey::from_ip(a), ClientKey::from_ip(b));
//! assert_ne!(ClientKey::from_ip("192.0.2.1".parse()?), ClientKey::from_ip("192.0.2.2".parse()?));
//! // Or whatever the app knows the client by.
//! let key = ClientKey::from_bytes("api-key-of-customer-42");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    hash::{BuildHasher, Hash},
    net::IpAddr,
    sync::OnceLock,
};

/// A client, as the fair share tells clients apart: an IP address (IPv6 by
/// its /64) or any bytes the app chooses, hashed with a key random to this
/// process, so a key never holds what it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u64);

fn hash_of(what: impl Hash) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(what)
}

impl ClientKey {
    /// The client at `ip`; every address of one IPv6 /64 is one client, and
    /// an IPv4 address mapped into IPv6 is the IPv4 address.
    pub fn from_ip(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(hash_of((4u8, v4.octets()))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::from_ip(IpAddr::V4(v4)),
                None => Self(hash_of((6u8, &v6.octets()[..8]))),
            },
        }
    }

    /// A client the app knows by `bytes` (an API key, an account ID).
    pub fn from_bytes(bytes: impl AsRef<[u8]>) -> Self {
        Self(hash_of((0u8, bytes.as_ref())))
    }

    /// A user the app authenticated (its `UserId`): each is a client of
    /// their own.
    pub(crate) fn from_user(user: &str) -> Self {
        Self(hash_of((2u8, user)))
    }

    /// The one client of every lookup that names none (made through
    /// `Paywall::lookup_token` directly).
    pub(crate) fn nobody() -> Self {
        Self(hash_of(3u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_told_apart_by_address_and_ipv6_by_its_64() {
        let ip = |s: &str| ClientKey::from_ip(s.parse().unwrap());
        assert_eq!(ip("192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_ne!(ClientKey::from_bytes("a"), ClientKey::from_bytes("b"));
        assert_ne!(ClientKey::from_bytes([192, 0, 2, 1]), ip("192.0.2.1"));
    }
}
