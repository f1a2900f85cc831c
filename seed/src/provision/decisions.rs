//! The decisions themselves: what a DHCP client gets ([`Decisions::dhcp`], the family-neutral
//! [`Decisions::boot`]), what a node's iPXE script does ([`Decisions::boot_script`]), and the
//! [`Provisioner`] that holds the decisions of the current config.

use super::sightings;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock};

use ipxe::ClientArch;

use crate::config::{Config, Firmware, IpxePolicy, Zone};
use crate::inventory::Hardware;
use crate::leases::LeaseTable;
use crate::lifecycle::NodeState;
use crate::net::MacAddr;
use crate::plan::{self, Plan};

/// What a network-booting client says about itself, in any DHCP family: what the boot
/// decision ([`Decisions::boot`]) needs. DHCPv6 carries the same facts in options 1, 61 and 16
/// (RFC 5970) as DHCPv4 does in chaddr, 93 and 60.
#[derive(Debug, Clone)]
pub struct BootClient {
    /// Client hardware address.
    pub mac: MacAddr,
    /// Client system architecture (DHCPv4 option 93, DHCPv6 option 61).
    pub arch: Option<u16>,
    /// Vendor class (`PXEClient:Arch:00007:…`, `HTTPClient:…`).
    pub vendor_class: Option<String>,
    /// iPXE asks: user class "iPXE" (option 77) or iPXE's own option 175 present.
    pub ipxe: bool,
}

/// What a DHCPv4 client told us about itself.
#[derive(Debug, Clone)]
pub struct DhcpRequest {
    /// Who asks and how it boots.
    pub client: BootClient,
    /// giaddr, when a relay forwarded the request.
    pub relay: Option<Ipv4Addr>,
    /// The address the client asks for (option 50, or ciaddr when renewing).
    pub requested: Option<Ipv4Addr>,
}

/// What the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpAnswer {
    /// Nothing; the reason is logged and counted.
    Ignore(Unanswered),
    /// An address, with boot instructions for network-booting clients.
    Lease(Offer),
}

/// Why a DHCP client gets no answer: logged, and counted per kind in `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    /// A relay (giaddr or link selection) outside every zone seed boots.
    #[error("relayed through {0}, which is in neither the provisioning zone nor a relayed one")]
    ForeignRelay(Ipv4Addr),
    /// A node the plan gives no address in the zone it asks from.
    #[error("node {node} has no address in zone {zone}")]
    NoAddress {
        /// The node.
        node: String,
        /// The zone it asked from.
        zone: String,
    },
    /// A machine outside the config, in a zone without a discovery pool.
    #[error("unknown MAC and zone {0} has no discovery pool")]
    NoPool(String),
    /// The zone's discovery pool has no free address.
    #[error("discovery pool {start}-{end} of zone {zone} is full")]
    PoolFull {
        /// The zone.
        zone: String,
        /// First address of the pool.
        start: Ipv4Addr,
        /// Last address of the pool.
        end: Ipv4Addr,
    },
    /// Firmware seed has no iPXE binary for.
    #[error("{0} network boot: seed carries no binary for it")]
    NoBinary(ClientArch),
    /// proxyDHCP: a machine that is not a configured node.
    #[error("unknown MAC: proxyDHCP answers configured nodes only")]
    NotANode,
    /// proxyDHCP: a client that does not network-boot.
    #[error("not a network-booting client; its DHCP server answers it")]
    NotBooting,
}

impl Unanswered {
    /// Every kind, in `/metrics` order.
    pub const KINDS: [&'static str; 7] = [
        "foreign_relay",
        "no_address",
        "no_pool",
        "pool_full",
        "no_binary",
        "not_a_node",
        "not_booting",
    ];

    /// The kind, as `/metrics` labels it (an index into [`Self::KINDS`]).
    pub fn kind(&self) -> usize {
        match self {
            Self::ForeignRelay(_) => 0,
            Self::NoAddress { .. } => 1,
            Self::NoPool(_) => 2,
            Self::PoolFull { .. } => 3,
            Self::NoBinary(_) => 4,
            Self::NotANode => 5,
            Self::NotBooting => 6,
        }
    }
}

