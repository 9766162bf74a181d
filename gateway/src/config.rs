//! The gateway's configuration: flags with environment fallbacks, checked
//! at start (a misconfigured gateway stops with the reason, it never serves).

use std::{net::SocketAddr, time::Duration};

use clap::Parser;
use figma_paywall::{Error, PaymentsClient, Paywall, Resource, UserId};
use http::StatusCode;

use crate::{
    flags::{deny_status, duration, Secret},
    forwarded::TrustedProxies,
    proxy::Upstream,
    site::Page,
};

/// Serve paid Figma plugins, widgets and Community files only to buyers.
///
/// figma-paywall answers "may this request pass?" for a proxy in front of
/// your backend (nginx `auth_request`, Caddy `forward_auth`, Traefik
/// `ForwardAuth`, Envoy `ext_authz`) or for a backend that asks it over HTTP:
/// `GET /_figma_paywall/auth` with the caller's plugin payment token in
/// `X-Figma-Payment-Token` (or in the `plugin_payment_token` query of the
/// original URI, from `X-Original-URI` or `X-Forwarded-Uri`) answers 200 with
/// the buyer in `X-Figma-User-Id`, `X-Figma-Payment-Status`,
/// `X-Figma-Resource-Id` and `X-Figma-Resource-Type`, 401 when there is no
/// usable token, and `--deny-status` for everyone who has not paid.
///
/// It asks Figma with FIGMA_TOKEN (a personal access token of the resource's
/// creator) within FIGMA_RATE_LIMIT lookups a minute (FIGMA_RATE_BURST at
/// once); FIGMA_API_URL overrides Figma's URL, FIGMA_PAYWALL_STORE keeps
/// answers on disk across restarts, REDIS_URL shares them between replicas,
/// FIGMA_PAYWALL_KEY seals what is stored. Try it without any of that:
/// `figma-paywall --demo`.
#[derive(Debug, Parser)]
#[command(name = "figma-paywall", version, verbatim_doc_comment, after_help = crate::help::EXAMPLES)]
pub(crate) struct Args {
    /// Check the configuration and what it names (FIGMA_TOKEN with Figma,
    /// the budget, Redis, the store), print each, and exit: 0 when all is
    /// well, 1 otherwise. Serves nothing.
    #[arg(long)]
    pub(crate) check: bool,

