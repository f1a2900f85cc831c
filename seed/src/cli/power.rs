//! `seed power status|on|off|cycle NODE…|--all`: a node's power through its driver (Redfish, or
//! QMP for lab machines). One line per node; exit 1 if any failed.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};

use super::Global;
use crate::power;

#[derive(Debug, Subcommand)]
pub enum PowerCommand {
    /// Whether each node is on.
    Status(Nodes),
    /// Switch nodes on.
    On(Nodes),
    /// Switch nodes off hard.
    Off(Nodes),
    /// Restart nodes from their firmware (power on those that are off).
    Cycle(Nodes),
}

#[derive(Debug, Args)]
pub struct Nodes {
    /// The nodes.
    #[arg(required_unless_present = "all")]
    nodes: Vec<String>,
    /// Every node of the config.
    #[arg(long, conflicts_with = "nodes")]
    all: bool,
}

pub fn run(global: &Global, cmd: PowerCommand) -> anyhow::Result<ExitCode> {
    let config = global.load_config()?;
    let state_dir = global.state_dir(Some(&config));
    let (which, verb) = match &cmd {
        PowerCommand::Status(n) => (n, "status"),
        PowerCommand::On(n) => (n, "on"),
        PowerCommand::Off(n) => (n, "off"),
        PowerCommand::Cycle(n) => (n, "cycle"),
    };
    let names: Vec<String> = if which.all {
        config.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        which.nodes.clone()
    };
    let mut nodes = Vec::new();
    for name in &names {
        match config.node(name) {
            Some(node) => nodes.push(node),
            None => bail!("no node named {name} in {}", config.source.display()),
        }
    }
    let mut failed = false;
    for node in nodes {
        let result = power::controller(node, &state_dir).and_then(|c| match verb {
            "status" => c.status().map(|s| s.to_string()),
            "on" => c.on().map(|()| "switched on".to_string()),
            "off" => c.off().map(|()| "switched off".to_string()),
            _ => c.cycle().map(|()| "restarted".to_string()),
        });
        match result {
            Ok(line) => println!("{}: {line}", node.name),
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
