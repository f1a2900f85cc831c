//! `seed serve` opens the store, registers the configured nodes, and stops cleanly on SIGTERM;
//! `seed status` reads the same rows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{describe, repo_root, seed};

/// `seed --config <repo>/<config> --state-dir <state>`.
fn seed_with(config: &str, state: &std::path::Path) -> std::process::Command {
    let mut cmd = seed();
    cmd.arg("--config")
        .arg(repo_root().join(config))
        .arg("--state-dir")
        .arg(state);
    cmd
}

fn status_json(state: &std::path::Path) -> serde_json::Value {
    let out = seed_with("examples/osism-rack.yaml", state)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn serve_registers_nodes_and_stops_on_sigterm() {
    let state = tempfile::tempdir().unwrap();
    // Before serve ran: configured nodes show as not yet registered.
    let before = status_json(state.path());
    assert_eq!(before["nodes"].as_array().unwrap().len(), 11);
    assert!(before["nodes"][0]["updated_at"].is_null());
    assert!(before["discovered"].as_array().unwrap().is_empty());

    let child = seed_with("examples/osism-rack.yaml", state.path())
        .args(common::SERVE_HTTP_ONLY)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut running = common::KillOnDrop::new(child);

    // Poll the store until serve has registered every node.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = status_json(state.path());
        let registered = rows["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "ready" && r["updated_at"].is_i64())
            .count();
        if registered == 11 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not register the nodes: {rows}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let pid = running.child().id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let status = common::wait_for(
        Duration::from_secs(30),
        || running.child().try_wait().unwrap(),
        || "serve ignored SIGTERM".into(),
    );
    assert!(status.success(), "serve exit: {status}");
}

#[test]
fn serve_refuses_an_invalid_config() {
    let state = tempfile::tempdir().unwrap();
    let out = seed_with("tests/fixtures/broken/duplicates.yaml", state.path())
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not usable"), "{stderr}");
    assert!(stderr.contains("nodes[cmp2].bmc.address"), "{stderr}");
}

#[test]
fn status_with_a_named_but_missing_config_is_an_error() {
    let state = tempfile::tempdir().unwrap();
    let out = seed()
        .args(["--config", "/nonexistent/seed.yaml", "--state-dir"])
        .arg(state.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    // One line, one `error:`, the cause once: not "…(os error 2): … (os error 2)".
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: cannot read config /nonexistent/seed.yaml: No such file or directory (os error 2)\n"
    );
}

#[test]
fn status_without_config_reads_the_store_alone_and_creates_none() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("never-used");
    let status = || {
        let out = seed()
            .arg("--state-dir")
            .arg(&dir)
            .arg("status")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        out
    };
    let out = status();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "no nodes\n\nstate: none: {}/seed.db does not exist (seed has not served or \
             provisioned with this state directory; --state-dir or the config's seed.state_dir \
             names another)\ndisk: images 0 B, disk images 0 B, container registry 0 B\n",
            dir.display()
        )
    );
    assert!(!dir.exists(), "seed status created {}", dir.display());

    // A store seed made is read and named.
    drop(seed::store::Store::open(&dir).unwrap());
    let out = status();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "no nodes\n\nstate: {}/seed.db\ndisk: images 0 B, disk images 0 B, container registry 0 B\n",
            dir.display()
        )
    );
}

#[test]
fn serve_refuses_dhcp_on_an_interface_without_seeds_address() {
    // The example's eno1 with 10.1.10.5 is not this machine's: seed must not serve DHCP here.
    let state = tempfile::tempdir().unwrap();
    let out = seed_with("examples/osism-rack.yaml", state.path())
        .args(["serve", "--no-tftp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to serve DHCP"), "{stderr}");
}

#[test]
fn provision_marks_nodes_once_and_reinstalls_only_with_force() {
    let state = tempfile::tempdir().unwrap();
    // The rack installs `ubuntu-24.04`; register it from two small files.
    for name in ["vmlinuz", "initrd"] {
        std::fs::write(state.path().join(name), name).unwrap();
    }
    let out = seed_with("examples/osism-rack.yaml", state.path())
        .args(["images", "add", "ubuntu-24.04", "--kernel"])
        .arg(state.path().join("vmlinuz"))
        .arg("--initrd")
        .arg(state.path().join("initrd"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let listed = seed_with("examples/osism-rack.yaml", state.path())
        .args(["images", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("ubuntu-24.04 ")
            && l.contains("vmlinuz  initrd")
            && l.contains("13 B")),
        "{}",
        describe(&listed)
    );
    // Marking only: the example rack's BMCs do not exist here (power has its own tests).
    let provision = |args: &[&str]| {
        seed_with("examples/osism-rack.yaml", state.path())
            .args(["provision", "--no-power"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = provision(&["cmp3", "stor1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cmp3: provisioning (instance cmp3-"),
        "{stdout}"
    );
    let again = provision(&["cmp3"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("cmp3: already provisioning"),
        "{}",
        describe(&again)
    );
    let rows = status_json(state.path());
    let state_of = |name: &str| {
        rows["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of("cmp3"), "provisioning");
    assert_eq!(state_of("ctl1"), "ready");
    // The token is a secret: status does not show it.
    assert!(
        !String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains("token")
    );
    let unknown = provision(&["nosuch"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no node named nosuch"));

    // The image two nodes are installing from can be neither replaced nor removed now.
    let images = |args: &[&str]| {
        seed_with("examples/osism-rack.yaml", state.path())
            .arg("images")
            .args(args)
            .output()
            .unwrap()
    };
    let kernel = state.path().join("vmlinuz");
    let initrd = state.path().join("initrd");
    for args in [
        vec![
            "add",
            "ubuntu-24.04",
            "--replace",
            "--kernel",
            kernel.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
        ],
        vec!["remove", "ubuntu-24.04"],
    ] {
        let out = images(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("image ubuntu-24.04 is being installed on cmp3, stor1"),
            "{stderr}"
        );
    }
    assert!(state.path().join("images/ubuntu-24.04/image.json").exists());
}

/// The log of `seed serve` with standard error redirected to a file: its text once serve is up.
fn serve_log(extra: &[&str]) -> String {
    let state = tempfile::tempdir().unwrap();
    let log_path = state.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = seed_with("examples/osism-rack.yaml", state.path())
        .arg("-v")
        .args(extra)
        .args(common::SERVE_HTTP_ONLY)
        .env_remove("NO_COLOR")
        .env_remove("SEED_COLOR")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _running = common::KillOnDrop::new(child);
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    common::wait_for(
        Duration::from_secs(30),
        || Some(read()).filter(|text| text.contains("HTTP server running")),
        || format!("serve did not start: {}", read()),
    )
}

#[test]
fn a_log_in_a_file_has_no_colour_codes_unless_asked() {
    let plain = serve_log(&[]);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    let coloured = serve_log(&["--color", "always"]);
    assert!(coloured.contains("\x1b["), "{coloured:?}");
}
