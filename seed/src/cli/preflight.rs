//! `seed preflight NODE…|--role R|--all`: what each node's BMC reports against what a provision
//! needs ([`crate::preflight`]). A block per node, a line per check; exit 1 if any node would
//! be refused.

use std::process::ExitCode;

use clap::Args;

use super::global::Global;
use super::selection::{Selection, in_parallel};
use crate::preflight::{self, Level, Report};

#[derive(Debug, Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    which: Selection,
    /// How many BMCs are read at once (BMCs take seconds per call; a rack should not).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
}

pub fn run(global: &Global, args: PreflightArgs) -> anyhow::Result<ExitCode> {
    let config = global.load_config()?;
    let state_dir = global.state_dir(Some(&config));
    let names = args.which.names(&config)?;
    let nodes: Vec<_> = names.iter().filter_map(|n| config.node(n)).collect();
    let reports = in_parallel(&nodes, usize::from(args.parallel), |node| {
        preflight::run(node, &state_dir)
    });
    let mut refused = Vec::new();
    for report in reports {
        print!("{}", render(&report));
        if report.refuses() {
            refused.push(report.node.clone());
        }
    }
    println!(
        "{} of {} ready{}",
        nodes.len() - refused.len(),
        nodes.len(),
        if refused.is_empty() {
            String::new()
        } else {
            format!("; refused: {}", refused.join(", "))
        }
    );
    Ok(if refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A node's block: its name, then `level  check  message` per finding.
fn render(report: &Report) -> String {
    let mut out = format!("{}\n", report.node);
    for f in &report.findings {
        out.push_str(&format!(
            "  {:<8} {:<12} {}\n",
            f.level.to_string(),
            f.check,
            f.message
        ));
    }
    if report.at(Level::Error).next().is_some() {
        out.push_str("  -> not ready: `seed provision` refuses it (--no-preflight overrides)\n");
    }
    out
}
