//! The binary's own surface: help and the embedded example.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

use std::process::Command;

fn seed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_seed"))
}

#[test]
fn help_lists_the_commands() {
    let out = seed().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["check", "serve", "status", "config"] {
        assert!(help.contains(&format!("  {cmd} ")), "{help}");
    }
    assert!(
        !help.contains("  debug "),
        "developer commands stay hidden: {help}"
    );
}

#[test]
fn the_embedded_example_is_the_shipped_example() {
    let out = seed().args(["config", "example"]).output().unwrap();
    assert!(out.status.success());
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/osism-rack.yaml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), shipped);
}
