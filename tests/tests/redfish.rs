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

impl Emulator {
    fn start() -> Self {
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(&binary)
            .arg("--config")
            .arg(dir.path().join("emulator.conf"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("emulator.log")).unwrap())
            .spawn()
            .expect("start sushy-emulator");
        let mut process = KillOnDrop::new(process);
        let base = format!("http://127.0.0.1:{port}");
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
        let text = std::fs::read_to_string(repo_root().join("examples/lab.yaml")).unwrap();
        let head = &text[..text.find("\nnodes:").unwrap()];
        let tail = &text[text.find("\ninstall:").unwrap()..];
        let mut nodes = String::from("\nnodes:\n");
        for (n, role, firmware) in [(11u8, "compute", "uefi"), (12, "compute", "bios")] {
            nodes.push_str(&format!(
                "  - name: cmp{i}\n    role: {role}\n    firmware: {firmware}\n    \
                 bmc: {{ address: 10.10.0.{n}, driver: redfish, username: admin, \
                 password: {{ env: SEED_TEST_BMC_PASSWORD }}, endpoint: \"{base}\", \
                 system: {uuid} }}\n    macs: [\"52:54:00:10:00:{n}\"]\n",
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
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", "-u"])
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

#[test]
fn provision_sets_a_one_time_pxe_boot_and_powers_on() {
    let emu = Emulator::start();
    let config = emu.config();
    let state = tempfile::tempdir().unwrap();
    // The node's image must be registered before it can be provisioned.
    let image = tempfile::tempdir().unwrap();
    for f in ["vmlinuz", "initrd"] {
        std::fs::write(image.path().join(f), f).unwrap();
    }
    let out = run_seed(
        &config,
        state.path(),
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

    let out = run_seed(&config, state.path(), PASSWORD, &["provision", "--all"]);
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
