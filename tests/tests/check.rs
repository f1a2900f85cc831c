//! `seed check` against the example rack and the broken fixtures, through the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::Path;

use common::{describe, repo_root, seed};

fn check(args: &[&str]) -> std::process::Output {
    seed()
        .current_dir(repo_root())
        .arg("check")
        .args(args)
        .output()
        .expect("run seed check")
}

#[test]
fn the_example_rack_is_valid_and_derives_every_address_from_the_bmc() {
    let out = check(&["examples/osism-rack.yaml"]);
    assert!(out.status.success(), "{}", describe(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    // cmp3's BMC is 10.1.0.23: every zone of the compute role gets .23, nothing else does.
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.starts_with("cmp3 "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let zones: Vec<(&str, &str, &str, &str, &str)> = rows
        .iter()
        .map(|r| (r[3], r[4], r[5], r[6], r[7]))
        .collect();
    assert_eq!(
        zones,
        vec![
            ("management", "10", "bond0", "1500", "10.1.10.23/24"),
            ("migration", "30", "bond0.30", "1500", "10.1.30.23/24"),
            ("storage-public", "40", "bond1.40", "9000", "10.1.40.23/24"),
            ("tunnel", "50", "bond1.50", "9000", "10.1.50.23/24"),
        ],
        "{table}"
    );
    assert!(
        rows.iter()
            .all(|r| r[1] == "compute" && r[2] == "10.1.0.23")
    );
    // Zones the compute role does not join never show up for it.
    for zone in ["api", "storage-cluster", "external"] {
        assert!(
            !zones.iter().any(|z| z.0 == zone),
            "cmp3 must not be in {zone}"
        );
    }
    // External carries no host addresses.
    assert!(
        table.lines().any(|l| l.starts_with("net1 ")
            && l.contains("external")
            && l.contains("(no host address)")),
        "{table}"
    );
    assert!(table.contains("valid, 11 nodes in 7 zones"), "{table}");
}

#[test]
fn json_plan_has_every_node_and_its_zones() {
    let out = check(&["--json", "examples/osism-rack.yaml"]);
    assert!(out.status.success(), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = plan["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 11);
    let stor2 = nodes.iter().find(|n| n["name"] == "stor2").unwrap();
    assert_eq!(stor2["suffix"], 32);
    let addresses: Vec<(&str, &str)> = stor2["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| (z["zone"].as_str().unwrap(), z["address"].as_str().unwrap()))
        .collect();
    assert_eq!(
        addresses,
        vec![
            ("management", "10.1.10.32"),
            ("storage-public", "10.1.40.32"),
            ("storage-cluster", "10.1.41.32"),
        ]
    );
    assert_eq!(stor2["disk"]["model"], "DELLBOSS VD");
    let net1 = nodes.iter().find(|n| n["name"] == "net1").unwrap();
    let external = net1["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "external")
        .unwrap();
    assert!(external["address"].is_null());
    assert_eq!(plan["zones"][0]["provisioning"], true);
    // Credentials are references and never part of the plan.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("SEED_BMC_PASSWORD"));
}

#[test]
fn every_broken_fixture_gives_exactly_its_expected_errors() {
    let dir = repo_root().join("tests/fixtures/broken");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(
        fixtures.len() >= 6,
        "fixtures went missing from {}",
        dir.display()
    );
    for fixture in fixtures {
        let rel = fixture.strip_prefix(repo_root()).unwrap();
        let expected_path = fixture.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let out = check(&[rel.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            rel.display(),
            describe(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "no plan for a broken config: {}",
            describe(&out)
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr, expected, "{}", rel.display());
        // Each problem line names the file and a field path.
        for line in stderr
            .lines()
            .filter(|l| l.starts_with(rel.to_str().unwrap()) && !l.ends_with("found"))
        {
            assert!(
                line.contains(".yaml:") || line.contains(".yaml: zones"),
                "{line}"
            );
        }
    }
}

#[test]
fn a_missing_config_is_a_clear_error() {
    let out = check(&["does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read config does/not/exist.yaml"),
        "{stderr}"
    );
    assert!(!Path::new("does/not/exist.yaml").exists());
}

#[test]
fn ports_without_a_mac_are_warned_about_and_the_config_stays_valid() {
    let out = check(&["examples/lab.yaml"]);
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // cmp1 names the MACs of ens3 and bond1's members, not its external NIC ens6.
    assert!(
        stderr.contains("nodes[cmp1].nics: warning: no MAC for ens6:"),
        "{stderr}"
    );
    // cmp2 names none: its plain boot link ens3 is the NIC with its one boot MAC, every other
    // port is a guess.
    assert!(
        stderr.contains("nodes[cmp2].nics: warning: no MAC for bond1 (ens4, ens5), ens6:"),
        "{stderr}"
    );
    assert!(stderr.contains("name each port's MAC in nics:"), "{stderr}");
    assert_eq!(stderr.lines().count(), 4, "one line per lab node: {stderr}");
    // The reference rack names every port's MAC: nothing to warn about.
    let out = check(&["examples/osism-rack.yaml"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(out.stderr.is_empty(), "{}", describe(&out));
}
