//! Helpers for seed's integration tests: find the real `seed` binary and run it.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `seed` binary built by this `cargo test` run.
///
/// Integration tests live in their own crate, so Cargo's `CARGO_BIN_EXE_seed` is not set here;
/// the binary sits next to this test executable's `deps/` directory. `cargo test --workspace`
/// builds it because the `seed` crate has integration tests of its own.
pub fn seed_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join("seed");
    assert!(
        bin.exists(),
        "{} does not exist; build it with `cargo build -p seed` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// A `seed` command with a clean environment for seed's own variables.
pub fn seed() -> Command {
    let mut cmd = Command::new(seed_bin());
    for var in ["SEED_CONFIG", "SEED_STATE_DIR", "SEED_LOG"] {
        cmd.env_remove(var);
    }
    cmd
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
