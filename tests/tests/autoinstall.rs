//! Generated autoinstall documents against the real validators: the subiquity JSON schema,
//! Debian's `cloud-init schema` and `netplan generate --root-dir`, whose systemd-networkd output
//! is read back. Plus golden files, the install-disk guarantee and template overrides.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{describe, repo_root, seed};
use serde_json::Value;

const EXAMPLES: [&str; 3] = [
    "examples/osism-rack.yaml",
    "examples/lab.yaml",
    "examples/routed-racks.yaml",
];

/// `seed render --all` of a config into a fresh directory.
fn render_all(config: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let run = seed()
        .arg("--config")
        .arg(config)
        .args(["render", "--all", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", describe(&run));
    out
}

/// `seed check --json`: the plan, the source of truth the documents must agree with.
fn plan(config: &Path) -> Value {
    let run = seed()
        .arg("check")
        .arg("--json")
        .arg(config)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", describe(&run));
    serde_json::from_slice(&run.stdout).unwrap()
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `netplan generate --root-dir` on one netplan document and returns the directory holding
/// the systemd-networkd files it wrote.
fn netplan_generate(netplan_yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("etc/netplan");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("50-seed.yaml");
    std::fs::write(&file, netplan_yaml).unwrap();
    // netplan warns about world-readable configs; the installed file is 0600 too.
    Command::new("chmod")
        .arg("600")
        .arg(&file)
        .status()
        .unwrap();
    let run = Command::new(common::need("netplan"))
        .arg("generate")
        .arg("--root-dir")
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "netplan generate:\n{netplan_yaml}\n{}",
        describe(&run)
    );
    let networkd = root.path().join("run/systemd/network");
    (root, networkd)
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

fn versions() -> String {
    let v = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| format!("{cmd}: not installed"))
    };
    format!(
        "{} / netplan.io {}",
        v("cloud-init", &["--version"]),
        v("dpkg-query", &["-W", "-f=${Version}", "netplan.io"])
    )
}

/// subiquity's autoinstall schema: `SEED_AUTOINSTALL_SCHEMA`, else `../shared/schemas/` beside
/// the repository where a developer's checkout has it. It is subiquity's file, not ours, and
/// is not committed here. `None` (the check is skipped, visibly) only when neither is set up;
/// a `SEED_AUTOINSTALL_SCHEMA` that cannot be read is an error, so CI cannot skip by accident.
fn subiquity_schema() -> Option<Value> {
    let (path, explicit) = match std::env::var_os("SEED_AUTOINSTALL_SCHEMA") {
        Some(path) => (PathBuf::from(path), true),
        None => (
            repo_root().join("../shared/schemas/autoinstall-schema.json"),
            false,
        ),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
            common::skipped(
                "autoinstall: subiquity schema",
                &format!(
                    "{} does not exist; set SEED_AUTOINSTALL_SCHEMA to subiquity's \
                     autoinstall-schema.json to run this check",
                    path.display()
                ),
            );
            return None;
        }
        Err(e) => panic!("SEED_AUTOINSTALL_SCHEMA {}: {e}", path.display()),
    };
    Some(serde_json::from_str(&text).unwrap())
}

