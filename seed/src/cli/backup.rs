//! `seed backup FILE` and `seed restore FILE`: the state database out and back in.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::global::Global;
use crate::store::{BackupSummary, Store};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Where the backup goes (one SQLite file; written under a temporary name, then renamed).
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file `seed backup` wrote. The store it replaces is kept as seed.db.before-restore.
    file: PathBuf,
}

/// A consistent copy of the store, safe while `seed serve` runs.
pub fn backup(global: &Global, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let config = global.optional_config()?;
    let state_dir = global.state_dir(config.as_ref());
    // As it is: an older server may still run on it (a package upgrade backs up first).
    let store = Store::open_existing_unmigrated(&state_dir)
        .with_context(|| format!("cannot read state in {}", state_dir.display()))?
        .with_context(|| {
            format!(
                "no state in {}: nothing to back up (--state-dir or the config's seed.state_dir names another)",
                state_dir.display()
            )
        })?;
    let summary = store.backup(&args.file).with_context(|| {
        format!(
            "backing up {} to {}",
            store.path().display(),
            args.file.display()
        )
    })?;
    println!(
        "backed up {} to {}",
        store.path().display(),
        describe(&summary)
    );
    Ok(ExitCode::SUCCESS)
}

/// Puts a backup in place of the store; refused while `seed serve` runs on it.
pub fn restore(global: &Global, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let config = global.optional_config()?;
    let state_dir = global.state_dir(config.as_ref());
    let summary = crate::store::restore(&state_dir, &args.file).with_context(|| {
        format!(
            "restoring {} into {}",
            args.file.display(),
            state_dir.display()
        )
    })?;
    println!(
        "restored {} from {}",
        describe(&summary),
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(summary: &BackupSummary) -> String {
    format!(
        "{} (schema {}: {} nodes, {} leases, {} events)",
        summary.path.display(),
        summary.schema_version,
        summary.nodes,
        summary.leases,
        summary.events
    )
}