    /// A plugin whose buyers pass (the `id` in its manifest.json). Repeat, or
    /// separate with commas, for several: buying any one of them passes.
    #[arg(
        long = "plugin",
        value_name = "ID",
        env = "FIGMA_PLUGIN_ID",
        value_delimiter = ','
    )]
    plugins: Vec<String>,

    /// A widget whose buyers pass; as --plugin.
    #[arg(
        long = "widget",
        value_name = "ID",
        env = "FIGMA_WIDGET_ID",
        value_delimiter = ','
    )]
    widgets: Vec<String>,

    /// A Community file whose buyers pass (the number in its Community URL);
    /// as --plugin.
    #[arg(
        long = "file",
        value_name = "ID",
        env = "FIGMA_FILE_ID",
        value_delimiter = ','
    )]
    files: Vec<String>,

    /// The address to listen on.
    #[arg(
        long,
        value_name = "ADDR",
        env = "FIGMA_PAYWALL_LISTEN",
        default_value = "127.0.0.1:4180",
        value_parser = crate::flags::listen_addr
    )]
    listen: SocketAddr,

    /// The status answered to callers who have not paid (behind nginx, see
    /// --refusals-as).
    #[arg(
        long,
        value_name = "CODE",
        env = "FIGMA_PAYWALL_DENY_STATUS",
        default_value_t = 402,
        value_parser = deny_status
    )]
    deny_status: u16,

    /// Forward auth answers every refusal but 401 with this status, the
    /// real one in X-Figma-Refusal-Status (Retry-After kept): nginx's
    /// auth_request passes only 401 and 403 on and turns a 429 or 503 into
    /// a 500. Behind nginx use 403, with `docs/gateway.md`'s `@figma_refused`.
    #[arg(long, value_name = "CODE", env = "FIGMA_PAYWALL_REFUSALS_AS", value_parser = deny_status)]
    refusals_as: Option<u16>,

    /// Let users in a free trial (TRIAL) pass: the default.
    #[arg(long, overrides_with = "no_trial")]
    allow_trial: bool,

    /// Refuse users in a free trial (TRIAL).
    #[arg(long, env = "FIGMA_PAYWALL_NO_TRIAL", overrides_with = "allow_trial")]
    no_trial: bool,

    /// A user who passes whatever Figma says, such as you, the creator (Figma
    /// answers UNPAID for a creator's own resource). Repeatable.
    #[arg(
        long = "bypass",
        value_name = "USER_ID",
        env = "FIGMA_PAYWALL_BYPASS",
        value_delimiter = ','
    )]
    bypass: Vec<String>,

    /// Reverse-proxy mode: every request but the gateway's own
    /// (/_figma_paywall/...) is checked, and a buyer's goes on to this URL,
    /// with the buyer named in the X-Figma-* headers.
    #[arg(long, value_name = "URL", env = "FIGMA_PAYWALL_UPSTREAM")]
    upstream: Option<String>,

    /// How long the upstream may take to start its answer, once the request
    /// is sent, before the caller gets 504; and the longest pause within a
    /// body (the answer, or an upload: 408) or a WebSocket before it is
    /// closed, as nginx's proxy_read_timeout (reverse-proxy mode).
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_UPSTREAM_TIMEOUT", value_parser = duration, default_value = "60s")]
    upstream_timeout: Duration,

    /// The proxies in front whose X-Forwarded-For says who the client is,
    /// for the fair share of Figma's budget and of sign-ins (and, in
    /// reverse-proxy mode, whose X-Forwarded-* and Forwarded headers go
    /// on): comma-separated networks, such as your load balancer's subnet
    /// 10.0.0.0/8; repeatable. Anyone else's are ignored.
    #[arg(
        long,
        visible_alias = "trusted-proxy",
        value_name = "NETWORKS",
        env = "FIGMA_PAYWALL_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    trusted_proxies: Vec<String>,

    /// Answer browsers on other origins (CORS): `*` for a plugin's UI, whose
    /// origin is `null` (any origin, no cookies), or a comma-separated list
    /// of site origins such as https://docs.example.com (cookies allowed).
    /// Preflights are answered here, and every answer carries the headers:
    /// the upstream's, the refusals and forward auth's. Leave it unset when
    /// the proxy in front or the upstream does CORS: preflights then go on
    /// to the upstream as preflights only (no body, no token, no cookie;
    /// only its status and CORS headers come back), and forward auth
    /// refuses them (403).
    #[arg(long, value_name = "ORIGINS", env = "FIGMA_PAYWALL_CORS")]
    cors: Option<String>,

    /// Gate a website by the visitor signed in with Figma (reverse-proxy
    /// mode): serves /auth/login, /auth/callback and /auth/logout, sends
    /// browsers to sign in, and shows non-buyers the paywall page. Needs
    /// FIGMA_CLIENT_ID and FIGMA_CLIENT_SECRET (an OAuth app at
    /// https://www.figma.com/developers/apps), FIGMA_SESSION_KEY (64+
    /// random bytes, base64) and --site-url.
    #[arg(long, env = "FIGMA_PAYWALL_LOGIN")]
    login: bool,

    /// The site's public base URL, for Figma's callback
    /// (https://docs.example.com: register https://docs.example.com/auth/callback).
    #[arg(long, value_name = "URL", env = "FIGMA_PAYWALL_SITE_URL")]
    site_url: Option<String>,

    #[command(flatten)]
    page: crate::site::PageArgs,

    #[command(flatten)]
    credits: crate::credits::CreditArgs,

    /// Serve GET /_figma_paywall/metrics (Prometheus's text format), and
    /// the details of GET /_figma_paywall/health, to those who send this
    /// as a bearer token. Without it, no metrics and no details are
    /// served: they say who was refused and why, and size the budget.
    #[arg(
        long,
        value_name = "SECRET",
        env = "FIGMA_PAYWALL_METRICS_TOKEN",
        hide_env_values = true
    )]
    metrics_token: Option<Secret>,

    /// How long a PAID answer is used before Figma is asked again (such as
    /// 10m, 90s): a refund takes up to this long to take effect.
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_PAID_LIFETIME", value_parser = duration, default_value = "10m")]
    paid_lifetime: Duration,

    /// How long a TRIAL answer is used.
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_TRIAL_LIFETIME", value_parser = duration, default_value = "2m")]
    trial_lifetime: Duration,

    /// How long UNPAID and every other refusing answer is used: a purchase
    /// takes up to this long to take effect.
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_UNPAID_LIFETIME", value_parser = duration, default_value = "5s")]
    unpaid_lifetime: Duration,

    /// How long past its lifetime a PAID or TRIAL answer may stand in while
    /// Figma fails (0s turns it off). A buyer refunded during an outage
    /// keeps access this long.
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_STALE_GRACE", value_parser = duration, default_value = "1h")]
    stale_grace: Duration,

    /// The longest a PAID or TRIAL answer past its lifetime lets its buyer
    /// in while its refresh waits for a slot: only while the budget is too
    /// small to ask about every active buyer within the lifetime, and then
    /// for the refresh cycle it achieves (see the metrics), never past this
    /// (0s turns it off). A refunded buyer keeps access that long.
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_MAX_UNVERIFIED", value_parser = duration, default_value = "1h")]
    max_unverified: Duration,

    /// With REDIS_URL: how many replicas share Figma's budget, at least.
    /// While Redis is unreachable each keeps to its share (the budget
    /// divided by the replicas Redis heard from in the last minute, or by
    /// this if more), and the replicas that reach Redis leave it unspent.
    #[arg(
        long,
        value_name = "N",
        env = "FIGMA_PAYWALL_REPLICAS",
        default_value_t = 1
    )]
    replicas: u32,

    /// With REDIS_URL: this replica's name among those sharing the budget,
    /// unique to it; a replica started again under its old name takes its
    /// place at once, under a new one a minute or two later [default: the
    /// host's name and --listen, random with port 0]
    #[arg(long, value_name = "NAME", env = "FIGMA_PAYWALL_REPLICA_NAME")]
    replica_name: Option<String>,

    /// Run on the embedded mock Figma, with demo buyers, and print tokens to
    /// try. For trying the gateway out: never in production.
    #[arg(long)]
    demo: bool,

    /// With --demo: development mode. A plugin running in development is
    /// let in, or not, by the status it chose
    /// (setPaymentStatusInDevelopment, sent by figma-paywall-plugin), with
    /// any token. Anyone who can reach the gateway can claim any status:
    /// on this machine only.
    #[arg(long, requires = "demo")]
    development: bool,

    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object a line) for a log collector. RUST_LOG sets the level
    /// (default `info`).
    #[arg(
        long,
        value_name = "FORMAT",
        env = "FIGMA_PAYWALL_LOG_FORMAT",
        default_value = "text"
    )]
    pub(crate) log_format: LogFormat,

    /// One line a request at `info`: the client, method, path (never the
    /// query), status, a refusal's reason, the user let in, the time, the
    /// body's length and the upstream's time. `off` leaves it out.
    #[arg(
        long,
        value_name = "ON_OR_OFF",
        env = "FIGMA_PAYWALL_ACCESS_LOG",
        default_value = "on",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    access_log: bool,

    /// The most connections served at once; past it new ones wait in the
    /// kernel's queue (and one a worker, accepted, for the next place).
    /// Keep it under the process's open-file limit (`ulimit -n`), with room
    /// for Redis, the store, the upstream and the workers.
    #[arg(
        long,
        value_name = "N",
        env = "FIGMA_PAYWALL_MAX_CONNECTIONS",
        default_value_t = 768
    )]
    max_connections: usize,

    /// The most connections one client address holds at once (an IPv6
    /// client's /64), so that one cannot take every place of
    /// --max-connections: its next ones are closed at once. Proxies in
    /// --trusted-proxies carry many clients and are not capped (cap each
    /// client there). [default: an eighth of --max-connections]
    #[arg(
        long,
        value_name = "N",
        env = "FIGMA_PAYWALL_MAX_CONNECTIONS_PER_CLIENT"
    )]
    max_connections_per_client: Option<usize>,

    /// Threads serving requests, each with a runtime of its own and its own
    /// connections to the upstream, as nginx's worker processes. Default:
    /// one a CPU core.
    #[arg(long, value_name = "N", env = "FIGMA_PAYWALL_WORKERS")]
    workers: Option<std::num::NonZeroUsize>,

    /// How long a client has to send a request's headers, and how long a
    /// keep-alive connection may sit idle, before it is closed.
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_HEADER_TIMEOUT", value_parser = duration, default_value = "10s")]
    header_timeout: Duration,

    /// On SIGTERM, how long the requests in flight have to finish before
    /// the gateway exits anyway.
    #[arg(long, value_name = "DURATION", env = "FIGMA_PAYWALL_SHUTDOWN_TIMEOUT", value_parser = duration, default_value = "20s")]
    shutdown_timeout: Duration,
}

