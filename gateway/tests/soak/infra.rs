//! The real parts the soak starts and breaks: a Redis server of its own
//! (so that restarting it disturbs no other test; the TCP proxy in front of
//! it is `tests/common/tcp_proxy.rs`), and the replicas: `figma-paywall` processes
//! that can be killed abruptly and started again over their store.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::scratch::free_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_figma-paywall");

/// The replicas' metrics token: its holder reads the health's details
/// (the refresh cycle each replica states).
pub const METRICS_TOKEN: &str = "the-soak-s-metrics-token-of-32-chars";

/// A `redis-server` of the soak's own, without persistence: a restart
/// loses everything it held, as a Redis without AOF does.
pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start(dir: &Path) -> Option<Self> {
        let mut server = Self {
            port: free_port(),
            dir: dir.to_owned(),
            child: None,
        };
        server.spawn().then_some(server)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        // Ready when it accepts connections.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the server (SIGKILL: it loses its data) and starts it again on
    /// the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server starts again");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start a replica.
#[derive(Clone)]
pub struct ReplicaConfig {
    pub figma_url: String,
    pub access_token: String,
    pub redis_url: String,
    pub rate: (u32, u32),
    pub plugin: String,
    pub lifetimes: [&'static str; 4],
    pub replicas: usize,
}

/// Resident memory, open files and threads of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: u64,
}

impl Usage {
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        };
        Some(Self {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count(),
        })
    }
}

/// One replica of the gated app: the gateway, answering forward auth, with
/// its own store file, sharing Redis with the others.
pub struct Replica {
    pub name: String,
    pub store: PathBuf,
    pub log: PathBuf,
    config: ReplicaConfig,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` of the running process.
    pub base: Arc<Mutex<Option<String>>>,
    /// When the running process started, and its use after warm-up.
    pub started: Instant,
    pub warm: Option<Usage>,
    pub restarts: usize,
}

impl Replica {
    pub fn start(name: &str, dir: &Path, config: ReplicaConfig) -> Self {
        let mut replica = Self {
            name: name.to_owned(),
            store: dir.join(format!("{name}.store")),
            log: dir.join(format!("{name}.log")),
            config,
            child: None,
            base: Arc::default(),
            started: Instant::now(),
            warm: None,
            restarts: 0,
        };
        replica.spawn();
        replica
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let c = &self.config;
        let [paid, trial, unpaid, grace] = c.lifetimes;
        let mut child = Command::new(BIN)
            .args(["--plugin", &c.plugin, "--listen", "127.0.0.1:0"])
            .args(["--paid-lifetime", paid, "--trial-lifetime", trial])
            .args(["--unpaid-lifetime", unpaid, "--stale-grace", grace])
            .args(["--replicas", &c.replicas.to_string()])
            // Started again under its name, as a StatefulSet's pod is: it
            // takes its own place among the replicas at once.
            .args(["--replica-name", &self.name])
            .args(["--metrics-token", METRICS_TOKEN])
            .env("FIGMA_TOKEN", &c.access_token)
            .env("FIGMA_API_URL", &c.figma_url)
            .env("FIGMA_RATE_LIMIT", c.rate.0.to_string())
            .env("FIGMA_RATE_BURST", c.rate.1.to_string())
            .env("FIGMA_PAYWALL_STORE", &self.store)
            .env("REDIS_URL", &c.redis_url)
            .env(
                "RUST_LOG",
                std::env::var("SOAK_REPLICA_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("FIGMA_PAYWALL_KEY")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the gateway starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut base = None;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("figma-paywall listening on ") {
                base = Some(url.to_owned());
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let base = base.unwrap_or_else(|| {
            panic!(
                "{} did not start; its log:\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            )
        });
        *self.base.lock().unwrap() = Some(base);
        self.child = Some(child);
        self.started = Instant::now();
        self.warm = None;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then started again over the same store.
    pub fn kill_and_restart(&mut self) {
        *self.base.lock().unwrap() = None;
        self.kill();
        self.restarts += 1;
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}
