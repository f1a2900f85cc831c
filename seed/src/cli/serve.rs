//! `seed serve`: the long-running appliance.
//!
//! For now it opens the state store, registers the configured nodes and waits for a signal; the
//! DHCP, TFTP and HTTP servers join here as they are built, each taking an already-bound socket
//! and the same shutdown signal.

use std::process::ExitCode;

use anyhow::Context;

use super::Global;
use crate::store::Store;

pub fn run(global: &Global) -> anyhow::Result<ExitCode> {
    let config = global.load_config()?;
    let state_dir = global.state_dir(Some(&config));
    let mut store = Store::open(&state_dir)
        .with_context(|| format!("cannot open state in {}", state_dir.display()))?;
    let added = store.register_nodes(config.nodes.iter().map(|n| n.name.as_str()), "config")?;
    store.record_event(
        None,
        "started",
        "serve",
        &format!("config {}", config.source.display()),
    )?;
    tracing::info!(
        store = %store.path().display(),
        nodes = config.nodes.len(),
        new_nodes = added,
        "seed ready; waiting for SIGINT or SIGTERM"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let signal = runtime.block_on(shutdown_signal())?;
    tracing::info!(signal, "shutting down");
    store.record_event(None, "stopped", "serve", signal)?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves with the name of the first of SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