/// The format of the gateway's log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object a line, its fields at the top level.
    Json,
}

/// A configured gateway, ready to serve.
pub(crate) struct Gateway {
    pub(crate) listen: SocketAddr,
    /// `--max-connections` (and `-per-client`), `--header-timeout`,
    /// `--shutdown-timeout`.
    pub(crate) limits: crate::serve::Limits,
    /// `--workers`, or one a CPU core.
    pub(crate) workers: usize,
    pub(crate) paywall: Paywall,
    pub(crate) resources: Vec<Resource>,
    pub(crate) deny_status: StatusCode,
    /// `--refusals-as`.
    pub(crate) refusals_as: Option<StatusCode>,
    pub(crate) allow_trial: bool,
    pub(crate) bypass: Vec<UserId>,
    /// `--paid-lifetime` and `--trial-lifetime`: when an open tunnel's
    /// caller is checked again.
    pub(crate) lifetimes: (Duration, Duration),
    /// Where requests that pass go, in reverse-proxy mode.
    pub(crate) upstream: Option<Upstream>,
    /// `--cors`: the headers for browsers on other origins.
    pub(crate) cors: Option<tower_http::cors::CorsLayer>,
    /// `--trusted-proxies`.
    pub(crate) trusted: TrustedProxies,
    /// The Redis tier, with `REDIS_URL`.
    pub(crate) redis: Option<figma_paywall::redis::RedisTier>,
    /// Who may read the metrics.
    pub(crate) metrics_token: Option<Secret>,
    /// `--login`: the site's URL (or `None`: the listening address, with
    /// `--demo`), and the paywall page.
    login: Option<(Option<String>, Page)>,
    /// The mock Figma of `--demo`, and the demo's tokens.
    pub(crate) demo: Option<crate::demo::Demo>,
    /// `--credits` and `--credit-cost`.
    pub(crate) credits: Option<crate::credits::Metered>,
    /// `--access-log`.
    pub(crate) access_log: bool,
}

