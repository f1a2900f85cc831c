//! The validated domain model. Everything here has been checked once, in `validate`; the rest of
//! seed reads it and never re-checks references (a zone's link exists, a node's role exists).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::net::{Ipv4Net, MacAddr};

/// A validated seed configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// The seed host.
    pub seed: SeedHost,
    /// Network zones, in file order.
    pub zones: Vec<Zone>,
    /// Links, in file order.
    pub links: Vec<Link>,
    /// Roles, in file order.
    pub roles: Vec<Role>,
    /// Nodes, in file order.
    pub nodes: Vec<Node>,
    /// Autoinstall settings; `None` when the config has no `install:` section.
    pub install: Option<Install>,
    /// The APT mirror; `None` when the config has no `mirror:` section.
    pub mirror: Option<Mirror>,
    /// The container registry's pull-through upstreams (none without a `registry:` section).
    pub registry: Registry,
}

/// The container registry's pull-through cache.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Upstreams, each under its name prefix.
    pub upstreams: Vec<RegistryUpstream>,
    /// How old a cached tag may be before its upstream is asked again.
    pub tag_max_age: std::time::Duration,
    /// The most pulled-through manifests and blobs keep on disk (imports are not counted).
    pub cache_bytes: u64,
    /// A port of its own on `seed.address`, serving only `/v2/`.
    pub port: Option<u16>,
    /// TLS on that port: (certificate chain, key), PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// How long a pulled-through tag is served without asking its upstream, unless
/// `registry.tag_max_age` says.
pub const DEFAULT_TAG_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// The pull-through cache's size unless `registry.cache_size` says. Imports (a release's
/// images, what the site runs on) are not in it; it holds what was pulled beyond them.
pub const DEFAULT_REGISTRY_CACHE: u64 = 64 << 30;

/// An upstream registry under a name prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUpstream {
    /// The name prefix (`quay.io`).
    pub prefix: String,
    /// The base URL (`https://quay.io`, no trailing `/`).
    pub url: String,
    /// The account seed pulls as, when the upstream is private.
    pub username: Option<String>,
    /// Its password or token.
    pub password: Option<SecretRef>,
}

/// The APT mirror under `/apt/`.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Where proxied files are cached, if the config says; see [`Mirror::cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// The most the cache keeps (bytes); see [`DEFAULT_MIRROR_CACHE`].
    pub cache_bytes: u64,
    /// The repositories, by prefix.
    pub repos: Vec<MirrorRepo>,
}

/// The APT mirror cache's size unless `mirror.cache_size` says: what the packages of an
/// Ubuntu server install and a few OpenStack nodes' updates take, many times over.
pub const DEFAULT_MIRROR_CACHE: u64 = 32 << 30;

impl Mirror {
    /// The cache directory: the configured one, else `apt/` in the state directory in use
    /// (which `--state-dir` may override).
    pub fn cache_dir(&self, state_dir: &Path) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("apt"))
    }
}

/// One repository under `/apt/<prefix>/`: a static directory, a caching proxy, or both (the
/// directory first).
#[derive(Debug, Clone)]
pub struct MirrorRepo {
    /// The path segment under `/apt/`.
    pub prefix: String,
    /// A mirror directory served as it is.
    pub static_dir: Option<PathBuf>,
    /// Upstream base URLs (no trailing `/`), tried in order.
    pub upstream: Vec<String>,
}

/// What every node installs.
#[derive(Debug, Clone)]
pub struct Install {
    /// The operator account.
    pub user: OperatorUser,
    /// Time zone.
    pub timezone: String,
    /// Locale.
    pub locale: String,
    /// Keyboard layout.
    pub keyboard: String,
    /// `lvm` or `direct`.
    pub storage_layout: &'static str,
    /// subiquity's LVM `sizing-policy` (`scaled`, `all`), when the operator sets one.
    pub sizing_policy: Option<&'static str>,
    /// The root LV's least size in bytes, when the operator sets one.
    pub root_bytes: Option<u64>,
    /// Extra packages.
    pub packages: Vec<String>,
    /// Template overrides.
    pub templates_dir: Option<PathBuf>,
    /// APT mirror URL.
    pub apt_mirror: String,
}

