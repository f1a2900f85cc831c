//! The reference pages in docs/ are written from the code and must say what it does: the
//! command reference from clap's definitions, the config reference from the wire structs
//! serde reads (every key documented). `SEED_UPDATE_DOCS=1` writes them anew.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use common::repo_root;

fn check(page: &str, generated: &str) {
    let path = repo_root().join(page);
    if std::env::var_os("SEED_UPDATE_DOCS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    if written != generated {
        let line = written
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "{page} differs from the code from {line}: regenerate it with \
             SEED_UPDATE_DOCS=1 cargo test -p seed-tests --test docs, and review the diff"
        );
    }
}

#[test]
fn the_command_reference_is_the_code_s() {
    check("docs/CLI.md", &seed::cli::reference());
}

#[test]
fn the_config_reference_is_the_code_s_and_documents_every_key() {
    check(
        "docs/CONFIG.md",
        &seed::config::reference::markdown().unwrap(),
    );
}
