//! The config file as written: YAML wire structs.
//!
//! These mirror the file one to one and do no checking beyond what serde does on the way in
//! (types, enum spellings, unknown fields). Every struct denies unknown fields, so a typo such as
//! `mut: 9000` is an error with a line number instead of a silently ignored setting. List items
//! are wrapped in [`Spanned`] so that validation errors found later can still name the line.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The seed host itself.
    pub seed: Spanned<SeedWire>,
    /// Network zones (one VLAN each).
    pub zones: Vec<Spanned<ZoneWire>>,
    /// Bonds and plain NICs that zones ride on.
    pub links: Vec<Spanned<LinkWire>>,
    /// Node roles.
    pub roles: Vec<Spanned<RoleWire>>,
    /// The nodes of the rack.
    #[serde(default)]
    pub nodes: Vec<Spanned<NodeWire>>,
    /// What every node installs: operator account, locale, disk layout, templates.
    pub install: Option<Spanned<InstallWire>>,
    /// The APT mirror under `/apt/`.
    pub mirror: Option<Spanned<MirrorWire>>,
    /// The container registry under `/v2/`: its pull-through upstreams.
    pub registry: Option<Spanned<RegistryWire>>,
}

/// `registry:` — the container registry's pull-through cache (imported images need nothing).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryWire {
    /// Upstream registries, each under a name prefix.
    #[serde(default)]
    pub upstreams: Vec<RegistryUpstreamWire>,
    /// How old a cached tag may be before it is asked of its upstream again (`5m`; s, m, h).
    pub tag_max_age: Option<String>,
    /// The most pulled-through images keep on disk (`64G`; M, G or T): the least recently
    /// used go first. Imported images are not counted and never evicted.
    pub cache_size: Option<String>,
    /// A port of its own on seed.address (`5000`, as OSISM's metalbox), beside `/v2/` on the
    /// HTTP port.
    pub port: Option<u16>,
    /// TLS on that port: PEM files.
    pub tls: Option<RegistryTlsWire>,
}

/// `registry.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryTlsWire {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// `registry.upstreams[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryUpstreamWire {
    /// The first name component(s) clients put before the upstream's name (`quay.io` →
    /// `seed/quay.io/osism/osism-ansible`).
    pub prefix: String,
    /// The upstream registry's base URL (`https://quay.io`).
    pub url: String,
    /// The account to pull as (a private upstream); with `password`.
    pub username: Option<String>,
    /// Where its password or token is; never the value itself.
    pub password: Option<SecretRefWire>,
}

/// `mirror:` — APT repositories served under `/apt/<prefix>/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorWire {
    /// Where proxied files are cached (default `<state_dir>/apt`).
    pub cache_dir: Option<PathBuf>,
    /// The most the cache keeps (`32G`; M, G or T): the least recently used packages go first.
    pub cache_size: Option<String>,
    /// The repositories.
    pub repos: Vec<MirrorRepoWire>,
}

/// `mirror.repos[]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorRepoWire {
    /// The path segment under `/apt/` (`ubuntu` → `/apt/ubuntu/`).
    pub prefix: String,
    /// A mirror directory served read-only (apt-mirror, debmirror, aptly publish output).
    #[serde(rename = "static")]
    pub static_dir: Option<PathBuf>,
    /// Upstream URLs, tried in order, for a caching proxy.
    #[serde(default)]
    pub upstream: Vec<String>,
}

