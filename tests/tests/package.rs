//! seed's Debian package on a seed host: built by `packaging/deb/build`, installed with dpkg
//! into a fresh Debian 12 root booted with systemd as PID 1 (systemd-nspawn --boot), started as
//! the service, it provisions a lab machine (QEMU on the lab's bridge, in the network
//! namespace the container lives in), is reloaded with `systemctl reload` and restarted, and
//! the node's state is intact. `systemd-analyze security seed` is printed with its score.
//!
//! Needs root, systemd-nspawn (systemd-container), QEMU and what `tests/setup` builds: the
//! stand-in installer (target/lab-installer) and the root (target/lab-service-root).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{KillOnDrop, describe, repo_root, seed};

/// A Debian root booted by systemd-nspawn in a network namespace; powered off when dropped.
struct Container {
    nspawn: KillOnDrop,
    /// The container's PID 1, as the host sees it.
    leader: u32,
    dir: PathBuf,
}

impl Container {
    fn boot(dir: &Path, netns: &str, binds: &[(&Path, &str)]) -> Self {
        let mut cmd = Command::new(common::need("systemd-nspawn"));
        // No machined or D-Bus on the host (a CI machine has no systemd as PID 1): nothing to
        // register with, and the container stays in the test's own cgroup.
        cmd.arg("--directory")
            .arg(dir)
            .args([
                "--boot",
                "--machine=seedhost",
                "--register=no",
                "--keep-unit",
            ])
            .arg(format!("--network-namespace-path=/run/netns/{netns}"))
            .args(["--console=passive", "--quiet"]);
        for (host, guest) in binds {
            cmd.arg(format!("--bind-ro={}:{guest}", host.display()));
        }
        let mut nspawn = KillOnDrop::new(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let parent = nspawn.child().id();
        // nspawn's own first child clones the container and exits; PID 1 is the one that
        // has become systemd.
        let leader = common::wait_for(
            Duration::from_secs(30),
            || {
                child_of(parent).filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
                })
            },
            || "systemd-nspawn started no container".into(),
        );
        let container = Self {
            nspawn,
            leader,
            dir: dir.to_path_buf(),
        };
        // Until boot is done: "running", or "degraded" where a unit of the minimal root does
        // not fit a container ("offline" while systemd is still starting its manager).
        let booted = |out: &Output| {
            let state = String::from_utf8_lossy(&out.stdout);
            state.trim() == "running" || state.trim() == "degraded"
        };
        common::wait_until_else(
            Duration::from_secs(120),
            || booted(&container.run(&["systemctl", "is-system-running"])),
            || {
                format!(
                    "the container did not boot: {}",
                    describe(&container.run(&["systemctl", "--failed", "--no-pager"]))
                )
            },
        );
        container
    }

    /// A command inside the container, in all its namespaces (as `machinectl shell` would).
    fn run(&self, args: &[&str]) -> Output {
        Command::new(common::need("nsenter"))
            .arg(format!("--target={}", self.leader))
            .args(["--all", "--"])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .unwrap()
    }

    /// [`Container::run`], which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} in the container: {}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn journal(&self) -> String {
        String::from_utf8_lossy(
            &self
                .run(&["journalctl", "--no-pager", "-u", "seed", "-o", "cat"])
                .stdout,
        )
        .into_owned()
    }

    fn file(&self, path: &str) -> PathBuf {
        self.dir.join(path.trim_start_matches('/'))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.run(&["systemctl", "poweroff"]);
        let child = self.nspawn.child();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // KillOnDrop kills it.
    }
}

/// The first process whose parent is `parent`.
fn child_of(parent: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest)?;
        let ppid = after.split_whitespace().nth(1)?.parse::<u32>().ok()?;
        if ppid == parent {
            return Some(pid);
        }
    }
    None
}

/// The lab: one BIOS machine (QEMU's iPXE ROM), `seed lab up --no-serve`; down when dropped.
struct Lab {
    dir: tempfile::TempDir,
    netns: String,
}

impl Lab {
    fn up() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let netns = format!("seedpkg{}", std::process::id());
        let node = "  - name: node1\n    role: compute\n    firmware: bios\n    \
                    bmc: { address: 10.10.0.31, driver: qemu }\n    \
                    macs: [\"52:54:00:31:00:31\"]\n    console: ttyS0,115200n8\n";
        std::fs::write(
            dir.path().join("lab.yaml"),
            common::lab_config(
                &dir.path().join("state"),
                "",
                "progress_timeout: 300, phone_home_timeout: 0",
                node,
                "",
                "",
            ),
        )
        .unwrap();
        let lab = Self { dir, netns };
        let out = lab
            .seed()
            .args(["lab", "up", "--no-serve", "--netns", &lab.netns])
            .output()
            .unwrap();
        assert!(out.status.success(), "lab up: {}", describe(&out));
        lab
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("lab.yaml")
    }

    fn seed(&self) -> Command {
        let mut cmd = seed();
        cmd.arg("--config")
            .arg(self.config())
            .arg("--state-dir")
            .arg(self.dir.path().join("state"));
        cmd
    }

    fn console(&self) -> String {
        let path = self.dir.path().join("state/lab/node1.console.log");
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.seed().args(["lab", "down"]).output();
    }
}

