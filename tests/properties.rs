//! Property tests: identity parsing, ID checks and the parser of Figma's
//! answers never panic, and accept exactly what they should. These stand in
//! for a fuzzer in CI (bounded cases); `fuzz/` has a cargo-fuzz target for
//! longer runs.

use figma_paywall::{
    parse_payments_answer, require_paid::identity::DefaultIdentity, Identity, IdentitySource,
    PaymentInformation, PaymentStatus, PluginPaymentToken, ResourceType, UserId,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(5_000))]

    #[test]
    fn user_ids_are_exactly_1_to_32_ascii_digits(s in "\\PC{0,40}|[0-9]{0,40}") {
        let valid = !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
        prop_assert_eq!(UserId::new(&s).is_ok(), valid);
    }

    #[test]
    fn tokens_are_exactly_bounded_visible_ascii(s in "\\PC{0,40}|[!-~]{0,40}") {
        let valid = !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        prop_assert_eq!(PluginPaymentToken::new(&s).is_ok(), valid);
    }

    #[test]
    fn identity_parsing_never_panics(
        headers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3),
        query in "[a-z_%0-9A-F&=+#;]{0,80}",
    ) {
        let mut builder = http::Request::builder();
        if let Ok(uri) = format!("/x?{query}").parse::<http::Uri>() {
            builder = builder.uri(uri);
        }
        for value in &headers {
            if let Ok(value) = http::HeaderValue::from_bytes(value) {
                builder = builder.header("x-figma-payment-token", value);
            }
        }
        let Ok(req) = builder.body(()) else { return Ok(()) };
        let (parts, ()) = req.into_parts();
        if let Ok(Some(Identity::PaymentToken(token))) = DefaultIdentity.identify(&parts) {
            let t = token.expose_secret();
            prop_assert!(!t.is_empty() && t.len() <= 2048 && t.bytes().all(|b| b.is_ascii_graphic()));
        }
    }

    #[test]
    fn the_answer_parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_payments_answer(&body);
    }

    #[test]
    fn the_answer_parser_never_panics_on_json(meta in json_value(3)) {
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