/// `install:` — settings of the Ubuntu autoinstall.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallWire {
    /// The operator account (OSISM's is `dragon`).
    pub user: UserWire,
    /// Time zone; defaults to `Etc/UTC`.
    pub timezone: Option<String>,
    /// Locale; defaults to `en_US.UTF-8`.
    pub locale: Option<String>,
    /// Keyboard layout; defaults to `us`.
    pub keyboard: Option<String>,
    /// `lvm` (default) or `direct`.
    pub storage_layout: Option<LayoutWire>,
    /// subiquity's LVM sizing: `scaled` (its default: a 100 GiB root on large disks) or `all`.
    pub sizing_policy: Option<SizingWire>,
    /// The root LV's least size (`200G`, LVM's binary units); the install fails if the disk
    /// cannot hold it.
    pub root_size: Option<String>,
    /// Extra packages.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Directory whose files override the embedded templates by name.
    pub templates_dir: Option<PathBuf>,
    /// APT mirror for primary and security; defaults to `<seed url>/apt/ubuntu`.
    pub apt_mirror: Option<String>,
    /// The image (from `seed images add`) nodes install from unless their role or node names
    /// another; defaults to `ubuntu-24.04`. With `method: image`, a disk image (from `seed
    /// images add-disk`).
    pub image: Option<String>,
    /// `autoinstall` (default: Ubuntu's installer runs on each node) or `image` (seed's agent
    /// writes a disk image and a config drive); roles and nodes may say otherwise.
    pub method: Option<MethodWire>,
    /// The image (from `seed images add`: a kernel and the ramdisk `seed agent ramdisk`
    /// built) that `method: image` nodes boot to be deployed; defaults to `seed-agent`.
    pub agent_image: Option<String>,
}

/// How a node is installed.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum MethodWire {
    Autoinstall,
    Image,
}

/// Which disks seed's agent wipes before it writes an image.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum WipeWire {
    Root,
    All,
    None,
}

/// `install.user:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserWire {
    /// Login name.
    pub name: String,
    /// SSH public keys.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// crypt(3) hash; without it the password is locked and only keys log in.
    pub password_hash: Option<String>,
    /// The account's uid (OSISM's operator role expects 45000).
    pub uid: Option<u32>,
    /// Its primary group's gid (default: the uid).
    pub gid: Option<u32>,
}

/// Subiquity storage layouts.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum LayoutWire {
    Lvm,
    Direct,
}

/// subiquity's `sizing-policy` of the LVM layout.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum SizingWire {
    Scaled,
    All,
}

/// Node firmware.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum FirmwareWire {
    Uefi,
    Bios,
}

/// `seed:` — the seed host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedWire {
    /// Interface on the provisioning network (DHCP binds here with SO_BINDTODEVICE).
    pub interface: String,
    /// Seed's own IPv4 address on the provisioning zone.
    pub address: Ipv4Addr,
    /// URL nodes reach seed at; defaults to `http://<address>[:<http port>]`.
    pub url: Option<String>,
    /// Listening ports.
    #[serde(default)]
    pub ports: PortsWire,
    /// Where the state database lives.
    pub state_dir: Option<PathBuf>,
    /// DHCP behaviour.
    #[serde(default)]
    pub dhcp: DhcpWire,
    /// A directory whose files TFTP serves besides the embedded iPXE binaries.
    pub tftp_root: Option<PathBuf>,
    /// Where the bearer token of mutating API calls is; without one they are refused.
    pub api_token: Option<SecretRefWire>,
    /// How long installs may take and how often they are retried.
    #[serde(default)]
    pub lifecycle: LifecycleWire,
    /// Boot machines that are not in the config into seed's agent (`install.agent_image`),
    /// which inspects them and enlists them as discovered with their inventory, then powers
    /// them off; `seed adopt` makes one a node. Off by default: seed then boots nothing it
    /// does not know (an unknown server in use that network-boots first would be powered off
    /// once). Needs a boot zone with a `discovery_pool`.
    #[serde(default)]
    pub enlist: bool,
}

/// `seed.lifecycle:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleWire {
    /// How often the installer is served to one provisioning before the node is failed
    /// (default 3): an installer that reboots mid-way must not loop forever.
    pub install_attempts: Option<u32>,
    /// Seconds without an event before an active node is failed (default 3600; 0: never).
    pub progress_timeout: Option<u64>,
    /// Seconds an installed node may take to boot its disk and phone home before it is failed
    /// (default 3600; 0: never, for labs whose stand-in installer leaves no system to boot).
    pub phone_home_timeout: Option<u64>,
    /// Seconds a node's token still accepts callbacks after it is deployed or failed
    /// (default 3600): the installer reports its last events after `installed`.
    pub callback_grace: Option<u64>,
    /// Seconds from seed starting a node to its first DHCP request (default 900: server
    /// firmware can take ten minutes to POST; 0: not watched).
    pub dhcp_timeout: Option<u64>,
    /// Seconds from its DHCP request to fetching its iPXE script (default 300; 0: not watched).
    pub boot_timeout: Option<u64>,
    /// Seconds from being served the installer to its first report (default 1200: casper
    /// loads the ISO into RAM; 0: not watched).
    pub installer_timeout: Option<u64>,
}

