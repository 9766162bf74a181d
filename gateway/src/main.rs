//! `figma-paywall`: the gateway (the crate `figma-paywall-gateway`). Beside a proxy (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`, Envoy
//! `ext_authz`) or called over HTTP by any backend, it answers "may this
//! request pass?" with the library's own [`RequirePaidLayer`].
//!
//! ```sh
//! cargo run -p figma-paywall-gateway -- --demo
//! cargo run -p figma-paywall-gateway -- --help
//! ```
//!
//! [`RequirePaidLayer`]: figma_paywall::RequirePaidLayer

mod access;
mod auth;
mod check;
mod config;
mod cors;
mod credits;
mod demo;
mod envelope;
mod flags;
mod forwarded;
mod help;
mod idle;
mod metrics;
mod preflight;
mod proxy;
mod recheck;
mod serve;

/// mimalloc, not glibc's malloc: requests are many small allocations made
/// and freed on two worker threads, where glibc's arenas contend.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod site;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = config::Args::try_parse().unwrap_or_else(|e| exit_naming_env(e));
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
    // This thread starts the gateway, then serves as its first worker.
    match runtime() {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("figma-paywall: cannot start: {e}");
            ExitCode::from(2)
        }
    }
}

/// Exits on a command line clap refused; a bad value that came from its
/// environment variable names the variable (clap names only the flag, and
/// the operator set the variable).
fn exit_naming_env(error: clap::Error) -> ! {
    use clap::{error::ContextKind, CommandFactory};
    let flag = error.get(ContextKind::InvalidArg).map(ToString::to_string);
    let command = config::Args::command();
    let env = flag.as_deref().and_then(|flag| {
        let long = flag.trim_start_matches("--").split([' ', '=']).next()?;
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long))?;
        let name = arg.get_env()?.to_str()?.to_owned();
        let typed = std::env::args().any(|a| a.split('=').next() == Some(&format!("--{long}")));
        (std::env::var_os(&name).is_some() && !typed).then_some(name)
    });
    match env {
        Some(name) => {
            let said = error.render().to_string();
            eprintln!("{}\n\n(the value came from {name})", said.trim_end());
            std::process::exit(error.exit_code());
        }
        None => error.exit(),
    }
}

/// A worker's runtime: one thread, no work-stealing.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn run(args: config::Args) -> ExitCode {
    let check = args.check;
    let gateway = match config::Gateway::start(args).await {
        Ok(gateway) => gateway,
        Err(why) if check => {
            check::say(&format!("FAIL {why}"));
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
    let mut listeners = match serve::listen(gateway.listen, gateway.workers) {
        Ok(listeners) => listeners,
        Err(e) => {
            eprintln!("figma-paywall: cannot listen on {}: {e}", gateway.listen);
            return ExitCode::from(2);
        }
    };
    let listener = listeners.remove(0);
    let addr = listener.local_addr().unwrap_or(gateway.listen);
    let login = match gateway.login(addr) {
        Ok(login) => login,
        Err(why) => {
            eprintln!("figma-paywall: {why}");
            return ExitCode::from(2);
        }
    };
    let (workers, stop) = serve::Workers::new(gateway.limits, gateway.trusted.clone());
    // The other workers: each a thread with its own runtime, its own
    // socket and its own routes (so its own connections to the upstream).
    let mut others = Vec::new();
    for (n, socket) in (1..).zip(listeners) {
        let app = auth::router(&gateway, login.clone());
        let started = socket
            .into_std()
            .and_then(|socket| worker(n, socket, workers.clone(), app));
        match started {
            Ok(finished) => others.push(finished),
            Err(e) => {
                eprintln!("figma-paywall: cannot start worker {n}: {e}");
                let _ = stop.send(true);
                return ExitCode::from(2);
            }
        }
    }
    println!("figma-paywall listening on http://{addr}");
    if let Some(demo) = &gateway.demo {
        demo.print(addr, login.is_some());
    }
    let app = auth::router(&gateway, login);
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop.send(true);
    });
    let mut finished = workers.serve(listener, app).await;
    for other in others {
        finished &= other.await.unwrap_or(false);
    }
    if finished {
        tracing::info!("stopped: every request in flight was answered");
    } else {
        tracing::warn!(
            shutdown_timeout_secs = gateway.limits.shutdown_timeout.as_secs_f64(),
            "stopped with requests still in flight: they took longer than --shutdown-timeout"
        );
    }
    ExitCode::SUCCESS
}

/// Starts worker `n` on a thread of its own, serving `app` on `socket`
/// (its own listening socket); it says whether every connection
/// finished.
fn worker(
    n: usize,
    socket: std::net::TcpListener,
    workers: serve::Workers,
    app: axum::Router,
) -> std::io::Result<tokio::sync::oneshot::Receiver<bool>> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let runtime = runtime()?;
    std::thread::Builder::new()
        .name(format!("figma-paywall-worker-{n}"))
        .spawn(move || {
            let served = runtime.block_on(async move {
                socket.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(socket)?;
                Ok::<_, std::io::Error>(workers.serve(listener, app).await)
            });
            let _ = done.send(served.unwrap_or_else(|e| {
                tracing::error!(error = %e, worker = n, "a worker could not serve");
                false
            }));
        })?;
    Ok(finished)
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
