//! What a node installs: the `autoinstall` crate's input, built from the config and the plan.
//!
//! The autoinstall crate only renders; the decisions about a node's network live here: which
//! NICs and bonds its role has, which zone is native on which link, which zone carries the
//! default route (the first of the node's zones, in config order, that has a gateway: two
//! default routes would conflict), and where an Open vSwitch bridge takes a provider link.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use autoinstall::{BondIface, Bridge, Ethernet, Iface, Network, NodeContext, Route, User, Vlan};

use crate::config::{Config, Install, Node};
use crate::inventory::Hardware;
use crate::net::MacAddr;
use crate::plan::{self, NodePlan, Plan};

/// Why a node's documents could not be made.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The config has no `install:` section.
    #[error(
        "the config has no `install:` section (operator account, SSH keys); nothing to install with"
    )]
    NoInstallSection,
    /// The template override directory could not be read.
    #[error("cannot read template directory {}: {source}", path.display())]
    TemplatesDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A template is broken.
    #[error(transparent)]
    Template(#[from] autoinstall::Error),
    /// No such node in the config.
    #[error("no node named {0} in the config")]
    UnknownNode(String),
    /// A node's documents did not render.
    #[error("rendering node {node}: {error}")]
    Render {
        /// The node.
        node: String,
        /// What the template said.
        error: autoinstall::Error,
    },
}

/// Renders any node's documents: the templates are loaded and checked once, the plan derived
/// once. `seed check`, `seed render` and the HTTP side all go through it.
pub struct Installer {
    config: Arc<Config>,
    renderer: autoinstall::Renderer,
    plan: Plan,
}

impl Installer {
    /// An installer for `config`; an error if it has no `install:` section or a template is
    /// broken.
    pub fn new(config: Arc<Config>) -> Result<Self, InstallError> {
        let settings = config
            .install
            .as_ref()
            .ok_or(InstallError::NoInstallSection)?;
        Ok(Self {
            renderer: renderer(settings)?,
            plan: plan::derive(&config),
            config,
        })
    }

    /// The documents of node `name` for one provisioning.
    pub fn documents(
        &self,
        name: &str,
        instance: &Instance,
    ) -> Result<autoinstall::Documents, InstallError> {
        let unknown = || InstallError::UnknownNode(name.to_string());
        let config = &self.config;
        let node = config.node(name).ok_or_else(unknown)?;
        let node_plan = self.plan.node(name).ok_or_else(unknown)?;
        let settings = config
            .install
            .as_ref()
            .ok_or(InstallError::NoInstallSection)?;
        let context = node_context(config, settings, node, node_plan, instance);
        self.renderer
            .render(&context)
            .map_err(|error| InstallError::Render {
                node: name.to_string(),
                error,
            })
    }
}

/// Per-provisioning values that do not come from the config.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The node's secret token for its URLs.
    pub token: String,
    /// cloud-init instance id (new on every provisioning).
    pub instance_id: String,
    /// What `seed inventory` recorded from the node's BMC: MACs for ports the config does not
    /// name one for.
    pub hardware: Option<Hardware>,
    /// The MAC the node leased its address with (the port its firmware boots from), when
    /// DHCP has seen it: the installer's network comes up on that port first.
    pub boot_mac: Option<MacAddr>,
}

impl Instance {
    /// An instance without recorded hardware or lease: what `seed check` renders.
    pub fn new(token: impl Into<String>, instance_id: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            instance_id: instance_id.into(),
            hardware: None,
            boot_mac: None,
        }
    }
}

/// The MACs the installer brings its network up on: the configured boot MACs, else the leased
/// one first and then every other recorded one (optional in the template, so a port without a
/// cable does not hold the install).
fn boot_macs(node: &Node, instance: &Instance) -> Vec<String> {
    let mut macs = crate::inventory::dhcp_macs(node, instance.hardware.as_ref());
    if node.macs.is_empty()
        && let Some(leased) = instance.boot_mac.filter(|m| macs.contains(m))
    {
        macs.retain(|m| *m != leased);
        macs.insert(0, leased);
    }
    macs.iter().map(ToString::to_string).collect()
}

