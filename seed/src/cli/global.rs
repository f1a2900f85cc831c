//! The options every command takes: the config file, the state directory, logging.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::{self, Config};

/// Default config location on a seed host.
pub const DEFAULT_CONFIG: &str = "/etc/seed/seed.yaml";

#[derive(Debug, Args)]
pub(super) struct Global {
    /// The config file [default: /etc/seed/seed.yaml].
    #[arg(long, short = 'c', global = true, env = "SEED_CONFIG")]
    pub(super) config: Option<PathBuf>,
    /// Where the state database lives (overrides `seed.state_dir` of the config).
    #[arg(long, global = true, env = "SEED_STATE_DIR")]
    pub(super) state_dir: Option<PathBuf>,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub(super) verbose: u8,
    /// Colour in log output: auto (when standard error is a terminal and NO_COLOR is unset),
    /// always, never.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, env = "SEED_COLOR")]
    pub(super) color: Color,
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
    pub(super) fn enabled(self) -> bool {
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

impl Global {
    /// The config file: the one given, else the default location.
    pub(super) fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG))
    }

    pub(super) fn load_config(&self) -> anyhow::Result<Config> {
        load_config(&self.config_path())
    }

    /// The config when one was given or the default file exists; commands that can work
    /// without one (status) use this. A config that was named but is missing is an error.
    pub(super) fn optional_config(&self) -> anyhow::Result<Option<Config>> {
        if self.config.is_none() && !Path::new(DEFAULT_CONFIG).exists() {
            return Ok(None);
        }
        self.load_config().map(Some)
    }

    pub(super) fn state_dir(&self, config: Option<&Config>) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| config.map(|c| c.seed.state_dir.clone()))
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR))
    }
}

/// What `seed inventory` recorded for the config's nodes, from the state directory's store;
/// empty where there is none yet.
pub(super) fn recorded_hardware(
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

pub(super) fn load_config(path: &Path) -> anyhow::Result<Config> {
    match config::load(path) {
        Ok(config) => Ok(config),
        // "cannot read config X: why" says it all; "config X is not usable" would name X twice.
        Err(e @ config::ConfigError::Read { .. }) => Err(e.into()),
        Err(e) => {
            Err(anyhow::Error::new(e).context(format!("config {} is not usable", path.display())))
        }
    }
}
