//! The store on local disk: a restart asks Figma nothing it knew; what is
//! stored is sealed, so a forged or altered entry is refused; a key is
//! rotated without asking Figma again.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use figma_paywall::{
    mock::{MockClock, MockFigma},
    PaymentStatus, Paywall, PaywallBuilder, RequirePaidLayer,
};
use redb::{ReadableTable, TableDefinition};

use crate::common::*;

const KEY: &str = "a secret of at least 32 bytes, for tests";
const OTHER_KEY: &str = "another secret of 32 bytes or more, forger";

fn temp_store() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "figma-paywall-it-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("answers.redb")
}

fn on_store(
    figma: &MockFigma,
    path: &Path,
    f: impl FnOnce(PaywallBuilder) -> PaywallBuilder,
) -> Paywall {
    f(Paywall::builder(figma.client().unwrap()).store(path))
        .build()
        .expect("the paywall builds")
}

#[tokio::test]
async fn a_restart_asks_figma_nothing_it_knew() {
    let figma = MockFigma::start().await.unwrap();
    let path = temp_store();
    let buyers: Vec<String> = (0..5).map(|i| format!("{}", 700 + i)).collect();
    for id in &buyers {
        set(&figma, id, &plugin(), PaymentStatus::Paid);
    }
    set(&figma, "799", &plugin(), PaymentStatus::Unpaid);
    {
        let paywall = on_store(&figma, &path, |b| b);
        let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
        for id in &buyers {
            assert_eq!(call(&app, as_user(id)).await.status, 200);
        }
        assert_eq!(call(&app, as_user("799")).await.status, 402);
    }
    assert_eq!(figma.payment_requests(), 6);
    // A deploy: a new paywall over the same file.
    let paywall = on_store(&figma, &path, |b| b);
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    for id in &buyers {
        assert_eq!(call(&app, as_user(id)).await.status, 200);
    }
    assert_eq!(call(&app, as_user("799")).await.status, 402);
    assert_eq!(figma.payment_requests(), 6, "the restart asked Figma again");
    assert_eq!(paywall.stats().store_hits, 6);
    // A token's answer too, and the file never holds the token.
    let token = figma.issue_token(&user("700"), &plugin());
    assert_eq!(
        call(&app, with_token(token.expose_secret())).await.status,
        200
    );
    let bytes = std::fs::read(&path).unwrap();
    let secret = token.expose_secret().as_bytes();
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret),
        "the token is in the file"
    );
}

const ANSWERS: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("answers");

/// Rewrites every stored answer's payment status byte to PAID, as someone
/// with write access to the file but not the key would.
fn forge_paid(path: &Path) -> usize {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    let mut forged = 0;
    {
        let mut table = txn.open_table(ANSWERS).unwrap();
        let records: Vec<(u128, Vec<u8>)> = table
            .iter()
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                (k.value(), v.value().to_vec())
            })
            .collect();
        for (key, mut record) in records {
            // [drop at: 8][user ID length: 1][user ID][2][MAC: 16][1][status]…
            let status = 8 + 1 + usize::from(record[8]) + 1 + 16 + 1;
            record[status] = 1; // PAID
            table.insert(key, record.as_slice()).unwrap();
            forged += 1;
        }
    }
    txn.commit().unwrap();
    forged
}

