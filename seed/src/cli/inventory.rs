//! `seed inventory NODE…|--role R|--all`: read each node's hardware from its BMC (NICs and
//! their MACs, drives, serial, UUID, memory) and record it in the store ([`crate::inventory`]).
//! A block per node says what was found, which port each NIC is and which drive the install
//! rule selects; exit 1 if a node could not be read or recorded.

use std::process::ExitCode;

use clap::Args;

use super::global::Global;
use super::selection::{Selection, in_parallel};
use crate::config::{Config, Node};
use crate::disk::{self, Selection as DiskSelection};
use crate::inventory::{self, Hardware};
use crate::power::{self, PowerError};
use crate::provision::inventory::Inventories;

#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    which: Selection,
    /// How many BMCs are read at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
}

/// What reading one node gave.
enum Read {
    /// The hardware, and the NICs left out for want of a usable MAC.
    Hardware(Hardware, Vec<String>),
    /// Its controller has nothing to read (`manual`, or a driver without an inventory).
    Nothing(String),
    /// The BMC could not be read.
    Failed(String),
}

pub fn run(global: &Global, args: InventoryArgs) -> anyhow::Result<ExitCode> {
    let config = global.load_config()?;
    let state_dir = global.state_dir(Some(&config));
    let names = args.which.names(&config)?;
    let nodes: Vec<&Node> = names.iter().filter_map(|n| config.node(n)).collect();
    let mut inventories = Inventories::open(&state_dir)?;
    let reads = in_parallel(&nodes, usize::from(args.parallel), |node| {
        read(node, &state_dir)
    });
    let mut failed = Vec::new();
    let mut taken = 0;
    // Recorded one after the other, so two nodes of this run that report the same MAC (one
    // BMC address typed twice) are caught like a clash with an earlier run.
    for (node, read) in nodes.iter().zip(reads) {
        match read {
            Read::Failed(why) => {
                println!("{}\n  ERROR    {why}\n  -> not recorded", node.name);
                failed.push(node.name.clone());
            }
            Read::Nothing(why) => println!("{}\n  nothing to read ({why})", node.name),
            Read::Hardware(hardware, skipped) => {
                let line = summary(&hardware);
                let clashes = inventories.record(&config, &node.name, hardware.clone(), &line)?;
                print!("{}", render(&config, node, &hardware, &skipped, &clashes));
                if clashes.is_empty() {
                    taken += 1;
                } else {
                    failed.push(node.name.clone());
                }
            }
        }
    }
    println!(
        "{taken} of {} recorded{}",
        nodes.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; not recorded: {}", failed.join(", "))
        }
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read(node: &Node, state_dir: &std::path::Path) -> Read {
    let inventory = power::controller(node, state_dir).and_then(|c| c.inventory());
    match inventory {
        Err(PowerError::Unsupported { why, .. }) => Read::Nothing(why),
        Err(e) => Read::Failed(e.detail()),
        Ok(inv) => {
            let (hardware, skipped) = Hardware::from_inventory(&inv);
            if hardware.nics.is_empty() && hardware.disks.is_empty() && hardware.system.is_none() {
                Read::Nothing(format!("driver {} reports no hardware", node.bmc.driver))
            } else {
                Read::Hardware(hardware, skipped)
            }
        }
    }
}

/// The event's detail: what was recorded, in one line.
fn summary(hw: &Hardware) -> String {
    let mut parts = vec![format!(
        "{} NIC{}, {} drive{}",
        hw.nics.len(),
        if hw.nics.len() == 1 { "" } else { "s" },
        hw.disks.len(),
        if hw.disks.len() == 1 { "" } else { "s" }
    )];
    if let Some(serial) = &hw.serial {
        parts.push(format!("serial {serial}"));
    }
    if let Some(uuid) = &hw.uuid {
        parts.push(format!("uuid {uuid}"));
    }
    format!("BMC reports {}", parts.join(", "))
}

/// A node's block: identity, a line per NIC (with the port it is) and per drive (marking the
/// install disk), then what was left out or refused.
fn render(
    config: &Config,
    node: &Node,
    hw: &Hardware,
    skipped: &[String],
    clashes: &[String],
) -> String {
    let mut head = vec![];
    if let Some(system) = &hw.system {
        head.push(format!("system {system}"));
    }
    if let Some(serial) = &hw.serial {
        head.push(format!("serial {serial}"));
    }
    if let Some(uuid) = &hw.uuid {
        head.push(format!("uuid {uuid}"));
    }
    if let Some(gib) = hw.memory_gib {
        head.push(format!("{gib} GiB"));
    }
    let mut out = format!("{}: {}\n", node.name, head.join(", "));
    let ports = inventory::port_macs(config, node, Some(hw));
    for nic in &hw.nics {
        let mut port: Vec<String> = ports
            .iter()
            .filter(|(_, mac)| **mac == nic.mac)
            .map(|(name, _)| name.clone())
            .collect();
        if node.macs.contains(&nic.mac) {
            port.push("(boot)".into());
        }
        out.push_str(&format!(
            "  nic      {:<24} {}  {}\n",
            nic.id,
            nic.mac,
            if port.is_empty() {
                "-".into()
            } else {
                port.join(" ")
            }
        ));
    }
    let install = match disk::select_reported(&node.disk, &hw.disks) {
        DiskSelection::One(d) => Some(d.name.clone()),
        _ => None,
    };
    for d in &hw.disks {
        let mark = if install.as_deref() == Some(d.name.as_str()) {
            "  <- install disk"
        } else {
            ""
        };
        out.push_str(&format!("  drive    {d}{mark}\n"));
    }
    let unmapped: Vec<String> = inventory::role_ports(config, &node.role)
        .into_iter()
        .filter(|p| !ports.contains_key(p))
        .collect();
    if !unmapped.is_empty() && !hw.nics.is_empty() {
        out.push_str(&format!(
            "  warning  no MAC for port {}: name the BMC's NIC Id in the role's ports: (or the MAC in nics:)\n",
            unmapped.join(", ")
        ));
    }
    for s in skipped {
        out.push_str(&format!("  warning  NIC {s} left out: no usable MAC\n"));
    }
    for c in clashes {
        out.push_str(&format!("  ERROR    {c}\n"));
    }
    if !clashes.is_empty() {
        out.push_str("  -> not recorded\n");
    }
    out
}
