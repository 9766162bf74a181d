//! How an answer is written outside the process: a small versioned binary
//! encoding that decodes to nothing (never a panic, never a guess) when it
//! is truncated, from another version or not an answer at all.

use super::{Invalidation, StoreKey, Stored};
use crate::{PaymentInformation, PaymentStatus, ResourceId, ResourceType, UserId};

/// The encoding version written first in every value.
const VERSION: u8 = 1;

/// `[version][status][type][fetched ms: 8][user][resource][date][other status][other type]`,
/// each string as a one-byte length and its bytes.
pub(crate) fn encode(answer: &Stored) -> Vec<u8> {
    let (info, fetched_ms) = (&answer.info, answer.fetched_ms);
    let status = match info.payment_status {
        PaymentStatus::Paid => 1,
        PaymentStatus::Trial => 2,
        PaymentStatus::Unpaid => 3,
        PaymentStatus::NotSupported => 4,
        _ => 0,
    };
    let kind = match info.resource_type {
        ResourceType::Plugin => 1,
        ResourceType::Widget => 2,
        ResourceType::CommunityFile => 3,
        _ => 0,
    };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[VERSION, status, kind]);
    out.extend_from_slice(&fetched_ms.to_le_bytes());
    let mut string = |s: &str| {
        let s = &s.as_bytes()[..s.len().min(255)];
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    };
    string(info.user_id.as_str());
    string(info.resource_id.as_str());
    string(info.date_of_purchase.as_deref().unwrap_or(""));
    string(if status == 0 {
        info.payment_status.as_str()
    } else {
        ""
    });
    string(if kind == 0 {
        info.resource_type.as_str()
    } else {
        ""
    });
    out
}

/// The inverse of [`encode`]; `None` for anything else (another version,
/// truncated, invalid IDs). Never panics.
pub(crate) fn decode(bytes: &[u8]) -> Option<Stored> {
    let (&[version, status, kind], rest) = bytes.split_first_chunk::<3>()?;
    if version != VERSION {
        return None;
    }
    let (fetched, mut rest) = rest.split_first_chunk::<8>()?;
    let mut string = || -> Option<&str> {
        let (&len, tail) = rest.split_first()?;
        let (s, tail) = tail.split_at_checked(usize::from(len))?;
        rest = tail;
        std::str::from_utf8(s).ok()
    };
    let user_id = UserId::new(string()?).ok()?;
    let resource_id = ResourceId::new(string()?).ok()?;
    let date = string()?;
    let other_status = string()?;
    let other_kind = string()?;
    let payment_status = match status {
        1 => PaymentStatus::Paid,
        2 => PaymentStatus::Trial,
        3 => PaymentStatus::Unpaid,
        4 => PaymentStatus::NotSupported,
        _ => PaymentStatus::from_name(other_status),
    };
    let resource_type = match kind {
        1 => ResourceType::Plugin,
        2 => ResourceType::Widget,
        3 => ResourceType::CommunityFile,
        _ => serde_json::from_value(serde_json::Value::String(other_kind.to_owned())).ok()?,
    };
    Some(Stored {
        info: PaymentInformation {
            user_id,
            resource_id,
            resource_type,
            payment_status,
            date_of_purchase: (!date.is_empty()).then(|| date.into()),
        },
        fetched_ms: u64::from_le_bytes(*fetched),
    })
}

/// The body of a message between replicas: `[time, Unix ms: 8][text]`.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn encode_message(at_ms: u64, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend_from_slice(&at_ms.to_le_bytes());
    out.extend_from_slice(text);
    out
}

/// The inverse of [`encode_message`].
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn decode_message(body: &[u8]) -> Option<(u64, &[u8])> {
    let (at, text) = body.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*at), text))
}

/// An invalidation as text: `all`, `u:<user ID>` or `k:<key hex>`.
pub(crate) fn encode_invalidation(what: &Invalidation) -> String {
    match what {
        Invalidation::All => "all".to_owned(),
        Invalidation::User(user) => format!("u:{user}"),
        Invalidation::Key(key) => format!("k:{}", key.hex()),
    }
}

/// The inverse of [`encode_invalidation`]; `None` for anything else.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn decode_invalidation(text: &[u8]) -> Option<Invalidation> {
    let text = std::str::from_utf8(text).ok()?;
    if text == "all" {
        return Some(Invalidation::All);
    }
    if let Some(user) = text.strip_prefix("u:") {
        return UserId::new(user).ok().map(Invalidation::User);
    }
    let key = text.strip_prefix("k:")?;
    u128::from_str_radix(key, 16)
        .ok()
        .map(|k| Invalidation::Key(StoreKey(k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "proptest")]
    use proptest::prelude::*;

    #[test]
    fn invalidations_and_messages_are_read_or_ignored() {
        for what in [
            Invalidation::All,
            Invalidation::User(UserId::new("2001").unwrap()),
            Invalidation::Key(StoreKey(0xab)),
        ] {
            let text = encode_invalidation(&what);
            assert_eq!(decode_invalidation(text.as_bytes()), Some(what));
        }
        for junk in [&b"u:-1"[..], b"k:xyz", b"ALL", b"\xff\xfe", b""] {
            assert_eq!(decode_invalidation(junk), None, "{junk:?}");
        }
        let body = encode_message(1_700_000_000_000, b"all");
        assert_eq!(
            decode_message(&body),
            Some((1_700_000_000_000, &b"all"[..]))
        );
        assert_eq!(decode_message(&body[..7]), None);
    }

    #[cfg(feature = "proptest")]
    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn values_round_trip(
            user in "[0-9]{1,32}", resource in "[0-9]{1,32}",
            status in prop_oneof![Just("PAID".to_owned()), Just("TRIAL".to_owned()), Just("UNPAID".to_owned()), Just("NOT_SUPPORTED".to_owned()), "[A-Z_]{1,12}"],
            kind in prop_oneof![Just("PLUGIN".to_owned()), Just("WIDGET".to_owned()), Just("COMMUNITY_FILE".to_owned()), "[A-Z_]{1,12}"],
            date in proptest::option::of("[0-9T:Z-]{1,24}"),
            fetched in any::<u64>(),
        ) {
            let info = PaymentInformation {
                user_id: UserId::new(&user).unwrap(),
                resource_id: ResourceId::new(&resource).unwrap(),
                resource_type: serde_json::from_value(serde_json::Value::String(kind)).unwrap(),
                payment_status: PaymentStatus::from_name(&status),
                date_of_purchase: date.map(Into::into),
            };
            let answer = Stored { info, fetched_ms: fetched };
            let bytes = encode(&answer);
            prop_assert!(bytes.len() < 3 + 8 + 5 + 32 + 32 + 24 + 12 + 12);
            prop_assert_eq!(decode(&bytes), Some(answer));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn other_versions_are_ignored() {
        let info: PaymentInformation = serde_json::from_str(
            r#"{"user_id":"1","resource_id":"2","resource_type":"PLUGIN","payment_status":"PAID"}"#,
        )
        .unwrap();
        let mut bytes = encode(&Stored {
            info,
            fetched_ms: 7,
        });
        assert!(decode(&bytes).is_some());
        bytes[0] = 2;
        assert_eq!(decode(&bytes), None);
        assert_eq!(decode(&bytes[..5]), None);
    }
}