impl Gateway {
    /// Checks `args` and what they name, and builds the paywall. Every
    /// error says what to change.
    pub(crate) async fn start(args: Args) -> Result<Self, String> {
        let mut resources = Vec::new();
        type Make = fn(&str) -> Result<Resource, figma_paywall::InvalidId>;
        for (ids, make, flag) in [
            (
                &args.plugins,
                (|id| Resource::plugin(id)) as Make,
                "--plugin",
            ),
            (&args.widgets, |id| Resource::widget(id), "--widget"),
            (&args.files, |id| Resource::community_file(id), "--file"),
        ] {
            for id in ids {
                resources.push(make(id.trim()).map_err(|e| format!("{flag} {id:?}: {e}"))?);
            }
        }
        let bypass = args
            .bypass
            .iter()
            .map(|id| UserId::new(id.trim()).map_err(|e| format!("--bypass {id:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if resources.is_empty() && !args.demo {
            return Err("name what buyers must have bought: --plugin ID, --widget ID or --file ID (or FIGMA_PLUGIN_ID, FIGMA_WIDGET_ID, FIGMA_FILE_ID)".to_owned());
        }
        let trusted = TrustedProxies(
            args.trusted_proxies
                .iter()
                .map(|net| {
                    let net = net.trim();
                    net.parse()
                        .or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| format!("--trusted-proxies {net:?}: give networks such as 10.0.0.0/8 or addresses such as 10.1.2.3, comma-separated"))
                })
                .collect::<Result<_, _>>()?,
        );
        // The demo of a website brings a site of its own to stand behind.
        let upstream = match (&args.upstream, args.demo && args.login) {
            (None, true) => Some(crate::demo::site().await?),
            (url, _) => url.clone(),
        };
        let upstream = upstream
            .as_deref()
            .map(|url| Upstream::new(url, trusted.clone(), args.upstream_timeout))
            .transpose()?;
        let cors = args.cors.as_deref().map(crate::cors::layer).transpose()?;
        if args.login && upstream.is_none() {
            return Err(
                "--login gates a website: give it --upstream (the site's server)".to_owned(),
            );
        }
        if args.login && !args.demo {
            if args.site_url.is_none() {
                return Err("--login needs --site-url, the site's public URL (Figma sends visitors back to it)".to_owned());
            }
            for name in [
                "FIGMA_CLIENT_ID",
                "FIGMA_CLIENT_SECRET",
                "FIGMA_SESSION_KEY",
            ] {
                if std::env::var_os(name).is_none_or(|v| v.is_empty()) {
                    return Err(format!("--login needs {name}: FIGMA_CLIENT_ID and FIGMA_CLIENT_SECRET from your OAuth app at https://www.figma.com/developers/apps, FIGMA_SESSION_KEY 64+ random bytes in base64 (openssl rand -base64 64), the same on every replica"));
                }
            }
        }
        let token_set = std::env::var_os("FIGMA_TOKEN").is_some_and(|t| !t.is_empty());
        let (client, demo) = if args.demo {
            if token_set {
                return Err("--demo runs on the embedded mock Figma, but FIGMA_TOKEN is set: unset it, or drop --demo to ask the real Figma".to_owned());
            }
            let (client, demo) = crate::demo::Demo::start(&mut resources, args.development).await?;
            (client, Some(demo))
        } else {
            if !token_set {
                return Err("FIGMA_TOKEN is not set: export a personal access token of the resource's creator (https://www.figma.com/developers/api#access-tokens), or try the gateway with --demo".to_owned());
            }
            let client = PaymentsClient::from_env().map_err(|e| e.to_string())?;
            check_token(&client).await?;
            (client, None)
        };
        let mut builder = Paywall::builder(client)
            .paid_lifetime(args.paid_lifetime)
            .trial_lifetime(args.trial_lifetime)
            .unpaid_lifetime(args.unpaid_lifetime)
            .stale_grace(args.stale_grace)
            .max_unverified(args.max_unverified)
            .store_from_env()
            .map_err(|e| e.to_string())?;
        let mut redis = None;
        if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
            let mut tier = figma_paywall::redis::RedisTier::builder(url).replicas(args.replicas);
            if let Some(name) = args
                .replica_name
                .clone()
                .or_else(|| host_and_port(args.listen))
            {
                tier = tier.replica_name(name);
            }
            if let Some(path) = std::env::var_os("FIGMA_PAYWALL_REDIS_CA").filter(|p| !p.is_empty())
            {
                let pem = std::fs::read(&path).map_err(|e| {
                    format!("FIGMA_PAYWALL_REDIS_CA {}: {e} (give the PEM file of the certificate authority that signed your Redis server's certificate)", path.to_string_lossy())
                })?;
                tier = tier.root_certificate(pem);
            }
            let tier = tier
                .build()
                .map_err(|e| format!("REDIS_URL is not usable: {e}"))?;
            redis = Some(tier.clone());
            builder = builder.redis(tier);
        }
        let credits = crate::credits::Metered::from_args(args.credits)?;
        let first = resources[0].clone();
        if args.max_connections == 0 {
            return Err("--max-connections must be at least 1".to_owned());
        }
        if args.max_connections_per_client == Some(0) {
            return Err("--max-connections-per-client must be at least 1".to_owned());
        }
        Ok(Self {
            listen: args.listen,
            limits: crate::serve::Limits {
                max_connections: args.max_connections,
                max_connections_per_client: args
                    .max_connections_per_client
                    .unwrap_or((args.max_connections / 8).max(1)),
                header_timeout: args.header_timeout,
                shutdown_timeout: args.shutdown_timeout,
            },
            workers: args
                .workers
                .or_else(|| std::thread::available_parallelism().ok())
                .map_or(1, std::num::NonZeroUsize::get),
            paywall: builder.build().map_err(|e| e.to_string())?,
            resources,
            deny_status: StatusCode::from_u16(args.deny_status)
                .map_err(|e| format!("--deny-status: {e}"))?,
            refusals_as: args
                .refusals_as
                .map(StatusCode::from_u16)
                .transpose()
                .map_err(|e| format!("--refusals-as: {e}"))?,
            allow_trial: !args.no_trial,
            bypass,
            lifetimes: (args.paid_lifetime, args.trial_lifetime),
            upstream,
            cors,
            trusted,
            redis,
            metrics_token: args.metrics_token,
            login: match args.login {
                true => Some((args.site_url.clone(), Page::new(&args.page, first.clone())?)),
                false => None,
            },
            demo,
            credits,
            access_log: args.access_log,
        })
    }

