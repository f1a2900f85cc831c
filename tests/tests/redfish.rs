//! seed's Redfish power driver against the real `sushy-tools` emulator (its fake driver, Basic
//! auth), on loopback. What seed did is read back through the emulator's own API. The fake
//! driver applies power changes after a random 1-11 s, so power is polled with a deadline, and
//! it always reports `BootSourceOverrideEnabled: Continuous`, so only the target is asserted.
//!
//! The emulator comes from a venv `tests/setup` creates (`target/ci-venv`, `pip install
//! sushy-tools`); `SEED_SUSHY_EMULATOR` names another one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::http::{API_TOKEN, HttpSeed, curl as http_curl, post, post_json};
use common::{KillOnDrop, describe, repo_root, seed};

/// The BMC password of the tests, and its bcrypt hash for the emulator's htpasswd file.
const PASSWORD: &str = "seed-bmc-pw";
const PASSWORD_BCRYPT: &str = "$2b$04$Gx7Jq0yJDDEBihiai8HgR.inR9F96JiC3p9u0TtWUI1/t95CaE2WK";

fn uuid(n: u8) -> String {
    format!("11111111-0000-0000-0000-0000000000{n:02}")
}

struct Emulator {
    _process: KillOnDrop,
    base: String,
    dir: tempfile::TempDir,
}

/// One system of the emulator's fake driver.
struct Fake {
    uuid: String,
    name: String,
    mac: String,
    /// More NICs after the first.
    more_macs: Vec<String>,
    secure_boot: bool,
}

impl Fake {
    /// The fake driver's Python dict.
    fn python(&self) -> String {
        let nics: Vec<String> = std::iter::once(&self.mac)
            .chain(&self.more_macs)
            .map(|mac| format!("{{'mac': '{mac}', 'ip': '10.10.10.1'}}"))
            .collect();
        format!(
            "{{'uuid': '{}', 'name': '{}', 'power_state': 'Off', 'secure_boot': {}, \
             'nics': [{}]}}",
            self.uuid,
            self.name,
            if self.secure_boot { "True" } else { "False" },
            nics.join(", ")
        )
    }
}

/// cmp1 and cmp2 of the tests' two-node config (UUIDs `uuid(11)`, `uuid(12)`).
/// The same, each system with a second NIC (`52:54:00:10:01:<n>`), as a server's LOM has.
fn two_systems_two_nics() -> Vec<Fake> {
    two_systems(false)
        .into_iter()
        .map(|mut f| {
            let n = &f.mac[f.mac.len() - 2..];
            f.more_macs = vec![format!("52:54:00:10:01:{n}")];
            f
        })
        .collect()
}

fn two_systems(secure_boot_on_cmp1: bool) -> Vec<Fake> {
    [11u8, 12]
        .iter()
        .map(|n| Fake {
            uuid: uuid(*n),
            name: format!("cmp{}", n - 10),
            mac: format!("52:54:00:10:00:{n}"),
            more_macs: Vec::new(),
            secure_boot: secure_boot_on_cmp1 && *n == 11,
        })
        .collect()
}

/// The example rack (examples/osism-rack.yaml): its nodes' names and MACs, in order.
fn example_rack() -> Vec<(String, String)> {
    let config = seed::config::load(&repo_root().join("examples/osism-rack.yaml")).unwrap();
    config
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.macs[0].to_string()))
        .collect()
}

/// A fresh self-signed certificate for 127.0.0.1 in `dir`: (certificate, key).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new(common::need("openssl"))
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=bmc", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl: {}", describe(&out));
    (cert, key)
}

/// A CA and a certificate for 127.0.0.1 it signed, in `dir`: (CA, certificate, key).
fn ca_signed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca, _) = self_signed(dir, "ca");
    let (cert, key, csr, ext) = (
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
        dir.join("leaf.csr"),
        dir.join("leaf.ext"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for args in [
        vec![
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=bmc", "-keyout",
        ],
        vec!["x509", "-req", "-days", "2", "-CAcreateserial", "-in"],
    ] {
        let mut cmd = Command::new(common::need("openssl"));
        cmd.args(&args);
        if args[0] == "req" {
            cmd.arg(&key).arg("-out").arg(&csr);
        } else {
            cmd.arg(&csr)
                .arg("-CA")
                .arg(&ca)
                .arg("-CAkey")
                .arg(dir.join("ca.key"))
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert);
        }
        let out = cmd.output().expect("openssl");
        assert!(out.status.success(), "openssl: {}", describe(&out));
    }
    (ca, cert, key)
}

/// The SHA-256 of a PEM certificate, as openssl computes it (lowercase hex, no colons).
fn sha256_of(cert: &Path) -> String {
    let out = Command::new(common::need("openssl"))
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split('=')
        .nth(1)
        .expect("a fingerprint")
        .trim()
        .replace(':', "")
        .to_ascii_lowercase()
}

impl Emulator {
    fn start() -> Self {
        Self::start_with(&two_systems(false), None, None)
    }

    /// Over TLS with `cert` and `key`, on `port` if given.
    fn start_tls(cert: PathBuf, key: PathBuf, port: Option<u16>) -> Self {
        Self::start_with(&two_systems(false), Some((cert, key)), port)
    }

