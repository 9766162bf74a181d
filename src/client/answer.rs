//! Reading Figma's answers: the success envelope, and the error envelope's
//! message with every secret removed.

use std::time::{Duration, UNIX_EPOCH};

use http::HeaderMap;
use serde::Deserialize;

use crate::{error::MAX_BACK_OFF, AccessToken, Error, PaymentInformation};

/// Figma's message is cut to this many characters in errors.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;

/// A `Retry-After` value in either form of RFC 9110 (seconds, or an
/// HTTP date, read against `now_ms`, Unix milliseconds), capped at
/// [`MAX_BACK_OFF`]; `None` when it is neither.
pub(crate) fn parse_retry_after(value: &str, now_ms: u64) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        let now = UNIX_EPOCH + Duration::from_millis(now_ms);
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_BACK_OFF))
}

#[derive(Deserialize)]
struct SuccessEnvelope {
    #[serde(default)]
    error: bool,
    meta: Option<PaymentInformation>,
}

/// Reads Figma's success envelope `{"status": 200, "error": false, "meta": {...}}`.
///
/// Never panics, whatever the bytes (property-tested below).
pub(crate) fn parse_payments_answer(body: &[u8]) -> Result<PaymentInformation, Error> {
    let malformed = |reason: String| Error::MalformedResponse { reason };
    let envelope: SuccessEnvelope = serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "not Figma's JSON success envelope ({})",
            e.classify_name()
        ))
    })?;
    if envelope.error {
        return Err(malformed("a 200 answer with \"error\": true".into()));
    }
    envelope
        .meta
        .ok_or_else(|| malformed("the success envelope has no `meta`".into()))
}

pub(crate) trait ClassifyName {
    fn classify_name(&self) -> String;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> String {
        // serde_json's message may quote input; keep only its position and kind.
        let kind = match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    message: Option<String>,
    err: Option<String>,
}

/// Figma's `message`, cut short, with any secret that was sent removed.
pub(crate) fn error_message(body: &[u8], secret: Option<&str>, token: &AccessToken) -> String {
    let message = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.message.or(e.err))
        .unwrap_or_else(|| "no message".to_owned());
    let mut message = message;
    // Redact before cutting, so no part of a secret survives the cut.
    for secret in secret.into_iter().chain([token.expose_secret()]) {
        if message.contains(secret) {
            message = message.replace(secret, "<redacted>");
        }
    }
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

pub(crate) fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_MESSAGE_CHARS).collect())
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "proptest")]
    use proptest::prelude::*;
    #[cfg(feature = "proptest")]
    use serde_json::{json, Value};

    use super::*;
    #[cfg(feature = "proptest")]
    use crate::{PaymentStatus, ResourceType};

    #[test]
    fn error_messages_are_short_and_redacted() {
        let token = AccessToken::new("figd_PAT").unwrap();
        let body = br#"{"error":true,"status":400,"message":"bad token ppt_SECRET and figd_PAT"}"#;
        let m = error_message(body, Some("ppt_SECRET"), &token);
        assert_eq!(m, "bad token <redacted> and <redacted>");
        let long_secret = "s".repeat(300);
        let body = format!(r#"{{"message":"{}{long_secret}"}}"#, "x".repeat(150));
        let m = error_message(body.as_bytes(), Some(&long_secret), &token);
        assert!(!m.contains("ss"), "part of a secret survived: {m}");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(5000));
        assert_eq!(
            error_message(long.as_bytes(), None, &token).len(),
            MAX_MESSAGE_CHARS
        );
        assert_eq!(error_message(b"<html>", None, &token), "no message");
    }

    #[test]
    fn retry_after_reads_both_forms_and_is_capped() {
        let now = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:14:50 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        // Days are honoured, years are capped, overflow too.
        assert_eq!(
            parse_retry_after("396749", now),
            Some(Duration::from_secs(396_749))
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_BACK_OFF)
        );
        for junk in ["", "soon", "-5", "1.5", "Tuesday"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn parse_errors_never_quote_input() {
        let err = parse_payments_answer(br#"{"meta": {"user_id": "ppt_SECRET"}}"#).unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(matches!(err, Error::MalformedResponse { .. }));
    }

    #[cfg(feature = "proptest")]
    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    #[cfg(feature = "proptest")]
    proptest! {
        #![proptest_config(config(5_000))]

        #[test]
        fn the_parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_payments_answer(&body);
        }

        #[test]
        fn the_parser_never_panics_on_json(meta in json_value(3)) {
            let body = serde_json::to_vec(&json!({"status": 200, "error": false, "meta": meta})).unwrap();
            if let Ok(info) = parse_payments_answer(&body) {
                prop_assert!(info.user_id.as_str().bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(info.resource_id.as_str().bytes().all(|b| b.is_ascii_digit()));
            }
        }

        #[test]
        fn answers_round_trip(
            user in "[0-9]{1,32}",
            resource in "[0-9]{1,32}",
            kind in prop_oneof![Just("PLUGIN".to_owned()), Just("WIDGET".to_owned()), Just("COMMUNITY_FILE".to_owned()), "[A-Z_]{1,12}"],
            status in prop_oneof![Just("PAID".to_owned()), Just("TRIAL".to_owned()), Just("UNPAID".to_owned()), Just("NOT_SUPPORTED".to_owned()), "[A-Z_]{0,12}"],
            shape in 0..3u8,
            date in proptest::option::of("[0-9T:Z-]{1,24}"),
        ) {
            let status_json = match shape {
                0 => json!({"type": status}),
                1 => json!({"status": status}),
                _ => json!(status),
            };
            let mut meta = json!({"user_id": user, "resource_id": resource, "resource_type": kind, "payment_status": status_json});
            if let Some(date) = &date {
                meta["date_of_purchase"] = json!(date);
            }
            let body = serde_json::to_vec(&json!({"status": 200, "error": false, "meta": meta})).unwrap();
            let info = parse_payments_answer(&body).unwrap();
            prop_assert_eq!(info.payment_status.as_str(), status.as_str());
            prop_assert_eq!(info.resource_type.as_str(), kind.as_str());
            let again: PaymentInformation = serde_json::from_str(&serde_json::to_string(&info).unwrap()).unwrap();
            prop_assert_eq!(&again, &info);
            if matches!(info.payment_status, PaymentStatus::Other(_)) {
                prop_assert!(!["PAID", "TRIAL", "UNPAID", "NOT_SUPPORTED"].contains(&status.as_str()));
            }
            if let ResourceType::Other(name) = &info.resource_type {
                prop_assert!(!["PLUGIN", "WIDGET", "COMMUNITY_FILE"].contains(&name.as_str()));
            }
        }
    }

    /// Arbitrary JSON biased toward the field names of Figma's answer.
    #[cfg(feature = "proptest")]
    fn json_value(depth: u32) -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("user_id".to_owned()),
            Just("resource_id".to_owned()),
            Just("resource_type".to_owned()),
            Just("payment_status".to_owned()),
            Just("date_of_purchase".to_owned()),
            Just("type".to_owned()),
            Just("status".to_owned()),
            "[a-z]{1,6}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            "[0-9]{0,40}".prop_map(Value::String),
            prop_oneof![Just("PAID"), Just("PLUGIN"), Just("TRIAL")].prop_map(|s| json!(s)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(depth, 32, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
