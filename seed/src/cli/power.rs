//! `seed power status|on|off|cycle NODE…|--role R|--all`: a node's power through its driver (Redfish, or
//! QMP for lab machines). One line per node; exit 1 if any failed.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{Global, Selection};
use crate::power::{self, Power, PowerError};

#[derive(Debug, Subcommand)]
pub enum PowerCommand {
    /// Whether each node is on.
    Status(Nodes),
    /// Switch nodes on.
    On(Nodes),
    /// Switch nodes off hard (--graceful: ask the OS to shut down).
    Off(OffArgs),
    /// Restart nodes from their firmware (power on those that are off).
    Cycle(Nodes),
}

#[derive(Debug, Args)]
pub struct Nodes {
    #[command(flatten)]
    which: Selection,
}

#[derive(Debug, Args)]
pub struct OffArgs {
    #[command(flatten)]
    nodes: Nodes,
    /// Ask the OS to shut down (Redfish GracefulShutdown, the ACPI button in the lab) instead
    /// of cutting power; returns once asked.
    #[arg(long)]
    graceful: bool,
}

impl PowerCommand {
    fn nodes(&self) -> &Nodes {
        match self {
            Self::Status(n) | Self::On(n) | Self::Cycle(n) => n,
            Self::Off(off) => &off.nodes,
        }
    }

    /// Does it to one node; what happened, for a line of output.
    fn apply(&self, power: &dyn Power) -> Result<String, PowerError> {
        match self {
            Self::Status(_) => power.status().map(|s| s.to_string()),
            Self::On(_) => power.on().map(|()| "switched on".to_string()),
            Self::Off(OffArgs { graceful: true, .. }) => {
                power.shutdown().map(|()| "asked to shut down".to_string())
            }
            Self::Off(_) => power.off().map(|()| "switched off".to_string()),
            Self::Cycle(_) => power.cycle().map(|()| "restarted".to_string()),
        }
    }
}

pub fn run(global: &Global, cmd: PowerCommand) -> anyhow::Result<ExitCode> {
    let config = global.load_config()?;
    let state_dir = global.state_dir(Some(&config));
    let names = cmd.nodes().which.names(&config)?;
    let mut failed = false;
    for name in &names {
        let Some(node) = config.node(name) else {
            continue;
        };
        match power::controller(node, &state_dir).and_then(|c| cmd.apply(c.as_ref())) {
            Ok(line) => println!("{name}: {line}"),
            Err(e) => {
                eprintln!("{e}");
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
