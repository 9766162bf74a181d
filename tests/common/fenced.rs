//! The fenced code blocks of the repository's Markdown pages, for the
//! tests that run or check what the docs show. Each test binary uses
//! part of it.
#![allow(dead_code)]

use std::path::Path;

/// A fenced block: its info string (`yaml envoy`), its text, and the line
/// it starts on.
pub struct Block {
    pub info: String,
    pub text: String,
    pub line: usize,
}

/// The fenced blocks of `page`, a path from the repository's root.
pub fn blocks(page: &str) -> Vec<Block> {
    // The repository's root: the library's crate, or above the gateway's.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = match crate_dir.join("README.md").exists() {
        true => crate_dir,
        false => crate_dir.parent().expect("the workspace's root"),
    };
    let path = root.join(page);
    let markdown = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_owned(),
                    text: String::new(),
                    line: i + 1,
                })
            }
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{page}: a fenced block is never closed");
    blocks
}

/// The one block of `page` whose info string is `info`.
pub fn block(page: &str, info: &str) -> String {
    let mut found = blocks(page).into_iter().filter(|b| b.info == info);
    let block = found
        .next()
        .unwrap_or_else(|| panic!("{page} has no ```{info} block"));
    assert!(
        found.next().is_none(),
        "{page} has several ```{info} blocks"
    );
    block.text
}
