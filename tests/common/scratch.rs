//! What the tests that start processes (the gateway, nginx, Caddy, Redis,
//! Chromium) need around them: a free loopback port, and a folder of their
//! own, removed at the end.

use std::path::{Path, PathBuf};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A folder of the test's own, removed when dropped unless kept.
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

#[allow(dead_code)]
impl TempDir {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "figma-paywall-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).expect("a temporary folder");
        Self { path, keep: false }
    }

    /// Keeps the folder (says where) instead of removing it, to read what
    /// the processes left in it.
    pub fn kept_if(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
