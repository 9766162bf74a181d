//! The example binaries, run as users run them: `target/…/examples/NAME`,
//! which `cargo test` builds, killed when dropped.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

/// The path of example `name`'s binary.
pub fn example(name: &str) -> PathBuf {
    // target/debug/deps/<test>-… → target/debug/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A child process, killed when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a demo printed (`ai_endpoint` on the mock Figma, the gateway's
/// `--demo`) down to its last curl command: its lines, and the plugin
/// payment tokens in them.
pub struct Demo {
    pub lines: Vec<String>,
    pub tokens: Vec<String>,
}

impl Demo {
    /// Reads `child`'s stdout down to the `# nobody` line, then goes on
    /// reading it elsewhere, so that the child never blocks on a full pipe.
    pub fn read(child: &mut Child) -> Self {
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut demo = Self {
            lines: Vec::new(),
            tokens: Vec::new(),
        };
        for line in lines.by_ref() {
            let line = line.expect("a line");
            if let Some(token) = line
                .split("X-Figma-Payment-Token: ")
                .nth(1)
                .and_then(|rest| rest.split('\'').next())
            {
                demo.tokens.push(token.to_owned());
            }
            let last = line.starts_with("# nobody");
            demo.lines.push(line);
            if last {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        demo
    }

    /// The rest of the first line that starts with `prefix`.
    pub fn after(&self, prefix: &str) -> Option<String> {
        self.lines
            .iter()
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::to_owned)
    }
}

/// `cargo run --example ai_endpoint` on the mock Figma, on a free port.
#[allow(dead_code)]
pub struct AiEndpoint {
    _child: Killed,
    /// Its base URL.
    pub base: String,
    /// The mock Figma's base URL (its plugin side: `/plugin/…`).
    pub figma: String,
    /// The demo's tokens: a buyer, a user in a trial, a non-buyer.
    pub tokens: Vec<String>,
}

#[allow(dead_code)]
impl AiEndpoint {
    /// Starts it with `env` set, once it has printed its demo.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut command = Command::new(example("ai_endpoint"));
        command
            .env_remove("FIGMA_TOKEN")
            .env_remove("FIGMA_RATE_LIMIT")
            .env_remove("FIGMA_RATE_BURST")
            .env_remove("FIGMA_PAYWALL_STORE")
            .env_remove("FIGMA_PAYWALL_CREDITS")
            .env("PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        let mut child = Killed(command.spawn().unwrap());
        let demo = Demo::read(&mut child.0);
        assert_eq!(demo.tokens.len(), 3, "ai_endpoint printed its demo tokens");
        Self {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            figma: demo
                .after("mock Figma on ")
                .expect("ai_endpoint names its mock Figma"),
            tokens: demo.tokens,
        }
    }
}