    /// With `--login`: "Sign in with Figma" for the site at `site_url`
    /// (default: `addr`, with `--demo`), and the paywall page.
    pub(crate) fn login(
        &self,
        addr: SocketAddr,
    ) -> Result<Option<(figma_paywall::login::FigmaLogin, Page)>, String> {
        let Some((site_url, page)) = &self.login else {
            return Ok(None);
        };
        let site = site_url.clone().unwrap_or_else(|| format!("http://{addr}"));
        let login = match &self.demo {
            Some(demo) => demo.login(site),
            None => figma_paywall::login::FigmaLogin::builder_from_env(site)
                .map_err(|e| format!("--login: {e}"))?,
        };
        // A client is whom the trusted proxies say, as for the gate.
        let login = login.client_key(figma_paywall::identity::ForwardedFor::trusting(
            self.trusted.0.iter().copied(),
        ));
        // Replicas sharing Redis share sign-outs too.
        let login = match &self.redis {
            Some(tier) => login.redis(tier.clone()),
            None => login,
        }
        .build()
        .map_err(|e| format!("--login: {e}"))?;
        Ok(Some((login, page.clone())))
    }
}

/// The replica's default name: the host's name and the address it listens
/// on, which a replica started again on the same host keeps. None (a
/// random name) when the port is chosen at start, or the host's name is
/// unknown or one many hosts share (`localhost`).
fn host_and_port(listen: SocketAddr) -> Option<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let host = host.trim();
    let generic = host.is_empty() || host.starts_with("localhost");
    (listen.port() != 0 && !generic).then(|| format!("{host}/{listen}"))
}

/// A token Figma refuses stops the gateway at start; Figma out of reach
/// does not (it may come back).
async fn check_token(client: &PaymentsClient) -> Result<(), String> {
    match client.verify_credentials().await {
        Ok(me) => {
            tracing::info!(creator = %me.handle, "Figma accepts FIGMA_TOKEN");
            Ok(())
        }
        Err(Error::Unauthorized { .. }) => Err("Figma refuses FIGMA_TOKEN: it is wrong, revoked or expired (personal access tokens last 90 days at most); create a new one at https://www.figma.com/developers/api#access-tokens".to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "could not check FIGMA_TOKEN with Figma; serving anyway, lookups will say");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_named_by_its_host_and_port_unless_the_port_is_chosen_at_start() {
        assert_eq!(host_and_port("127.0.0.1:0".parse().unwrap()), None);
        // Linux always has /proc/sys/kernel/hostname.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        if cfg!(target_os = "linux") && !host.trim().starts_with("localhost") {
            let name = host_and_port("0.0.0.0:4180".parse().unwrap()).unwrap();
            let host = name.strip_suffix("/0.0.0.0:4180").unwrap();
            assert!(!host.is_empty() && !host.contains('\n'), "{name:?}");
        }
    }
}