/// The node's state as the service's store says, from `seed status --json` in the container.
fn node_state(host: &Container) -> String {
    let out = host.run(&["seed", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    json["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == "node1"))
        .and_then(|n| n["state"].as_str())
        .unwrap_or("")
        .to_string()
}

fn main_pid(host: &Container) -> String {
    host.ok(&["systemctl", "show", "-P", "MainPID", "seed"])
        .trim()
        .to_string()
}

#[test]
fn the_package_runs_seed_as_a_service_that_provisions_reloads_and_restarts() {
    if !nix::unistd::Uid::effective().is_root() {
        common::skipped("the package test", "needs root (nspawn, namespaces, QEMU)");
        return;
    }
    let root_tar = repo_root().join("target/lab-service-root/root.tar");
    let installer = repo_root().join("target/lab-installer");
    for built in [&root_tar, &installer.join("initrd.gz")] {
        assert!(
            built.exists(),
            "{} is missing: tests/setup builds it",
            built.display()
        );
    }
    let work = tempfile::tempdir_in(repo_root().join("target")).unwrap();

    // The package, from the binary under test (its debug info stripped: a seed host gets
    // the release binary, which has none).
    let binary = work.path().join("seed");
    std::fs::copy(common::seed_bin(), &binary).unwrap();
    let strip = Command::new(common::need("strip"))
        .arg("--strip-debug")
        .arg(&binary)
        .output()
        .unwrap();
    assert!(strip.status.success(), "{}", describe(&strip));
    let debs = work.path().join("debs");
    // This version and the next one of it, for the upgrade.
    let package = |version: Option<&str>| {
        let mut build = Command::new(repo_root().join("packaging/deb/build"));
        build.arg("--binary").arg(&binary).arg("--out").arg(&debs);
        if let Some(version) = version {
            build.args(["--version", version]);
        }
        let out = common::run(&mut build);
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    };
    let deb = package(None);
    let deb_name = deb.file_name().unwrap().to_string_lossy().into_owned();
    package(Some("99.0.0-1"));

    // A fresh Debian 12 root, unpacked anew.
    let root = work.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&root_tar)
        .arg("-C")
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));

    let lab = Lab::up();
    let host = Container::boot(
        &root,
        &lab.netns,
        &[(&debs, "/srv/debs"), (&installer, "/srv/installer")],
    );

    // Installed: the user, the state directory it owns, the unit enabled but not started
    // (the config is still the example rack, whose interface this host does not have).
    let install = host.ok(&["dpkg", "-i", &format!("/srv/debs/{deb_name}")]);
    assert!(install.contains("Setting up seed"), "{install}");
    let user = host.ok(&["getent", "passwd", "seed"]);
    assert!(user.contains(":/var/lib/seed:/usr/sbin/nologin"), "{user}");
    assert_eq!(
        host.ok(&["stat", "-c", "%U:%G %a", "/var/lib/seed"]).trim(),
        "seed:seed 750"
    );
    assert_eq!(
        host.ok(&["systemctl", "is-enabled", "seed"]).trim(),
        "enabled"
    );
    assert_eq!(
        String::from_utf8_lossy(&host.run(&["systemctl", "is-active", "seed"]).stdout).trim(),
        "inactive"
    );
    let example = host.ok(&["seed", "check", "/etc/seed/seed.yaml"]);
    assert!(
        example.contains("cmp1"),
        "the conffile is the example rack: {example}"
    );

    // The operator writes the rack's config (the lab's, with the package's state directory)
    // and registers the installer, as root.
    let config = std::fs::read_to_string(lab.config()).unwrap();
    let state_line = config
        .lines()
        .find(|l| l.trim_start().starts_with("state_dir:"))
        .unwrap()
        .to_string();
    std::fs::write(
        host.file("/etc/seed/seed.yaml"),
        config.replace(&state_line, "  state_dir: /var/lib/seed"),
    )
    .unwrap();
    host.ok(&["seed", "check"]);
    let added = host.ok(&[
        "seed",
        "images",
        "add",
        "ubuntu-24.04",
        "--kernel",
        "/srv/installer/vmlinuz",
        "--initrd",
        "/srv/installer/initrd.gz",
    ]);
    assert!(
        added.contains("in /var/lib/seed/images/ubuntu-24.04"),
        "{added}"
    );
    let owners = host.ok(&["find", "/var/lib/seed", "!", "-user", "seed"]);
    assert!(
        owners.trim().is_empty(),
        "root left files the service cannot own: {owners}"
    );

    // Started: `systemctl start` returns once seed said READY=1.
    host.ok(&["systemctl", "start", "seed"]);
    assert_eq!(
        host.ok(&["systemctl", "is-active", "seed"]).trim(),
        "active"
    );
    let pid = main_pid(&host);
    let status = host.ok(&["cat", &format!("/proc/{pid}/status")]);
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    let seed_uid = host.ok(&["id", "-u", "seed"]).trim().to_string();
    assert!(
        field("Uid:")
            .split_whitespace()
            .skip(1)
            .all(|u| u == seed_uid),
        "seed serve must run as seed: {}",
        field("Uid:")
    );
    // CAP_NET_BIND_SERVICE (bit 10) and CAP_NET_RAW (bit 13), nothing else.
    assert_eq!(
        field("CapEff:").split_whitespace().nth(1),
        Some("0000000000002400"),
        "{status}"
    );
    let journal = host.journal();
    assert!(journal.contains("seed ready"), "{journal}");

    // A node provisioned through the service: marked by the CLI (root, beside the service),
    // switched on by the lab's power driver on the host.
    host.ok(&["seed", "provision", "node1", "--no-power", "--no-wait"]);
    let out = lab.seed().args(["power", "on", "node1"]).output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    common::wait_until_else(
        Duration::from_secs(600),
        || node_state(&host) == "installed",
        || {
            format!(
                "node1 did not install through the service: {}\n--- journal\n{}\n--- console\n{}",
                node_state(&host),
                host.journal(),
                lab.console()
            )
        },
    );
    let events_before = host.ok(&["seed", "status", "node1"]);

    // Reloaded: the same process, the config read again.
    host.ok(&["systemctl", "reload", "seed"]);
    assert_eq!(main_pid(&host), pid, "a reload is not a restart");
    common::wait_until_else(
        Duration::from_secs(30),
        || host.journal().contains("config reloaded"),
        || format!("no reload in the journal: {}", host.journal()),
    );
    assert_eq!(
        host.ok(&["systemctl", "is-active", "seed"]).trim(),
        "active"
    );

    // Restarted: a new process, the node's state and timeline intact.
    host.ok(&["systemctl", "restart", "seed"]);
    assert_ne!(main_pid(&host), pid, "a restart is a new process");
    assert_eq!(
        host.ok(&["systemctl", "is-active", "seed"]).trim(),
        "active"
    );
    assert_eq!(node_state(&host), "installed");
    let events_after = host.ok(&["seed", "status", "node1"]);
    for line in events_before.lines().filter(|l| l.contains("installed")) {
        assert!(
            events_after.contains(line),
            "lost after the restart: {line}\n{events_after}"
        );
    }

    // Upgraded: the store backed up as the old version left it, the service restarted on the
    // new binary, the operator's config kept (a conffile they changed).
    let pid = main_pid(&host);
    let old_version = deb_name
        .trim_start_matches("seed_")
        .trim_end_matches("_amd64.deb")
        .to_string();
    let upgrade = host.ok(&["dpkg", "-i", "/srv/debs/seed_99.0.0-1_amd64.deb"]);
    assert!(upgrade.contains("Setting up seed (99.0.0-1)"), "{upgrade}");
    assert_ne!(main_pid(&host), pid, "the upgrade restarts the service");
    assert_eq!(
        host.ok(&["systemctl", "is-active", "seed"]).trim(),
        "active"
    );
    let backup = format!("/var/lib/seed/backups/seed.db.{old_version}");
    assert_eq!(
        host.ok(&["stat", "-c", "%U", &backup]).trim(),
        "seed",
        "the upgrade's backup"
    );
    let restored = host.ok(&["seed", "--state-dir", "/tmp/check", "restore", &backup]);
    assert!(restored.contains("1 nodes"), "{restored}");
    assert_eq!(node_state(&host), "installed");
    assert!(
        std::fs::read_to_string(host.file("/etc/seed/seed.yaml"))
            .unwrap()
            .contains("node1"),
        "the operator's config was replaced by the upgrade"
    );

    // The unit's exposure as systemd rates it, in the test's output.
    let security = host.run(&["systemd-analyze", "security", "--no-pager", "seed.service"]);
    let text = String::from_utf8_lossy(&security.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_default()
        .to_string();
    {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr().lock(),
            "systemd-analyze security seed:\n{text}"
        );
    }
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    assert!(score <= 2.5, "exposure {score}: {overall}\n{text}");
}
