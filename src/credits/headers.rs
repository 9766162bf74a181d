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

/// `RateLimit-Policy` for `windows`: each one's quota and length.
pub(crate) fn policy(windows: &[Used]) -> Option<HeaderValue> {
    let mut buf = String::with_capacity(96);
    let mut list = ListSerializer::with_buffer(&mut buf);
    for u in windows {
        let amount = i64::try_from(u.allowance.amount).unwrap_or(i64::MAX);
        let item = list
            .bare_item(StringRef::constant(u.allowance.window.as_str()))
            .parameter(KeyRef::constant("q"), int(amount));
        if let Some(end) = u.span.end {
            let _ = item.parameter(KeyRef::constant("w"), int(end.saturating_sub(u.span.start)));
        }
    }
    list.finish()?;
    // The string itself, not a copy.
    HeaderValue::try_from(buf).ok()
}

/// `RateLimit` for `windows`, each `delta` more used, at `now` (Unix
/// seconds): what is left of each, and when it renews.
pub(crate) fn state(windows: &[Used], delta: i64, now: i64) -> Option<HeaderValue> {
    let mut buf = String::with_capacity(96);
    let mut list = ListSerializer::with_buffer(&mut buf);
    for u in windows {
        let item = list
            .bare_item(StringRef::constant(u.allowance.window.as_str()))
            .parameter(
                KeyRef::constant("r"),
                int(u.remaining().saturating_sub(delta)),
            );
        if let Some(t) = u.span.renews_in(now) {
            let _ = item.parameter(
                KeyRef::constant("t"),
                int(i64::try_from(t).unwrap_or(i64::MAX)),
            );
        }
    }
    list.finish()?;
    HeaderValue::try_from(buf).ok()
}

/// Both fields for `windows`, each `delta` more used, at `now`; `policy`
/// if it is at hand already.
pub(crate) fn write(
    headers: &mut HeaderMap,
    windows: &[Used],
    policy: Option<HeaderValue>,
    delta: i64,
    now: i64,
) {
    if let (Some(policy), Some(state)) = (
        policy.or_else(|| self::policy(windows)),
        state(windows, delta, now),
    ) {
        headers.insert(RATELIMIT_POLICY.clone(), policy);
        headers.insert(RATELIMIT.clone(), state);
    }
}
