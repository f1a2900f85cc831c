//! Hidden developer commands, used by the crash tests.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::Global;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Write `count` events, one transaction each, printing every id once it is committed.
    ///
    /// A crash test kills the process part-way and checks that every printed id survived.
    WriteBurst {
        /// How many events (bounded so a runaway test cannot fill the disk).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
    },
}

pub fn run(global: &Global, cmd: DebugCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DebugCommand::WriteBurst { count } => {
            let state_dir = global.state_dir(None);
            let mut store = Store::open(&state_dir)
                .with_context(|| format!("cannot open state in {}", state_dir.display()))?;
            let mut out = std::io::stdout().lock();
            for i in 0..count {
                let id = store.record_event(None, "burst", "debug", &i.to_string())?;
                // Printed only after the commit returned: a printed id is a promise.
                writeln!(out, "{id}")?;
                out.flush()?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
