//! `seed provision`: mark nodes for installation and network-boot them, through the same
//! decision as the API's `POST /api/v1/nodes/<name>/provision`.
//!
//! Marking is the part every power driver shares: the node gets a new secret token and
//! instance id and the state `provisioning`, and its next network boot installs it. Then its
//! power driver starts it from its firmware: `qemu` (lab machines) over QMP; `redfish` comes
//! with the Redfish work; `manual` nodes are network-booted by hand.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::follow::{self, Until};
use super::{Global, select_nodes};
use crate::config::{Config, Firmware, PowerDriver};
use crate::power::{self, PowerError};
use crate::provision::{NodeError, Nodes, Provisioner};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Nodes to install.
    #[arg(required_unless_present = "all")]
    nodes: Vec<String>,
    /// Every node of the config.
    #[arg(long, conflicts_with = "nodes")]
    all: bool,
    /// Reinstall nodes that are installed, deployed or failed (new token and instance id).
    #[arg(long)]
    force: bool,
    /// Only mark the nodes; leave their power alone (they are network-booted another way).
    /// Implies --no-wait.
    #[arg(long)]
    no_power: bool,
    /// Return once the nodes are started instead of following them until installed.
    #[arg(long)]
    no_wait: bool,
    /// How many nodes install at once (a rack pulls its images through one management link).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// Seconds one node may take from its start until installed; then it is failed.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

pub fn run(global: &Global, args: ProvisionArgs) -> anyhow::Result<ExitCode> {
    let config = Arc::new(global.load_config()?);
    let names = select_nodes(&config, &args.nodes, args.all)?;
    let state_dir = global.state_dir(Some(&config));
    let nodes = open_nodes(&config, &state_dir)?;
    if !(args.no_wait || args.no_power) {
        let never = AtomicBool::new(false);
        let plan = follow::Plan {
            nodes: names
                .iter()
                .map(|n| {
                    let label = config.node(n).map_or(String::new(), |node| {
                        format!(
                            "{}, {}",
                            firmware_name(node.firmware),
                            driver_name(node.bmc.driver)
                        )
                    });
                    (n.clone(), label)
                })
                .collect(),
            how: How {
                source: "cli",
                force: args.force,
                power: true,
            },
            until: Until::Installed,
            parallel: usize::from(args.parallel),
            timeout: Duration::from_secs(args.timeout),
            interrupted: &never,
            on_done: &|_| {},
        };
        let ok = follow::run(&nodes, &config, &state_dir, &plan)?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut failed = false;
    for name in &names {
        let how = How {
            source: "cli",
            force: args.force,
            power: !args.no_power,
        };
        match start(&nodes, &config, &state_dir, name, &how) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn firmware_name(f: Firmware) -> &'static str {
    match f {
        Firmware::Uefi => "uefi",
        Firmware::Bios => "bios",
    }
}

fn driver_name(d: PowerDriver) -> &'static str {
    match d {
        PowerDriver::Redfish => "redfish",
        PowerDriver::Qemu => "qemu",
        PowerDriver::Manual => "manual",
    }
}

/// The decisions over the store of `state_dir`.
pub(crate) fn open_nodes(config: &Arc<Config>, state_dir: &Path) -> anyhow::Result<Nodes> {
    let store = Store::open(state_dir)
        .with_context(|| format!("cannot open state in {}", state_dir.display()))?;
    Ok(Nodes::new(
        Arc::new(Provisioner::new(Arc::clone(config))),
        store,
        images::Catalogue::new(state_dir.join("images")),
    ))
}

/// How [`start`] provisions a node.
pub(crate) struct How {
    /// Who asks (`cli`, `lab`), for the events.
    pub source: &'static str,
    /// Reinstall a finished node.
    pub force: bool,
    /// Start it from its firmware through its power driver.
    pub power: bool,
}

/// Provision one node and network-boot it; a line for the operator.
pub(crate) fn start(
    nodes: &Nodes,
    config: &Config,
    state_dir: &Path,
    name: &str,
    how: &How,
) -> anyhow::Result<String> {
    let node = config
        .node(name)
        .with_context(|| format!("no node named {name} in {}", config.source.display()))?;
    let p = nodes
        .provision(name, how.source, how.force)
        .map_err(|e: NodeError| anyhow::anyhow!("{name}: {e}"))?;
    if !p.started {
        return Ok(format!(
            "{name}: already {} (instance {}); not started again",
            p.state, p.instance_id
        ));
    }
    if !how.power {
        return Ok(format!(
            "{name}: provisioning (instance {}); power left alone (--no-power)",
            p.instance_id
        ));
    }
    let power = match power::controller(node, state_dir) {
        Ok(controller) => {
            controller
                .network_boot_once()
                .and_then(|()| controller.cycle())
                .with_context(|| format!("{name}: provisioning, but it could not be started"))?;
            "started from its firmware (network boot once, power cycle)".to_string()
        }
        Err(PowerError::Unsupported { why, .. }) => why,
        Err(e) => return Err(e.into()),
    };
    Ok(format!(
        "{name}: provisioning (instance {}); {power}",
        p.instance_id
    ))
}
