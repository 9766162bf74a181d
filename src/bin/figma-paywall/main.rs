//! `figma-paywall`: the gateway (feature `gateway`). Beside a proxy (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`, Envoy
//! `ext_authz`) or called over HTTP by any backend, it answers "may this
//! request pass?" with the library's own [`RequirePaidLayer`].
//!
//! ```sh
//! cargo run --features gateway --bin figma-paywall -- --demo
//! cargo run --features gateway --bin figma-paywall -- --help
//! ```
//!
//! [`RequirePaidLayer`]: figma_paywall::RequirePaidLayer

mod auth;
mod check;
mod config;
mod cors;
mod demo;
mod forwarded;
mod help;
mod metrics;
mod proxy;
mod serve;

/// mimalloc, not glibc's malloc: requests are many small allocations made
/// and freed on two worker threads, where glibc's arenas contend.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod site;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = config::Args::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        config::LogFormat::Text => logs.init(),
        config::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let check = args.check;
    let gateway = match config::Gateway::start(args).await {
        Ok(gateway) => gateway,
        Err(why) if check => {
            println!("FAIL {why}");
            return ExitCode::FAILURE;
        }
        Err(why) => {
            eprintln!("figma-paywall: {why}");
            return ExitCode::from(2);
        }
    };
    if check {
        return if gateway.check().await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let listener = match tokio::net::TcpListener::bind(gateway.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("figma-paywall: cannot listen on {}: {e}", gateway.listen);
            return ExitCode::from(2);
        }
    };
    let addr = listener.local_addr().unwrap_or(gateway.listen);
    println!("figma-paywall listening on http://{addr}");
    let login = match gateway.login(addr) {
        Ok(login) => login,
        Err(why) => {
            eprintln!("figma-paywall: {why}");
            return ExitCode::from(2);
        }
    };
    if let Some((_, tokens)) = &gateway.demo {
        demo::print(tokens, addr, login.is_some());
    }
    let app = auth::router(&gateway, login);
    if serve::serve(listener, app, gateway.limits, shutdown()).await {
        tracing::info!("stopped: every request in flight was answered");
    } else {
        tracing::warn!(
            shutdown_timeout_secs = gateway.limits.shutdown_timeout.as_secs_f64(),
            "stopped with requests still in flight: they took longer than --shutdown-timeout"
        );
    }
    ExitCode::SUCCESS
}

/// SIGTERM or Ctrl-C: stop accepting connections and finish the requests
/// in flight.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
