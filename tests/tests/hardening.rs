//! seed against an attacker on the provisioning network: the real binary in a namespace, the
//! attacker (and the node) next to it in another, with real clients (udhcpc, curl) and raw
//! packets. Each test is one finding of issue 18 that failed on the code before it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{Netns, SEED_IP, serving, udhcpc};
use common::{describe, seed};

const NODE_MAC: &str = "02:00:00:00:00:21";
/// n1's address: its BMC's last octet in the provisioning zone.
const NODE_IP: &str = "10.99.10.21";
/// Another host on the provisioning network.
const STRANGER_IP: &str = "10.99.10.50";
const NODES: &str = "[{ name: n1, role: node, bmc: { address: 10.99.0.21, driver: manual }, macs: [\"02:00:00:00:00:21\"] }]";

/// The DHCP tests' rack with an install section, so that n1 can be provisioned.
fn installable(ns: &Netns, dir: &Path) -> std::path::PathBuf {
    let config = ns.config(dir, "10.99.10.0/24", "", NODES);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "install:\n  user:\n    name: dragon\n    ssh_authorized_keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwDi8WXTYb7l5d5XCX4g2I0N8m0HjR5cHgfJsbBJ1pz dragon@lab\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// `seed …` on `config` and the state of [`serving`].
fn cli(config: &Path, dir: &Path, args: &[&str]) -> std::process::Output {
    seed()
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .output()
        .unwrap()
}

/// Register `ubuntu-24.04` from three small files and provision n1 (no power: the test plays
/// the machine).
fn provision_n1(config: &Path, dir: &Path) {
    for name in ["vmlinuz", "initrd"] {
        std::fs::write(dir.join(name), name).unwrap();
    }
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let out = cli(
        config,
        dir,
        &[
            "images",
            "add",
            "ubuntu-24.04",
            "--kernel",
            &path("vmlinuz"),
            "--initrd",
            &path("initrd"),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let out = cli(config, dir, &["provision", "--no-power", "n1"]);
    assert!(out.status.success(), "{}", describe(&out));
}

/// n1's iPXE script, asked from `from` in the client namespace.
fn script_from(ns: &Netns, from: &str) -> String {
    let out = ns
        .in_cli("curl")
        .args(["-sS", "--max-time", "10", "--interface", from])
        .arg(format!(
            "http://{SEED_IP}:8080/boot.ipxe?mac={NODE_MAC}&chip=undionly&platform=pcbios"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// n1 as the open API shows it.
fn n1(ns: &Netns) -> serde_json::Value {
    let out = ns
        .in_cli("curl")
        .args(["-sS", "--max-time", "10", "--interface", STRANGER_IP])
        .arg(format!("http://{SEED_IP}:8080/api/v1/nodes/n1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The node's iPXE asking DHCP: a network boot of n1 (user class "iPXE").
fn ipxe_boots(ns: &Netns, dir: &Path) {
    let (out, env) = udhcpc(
        ns,
        dir,
        &[
            "-V",
            "PXEClient:Arch:00000:UNDI:002001",
            "-x",
            "0x4d:69505845",
        ],
    );
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some(NODE_IP),
        "{}",
        describe(&out)
    );
}

/// The install script carries the node's token: another host that names n1's MAC gets the
/// local disk, n1 (from the address seed leased it) gets the installer. Fetching it again in
/// the same boot is no new attempt; a new DHCP boot is.
#[test]
fn the_installer_goes_only_to_the_node_and_attempts_count_boots() {
    let (ns, dir, config, seed) = serving(installable);
    provision_n1(&config, dir.path());
    ns.set_client_mac(NODE_MAC);
    ns.add_client_address(&format!("{NODE_IP}/24"));
    ns.add_client_address(&format!("{STRANGER_IP}/24"));

    // The attacker: any number of asks, no token, no attempt.
    for _ in 0..5 {
        let text = script_from(&ns, STRANGER_IP);
        assert!(
            !text.contains("/nodes/"),
            "the stranger got a token:\n{text}"
        );
        assert!(text.contains("n1: not this machine's to ask"), "{text}");
    }
    assert_eq!(n1(&ns)["state"], "provisioning");
    assert_eq!(n1(&ns)["attempts"], 0);

    // The node boots once and asks four times (iPXE retries a failed download): one attempt,
    // where the default three attempts would have failed it before.
    ipxe_boots(&ns, dir.path());
    for _ in 0..4 {
        let text = script_from(&ns, NODE_IP);
        assert!(
            text.contains("/nodes/"),
            "the node got no installer:\n{text}"
        );
    }
    assert_eq!(n1(&ns)["state"], "provisioning");
    assert_eq!(n1(&ns)["attempts"], 1);
    // A second boot is the second attempt.
    ipxe_boots(&ns, dir.path());
    assert!(script_from(&ns, NODE_IP).contains("/nodes/"));
    assert_eq!(n1(&ns)["attempts"], 2);

    let log = seed.stop();
    let refused = log
        .lines()
        .filter(|l| l.contains("asked from 10.99.10.50, which is not n1's address (10.99.10.21)"))
        .count();
    assert_eq!(refused, 1, "one refusal line a minute:\n{log}");
}

/// `seed status | head -1` ends quietly (before: a panic on EPIPE, exit 101).
#[test]
fn a_closed_pipe_ends_a_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = seed()
        .args(["config", "example"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}

/// A 0-byte `seed.db` is refused by every command that opens the store, with the file named;
/// it is left as it was.
#[test]
fn an_empty_state_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let db = state.join("seed.db");
    std::fs::write(&db, b"").unwrap();
    let config = dir.path().join("seed.yaml");
    std::fs::write(
        &config,
        std::fs::read_to_string(common::repo_root().join("examples/lab.yaml")).unwrap(),
    )
    .unwrap();
    for args in [
        &["status"][..],
        &[
            "serve",
            "--no-dhcp",
            "--no-tftp",
            "--http-listen",
            "127.0.0.1:0",
        ],
    ] {
        let mut cmd = seed();
        cmd.arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(&state)
            .args(args);
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = common::KillOnDrop::new(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.child().try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "seed {args:?} did not refuse");
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "state database {} is empty (0 bytes)",
                db.display()
            )),
            "{args:?}: {stderr}"
        );
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    }
}
