//! Helpers shared by the integration tests: find the real `seed` binary and run it.

#![allow(dead_code)] // each test file uses a different subset

pub mod gpg;
pub mod http;
pub mod netns;
pub mod pcap;
pub mod signatures;

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `seed` binary of this test run (see `src/bin/seed-under-test.rs`).
pub fn seed_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_seed-under-test"))
}

/// `seed serve` with HTTP only, on a free loopback port (it logs the one it got).
pub const SERVE_HTTP_ONLY: [&str; 5] = [
    "serve",
    "--no-dhcp",
    "--no-tftp",
    "--http-listen",
    "127.0.0.1:0",
];

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

/// The Debian package each program a test runs comes from (`tests/setup` installs them all).
pub const PACKAGES: &[(&str, &str)] = &[
    ("apt-ftparchive", "apt-utils"),
    ("apt-get", "apt"),
    ("atftp", "atftp"),
    ("blkid", "util-linux"),
    ("busybox", "busybox"),
    ("cloud-init", "cloud-init"),
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("curl", "curl"),
    ("dhclient", "isc-dhcp-client"),
    ("dnsmasq", "dnsmasq-base"),
    ("docker-registry", "docker-registry"),
    ("dpkg-deb", "dpkg"),
    ("gpg", "gpg"),
    ("gpg-agent", "gpg-agent"),
    ("gpgv", "gpgv"),
    ("gzip", "gzip"),
    ("ip", "iproute2"),
    ("lsblk", "util-linux"),
    ("mkfs.ext4", "e2fsprogs"),
    ("netplan", "netplan.io"),
    ("openssl", "openssl"),
    ("ovs-vsctl", "openvswitch-switch"),
    ("perfdhcp", "kea-admin"),
    ("podman", "podman"),
    ("prlimit", "util-linux"),
    ("python3", "python3"),
    ("qemu-img", "qemu-utils"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("rdisc6", "ndisc6"),
    ("nsenter", "util-linux"),
    ("setpriv", "util-linux"),
    ("systemd-nspawn", "systemd-container"),
    ("sfdisk", "fdisk"),
    ("sgdisk", "gdisk"),
    ("sha256sum", "coreutils"),
    ("strip", "binutils"),
    ("skopeo", "skopeo"),
    ("tar", "tar"),
    ("tcpdump", "tcpdump"),
    ("timeout", "coreutils"),
    ("udhcpc", "udhcpc"),
    ("wipefs", "util-linux"),
    ("xorriso", "xorriso"),
    ("xz", "xz-utils"),
];

/// The absolute path of `program`, a peer or validator a test runs, or a panic that names the
/// Debian package to install: a missing tool is a setup problem the message must make obvious,
/// not a bare `NotFound` (or a parse error of its empty output) from deep inside a test.
pub fn need(program: &str) -> PathBuf {
    let package = PACKAGES
        .iter()
        .find(|(p, _)| *p == program)
        .map(|(_, package)| *package)
        .unwrap_or_else(|| panic!("tests/common: add `{program}` and its package to PACKAGES"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Root's PATH has the sbin directories; a sudo'd or minimal environment may not.
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain(extra).collect();
    need_in(program, package, &dirs)
}

/// `program` in one of `dirs`, or a panic naming `package` (see [`need`]).
pub fn need_in(program: &str, package: &str, dirs: &[PathBuf]) -> PathBuf {
    dirs.iter()
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed: install the Debian package `{package}` \
                 (tests/setup installs everything the tests need)"
            )
        })
}

/// Says, past the test harness's output capture, that a check did not run and why, so a
/// skip shows in every `cargo test` run and can never be read as a pass.
pub fn skipped(check: &str, why: &str) {
    use std::io::Write;
    // Writing to the stream itself, not through eprintln!, which the harness captures.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {check}: {why}");
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

/// Polls `done` every 20 ms until it holds; fails the test saying `what` if it does not within
/// `within`. The one way these tests wait for something another process does.
pub fn wait_until(within: std::time::Duration, what: &str, done: impl FnMut() -> bool) {
    wait_until_else(within, done, || what.to_string());
}

/// Polls `ready` every 20 ms until it gives a value; fails the test saying `why()` if it gives
/// none within `within`.
pub fn wait_for<T>(
    within: std::time::Duration,
    mut ready: impl FnMut() -> Option<T>,
    why: impl FnOnce() -> String,
) -> T {
    let mut value = None;
    wait_until_else(
        within,
        || {
            value = ready();
            value.is_some()
        },
        why,
    );
    value.expect("wait_until_else returned, so ready() gave a value")
}

/// [`wait_until`], the failure described by `why` when it happens (the console or the events
/// as they are at the deadline, not as they were at the start).
pub fn wait_until_else(
    within: std::time::Duration,
    mut done: impl FnMut() -> bool,
    why: impl FnOnce() -> String,
) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        if std::time::Instant::now() >= deadline {
            panic!("not within {} s: {}", within.as_secs_f64(), why());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The SHA-256 of `bytes`, lowercase hex (what seed records and `sha256sum` prints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `cmd`, which must succeed; its output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("start the command");
    assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
    out
}

/// A TCP port on loopback that was free a moment ago (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("its address")
        .port()
}

/// podman with a store of the test's own under `work` (vfs: no overlay mounts to leave behind;
/// cgroupfs and no events: no systemd or journal needed), never the machine's.
pub fn podman(work: &std::path::Path) -> Command {
    let mut cmd = Command::new(need("podman"));
    cmd.arg("--root")
        .arg(work.join("podman/storage"))
        .arg("--runroot")
        .arg(work.join("podman/run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ]);
    cmd
}

/// A lab config (`seed lab up`): seed on the lab bridge `seedbr0` at 10.10.10.1, HTTP on 8080,
/// state in `state`; one provisioning zone `management` on link `ens3`, role `compute`; then
/// what the test adds (YAML lines in place: `seed_extra` under `seed:`, `lifecycle` inside
/// its braces, `nodes` under `nodes:`, more zones and roles after the lab's own).
pub fn lab_config(
    state: &std::path::Path,
    seed_extra: &str,
    lifecycle: &str,
    nodes: &str,
    zones_extra: &str,
    roles_extra: &str,
) -> String {
    format!(
        r#"seed:
  interface: seedbr0
  address: 10.10.10.1
  ports: {{ http: 8080 }}
  state_dir: {state}
  lifecycle: {{ {lifecycle} }}
{seed_extra}
links:
  - name: ens3
zones:
  - name: management
    vlan: 10
    subnet: 10.10.10.0/24
    gateway: 10.10.10.254
    dns: [10.10.10.254]
    link: ens3
    native: true
    provisioning: true
    roles: [compute]
{zones_extra}roles:
  - name: compute
    links: [ens3]
    disk: {{ path: /dev/vda }}
{roles_extra}nodes:
{nodes}
install:
  user:
    name: dragon
    ssh_authorized_keys:
      - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwDi8WXTYb7l5d5XCX4g2I0N8m0HjR5cHgfJsbBJ1pz lab"
  storage_layout: direct
"#,
        state = state.display()
    )
}
