//! Configuration from the environment. One test, so that no other test in
//! this process sees the variables change.

use axum::{routing::post, Router};
use figma_paywall::{ConfigError, PaymentInformation, PaymentsClient, RequirePaid};

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("should have panicked");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

#[test]
fn configuration_errors_are_loud_and_say_what_to_do() {
    std::env::remove_var("FIGMA_TOKEN");
    std::env::remove_var("FIGMA_API_URL");
    assert!(matches!(
        PaymentsClient::from_env(),
        Err(ConfigError::MissingToken)
    ));

    std::env::set_var("FIGMA_TOKEN", "figd_test");
    std::env::set_var("FIGMA_API_URL", "not a url");
    let err = PaymentsClient::from_env().unwrap_err();
    assert!(matches!(err, ConfigError::InvalidBaseUrl { .. }), "{err}");
    assert!(err.to_string().contains("FIGMA_API_URL"), "{err}");
    assert!(!err.to_string().contains("figd_test"));

    std::env::set_var("FIGMA_TOKEN", "has space");
    assert!(matches!(
        PaymentsClient::from_env(),
        Err(ConfigError::InvalidToken(_))
    ));

    // The shortcut panics when the app is built, with the reason.
    std::env::remove_var("FIGMA_TOKEN");
    let msg = panic_message(|| {
        let _app: Router = Router::new()
            .route(
                "/generate",
                post(|p: PaymentInformation| async move { p.user_id.to_string() }),
            )
            .layer(RequirePaid::plugin("1122334455"));
    });
    assert!(msg.contains("FIGMA_TOKEN is not set"), "{msg}");

    // A bad ID panics too, naming the problem.
    let msg = panic_message(|| {
        let _ = RequirePaid::community_file("１２３");
    });
    assert!(msg.contains("ASCII digits"), "{msg}");
}