/// The operator account on every node.
#[derive(Debug, Clone)]
pub struct OperatorUser {
    /// Login name.
    pub name: String,
    /// SSH public keys.
    pub ssh_authorized_keys: Vec<String>,
    /// crypt(3) hash, if the operator wants a password at all.
    pub password_hash: Option<String>,
    /// uid, when the operator sets one.
    pub uid: Option<u32>,
    /// gid of its primary group (the uid unless the operator sets another).
    pub gid: Option<u32>,
}

impl Config {
    /// The zone named `name`.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.name == name)
    }

    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The one zone where DHCP and PXE happen.
    pub fn provisioning_zone(&self) -> &Zone {
        // validate() refuses a config without exactly one.
        self.zones
            .iter()
            .find(|z| z.provisioning)
            .unwrap_or(&self.zones[0])
    }

    /// The zone a role's nodes network-boot in: the provisioning zone or the relayed zone the
    /// role joins (validate() gives every role exactly one).
    pub fn boot_zone(&self, role: &str) -> &Zone {
        self.zones
            .iter()
            .find(|z| z.boots() && z.roles.iter().any(|r| r == role))
            .unwrap_or_else(|| self.provisioning_zone())
    }

    /// The zones a node joins: those its role joins, then its extra zones, in file order.
    pub fn zones_of<'a>(&'a self, node: &'a Node) -> impl Iterator<Item = &'a Zone> + 'a {
        self.zones
            .iter()
            .filter(move |z| z.roles.contains(&node.role) || node.extra_zones.contains(&z.name))
    }
}

/// The seed host's own settings.
#[derive(Debug, Clone)]
pub struct SeedHost {
    /// Interface on the provisioning network.
    pub interface: String,
    /// Seed's address on the provisioning zone.
    pub address: Ipv4Addr,
    /// Base URL nodes use to reach seed (no trailing slash).
    pub url: String,
    /// Listening ports.
    pub ports: Ports,
    /// State directory (SQLite database and later images).
    pub state_dir: PathBuf,
    /// DHCP behaviour.
    pub dhcp: DhcpSettings,
    /// Extra files for TFTP.
    pub tftp_root: Option<PathBuf>,
    /// The bearer token of mutating API calls; `None` refuses them all.
    pub api_token: Option<SecretRef>,
    /// Install retries and timeouts.
    pub lifecycle: Lifecycle,
    /// `seed.enlist`: the agent image (`install.agent_image`) unknown machines boot to be
    /// inspected and enlisted; `None`: they boot nothing.
    pub enlist: Option<String>,
}

/// How long installs may take and how often they are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// How often the installer is served to one provisioning before the node is failed.
    pub install_attempts: u32,
    /// Seconds without an event before a provisioning, installing or installed node is failed;
    /// 0 never fails one.
    pub progress_timeout_secs: u64,
    /// Seconds an installed node may take to phone home from its disk before it is failed; 0
    /// never fails one.
    pub phone_home_timeout_secs: u64,
    /// Seconds a token still accepts callbacks after its node is deployed or failed.
    pub callback_grace_secs: u64,
    /// Seconds from seed starting a node to its first DHCP request; 0: not watched.
    pub dhcp_timeout_secs: u64,
    /// Seconds from its DHCP request to fetching its iPXE script; 0: not watched.
    pub boot_timeout_secs: u64,
    /// Seconds from being served the installer to the installer's first report; 0: not watched.
    pub installer_timeout_secs: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            install_attempts: 3,
            // An install over a 1 GbE management link reports every few seconds; an hour of
            // silence is a node that never booted or a hung installer.
            progress_timeout_secs: 3600,
            // Server firmware can take ten minutes to POST; cloud-init then phones home.
            phone_home_timeout_secs: 3600,
            callback_grace_secs: 3600,
            // Phases of a start that seed watches, each with its own bound: a node that misses
            // one is power-cycled again (up to install_attempts starts) before it is failed.
            dhcp_timeout_secs: 900,
            boot_timeout_secs: 300,
            installer_timeout_secs: 1200,
        }
    }
}

