//! `seed adopt`: a machine seed discovered (and, with `seed.enlist`, inspected) becomes a node.
//! The node is added to the config file, which stays the source of truth (MAAS keeps its
//! machines in a database; seed's rack is the file an operator reviews and versions), and the
//! enlisted inspection becomes the node's in the store. The machine is named by its MAC, or by
//! its BMC: seed asks the BMC (Redfish) for the system's NICs and takes the one it discovered.

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::global::Global;
use crate::agent::inspect::BootMode;
use crate::config::edit::{NewNode, add_node};
use crate::config::{self, Config};
use crate::net::MacAddr;
use crate::store::{Discovered, Store};

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The discovered machine's MAC (`seed status` lists them). Without it, seed asks the BMC
    /// (`--driver redfish`) which NICs the system has and takes the one it discovered.
    mac: Option<MacAddr>,
    /// The node's host name.
    #[arg(long)]
    name: String,
    /// Its role.
    #[arg(long)]
    role: String,
    /// Its BMC's IPv4 address: the last octet is the node's address in every zone.
    #[arg(long)]
    bmc: Ipv4Addr,
    /// How seed controls its power.
    #[arg(long, value_parser = ["redfish", "qemu", "manual"], default_value = "redfish")]
    driver: String,
    /// The Redfish service's URL when it is not `https://<bmc>` (a port, a proxy).
    #[arg(long)]
    endpoint: Option<String>,
    /// Which system, when the BMC manages several: its Id, UUID or serial number.
    #[arg(long)]
    system: Option<String>,
    /// The BMC user.
    #[arg(long)]
    username: Option<String>,
    /// The environment variable seed reads the BMC password from.
    #[arg(long, conflicts_with = "password_file")]
    password_env: Option<String>,
    /// The file seed reads the BMC password from.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Print the node as it would be added; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(global: &Global, args: AdoptArgs) -> anyhow::Result<ExitCode> {
    let path = global.config_path();
    let config = global.load_config()?;
    let state_dir = global.state_dir(Some(&config));
    let mut store = Store::open_existing(&state_dir)
        .with_context(|| format!("cannot read state in {}", state_dir.display()))?
        .with_context(|| {
            format!(
                "no state in {} yet: seed has discovered nothing",
                state_dir.display()
            )
        })?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut node = NewNode {
        name: args.name.clone(),
        role: args.role.clone(),
        mac: args.mac,
        bmc: args.bmc,
        driver: args.driver.clone(),
        endpoint: args.endpoint.clone(),
        system: args.system.clone(),
        username: args.username.clone(),
        password: match (&args.password_env, &args.password_file) {
            (Some(var), _) => Some(("env", var.clone())),
            (None, Some(file)) => Some(("file", file.display().to_string())),
            (None, None) => None,
        },
        bios: false,
        comment: String::new(),
    };
    let mac = match args.mac {
        Some(mac) => mac,
        None => match by_bmc(&text, &path, &node, &store, &state_dir)? {
            Ok(mac) => mac,
            Err(code) => return Ok(code),
        },
    };
    if let Some(owner) = config.nodes.iter().find(|n| n.macs.contains(&mac)) {
        anyhow::bail!("{mac} is already node {}'s", owner.name);
    }
    let Some((found, inspection)) = store.discovered_one(mac)? else {
        anyhow::bail!(
            "{mac} is not among the machines seed discovered (seed status lists them); a machine seed never saw is added to {} by hand",
            path.display()
        );
    };
    // Its firmware: what the agent saw, else what its PXE client said (option 93: 0 is BIOS).
    node.bios = match &inspection {
        Some(i) => i.firmware.mode == BootMode::Bios,
        None => found.arch == Some(0),
    };
    let seen = match &inspection {
        Some(i) => format!("enlisted: {}", crate::net::printable(&i.summary())),
        None => "discovered in DHCP, not inspected".to_string(),
    };
    node.mac = Some(mac);
    node.comment = format!("seed adopt {mac} ({seen})");
    let Some(changed) = checked(&text, &path, &node)? else {
        return Ok(ExitCode::FAILURE);
    };
    if args.dry_run {
        print!("{}", &changed[common_prefix(&text, &changed)..]);
        return Ok(ExitCode::SUCCESS);
    }
    replace_file(&path, &changed)?;
    let detail = format!(
        "{mac} adopted as {} (role {}, BMC {}); {seen}",
        args.name, args.role, args.bmc
    );
    let adopted = store.adopt(mac, &args.name, &detail)?;
    println!(
        "{}: added node {} ({mac}, role {}, BMC {}{}){}",
        path.display(),
        args.name,
        args.role,
        args.bmc,
        if node.bios { ", firmware bios" } else { "" },
        match adopted {
            Some(a) if a.inspection => "; its inspection is the node's (seed status NAME)",
            _ => "",
        }
    );
    println!("a running seed serve takes it on reload (systemctl reload seed, or SIGHUP)");
    Ok(ExitCode::SUCCESS)
}

