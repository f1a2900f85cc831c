//! The `seed` command line. Thin: parse arguments, call the library, print.

mod check;
mod follow;
mod images;
mod inventory;
mod lab;
mod power;
mod preflight;
mod progress;
mod provision;
mod render;
mod serve;
mod status;
mod table;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};

/// Default config location on a seed host.
pub const DEFAULT_CONFIG: &str = "/etc/seed/seed.yaml";

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

#[derive(Debug, Args)]
struct Global {
    /// The config file [default: /etc/seed/seed.yaml].
    #[arg(long, short = 'c', global = true, env = "SEED_CONFIG")]
    config: Option<PathBuf>,
    /// Where the state database lives (overrides `seed.state_dir` of the config).
    #[arg(long, global = true, env = "SEED_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Colour in log output: auto (when standard error is a terminal and NO_COLOR is unset),
    /// always, never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, env = "SEED_COLOR")]
    color: Color,
}

/// When log lines carry ANSI colour codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    /// When standard error, where the log goes, is a terminal and `NO_COLOR` is not set: a log
    /// redirected to a file (`seed serve 2>log`, the lab's `seed.log`) stays plain text.
    Auto,
    /// Always (a pager that understands them, `less -R`).
    Always,
    /// Never.
    Never,
}

impl Color {
    fn enabled(self) -> bool {
        use std::io::IsTerminal;
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
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
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            // Each cause once: a message that already quotes its cause (`cannot read config X:
            // No such file…`, whose source is that same I/O error) is not followed by it again.
            eprintln!("error: {}", crate::error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = cli.global;
    if !matches!(cli.command, Command::Serve(_) | Command::Lab(_)) {
        quiet_on_broken_pipe();
    }
    match cli.command {
        Command::Check(args) => check::run(&global, args),
        Command::Render(args) => render::run(&global, args),
        Command::Provision(args) => provision::run(&global, args),
        Command::Preflight(args) => preflight::run(&global, args),
        Command::Inventory(args) => inventory::run(&global, args),
        Command::Images(cmd) => images::run(&global, cmd),
        Command::Serve(args) => serve::run(&global, args),
        Command::Status(args) => status::run(&global, args),
        Command::Lab(cmd) => lab::run(&global, cmd),
        Command::Power(cmd) => power::run(&global, cmd),
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
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .try_init();
}

impl Global {
    /// The config file: the one given, else the default location.
    fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    fn load_config(&self) -> anyhow::Result<Config> {
        load_config(&self.config_path())
    }

    /// The config when one was given or the default file exists; commands that can work
    /// without one (status) use this. A config that was named but is missing is an error.
    fn optional_config(&self) -> anyhow::Result<Option<Config>> {
        if self.config.is_none() && !Path::new(DEFAULT_CONFIG).exists() {
            return Ok(None);
        }
        self.load_config().map(Some)
    }

    fn state_dir(&self, config: Option<&Config>) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| config.map(|c| c.seed.state_dir.clone()))
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR))
    }
}

/// Which nodes a command acts on: names, `--role`, or `--all`.
#[derive(Debug, Args)]
struct Selection {
    /// The nodes.
    #[arg(required_unless_present_any = ["all", "role"])]
    nodes: Vec<String>,
    /// Every node of this role (repeatable).
    #[arg(long, conflicts_with = "all")]
    role: Vec<String>,
    /// Every node of the config.
    #[arg(long, conflicts_with = "nodes")]
    all: bool,
}

impl Selection {
    /// The nodes, in config order for `--role`/`--all`, each checked to exist.
    fn names(&self, config: &Config) -> anyhow::Result<Vec<String>> {
        if self.all {
            return Ok(config.nodes.iter().map(|n| n.name.clone()).collect());
        }
        for role in &self.role {
            if !config.roles.iter().any(|r| &r.name == role) {
                anyhow::bail!(
                    "no role named {role} in {} (roles: {})",
                    config.source.display(),
                    config
                        .roles
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        let mut names: Vec<String> = Vec::new();
        for name in &self.nodes {
            if config.node(name).is_none() {
                anyhow::bail!("no node named {name} in {}", config.source.display());
            }
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        for role in &self.role {
            let members: Vec<&str> = config
                .nodes
                .iter()
                .filter(|n| &n.role == role)
                .map(|n| n.name.as_str())
                .collect();
            if members.is_empty() {
                anyhow::bail!("role {role} has no nodes in {}", config.source.display());
            }
            for name in members {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }
}

/// `f` over `items` on up to `parallel` threads (BMCs take seconds per call; a rack's worth
/// should not add up), the results in the items' order.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    parallel: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    use std::sync::Mutex;
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = Mutex::new(0usize);
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, items.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = {
                        let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                        *next += 1;
                        *next - 1
                    };
                    let Some(item) = items.get(i) else { break };
                    let result = f(item);
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .filter_map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// What `seed inventory` recorded for the config's nodes, from the state directory's store;
/// empty where there is none yet.
fn recorded_hardware(
    global: &Global,
    config: &Config,
) -> anyhow::Result<std::collections::HashMap<String, crate::inventory::Hardware>> {
    let state_dir = global.state_dir(Some(config));
    let Some(store) = crate::store::Store::open_existing(&state_dir)
        .map_err(anyhow::Error::new)
        .map_err(|e| e.context(format!("cannot read state in {}", state_dir.display())))?
    else {
        return Ok(Default::default());
    };
    Ok(store
        .inventories()?
        .into_iter()
        .filter(|(node, _)| config.node(node).is_some())
        .map(|(node, (_, hardware))| (node, hardware))
        .collect())
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    match config::load(path) {
        Ok(config) => Ok(config),
        // "cannot read config X: why" says it all; "config X is not usable" would name X twice.
        Err(e @ config::ConfigError::Read { .. }) => Err(e.into()),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("config {} is not usable", path.display())))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

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

    #[test]
    fn in_parallel_keeps_the_order_and_the_bound() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<u32> = (0..20).collect();
        let out = in_parallel(&items, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(in_parallel(&Vec::<u32>::new(), 4, |i| *i).is_empty());
    }
}