/// How seed's DHCP server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpSettings {
    /// proxyDHCP: boot information only, addresses come from another server.
    pub proxy: bool,
    /// Lease time in seconds.
    pub lease_secs: u32,
    /// Send prefix-less router advertisements on the provisioning interface.
    pub router_advertisements: bool,
}

/// Listening ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// DHCP (67).
    pub dhcp: u16,
    /// TFTP (69).
    pub tftp: u16,
    /// HTTP (80).
    pub http: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            dhcp: 67,
            tftp: 69,
            http: 80,
        }
    }
}

/// A network zone: one VLAN, one subnet.
#[derive(Debug, Clone)]
pub struct Zone {
    /// Name.
    pub name: String,
    /// VLAN id.
    pub vlan: u16,
    /// Subnet.
    pub subnet: Ipv4Net,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// NTP servers.
    pub ntp: Vec<Ipv4Addr>,
    /// MTU.
    pub mtu: u16,
    /// Link the zone rides on.
    pub link: String,
    /// Untagged on its link.
    pub native: bool,
    /// DHCP and PXE happen here, on seed's own segment.
    pub provisioning: bool,
    /// DHCP and PXE happen here through a relay (giaddr in the subnet): a routed rack.
    pub relayed: bool,
    /// Nodes get addresses here.
    pub host_addresses: bool,
    /// Roles that join.
    pub roles: Vec<String>,
    /// Pool for unknown MACs.
    pub discovery_pool: Option<Pool>,
    /// Host Open vSwitch bridge that takes the zone's interface.
    pub bridge: Option<String>,
}

impl Zone {
    /// Whether nodes network-boot in this zone: the provisioning zone or a relayed one.
    pub fn boots(&self) -> bool {
        self.provisioning || self.relayed
    }

    /// The interface name of this zone on a node: the link itself when native, else `<link>.<vlan>`.
    pub fn interface(&self) -> String {
        if self.native {
            self.link.clone()
        } else {
            format!("{}.{}", self.link, self.vlan)
        }
    }
}

/// An inclusive IPv4 address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pool {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

impl Pool {
    /// Whether `addr` is in the pool.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&addr)
    }
}

/// A bond or plain NIC.
#[derive(Debug, Clone)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: u16,
    /// Bond settings; `None` for a plain NIC.
    pub bond: Option<Bond>,
}

/// Bond settings, in netplan's terms.
#[derive(Debug, Clone)]
pub struct Bond {
    /// Member NICs.
    pub members: Vec<String>,
    /// Mode, as netplan spells it (`802.3ad`).
    pub mode: &'static str,
    /// LACP rate (`fast`/`slow`), 802.3ad only.
    pub lacp_rate: Option<&'static str>,
    /// Transmit hash policy (`layer3+4`, …).
    pub transmit_hash_policy: Option<&'static str>,
    /// MII monitor interval in ms.
    pub mii_monitor_interval: u32,
}

/// A role: which links its nodes have and which disk they install to.
#[derive(Debug, Clone)]
pub struct Role {
    /// Name.
    pub name: String,
    /// Links its nodes have.
    pub links: Vec<String>,
    /// The link the boot NIC is a member of.
    pub boot_link: String,
    /// Install disk.
    pub disk: Option<DiskMatch>,
    /// The image its nodes install from, if the role names one.
    pub image: Option<String>,
    /// How its nodes are installed, if the role says.
    pub method: Option<InstallMethod>,
    /// What the agent wipes on its nodes.
    pub wipe: Wipe,
    /// Whether the wiped disks are also discarded whole.
    pub discard: bool,
    /// Port name → the BMC's Id of that NIC (`NIC.Embedded.1-1-1`), for MACs from `seed
    /// inventory`.
    pub ports: std::collections::BTreeMap<String, String>,
}

/// Which disk subiquity installs to, as the operator wrote it (`seed::disk` renders subiquity's
/// match from it). Never empty and never without a key that names a disk: subiquity's default
/// is the largest disk (a Ceph OSD on a storage node), `size: smallest` an SD module.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskMatch {
    /// Serial number (or the operator's glob on `ID_SERIAL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// World wide name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wwn: Option<String>,
    /// Model (or a glob on `ID_MODEL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Vendor (or a glob on `ID_VENDOR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// udev's `ID_PATH` (the by-path name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_path: Option<String>,
    /// Device path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `smallest` or `largest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<&'static str>,
    /// Solid state only (or rotating only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssd: Option<bool>,
}

