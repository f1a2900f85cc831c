//! One store, one server, and the store's life on a seed host: a second `seed serve` on a
//! state directory is refused naming the first; a user who may not read the store is told so
//! (not that it is missing); a backup taken while leases are committed restores to a
//! consistent store, and a restore is refused while a server runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{describe, repo_root, seed};
use seed::store::{Lease, Store};

fn serve(state: &Path) -> common::KillOnDrop {
    let child = seed()
        .arg("--config")
        .arg(repo_root().join("examples/osism-rack.yaml"))
        .arg("--state-dir")
        .arg(state)
        .args(common::SERVE_HTTP_ONLY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::KillOnDrop::new(child)
}

#[test]
fn a_second_serve_on_one_state_directory_is_refused_naming_the_first() {
    let state = tempfile::tempdir().unwrap();
    let mut first = serve(state.path());
    let pid = first.child().id();
    let lock = state.path().join(seed::store::LOCK_FILE);
    common::wait_until(
        Duration::from_secs(30),
        "the first serve takes the lock",
        || std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid.to_string()),
    );

    let second = serve(state.path()).wait_with_output();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{}", describe(&second));
    assert!(
        stderr.contains(&format!(
            "state directory {} is in use by another seed serve (pid {pid})",
            state.path().display()
        )),
        "{stderr}"
    );
    // A restore replaces the store under a server's feet: refused the same way.
    let backup = state.path().join("backup.db");
    let out = seed()
        .arg("--state-dir")
        .arg(state.path())
        .arg("backup")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backup while serving: {}",
        describe(&out)
    );
    let out = seed()
        .arg("--state-dir")
        .arg(state.path())
        .arg("restore")
        .arg(&backup)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("(pid {pid})")),
        "{}",
        describe(&out)
    );

    // Once the first is gone (killed: the kernel drops its lock), a new one starts.
    drop(first);
    let mut third = serve(state.path());
    let pid = third.child().id();
    common::wait_until(
        Duration::from_secs(30),
        "a new serve takes the lock",
        || std::fs::read_to_string(&lock).is_ok_and(|t| t.trim() == pid.to_string()),
    );
    assert!(
        third.child().try_wait().unwrap().is_none(),
        "it keeps running"
    );
}