    fn start_with(systems: &[Fake], tls: Option<(PathBuf, PathBuf)>, port: Option<u16>) -> Self {
        Self::start_configured(systems, tls, port, "")
    }

    /// With more lines of emulator config (Python), e.g. its static storage and drives.
    fn start_configured(
        systems: &[Fake],
        tls: Option<(PathBuf, PathBuf)>,
        port: Option<u16>,
        extra: &str,
    ) -> Self {
        let binary = std::env::var_os("SEED_SUSHY_EMULATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/ci-venv/bin/sushy-emulator"));
        assert!(
            binary.exists(),
            "{} is missing: `python3 -m venv target/ci-venv && target/ci-venv/bin/pip install \
             sushy-tools` (tests/setup does it)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("admin:{PASSWORD_BCRYPT}\n"),
        )
        .unwrap();
        let systems: Vec<String> = systems.iter().map(Fake::python).collect();
        std::fs::write(
            dir.path().join("emulator.conf"),
            format!(
                "SUSHY_EMULATOR_FAKE_DRIVER = True\n\
                 SUSHY_EMULATOR_AUTH_FILE = '{auth}'\n\
                 SUSHY_EMULATOR_STATE_DIR = '{state}'\n\
                 SUSHY_EMULATOR_FAKE_SYSTEMS = [{systems}]\n{extra}",
                auth = dir.path().join("htpasswd").display(),
                state = dir.path().join("state").display(),
                systems = systems.join(", ")
            ),
        )
        .unwrap();
        let port = port.unwrap_or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        // The certificate lives as long as the emulator's directory.
        let tls = tls.map(|(cert, key)| {
            let (c, k) = (dir.path().join("bmc.pem"), dir.path().join("bmc.key"));
            std::fs::copy(cert, &c).unwrap();
            std::fs::copy(key, &k).unwrap();
            (c, k)
        });
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(dir.path().join("emulator.conf"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((cert, key)) = &tls {
            command
                .arg("--ssl-certificate")
                .arg(cert)
                .arg("--ssl-key")
                .arg(key);
        }
        let process = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("emulator.log")).unwrap())
            .spawn()
            .expect("start sushy-emulator");
        let mut process = KillOnDrop::new(process);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while curl(&base, "/redfish/v1/").is_none() {
            assert!(
                process.child().try_wait().unwrap().is_none(),
                "sushy-emulator exited: {}",
                std::fs::read_to_string(dir.path().join("emulator.log")).unwrap_or_default()
            );
            assert!(Instant::now() < deadline, "sushy-emulator did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            _process: process,
            base,
            dir,
        }
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A system of the two-node config as the emulator sees it.
    fn system(&self, n: u8) -> serde_json::Value {
        self.system_by(&uuid(n))
    }

    /// A system by its UUID or name.
    fn system_by(&self, id: &str) -> serde_json::Value {
        curl(&self.base, &format!("/redfish/v1/Systems/{id}")).expect("read system")
    }

    /// Polls system `n` of the two-node config until `pointer` is `want`.
    fn wait_for(&self, n: u8, pointer: &str, want: &str) {
        self.wait_for_by(&uuid(n), pointer, want);
    }

    /// Polls the system with this UUID until `pointer` is `want` (the fake driver applies
    /// power after 1-11 s).
    fn wait_for_by(&self, id: &str, pointer: &str, want: &str) {
        common::wait_until_else(
            Duration::from_secs(30),
            || self.system_by(id).pointer(pointer).and_then(|v| v.as_str()) == Some(want),
            || format!("{id}: {pointer} is not {want}: {}", self.system_by(id)),
        );
    }

    /// The emulator's request log (werkzeug's access lines).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// The example rack (examples/osism-rack.yaml) with every BMC pointing at this emulator
    /// and no `bmc.system`: each node's system is the one with its MAC.
    fn rack_config(&self) -> PathBuf {
        let text = std::fs::read_to_string(repo_root().join("examples/osism-rack.yaml")).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("    bmc: { address: ") {
                let address = rest.split(',').next().unwrap();
                out.push_str(&format!(
                    "    bmc: {{ address: {address}, driver: redfish, username: admin, \
                     password: {{ env: SEED_TEST_BMC_PASSWORD }}, endpoint: \"{}\" }}\n",
                    self.base
                ));
            } else {
                out.push_str(line);
                out.push('\n');
                if line == "seed:" {
                    out.push_str("  api_token: { env: SEED_TEST_API_TOKEN }\n");
                }
            }
        }
        let path = self.dir.path().join("rack.yaml");
        std::fs::write(&path, out).unwrap();
        path
    }

    /// A config with two redfish nodes on this emulator.
    fn config(&self) -> PathBuf {
        self.config_with("")
    }

    /// The same with more `bmc:` keys (e.g. `tls: { … }`) on every node.
    fn config_with(&self, bmc_extra: &str) -> PathBuf {
        self.config_each(|_| bmc_extra.to_string())
    }

