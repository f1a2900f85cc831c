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
    for args in [&["status"][..], &common::SERVE_HTTP_ONLY[..]] {
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
        common::wait_until_else(
            std::time::Duration::from_secs(20),
            || child.child().try_wait().unwrap().is_some(),
            || format!("seed {args:?} did not refuse"),
        );
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

/// seed's resident memory (KiB) and open file descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// seed with its open-file limit at 1,024, soft and hard (so it cannot raise it).
fn limited_seed(ns: &Netns, dir: &Path) -> common::netns::Seed {
    let config = ns.config(dir, "10.99.10.0/24", "", NODES);
    ns.start_seed_with(
        &config,
        &dir.join("state"),
        &["prlimit", "--nofile=1024:1024"],
    )
}

/// `GET /metrics` from `from`: whether HTTP answers within 5 s.
fn http_answers(ns: &Netns, from: &str) -> bool {
    ns.in_cli("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            "--interface",
            from,
        ])
        .arg(format!("http://{SEED_IP}:8080/metrics"))
        .status()
        .unwrap()
        .success()
}

/// A Python attacker in the client namespace holding its sockets until its stdin closes.
fn attacker(ns: &Netns, script: &str, args: &[String]) -> common::KillOnDrop {
    use std::io::BufRead;
    let mut child = ns
        .in_cli("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the attacker did not start");
    common::KillOnDrop::new(child)
}

const PY_TFTP_FLOOD: &str = r#"
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
seed, addrs, n = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
# Paced (about 1,000 a second) so that the kernel's receive buffer of port 69 drops none.
rrq = b"\0\x01ipxe.efi\0octet\0timeout\0255\0windowsize\x0065535\0blksize\x001468\0"
held = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addrs[i % len(addrs)], 0))
    s.sendto(rrq, (seed, 69))
    held.append(s)
    time.sleep(0.001)
print("ready", flush=True)
sys.stdin.read()
"#;

const PY_TFTP_ACK0: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], 0))
s.settimeout(3)
s.sendto(b"\0\x01ipxe.efi\0octet\0windowsize\x0065535\0blksize\x001468\0", (sys.argv[1], 69))
oack, tid = s.recvfrom(2048)
assert oack[:2] == b"\0\x06", oack
s.sendto(b"\0\x04\0\0", tid)
total, end = 0, time.time() + 15
while time.time() < end:
    try:
        data, _ = s.recvfrom(65536)
    except socket.timeout:
        break
    total += len(data)
print(total)
"#;

