//! Property tests: identity parsing and ID and token checks never panic,
//! and accept exactly what they should. They stand in for a fuzzer in CI
//! (bounded cases). The parser of Figma's answers has its own beside it
//! (`src/client/answer.rs`).

use figma_paywall::{
    identity::{DefaultIdentity, Identity, IdentitySource},
    PluginPaymentToken, UserId,
};
use proptest::prelude::*;

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
}
