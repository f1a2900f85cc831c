use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::power::ReportedNic;

/// A rack whose node `bare` names only its BMC and role: the role says which BMC NIC each port
/// is. The Ids are iDRAC's (`NIC.Embedded.<n>-1-1` for LOMs, `NIC.Slot.<slot>-<port>-1` for
/// PCIe cards: Dell's Redfish NIC naming, as in the iDRAC 9 EthernetInterfaces of gofish's
/// test data).
const RACK: &str = r#"
seed: { interface: eth0, address: 10.1.10.5 }
links:
  - name: bond0
    bond: { members: [eno1, eno2], mode: 802.3ad }
  - name: bond1
    bond: { members: [ens1f0, ens1f1], mode: 802.3ad }
zones:
  - { name: mgmt, vlan: 10, subnet: 10.1.10.0/24, link: bond0, native: true, provisioning: true, roles: [compute] }
  - { name: data, vlan: 40, subnet: 10.1.40.0/24, link: bond1, roles: [compute] }
roles:
  - name: compute
    links: [bond0, bond1]
    disk: { model: "DELLBOSS VD" }
    ports:
      eno1: NIC.Embedded.1-1-1
      eno2: NIC.Embedded.2-1-1
      ens1f0: NIC.Slot.3-1-1
      ens1f1: NIC.Slot.3-2-1
nodes:
  - name: bare
    role: compute
    bmc: { address: 10.1.0.21, driver: redfish, username: root, password: { env: P } }
  - name: named
    role: compute
    bmc: { address: 10.1.0.22, driver: redfish, username: root, password: { env: P } }
    macs: ["3c:ec:ef:10:00:22"]
    nics: { eno1: "3c:ec:ef:10:00:22" }