/// The packaged service keeps its state in a 0750 directory of its own user; an operator's
/// `seed status` without sudo used to say the store "does not exist" and exit 0.
#[test]
fn a_user_who_cannot_read_the_store_is_told_so_not_that_it_is_missing() {
    let setpriv = common::need("setpriv");
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = top.path().join("seed");
    drop(Store::open(&state).unwrap());
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o750)).unwrap();
    // The binary must be reachable by that user: a copy beside the state directory.
    let bin = top.path().join("seed-cli");
    std::fs::copy(common::seed_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |dir: &Path, args: &[&str]| {
        std::process::Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .arg("--state-dir")
            .arg(dir)
            .args(args)
            .env_remove("SEED_CONFIG")
            .output()
            .unwrap()
    };
    for args in [&["status"][..], &["backup", "/tmp/never-written.db"][..]] {
        let out = as_nobody(&state, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        assert!(
            stderr.contains("permission denied: user nobody (uid 65534) cannot read")
                && stderr.contains(&state.display().to_string())
                && stderr.contains("owner root:root, mode 0750")
                && stderr.contains("sudo -u seed"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("does not exist"), "{stderr}");
    }
    // A store that really is missing is still said to be missing, to that user too.
    let out = as_nobody(&top.path().join("elsewhere"), &["status"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("does not exist"),
        "{}",
        describe(&out)
    );
}

fn lease(i: u32) -> Lease {
    let [_, _, a, b] = i.to_be_bytes();
    Lease {
        mac: format!("52:54:00:00:{a:02x}:{b:02x}").parse().unwrap(),
        ip: Ipv4Addr::new(10, 1, 10 + a, b),
        node: None,
        expires_at: 9_000_000_000_000 + i64::from(i),
    }
}

/// `seed backup` while another connection commits 1,000 leases one by one (as DHCP does, a
/// durable commit before each ACK): every backup restores, passes SQLite's integrity check,
/// and holds exactly the leases committed before some point — a prefix of the sequence, never
/// a later lease without an earlier one — at least those committed before the backup began.
#[test]
fn a_backup_taken_during_1000_lease_commits_restores_to_a_consistent_store() {
    const LEASES: u32 = 1000;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(Store::open(&state).unwrap());
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let writer = {
        let state = state.clone();
        let committed = std::sync::Arc::clone(&committed);
        std::thread::spawn(move || {
            let mut store = Store::open(&state).unwrap();
            for i in 0..LEASES {
                store.commit_lease(&lease(i)).unwrap();
                committed.store(i + 1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    // Backups one after another until the writer is done (bounded: 5,000 rounds): through
    // the library here, as `seed backup` does it (one more by the binary below), because the
    // 1,000 commits take less time than starting a process a few times.
    let reader = Store::open(&state).unwrap();
    let mut taken = Vec::new();
    for round in 0..5000 {
        let before = committed.load(std::sync::atomic::Ordering::SeqCst);
        let file = dir.path().join(format!("backup-{round}.db"));
        reader.backup(&file).unwrap();
        let after = committed.load(std::sync::atomic::Ordering::SeqCst);
        taken.push((file, before, after));
        if before == LEASES {
            break;
        }
    }
    writer.join().unwrap();
    assert!(
        taken
            .iter()
            .any(|(_, before, _)| *before > 0 && *before < LEASES),
        "no backup was taken while leases were being committed: {:?}",
        taken.iter().map(|t| (t.1, t.2)).collect::<Vec<_>>()
    );

    // And the binary's, of the finished store.
    let file = dir.path().join("backup-cli.db");
    let out = seed()
        .arg("--state-dir")
        .arg(&state)
        .arg("backup")
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1000 leases"),
        "{}",
        describe(&out)
    );
    taken.push((file, LEASES, LEASES));
    // Each restored: the binary's restore for a few spread over the run, the library's for
    // the rest (the same code).
    let by_binary = taken.len().div_ceil(8);
    for (i, (file, before, after)) in taken.iter().enumerate() {
        let restored = dir.path().join(format!("restored-{i}"));
        if i % by_binary == 0 || i == taken.len() - 1 {
            let out = seed()
                .arg("--state-dir")
                .arg(&restored)
                .arg("restore")
                .arg(file)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", describe(&out));
        } else {
            seed::store::restore(&restored, file).unwrap();
        }
        let store = Store::open(&restored).unwrap();
        let leases = store.leases().unwrap();
        let n = leases.len() as u32;
        assert!(
            *before <= n && n <= *after,
            "backup {i}: {n} leases, but {before} were committed before it began and {after} after it ended"
        );
        let mut macs: Vec<_> = leases.iter().map(|l| l.mac).collect();
        macs.sort();
        let mut prefix: Vec<_> = (0..n).map(|i| lease(i).mac).collect();
        prefix.sort();
        assert_eq!(macs, prefix, "backup {i}: not the first {n} leases");
    }
}

/// The packaged service owns its state directory; an operator imports as root. What root's
/// commands create there is handed to the directory's owner, so the service can write beside
/// it; nothing outside is touched.
#[test]
fn what_root_creates_in_the_services_state_directory_becomes_the_services() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::Uid::effective().is_root() {
        common::skipped(
            "hand-over of root's files",
            "needs root (chown); CI runs as root",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // nobody stands in for the package's `seed` user.
    std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    let kernel = dir.path().join("vmlinuz");
    let initrd = dir.path().join("initrd.gz");
    std::fs::write(&kernel, b"kernel").unwrap();
    std::fs::write(&initrd, b"initrd").unwrap();
    let out = seed()
        .arg("--state-dir")
        .arg(&state)
        .args(["images", "add", "lab"])
        .arg("--kernel")
        .arg(&kernel)
        .arg("--initrd")
        .arg(&initrd)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let mut seen = 0;
    let mut pending = vec![state.clone()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            assert_eq!(
                (meta.uid(), meta.gid()),
                (65534, 65534),
                "{} is not the state directory owner's",
                path.display()
            );
            seen += 1;
            if meta.is_dir() {
                pending.push(path);
            }
        }
    }
    assert!(seen >= 4, "the image, its files and the store: {seen}");
    // The operator's own files stay theirs.
    assert_eq!(std::fs::metadata(&kernel).unwrap().uid(), 0);
}
