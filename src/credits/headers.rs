//! The `RateLimit-Policy` and `RateLimit` fields of
//! draft-ietf-httpapi-ratelimit-headers-11, as Structured Fields.

use http::{HeaderMap, HeaderName, HeaderValue};
use sfv::{Integer, KeyRef, ListSerializer, StringRef};

use super::counts::Used;

/// `RateLimit-Policy`: each window's quota (`q`) and length in seconds
/// (`w`, none for ever).
pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`: what is left of each (`r`) and seconds until it renews
/// (`t`, none for ever).
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn int(v: i64) -> Integer {
    Integer::try_from(v.max(0)).unwrap_or(Integer::MAX)
}

/// Both fields for `windows`, at `now` (Unix seconds).
pub(crate) fn write(headers: &mut HeaderMap, windows: &[Used], now: i64) {
    let mut policy = ListSerializer::new();
    let mut state = ListSerializer::new();
    for u in windows {
        let name = StringRef::constant(u.allowance.window.as_str());
        let amount = i64::try_from(u.allowance.amount).unwrap_or(i64::MAX);
        let item = policy
            .bare_item(name)
            .parameter(KeyRef::constant("q"), int(amount));
        if let Some(end) = u.span.end {
            let _ = item.parameter(KeyRef::constant("w"), int(end.saturating_sub(u.span.start)));
        }
        let item = state
            .bare_item(name)
            .parameter(KeyRef::constant("r"), int(u.remaining()));
        if let Some(t) = u.span.renews_in(now) {
            let _ = item.parameter(
                KeyRef::constant("t"),
                int(i64::try_from(t).unwrap_or(i64::MAX)),
            );
        }
    }
    for (name, value) in [
        (&RATELIMIT_POLICY, policy.finish()),
        (&RATELIMIT, state.finish()),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name.clone(), value);
        }
    }
}