/// An address and what comes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The client's address.
    pub address: Ipv4Addr,
    /// The node it belongs to, if known.
    pub node: Option<String>,
    /// The zone it is served from (the provisioning zone, or the relayed zone of giaddr).
    pub zone: String,
    /// Subnet mask of the zone.
    pub netmask: Ipv4Addr,
    /// The zone's gateway.
    pub router: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// NTP servers (option 42): nodes with a wrong clock fail apt.
    pub ntp: Vec<Ipv4Addr>,
    /// Seed's address (server identifier).
    pub server: Ipv4Addr,
    /// Lease time in seconds.
    pub lease_secs: u32,
    /// How to boot, for clients that network-boot.
    pub boot: Option<Boot>,
}

/// Boot instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// PXE firmware: fetch `file` over TFTP from `server` (DHCPv4 siaddr, where UEFI ignores
    /// option 66; a `tftp://` URL in DHCPv6 option 59).
    Tftp {
        /// The TFTP server.
        server: IpAddr,
        /// The iPXE binary.
        file: String,
    },
    /// UEFI HTTP boot: fetch this URL; the answer echoes `HTTPClient` in option 60.
    Http {
        /// The URL of the EFI binary.
        url: String,
    },
    /// iPXE is running: fetch this script. Never an iPXE binary again (that loops forever).
    Script {
        /// The node's iPXE script URL.
        url: String,
    },
}

/// What a node's iPXE script does, decided from its lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootScript {
    /// Serve the installer (`attempt` counts from 1).
    Install {
        /// The node.
        node: String,
        /// Which serving of the installer this is.
        attempt: u32,
    },
    /// The node may only install under seed's own iPXE and another one asked: chainload
    /// seed's binary over TFTP (it asks for the script again). Not an attempt.
    Chain {
        /// The node.
        node: String,
        /// The seed binary to load (`undionly.kpxe`, `snponly.efi`).
        binary: &'static str,
        /// The iPXE that asked (its `${net0/chip}`).
        chip: String,
    },
    /// Boot the local disk; the reason is shown on the console and logged.
    LocalDisk(String),
    /// The installer was served `seed.lifecycle.install_attempts` times without finishing: mark the node
    /// failed and boot the local disk.
    GiveUp {
        /// The node.
        node: String,
    },
    /// A machine seed does not know, with `seed.enlist` on: boot `agent_image` to inspect and
    /// enlist it (unless it was enlisted already: the store knows).
    Enlist {
        /// The image seed's agent boots from.
        agent_image: String,
    },
}

/// Which iPXE asks for a script: what it says about itself in the script URL's query, which
/// iPXE fills in from the settings named in the URL DHCP handed it.
#[derive(Debug, Clone, Default)]
pub struct IpxeClient {
    /// `${net0/chip}`: the driver of its network device (`undionly` for seed's BIOS binary,
    /// the NIC's own driver, e.g. `virtio-net`, for a ROM).
    pub chip: Option<String>,
    /// `${platform}`: `pcbios` or `efi`.
    pub platform: Option<String>,
}

impl IpxeClient {
    /// The seed binary to chainload and the foreign chip, when this iPXE is not seed's build.
    /// An iPXE that did not expand the settings (or another client) is taken as it is: a
    /// chainload that cannot tell whether it worked would loop.
    fn foreign(&self, firmware: Firmware) -> Option<(&'static str, &str)> {
        let chip = self
            .chip
            .as_deref()
            .filter(|c| !c.is_empty() && !c.contains('$'))?;
        let efi = match self.platform.as_deref() {
            Some("efi") => true,
            Some("pcbios") => false,
            _ => firmware == Firmware::Uefi,
        };
        // seed's BIOS binary drives the NIC through the ROM's UNDI API (chip `undionly`); its
        // UEFI one through the firmware's SNP protocol (chip `SNP`, or `NII` on UNDI-only NICs).
        let (binary, own): (&'static str, &[&str]) = if efi {
            ("snponly.efi", &["SNP", "NII"])
        } else {
            ("undionly.kpxe", &["undionly"])
        };
        (!own.contains(&chip)).then_some((binary, chip))
    }
}