impl fmt::Display for DiskMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(v) = &self.serial {
            parts.push(format!("serial={v}"));
        }
        if let Some(v) = &self.wwn {
            parts.push(format!("wwn={v}"));
        }
        if let Some(v) = &self.model {
            parts.push(format!("model={v}"));
        }
        if let Some(v) = &self.vendor {
            parts.push(format!("vendor={v}"));
        }
        if let Some(v) = &self.id_path {
            parts.push(format!("id_path={v}"));
        }
        if let Some(v) = &self.path {
            parts.push(format!("path={v}"));
        }
        if let Some(v) = self.size {
            parts.push(format!("size={v}"));
        }
        if let Some(v) = self.ssd {
            parts.push(format!("ssd={v}"));
        }
        f.write_str(&parts.join(","))
    }
}

/// A bare-metal node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Host name.
    pub name: String,
    /// Role name.
    pub role: String,
    /// BMC.
    pub bmc: Bmc,
    /// Boot NIC MAC(s).
    pub macs: Vec<MacAddr>,
    /// Serial console for the installed system, e.g. `ttyS1,115200n8`.
    pub console: Option<String>,
    /// The disk to install to (the node's override, else its role's).
    pub disk: DiskMatch,
    /// Zones beyond the role's.
    pub extra_zones: Vec<String>,
    /// NIC name → MAC, where the config gives them.
    pub nics: std::collections::BTreeMap<String, MacAddr>,
    /// Firmware kind.
    pub firmware: Firmware,
    /// The image it installs from (its own, else its role's, else `install.image`): an
    /// installer image, or a disk image with [`InstallMethod::Image`].
    pub image: String,
    /// How it is installed.
    pub method: InstallMethod,
    /// What seed's agent wipes before writing its image.
    pub wipe: Wipe,
    /// Whether it also discards the wiped disks whole (its role's `discard:`).
    pub discard: bool,
    /// The image it boots to be deployed ([`InstallMethod::Image`]): kernel and agent ramdisk.
    pub agent_image: String,
    /// More installer kernel arguments (after the image's).
    pub kernel_args: Vec<String>,
    /// Which iPXE may run its script.
    pub ipxe: IpxePolicy,
    /// Its virtual machine, when its power driver is `qemu`.
    pub qemu: Option<QemuNode>,
}

/// Which iPXE build may run a node's install script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpxePolicy {
    /// Any iPXE: a NIC's ROM runs the script itself.
    #[default]
    Any,
    /// Only seed's own build: another iPXE chainloads seed's binary first (old or vendor
    /// ROMs that lack what the script needs).
    Seed,
}

/// A `seed lab` virtual machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QemuNode {
    /// How its firmware network-boots.
    pub boot: QemuBoot,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Its install disk in GiB (a sparse file; 0: none).
    pub disk_gib: u32,
    /// Its NIC's MAC when not the node's boot MAC (a wrong-MAC rehearsal).
    pub mac: Option<MacAddr>,
}

/// How a lab machine's firmware network-boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QemuBoot {
    /// The NIC's iPXE option ROM (QEMU's own build of iPXE).
    Rom,
    /// UEFI only: a NIC without option ROM, so OVMF's own PXE client fetches seed's ipxe.efi
    /// over TFTP.
    Pxe,
    /// UEFI only: a NIC without option ROM and OVMF's PXE switched off, so its HTTP boot client
    /// fetches seed's ipxe.efi by the URL DHCP gives it.
    Http,
}

/// How a node is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallMethod {
    /// Ubuntu's installer (subiquity) with the node's autoinstall documents.
    #[default]
    Autoinstall,
    /// seed's agent writes a disk image and a config drive.
    Image,
}

/// Which disks seed's agent wipes before it writes an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wipe {
    /// The disk the image is written to.
    #[default]
    Root,
    /// Every disk of the node.
    All,
    /// None: the image is written over what is there.
    None,
}

