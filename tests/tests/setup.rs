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
