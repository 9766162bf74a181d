//! `--help`'s examples.

/// `--help`'s examples, one a deployment.
pub(crate) const EXAMPLES: &str = "Examples:
  # Try it on the embedded mock Figma: prints tokens and curl commands
  figma-paywall --demo

  # Forward auth beside Caddy (forward_auth), Traefik (forwardAuth) or Envoy (ext_authz)
  FIGMA_TOKEN=figd_... figma-paywall --plugin 1122334455

  # Forward auth beside nginx (auth_request passes on only 401 and 403)
  FIGMA_TOKEN=figd_... figma-paywall --plugin 1122334455 --refusals-as 403

  # In front of any backend: gate every request, pass buyers on
  FIGMA_TOKEN=figd_... figma-paywall --plugin 1122334455 --upstream http://127.0.0.1:3000

  # A plugin's backend called from its UI (origin null): answer CORS too
  FIGMA_TOKEN=figd_... figma-paywall --plugin 1122334455 --upstream http://127.0.0.1:3000 --cors '*'

  # A website for buyers of a Community file, with Sign in with Figma
  FIGMA_TOKEN=figd_... FIGMA_CLIENT_ID=... FIGMA_CLIENT_SECRET=... FIGMA_SESSION_KEY=... \\
    figma-paywall --file 1234567890 --login --site-url https://docs.example.com --upstream http://127.0.0.1:8000

  # Replicas behind a load balancer on 10.0.0.0/8, sharing a managed Redis
  FIGMA_TOKEN=figd_... REDIS_URL=rediss://:password@redis.example.com:6380 \\
    figma-paywall --plugin 1122334455 --replicas 3 --trusted-proxies 10.0.0.0/8 --upstream http://app:3000

  # Check a deployment's configuration before starting it
  figma-paywall --plugin 1122334455 --check
";
