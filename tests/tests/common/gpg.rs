//! A throwaway gpg key in a home of its own (`GNUPGHOME`), for tests that sign a SHA256SUMS or an
//! APT repository; its public key exported as a keyring for gpgv and apt's `signed-by`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::describe;

/// A signing key and its exported keyring.
pub struct Key {
    home: PathBuf,
    /// The public key, as a keyring file (gpgv `--keyring`, apt `signed-by=`).
    pub keyring: PathBuf,
}

impl Key {
    /// A new ed25519 signing key (valid one day) with its home and keyring under `dir`.
    pub fn new(dir: &Path, user: &str) -> Self {
        let key = Self {
            home: dir.join("gnupg"),
            keyring: dir.join("keyring.gpg"),
        };
        std::fs::create_dir_all(&key.home).unwrap();
        std::fs::set_permissions(
            &key.home,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        key.gpg(&["--quick-gen-key", user, "ed25519", "sign", "1d"]);
        let public = key.gpg(&["--export"]);
        std::fs::write(&key.keyring, public.stdout).unwrap();
        key
    }

    /// Runs gpg with this key's home, unattended; asserts it succeeded.
    pub fn gpg(&self, args: &[&str]) -> Output {
        // gpg cannot make or use a secret key without its agent (a Recommends of gpg).
        super::need("gpg-agent");
        let out = Command::new(super::need("gpg"))
            .env("GNUPGHOME", &self.home)
            .args([
                "--batch",
                "--yes",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("gpg (apt-get install gpg)");
        assert!(out.status.success(), "gpg {args:?}: {}", describe(&out));
        out
    }
}
