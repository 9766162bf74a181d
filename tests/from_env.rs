//! Configuration from the environment. One test, so that no other test in
//! this process sees the variables change.

use axum::{routing::post, Router};
use figma_paywall::{ConfigError, PaymentInformation, PaymentsClient, Paywall, RequirePaid};

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

    // The budget: FIGMA_RATE_LIMIT and FIGMA_RATE_BURST, checked.
    std::env::set_var("FIGMA_TOKEN", "figd_test");
    std::env::remove_var("FIGMA_API_URL");
    assert_eq!(PaymentsClient::from_env().unwrap().rate_limit(), (9, 3));
    for bad in ["0", "-5", "fifty", "1.5", "", "99999999999"] {
        std::env::set_var("FIGMA_RATE_LIMIT", bad);
        let err = PaymentsClient::from_env().unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(
                err,
                ConfigError::InvalidVariable {
                    name: "FIGMA_RATE_LIMIT",
                    ..
                }
            ),
            "{bad:?}: {message}"
        );
        assert!(
            message.starts_with("FIGMA_RATE_LIMIT must be a positive whole number")
                && message.contains("FIGMA_RATE_LIMIT=50"),
            "{message}"
        );
        assert!(Paywall::from_env().is_err());
    }
    std::env::set_var("FIGMA_RATE_LIMIT", " 50 ");
    assert_eq!(PaymentsClient::from_env().unwrap().rate_limit(), (50, 5));
    std::env::set_var("FIGMA_RATE_BURST", "8");
    assert_eq!(Paywall::from_env().unwrap().client().rate_limit(), (50, 8));
    std::env::set_var("FIGMA_RATE_BURST", "none");
    let err = PaymentsClient::from_env().unwrap_err();
    assert!(
        err.to_string().starts_with("FIGMA_RATE_BURST must be"),
        "{err}"
    );
    std::env::remove_var("FIGMA_RATE_LIMIT");
    std::env::set_var("FIGMA_RATE_BURST", "2");
    assert_eq!(PaymentsClient::from_env().unwrap().rate_limit(), (9, 2));
    std::env::remove_var("FIGMA_RATE_BURST");

    // The store and the key that seals it.
    let dir = std::env::temp_dir().join(format!("figma-paywall-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::env::set_var("FIGMA_PAYWALL_STORE", dir.join("answers.redb"));
    std::env::set_var(
        "FIGMA_PAYWALL_KEY",
        "a secret of at least 32 bytes for the env test",
    );
    let paywall = Paywall::from_env().unwrap();
    assert!(format!("{paywall:?}").contains("answers.redb"));
    assert!(!format!("{paywall:?}").contains("a secret of"));
    drop(paywall);
    std::env::set_var("FIGMA_PAYWALL_KEY", "too short");
    let err = Paywall::from_env().unwrap_err().to_string();
    assert!(
        err.starts_with("FIGMA_PAYWALL_KEY is not usable: a signing key must be at least 32 bytes"),
        "{err}"
    );
    std::env::remove_var("FIGMA_PAYWALL_KEY");
    std::env::set_var(
        "FIGMA_PAYWALL_STORE",
        dir.join("no-such-folder").join("answers.redb"),
    );
    let err = Paywall::from_env().unwrap_err().to_string();
    assert!(
        err.contains("no-such-folder") && err.contains("cannot be used"),
        "{err}"
    );
    std::env::remove_var("FIGMA_PAYWALL_STORE");
    std::env::remove_var("FIGMA_TOKEN");
}