/// A renderer with the embedded templates and the operator's overrides from `templates_dir`.
fn renderer(install: &Install) -> Result<autoinstall::Renderer, InstallError> {
    let overrides = match &install.templates_dir {
        Some(dir) => read_overrides(dir)?,
        None => BTreeMap::new(),
    };
    Ok(autoinstall::Renderer::new(&overrides)?)
}

fn read_overrides(dir: &Path) -> Result<BTreeMap<String, String>, InstallError> {
    let err = |source| InstallError::TemplatesDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut overrides = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        overrides.insert(name, std::fs::read_to_string(&path).map_err(err)?);
    }
    Ok(overrides)
}

/// The template context of one node.
fn node_context(
    config: &Config,
    install: &Install,
    node: &Node,
    plan: &NodePlan,
    instance: &Instance,
) -> NodeContext {
    let mut packages = install.packages.clone();
    let ports = crate::inventory::port_macs(config, node, instance.hardware.as_ref());
    let network = network(config, node, plan, &ports);
    if network.bridges.iter().any(|b| b.openvswitch)
        && !packages.iter().any(|p| p == "openvswitch-switch")
    {
        packages.push("openvswitch-switch".into());
    }
    let mut ntp: Vec<String> = Vec::new();
    for zone in config.zones_of(node) {
        for server in &zone.ntp {
            let server = server.to_string();
            if !ntp.contains(&server) {
                ntp.push(server);
            }
        }
    }
    // The operator's words for the disk, spelt the way udev (and so subiquity) sees it.
    let disk = crate::disk::subiquity_match(&node.disk);
    NodeContext {
        hostname: node.name.clone(),
        role: node.role.clone(),
        instance_id: instance.instance_id.clone(),
        seed_url: config.seed.url.clone(),
        node_url: format!("{}/nodes/{}", config.seed.url, instance.token),
        apt_mirror: install.apt_mirror.clone(),
        boot_macs: boot_macs(node, instance),
        console: node.console.clone(),
        user: User {
            name: install.user.name.clone(),
            ssh_authorized_keys: install.user.ssh_authorized_keys.clone(),
            password_hash: install.user.password_hash.clone(),
            uid: install.user.uid,
            gid: install.user.gid,
        },
        disk,
        storage_layout: install.storage_layout.to_string(),
        sizing_policy: install.sizing_policy.map(str::to_string),
        root_bytes: install.root_bytes,
        timezone: install.timezone.clone(),
        locale: install.locale.clone(),
        keyboard_layout: install.keyboard.clone(),
        packages,
        ntp,
        network,
    }
}

/// The ports of `node`'s links that its installed netplan can find only by the kernel's name
/// (no MAC for them in `nics:`, nor recorded by `seed inventory` for a port the role's `ports:`
/// names), by link: bond members and plain NICs. Ubuntu 24.04 names many server ports
/// `ens1f0np0` or `eno12399`; a guessed name then leaves the bond without members and the node
/// unreachable after its first boot, so `seed check` warns about each.
pub fn ports_without_mac(
    config: &Config,
    node: &Node,
    hardware: Option<&Hardware>,
) -> Vec<(String, Vec<String>)> {
    let Some(role) = config.role(&node.role) else {
        return Vec::new();
    };
    let known = crate::inventory::port_macs(config, node, hardware);
    config
        .links
        .iter()
        .filter(|l| role.links.contains(&l.name))
        .filter_map(|link| {
            let ports = match &link.bond {
                Some(bond) => bond.members.clone(),
                None => vec![link.name.clone()],
            };
            let missing: Vec<String> = ports
                .into_iter()
                .filter(|p| !known.contains_key(p))
                .collect();
            (!missing.is_empty()).then(|| (link.name.clone(), missing))
        })
        .collect()
}