/// 2,000 abandoned read requests with the largest options (timeout 255, windowsize 65535) from
/// 40 addresses: seed holds at most 256 transfers (8 per address), its memory and descriptors
/// stay bounded, HTTP answers throughout under a 1,024 open-file limit, and once the attackers'
/// transfers time out (timeout 255 is not acknowledged) TFTP serves again. Before: 300 such
/// requests took seed from 16 to 533 MB, 1,000 stopped HTTP and TFTP. An RRQ and an ACK 0 get
/// one block (and its retransmissions), not the whole file six times.
#[test]
fn abandoned_maximal_tftp_transfers_hold_bounded_resources() {
    common::need("prlimit");
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let seed = limited_seed(&ns, dir.path());
    let attackers: Vec<String> = (100..140).map(|i| format!("10.99.10.{i}")).collect();
    for a in attackers.iter().chain([&STRANGER_IP.to_string()]) {
        ns.add_client_address(&format!("{a}/24"));
    }
    let (rss_before, fds_before) = footprint(seed.pid());

    // The amplification probe first (while there is room for its transfer).
    let out = ns
        .in_cli("python3")
        .args(["-c", PY_TFTP_ACK0, SEED_IP, "10.99.10.100"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let received: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        (1472..=6 * 1472).contains(&received),
        "an RRQ and an ACK 0 made seed send {received} bytes"
    );

    let flood = attacker(
        &ns,
        PY_TFTP_FLOOD,
        &[SEED_IP.to_string(), attackers.join(","), "2000".to_string()],
    );
    // Every request has been read when the refusals (2,000 less the 256 taken) are counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ns
            .in_cli("curl")
            .args(["-sS", "--max-time", "5", "--interface", STRANGER_IP])
            .arg(format!("http://{SEED_IP}:8080/metrics"))
            .output()
            .unwrap();
        let failed: u64 = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("seed_tftp_transfers_total{outcome=\"failed\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if failed >= 2000 - 256 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed did not read the flood: {failed} refused"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (rss, fds) = footprint(seed.pid());
    eprintln!("before: {rss_before} KiB, {fds_before} fds; under the flood: {rss} KiB, {fds} fds");
    assert!(
        fds <= fds_before + 256 + 8,
        "{fds} descriptors (before {fds_before})"
    );
    assert!(
        rss <= rss_before + 32 * 1024,
        "{rss} KiB resident (before {rss_before})"
    );
    assert!(
        http_answers(&ns, STRANGER_IP),
        "HTTP stopped under the TFTP flood"
    );

    // The attackers go quiet; their transfers end within (5 retries + 1) × 1 s each.
    drop(flood);
    common::wait_until(
        std::time::Duration::from_secs(30),
        "the abandoned transfers were never ended",
        || footprint(seed.pid()).1 <= fds_before + 4,
    );
    let got = dir.path().join("ipxe.efi");
    let out = ns
        .in_cli("curl")
        .args(["-sS", "--max-time", "30", "--interface", STRANGER_IP, "-o"])
        .arg(&got)
        .arg(format!("tftp://{SEED_IP}/ipxe.efi"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        std::fs::read(&got).unwrap()
            == std::fs::read(common::repo_root().join("ipxe/firmware/ipxe.efi")).unwrap()
    );
    seed.stop();
}

const PY_IDLE_HTTP: &str = r#"
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
seed, addr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((addr, 0))
    s.settimeout(5)
    try:
        s.connect((seed, 8080))
    except OSError:
        pass
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
"#;

/// 1,100 idle connections from one host under a 1,024 open-file limit: seed keeps at most
/// 128 of them and answers everyone else. Before: HTTP stopped until they closed.
#[test]
fn idle_http_connections_from_one_host_cannot_take_every_descriptor() {
    common::need("prlimit");
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let seed = limited_seed(&ns, dir.path());
    ns.add_client_address("10.99.10.100/24");
    ns.add_client_address(&format!("{STRANGER_IP}/24"));
    let (_, fds_before) = footprint(seed.pid());
    let idle = attacker(
        &ns,
        PY_IDLE_HTTP,
        &[
            SEED_IP.to_string(),
            "10.99.10.100".to_string(),
            "1100".to_string(),
        ],
    );
    assert!(
        http_answers(&ns, STRANGER_IP),
        "HTTP stopped under 1,100 idle connections"
    );
    let (_, fds) = footprint(seed.pid());
    assert!(
        fds <= fds_before + 128 + 2,
        "{fds} descriptors (before {fds_before})"
    );
    drop(idle);
    let log = seed.stop();
    assert!(
        log.contains("this client's connection limit is reached"),
        "{log}"
    );
}

const PY_DISCOVER_FLOOD: &str = r#"
import os, socket, sys, time
seed, n, klass = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    mac = bytes([2]) + os.urandom(5) if i else bytes.fromhex("02eeeeeeee01")
    p = bytes([1, 1, 6, 0]) + bytes(24) + mac + bytes(202) + bytes([99, 130, 83, 99, 53, 1, 1])
    p += bytes([60, len(klass)]) + klass + bytes([255])
    s.sendto(p, (seed, 67))
    if i % 10 == 0:
        time.sleep(0.002)
print("ready", flush=True)
"#;

/// What reaches the operator's terminal from the network is made printable: a DHCP vendor
/// class and an iPXE `chip` carrying escape sequences, BEL and CR/LF show escaped in `seed
/// status` (before: printed raw). And a flood of made-up MACs leaves at most 4,096 machines
/// in the discovered table (before: one row per MAC, without end).
#[test]
fn network_text_reaches_the_terminal_escaped_and_discovery_is_bounded() {
    let (ns, dir, config, seed) = serving(installable);
    provision_n1(&config, dir.path());
    ns.add_client_address(&format!("{NODE_IP}/24"));
    let evil = "\u{1b}]0;owned\u{7}\u{1b}[2J\r\nfake line";
    let hex: String = evil.bytes().map(|b| format!("{b:02x}")).collect();
    let out = ns
        .in_cli("python3")
        .args(["-c", PY_DISCOVER_FLOOD, SEED_IP, "5000", &hex])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // The node itself (a compromised one) names an evil chip.
    let out = ns
        .in_cli("curl")
        .args(["-sS", "--max-time", "10", "--interface", NODE_IP])
        .arg(format!(
            "http://{SEED_IP}:8080/boot.ipxe?mac={NODE_MAC}&platform=pcbios&chip=%1b%5d0%3bowned%07%1b%5b2J%0d%0afake"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    // The discovered machines reach the store in batches: poll until the flood is in.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = cli(&config, dir.path(), &["status"]);
        assert!(out.status.success(), "{}", describe(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let rows = text.lines().filter(|l| l.starts_with("02:")).count();
        if rows >= 4096 || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    seed.stop();
    for raw in ['\u{1b}', '\u{7}', '\r'] {
        assert!(!status.contains(raw), "{raw:?} reached the terminal");
    }
    assert!(
        status.contains("\\u{1b}]0;owned\\u{7}"),
        "the vendor class is not shown escaped"
    );
    assert!(
        status.contains("iPXE \\u{1b}]0;owned"),
        "the chip is not shown escaped:\n{}",
        &status[..2000.min(status.len())]
    );
    let rows = status.lines().filter(|l| l.starts_with("02:")).count();
    assert_eq!(rows, 4096, "discovered machines listed");
}