install:
  user: { name: dragon, ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwDi8WXTYb7l5d5XCX4g2I0N8m0HjR5cHgfJsbBJ1pz lab"] }
"#;

fn rack() -> Config {
    crate::config::parse(RACK, Path::new("rack.yaml")).unwrap()
}

fn nic(id: &str, mac: &str) -> ReportedNic {
    ReportedNic {
        id: id.into(),
        mac: mac.into(),
    }
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// `bare`'s BMC: iDRAC writes MACs upper case; a disabled LOM port reports zeros.
fn bare_hardware() -> Hardware {
    let inv = Inventory {
        id: Some("System.Embedded.1".into()),
        serial: Some("7XJ2KQ3".into()),
        nics: vec![
            nic("NIC.Embedded.1-1-1", "3C:EC:EF:10:00:21"),
            nic("NIC.Embedded.2-1-1", "3C:EC:EF:10:01:21"),
            nic("NIC.Slot.3-1-1", "B8:CE:F6:20:00:21"),
            nic("NIC.Slot.3-2-1", "B8:CE:F6:20:01:21"),
            nic("NIC.Embedded.3-1-1", "00:00:00:00:00:00"),
        ],
        ..Inventory::default()
    };
    let (hw, skipped) = Hardware::from_inventory(&inv);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("NIC.Embedded.3-1-1"), "{skipped:?}");
    hw
}

#[test]
fn a_bmc_report_keeps_each_usable_mac_once() {
    let hw = bare_hardware();
    assert_eq!(hw.nics.len(), 4);
    assert_eq!(hw.nics[0].mac, mac("3c:ec:ef:10:00:21"));
    assert_eq!(hw.system.as_deref(), Some("System.Embedded.1"));
    // The same MAC under two Ids (a port listed as MACAddress of one and Permanent of another).
    let twice = Inventory {
        nics: vec![nic("1", "aa:bb:cc:00:00:01"), nic("2", "AA-BB-CC-00-00-01")],
        ..Inventory::default()
    };
    assert_eq!(Hardware::from_inventory(&twice).0.nics.len(), 1);
}

#[test]
fn ports_get_the_mac_of_the_bmc_nic_their_role_names_and_the_config_wins() {
    let config = rack();
    let hw = bare_hardware();
    let bare = config.node("bare").unwrap();
    let ports = port_macs(&config, bare, Some(&hw));
    assert_eq!(ports["eno1"], mac("3c:ec:ef:10:00:21"));
    assert_eq!(ports["ens1f1"], mac("b8:ce:f6:20:01:21"));
    assert_eq!(ports.len(), 4);
    assert!(port_macs(&config, bare, None).is_empty());
    // `named` gives eno1's MAC itself: that one stands, the rest come from the report.
    let named = config.node("named").unwrap();
    let ports = port_macs(&config, named, Some(&hw));
    assert_eq!(ports["eno1"], mac("3c:ec:ef:10:00:22"));
    assert_eq!(ports["eno2"], mac("3c:ec:ef:10:01:21"));
}

#[test]
fn dhcp_knows_a_bare_node_by_every_recorded_mac_and_a_named_one_by_its_own() {
    let config = rack();
    let hw = bare_hardware();
    assert_eq!(dhcp_macs(config.node("bare").unwrap(), Some(&hw)).len(), 4);
    assert!(dhcp_macs(config.node("bare").unwrap(), None).is_empty());
    assert_eq!(
        dhcp_macs(config.node("named").unwrap(), Some(&hw)),
        vec![mac("3c:ec:ef:10:00:22")]
    );
}

#[test]
fn a_mac_of_another_node_is_a_conflict() {
    let config = rack();
    let hw = bare_hardware();
    let none = HashMap::new();
    assert!(conflicts(&config, "bare", &hw, &none).is_empty());
    // The report already recorded for `bare` is not a clash with itself.
    let mut recorded = HashMap::new();
    recorded.insert("bare".to_string(), hw.clone());
    assert!(conflicts(&config, "bare", &hw, &recorded).is_empty());
    // The same BMC read for another node: every MAC is bare's.
    let clash = conflicts(&config, "named", &hw, &recorded);
    assert_eq!(clash.len(), 4, "{clash:?}");
    assert!(clash[0].contains("node bare's"), "{clash:?}");
    // A MAC the config gives `named`, reported by bare's BMC.
    let mut wrong = hw.clone();
    wrong.nics[0].mac = mac("3c:ec:ef:10:00:22");
    let clash = conflicts(&config, "bare", &wrong, &none);
    assert_eq!(clash.len(), 1);
    assert!(
        clash[0].contains("NIC.Embedded.1-1-1") && clash[0].contains("node named's"),
        "{clash:?}"
    );
}

#[test]
fn a_hardware_report_survives_the_store_as_json() {
    let hw = bare_hardware();
    let json = serde_json::to_string(&hw).unwrap();
    assert_eq!(serde_json::from_str::<Hardware>(&json).unwrap(), hw);
}

#[test]
fn dhcp_answers_a_recorded_mac_once_the_provisioner_takes_the_inventory() {
    use crate::leases::LeaseTable;
    use crate::provision::{BootClient, DhcpAnswer, DhcpRequest, Provisioner};
    let p = Provisioner::new(std::sync::Arc::new(rack()));
    let req = DhcpRequest {
        client: BootClient {
            mac: mac("b8:ce:f6:20:00:21"), // bare's ens1f0: any port may be the one that boots
            arch: Some(7),
            vendor_class: Some("PXEClient:Arch:00007:UNDI:003016".into()),
            ipxe: false,
        },
        relay: None,
        requested: None,
    };
    let leases = LeaseTable::default();
    assert!(matches!(p.dhcp(&req, &leases, 0), DhcpAnswer::Ignore(_)));
    let mut recorded = HashMap::new();
    recorded.insert("bare".to_string(), bare_hardware());
    // named's config MAC stands; a report for it adds nothing.
    recorded.insert("named".to_string(), Hardware::default());
    assert_eq!(p.set_recorded(&recorded), 4);
    match p.dhcp(&req, &leases, 0) {
        DhcpAnswer::Lease(offer) => {
            assert_eq!(offer.address, std::net::Ipv4Addr::new(10, 1, 10, 21));
            assert_eq!(offer.node.as_deref(), Some("bare"));
        }
        DhcpAnswer::Ignore(why) => panic!("ignored: {why}"),
    }
    // Taken back (the inventory changed): unknown again.
    assert_eq!(p.set_recorded(&HashMap::new()), 0);
    assert!(p.node_of(req.client.mac).is_none());
}

#[test]
fn a_bare_nodes_documents_use_the_recorded_macs_and_the_leased_port_first() {
    use crate::install::{Installer, Instance};
    let installer = Installer::new(std::sync::Arc::new(rack())).unwrap();
    let instance = Instance {
        hardware: Some(bare_hardware()),
        boot_mac: Some(mac("3c:ec:ef:10:01:21")),
        ..Instance::new("t", "i")
    };
    let docs = installer.documents("bare", &instance).unwrap();
    // Every bond member found by the MAC its BMC NIC reported, renamed to the role's name.
    for (port, m) in [
        ("eno1", "3c:ec:ef:10:00:21"),
        ("eno2", "3c:ec:ef:10:01:21"),
        ("ens1f0", "b8:ce:f6:20:00:21"),
        ("ens1f1", "b8:ce:f6:20:01:21"),
    ] {
        let block = format!(
            "\"{port}\":\n      match: {{\"macaddress\":\"{m}\"}}\n      set-name: \"{port}\""
        );
        assert!(docs.netplan.contains(&block), "{port}: {}", docs.netplan);
    }
    // The installer's DHCP comes up on the port that leased first (boot0, not optional).
    let boot0 = docs.user_data.find("boot0:").unwrap();
    let leased = docs.user_data.find("3c:ec:ef:10:01:21").unwrap();
    let other = docs.user_data.find("3c:ec:ef:10:00:21").unwrap();
    assert!(boot0 < leased && leased < other, "{}", docs.user_data);
    // Without a report, the netplan can only guess kernel names.
    let bare = installer
        .documents("bare", &Instance::new("t", "i"))
        .unwrap();
    assert!(!bare.netplan.contains("macaddress"), "{}", bare.netplan);
}

/// A rack whose provisioning network is a plain onboard port beside a bond: the common OSISM
/// layout (a 1G LOM for PXE, two 25G ports bonded for the rest). Ubuntu 24.04 names such a LOM
/// `eno8303` on a Dell R650 (its SMBIOS onboard index), which no operator guesses right.
const PLAIN_BOOT: &str = r#"
seed: { interface: eth0, address: 10.1.10.5 }
links:
  - name: eno8303
  - name: bond0
    bond: { members: [ens1f0np0, ens1f1np1], mode: 802.3ad }
zones:
  - { name: mgmt, vlan: 10, subnet: 10.1.10.0/24, link: eno8303, native: true, provisioning: true, roles: [compute] }
  - { name: data, vlan: 40, subnet: 10.1.40.0/24, link: bond0, roles: [compute] }
roles:
  - name: compute
    links: [eno8303, bond0]
    disk: { model: "DELLBOSS VD" }
nodes:
  - name: one
    role: compute
    bmc: { address: 10.1.0.21, driver: manual }
    macs: ["b0:7b:25:00:00:21"]
  - name: two
    role: compute
    bmc: { address: 10.1.0.22, driver: manual }
    macs: ["b0:7b:25:00:00:22", "b0:7b:25:00:01:22"]
  - name: given
    role: compute
    bmc: { address: 10.1.0.23, driver: manual }
    macs: ["b0:7b:25:00:00:23"]
    nics: { eno8303: "b0:7b:25:00:09:23" }
  - name: member
    role: compute
    bmc: { address: 10.1.0.24, driver: manual }
    macs: ["b0:7b:25:00:00:24"]
    nics: { ens1f0np0: "b0:7b:25:00:00:24" }
install:
  user: { name: dragon, ssh_authorized_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPwDi8WXTYb7l5d5XCX4g2I0N8m0HjR5cHgfJsbBJ1pz lab"] }
"#;

#[test]
fn a_plain_boot_link_is_found_by_the_one_mac_that_boots() {
    let config = crate::config::parse(PLAIN_BOOT, Path::new("plain.yaml")).unwrap();
    let ports = |n: &str| port_macs(&config, config.node(n).unwrap(), None);
    assert_eq!(ports("one")["eno8303"], mac("b0:7b:25:00:00:21"));
    assert_eq!(ports("one").len(), 1, "a bond member is no boot link");
    // Two boot MACs: either may be the LOM.
    assert!(ports("two").is_empty());
    // The operator's MAC for the port stands.
    assert_eq!(ports("given")["eno8303"], mac("b0:7b:25:00:09:23"));
    // The boot MAC is a bond member's by the operator's word: not the LOM's too.
    assert!(!ports("member").contains_key("eno8303"));
    // The netplan matches the LOM by MAC and names it as the config does, and `seed check`
    // does not warn about it.
    let installer = crate::install::Installer::new(std::sync::Arc::new(config.clone())).unwrap();
    let docs = installer
        .documents("one", &crate::install::Instance::new("t", "i"))
        .unwrap();
    assert!(
        docs.netplan.contains(
            "\"eno8303\":\n      match: {\"macaddress\":\"b0:7b:25:00:00:21\"}\n      set-name: \"eno8303\""
        ),
        "{}",
        docs.netplan
    );
    let warned = crate::install::ports_without_mac(&config, config.node("one").unwrap(), None);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert_eq!(warned[0].0, "bond0", "{warned:?}");
}