    /// The same with more `bmc:` keys per node (by its number, 11 or 12).
    fn config_each(&self, bmc_extra: impl Fn(u8) -> String) -> PathBuf {
        let text = std::fs::read_to_string(repo_root().join("examples/lab.yaml")).unwrap();
        let head = &text[..text.find("\nnodes:").unwrap()];
        let tail = &text[text.find("\ninstall:").unwrap()..];
        let mut nodes = String::from("\nnodes:\n");
        for (n, role, firmware) in [(11u8, "compute", "uefi"), (12, "compute", "bios")] {
            nodes.push_str(&format!(
                "  - name: cmp{i}\n    role: {role}\n    firmware: {firmware}\n    \
                 bmc: {{ address: 10.10.0.{n}, driver: redfish, username: admin, \
                 password: {{ env: SEED_TEST_BMC_PASSWORD }}, endpoint: \"{base}\", \
                 system: {uuid}{extra} }}\n    macs: [\"52:54:00:10:00:{n}\"]\n",
                i = n - 10,
                extra = bmc_extra(n),
                base = self.base,
                uuid = uuid(n)
            ));
        }
        let head = head.replacen(
            "seed:\n",
            "seed:\n  api_token: { env: SEED_TEST_API_TOKEN }\n",
            1,
        );
        let path = self.dir.path().join("seed.yaml");
        std::fs::write(&path, format!("{head}{nodes}{tail}")).unwrap();
        path
    }
}