/// `seed.dhcp:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpWire {
    /// Answer only PXE clients with boot information, beside a foreign DHCP server.
    pub proxy: Option<bool>,
    /// Lease time in seconds (default 3600).
    pub lease_time: Option<u32>,
    /// Send IPv6 router advertisements without a prefix on the provisioning interface
    /// (default true): without any, iPXE waits about 16 s per DHCP stage.
    pub router_advertisements: Option<bool>,
}

/// `seed.ports:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsWire {
    /// DHCP server port (67).
    pub dhcp: Option<u16>,
    /// TFTP server port (69).
    pub tftp: Option<u16>,
    /// HTTP server port (80).
    pub http: Option<u16>,
}

/// One item of `zones:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneWire {
    /// Zone name, e.g. `management`.
    pub name: String,
    /// 802.1Q VLAN id (the switch's native VLAN when `native`).
    pub vlan: u16,
    /// The zone's IPv4 subnet, CIDR notation.
    pub subnet: String,
    /// Default gateway, if the zone has one.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers handed to nodes in this zone.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// NTP servers (DHCP option 42 carries addresses, so IP literals).
    #[serde(default)]
    pub ntp: Vec<Ipv4Addr>,
    /// MTU of the zone's interface; defaults to 1500.
    pub mtu: Option<u16>,
    /// The link (bond or NIC) the zone rides on.
    pub link: String,
    /// Untagged on its link. The provisioning zone must be: PXE firmware does not tag.
    #[serde(default)]
    pub native: bool,
    /// Exactly one zone is where DHCP and PXE happen on seed's own segment.
    #[serde(default)]
    pub provisioning: bool,
    /// A routed rack's own provisioning network: its DHCP reaches seed through a relay whose
    /// address (giaddr) is in this subnet. Native on its link; its roles boot from it and need
    /// not join the provisioning zone.
    #[serde(default)]
    pub relayed: bool,
    /// Whether nodes get an address here; false for provider/external networks.
    #[serde(default = "yes")]
    pub host_addresses: bool,
    /// Roles that join this zone.
    pub roles: Vec<String>,
    /// Addresses for MACs seed does not know (provisioning and relayed zones only).
    pub discovery_pool: Option<PoolWire>,
    /// Put the zone's interface into a host Open vSwitch bridge of this name (e.g. `br-ex`).
    pub bridge: Option<String>,
}

impl ZoneWire {
    /// Whether nodes network-boot in this zone (provisioning or relayed).
    pub fn boots(&self) -> bool {
        self.provisioning || self.relayed
    }
}

fn yes() -> bool {
    true
}

/// An inclusive address range.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolWire {
    /// First address of the pool.
    pub start: Ipv4Addr,
    /// Last address of the pool (inclusive).
    pub end: Ipv4Addr,
}

/// One item of `links:`: a plain NIC when `bond` is absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkWire {
    /// Interface name as the installed system sees it (`bond0`, `eno3`).
    pub name: String,
    /// MTU; defaults to 1500.
    pub mtu: Option<u16>,
    /// Present for bonds.
    pub bond: Option<BondWire>,
}

/// `links[].bond:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BondWire {
    /// Member NIC names.
    pub members: Vec<String>,
    /// Bonding mode.
    pub mode: BondModeWire,
    /// LACP rate (802.3ad only).
    pub lacp_rate: Option<LacpRateWire>,
    /// Transmit hash policy.
    pub transmit_hash_policy: Option<HashPolicyWire>,
    /// Link monitoring interval in milliseconds; defaults to 100.
    pub mii_monitor_interval: Option<u32>,
}

