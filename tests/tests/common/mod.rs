//! Helpers shared by the integration tests: find the real `seed` binary and run it.

#![allow(dead_code)] // each test file uses a different subset

pub mod gpg;
pub mod http;
pub mod netns;
pub mod pcap;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `seed` binary of this test run (see `src/bin/seed-under-test.rs`).
pub fn seed_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_seed-under-test"))
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

/// A child process that is killed when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    /// Guard `child`.
    pub fn new(child: std::process::Child) -> Self {
        Self(Some(child))
    }

    /// The child, e.g. for its pid or `try_wait`.
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child already waited for")
    }

    /// Wait for the child to end by itself and collect its output.
    pub fn wait_with_output(mut self) -> Output {
        let child = self.0.take().expect("child already waited for");
        child.wait_with_output().expect("wait for child")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