#[test]
fn every_node_passes_the_subiquity_schema() {
    let Some(schema) = subiquity_schema() else {
        return;
    };
    let validator = jsonschema::validator_for(&schema).unwrap();
    // The validator has teeth: wrong types are refused.
    let bogus =
        serde_json::json!({"version": 1, "ssh": {"allow-pw": "no"}, "late-commands": "reboot"});
    assert!(
        validator.iter_errors(&bogus).count() >= 2,
        "schema accepts anything?"
    );
    // The schema allows unknown top-level keys, so a misspelt section would pass it: check
    // that every section seed writes is one subiquity knows.
    let sections = schema["properties"].as_object().unwrap();
    let mut checked = 0;
    for example in EXAMPLES {
        let config = repo_root().join(example);
        let out = render_all(&config);
        for node in plan(&config)["nodes"].as_array().unwrap() {
            let name = node["name"].as_str().unwrap();
            let user_data = yaml_file(&out.path().join(name).join("user-data"));
            let autoinstall = &user_data["autoinstall"];
            let errors: Vec<String> = validator
                .iter_errors(autoinstall)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{example} {name}: {errors:#?}");
            for key in autoinstall.as_object().unwrap().keys() {
                assert!(
                    sections.contains_key(key),
                    "{example} {name}: unknown section {key}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked, 19,
        "11 rack nodes, 4 lab nodes, 4 routed-rack nodes"
    );
}

#[test]
fn every_node_passes_cloud_init_and_netplan() {
    println!("validators: {}", versions());
    let cloud_init = common::need("cloud-init");
    common::need("netplan");
    let mut checked = 0;
    for example in EXAMPLES {
        let config = repo_root().join(example);
        let out = render_all(&config);
        let plan = plan(&config);
        for node in plan["nodes"].as_array().unwrap() {
            let name = node["name"].as_str().unwrap();
            let dir = out.path().join(name);
            let user_data_path = dir.join("user-data");
            let user_data = yaml_file(&user_data_path);
            let autoinstall = &user_data["autoinstall"];

            // 1. cloud-init on the whole user-data (it ignores the autoinstall: key; subiquity's
            //    schema checks that part, in the test above).
            let run = Command::new(&cloud_init)
                .args(["schema", "--config-file"])
                .arg(&user_data_path)
                .output()
                .unwrap();
            assert!(run.status.success(), "{example} {name}: {}", describe(&run));
            assert!(String::from_utf8_lossy(&run.stdout).contains("Valid cloud-config"));

            // 2. The install-time network: DHCP on the boot NIC, matched by its MAC.
            let install_net = serde_json::json!({ "network": autoinstall["network"] });
            let (_root, networkd) = netplan_generate(&serde_json::to_string(&install_net).unwrap());
            let boot = read(&networkd, "10-netplan-boot0.network");
            let mac = node["macs"][0].as_str().unwrap();
            assert!(
                boot.contains(&format!("MACAddress={mac}")),
                "{name}: {boot}"
            );
            assert!(boot.contains("DHCP=ipv4"), "{name}: {boot}");

            // 3. The full netplan: every zone of the plan shows up with its VLAN id, MTU and
            //    address in the networkd files netplan writes.
            let netplan = std::fs::read_to_string(dir.join("netplan.yaml")).unwrap();
            let (_root, networkd) = netplan_generate(&netplan);
            for zone in node["zones"].as_array().unwrap() {
                let iface = zone["interface"].as_str().unwrap();
                let mtu = zone["mtu"].as_u64().unwrap();
                if !zone["native"].as_bool().unwrap() {
                    let netdev = read(&networkd, &format!("10-netplan-{iface}.netdev"));
                    assert!(netdev.contains("Kind=vlan"), "{name} {iface}: {netdev}");
                    assert!(
                        netdev.contains(&format!("Id={}\n", zone["vlan"])),
                        "{name} {iface}: {netdev}"
                    );
                    assert!(
                        netdev.contains(&format!("MTUBytes={mtu}\n")),
                        "{name} {iface}: {netdev}"
                    );
                }
                if let Some(addr) = zone["address"].as_str() {
                    let network = read(&networkd, &format!("10-netplan-{iface}.network"));
                    let want = format!("Address={addr}/{}", zone["prefix"]);
                    assert!(
                        network.contains(&want),
                        "{name} {iface}: want {want} in {network}"
                    );
                }
                if zone["zone"].as_str().unwrap().starts_with("storage") || zone["zone"] == "tunnel"
                {
                    assert_eq!(mtu, 9000, "{name}: data-plane zones run jumbo frames");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked, 19,
        "11 rack nodes, 4 lab nodes, 4 routed-rack nodes"
    );
}

#[test]
fn bonds_get_their_mode_and_lacp_settings() {
    let out = render_all(&repo_root().join("examples/osism-rack.yaml"));
    let netplan = std::fs::read_to_string(out.path().join("net1/netplan.yaml")).unwrap();
    let (_root, networkd) = netplan_generate(&netplan);
    for bond in ["bond0", "bond1", "bond2"] {
        let netdev = read(&networkd, &format!("10-netplan-{bond}.netdev"));
        assert!(netdev.contains("Kind=bond"), "{netdev}");
        assert!(netdev.contains("Mode=802.3ad"), "{netdev}");
        assert!(netdev.contains("LACPTransmitRate=fast"), "{netdev}");
        assert!(netdev.contains("TransmitHashPolicy=layer3+4"), "{netdev}");
    }
    assert!(read(&networkd, "10-netplan-bond1.netdev").contains("MTUBytes=9000"));
    // The external link is up with no host address: Open vSwitch in a container takes it.
    let external = read(&networkd, "10-netplan-bond2.100.network");
    assert!(!external.contains("Address="), "{external}");
    // The default route goes through the management zone only.
    let mgmt = read(&networkd, "10-netplan-bond0.network");
    assert!(mgmt.contains("Gateway=10.1.10.1"), "{mgmt}");
    assert!(!read(&networkd, "10-netplan-bond0.20.network").contains("Gateway="));
}

#[test]
fn a_host_ovs_bridge_only_where_the_config_asks() {
    let out = render_all(&repo_root().join("examples/lab.yaml"));
    let cmp = yaml_file(&out.path().join("cmp1/netplan.yaml"));
    assert_eq!(
        cmp["network"]["bridges"]["br-ex"]["interfaces"][0],
        "ens6.100"
    );
    assert!(cmp["network"]["bridges"]["br-ex"]["openvswitch"].is_object());
    // Members are matched by MAC where the config gives MACs.
    assert_eq!(
        cmp["network"]["ethernets"]["ens4"]["match"]["macaddress"],
        "52:54:00:10:01:11"
    );
    let ud = yaml_file(&out.path().join("cmp1/user-data"));
    assert!(
        ud["autoinstall"]["packages"]
            .as_array()
            .unwrap()
            .contains(&"openvswitch-switch".into())
    );
    let stor = yaml_file(&out.path().join("stor1/netplan.yaml"));
    assert!(stor["network"]["bridges"].is_null());
    let rack = render_all(&repo_root().join("examples/osism-rack.yaml"));
    for node in ["net1", "net2"] {
        let np = yaml_file(&rack.path().join(node).join("netplan.yaml"));
        assert!(
            np["network"]["bridges"].is_null(),
            "OSISM's OVS is containerised: no host bridge"
        );
    }
}

#[test]
fn no_node_can_install_to_any_disk_but_its_own_match() {
    for example in EXAMPLES {
        let config = repo_root().join(example);
        let out = render_all(&config);
        for node in plan(&config)["nodes"].as_array().unwrap() {
            let name = node["name"].as_str().unwrap();
            let ud = yaml_file(&out.path().join(name).join("user-data"));
            let storage = &ud["autoinstall"]["storage"];
            // Only a layout, and its match is the node's disk rule: no `config:` section or
            // second layout that could pick another disk, no key the rule does not have.
            assert_eq!(storage.as_object().unwrap().len(), 1, "{name}: {storage}");
            let rule: Vec<&String> = node["disk"].as_object().unwrap().keys().collect();
            let rendered: Vec<&String> = storage["layout"]["match"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            assert_eq!(rendered, rule, "{name}");
            if example.ends_with("osism-rack.yaml") {
                // Spelt as udev spells it (DELLBOSS_VD), and as NVMe would (a space).
                assert_eq!(
                    storage["layout"]["match"],
                    serde_json::json!({"model": "DELLBOSS[ _]VD"}),
                    "{name}"
                );
                assert_eq!(choose(&storage["layout"]["match"]), "/dev/sda", "{name}");
            }
        }
    }
    let lab = render_all(&repo_root().join("examples/lab.yaml"));
    let stor2 = yaml_file(&lab.path().join("stor2/user-data"));
    assert_eq!(
        stor2["autoinstall"]["storage"]["layout"]["match"],
        serde_json::json!({"serial": "*seed-os-disk-2*"}),
        "the per-node override wins over the role's disk"
    );
}

/// The disk subiquity's rules choose with a rendered `match` on a Dell storage node whose disks
/// are as udev names them (the rows and their sources are `seed::disk`'s unit tests): the BOSS
/// card, SATA OSDs, the internal SD module, a USB stick. Asserts exactly one matches.
fn choose(rendered: &Value) -> String {
    use seed::disk::{UdevDisk, candidates};
    let gb = 1_000_000_000;
    let disk =
        |path: &str, serial: &str, model: &str, vendor: &str, size: u64, rotational| UdevDisk {
            path: path.into(),
            id_serial: serial.into(),
            id_model: model.into(),
            id_vendor: vendor.into(),
            id_path: String::new(),
            size,
            rotational,
        };
    let disks = [
        disk(
            "/dev/sda",
            "DELLBOSS_VD_aa06e20941c90010",
            "DELLBOSS_VD",
            "",
            240 * gb,
            true,
        ),
        disk(
            "/dev/sdb",
            "MTFDDAK1T9TDT_222939CA58D4",
            "MTFDDAK1T9TDT",
            "",
            1920 * gb,
            false,
        ),
        disk(
            "/dev/sdc",
            "Dell_Internal_Dual_SD_0123456789AB-0:0",
            "Internal_Dual_SD",
            "Dell",
            16 * gb,
            false,
        ),
        disk(
            "/dev/sdd",
            "SanDisk_Cruzer_Blade_20060266531DA442AD42-0:0",
            "Cruzer_Blade",
            "SanDisk",
            16 * gb,
            true,
        ),
    ];
    let m = rendered
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let found = candidates(&m, &disks);
    assert_eq!(found.len(), 1, "{rendered} selects {found:?}");
    found[0].path.clone()
}

#[test]
fn golden_files_match_the_example_rack() {
    let golden = repo_root().join("tests/golden/osism-rack");
    let out = render_all(&repo_root().join("examples/osism-rack.yaml"));
    if std::env::var_os("SEED_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        Command::new("cp")
            .arg("-r")
            .arg(out.path())
            .arg(&golden)
            .status()
            .unwrap();
    }
    let mut compared = 0;
    for node in std::fs::read_dir(out.path()).unwrap() {
        let node = node.unwrap().path();
        for file in ["user-data", "meta-data", "netplan.yaml"] {
            let name = node.file_name().unwrap().to_string_lossy().to_string();
            let want = golden.join(&name).join(file);
            let want = std::fs::read_to_string(&want).unwrap_or_else(|e| {
                panic!("{}: {e} (regenerate: SEED_UPDATE_GOLDEN=1 cargo test -p seed-tests --test autoinstall golden)", want.display())
            });
            let got = std::fs::read_to_string(node.join(file)).unwrap();
            assert!(
                got == want,
                "{name}/{file} differs from tests/golden; review the diff and regenerate with SEED_UPDATE_GOLDEN=1"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 33);
}

/// The example rack with `install.templates_dir` pointing at `dir`.
fn config_with_templates(dir: &Path) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/osism-rack.yaml")).unwrap();
    let text = text.replace(
        "  storage_layout: lvm\n",
        &format!(
            "  storage_layout: lvm\n  templates_dir: {}\n",
            dir.display()
        ),
    );
    assert!(text.contains("templates_dir"));
    let path = tmp.path().join("seed.yaml");
    std::fs::write(&path, text).unwrap();
    (tmp, path)
}

/// `seed render meta-data cmp3` of the example rack with `template` overriding meta-data.
fn render_meta_data_with(template: &str) -> std::process::Output {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(templates.path().join("meta-data"), template).unwrap();
    let (_tmp, config) = config_with_templates(templates.path());
    seed()
        .arg("--config")
        .arg(&config)
        .args(["render", "meta-data", "cmp3"])
        .output()
        .unwrap()
}

#[test]
fn an_operator_template_override_is_picked_up() {
    let run = render_meta_data_with(
        "instance-id: {{ instance_id|yaml }}\nlocal-hostname: {{ (hostname ~ '.rack1')|yaml }}\n",
    );
    assert!(run.status.success(), "{}", describe(&run));
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "instance-id: \"cmp3-preview\"\nlocal-hostname: \"cmp3.rack1\"\n"
    );
}

#[test]
fn an_override_with_an_unknown_variable_names_template_line_and_variable() {
    let run = render_meta_data_with(
        "instance-id: {{ instance_id|yaml }}\nlocal-hostname: {{ fqdn|yaml }}\n",
    );
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("template meta-data line 2: unknown variable `fqdn`"),
        "{stderr}"
    );
}

#[test]
fn render_without_an_install_section_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/osism-rack.yaml")).unwrap();
    let (network_only, _) = text.split_once("\ninstall:\n").unwrap();
    let config = tmp.path().join("seed.yaml");
    std::fs::write(&config, network_only).unwrap();
    let check = seed().arg("check").arg(&config).output().unwrap();
    assert!(
        check.status.success(),
        "the plan alone is valid: {}",
        describe(&check)
    );
    let run = seed()
        .arg("--config")
        .arg(&config)
        .args(["render", "user-data", "cmp1"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("the config has no `install:` section"),
        "{}",
        describe(&run)
    );
}

#[test]
fn config_values_with_yaml_special_characters_round_trip() {
    // A key comment and a disk model holding `: # ' " {` and a newline, written in the config
    // as YAML double-quoted strings.
    let key = "ssh-ed25519 AAAAC3Nz dragon: #1 'x' \"y\" {z}\nsecond: line";
    let model = "DELL: BOSS # 'v' \"d\" {1}\nx";
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/osism-rack.yaml")).unwrap();
    let text = text
        .replace(
            "\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwDi8WXTYb7l5d5XCX4g2I0N8m0HjR5cHgfJsbBJ1pz dragon@manager\"",
            &quoted(key),
        )
        .replace("{ model: \"DELLBOSS VD\" }", &format!("{{ model: {} }}", quoted(model)));
    assert!(
        text.contains("second: line") || text.contains("\\nsecond: line"),
        "key not replaced"
    );
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("seed.yaml");
    std::fs::write(&config, text).unwrap();
    let run = seed()
        .arg("--config")
        .arg(&config)
        .args(["render", "user-data", "stor1"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", describe(&run));
    let ud: Value = serde_saphyr::from_str(&String::from_utf8(run.stdout).unwrap()).unwrap();
    let ai = &ud["autoinstall"];
    assert_eq!(ai["user-data"]["users"][0]["ssh_authorized_keys"][0], key);
    // Words joined the way udev may spell them (space or `_`); every character kept.
    assert_eq!(
        ai["storage"]["layout"]["match"]["model"],
        "DELL:[ _]BOSS[ _]#[ _]'v'[ _]\"d\"[ _]{1}[ _]x"
    );
    assert_eq!(
        ai["storage"]["layout"]["match"].as_object().unwrap().len(),
        1
    );
}

#[test]
fn check_refuses_a_config_whose_templates_do_not_render() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(
        templates.path().join("netplan"),
        "network:\n  version: {{ network.version|yaml }}\n",
    )
    .unwrap();
    let (_tmp, config) = config_with_templates(templates.path());
    let run = seed().arg("check").arg(&config).output().unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("install documents: rendering node ctl1"),
        "{stderr}"
    );
    assert!(stderr.contains("template netplan line 2"), "{stderr}");
}

#[test]
fn the_osism_rack_gets_its_operator_at_45000_and_a_root_of_200_gb() {
    let out = render_all(&repo_root().join("examples/osism-rack.yaml"));
    for node in ["ctl1", "cmp1", "stor1", "net1"] {
        let ud = yaml_file(&out.path().join(node).join("user-data"));
        let ai = &ud["autoinstall"];
        // osism.commons.operator renumbers the operator to 45000 unless it already is, and it
        // cannot while logged in as it: the account is made with that uid and gid.
        let user = &ai["user-data"]["users"][0];
        assert_eq!(user["name"], "dragon", "{node}");
        assert_eq!(user["uid"], 45000, "{node}");
        assert_eq!(user["primary_group"], "dragon", "{node}");
        let late: Vec<String> = ai["late-commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert!(
            late.iter()
                .any(|c| c.contains("groupadd --gid 45000 dragon")),
            "{node}: {late:#?}"
        );
        // The root LV: at least 200 GB (OSISM's node image; subiquity's scaled LVM gives 100 GiB).
        let grow = late
            .iter()
            .find(|c| c.contains("lvextend"))
            .unwrap_or_else(|| panic!("{node}: no root resize in {late:#?}"));
        let bytes: u64 = grow
            .split("-ge ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{node}: {grow}"));
        assert!(bytes >= 200_000_000_000, "{node}: {bytes}");
        assert_eq!(ai["storage"]["layout"]["name"], "lvm");
        // The node's name in /etc/hosts without subiquity's identity.
        assert_eq!(ai["user-data"]["manage_etc_hosts"], "localhost");
    }
}

#[test]
fn the_lab_password_hash_is_the_hash_of_the_password_its_comment_names() {
    let text = std::fs::read_to_string(repo_root().join("examples/lab.yaml")).unwrap();
    assert!(
        text.contains("password \"seed\""),
        "the comment names the password"
    );
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("password_hash:"))
        .unwrap();
    let hash = line.split('"').nth(1).unwrap();
    // Recompute it with the hash's own salt.
    let salt = hash.split('$').nth(2).unwrap();
    let out = Command::new(common::need("openssl"))
        .args(["passwd", "-6", "-salt", salt, "seed"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash);
}

#[test]
fn bond_members_with_known_macs_are_found_by_mac_whatever_the_kernel_names_them() {
    // lab.yaml's cmp1 names its NICs' MACs (`nics:`): ens4 and ens5 are bond1's members. On
    // real hardware Ubuntu 24.04 calls such ports ens1f0np0 or eno12399; the netplan must
    // find them by MAC and give them the names the bond lists.
    let out = render_all(&repo_root().join("examples/lab.yaml"));
    let netplan = std::fs::read_to_string(out.path().join("cmp1/netplan.yaml")).unwrap();
    let (_root, networkd) = netplan_generate(&netplan);
    for (name, mac) in [("ens4", "52:54:00:10:01:11"), ("ens5", "52:54:00:10:02:11")] {
        // systemd-udevd renames the port on the first boot from this .link file.
        let link = read(&networkd, &format!("10-netplan-{name}.link"));
        assert!(
            link.contains(&format!("MACAddress={mac}")),
            "{name}: {link}"
        );
        assert!(link.contains(&format!("Name={name}")), "{name}: {link}");
        // networkd enslaves it to the bond by that same MAC.
        let network = read(&networkd, &format!("10-netplan-{name}.network"));
        assert!(
            network.contains(&format!("MACAddress={mac}")),
            "{name}: {network}"
        );
        assert!(network.contains("Bond=bond1"), "{name}: {network}");
    }
    // cmp2 has no `nics:`: its members are matched by the kernel's name alone, the guess that
    // strands a bond when Ubuntu names the port otherwise (what `nics:` is for).
    let netplan = std::fs::read_to_string(out.path().join("cmp2/netplan.yaml")).unwrap();
    let (_root, networkd) = netplan_generate(&netplan);
    let link = read(&networkd, "10-netplan-ens4.link");
    assert!(link.contains("OriginalName=ens4"), "{link}");
    assert!(!link.contains("MACAddress="), "{link}");
}

#[test]
fn a_relayed_racks_own_subnet_is_native_on_its_boot_bond() {
    // examples/routed-racks.yaml: rack 2's nodes boot through their router's DHCP relay in zone
    // rack2 (10.2.10.0/24, native on bond0); seed's own segment (rack1) is not theirs at all.
    let out = render_all(&repo_root().join("examples/routed-racks.yaml"));
    let netplan = std::fs::read_to_string(out.path().join("r2n1/netplan.yaml")).unwrap();
    let (_root, networkd) = netplan_generate(&netplan);
    let bond = read(&networkd, "10-netplan-bond0.network");
    assert!(bond.contains("Address=10.2.10.11/24"), "{bond}");
    assert!(bond.contains("Gateway=10.2.10.1"), "{bond}");
    assert!(
        !bond.contains("Address=10.1."),
        "seed's segment is not rack 2's: {bond}"
    );
    assert!(
        !networkd.join("10-netplan-bond0.11.netdev").exists(),
        "the boot zone is untagged"
    );
    let storage = read(&networkd, "10-netplan-bond0.41.network");
    assert!(storage.contains("Address=10.2.40.11/24"), "{storage}");
    // Its members are found by MAC, as in every rack.
    let link = read(&networkd, "10-netplan-eno2.link");
    assert!(link.contains("MACAddress=3c:ec:ef:12:01:11"), "{link}");
}

/// `install.method: image`: each node's config drive user-data (what cloud-init in the written
/// image reads) passes Debian's `cloud-init schema`, has the operator as autoinstall gives it
/// (uid and gid 45000 for OSISM), and phones home to the node's own URL.
#[test]
fn image_deployed_nodes_get_a_cloud_config_cloud_init_accepts() {
    let cloud_init = common::need("cloud-init");
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/osism-rack.yaml")).unwrap();
    assert!(text.contains("\ninstall:\n"));
    let config = dir.path().join("seed.yaml");
    std::fs::write(
        &config,
        text.replacen("\ninstall:\n", "\ninstall:\n  method: image\n", 1),
    )
    .unwrap();
    let out = render_all(&config);
    for node in ["ctl1", "cmp1", "stor1", "net1"] {
        let node_dir = out.path().join(node);
        assert!(
            !node_dir.join("user-data").exists(),
            "{node}: no autoinstall"
        );
        let path = node_dir.join("cloud-config");
        let run = Command::new(&cloud_init)
            .args(["schema", "--config-file"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(run.status.success(), "{node}: {}", describe(&run));
        assert!(String::from_utf8_lossy(&run.stdout).contains("Valid cloud-config"));
        let doc = yaml_file(&path);
        assert!(doc.get("autoinstall").is_none(), "{node}");
        assert_eq!(doc["hostname"], node);
        let user = &doc["users"][0];
        assert_eq!(user["name"], "dragon", "{node}");
        assert_eq!(user["uid"], 45000, "{node}");
        assert!(
            doc["bootcmd"][0]
                .as_str()
                .unwrap()
                .contains("groupadd --gid 45000 dragon"),
            "{node}: {doc}"
        );
        let url = doc["phone_home"]["url"].as_str().unwrap();
        assert!(
            url.ends_with("/phone-home") && url.contains("/nodes/"),
            "{url}"
        );
    }
}
