//! seed's Redfish power driver against the real `sushy-tools` emulator (its fake driver, Basic
//! auth), on loopback. What seed did is read back through the emulator's own API. The fake
//! driver applies power changes after a random 1-11 s, so power is polled with a deadline, and
//! it always reports `BootSourceOverrideEnabled: Continuous`, so only the target is asserted.
//!
//! The emulator comes from a venv `.ci/run` creates (`target/ci-venv`, `pip install
//! sushy-tools`); `SEED_SUSHY_EMULATOR` names another one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::http::{HttpSeed, post, post_json};
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

/// A fresh self-signed certificate for 127.0.0.1 in `dir`: (certificate, key).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
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
        let mut cmd = Command::new("openssl");
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
    let out = Command::new("openssl")
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
        Self::start_with(None, None)
    }

    /// Over TLS with `cert` and `key`, on `port` if given.
    fn start_tls(cert: PathBuf, key: PathBuf, port: Option<u16>) -> Self {
        Self::start_with(Some((cert, key)), port)
    }

    fn start_with(tls: Option<(PathBuf, PathBuf)>, port: Option<u16>) -> Self {
        let binary = std::env::var_os("SEED_SUSHY_EMULATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/ci-venv/bin/sushy-emulator"));
        assert!(
            binary.exists(),
            "{} is missing: `python3 -m venv target/ci-venv && target/ci-venv/bin/pip install \
             sushy-tools` (.ci/run does it)",
            binary.display()
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("htpasswd"),
            format!("admin:{PASSWORD_BCRYPT}\n"),
        )
        .unwrap();
        let systems: Vec<String> = [11u8, 12]
            .iter()
            .map(|n| {
                format!(
                    "{{'uuid': '{}', 'name': 'cmp{}', 'power_state': 'Off', \
                     'nics': [{{'mac': '52:54:00:10:00:{n}', 'ip': '10.10.10.{n}'}}]}}",
                    uuid(*n),
                    n - 10
                )
            })
            .collect();
        std::fs::write(
            dir.path().join("emulator.conf"),
            format!(
                "SUSHY_EMULATOR_FAKE_DRIVER = True\n\
                 SUSHY_EMULATOR_AUTH_FILE = '{auth}'\n\
                 SUSHY_EMULATOR_STATE_DIR = '{state}'\n\
                 SUSHY_EMULATOR_FAKE_SYSTEMS = [{systems}]\n",
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

    /// A system as the emulator sees it.
    fn system(&self, n: u8) -> serde_json::Value {
        curl(&self.base, &format!("/redfish/v1/Systems/{}", uuid(n))).expect("read system")
    }

    /// Polls the system until `field` is `want`.
    fn wait_for(&self, n: u8, pointer: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let system = self.system(n);
            if system.pointer(pointer).and_then(|v| v.as_str()) == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cmp{}: {pointer} is not {want} after 30 s: {system}",
                n - 10
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A config with two redfish nodes on this emulator.
    fn config(&self) -> PathBuf {
        self.config_with("")
    }

    /// The same with more `bmc:` keys (e.g. `tls: { … }`) on every node.
    fn config_with(&self, bmc_extra: &str) -> PathBuf {
        let text = std::fs::read_to_string(repo_root().join("examples/lab.yaml")).unwrap();
        let head = &text[..text.find("\nnodes:").unwrap()];
        let tail = &text[text.find("\ninstall:").unwrap()..];
        let mut nodes = String::from("\nnodes:\n");
        for (n, role, firmware) in [(11u8, "compute", "uefi"), (12, "compute", "bios")] {
            nodes.push_str(&format!(
                "  - name: cmp{i}\n    role: {role}\n    firmware: {firmware}\n    \
                 bmc: {{ address: 10.10.0.{n}, driver: redfish, username: admin, \
                 password: {{ env: SEED_TEST_BMC_PASSWORD }}, endpoint: \"{base}\", \
                 system: {uuid}{bmc_extra} }}\n    macs: [\"52:54:00:10:00:{n}\"]\n",
                i = n - 10,
                base = self.base,
                uuid = uuid(n)
            ));
        }
        let path = self.dir.path().join("seed.yaml");
        std::fs::write(&path, format!("{head}{nodes}{tail}")).unwrap();
        path
    }
}

fn curl(base: &str, path: &str) -> Option<serde_json::Value> {
    // The test's own reads of the emulator skip verification (-k); seed's never do.
    let out = Command::new("curl")
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

/// `seed provision --all` follows the rack to the end: every node through the Redfish steps,
/// then (the installer's callbacks played by the test over HTTP) installed, exit 0; with one
/// node's callbacks missing, that node fails after its timeout and the exit is 1.
#[test]
fn provision_all_waits_for_the_rack_and_fails_a_silent_node() {
    let emu = Emulator::start();
    let config = emu.config();
    let state = tempfile::tempdir().unwrap();
    add_image(&config, state.path());
    let http = HttpSeed::start(&config, state.path());

    for (round, silent) in [(1, None), (2, Some("cmp2"))] {
        let mut args = vec!["provision", "--all", "--parallel", "2", "--timeout", "20"];
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
        let mut pending: Vec<&str> = ["cmp1", "cmp2"]
            .into_iter()
            .filter(|n| Some(*n) != silent)
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
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
        // Both went through the Redfish steps.
        assert!(
            stdout.matches("network boot once, power cycle").count() == 2,
            "round {round}: {}",
            describe(&out)
        );
        match silent {
            None => {
                assert!(out.status.success(), "round {round}: {}", describe(&out));
                assert!(stdout.contains("2 of 2 installed"), "{stdout}");
            }
            Some(node) => {
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "round {round}: {}",
                    describe(&out)
                );
                assert!(stdout.contains("1 of 2 installed"), "{stdout}");
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
                        .is_some_and(|e| e.detail.contains("not done 20 s after it was started")),
                );
                assert_eq!(
                    store.node("cmp1").unwrap().unwrap().state.to_string(),
                    "installed"
                );
            }
        }
    }
}
