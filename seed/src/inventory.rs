//! What a node's BMC reports about its hardware, as `seed inventory` records it in the store:
//! the system's identity, memory, NICs (the BMC's Id and MAC of each port) and drives.
//!
//! A rack config may then name only a node's BMC address and role: DHCP recognises the node by
//! every recorded MAC, and the installed netplan finds each bond member by the MAC of the BMC
//! port its role names in `ports:` (`eno1: NIC.Embedded.1-1-1`), so Ubuntu's kernel names
//! (`eno8303`, `ens1f0np0`) cannot strand a bond. A MAC in the config (`macs:`, `nics:`)
//! always wins over a recorded one: the operator's word is checked by preflight, not replaced.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::config::{Config, Node};
use crate::disk::ReportedDisk;
use crate::net::MacAddr;
use crate::power::Inventory;

/// A node's hardware as its BMC reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    /// The system's Id at its BMC.
    pub system: Option<String>,
    /// The system's UUID (SMBIOS; also what PXE firmware sends as option 97).
    pub uuid: Option<String>,
    /// The chassis serial number (service tag).
    pub serial: Option<String>,
    /// Installed memory in GiB.
    pub memory_gib: Option<f64>,
    /// Its NICs, in the BMC's order.
    pub nics: Vec<Nic>,
    /// Its drives and volumes.
    pub disks: Vec<ReportedDisk>,
}

/// One NIC port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// The BMC's Id for it (`NIC.Integrated.1-1-1`, `1`).
    pub id: String,
    /// Its MAC.
    pub mac: MacAddr,
}

impl Hardware {
    /// The hardware facts of a controller's report. MACs the BMC writes in any common form are
    /// kept; the all-zero and group addresses some BMCs report for ports without one, and
    /// anything that is no MAC, are left out and returned, to be said.
    pub fn from_inventory(inv: &Inventory) -> (Self, Vec<String>) {
        let mut nics: Vec<Nic> = Vec::new();
        let mut skipped = Vec::new();
        for reported in &inv.nics {
            match MacAddr::from_reported(&reported.mac) {
                Some(mac) if !nics.iter().any(|n| n.mac == mac) => nics.push(Nic {
                    id: reported.id.clone(),
                    mac,
                }),
                Some(_) => {}
                None => skipped.push(format!("{} ({:?})", reported.id, reported.mac)),
            }
        }
        let hardware = Self {
            system: inv.id.clone(),
            uuid: inv.uuid.clone(),
            serial: inv.serial.clone(),
            memory_gib: inv.memory_gib,
            nics,
            disks: inv.disks.clone(),
        };
        (hardware, skipped)
    }

    /// Every recorded MAC.
    pub fn macs(&self) -> impl Iterator<Item = MacAddr> + '_ {
        self.nics.iter().map(|n| n.mac)
    }
}

/// The MAC of each port (bond member or plain NIC) of `node`'s links that seed knows: from
/// `nics:` in the config, else the recorded NIC whose BMC Id the role's `ports:` names, else,
/// for a plain boot link, the node's one boot MAC.
pub fn port_macs(config: &Config, node: &Node, hw: Option<&Hardware>) -> BTreeMap<String, MacAddr> {
    let mut macs = BTreeMap::new();
    let Some(role) = config.role(&node.role) else {
        return macs;
    };
    for port in role_ports(config, &node.role) {
        let recorded = || {
            let id = role.ports.get(&port)?;
            hw?.nics.iter().find(|n| n.id == *id).map(|n| n.mac)
        };
        if let Some(mac) = node.nics.get(&port).copied().or_else(recorded) {
            macs.insert(port, mac);
        }
    }
    // A plain boot link is the NIC that network-booted: with one boot MAC, that is its MAC (as
    // MAAS knows a machine's boot interface by its PXE MAC), so the installed netplan finds it
    // whatever Ubuntu calls it (`eno8303`, `enp65s0f0np0`) instead of by a guessed name. Only
    // a gap is filled: a bond's members cannot be told apart by it, and a MAC the operator or
    // the BMC gave a port stands.
    if let [boot] = node.macs[..] {
        let plain = config
            .links
            .iter()
            .any(|l| l.name == role.boot_link && l.bond.is_none());
        if plain
            && role.links.contains(&role.boot_link)
            && !macs.contains_key(&role.boot_link)
            && !macs.values().any(|m| *m == boot)
        {
            macs.insert(role.boot_link.clone(), boot);
        }
    }
    macs
}

/// The ports of a role's links: members of its bonds and its plain NICs, in file order.
pub fn role_ports(config: &Config, role: &str) -> Vec<String> {
    let Some(role) = config.role(role) else {
        return Vec::new();
    };
    config
        .links
        .iter()
        .filter(|l| role.links.contains(&l.name))
        .flat_map(|l| match &l.bond {
            Some(bond) => bond.members.clone(),
            None => vec![l.name.clone()],
        })
        .collect()
}

/// The MACs that identify `node` in DHCP: its configured boot MACs, else every recorded one
/// (any port may be the one the firmware boots from).
pub fn dhcp_macs(node: &Node, hw: Option<&Hardware>) -> Vec<MacAddr> {
    if !node.macs.is_empty() {
        return node.macs.clone();
    }
    hw.map(|hw| hw.macs().collect()).unwrap_or_default()
}

/// Why `hardware`, reported by `node`'s BMC, cannot be recorded for it: a MAC that belongs to
/// another node (in the config, or recorded for it). Two nodes behind one BMC address, or a
/// BMC address typed twice, would otherwise give one machine two nodes' installs.
pub fn conflicts(
    config: &Config,
    node: &str,
    hardware: &Hardware,
    recorded: &HashMap<String, Hardware>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for nic in &hardware.nics {
        let configured = config.nodes.iter().find(|n| {
            n.name != node && (n.macs.contains(&nic.mac) || n.nics.values().any(|m| *m == nic.mac))
        });
        let other = configured.map(|n| n.name.as_str()).or_else(|| {
            recorded
                .iter()
                .find(|(name, hw)| name.as_str() != node && hw.macs().any(|m| m == nic.mac))
                .map(|(name, _)| name.as_str())
        });
        if let Some(other) = other {
            problems.push(format!(
                "NIC {} reports MAC {}, which is node {other}'s: is bmc.address right?",
                nic.id, nic.mac
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests;