/// Bond modes as netplan spells them.
#[derive(Debug, Clone, Copy, Deserialize)]
#[allow(missing_docs)]
pub enum BondModeWire {
    #[serde(rename = "balance-rr")]
    BalanceRr,
    #[serde(rename = "active-backup")]
    ActiveBackup,
    #[serde(rename = "balance-xor")]
    BalanceXor,
    #[serde(rename = "broadcast")]
    Broadcast,
    #[serde(rename = "802.3ad")]
    Lacp,
    #[serde(rename = "balance-tlb")]
    BalanceTlb,
    #[serde(rename = "balance-alb")]
    BalanceAlb,
}

/// LACP rates as netplan spells them.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum LacpRateWire {
    Slow,
    Fast,
}

/// Transmit hash policies as netplan spells them.
#[derive(Debug, Clone, Copy, Deserialize)]
#[allow(missing_docs)]
pub enum HashPolicyWire {
    #[serde(rename = "layer2")]
    Layer2,
    #[serde(rename = "layer2+3")]
    Layer2And3,
    #[serde(rename = "layer3+4")]
    Layer3And4,
    #[serde(rename = "encap2+3")]
    Encap2And3,
    #[serde(rename = "encap3+4")]
    Encap3And4,
}

/// One item of `roles:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleWire {
    /// Role name, e.g. `compute`.
    pub name: String,
    /// Links a node of this role has.
    pub links: Vec<String>,
    /// The link the boot NIC is on; defaults to the provisioning zone's link.
    pub boot_link: Option<String>,
    /// The disk to install to.
    pub disk: Option<DiskWire>,
    /// The image nodes of this role install from (overrides `install.image`).
    pub image: Option<String>,
    /// How its nodes are installed (overrides `install.method`).
    pub method: Option<MethodWire>,
    /// `method: image`: which disks the agent wipes before writing: `root` (default: the
    /// disk the image goes to), `all` (every disk the node has: stale RAID and LVM members
    /// on the data disks too), `none`.
    pub wipe: Option<WipeWire>,
    /// `method: image`: after wiping, also discard every block of the wiped disks (TRIM /
    /// UNMAP / NVMe deallocate, where the device can): an SSD starts fresh and no old data is
    /// left between the signatures. Off by default: it can take long on some devices.
    #[serde(default)]
    pub discard: bool,
    /// Each port's NIC as the BMC names it (`eno1: NIC.Embedded.1-1-1`): with `seed inventory`
    /// the port's MAC comes from the BMC, for every node of the role.
    #[serde(default)]
    pub ports: std::collections::BTreeMap<String, String>,
}

/// The install disk, as the operator reads it off the BMC, the datasheet or `lsblk`; seed turns
/// it into subiquity's match (`seed::disk`). At least one key that names a disk is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskWire {
    /// Serial number as on the label or the BMC (SATA, NVMe, virtio); a glob is udev's `ID_SERIAL`.
    pub serial: Option<String>,
    /// World wide name (`0x5000c500…`, `naa.…`): SAS disks and RAID volumes.
    pub wwn: Option<String>,
    /// Model as shown (`DELLBOSS VD`); a glob is udev's `ID_MODEL`.
    pub model: Option<String>,
    /// Vendor (`ID_VENDOR`, SCSI and USB disks).
    pub vendor: Option<String>,
    /// The disk's `/dev/disk/by-path/` name (udev's `ID_PATH`): the slot, whatever is in it.
    pub id_path: Option<String>,
    /// Kernel device name, e.g. `/dev/vda` (not stable across hardware).
    pub path: Option<String>,
    /// `smallest` or `largest`.
    pub size: Option<DiskSizeWire>,
    /// Only solid-state (true) or rotating (false) disks.
    pub ssd: Option<bool>,
}

/// `disk.size:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum DiskSizeWire {
    Smallest,
    Largest,
}