#[tokio::test]
async fn after_a_restart_a_stored_answer_lets_its_buyer_in_within_the_cycle_and_is_renewed_behind()
{
    let figma = MockFigma::start().await.unwrap();
    let path = temp_store();
    let clock = MockClock::new();
    set(&figma, "720", &plugin(), PaymentStatus::Paid);
    set(&figma, "721", &plugin(), PaymentStatus::Paid);
    let paywall = || {
        let client = figma.client_builder().clock(&clock).build().unwrap();
        Paywall::builder(client).store(&path).build().unwrap()
    };
    {
        let before = paywall();
        let app = echo_app().layer(RequirePaidLayer::new(&before, plugin()));
        assert_eq!(call(&app, as_user("721")).await.status, 200);
        clock.advance(Duration::from_secs(3 * 60));
        assert_eq!(call(&app, as_user("720")).await.status, 200);
    }
    assert_eq!(figma.payment_requests(), 2);
    // A deploy, and 8.5 minutes later: 720's stored answer is near the end
    // of its 10-minute lifetime, 721's past it.
    clock.advance(Duration::from_secs(8 * 60 + 30));
    let after = paywall();
    let app = echo_app().layer(RequirePaidLayer::new(&after, plugin()));
    // Near its end: let in on it at once, and renewed behind the request
    // in a slot no one wanted, not as a new caller's lookup.
    assert_eq!(call(&app, as_user("720")).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while figma.payment_requests() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(figma.payment_requests(), 3, "the answer was not renewed");
    // Past it (and past the refresh cycle, a fresh paywall's is short): a
    // known buyer's refresh, in the first lane.
    assert_eq!(call(&app, as_user("721")).await.status, 200);
    assert_eq!(figma.payment_requests(), 4);
    let used = after.stats().slots_used;
    assert_eq!(
        (used["refresh_ahead"], used["refresh"], used["new_caller"]),
        (1, 1, 0),
        "{used:?}"
    );
}

#[tokio::test]
async fn altered_or_forged_stored_answers_are_refused() {
    let figma = MockFigma::start().await.unwrap();
    let path = temp_store();
    set(&figma, "801", &plugin(), PaymentStatus::Unpaid);
    {
        let paywall = on_store(&figma, &path, |b| b.signing_key(KEY));
        let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
        assert_eq!(call(&app, as_user("801")).await.status, 402);
    }
    assert_eq!(forge_paid(&path), 1);
    let logs = CapturedLogs::start();
    {
        let paywall = on_store(&figma, &path, |b| b.signing_key(KEY));
        let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
        assert_eq!(
            call(&app, as_user("801")).await.status,
            402,
            "an altered PAID let in"
        );
    }
    assert_eq!(
        figma.payment_requests(),
        2,
        "the altered answer was not ignored"
    );
    assert!(logs.text().contains("seal does not hold"), "not logged");
    // Written by someone with another key: a PAID answer while the user had
    // paid, kept after a refund.
    set(&figma, "802", &plugin(), PaymentStatus::Paid);
    {
        let forger = on_store(&figma, &path, |b| b.signing_key(OTHER_KEY));
        let app = echo_app().layer(RequirePaidLayer::new(&forger, plugin()));
        assert_eq!(call(&app, as_user("802")).await.status, 200);
    }
    set(&figma, "802", &plugin(), PaymentStatus::Unpaid);
    let paywall = on_store(&figma, &path, |b| b.signing_key(KEY));
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    assert_eq!(call(&app, as_user("802")).await.status, 402);
    assert_eq!(figma.payment_requests(), 4);
}

#[tokio::test]
async fn a_signing_key_is_rotated_without_asking_figma_again() {
    let figma = MockFigma::start().await.unwrap();
    let path = temp_store();
    set(&figma, "901", &plugin(), PaymentStatus::Paid);
    {
        let old = on_store(&figma, &path, |b| b.signing_key(OTHER_KEY));
        let app = echo_app().layer(RequirePaidLayer::new(&old, plugin()));
        assert_eq!(call(&app, as_user("901")).await.status, 200);
    }
    {
        // The new key, with the old one still accepted: read and sealed anew.
        let rotating = on_store(&figma, &path, |b| {
            b.signing_key(KEY).previous_signing_key(OTHER_KEY)
        });
        let app = echo_app().layer(RequirePaidLayer::new(&rotating, plugin()));
        assert_eq!(call(&app, as_user("901")).await.status, 200);
    }
    // The old key retired: the answer was sealed anew, so still no call.
    let new = on_store(&figma, &path, |b| b.signing_key(KEY));
    let app = echo_app().layer(RequirePaidLayer::new(&new, plugin()));
    assert_eq!(call(&app, as_user("901")).await.status, 200);
    assert_eq!(figma.payment_requests(), 1);
}

/// Set in a copy of this test binary that writes answers to a store and
/// is then killed: the store's path, and the mock Figma's URL.
const CHILD_STORE: &str = "FIGMA_PAYWALL_TEST_CHILD_STORE";
const CHILD_FIGMA: &str = "FIGMA_PAYWALL_TEST_CHILD_FIGMA";

/// The child of `a_kill_9_loses_no_answer_already_written`: looks up five
/// buyers through a paywall with a store, says so, and waits to be killed.
#[tokio::test]
#[ignore = "run by a_kill_9_loses_no_answer_already_written in a child process"]
async fn child_writes_answers_then_waits_to_be_killed() {
    let (Ok(path), Ok(figma)) = (std::env::var(CHILD_STORE), std::env::var(CHILD_FIGMA)) else {
        panic!("only a_kill_9_loses_no_answer_already_written runs this");
    };
    let client = figma_paywall::PaymentsClient::builder(
        figma_paywall::AccessToken::new(figma_paywall::mock::MOCK_ACCESS_TOKEN).unwrap(),
    )
    .base_url(figma)
    .rate_limit(600, 10)
    .build()
    .unwrap();
    let paywall = Paywall::builder(client)
        .store(&path)
        .build()
        .expect("the paywall builds");
    for i in 0..5 {
        let info = paywall
            .lookup_user(&user(&format!("{}", 1100 + i)), &plugin())
            .await
            .unwrap();
        assert_eq!(info.info().payment_status, PaymentStatus::Paid);
    }
    println!("written");
    std::future::pending::<()>().await;
}

#[test]
fn a_kill_9_loses_no_answer_already_written() {
    use std::io::{BufRead, BufReader};
    let figma = MockFigma::start_on_own_thread().unwrap();
    for i in 0..5 {
        set(
            &figma,
            &format!("{}", 1100 + i),
            &plugin(),
            PaymentStatus::Paid,
        );
    }
    let path = temp_store();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "store::child_writes_answers_then_waits_to_be_killed",
            "--nocapture",
        ])
        .env(CHILD_STORE, &path)
        .env(CHILD_FIGMA, figma.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let written = lines.any(|line| line.is_ok_and(|l| l.contains("written")));
    assert!(written, "the child did not write its answers");
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();
    assert_eq!(figma.payment_requests(), 5);
    // Over the same file, no answer is asked again.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let paywall = Paywall::builder(figma.client().unwrap())
            .store(&path)
            .build()
            .expect("the paywall builds");
        for i in 0..5 {
            let lookup = paywall
                .lookup_user(&user(&format!("{}", 1100 + i)), &plugin())
                .await
                .unwrap();
            assert_eq!(lookup.info().payment_status, PaymentStatus::Paid);
        }
        assert_eq!(paywall.stats().store_hits, 5);
    });
    assert_eq!(
        figma.payment_requests(),
        5,
        "an answer written before the kill was lost"
    );
}
