//! The README and the guide in `docs/`: every code block is run or
//! checked. Rust blocks run as doctests (`src/lib.rs` includes each page);
//! the proxies' configurations run in `gateway/tests/gateway/proxies.rs`;
//! the TypeScript and JavaScript are type-checked and parsed in
//! `gateway/tests/plugin.rs`. The shell commands, TOML and JSON are checked
//! here: the packages, examples, features, tests, flags and variables they
//! name exist. It lives with the gateway, whose `--help` it reads.

#[path = "common/fenced.rs"]
mod fenced;

use std::{path::Path, process::Command};

/// The workspace: the library at its root, the gateway in `gateway/`.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway's crate is in the workspace")
}

/// Where each package of the workspace lives, by name.
fn package_dir(name: &str) -> Option<&'static str> {
    match name {
        "figma-paywall" => Some(""),
        "figma-paywall-gateway" => Some("gateway/"),
        "figma-paywall-testbed" => Some("testbed/"),
        _ => None,
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The README, BENCHMARKS.md and every page of `docs/`.
fn pages() -> Vec<String> {
    let mut pages: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    pages.sort();
    pages.insert(0, "README.md".to_owned());
    pages.push("BENCHMARKS.md".to_owned());
    pages
}

#[test]
fn every_page_runs_its_rust_as_doctests() {
    let lib = read("src/lib.rs");
    for page in pages() {
        assert!(
            lib.contains(&format!("include_str!(\"../{page}\")")),
            "{page} is not included in src/lib.rs's `guide`: its Rust blocks would never run"
        );
    }
}

/// What every block of every page is, and that a test checks it.
#[test]
fn every_block_is_checked_by_a_test() {
    let features = cargo_features();
    let help = gateway_help();
    let sources = sources();
    let mut checked = 0;
    for page in pages() {
        for block in fenced::blocks(&page) {
            let at = format!("{page}:{}", block.line);
            match block.info.as_str() {
                info if info == "rust" || info.starts_with("rust,") => {}
                // What a run printed, quoted: nothing to run.
                "text" => {}
                "sh" => check_shell(&at, &block.text, &features, &help, &sources),
                "toml" => check_toml(&at, &block.text, &features),
                "json" => {
                    let object = format!("{{{}}}", block.text);
                    if let Err(e) = serde_json::from_str::<serde_json::Value>(&object) {
                        panic!("{at}: not JSON ({e})");
                    }
                }
                "ts" | "js" => assert!(
                    ["README.md", "docs/plugin.md", "docs/gateway.md"].contains(&page.as_str()),
                    "{at}: tests/plugin.rs checks the TypeScript and JavaScript of its PAGES only"
                ),
                "nginx" | "caddyfile" | "yaml traefik" | "yaml envoy" => assert_eq!(
                    page, "docs/gateway.md",
                    "{at}: tests/gateway/proxies.rs runs the configurations of docs/gateway.md only"
                ),
                other => panic!("{at}: no test checks a ```{other} block; add one here"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} blocks found");
}

/// The features each package's `Cargo.toml` declares.
fn cargo_features() -> Vec<String> {
    let mut all = Vec::new();
    for manifest in ["Cargo.toml", "gateway/Cargo.toml", "testbed/Cargo.toml"] {
        let manifest = read(manifest);
        let features = manifest
            .split("\n[features]\n")
            .nth(1)
            .expect("a [features] table");
        all.extend(
            features
                .lines()
                .take_while(|l| !l.starts_with('['))
                .filter_map(|l| l.split_once(" = "))
                .map(|(name, _)| name.trim().to_owned()),
        );
    }
    all
}

/// The gateway's `--help`.
fn gateway_help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_figma-paywall"))
        .arg("--help")
        .output()
        .expect("the gateway runs");
    assert!(output.status.success());
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Everything under `src/`, `examples/`, `tests/`, `.ci/`, `gateway/` and `testbed/`, to find the
/// environment variables the docs name.
fn sources() -> String {
    fn walk(dir: &Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, into);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                into.push_str(&text);
            }
        }
    }
    let mut all = String::new();
    for dir in ["src", "examples", "tests", ".ci", "gateway", "testbed"] {
        walk(&root().join(dir), &mut all);
    }
    all
}

/// Each command line: its variables are read somewhere, `cargo` names
/// examples, features and tests that exist, and the gateway's and the
/// examples' flags are theirs.
fn check_shell(at: &str, text: &str, features: &[String], help: &str, sources: &str) {
    for line in text.lines() {
        let command = line.split(" #").next().unwrap_or_default().trim();
        if command.is_empty() || command.starts_with('#') {
            continue;
        }
        let mut words = command.split_whitespace().peekable();
        while let Some((name, _)) = words.peek().and_then(|w| w.split_once('=')) {
            assert!(
                sources.contains(name),
                "{at}: {name} is read nowhere in src/, examples/, tests/, .ci/, gateway/ or testbed/"
            );
            words.next();
        }
        let words: Vec<&str> = words.collect();
        let (program, args) = words
            .split_first()
            .unwrap_or_else(|| panic!("{at}: {line}"));
        let flags_of = |args: &[&str], known: &str, whose: &str| {
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let name = flag.split('=').next().unwrap_or(flag);
                assert!(
                    known.contains(&format!("{name} "))
                        || known.contains(&format!("{name}\n"))
                        || known.contains(&format!("\"{name}\"")),
                    "{at}: {whose} has no flag {name}"
                );
            }
        };
        match *program {
            "figma-paywall" => flags_of(args, help, "the gateway"),
            "cargo" => {
                let (ours, theirs) = match args.iter().position(|a| *a == "--") {
                    Some(i) => (&args[..i], &args[i + 1..]),
                    None => (args, &[][..]),
                };
                let value = |flag: &str| {
                    ours.iter().position(|a| *a == flag).map(|i| {
                        ours.get(i + 1)
                            .copied()
                            .unwrap_or_else(|| panic!("{at}: {flag} alone"))
                    })
                };
                if let Some(list) = value("--features") {
                    for feature in list.split(',') {
                        assert!(
                            features.iter().any(|f| f == feature),
                            "{at}: no feature {feature} in Cargo.toml"
                        );
                    }
                }
                let package = value("-p").unwrap_or("figma-paywall");
                let dir = package_dir(package)
                    .unwrap_or_else(|| panic!("{at}: no package {package} in the workspace"));
                if let Some(test) = value("--test") {
                    assert!(
                        root().join(format!("{dir}tests/{test}.rs")).exists()
                            || root().join(format!("{dir}tests/{test}/main.rs")).exists(),
                        "{at}: no test target {test} in {package}"
                    );
                }
                if let Some(bench) = value("--bench") {
                    assert!(
                        root().join(format!("{dir}benches/{bench}.rs")).exists(),
                        "{at}: no bench {bench} in {package}"
                    );
                }
                if let Some(example) = value("--example") {
                    let source = read(&format!("{dir}examples/{example}.rs"));
                    flags_of(theirs, &source, &format!("example {example}"));
                } else if package == "figma-paywall-gateway" {
                    flags_of(theirs, help, "the gateway");
                }
                match ours.first() {
                    Some(&"run") | Some(&"test") | Some(&"bench") | Some(&"build") => {}
                    Some(&"install") => assert!(
                        ours.contains(&"figma-paywall-gateway") || ours.contains(&"gateway"),
                        "{at}: cargo install names the gateway's crate"
                    ),
                    other => panic!("{at}: cargo {other:?} is not checked here"),
                }
            }
            script if script.starts_with(".ci/") => {
                assert!(root().join(script).exists(), "{at}: no script {script}")
            }
            script if script.starts_with("gateway/benches/") => {
                assert!(root().join(script).exists(), "{at}: no script {script}")
            }
            other => panic!("{at}: no check for the command {other}; add one here"),
        }
    }
}

/// The features named exist, and the crate is named as published.
fn check_toml(at: &str, text: &str, features: &[String]) {
    for line in text.lines() {
        if let Some(listed) = line.split("features = [").nth(1) {
            let listed = listed.split(']').next().unwrap_or_default();
            for feature in listed.split(',').map(|f| f.trim().trim_matches('"')) {
                assert!(
                    features.iter().any(|f| f == feature),
                    "{at}: no feature {feature:?} in Cargo.toml"
                );
            }
        }
        if line.contains("figma") {
            assert!(line.starts_with("figma-paywall = "), "{at}: {line}");
        }
    }
}
