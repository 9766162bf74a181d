//! The npm package in `plugin/`, run as its users run it: `npm` and `node`
//! in its folder.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The package's folder.
pub fn plugin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin")
}

/// Runs `program args` in `plugin/`; fails with what to install if it is
/// missing, and with its output if it fails.
pub fn run_in_plugin(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(plugin_dir())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install Node.js and npm (Debian's nodejs and npm; .ci/test does)")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