fn curl(base: &str, path: &str) -> Option<serde_json::Value> {
    // The test's own reads of the emulator skip verification (-k); seed's never do.
    let out = Command::new(common::need("curl"))
        .args(["-skf", "--max-time", "5", "-u"])
        .arg(format!("admin:{PASSWORD}"))
        .arg(format!("{base}{path}"))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn run_seed(config: &Path, state: &Path, password: &str, args: &[&str]) -> Output {
    seed()
        .arg("--config")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env("SEED_TEST_BMC_PASSWORD", password)
        .output()
        .expect("run seed")
}

/// No output of seed ever shows a BMC password.
fn assert_no_secret(out: &Output) {
    let all = describe(out);
    assert!(!all.contains(PASSWORD), "a password leaked: {all}");
    assert!(
        !all.contains("wrong-password-x"),
        "a password leaked: {all}"
    );
}

#[test]
fn power_status_on_off_cycle_reach_the_emulator() {
    let emu = Emulator::start();
    let config = emu.config();
    let state = tempfile::tempdir().unwrap();
    let seed = |args: &[&str]| {
        let out = run_seed(&config, state.path(), PASSWORD, args);
        assert_no_secret(&out);
        out
    };

    let out = seed(&["power", "status", "--all"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cmp1: off\ncmp2: off\n"
    );

    let out = seed(&["power", "on", "cmp1"]);
    assert!(out.status.success(), "{}", describe(&out));
    emu.wait_for(11, "/PowerState", "On");
    let out = seed(&["power", "status", "cmp1"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "cmp1: on\n");

    let out = seed(&["power", "off", "cmp1"]);
    assert!(out.status.success(), "{}", describe(&out));
    emu.wait_for(11, "/PowerState", "Off");

    // Off: a cycle switches it on.
    let out = seed(&["power", "cycle", "cmp1"]);
    assert!(out.status.success(), "{}", describe(&out));
    emu.wait_for(11, "/PowerState", "On");

    // A graceful shutdown (GracefulShutdown; the fake driver turns it off like ForceOff).
    let resets = || emu.log().matches("ComputerSystem.Reset HTTP").count();
    let before = resets();
    let out = seed(&["power", "off", "--graceful", "cmp1"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "cmp1: asked to shut down\n"
    );
    assert_eq!(resets(), before + 1, "the emulator saw one reset");
    emu.wait_for(11, "/PowerState", "Off");

    // Off again, hard and graceful: nothing to do, said so, nothing sent (a rack where some
    // nodes are off must not fail `seed power off --all`).
    let before = resets();
    for args in [
        &["power", "off", "cmp1"][..],
        &["power", "off", "--graceful", "cmp1"],
    ] {
        let out = seed(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "cmp1: off already\n");
    }
    assert_eq!(resets(), before, "no reset for a system that is off");

    // With a store (seed has served or provisioned here), power actions are in the node's
    // timeline: `seed status NODE`.
    drop(seed::store::Store::open(state.path()).unwrap());
    let out = seed(&["power", "on", "cmp1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = seed(&["status", "cmp1"]);
    let timeline = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && timeline
                .lines()
                .any(|l| l.contains(" cli ") && l.contains(" power ") && l.contains("switched on")),
        "{}",
        describe(&out)
    );

    // Nothing seed prints for help names a credential either.
    for args in [
        &["--help"][..],
        &["provision", "--help"],
        &["power", "on", "--help"],
        &["preflight", "--help"],
    ] {
        let out = seed(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }
    // cmp2 was never touched.
    assert_eq!(emu.system(12)["PowerState"], "Off");
}

/// Registers a (dummy) image: a node's image must exist before it can be provisioned.
fn add_image(config: &Path, state: &Path) {
    let image = tempfile::tempdir().unwrap();
    for f in ["vmlinuz", "initrd"] {
        std::fs::write(image.path().join(f), f).unwrap();
    }
    let out = run_seed(
        config,
        state,
        PASSWORD,
        &[
            "images",
            "add",
            "ubuntu-24.04",
            "--kernel",
            image.path().join("vmlinuz").to_str().unwrap(),
            "--initrd",
            image.path().join("initrd").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
}

#[test]
fn provision_sets_a_one_time_pxe_boot_and_powers_on() {
    let emu = Emulator::start();
    let config = emu.config();
    let state = tempfile::tempdir().unwrap();
    add_image(&config, state.path());

    let out = run_seed(
        &config,
        state.path(),
        PASSWORD,
        &["provision", "--all", "--no-wait"],
    );
    assert_no_secret(&out);
    assert!(out.status.success(), "{}", describe(&out));
    for n in [11u8, 12] {
        emu.wait_for(n, "/Boot/BootSourceOverrideTarget", "Pxe");
        emu.wait_for(n, "/PowerState", "On");
    }
    assert_eq!(emu.system(11)["Boot"]["BootSourceOverrideMode"], "UEFI");

    // A node that boots by UEFI HTTP gets that override instead. (The emulator accepts it but
    // records `Pxe` when no HttpBootUri comes with it, so seed's log line is what shows it.)
    let http_boot = emu.config_each(|n| {
        if n == 11 {
            ", boot: http".into()
        } else {
            String::new()
        }
    });
    // (A new store: in this one cmp1 is still provisioning, and is not started twice.)
    let fresh = tempfile::tempdir().unwrap();
    add_image(&http_boot, fresh.path());
    let out = run_seed(
        &http_boot,
        fresh.path(),
        PASSWORD,
        &["-v", "provision", "cmp1", "--no-wait"],
    );
    assert_no_secret(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("network boot once"),
        "{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("one-time boot override")
            && stderr.contains(r#""BootSourceOverrideTarget":"UefiHttp""#),
        "{stderr}"
    );

    // Wrong credentials: the error says 401 and what to check, and names no secret.
    let out = run_seed(
        &config,
        state.path(),
        "wrong-password-x",
        &["power", "off", "cmp1"],
    );
    assert_no_secret(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("bmc.username and password"),
        "{stderr}"
    );
}

#[test]
fn tls_is_verified_and_a_pinned_certificate_may_not_change() {
    let certs = tempfile::tempdir().unwrap();
    // A BMC with its factory self-signed certificate.
    let (cert, key) = self_signed(certs.path(), "factory");
    let emu = Emulator::start_tls(cert.clone(), key, None);
    let state = tempfile::tempdir().unwrap();
    let status = |config: &Path| {
        let out = run_seed(config, state.path(), PASSWORD, &["power", "status", "cmp1"]);
        assert_no_secret(&out);
        out
    };

    // By default it is refused: no silent "accept anything".
    let out = status(&emu.config());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");

    // Pinned by its fingerprint: accepted; a wrong pin: refused.
    let right = sha256_of(&cert);
    let pinned = emu.config_with(&format!(", tls: {{ fingerprint: \"sha256:{right}\" }}"));
    let out = status(&pinned);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "cmp1: off\n");
    let wrong = emu.config_with(&format!(
        ", tls: {{ fingerprint: \"sha256:{}\" }}",
        "ab".repeat(32)
    ));
    let out = status(&wrong);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not the pinned one"),
        "{}",
        describe(&out)
    );

    // First use: recorded, then kept.
    let first_use = emu.config_with(", tls: { fingerprint: first-use }");
    assert!(status(&first_use).status.success());
    let pin_file = state.path().join("bmc-pins/cmp1.sha256");
    assert_eq!(std::fs::read_to_string(&pin_file).unwrap().trim(), right);
    assert!(status(&first_use).status.success());

    // The BMC comes back on the same address with another certificate (one from the site's
    // CA): the first-use pin refuses it; trusting the CA file accepts it.
    let port = emu.port();
    drop(emu);
    let (ca, cert, key) = ca_signed(certs.path());
    let emu = Emulator::start_tls(cert, key, Some(port));
    let out = status(&emu.config_with(", tls: { fingerprint: first-use }"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not the pinned one") && stderr.contains(&right),
        "{stderr}"
    );
    let out = status(&emu.config_with(&format!(", tls: {{ ca_file: {} }}", ca.display())));
    assert!(out.status.success(), "{}", describe(&out));
}

/// `seed provision --all` on the example rack (examples/osism-rack.yaml, eleven nodes, one
/// emulator that manages all their systems and finds each by its MAC) follows the rack to the
/// end: every node through preflight and the Redfish steps, then (the installer's callbacks
/// played by the test over HTTP) installed, exit 0; with one node's callbacks missing, that
/// node fails after its timeout, the others are installed and the exit is 1.
#[test]
fn provision_all_installs_the_example_rack_and_fails_a_silent_node() {
    let rack = example_rack();
    assert_eq!(rack.len(), 11, "the example rack changed: {rack:?}");
    let systems: Vec<Fake> = rack
        .iter()
        .enumerate()
        .map(|(i, (_, mac))| Fake {
            uuid: format!("22222222-0000-0000-0000-0000000000{i:02}"),
            // Not the node's name: seed must find the system by MAC.
            name: format!("bmc-system-{i}"),
            mac: mac.clone(),
            more_macs: Vec::new(),
            secure_boot: false,
        })
        .collect();
    let emu = Emulator::start_with(&systems, None, None);
    let config = emu.rack_config();
    let state = tempfile::tempdir().unwrap();
    add_image(&config, state.path());
    let http = HttpSeed::start(&config, state.path());
    let names: Vec<&str> = rack.iter().map(|(n, _)| n.as_str()).collect();

    for (round, silent) in [(1, None), (2, Some("net2"))] {
        let mut args = vec!["provision", "--all", "--parallel", "4", "--timeout", "30"];
        if round == 2 {
            args.push("--force");
        }
        let child = seed()
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(state.path())
            .args(&args)
            .env("SEED_TEST_BMC_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let run = KillOnDrop::new(child);
        // Play the installer of every node but the silent one, once it is provisioning.
        let mut pending: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| Some(*n) != silent)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !pending.is_empty() {
            assert!(
                Instant::now() < deadline,
                "round {round}: {pending:?} never provisioning"
            );
            let store = seed::store::Store::open(state.path()).unwrap();
            pending.retain(|name| {
                // This round's provisioning, not the last round's installed node.
                let Some(p) = store
                    .provisioning(name)
                    .unwrap()
                    .filter(|p| p.state.to_string() == "provisioning")
                else {
                    return true;
                };
                let base = http.url(&format!("/nodes/{}", p.token));
                let event = r#"{"event_type":"start","name":"subiquity/Install","description":"test","origin":"curtin"}"#;
                assert_eq!(post_json(&format!("{base}/events"), event).status, 200);
                assert_eq!(post(&format!("{base}/installed")).status, 200);
                false
            });
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = run.wait_with_output();
        assert_no_secret(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Every node went through the Redfish steps (stdout is a pipe: plain lines).
        assert_eq!(
            stdout.matches("network boot once, power cycle").count(),
            11,
            "round {round}: {}",
            describe(&out)
        );
        assert!(!stdout.contains('\u{1b}'), "no terminal escapes in a pipe");
        match silent {
            None => {
                assert!(out.status.success(), "round {round}: {}", describe(&out));
                assert!(stdout.contains("11 of 11 installed"), "{stdout}");
                // What the emulator saw: a PXE boot in UEFI mode, and power on, everywhere.
                for fake in &systems {
                    emu.wait_for_by(&fake.uuid, "/Boot/BootSourceOverrideTarget", "Pxe");
                    emu.wait_for_by(&fake.uuid, "/Boot/BootSourceOverrideMode", "UEFI");
                    emu.wait_for_by(&fake.uuid, "/PowerState", "On");
                }
            }
            Some(node) => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "round {round}: {}",
                    describe(&out)
                );
                assert!(stdout.contains("10 of 11 installed"), "{stdout}");
                assert!(
                    stdout
                        .lines()
                        .any(|l| l.starts_with(node) && l.contains("FAILED")),
                    "{stdout}"
                );
                let store = seed::store::Store::open(state.path()).unwrap();
                let record = store.node(node).unwrap().unwrap();
                assert_eq!(record.state.to_string(), "failed");
                assert!(
                    record
                        .last_event
                        .is_some_and(|e| e.detail.contains("not done 30 s after it was started")),
                );
                for name in names.iter().filter(|n| **n != node) {
                    assert_eq!(
                        store.node(name).unwrap().unwrap().state.to_string(),
                        "installed",
                        "{name}"
                    );
                }
            }
        }
    }
    assert!(
        !http.log().contains(PASSWORD),
        "a password leaked into the log"
    );
}

/// `seed preflight` reads what a provision depends on; a node with Secure Boot on is refused
/// by `seed provision` and by the API before its BMC is touched, and the API provisions the
/// other node through the same path as the CLI (the emulator sees the PXE override and power).
#[test]
fn preflight_refuses_secure_boot_and_the_api_provisions_through_the_bmc() {
    let emu = Emulator::start_with(&two_systems(true), None, None);
    let config = emu.config();
    let state = tempfile::tempdir().unwrap();
    add_image(&config, state.path());
    let seed = |args: &[&str]| {
        let out = run_seed(&config, state.path(), PASSWORD, args);
        assert_no_secret(&out);
        out
    };

    let out = seed(&["preflight", "--role", "compute"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cmp1 = &stdout[..stdout.find("\ncmp2").expect("a block per node")];
    assert!(
        cmp1.lines()
            .any(|l| l.contains("ERROR") && l.contains("secure boot") && l.contains("unsigned")),
        "{stdout}"
    );
    let cmp2 = &stdout[stdout.find("\ncmp2").unwrap()..];
    assert!(!cmp2.contains("ERROR"), "{stdout}");
    assert!(
        cmp2.contains("52:54:00:10:00:12 reported by the BMC"),
        "{stdout}"
    );
    assert!(cmp2.contains("Pxe once is allowed"), "{stdout}");
    assert!(stdout.contains("1 of 2 ready; refused: cmp1"), "{stdout}");
    for (role, says) in [
        ("storage", "role storage has no nodes"),
        ("nosuch", "no role named nosuch"),
    ] {
        let out = seed(&["preflight", "--role", role]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            describe(&out)
        );
    }

    // provision runs the same checks first: cmp1 is refused and its BMC left alone.
    let out = seed(&["provision", "cmp1", "--no-wait"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cmp1: preflight refused: secure boot: on"),
        "{stderr}"
    );
    let store = seed::store::Store::open(state.path()).unwrap();
    assert_ne!(
        store.node("cmp1").unwrap().map(|r| r.state.to_string()),
        Some("provisioning".to_string())
    );
    // The emulator's access log (werkzeug colours the request: match without the quote).
    let touched = |log: &str| {
        log.lines().any(|l| {
            l.contains(&format!("PATCH /redfish/v1/Systems/{}", uuid(11)))
                || l.contains(&format!(
                    "/redfish/v1/Systems/{}/Actions/ComputerSystem.Reset",
                    uuid(11)
                ))
        })
    };
    assert!(
        !touched(&emu.log()),
        "cmp1's BMC was changed:\n{}",
        emu.log()
    );

    // The API: the same path, with the BMC password from serve's environment.
    let http = HttpSeed::start_with_env(
        &config,
        state.path(),
        &[("SEED_TEST_BMC_PASSWORD", PASSWORD)],
    );
    let bearer = format!("Authorization: Bearer {API_TOKEN}");
    let api = |node: &str| {
        http_curl(&[
            "-X",
            "POST",
            "-H",
            &bearer,
            &http.url(&format!("/api/v1/nodes/{node}/provision")),
        ])
    };
    let ok = api("cmp2");
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["started"], true);
    assert!(
        ok.json()["power"]
            .as_str()
            .unwrap()
            .contains("network boot once, power cycle"),
        "{}",
        ok.text()
    );
    emu.wait_for(12, "/Boot/BootSourceOverrideTarget", "Pxe");
    emu.wait_for(12, "/PowerState", "On");
    let refused = api("cmp1");
    assert_eq!(refused.status, 409, "{}", refused.text());
    let body = refused.json();
    assert!(
        body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["check"] == "secure boot" && f["level"] == "error"),
        "{body}"
    );
    assert!(
        !touched(&emu.log()),
        "cmp1's BMC was changed:\n{}",
        emu.log()
    );

    // --no-preflight is the operator's override: cmp1 is provisioned anyway.
    let out = seed(&["provision", "cmp1", "--no-wait", "--no-preflight"]);
    assert!(out.status.success(), "{}", describe(&out));
    emu.wait_for(11, "/Boot/BootSourceOverrideTarget", "Pxe");
    assert!(
        touched(&emu.log()),
        "the log check sees a change:\n{}",
        emu.log()
    );
    assert!(
        !http.log().contains(PASSWORD),
        "a password leaked into the log"
    );
}

/// sushy-tools' static storage for the two systems (`uuid(11)`, `uuid(12)`): a RAID controller
/// with a 480 GB SATA SSD (`Solid State Disk 0:1:0`) and an 8 TB SAS disk (`Disk 0:1:1`); the
/// emulator gives every drive Model `C123` and SerialNumber `1234570`.
fn two_systems_storage() -> String {
    let storage = |n: u8| {
        format!(
            "'{uuid}': [{{'Id': '1', 'Name': 'RAID', 'StorageControllers': [{{'MemberId': '0', \
             'Name': 'Integrated RAID', 'SpeedGbps': 12}}], 'Drives': ['os', 'osd']}}]",
            uuid = uuid(n)
        )
    };
    let drives = |n: u8| {
        format!(
            "('{uuid}', '1'): [{{'Id': 'os', 'Name': 'Solid State Disk 0:1:0', \
             'CapacityBytes': 480000000000, 'Protocol': 'SATA'}}, {{'Id': 'osd', \
             'Name': 'Disk 0:1:1', 'CapacityBytes': 8000000000000, 'Protocol': 'SAS'}}]",
            uuid = uuid(n)
        )
    };
    format!(
        "SUSHY_EMULATOR_STORAGE = {{{}, {}}}\nSUSHY_EMULATOR_DRIVES = {{{}, {}}}\n",
        storage(11),
        storage(12),
        drives(11),
        drives(12)
    )
}

/// `seed preflight` reads the drives the BMC reports (sushy-tools' static Storage/Drives) and
/// says which one the node's disk rule selects; a rule that selects none refuses the node.
/// (sushy-tools gives every drive Model `C123` and SerialNumber `1234570`: the test tells the
/// drives apart by size, as subiquity would with `size: smallest`.)
#[test]
fn preflight_reports_the_selected_drive_and_refuses_a_rule_that_selects_none() {
    let extra = two_systems_storage();
    let emu = Emulator::start_configured(&two_systems(false), None, None, &extra);
    let config = emu.config();
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replacen(
            "macs: [\"52:54:00:10:00:11\"]\n",
            "macs: [\"52:54:00:10:00:11\"]\n    disk: { model: C123, size: smallest }\n",
            1,
        )
        .replacen(
            "macs: [\"52:54:00:10:00:12\"]\n",
            "macs: [\"52:54:00:10:00:12\"]\n    disk: { serial: S4EVNX0N123456 }\n",
            1,
        );
    assert!(
        text.contains("disk: { model: C123") && text.contains("disk: { serial: S4EVNX"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let state = tempfile::tempdir().unwrap();
    let out = run_seed(
        &config,
        state.path(),
        PASSWORD,
        &["preflight", "cmp1", "cmp2"],
    );
    assert_no_secret(&out);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cmp1 = &stdout[..stdout.find("\ncmp2").expect("a block per node")];
    let cmp2 = &stdout[stdout.find("\ncmp2").unwrap()..];
    assert!(
        cmp1.lines().any(|l| l.contains("disk")
            && l.contains("selects Solid State Disk 0:1:0 (C123, serial 1234570, 480 GB)")),
        "{stdout}"
    );
    assert!(!cmp1.contains("ERROR"), "{stdout}");
    assert!(
        cmp2.lines().any(|l| l.contains("ERROR")
            && l.contains("disk")
            && l.contains("matches none of the 2 drives")),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 2 ready; refused: cmp2"), "{stdout}");
}

/// `seed inventory` against sushy-tools fills in what a bare config leaves out: two nodes named
/// only by their BMC (address, credentials, system UUID) and role get their NICs' MACs and drives
/// recorded; `seed check` stops warning that no MAC is known, `seed render` brings the
/// installer's network up on the recorded MACs, and `seed serve` answers DHCP for them, also for
/// an inventory taken while it runs. (sushy-tools names each NIC by its MAC, so the role's
/// `ports:` mapping by BMC NIC Id is shown with iDRAC's Ids in seed's unit tests.)
#[test]
fn inventory_records_macs_and_drives_and_a_bare_config_then_serves_dhcp_for_them() {
    use common::netns::{Netns, udhcpc};
    let extra = two_systems_storage();
    let systems = two_systems_two_nics();
    let emu = Emulator::start_configured(&systems, None, None, &extra);

    // The DHCP side runs in a namespace pair; seed's CLI reads the emulator on loopback.
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let bare = |name: &str, n: u8| {
        format!(
            "{{ name: {name}, role: node, bmc: {{ address: 10.99.0.{n}, driver: redfish, \
             username: admin, password: {{ env: SEED_TEST_BMC_PASSWORD }}, \
             endpoint: \"{base}\", system: {uuid} }}, disk: {{ model: C123, size: smallest }} }}",
            base = emu.base,
            uuid = uuid(n)
        )
    };
    let config = ns.config(
        dir.path(),
        "10.99.10.0/24",
        "",
        &format!("[{}, {}]", bare("n1", 11), bare("n2", 12)),
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "install:\n  user: { name: dragon, ssh_authorized_keys: [\"ssh-ed25519 \
         AAAAC3NzaC1lZDI1NTE5AAAAIPwDi8WXTYb7l5d5XCX4g2I0N8m0HjR5cHgfJsbBJ1pz lab\"] }\n",
    );
    std::fs::write(&config, text).unwrap();
    let state = dir.path().join("state");

    let out = run_seed(&config, &state, PASSWORD, &["check"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nodes[n1].macs: warning: no MAC known")
            && stderr.contains("nodes[n2].macs: warning: no MAC known"),
        "{stderr}"
    );

    let out = run_seed(&config, &state, PASSWORD, &["inventory", "n1"]);
    assert_no_secret(&out);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        format!("n1: system {}", uuid(11)),
        "52:54:00:10:00:11".to_string(),
        "52:54:00:10:01:11".to_string(),
        "drive    Solid State Disk 0:1:0 (C123, serial 1234570, 480 GB)  <- install disk".into(),
        "drive    Disk 0:1:1 (C123, serial 1234570, 8000 GB)".into(),
        "1 of 1 recorded".into(),
    ] {
        assert!(stdout.contains(&want), "want {want:?} in:\n{stdout}");
    }
    let out = run_seed(&config, &state, PASSWORD, &["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("nodes[n1].macs") && stderr.contains("nodes[n2].macs"),
        "{stderr}"
    );
    let out = run_seed(&config, &state, PASSWORD, &["render", "user-data", "n1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let user_data = String::from_utf8_lossy(&out.stdout);
    assert!(
        user_data.contains(r#"match: {"macaddress":"52:54:00:10:00:11"}"#)
            && user_data.contains(r#"match: {"macaddress":"52:54:00:10:01:11"}"#),
        "{user_data}"
    );

    // seed serve knows n1 by either recorded MAC (any port may be the one that boots).
    let seed = ns.start_seed(&config, &state);
    ns.set_client_mac("52:54:00:10:01:11");
    let (out, env) = udhcpc(&ns, dir.path(), &[]);
    assert_eq!(
        env.get("ip").map(String::as_str),
        Some("10.99.10.11"),
        "{}\n{}",
        describe(&out),
        seed.log()
    );
    // n2 is a stranger until its inventory is taken; then, while seed runs, it is n2.
    ns.set_client_mac("52:54:00:10:00:12");
    let (_, env) = udhcpc(&ns, dir.path(), &[]);
    assert_eq!(
        env.get("ip"),
        None,
        "no discovery pool: a stranger gets nothing"
    );
    let out = run_seed(&config, &state, PASSWORD, &["inventory", "--all"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 of 2 recorded"),
        "{}",
        describe(&out)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (out, env) = udhcpc(&ns, dir.path(), &[]);
        if env.get("ip").map(String::as_str) == Some("10.99.10.12") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "n2's recorded MAC is not served 20 s after its inventory: {}\n{}",
            describe(&out),
            seed.log()
        );
    }
    let log = seed.stop();
    assert!(log.contains("recorded inventory taken"), "{log}");

    // Two nodes whose BMC addresses point at one machine: the second report is refused.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("system: {}", uuid(12)),
        &format!("system: {}", uuid(11)),
    );
    std::fs::write(&config, text).unwrap();
    let out = run_seed(&config, &state, PASSWORD, &["inventory", "n2"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("which is node n1's: is bmc.address right?")
            && stdout.contains("0 of 1 recorded; not recorded: n2"),
        "{stdout}"
    );
}

/// `seed adopt --bmc` without a MAC: the machine is named by its BMC. seed reads the system's
/// NICs there (this system has two, as a server's LOM has) and adopts the one its DHCP
/// discovered; a BMC whose system has no discovered NIC is refused, naming what it reports.
#[test]
fn adopt_by_bmc_address_takes_the_discovered_nic_its_bmc_reports() {
    let systems = two_systems_two_nics();
    let emu = Emulator::start_with(&systems, None, None);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seed.yaml");
    std::fs::write(
        &config,
        "seed: { interface: seedt-none, address: 10.99.10.1, ports: { http: 8080 } }\n\
         links: [{ name: eth0 }]\n\
         zones:\n  - { name: prov, vlan: 10, subnet: 10.99.10.0/24, link: eth0, native: true,\n      \
         provisioning: true, roles: [node] }\n\
         roles: [{ name: node, links: [eth0], disk: { path: /dev/vda } }]\n\
         nodes: []\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    {
        // What seed's DHCP saw: the system's second NIC, and a machine of nobody's.
        let mut store = seed::store::Store::open(&state).unwrap();
        let now = seed::store::now_ms();
        let seen = |mac: &str, at: i64| seed::store::Discovered {
            mac: mac.parse().unwrap(),
            first_seen: at,
            last_seen: at,
            vendor_class: Some("PXEClient:Arch:00007:UNDI:003016".into()),
            arch: Some(7),
            address: None,
            zone: Some("prov".into()),
            relay: None,
            inspected_at: None,
        };
        store
            .record_discovered(&[
                seen("52:54:00:10:01:12", now),
                seen("52:54:00:77:00:01", now + 1),
            ])
            .unwrap();
    }
    let adopt = |n: u8| {
        run_seed(
            &config,
            &state,
            PASSWORD,
            &[
                "adopt",
                "--bmc",
                &format!("10.99.0.{n}"),
                "--endpoint",
                &emu.base,
                "--system",
                &uuid(n),
                "--username",
                "admin",
                "--password-env",
                "SEED_TEST_BMC_PASSWORD",
                "--name",
                &format!("n{}", n - 10),
                "--role",
                "node",
            ],
        )
    };
    // The first system's NICs were never seen.
    let before = std::fs::read(&config).unwrap();
    let out = adopt(11);
    assert_no_secret(&out);
    assert!(!out.status.success(), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("52:54:00:10:00:11") && said.contains("none of which seed discovered"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&config).unwrap(),
        before,
        "the file is untouched"
    );

    let out = adopt(12);
    assert_no_secret(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("52:54:00:10:01:12 was discovered"),
        "{}",
        describe(&out)
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(r#"macs: ["52:54:00:10:01:12"]"#), "{text}");
    assert!(
        text.contains(r#"password: { env: "SEED_TEST_BMC_PASSWORD" }"#),
        "{text}"
    );
    assert!(
        !text.contains("firmware: bios"),
        "option 93 said UEFI: {text}"
    );
    let out = run_seed(&config, &state, PASSWORD, &["check"]);
    assert!(out.status.success(), "{}", describe(&out));
    let store = seed::store::Store::open(&state).unwrap();
    let left: Vec<String> = store
        .discovered()
        .unwrap()
        .iter()
        .map(|d| d.mac.to_string())
        .collect();
    assert_eq!(left, vec!["52:54:00:77:00:01".to_string()]);
}

/// After seed's agent wrote an image to a BIOS node and powered it off, seed boots its disk
/// once through the BMC (`Power::disk_boot_once`): `Hdd` in `Legacy` mode on the system.
#[test]
fn a_disk_boot_once_asks_the_bmc_for_hdd_in_legacy_mode() {
    let emu = Emulator::start();
    let path = emu.config();
    let dir = tempfile::tempdir().unwrap();
    // The password from a file: this process's environment is not the CLI's.
    let secret = dir.path().join("bmc-password");
    std::fs::write(&secret, PASSWORD).unwrap();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "password: { env: SEED_TEST_BMC_PASSWORD }",
        &format!("password: {{ file: \"{}\" }}", secret.display()),
    );
    std::fs::write(&path, text).unwrap();
    let config = seed::config::load(&path).unwrap();
    let node = config.node("cmp2").unwrap();
    seed::power::controller(node, dir.path())
        .unwrap()
        .disk_boot_once()
        .unwrap();
    let boot = &emu.system(12)["Boot"];
    assert_eq!(boot["BootSourceOverrideTarget"], "Hdd", "{boot}");
    // (`Once` is what seed sends; the emulator reports Continuous whatever it got: see top.)
    assert_eq!(boot["BootSourceOverrideMode"], "Legacy", "{boot}");
}
