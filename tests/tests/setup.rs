//! The set-up a newcomer's two commands rely on: a missing peer is named with its package,
//! every package the tests name is one `tests/setup` installs, and CI and `tests/fresh-root` run
//! exactly the command lines the README shows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use common::repo_root;

#[test]
fn a_missing_peer_fails_naming_its_package() {
    let empty = tempfile::tempdir().unwrap();
    let dirs = vec![empty.path().to_path_buf()];
    let panic = std::panic::catch_unwind(|| common::need_in("perfdhcp", "kea-admin", &dirs))
        .expect_err("perfdhcp is not in an empty directory");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("`perfdhcp` is not installed")
            && message.contains("Debian package `kea-admin`")
            && message.contains("tests/setup"),
        "{message}"
    );
    // And one that is there is found, with its path.
    let found = common::need("ip");
    assert!(
        found.is_absolute() && found.ends_with("ip"),
        "{}",
        found.display()
    );
}

#[test]
fn tests_setup_installs_every_package_a_test_names() {
    let setup = std::fs::read_to_string(repo_root().join("tests/setup")).unwrap();
    // The package arrays of tests/setup: `name=(… \n …)`.
    let mut listed = Vec::new();
    for array in ["build", "lab", "tests"] {
        let start = setup
            .find(&format!("\n{array}=("))
            .unwrap_or_else(|| panic!("tests/setup has no {array}=( list"));
        let body = &setup[start + array.len() + 3..];
        let body = &body[..body.find(')').unwrap()];
        listed.extend(body.split_whitespace().map(str::to_string));
    }
    // Essential packages every Debian and Ubuntu system has.
    let essential = ["apt", "dpkg", "coreutils"];
    for (program, package) in common::PACKAGES {
        assert!(
            essential.contains(package) || listed.iter().any(|p| p == package),
            "tests run `{program}` from `{package}`, which tests/setup does not install"
        );
    }
    // gpg makes no key without its agent, a Recommends that --no-install-recommends drops.
    assert!(listed.iter().any(|p| p == "gpg-agent"));
}

#[test]
fn ci_and_fresh_root_run_the_commands_the_readme_shows() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for prefix in ["tests/setup lab && ", "tests/setup && "] {
        let lines: Vec<&str> = readme.lines().filter(|l| l.starts_with(prefix)).collect();
        assert_eq!(
            lines.len(),
            1,
            "README: one line starting `{prefix}`: {lines:?}"
        );
    }
    let test_line = readme
        .lines()
        .find(|l| l.starts_with("tests/setup && "))
        .unwrap();
    assert!(test_line.contains("cargo test --workspace"), "{test_line}");
    assert!(test_line.contains("--no-fail-fast"), "{test_line}");
    let ci = std::fs::read_to_string(repo_root().join(".ci/run")).unwrap();
    assert!(
        ci.contains("grep -m1 '^tests/setup && ' README.md"),
        ".ci/run must run the README's test line"
    );
    let fresh = std::fs::read_to_string(repo_root().join("tests/fresh-root")).unwrap();
    for prefix in ["^tests/setup lab && ", "^tests/setup && "] {
        assert!(
            fresh.contains(prefix),
            "tests/fresh-root must run the README's `{prefix}` line"
        );
    }
}

/// A host whose installed systemd is newer than any of its apt sources offer: this machine kind
/// carries systemd 254 from bookworm-backports without a backports line, and a plain
/// `apt-get download systemd` then asks for a version no source has. The set-up's downloads
/// must take what the archive has. The host is simulated with a dpkg status of our own (apt's
/// `Dir::State::status`, through APT_CONFIG, as apt.conf(5) reads it before everything else),
/// so nothing on this machine changes.
#[test]
fn the_set_up_downloads_what_the_archive_has_not_what_the_host_has_installed() {
    let work = tempfile::tempdir_in(repo_root().join("target")).unwrap();
    // Versions from a real bookworm machine of this kind (`dpkg-query -W systemd`), which no
    // bookworm, bookworm-updates or bookworm-security source has.
    let newer = "254.26-1~bpo12+1";
    let status: String = [
        "systemd",
        "libsystemd-shared",
        "libsystemd0",
        "udev",
        "libudev1",
    ]
    .iter()
    .map(|package| {
        format!(
            "Package: {package}\nStatus: install ok installed\nPriority: important\n\
                 Section: admin\nInstalled-Size: 1\nMaintainer: seed tests <root@localhost>\n\
                 Architecture: amd64\nVersion: {newer}\nDescription: installed from backports\n\n"
        )
    })
    .collect();
    let status_file = work.path().join("status");
    std::fs::write(&status_file, status).unwrap();
    let apt_config = work.path().join("apt.conf");
    std::fs::write(
        &apt_config,
        format!("Dir::State::status \"{}\";\n", status_file.display()),
    )
    .unwrap();
    // apt-get download drops to _apt: let it write and reach the directories.
    let chmod = |path: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    };
    chmod(work.path());

    // The simulated host reproduces the failure: apt's candidate is the installed version.
    let plain = work.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    chmod(&plain);
    let out = std::process::Command::new("apt-get")
        .args(["download", "-qq", "systemd"])
        .current_dir(&plain)
        .env("APT_CONFIG", &apt_config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(newer),
        "a plain apt-get download on the simulated host should ask for {newer} and fail \
         (run `apt-get update` if apt knows no systemd): {stderr}"
    );

    // The set-up's builds take the archive's versions on that host: the installer (busybox and
    // the cloud kernel) and the first-boot machine (systemd, udev and their libraries).
    for (script, out_dir) in [
        ("tests/installer/build", "installer"),
        ("tests/firstboot/build", "firstboot"),
    ] {
        let out_dir = work.path().join(out_dir);
        let out = std::process::Command::new(repo_root().join(script))
            .arg(&out_dir)
            .env("APT_CONFIG", &apt_config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script} on a host with systemd {newer} installed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for file in ["vmlinuz", "initrd.gz"] {
            assert!(
                out_dir.join(file).metadata().unwrap().len() > 0,
                "{script} wrote no {file}"
            );
        }
    }
}