/// The node's full netplan as data.
fn network(
    config: &Config,
    node: &Node,
    plan: &NodePlan,
    ports: &BTreeMap<String, MacAddr>,
) -> Network {
    let mut net = Network::default();
    let Some(role) = config.role(&node.role) else {
        return net;
    };
    let iface = |name: &str, mtu: u16| Iface {
        name: name.to_string(),
        mtu: Some(mtu),
        ..Iface::default()
    };
    for link in config.links.iter().filter(|l| role.links.contains(&l.name)) {
        match &link.bond {
            Some(bond) => {
                for member in &bond.members {
                    net.ethernets.push(Ethernet {
                        iface: iface(member, link.mtu),
                        mac: ports.get(member).map(ToString::to_string),
                    });
                }
                let mut parameters = BTreeMap::new();
                parameters.insert("mode".to_string(), bond.mode.into());
                if let Some(rate) = bond.lacp_rate {
                    parameters.insert("lacp-rate".to_string(), rate.into());
                }
                if let Some(policy) = bond.transmit_hash_policy {
                    parameters.insert("transmit-hash-policy".to_string(), policy.into());
                }
                parameters.insert(
                    "mii-monitor-interval".to_string(),
                    bond.mii_monitor_interval.into(),
                );
                net.bonds.push(BondIface {
                    iface: iface(&link.name, link.mtu),
                    members: bond.members.clone(),
                    parameters,
                });
            }
            None => net.ethernets.push(Ethernet {
                iface: iface(&link.name, link.mtu),
                mac: ports.get(&link.name).map(ToString::to_string),
            }),
        }
    }

    let mut default_route_taken = false;
    for attachment in &plan.zones {
        let Some(zone) = config.zone(&attachment.zone) else {
            continue;
        };
        let mut addressing = Iface::default();
        if let Some(addr) = attachment.address {
            addressing
                .addresses
                .push(format!("{addr}/{}", attachment.prefix));
            if let Some(gw) = zone.gateway.filter(|_| !default_route_taken) {
                addressing.routes.push(Route {
                    to: "default".into(),
                    via: gw.to_string(),
                });
                default_route_taken = true;
            }
            addressing.nameservers = zone.dns.iter().map(ToString::to_string).collect();
        }
        // Where the addresses go: a host bridge when the zone asks for one, else the zone's
        // interface (the link itself when native, a VLAN interface when tagged).
        let target = if let Some(bridge) = &zone.bridge {
            if !zone.native {
                net.vlans.push(Vlan {
                    iface: iface(&attachment.interface, zone.mtu),
                    id: zone.vlan,
                    link: zone.link.clone(),
                });
            }
            net.bridges.push(Bridge {
                iface: iface(bridge, zone.mtu),
                interfaces: vec![attachment.interface.clone()],
                openvswitch: true,
            });
            net.bridges.last_mut().map(|b| &mut b.iface)
        } else if zone.native {
            net.bonds
                .iter_mut()
                .map(|b| &mut b.iface)
                .chain(net.ethernets.iter_mut().map(|e| &mut e.iface))
                .find(|i| i.name == zone.link)
        } else {
            net.vlans.push(Vlan {
                iface: iface(&attachment.interface, zone.mtu),
                id: zone.vlan,
                link: zone.link.clone(),
            });
            net.vlans.last_mut().map(|v| &mut v.iface)
        };
        if let Some(target) = target {
            target.addresses.extend(addressing.addresses);
            target.routes.extend(addressing.routes);
            for ns in addressing.nameservers {
                if !target.nameservers.contains(&ns) {
                    target.nameservers.push(ns);
                }
            }
            if zone.native {
                // The native zone's MTU is the link's: validate() refuses one larger.
                target.mtu = Some(target.mtu.unwrap_or(zone.mtu).max(zone.mtu));
            }
        }
    }
    net
}
