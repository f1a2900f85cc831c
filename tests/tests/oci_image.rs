//! seed's OCI image (`packaging/oci/build`): the static binary and nothing else, imported into
//! seed's own registry, pulled from it by skopeo and podman, and run by podman as a server
//! that answers HTTP, writes its store on a mounted volume and stops cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KillOnDrop, describe, free_port, need, repo_root, run, seed};

/// podman (a store of the test's own) with `runc`, and [`LIMITS`], because of this machine
/// kind, not the image: its root lacks CAP_SYS_RESOURCE (podman's default limits are above
/// the hard ones: EPERM) and it mounts cgroups in hybrid mode, which crun refuses.
fn podman(work: &Path) -> Command {
    let mut cmd = common::podman(work);
    cmd.args(["--runtime", "runc"]);
    cmd
}

const LIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

#[test]
fn the_oci_image_is_pulled_from_seeds_registry_and_run_by_podman() {
    if !nix::unistd::Uid::effective().is_root() {
        common::skipped("the OCI image test", "podman with a root store needs root");
        return;
    }
    let work = tempfile::tempdir_in(repo_root().join("target")).unwrap();
    let work = work.path();
    // The image, from the binary under test (debug info stripped, as a release has none).
    let binary = work.join("seed");
    std::fs::copy(common::seed_bin(), &binary).unwrap();
    run(Command::new(need("strip"))
        .arg("--strip-debug")
        .arg(&binary));
    let layout = work.join("oci/seed");
    let built = run(Command::new(repo_root().join("packaging/oci/build"))
        .arg("--binary")
        .arg(&binary)
        .args(["--tag", "1.2.3", "--out"])
        .arg(&layout));
    let manifest_digest = String::from_utf8_lossy(&built.stdout)
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    // Nothing but the binary: one layer whose only file is /usr/bin/seed.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], manifest_digest.as_str());
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&manifest_digest)).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let listing = run(Command::new("tar")
        .arg("-tzvf")
        .arg(blob(layers[0]["digest"].as_str().unwrap())));
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect();
    assert_eq!(files, ["usr/bin/seed"], "the image holds the binary alone");
    // Reproducible: the same binary gives the same manifest.
    let again = run(Command::new(repo_root().join("packaging/oci/build"))
        .arg("--binary")
        .arg(&binary)
        .args(["--tag", "1.2.3", "--out"])
        .arg(work.join("oci/again")));
    assert!(
        String::from_utf8_lossy(&again.stdout).ends_with(&format!("{manifest_digest}\n")),
        "a second build differs: {}",
        String::from_utf8_lossy(&again.stdout)
    );

    // Into seed's own registry, served by seed on loopback.
    let state = work.join("state");
    let imported = run(seed()
        .arg("--state-dir")
        .arg(&state)
        .args(["registry", "import"])
        .arg(&layout)
        .args(["--name", "osism/seed"]));
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("osism/seed:1.2.3"),
        "{}",
        describe(&imported)
    );
    let port = free_port();
    let registry = format!("127.0.0.1:{port}");
    let _serving = KillOnDrop::new(
        seed()
            .arg("--config")
            .arg(repo_root().join("examples/osism-rack.yaml"))
            .arg("--state-dir")
            .arg(&state)
            .args([
                "serve",
                "--no-dhcp",
                "--no-tftp",
                "--http-listen",
                &registry,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_until(Duration::from_secs(30), "seed's registry answers", || {
        std::net::TcpStream::connect(&registry).is_ok()
    });
    let reference = format!("{registry}/osism/seed:1.2.3");

    // skopeo pulls it whole, by the digest the build gave.
    let raw = run(Command::new(need("skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    assert_eq!(
        common::sha256_hex(&raw.stdout),
        manifest_digest.trim_start_matches("sha256:")
    );
    run(Command::new(need("skopeo"))
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:1.2.3", work.join("pulled").display())));

    // podman pulls it from seed and runs it.
    run(podman(work).args(["pull", "--tls-verify=false", &reference]));
    let version = run(podman(work)
        .args(["run", "--rm", "--network", "host"])
        .args(LIMITS)
        .args([&reference, "--version"]));
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("seed {}", env!("CARGO_PKG_VERSION"))
    );

    // As a server: config and state mounted, host network (DHCP needs the provisioning
    // interface; here HTTP on loopback only), stopped by SIGTERM like any container.
    let config_dir = work.join("etc-seed");
    let state_dir = work.join("container-state");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::copy(
        repo_root().join("examples/osism-rack.yaml"),
        config_dir.join("seed.yaml"),
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    run(podman(work)
        .args([
            "run",
            "-d",
            "--name",
            "seed-under-test",
            "--network",
            "host",
        ])
        .args(LIMITS)
        .arg("-v")
        .arg(format!("{}:/etc/seed:ro", config_dir.display()))
        .arg("-v")
        .arg(format!("{}:/var/lib/seed", state_dir.display()))
        .args([
            &reference,
            "serve",
            "--no-dhcp",
            "--no-tftp",
            "--http-listen",
            &http,
        ]));
    // Removed however the test ends.
    struct Container<'a>(&'a Path);
    impl Drop for Container<'_> {
        fn drop(&mut self) {
            let _ = podman(self.0)
                .args(["rm", "-f", "-t", "10", "seed-under-test"])
                .output();
        }
    }
    let _container = Container(work);
    common::wait_until(
        Duration::from_secs(60),
        "seed in the container answers",
        || std::net::TcpStream::connect(&http).is_ok(),
    );
    let answered = common::http::get(&format!("http://{http}/api/v1/nodes"));
    let logs = podman(work)
        .args(["logs", "seed-under-test"])
        .output()
        .unwrap();
    run(podman(work).args(["stop", "-t", "20", "seed-under-test"]));
    let exit = run(podman(work).args([
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        "seed-under-test",
    ]));
    assert_eq!(answered.status, 200, "{}", describe(&logs));
    assert_eq!(
        String::from_utf8_lossy(&exit.stdout).trim(),
        "0",
        "SIGTERM is a clean stop: {}",
        describe(&logs)
    );
    let store = seed::store::Store::open_existing(&state_dir)
        .unwrap()
        .expect("the container's store on the volume");
    let kinds: Vec<String> = store
        .events(None, 50)
        .unwrap()
        .into_iter()
        .filter(|e| e.node.is_none())
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.ends_with(&["started".to_string(), "stopped".to_string()]),
        "{kinds:?}"
    );
}
