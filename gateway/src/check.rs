//! `--check`: the configuration and what it names (FIGMA_TOKEN with Figma,
//! the budget, Redis, the store), checked before a deploy.

use std::time::Duration;

use crate::config::Gateway;

impl Gateway {
    /// `--check`: what the configuration names, checked, a line each.
    /// Whether all is well.
    pub(crate) async fn check(&self) -> bool {
        let mut ok = true;
        let mut say = |good: bool, what: String| {
            println!("{} {what}", if good { "ok  " } else { "FAIL" });
            ok &= good;
        };
        let names: Vec<String> = self.resources.iter().map(ToString::to_string).collect();
        say(true, format!("gates: {}", names.join(", ")));
        match self.paywall.client().verify_credentials().await {
            Ok(me) => say(
                true,
                format!("FIGMA_TOKEN: Figma accepts it (the creator {})", me.handle),
            ),
            Err(e) => say(false, format!("FIGMA_TOKEN: {e}")),
        }
        let per_minute = self.paywall.stats().budget_per_minute;
        say(true, format!("budget: {per_minute} lookups a minute (FIGMA_RATE_LIMIT: Figma allows 10 on View and Collab seats, 50 to 150 on Dev and Full seats)"));
        match &self.redis {
            None => say(true, "Redis: none (REDIS_URL is not set): replicas do not share answers or the budget".to_owned()),
            Some(tier) => match tier.ping(Duration::from_secs(3)).await {
                Ok(()) => say(true, "Redis: it answers at REDIS_URL".to_owned()),
                Err(e) => say(false, format!("Redis at REDIS_URL: {e} (is it running, is the password right, and for rediss:// is FIGMA_PAYWALL_REDIS_CA needed?)")),
            },
        }
        match std::env::var_os("FIGMA_PAYWALL_STORE").filter(|p| !p.is_empty()) {
            None => say(
                true,
                "store: none (FIGMA_PAYWALL_STORE is not set): answers do not outlive the process"
                    .to_owned(),
            ),
            Some(path) => say(true, format!("store: {} opened", path.to_string_lossy())),
        }
        ok
    }
}