/// How a node boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// UEFI (the default on current servers).
    Uefi,
    /// Legacy BIOS.
    Bios,
}

/// A node's BMC.
#[derive(Debug, Clone)]
pub struct Bmc {
    /// Address; its last octet is the node's suffix.
    pub address: Ipv4Addr,
    /// Power driver.
    pub driver: PowerDriver,
    /// User name.
    pub username: Option<String>,
    /// Where the password is.
    pub password: Option<SecretRef>,
    /// The Redfish service's base URL (`https://<address>` unless configured).
    pub endpoint: String,
    /// Which system, when the BMC manages several (Id, UUID or serial).
    pub system: Option<String>,
    /// How its certificate is trusted.
    pub tls: BmcTls,
    /// What its one-time boot override asks the firmware for.
    pub boot: NetBoot,
    /// How long a read may take.
    pub timeout: std::time::Duration,
    /// How long an action (reset, boot override) may take.
    pub action_timeout: std::time::Duration,
}

/// A BMC read's default timeout: iDRACs were measured answering in 25-40 s under load
/// (issue 16), so 20 s failed them.
pub const BMC_TIMEOUT_SECS: u64 = 45;
/// A BMC action's default timeout: resets and PATCHes come back later than reads.
pub const BMC_ACTION_TIMEOUT_SECS: u64 = 120;

/// How a node's firmware network-boots when seed asks its BMC for one network boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetBoot {
    /// PXE (Redfish `Pxe`): DHCP, then TFTP.
    #[default]
    Pxe,
    /// UEFI HTTP boot (Redfish `UefiHttp`): DHCP, then the boot file by HTTP.
    Http,
}

impl NetBoot {
    /// The Redfish `BootSourceOverrideTarget` value.
    pub fn redfish_target(self) -> &'static str {
        match self {
            Self::Pxe => "Pxe",
            Self::Http => "UefiHttp",
        }
    }
}

/// How a BMC's certificate is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BmcTls {
    /// The system's root certificates.
    #[default]
    System,
    /// The CA certificate(s) in this PEM file.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 (lowercase hex).
    Fingerprint(String),
    /// The first certificate seen, recorded in the state directory.
    FirstUse,
}

/// How seed switches a node on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerDriver {
    /// A real BMC over Redfish.
    Redfish,
    /// A QEMU machine of `seed lab`.
    Qemu,
    /// A person presses the button.
    Manual,
}

impl fmt::Display for PowerDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Redfish => "redfish",
            Self::Qemu => "qemu",
            Self::Manual => "manual",
        })
    }
}

/// A secret held elsewhere. Its Debug output names the place, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file (its first line).
    File(PathBuf),
}

/// Why a secret could not be read. Names where it was looked for, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// The file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The variable or file is empty.
    #[error("{0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Read the secret. Files give their first line, without the line ending.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let (value, place) = match self {
            Self::Env(var) => (
                std::env::var(var).map_err(|_| SecretError::EnvMissing(var.clone()))?,
                format!("environment variable {var}"),
            ),
            Self::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                })?;
                (
                    text.lines().next().unwrap_or_default().to_string(),
                    format!("secret file {}", path.display()),
                )
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(place));
        }
        Ok(Secret(value))
    }
}

/// A secret value. `Debug` and `Display` never show it; only [`Secret::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that must send it (an `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_secret_is_its_first_line_and_is_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bmc");
        std::fs::write(&path, "hunter2\nsecond line\n").unwrap();
        let secret = SecretRef::File(path).resolve().unwrap();
        assert_eq!(secret.expose(), "hunter2");
        assert!(!format!("{secret:?} {secret}").contains("hunter2"));
    }

    #[test]
    fn missing_and_empty_secrets_name_the_place() {
        let err = SecretRef::Env("SEED_TEST_SURELY_UNSET_VAR".into())
            .resolve()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SEED_TEST_SURELY_UNSET_VAR is not set"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, "\n").unwrap();
        let err = SecretRef::File(path.clone()).resolve().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("secret file {} is empty", path.display())
        );
    }
}
