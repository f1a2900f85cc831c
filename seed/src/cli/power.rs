//! `seed power status|on|off|cycle NODE…|--role R|--all`: a node's power through its driver (Redfish, or
//! QMP for lab machines). One line per node; exit 1 if any failed.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::global::Global;
use super::selection::{Selection, in_parallel};
use crate::power::{self, Outcome, Power, PowerError};

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
    /// How many BMCs are asked at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
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
            Self::On(_) => power.on().map(|o| said(o, "switched on", "on already")),
            Self::Off(OffArgs { graceful: true, .. }) => power
                .shutdown()
                .map(|o| said(o, "asked to shut down", "off already")),
            Self::Off(_) => power.off().map(|o| said(o, "switched off", "off already")),
            Self::Cycle(_) => power.cycle().map(|()| "restarted".to_string()),
        }
    }
}

/// The line for what an action did.
fn said(outcome: Outcome, done: &str, already: &str) -> String {
    match outcome {
        Outcome::Done => done,
        Outcome::Already => already,
    }
    .to_string()
}

pub fn run(global: &Global, cmd: PowerCommand) -> anyhow::Result<ExitCode> {
    let config = global.load_config()?;
    let state_dir = global.state_dir(Some(&config));
    let names = cmd.nodes().which.names(&config)?;
    let nodes: Vec<_> = names.iter().filter_map(|n| config.node(n)).collect();
    let results = in_parallel(&nodes, usize::from(cmd.nodes().parallel), |node| {
        power::controller(node, &state_dir).and_then(|c| cmd.apply(c.as_ref()))
    });
    // A power action is part of the node's history (`seed status NODE`) where a store exists;
    // a status read is not.
    let recorded = !matches!(cmd, PowerCommand::Status(_));
    let mut failed = false;
    for (node, result) in nodes.iter().zip(results) {
        let line = match &result {
            Ok(line) => {
                println!("{}: {line}", node.name);
                line.clone()
            }
            Err(e) => {
                eprintln!("{e}");
                failed = true;
                format!("failed: {}", e.detail())
            }
        };
        if recorded
            && let Err(e) = crate::provision::note_in(&state_dir, &node.name, "power", "cli", &line)
        {
            tracing::warn!(node = %node.name, error = %e, "power action not recorded");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
