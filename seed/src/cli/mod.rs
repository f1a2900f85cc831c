//! The `seed` command line. Thin: parse arguments, call the library, print.

mod adopt;
mod agent;
mod backup;
mod check;
mod follow;
mod global;
mod images;
mod inventory;
mod lab;
mod power;
mod preflight;
mod progress;
mod provision;
mod registry;
mod render;
mod selection;
mod serve;
mod status;
mod table;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

use global::Global;
pub use global::{Color, DEFAULT_CONFIG};

/// seed turns a rack of bare metal into installed Ubuntu 24.04 nodes: DHCP, TFTP, HTTP,
/// autoinstall and Redfish in one binary, driven by one YAML file.
#[derive(Debug, Parser)]
#[command(name = "seed", version, propagate_version = true, max_term_width = 100)]
#[command(
    after_help = "Start with `seed config example > seed.yaml`, edit it, then `seed check seed.yaml`."
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a config and print its address plan (node x zone -> address, VLAN, link, MTU).
    ///
    /// Every problem is reported at once, each naming the file, line, field and node.
    /// Exits 0 when the config is valid, 1 otherwise.
    Check(check::CheckArgs),
    /// Print a node's autoinstall documents (user-data, meta-data, netplan), or write every node's.
    Render(render::RenderArgs),
    /// Install nodes: preflight, mark, one network boot, power cycle, follow until installed.
    Provision(provision::ProvisionArgs),
    /// Check what a provision depends on, as each node's BMC reports it (Secure Boot, boot
    /// targets, memory, UUID/serial/MACs); exit 1 if a node would be refused.
    Preflight(preflight::PreflightArgs),
    /// Read each node's hardware from its BMC (NICs and MACs, drives, serial, UUID, memory)
    /// and record it: DHCP and the install documents then use the MACs the BMC reported.
    Inventory(inventory::InventoryArgs),
    /// Register and list the images nodes install from.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// The container registry nodes and the manager pull from (`/v2/`): import, list, remove.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Run seed: open the state store and serve until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Switch nodes on, off or through a restart, or show their power (Redfish; QMP in the lab).
    #[command(subcommand)]
    Power(power::PowerCommand),
    /// A virtual rack of QEMU machines that installs through seed (needs root, QEMU, OVMF).
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Show every node and its lifecycle state.
    Status(status::StatusArgs),
    /// Write a consistent copy of the state database to FILE (SQLite's online backup: safe
    /// while `seed serve` runs).
    Backup(backup::BackupArgs),
    /// Replace the state database with a backup (`seed serve` must be stopped; the replaced
    /// store is kept as seed.db.before-restore).
    Restore(backup::RestoreArgs),
    /// Make a discovered (or enlisted) machine a node: add it to the config file by its MAC,
    /// with a name, a role and its BMC; its enlisted inspection becomes the node's.
    Adopt(adopt::AdoptArgs),
    /// seed's agent, run on a node: inspect its hardware, report it to seed.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Config helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the embedded example config (the OSISM reference rack).
    Example,
}