/// One item of `nodes:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeWire {
    /// Host name.
    pub name: String,
    /// The node's role.
    pub role: String,
    /// Its BMC; the last octet of its address is the node's suffix in every zone.
    pub bmc: BmcWire,
    /// MAC address(es) of the NIC(s) the node PXE-boots from. A redfish node may leave them
    /// out: `seed inventory` records the MACs its BMC reports.
    #[serde(default)]
    pub macs: Vec<Spanned<String>>,
    /// Serial console, e.g. `ttyS1,115200n8`.
    pub console: Option<String>,
    /// Overrides the role's install disk.
    pub disk: Option<DiskWire>,
    /// Zones this node joins beyond its role's.
    #[serde(default)]
    pub extra_zones: Vec<String>,
    /// MACs of the node's NICs by name, so netplan matches bond members by MAC.
    #[serde(default)]
    pub nics: std::collections::BTreeMap<String, String>,
    /// `uefi` (default) or `bios`.
    pub firmware: Option<FirmwareWire>,
    /// The image this node installs from (overrides its role's).
    pub image: Option<String>,
    /// How this node is installed (overrides its role's).
    pub method: Option<MethodWire>,
    /// More kernel arguments for this node's installer (after the image's).
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// `any` (default): whatever iPXE asks for the script runs it; `seed`: only seed's own
    /// iPXE build does, another one (a NIC's ROM) chainloads it first.
    pub ipxe: Option<IpxeWire>,
    /// How `seed lab` builds this node's virtual machine (driver `qemu` only).
    pub qemu: Option<QemuWire>,
}

/// `nodes[].ipxe:`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum IpxeWire {
    Any,
    Seed,
}

/// `nodes[].qemu:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuWire {
    /// `rom` (the NIC's iPXE option ROM, default), `pxe` (UEFI only: no option ROM, so the
    /// firmware's own PXE client fetches seed's binary over TFTP), `http` (UEFI only: the
    /// firmware's HTTP boot client, PXE switched off).
    pub boot: Option<QemuBootWire>,
    /// Memory in MiB (default 512; an Ubuntu live-server ISO needs about 8192).
    pub memory: Option<u32>,
    /// Size of its (sparse) install disk in GiB (default 20; 0: none).
    pub disk: Option<u32>,
    /// The machine's NIC MAC when it is not the node's first `macs:` entry: a lab rehearsal of
    /// a wrong MAC in the config.
    pub mac: Option<String>,
}

/// `nodes[].qemu.boot:`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum QemuBootWire {
    Rom,
    Pxe,
    Http,
}

/// `nodes[].bmc:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcWire {
    /// The BMC's IPv4 address.
    pub address: Ipv4Addr,
    /// How seed controls power.
    pub driver: DriverWire,
    /// BMC user name (not a secret).
    pub username: Option<String>,
    /// Where the BMC password is; never the password itself.
    pub password: Option<SecretRefWire>,
    /// The Redfish service's URL when it is not `https://<address>` (a port, a proxy, an
    /// emulator).
    pub endpoint: Option<String>,
    /// Which system, when the BMC manages several: its Id, UUID or serial number.
    pub system: Option<String>,
    /// How its certificate is trusted (default: the system's root certificates).
    pub tls: Option<BmcTlsWire>,
    /// What the one-time boot override asks for: `pxe` (default) or `http` (UEFI HTTP boot).
    pub boot: Option<NetBootWire>,
    /// Seconds a read may take (default 45; a read that times out is asked again once).
    pub timeout: Option<u64>,
    /// Seconds an action (reset, boot override) may take (default 120).
    pub action_timeout: Option<u64>,
}

/// `nodes[].bmc.boot:`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum NetBootWire {
    Pxe,
    Http,
}

/// `nodes[].bmc.tls:` — one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcTlsWire {
    /// A PEM file with the CA certificate(s) the BMC's certificate chains to.
    pub ca_file: Option<PathBuf>,
    /// `sha256:<hex>` of the one certificate to accept, or `first-use` to record the first
    /// one seen and refuse any other after.
    pub fingerprint: Option<String>,
}

/// Power drivers.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum DriverWire {
    Redfish,
    Qemu,
    Manual,
}

/// A secret by reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRefWire {
    /// Read from this environment variable.
    Env(String),
    /// Read from this file (first line).
    File(PathBuf),
}