/// `text` with `node` added, checked as a whole config: a taken name, an unknown role or a BMC
/// address another node has is printed with the file and line, and `None` returned, before
/// anything is written.
fn checked(text: &str, path: &Path, node: &NewNode) -> anyhow::Result<Option<String>> {
    let changed = add_node(text, node).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    match config::parse(&changed, path) {
        Ok(_) => Ok(Some(changed)),
        Err(e) => {
            eprintln!("{} cannot be added; nothing was changed:", node.name);
            eprintln!("{e}");
            Ok(None)
        }
    }
}

/// The discovered MAC of the system behind `node`'s BMC: the node is tried in the config
/// without MACs (a Redfish node may leave them out), its BMC read as `seed inventory` reads
/// it, and the most recently seen discovered MAC among the system's NICs taken.
fn by_bmc(
    text: &str,
    path: &Path,
    node: &NewNode,
    store: &Store,
    state_dir: &Path,
) -> anyhow::Result<Result<MacAddr, ExitCode>> {
    if node.driver != "redfish" {
        anyhow::bail!(
            "without a MAC seed asks the node's BMC for its NICs, which needs --driver redfish"
        );
    }
    let Some(trial) = checked(text, path, node)? else {
        return Ok(Err(ExitCode::FAILURE));
    };
    let trial: Config = config::parse(&trial, path)?;
    let candidate = trial
        .node(&node.name)
        .context("the node is not in the config it was added to")?;
    let inventory = crate::power::controller(candidate, state_dir)
        .and_then(|c| c.inventory())
        .map_err(|e| anyhow::anyhow!("{}", e))?;
    let reported: Vec<MacAddr> = inventory
        .macs()
        .into_iter()
        .filter_map(MacAddr::from_reported)
        .collect();
    let discovered: Vec<Discovered> = store.discovered()?;
    match discovered.iter().find(|d| reported.contains(&d.mac)) {
        Some(d) => {
            println!(
                "the BMC at {} reports {}; {} was discovered",
                node.bmc,
                reported
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                d.mac
            );
            Ok(Ok(d.mac))
        }
        None => anyhow::bail!(
            "the BMC at {} reports {}, none of which seed discovered (seed status lists what it did)",
            node.bmc,
            if reported.is_empty() {
                "no NICs".to_string()
            } else {
                reported
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
    }
}

/// The length of what `a` and `b` begin with alike, at a line start.
fn common_prefix(a: &str, b: &str) -> usize {
    let same = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    b[..same].rfind('\n').map_or(0, |i| i + 1)
}

/// Writes `text` to `path` whole or not at all: a temporary file beside it (its mode kept),
/// synced, renamed over it, the directory synced.
fn replace_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().context("the config path names no file")?;
    let tmp = dir.join(format!(".{}.seed-adopt", name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