/// Run the CLI with the process's arguments.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Run the CLI with the given arguments (the first is the program name).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    init_logging(cli.global.verbose, cli.global.color.enabled());
    let global = cli.global;
    // Only commands that can create files in the state directory: an image, a registry blob,
    // a new store, a restored one, a backup written there (the package's upgrade). The store's
    // -wal and -shm need nothing: SQLite run as root gives them the database's owner. The
    // server runs as the state's owner already; the lab and the agent keep their own.
    let hand_over = matches!(
        cli.command,
        Command::Images(_)
            | Command::Registry(_)
            | Command::Provision(_)
            | Command::Inventory(_)
            | Command::Adopt(_)
            | Command::Backup(_)
            | Command::Restore(_)
    );
    let result = dispatch(&global, cli.command);
    if hand_over {
        hand_over_state(&global);
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            // Each cause once: a message that already quotes its cause (`cannot read config X:
            // No such file…`, whose source is that same I/O error) is not followed by it again.
            eprintln!("error: {}", crate::error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// After a command run as root: what it created in a state directory that belongs to the
/// service's user goes to that user ([`crate::statedir`]), also when the command failed
/// half-way.
fn hand_over_state(global: &Global) {
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let config = global.optional_config().ok().flatten();
    let dir = global.state_dir(config.as_ref());
    if let Some(owner) = crate::statedir::service_owner(&dir)
        && let Err(e) = crate::statedir::hand_over(&dir, owner)
    {
        eprintln!(
            "warning: cannot give what this command created in {} to its owner (uid {}): {e}; `chown -R {}:{} {}` does",
            dir.display(),
            owner.0,
            owner.0,
            owner.1,
            dir.display()
        );
    }
}

fn dispatch(global: &Global, command: Command) -> anyhow::Result<ExitCode> {
    if !matches!(command, Command::Serve(_) | Command::Lab(_)) {
        quiet_on_broken_pipe();
    }
    match command {
        Command::Check(args) => check::run(global, args),
        Command::Render(args) => render::run(global, args),
        Command::Provision(args) => provision::run(global, args),
        Command::Preflight(args) => preflight::run(global, args),
        Command::Inventory(args) => inventory::run(global, args),
        Command::Images(cmd) => images::run(global, cmd),
        Command::Registry(cmd) => registry::run(global, cmd),
        Command::Serve(args) => serve::run(global, args),
        Command::Status(args) => status::run(global, args),
        Command::Backup(args) => backup::backup(global, args),
        Command::Restore(args) => backup::restore(global, args),
        Command::Adopt(args) => adopt::run(global, args),
        Command::Agent(cmd) => agent::run(cmd),
        Command::Lab(cmd) => lab::run(global, cmd),
        Command::Power(cmd) => power::run(global, cmd),
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A command whose output is cut short (`seed status | head -1`) ends as other Unix tools do when
/// SIGPIPE ends them: silently, with status 141 (128 + SIGPIPE). Rust ignores SIGPIPE, so a
/// print to a closed pipe panics instead; restoring the signal would take `unsafe`, so the panic
/// of the print macros on EPIPE is turned into that exit. Servers are left alone: their
/// clients' broken pipes are errors on sockets, not prints.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn init_logging(verbose: u8, color: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(escaped_fields())
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}

/// How every log field is written: as the default formatter does (`name=value`, the message
/// bare), but through [`crate::net::printable`], so no text in a log line (an enlisted
/// inspection, a request path, a BMC's message: anything from the network) can carry a
/// terminal escape or a CR LF that forges a line of its own. The level colours are the
/// formatter's, outside the fields, and stay.
fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(
        |writer: &mut tracing_subscriber::fmt::format::Writer<'_>,
         field: &tracing::field::Field,
         value: &dyn std::fmt::Debug| {
            let text = crate::net::printable(&format!("{value:?}"));
            if field.name() == "message" {
                write!(writer, "{text}")
            } else {
                write!(writer, "{field}={text}")
            }
        },
    )
    .delimited(" ")
}

/// The command reference (`docs/CLI.md`) as Markdown: every command's `--help`, as clap
/// renders it from the definitions above, so it cannot drift from them. 100 columns and no
/// environment values, whatever the terminal and environment of the one who writes it.
pub fn reference() -> String {
    use clap::CommandFactory;
    fn walk(cmd: &mut clap::Command, path: &str, out: &mut String) {
        let name = if path.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{path} {}", cmd.get_name())
        };
        let mut this = cmd
            .clone()
            .term_width(100)
            .mut_args(|a| a.hide_env_values(true));
        out.push_str(&format!(
            "\n## `{name}`\n\n```text\n{}```\n",
            this.render_long_help()
        ));
        for sub in cmd.get_subcommands_mut() {
            if sub.get_name() != "help" {
                walk(sub, &name, out);
            }
        }
    }
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = String::from(
        "# Command reference\n\n\
         Every `seed` command's `--help`, written from the code (`seed/src/cli/`) by \
         `SEED_UPDATE_DOCS=1 cargo test -p seed-tests --test docs`; that test fails when this \
         page and the code differ. Global options (`--config`, `--state-dir`, `-v`, `--color`) \
         work with every command.\n",
    );
    walk(&mut cmd, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A log line is one line, whatever the network sent: CR LF and escapes in a message or a
    /// field come out escaped (the formatter `seed serve` logs with).
    #[test]
    fn network_text_cannot_forge_a_log_line_or_reach_the_terminal() {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(escaped_fields())
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let forged = "vendor\r\n2026-12-08T00:00:00Z  INFO seed: node1 deployed\u{1b}[2J";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(hostname = %forged, path = forged, "enlisted {forged}");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(
            text.contains(
                "enlisted vendor\\r\\n2026-12-08T00:00:00Z  INFO seed: node1 deployed\\u{1b}[2J"
            ),
            "{text}"
        );
        assert!(text.contains(" hostname=vendor\\r\\n"), "{text}");
        // A Debug-recorded string is quoted and escaped by Debug already, and not twice.
        assert!(text.contains(r#"path="vendor\r\n"#), "{text}");
    }

    #[test]
    fn an_error_names_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let read = config::ConfigError::Read {
            path: "/x.yaml".into(),
            source: io,
        };
        let err = anyhow::Error::new(read).context("lab");
        assert_eq!(
            crate::error_chain(err.as_ref()),
            "lab: cannot read config /x.yaml: entity not found"
        );
        let nested = anyhow::anyhow!("inner").context("outer");
        assert_eq!(crate::error_chain(nested.as_ref()), "outer: inner");
    }
}
