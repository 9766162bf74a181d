//! `rediss://`, as managed Redis serves it: a `redis-server` of the test's
//! own with TLS only (Debian's is built with it), its certificate signed by
//! a certificate authority the test makes with `openssl`.
#![cfg(feature = "redis")]

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use figma_paywall::{mock::MockFigma, redis::RedisTier, PaymentStatus, Paywall, RequirePaidLayer};

use crate::{
    common::*,
    scratch::{free_port, TempDir},
};

/// A `redis-server` that speaks only TLS, killed when dropped.
struct TlsRedis {
    port: u16,
    child: Child,
    ca: Vec<u8>,
    _dir: TempDir,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (Debian: apt-get install openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn tls_redis() -> TlsRedis {
    let dir = TempDir::new("redis-tls");
    let d = dir.path();
    run(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=figma-paywall test CA",
        ],
    );
    run(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
        ])
        .args([
            "--tls-cert-file",
            "server.pem",
            "--tls-key-file",
            "server.key",
        ])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(d)
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts (Debian: apt-get install redis-server; .ci/run does)");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedis {
        port,
        child,
        ca: std::fs::read(d.join("ca.pem")).unwrap(),
        _dir: dir,
    }
}

/// An app whose paywall shares answers through the tier `tier` builds.
fn replica(figma: &MockFigma, tier: RedisTier) -> (Paywall, axum::Router) {
    let paywall = Paywall::builder(figma.client().unwrap())
        .redis(tier)
        .build()
        .expect("the paywall builds");
    let app = echo_app().layer(RequirePaidLayer::new(&paywall, plugin()));
    (paywall, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_answers_over_rediss_and_trust_only_the_certificate_authority_given() {
    let redis = tokio::task::spawn_blocking(tls_redis).await.unwrap();
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let figma = MockFigma::start().await.unwrap();
    set(&figma, "5", &plugin(), PaymentStatus::Paid);
    let tier = || {
        RedisTier::builder(url.as_str())
            .prefix(format!("tls-test:{:016x}:", rand::random::<u64>()))
            .timeout(Duration::from_secs(2))
            .root_certificate(redis.ca.clone())
    };
    let shared = tier();
    let prefix = format!("tls-test:{:016x}:", rand::random::<u64>());
    let (_, first) = replica(&figma, shared.prefix(prefix.clone()).build().unwrap());
    let (second_paywall, second) = replica(&figma, tier().prefix(prefix.clone()).build().unwrap());
    assert_eq!(call(&first, as_user("5")).await.status, 200);
    assert_eq!(call(&second, as_user("5")).await.status, 200);
    // One call to Figma: the second replica read the answer over TLS.
    assert_eq!(figma.payment_requests(), 1);
    assert_eq!(second_paywall.stats().redis_hits, 1);

    // Trusting only the public authorities, the test's server is refused:
    // the replica reaches no Redis. It keeps to its share of the budget it
    // can no longer coordinate (none yet), so it says to try again, and
    // reads nothing from that server.
    let untrusting = RedisTier::builder(url.as_str())
        .prefix(prefix)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (third_paywall, third) = replica(&figma, untrusting);
    let reply = call(&third, as_user("5")).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["reason"], "rate_limited");
    assert_eq!(third_paywall.stats().redis_hits, 0);
    assert_eq!(figma.payment_requests(), 1);
}
