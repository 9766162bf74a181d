//! `--check`: the configuration and what it names (FIGMA_TOKEN with Figma,
//! the budget, the listening address, the upstream, sign-in, Redis, the
//! store), checked before a deploy, by the code start runs.

use std::{io::Write, time::Duration};

use crate::config::Gateway;

/// Figma's highest Tier 3 budget (a Dev or Full seat on Enterprise).
const FIGMA_MOST_PER_MINUTE: u32 = 150;

/// One line on stdout; a closed pipe (`--check | head -1`) ends nothing
/// but the line.
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

impl Gateway {
    /// `--check`: what the configuration names, checked, a line each.
    /// Whether all is well (warnings do not fail it).
    pub(crate) async fn check(&self) -> bool {
        let mut ok = true;
        let mut tell = |verdict: Verdict, what: String| {
            let mark = match verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            say(&format!("{mark} {what}"));
            ok &= verdict != Verdict::Fail;
        };
        let names: Vec<String> = self.resources.iter().map(ToString::to_string).collect();
        tell(Verdict::Ok, format!("gates: {}", names.join(", ")));
        match self.paywall.client().verify_credentials().await {
            Ok(me) => tell(
                Verdict::Ok,
                format!("FIGMA_TOKEN: Figma accepts it (the creator {})", me.handle),
            ),
            Err(e) => tell(Verdict::Fail, format!("FIGMA_TOKEN: {e}")),
        }
        let per_minute = self.paywall.stats().budget_per_minute;
        if per_minute > FIGMA_MOST_PER_MINUTE {
            tell(Verdict::Warn, format!("budget: {per_minute} lookups a minute is more than Figma allows any seat ({FIGMA_MOST_PER_MINUTE}): expect 429s; set FIGMA_RATE_LIMIT to your seat's Tier 3 limit"));
        } else {
            tell(Verdict::Ok, format!("budget: {per_minute} lookups a minute (FIGMA_RATE_LIMIT: Figma allows 10 on View and Collab seats, 50 to 150 on Dev and Full seats)"));
        }
        let (paid, _) = self.lifetimes;
        if paid > Duration::from_secs(86_400) {
            tell(Verdict::Warn, format!("--paid-lifetime {} s: a refund takes up to that long to apply; a day or less keeps it short", paid.as_secs()));
        }
        // As start does: the address can be taken, and sign-in is whole.
        match crate::serve::listen(self.listen, 1) {
            Ok(_) => tell(Verdict::Ok, format!("listen: {} can be taken", self.listen)),
            Err(e) => tell(
                Verdict::Fail,
                format!("cannot listen on {}: {e}", self.listen),
            ),
        }
        match self.login(self.listen) {
            Ok(None) => {}
            Ok(Some(_)) => tell(
                Verdict::Ok,
                "sign-in: FIGMA_CLIENT_ID, FIGMA_CLIENT_SECRET and FIGMA_SESSION_KEY are usable"
                    .to_owned(),
            ),
            Err(why) => tell(Verdict::Fail, why),
        }
        match &self.upstream {
            None => {}
            Some(upstream) => match upstream.probe().await {
                Ok(status) => tell(
                    Verdict::Ok,
                    format!("upstream: {} answers ({status})", upstream.url()),
                ),
                Err(why) => tell(
                    Verdict::Fail,
                    format!("upstream: {why} (is it running, and is --upstream its address?)"),
                ),
            },
        }
        tell(
            Verdict::Ok,
            match &self.cors {
                Some(_) => "CORS: answered by the gateway (--cors)".to_owned(),
                None => "CORS: none (--cors is not set): the proxy in front or the upstream answers browsers on other origins".to_owned(),
            },
        );
        match &self.redis {
            None => tell(Verdict::Ok, "Redis: none (REDIS_URL is not set): replicas do not share answers or the budget".to_owned()),
            Some(tier) => match tier.ping(Duration::from_secs(3)).await {
                Ok(()) => tell(Verdict::Ok, "Redis: it answers at REDIS_URL".to_owned()),
                Err(e) => tell(Verdict::Fail, format!("Redis at REDIS_URL: {e} (is it running, is the password right, and for rediss:// is FIGMA_PAYWALL_REDIS_CA needed?)")),
            },
        }
        match std::env::var_os("FIGMA_PAYWALL_STORE").filter(|p| !p.is_empty()) {
            None => tell(
                Verdict::Ok,
                "store: none (FIGMA_PAYWALL_STORE is not set): answers do not outlive the process"
                    .to_owned(),
            ),
            Some(path) => tell(
                Verdict::Ok,
                format!("store: {} opened", path.to_string_lossy()),
            ),
        }
        ok
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Warn,
    Fail,
}