/// The decisions of the config `seed serve` runs with now: a [`Decisions`] that a reload
/// (SIGHUP) replaces whole. Each caller takes the current one ([`Self::now`]) and decides with
/// it, so one request never sees half of two configs.
pub struct Provisioner {
    current: RwLock<Arc<Decisions>>,
    /// The inventory last taken, so a new config's decisions know the recorded MACs too.
    inventories: std::sync::Mutex<HashMap<String, Hardware>>,
    /// Boots and addresses the DHCP server saw.
    sightings: std::sync::Mutex<sightings::Sightings>,
}

impl Provisioner {
    /// Decisions over a validated config.
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            current: RwLock::new(Arc::new(Decisions::new(config))),
            inventories: std::sync::Mutex::default(),
            sightings: std::sync::Mutex::default(),
        }
    }

    /// What the DHCP server saw of the nodes (it writes, HTTP reads).
    pub fn sightings(&self) -> std::sync::MutexGuard<'_, sightings::Sightings> {
        self.sightings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a request from `peer` comes from the machine that is `node` booting from `mac`:
    /// from the address seed's DHCP leases it (its plan address in a zone it boots from: the
    /// provisioning zone or a relayed one), or in proxyDHCP mode from the address its last
    /// REQUEST named (see [`sightings`]). `Err` says what was expected, for the event.
    pub fn from_node(&self, node: &str, mac: MacAddr, peer: IpAddr) -> Result<(), String> {
        let decisions = self.now();
        let mut expected: Vec<Ipv4Addr> = if decisions.config.seed.dhcp.proxy {
            Vec::new()
        } else {
            decisions.boot_addresses(node)
        };
        if let Some(proxied) = self.sightings().proxied_address(mac) {
            expected.push(proxied);
        }
        let from = sightings::requester_v4(peer);
        if from.is_some_and(|ip| expected.contains(&ip)) {
            return Ok(());
        }
        let expected = if expected.is_empty() {
            "none known yet: seed saw no DHCP REQUEST of it".to_string()
        } else {
            expected
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(format!(
            "asked from {}, which is not {node}'s address ({expected})",
            peer.to_canonical()
        ))
    }

    /// The decisions of the current config.
    pub fn now(&self) -> Arc<Decisions> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Decide from `config` from now on (a reload); the recorded MACs carry over.
    pub fn replace(&self, config: Arc<Config>) {
        let next = Decisions::new(config);
        next.set_recorded(
            &self
                .inventories
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
    }

    /// The current config.
    pub fn config(&self) -> Arc<Config> {
        self.now().shared_config()
    }

    /// The current config, shared.
    pub fn shared_config(&self) -> Arc<Config> {
        self.config()
    }

    /// The configured node that boots from `mac`, if any.
    pub fn node_of(&self, mac: MacAddr) -> Option<crate::config::Node> {
        self.now().node_of(mac).cloned()
    }

    /// See [`Decisions::set_recorded`]; kept for the next config too.
    pub fn set_recorded(&self, inventories: &HashMap<String, Hardware>) -> usize {
        inventories.clone_into(
            &mut self
                .inventories
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.now().set_recorded(inventories)
    }

    /// See [`Decisions::dhcp`].
    pub fn dhcp(&self, req: &DhcpRequest, leases: &LeaseTable, now_ms: i64) -> DhcpAnswer {
        self.now().dhcp(req, leases, now_ms)
    }

    /// See [`Decisions::boot_script`].
    pub fn boot_script(
        &self,
        mac: MacAddr,
        state: Option<NodeState>,
        attempts: u32,
        disk_written: bool,
        client: &IpxeClient,
    ) -> BootScript {
        self.now()
            .boot_script(mac, state, attempts, disk_written, client)
    }

    /// See [`Decisions::proxy`].
    pub fn proxy(&self, client: &BootClient) -> Result<Boot, Unanswered> {
        self.now().proxy(client)
    }
}

/// The DHCP and boot decisions for one config version (see [`Provisioner`]).
pub struct Decisions {
    config: Arc<Config>,
    plan: Plan,
    by_mac: HashMap<MacAddr, usize>,
    /// MACs `seed inventory` recorded for nodes the config gives none: read on the DHCP path,
    /// replaced whole when the store's inventory changes.
    recorded: RwLock<HashMap<MacAddr, usize>>,
    /// Serve snponly.efi instead of ipxe.efi to UEFI.
    snp: bool,
}

impl Decisions {
    /// Decisions over a validated config.
    pub fn new(config: Arc<Config>) -> Self {
        let plan = plan::derive(&config);
        let mut by_mac = HashMap::new();
        for (i, node) in config.nodes.iter().enumerate() {
            for mac in &node.macs {
                by_mac.insert(*mac, i);
            }
        }
        Self {
            config,
            plan,
            by_mac,
            recorded: RwLock::default(),
            snp: false,
        }
    }

    /// The configured node that boots from `mac`, if any.
    pub fn node_of(&self, mac: MacAddr) -> Option<&crate::config::Node> {
        self.index_of(mac).map(|i| &self.config.nodes[i])
    }

    /// The index of the node `mac` belongs to: by the config's MACs, else by recorded ones.
    fn index_of(&self, mac: MacAddr) -> Option<usize> {
        self.by_mac.get(&mac).copied().or_else(|| {
            self.recorded
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&mac)
                .copied()
        })
    }

    /// Takes the MACs `seed inventory` recorded: a node the config gives no MAC is recognised
    /// by every MAC its BMC reported. A config MAC always wins; returns how many MACs are
    /// recognised through the inventory.
    pub fn set_recorded(&self, inventories: &HashMap<String, Hardware>) -> usize {
        let mut recorded = HashMap::new();
        for (i, node) in self.config.nodes.iter().enumerate() {
            if !node.macs.is_empty() {
                continue;
            }
            for mac in crate::inventory::dhcp_macs(node, inventories.get(&node.name)) {
                if !self.by_mac.contains_key(&mac) {
                    recorded.entry(mac).or_insert(i);
                }
            }
        }
        let count = recorded.len();
        *self
            .recorded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = recorded;
        count
    }

    /// The config decisions are made from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The addresses seed's DHCP leases to `node`: its plan address in each zone it can boot
    /// from (the provisioning zone, relayed zones).
    pub fn boot_addresses(&self, node: &str) -> Vec<Ipv4Addr> {
        let Some(plan) = self.plan.node(node) else {
            return Vec::new();
        };
        self.config
            .zones
            .iter()
            .filter(|z| z.boots())
            .filter_map(|z| plan.zone(&z.name).and_then(|a| a.address))
            .collect()
    }

    /// The config, shared.
    pub fn shared_config(&self) -> Arc<Config> {
        Arc::clone(&self.config)
    }

    /// What a DHCP client gets. `leases` is only read (for discovery-pool addresses).
    pub fn dhcp(&self, req: &DhcpRequest, leases: &LeaseTable, now_ms: i64) -> DhcpAnswer {
        let Some(zone) = self.zone_for(req.relay) else {
            return DhcpAnswer::Ignore(Unanswered::ForeignRelay(
                req.relay.unwrap_or(Ipv4Addr::UNSPECIFIED),
            ));
        };
        let (address, node) = match self.node_of(req.client.mac) {
            Some(node) => {
                let address = self
                    .plan
                    .node(&node.name)
                    .and_then(|p| p.zone(&zone.name))
                    .and_then(|a| a.address);
                match address {
                    Some(a) => (a, Some(node.name.clone())),
                    None => {
                        return DhcpAnswer::Ignore(Unanswered::NoAddress {
                            node: node.name.clone(),
                            zone: zone.name.clone(),
                        });
                    }
                }
            }
            None => match &zone.discovery_pool {
                None => {
                    return DhcpAnswer::Ignore(Unanswered::NoPool(zone.name.clone()));
                }
                Some(pool) => match leases.allocate(req.client.mac, pool, req.requested, now_ms) {
                    Some(a) => (a, None),
                    None => {
                        return DhcpAnswer::Ignore(Unanswered::PoolFull {
                            zone: zone.name.clone(),
                            start: pool.start,
                            end: pool.end,
                        });
                    }
                },
            },
        };
        let boot = match self.boot(&req.client) {
            Ok(boot) => boot,
            Err(reason) => return DhcpAnswer::Ignore(reason),
        };
        DhcpAnswer::Lease(Offer {
            address,
            node,
            zone: zone.name.clone(),
            netmask: zone.subnet.netmask(),
            router: zone.gateway,
            dns: zone.dns.clone(),
            ntp: zone.ntp.clone(),
            server: self.config.seed.address,
            lease_secs: self.config.seed.dhcp.lease_secs,
            boot,
        })
    }

    /// What the iPXE script of the machine with `mac` does, given its node's state, how often
    /// the installer was served to it and which iPXE asks. Never installs a machine that is not
    /// provisioning.
    pub fn boot_script(
        &self,
        mac: MacAddr,
        state: Option<NodeState>,
        attempts: u32,
        disk_written: bool,
        client: &IpxeClient,
    ) -> BootScript {
        let Some(node) = self.node_of(mac) else {
            if let Some(agent_image) = &self.config.seed.enlist {
                return BootScript::Enlist {
                    agent_image: agent_image.clone(),
                };
            }
            return BootScript::LocalDisk(format!(
                "{mac} is not a configured node; nothing is installed on it"
            ));
        };
        let name = node.name.clone();
        match state {
            // Its installer began writing the disk: whatever happened since (a lost installed
            // callback, a reboot at the end), serving the installer again would wipe a disk
            // nobody asked to wipe. The operator's `--force` starts a new provisioning.
            Some(s) if s.is_under_way() && disk_written => BootScript::LocalDisk(format!(
                "{name} is {s} and its installer wrote the disk; not installed again without seed provision --force"
            )),
            // Installing: the installer rebooted mid-way (or the node was reset). Provisioning
            // again: the installer never started (a kernel that did not download). Either way
            // serve it again, bounded, so a node that cannot install does not loop forever.
            Some(s)
                if s.is_under_way() && attempts < self.config.seed.lifecycle.install_attempts =>
            {
                if node.ipxe == IpxePolicy::Seed
                    && let Some((binary, chip)) = client.foreign(node.firmware)
                {
                    return BootScript::Chain {
                        node: name,
                        binary,
                        chip: chip.to_string(),
                    };
                }
                BootScript::Install {
                    node: name,
                    attempt: attempts + 1,
                }
            }
            Some(s) if s.is_under_way() => BootScript::GiveUp { node: name },
            Some(s @ (NodeState::Installed | NodeState::Deployed)) => {
                BootScript::LocalDisk(format!("{name} is {s}"))
            }
            Some(s) => BootScript::LocalDisk(format!("{name} is {s}, not provisioning")),
            None => {
                BootScript::LocalDisk(format!("{name} is not registered yet, not provisioning"))
            }
        }
    }

    /// proxyDHCP (`seed.dhcp.proxy`): boot information only, for a network-booting client of a
    /// known node; the address comes from the site's own DHCP server. Unknown machines are left
    /// alone: beside a foreign server, seed must not boot what it does not own.
    pub fn proxy(&self, client: &BootClient) -> Result<Boot, Unanswered> {
        if self.index_of(client.mac).is_none() {
            return Err(Unanswered::NotANode);
        }
        self.boot(client)?.ok_or(Unanswered::NotBooting)
    }

    /// The zone a request is served from: the boot zone (provisioning or relayed) holding
    /// giaddr when relayed, else the provisioning zone (the one seed's interface is on). A relay
    /// in any other zone is not answered: its clients would get addresses in a network that is
    /// nobody's boot network.
    fn zone_for(&self, relay: Option<Ipv4Addr>) -> Option<&Zone> {
        match relay {
            None => Some(self.config.provisioning_zone()),
            Some(giaddr) => self
                .config
                .zones
                .iter()
                .find(|z| z.boots() && z.subnet.contains(giaddr)),
        }
    }

    /// How `client` boots, whichever DHCP family it asked in: `None` when it does not
    /// network-boot (an installer or installed system asking for an address).
    pub fn boot(&self, client: &BootClient) -> Result<Option<Boot>, Unanswered> {
        let req = client;
        let url = &self.config.seed.url;
        // iPXE first, by user class or option 175 and never by option 60/93 alone: a ROM iPXE
        // and a chainloaded undionly.kpxe look the same there, and handing iPXE the iPXE
        // binary again loops forever.
        if req.ipxe {
            return Ok(Some(Boot::Script {
                // iPXE expands the settings in the filename before fetching it: the script
                // learns which iPXE asks (a ROM or seed's own binary).
                url: format!(
                    "{url}/boot.ipxe?mac={}&chip=${{net0/chip}}&platform=${{platform}}",
                    req.mac
                ),
            }));
        }
        let class = req.vendor_class.as_deref().unwrap_or_default();
        let pxe = class.starts_with("PXEClient");
        let http = class.starts_with("HTTPClient");
        if !pxe && !http {
            // The installer or an installed system: an address, nothing to boot.
            return Ok(None);
        }
        // Old PXE ROMs send no option 93; they are BIOS.
        let firmware = ClientArch::from_arch(req.arch.unwrap_or(0));
        let Some(binary) = firmware.binary(self.snp) else {
            return Err(Unanswered::NoBinary(firmware));
        };
        if firmware.is_http() || http {
            Ok(Some(Boot::Http {
                url: format!("{url}/ipxe/{binary}"),
            }))
        } else {
            Ok(Some(Boot::Tftp {
                server: IpAddr::V4(self.config.seed.address),
                file: binary.to_string(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn provisioner() -> Provisioner {
        let config = crate::config::parse(crate::config::EXAMPLE, Path::new("x.yaml")).unwrap();
        Provisioner::new(Arc::new(config))
    }

    fn req(mac: &str, arch: Option<u16>, class: Option<&str>, ipxe: bool) -> DhcpRequest {
        DhcpRequest {
            client: BootClient {
                mac: mac.parse().unwrap(),
                arch,
                vendor_class: class.map(str::to_string),
                ipxe,
            },
            relay: None,
            requested: None,
        }
    }

    fn offer(answer: DhcpAnswer) -> Offer {
        match answer {
            DhcpAnswer::Lease(o) => o,
            DhcpAnswer::Ignore(why) => panic!("ignored: {why}"),
        }
    }

    const CMP3: &str = "3c:ec:ef:10:00:23";

    #[test]
    fn a_known_node_gets_its_reserved_address_and_the_binary_for_its_firmware() {
        let p = provisioner();
        let leases = LeaseTable::default();
        let uefi = offer(p.dhcp(
            &req(
                CMP3,
                Some(7),
                Some("PXEClient:Arch:00007:UNDI:003016"),
                false,
            ),
            &leases,
            0,
        ));
        assert_eq!(uefi.address, Ipv4Addr::new(10, 1, 10, 23));
        assert_eq!(uefi.node.as_deref(), Some("cmp3"));
        assert_eq!(uefi.netmask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(uefi.ntp, vec![Ipv4Addr::new(10, 1, 10, 1)]);
        assert_eq!(
            uefi.boot,
            Some(Boot::Tftp {
                server: IpAddr::V4(Ipv4Addr::new(10, 1, 10, 5)),
                file: "ipxe.efi".into()
            })
        );
        let bios = offer(p.dhcp(
            &req(
                CMP3,
                Some(0),
                Some("PXEClient:Arch:00000:UNDI:002001"),
                false,
            ),
            &leases,
            0,
        ));
        assert!(matches!(bios.boot, Some(Boot::Tftp { file, .. }) if file == "undionly.kpxe"));
        let http = offer(p.dhcp(
            &req(
                CMP3,
                Some(16),
                Some("HTTPClient:Arch:00016:UNDI:003001"),
                false,
            ),
            &leases,
            0,
        ));
        assert_eq!(
            http.boot,
            Some(Boot::Http {
                url: "http://10.1.10.5/ipxe/ipxe.efi".into()
            })
        );
    }

    #[test]
    fn ipxe_gets_its_script_never_the_binary_again() {
        let p = provisioner();
        let leases = LeaseTable::default();
        // A chainloaded iPXE still says PXEClient and arch 7.
        let o = offer(p.dhcp(
            &req(
                CMP3,
                Some(7),
                Some("PXEClient:Arch:00007:UNDI:003010"),
                true,
            ),
            &leases,
            0,
        ));
        assert_eq!(
            o.boot,
            Some(Boot::Script {
                url: "http://10.1.10.5/boot.ipxe?mac=3c:ec:ef:10:00:23\
                      &chip=${net0/chip}&platform=${platform}"
                    .into()
            })
        );
    }

    #[test]
    fn the_installer_gets_an_address_and_nothing_to_boot() {
        let p = provisioner();
        let o = offer(p.dhcp(&req(CMP3, None, None, false), &LeaseTable::default(), 0));
        assert_eq!(o.address, Ipv4Addr::new(10, 1, 10, 23));
        assert_eq!(o.boot, None);
    }

    #[test]
    fn firmware_without_a_binary_gets_no_answer() {
        let p = provisioner();
        for arch in [6, 11, 19] {
            let answer = p.dhcp(
                &req(CMP3, Some(arch), Some("PXEClient"), false),
                &LeaseTable::default(),
                0,
            );
            assert!(
                matches!(&answer, DhcpAnswer::Ignore(Unanswered::NoBinary(_))),
                "{arch}: {answer:?}"
            );
        }
    }

    #[test]
    fn unknown_macs_get_a_discovery_address() {
        let p = provisioner();
        let o = offer(p.dhcp(
            &req("52:54:00:99:99:99", Some(7), Some("PXEClient"), false),
            &LeaseTable::default(),
            0,
        ));
        assert_eq!(o.address, Ipv4Addr::new(10, 1, 10, 200));
        assert_eq!(o.node, None);
    }

    #[test]
    fn the_boot_script_follows_the_lifecycle() {
        let p = provisioner();
        let mac: MacAddr = CMP3.parse().unwrap();
        let install = |attempt| BootScript::Install {
            node: "cmp3".into(),
            attempt,
        };
        assert_eq!(
            p.boot_script(
                mac,
                Some(NodeState::Provisioning),
                0,
                false,
                &IpxeClient::default()
            ),
            install(1)
        );
        assert_eq!(
            p.boot_script(
                mac,
                Some(NodeState::Installing),
                1,
                false,
                &IpxeClient::default()
            ),
            install(2)
        );
        assert_eq!(
            p.boot_script(
                mac,
                Some(NodeState::Installing),
                3,
                false,
                &IpxeClient::default()
            ),
            BootScript::GiveUp {
                node: "cmp3".into()
            }
        );
        for (state, why) in [
            (NodeState::Installed, "cmp3 is installed"),
            (NodeState::Deployed, "cmp3 is deployed"),
            (NodeState::Ready, "cmp3 is ready, not provisioning"),
            (NodeState::Failed, "cmp3 is failed, not provisioning"),
        ] {
            assert_eq!(
                p.boot_script(mac, Some(state), 0, false, &IpxeClient::default()),
                BootScript::LocalDisk(why.into())
            );
        }
        // Once its installer wrote the disk, never the installer again (a lost installed
        // callback, a reboot at the end of the install).
        for state in [NodeState::Provisioning, NodeState::Installing] {
            assert!(matches!(
                p.boot_script(mac, Some(state), 1, true, &IpxeClient::default()),
                BootScript::LocalDisk(why) if why.contains("its installer wrote the disk")
            ));
        }
        let stranger: MacAddr = "52:54:00:99:99:99".parse().unwrap();
        assert!(matches!(
            p.boot_script(
                stranger,
                Some(NodeState::Provisioning),
                0,
                false,
                &IpxeClient::default()
            ),
            BootScript::LocalDisk(_)
        ));
    }

    #[test]
    fn proxy_mode_boots_known_pxe_clients_only() {
        let p = provisioner();
        let boot = p
            .proxy(&req(CMP3, Some(7), Some("PXEClient:Arch:00007"), false).client)
            .unwrap();
        assert!(matches!(boot, Boot::Tftp { file, .. } if file == "ipxe.efi"));
        assert_eq!(
            p.proxy(&req("52:54:00:99:99:99", Some(7), Some("PXEClient"), false).client),
            Err(Unanswered::NotANode)
        );
        assert_eq!(
            p.proxy(&req(CMP3, None, None, false).client),
            Err(Unanswered::NotBooting),
            "the OS's own DHCP is not ours"
        );
    }

    #[test]
    fn relayed_requests_are_served_from_the_boot_zone_of_giaddr() {
        // examples/routed-racks.yaml: rack 2 (10.2.10.0/24) is relayed by its router 10.2.10.1.
        let config = crate::config::parse(
            include_str!("../../../examples/routed-racks.yaml"),
            Path::new("routed-racks.yaml"),
        )
        .unwrap();
        let p = Provisioner::new(Arc::new(config));
        let leases = LeaseTable::default();
        let mut r = req("3c:ec:ef:12:00:11", Some(7), Some("PXEClient"), false);
        r.relay = Some(Ipv4Addr::new(10, 2, 10, 1));
        let o = offer(p.dhcp(&r, &leases, 0));
        assert_eq!(
            o.address,
            Ipv4Addr::new(10, 2, 10, 11),
            "r2n1 in its rack's zone"
        );
        assert_eq!(o.router, Some(Ipv4Addr::new(10, 2, 10, 1)));
        assert_eq!(o.node.as_deref(), Some("r2n1"));
        // Heard on seed's own segment, rack 2's node has no address there.
        r.relay = None;
        assert!(
            matches!(p.dhcp(&r, &leases, 0), DhcpAnswer::Ignore(Unanswered::NoAddress { zone, .. }) if zone == "rack1")
        );
        // A rack-1 node behind rack 2's relay is not rack 2's.
        r.client.mac = "3c:ec:ef:11:00:11".parse().unwrap();
        r.relay = Some(Ipv4Addr::new(10, 2, 10, 1));
        assert!(
            matches!(p.dhcp(&r, &leases, 0), DhcpAnswer::Ignore(Unanswered::NoAddress { zone, .. }) if zone == "rack2")
        );
        // A stranger behind the relay gets an address from the relayed zone's discovery pool.
        r.client.mac = "52:54:00:99:99:99".parse().unwrap();
        let o = offer(p.dhcp(&r, &leases, 0));
        assert_eq!(o.address, Ipv4Addr::new(10, 2, 10, 200));
        // A relay in a zone nobody boots in (rack 2's storage VLAN), or in no zone, is ignored.
        for giaddr in [Ipv4Addr::new(10, 2, 40, 1), Ipv4Addr::new(192, 168, 1, 1)] {
            r.relay = Some(giaddr);
            assert!(
                matches!(
                    p.dhcp(&r, &leases, 0),
                    DhcpAnswer::Ignore(Unanswered::ForeignRelay(_))
                ),
                "{giaddr}"
            );
        }
    }

    fn client(chip: Option<&str>, platform: Option<&str>) -> IpxeClient {
        IpxeClient {
            chip: chip.map(str::to_string),
            platform: platform.map(str::to_string),
        }
    }

    #[test]
    fn only_a_foreign_ipxe_chainloads_seeds_binary() {
        use Firmware::{Bios, Uefi};
        // A NIC's ROM (measured: QEMU's says virtio-net) loads seed's binary for its platform.
        assert_eq!(
            client(Some("virtio-net"), Some("pcbios")).foreign(Uefi),
            Some(("undionly.kpxe", "virtio-net"))
        );
        assert_eq!(
            client(Some("virtio-net"), Some("efi")).foreign(Bios),
            Some(("snponly.efi", "virtio-net"))
        );
        assert_eq!(
            client(Some("virtio-net"), None).foreign(Bios),
            Some(("undionly.kpxe", "virtio-net"))
        );
        // seed's own binaries run the script (measured: undionly.kpxe says undionly, ipxe.efi
        // and snponly.efi loaded by UEFI PXE say SNP).
        assert_eq!(client(Some("undionly"), Some("pcbios")).foreign(Bios), None);
        assert_eq!(client(Some("SNP"), Some("efi")).foreign(Uefi), None);
        assert_eq!(client(Some("NII"), Some("efi")).foreign(Uefi), None);
        // An iPXE that did not expand the settings, or no word at all: never chainload (it
        // could not be told apart the next time either, and would loop).
        assert_eq!(client(Some("${net0/chip}"), None).foreign(Bios), None);
        assert_eq!(client(None, None).foreign(Bios), None);
        assert_eq!(client(Some(""), None).foreign(Bios), None);
    }
}
