//! `seed check`: validate a config and print the derived address plan.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use super::global::Global;
use super::table::Table;
use crate::config::{self, Config, ConfigError};
use crate::install;
use crate::net::Ipv4Net;
use crate::plan::{self, Plan};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config to check (default: --config).
    config: Option<PathBuf>,
    /// Print the plan as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &Global, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let path = args.config.unwrap_or_else(|| global.config_path());
    let config = match config::load(&path) {
        Ok(config) => config,
        Err(ConfigError::Invalid { path, problems }) => {
            let count = problems.len();
            eprintln!(
                "{}",
                ConfigError::Invalid {
                    path: path.clone(),
                    problems
                }
            );
            eprintln!(
                "{}: {count} problem{} found",
                path.display(),
                if count == 1 { "" } else { "s" }
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => {
            eprintln!("{err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let config = std::sync::Arc::new(config);
    let plan = plan::derive(&config);
    // What `seed inventory` recorded, where the config's state directory has a store: MACs a
    // node's BMC reported count as known.
    let recorded = super::global::recorded_hardware(global, &config).unwrap_or_else(|e| {
        eprintln!(
            "{}: warning: recorded inventory not read: {}",
            path.display(),
            crate::error_chain(e.as_ref())
        );
        Default::default()
    });
    // With an install section, every node's documents must render: a broken template override
    // is found here, not when a node asks for its user-data.
    if config.install.is_some() {
        let rendered =
            install::Installer::new(std::sync::Arc::clone(&config)).and_then(|installer| {
                config.nodes.iter().try_for_each(|node| {
                    let instance = install::Instance {
                        hardware: recorded.get(&node.name).cloned(),
                        ..install::Instance::new("check", format!("{}-check", node.name))
                    };
                    installer.documents(&node.name, &instance).map(drop)
                })
            });
        if let Err(err) = rendered {
            eprintln!("{}: install documents: {err}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&PlanJson::new(&config, &plan))?
        );
    } else {
        print!("{}", render(&config, &plan));
    }
    // Valid, but fragile on real hardware: ports found only by a guessed kernel name.
    for node in &config.nodes {
        let hardware = recorded.get(&node.name);
        if node.macs.is_empty() && hardware.is_none_or(|h| h.nics.is_empty()) {
            eprintln!(
                "{}: nodes[{}].macs: warning: no MAC known: DHCP recognises the node only after `seed inventory {}` reads its NICs from the BMC (or name its boot MAC in macs:)",
                path.display(),
                node.name,
                node.name
            );
        }
        let ports = install::ports_without_mac(&config, node, hardware);
        if ports.is_empty() {
            continue;
        }
        let list: Vec<String> = ports
            .iter()
            .map(|(link, ports)| {
                if ports.len() == 1 && ports[0] == *link {
                    link.clone()
                } else {
                    format!("{link} ({})", ports.join(", "))
                }
            })
            .collect();
        eprintln!(
            "{}: nodes[{}].nics: warning: no MAC for {}: the installed netplan finds these ports by kernel name only, and where Ubuntu names one otherwise (ens1f0np0, eno12399) its bond or address stays down; name each port's MAC in nics: (or its BMC NIC in the role's ports: and run `seed inventory`)",
            path.display(),
            node.name,
            list.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable plan: the seed, the zones (the guide's VLAN table), then node x zone.
fn render(config: &Config, plan: &Plan) -> String {
    let s = &config.seed;
    let mut out = format!(
        "seed {} on {} at {} (DHCP {}, TFTP {}, HTTP {}), state in {}\n\n",
        s.address,
        s.interface,
        s.url,
        s.ports.dhcp,
        s.ports.tftp,
        s.ports.http,
        s.state_dir.display()
    );
    let mut zones = Table::new(&[
        "ZONE", "VLAN", "SUBNET", "GATEWAY", "LINK", "TAGGING", "MTU", "ROLES",
    ]);
    for z in &config.zones {
        let mut name = z.name.clone();
        if z.provisioning {
            name.push_str(" (pxe)");
        } else if z.relayed {
            name.push_str(" (pxe, relayed)");
        }
        zones.row(vec![
            name,
            z.vlan.to_string(),
            z.subnet.to_string(),
            z.gateway.map_or_else(|| "-".into(), |g| g.to_string()),
            z.link.clone(),
            if z.native { "native" } else { "tagged" }.into(),
            z.mtu.to_string(),
            z.roles.join(","),
        ]);
    }
    out.push_str(&zones.render());
    out.push('\n');
    let mut nodes = Table::new(&[
        "NODE",
        "ROLE",
        "BMC",
        "ZONE",
        "VLAN",
        "INTERFACE",
        "MTU",
        "ADDRESS",
    ]);
    for n in &plan.nodes {
        for a in &n.zones {
            nodes.row(vec![
                n.name.clone(),
                n.role.clone(),
                n.bmc.to_string(),
                a.zone.clone(),
                a.vlan.to_string(),
                a.interface.clone(),
                a.mtu.to_string(),
                a.address.map_or_else(
                    || "(no host address)".into(),
                    |ip| format!("{ip}/{}", a.prefix),
                ),
            ]);
        }
    }
    out.push_str(&nodes.render());
    out.push_str(&format!(
        "\n{}: valid, {} nodes in {} zones\n",
        config.source.display(),
        config.nodes.len(),
        config.zones.len()
    ));
    out
}

#[derive(Serialize)]
struct PlanJson<'a> {
    seed: SeedJson<'a>,
    zones: Vec<ZoneJson<'a>>,
    nodes: Vec<NodeJson<'a>>,
}

#[derive(Serialize)]
struct SeedJson<'a> {
    interface: &'a str,
    address: std::net::Ipv4Addr,
    url: &'a str,
    dhcp_port: u16,
    tftp_port: u16,
    http_port: u16,
    state_dir: &'a std::path::Path,
}

#[derive(Serialize)]
struct ZoneJson<'a> {
    name: &'a str,
    vlan: u16,
    subnet: Ipv4Net,
    gateway: Option<std::net::Ipv4Addr>,
    dns: &'a [std::net::Ipv4Addr],
    ntp: &'a [std::net::Ipv4Addr],
    mtu: u16,
    link: &'a str,
    native: bool,
    provisioning: bool,
    relayed: bool,
    host_addresses: bool,
    roles: &'a [String],
    discovery_pool: Option<config::Pool>,
}

#[derive(Serialize)]
struct NodeJson<'a> {
    #[serde(flatten)]
    plan: &'a plan::NodePlan,
    power_driver: config::PowerDriver,
    console: Option<&'a str>,
    disk: &'a config::DiskMatch,
}

impl<'a> PlanJson<'a> {
    fn new(config: &'a Config, plan: &'a Plan) -> Self {
        let s = &config.seed;
        Self {
            seed: SeedJson {
                interface: &s.interface,
                address: s.address,
                url: &s.url,
                dhcp_port: s.ports.dhcp,
                tftp_port: s.ports.tftp,
                http_port: s.ports.http,
                state_dir: &s.state_dir,
            },
            zones: config
                .zones
                .iter()
                .map(|z| ZoneJson {
                    name: &z.name,
                    vlan: z.vlan,
                    subnet: z.subnet,
                    gateway: z.gateway,
                    dns: &z.dns,
                    ntp: &z.ntp,
                    mtu: z.mtu,
                    link: &z.link,
                    native: z.native,
                    provisioning: z.provisioning,
                    relayed: z.relayed,
                    host_addresses: z.host_addresses,
                    roles: &z.roles,
                    discovery_pool: z.discovery_pool,
                })
                .collect(),
            nodes: plan
                .nodes
                .iter()
                .zip(&config.nodes)
                .map(|(p, n)| NodeJson {
                    plan: p,
                    power_driver: n.bmc.driver,
                    console: n.console.as_deref(),
                    disk: &n.disk,
                })
                .collect(),
        }
    }
}
