//! The decisions about nodes that read and write the store: which iPXE script a booting machine
//! gets, whose install documents a token opens, what an installer callback does to a node's
//! state, and provisioning itself. The HTTP server and the CLI ask; this decides. Every answer
//! that changes state is committed before it is returned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::agent::inspect::Inspection;
use crate::config::{Config, InstallMethod};
use crate::deploy::{ConfigDrive, DeployPlan, PlannedImage};
use crate::install::{InstallError, Installer, Instance};
use crate::lifecycle::NodeState;
use crate::net::MacAddr;
use crate::store::{Event, NodeRecord, Provisioning, Store, StoreError, now_ms};

use super::decisions::{BootScript, IpxeClient, Provisioner};

/// The event kind recorded when an installed node network-boots again and is handed its local
/// disk: the second boot of an install.
pub const LOCAL_BOOT: &str = "local-boot";

/// The event that says seed is to boot an installed node from its disk once it is off
/// (`provision::supervise`): the last event of such a node until seed did.
pub const AWAITING_DISK_BOOT: &str = "awaiting-disk-boot";

/// Whether seed boots `node` from its disk through its BMC after its agent wrote the image: a
/// BIOS machine (no `BootNext`) whose power driver can set a one-time boot device. A manual
/// node reboots and network-boots; seed then answers its local disk.
pub fn boots_disk_through_bmc(node: &crate::config::Node) -> bool {
    node.firmware == crate::config::Firmware::Bios
        && node.bmc.driver != crate::config::PowerDriver::Manual
}

/// Why a request about a node is refused. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No such node, token or image (404).
    #[error("{0}")]
    NotFound(String),
    /// The token belonged to a node whose install is over (403).
    #[error("{0}")]
    Retired(String),
    /// The node's state does not allow it (409).
    #[error("{0}")]
    Conflict(String),
    /// The node cannot be served as configured (an image missing, no install section) (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed (500).
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// Something else inside seed failed (500).
    #[error("{0}")]
    Internal(String),
    /// The caller may not do this (an unknown machine enlisting from the wrong address) (403).
    #[error("{0}")]
    Refused(String),
    /// What was sent is not acceptable; the message names the field (400).
    #[error("{0}")]
    Invalid(String),
}

impl From<InstallError> for NodeError {
    fn from(e: InstallError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A node's install document, as its NoCloud datasource asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `user-data`: the autoinstall config (SSH keys, password hash).
    UserData,
    /// `meta-data`: instance id and host name.
    MetaData,
    /// `vendor-data`: empty; NoCloud asks for it.
    VendorData,
}

/// One event of the installer's webhook reporter (curtin and subiquity send the same shape).
#[derive(Debug, Clone, PartialEq)]
pub struct InstallerEvent {
    /// `start` or `finish`.
    pub event_type: String,
    /// `subiquity/Install/install/…`.
    pub name: String,
    /// Human text.
    pub description: String,
    /// `SUCCESS`, `WARN` or `FAIL`, on finish events.
    pub result: Option<String>,
}

impl InstallerEvent {
    /// The start of the step that writes the target disk: subiquity's install step (curtin
    /// partitions, formats and unpacks the system under it) or any curtin stage. Before it, a
    /// reboot loses nothing and the installer may be served again; after it, the disk holds a
    /// (perhaps finished) system that only an operator may wipe.
    fn writes_disk(&self) -> bool {
        self.event_type == "start"
            && (self.name == "subiquity/Install/install"
                || self.name.starts_with("subiquity/Install/install/")
                || self.name.starts_with("curtin"))
    }

    /// A finished step that failed. Subiquity reports a failing step with `FAIL` and the
    /// failure travels up to the install itself, so one is enough to call the install failed.
    fn failed(&self) -> bool {
        self.event_type == "finish" && self.result.as_deref() == Some("FAIL")
    }
}

/// What a node's private URLs report.
#[derive(Debug, Clone, PartialEq)]
pub enum Callback {
    /// A webhook event from the installer.
    Event(InstallerEvent),
    /// late-commands: the install finished.
    Installed,
    /// error-commands: the install failed.
    Failed,
    /// cloud-init's phone_home on the first boot from disk; the body, shortened, as detail.
    PhoneHome(String),
}

/// The node decisions over one config and the store.
pub struct Nodes {
    provisioner: Arc<Provisioner>,
    /// The installer of the current config (a reload replaces it with the provisioner's).
    installer: std::sync::RwLock<Arc<Result<Installer, String>>>,
    pub(super) images: images::Catalogue,
    /// The disk images `install.method: image` nodes are deployed with.
    disks: images::disks::DiskCatalogue,
    store: Mutex<Store>,
    /// The store's inventory version the provisioner's recorded MACs were taken at.
    inventory_seen: Mutex<Option<(i64, i64)>>,
    /// When a stranger's request for each node's installer was last recorded (ms): one event a
    /// minute per node, however many requests.
    refusals: Mutex<HashMap<String, i64>>,
    /// Log lines unknown machines cause by enlisting (`seed.enlist`).
    enlist_log: Mutex<crate::loglimit::LogLimit>,
}

/// How often a refused install-script request is recorded per node (ms).
const REFUSAL_EVENT_EVERY_MS: i64 = 60_000;

impl Nodes {
    /// Decisions over `config`, `store` and the image catalogue. A config without an install
    /// section still boots local disks; its nodes just cannot be installed.
    pub fn new(provisioner: Arc<Provisioner>, store: Store, images: images::Catalogue) -> Self {
        let config = provisioner.shared_config();
        Self {
            installer: std::sync::RwLock::new(Arc::new(
                Installer::new(config).map_err(|e| e.to_string()),
            )),
            provisioner,
            // Beside the images directory: `<state_dir>/disks`, where `seed images add-disk`
            // registers them and `/disks/` serves them.
            disks: images::disks::DiskCatalogue::new(images.root().with_file_name("disks")),
            images,
            store: Mutex::new(store),
            inventory_seen: Mutex::new(None),
            refusals: Mutex::default(),
            enlist_log: Mutex::new(crate::loglimit::LogLimit::new(
                10,
                std::time::Duration::from_secs(60),
            )),
        }
    }

    /// The config the decisions are made from (the current one: a reload replaces it).
    pub fn config(&self) -> Arc<Config> {
        self.provisioner.config()
    }

    fn installer(&self) -> Arc<Result<Installer, String>> {
        Arc::clone(
            &self
                .installer
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Records a reload's outcome as seed's own event (`reloaded` or `reload refused`).
    pub fn note_reload(&self, path: &std::path::Path, result: &Result<String, String>) {
        let (kind, detail) = match result {
            Ok(summary) => ("reloaded", format!("config {}: {summary}", path.display())),
            Err(why) => (
                "reload refused",
                format!("config {}: {why}", path.display()),
            ),
        };
        if let Err(e) = self.store().record_event(None, kind, "serve", &detail) {
            tracing::warn!(error = %e, "reload not recorded");
        }
    }

    /// Decides from `config` from now on (`seed serve` on SIGHUP): its installer is built
    /// first (a template that does not render keeps the old config), its nodes are
    /// registered, and machines it adopts (their MACs now a node's) leave the discovered list.
    /// Returns what changed, in words.
    pub fn reload(&self, config: Config) -> Result<String, NodeError> {
        let current = self.config();
        // Sockets, the mirror and the API token were set up at start: those need a restart.
        for (what, same) in [
            (
                "seed",
                format!("{:?}", current.seed) == format!("{:?}", config.seed),
            ),
            (
                "mirror",
                format!("{:?}", current.mirror) == format!("{:?}", config.mirror),
            ),
            (
                "registry",
                format!("{:?}", current.registry) == format!("{:?}", config.registry),
            ),
        ] {
            if !same {
                return Err(NodeError::Conflict(format!(
                    "the `{what}:` section changed: that takes a restart of seed serve; nothing reloaded"
                )));
            }
        }
        let config = Arc::new(config);
        let installer = match Installer::new(Arc::clone(&config)) {
            Ok(installer) => Ok(installer),
            Err(InstallError::NoInstallSection) => Err(InstallError::NoInstallSection.to_string()),
            Err(e) => {
                return Err(NodeError::Conflict(format!(
                    "the install templates do not render: {e}; nothing reloaded"
                )));
            }
        };
        let macs: Vec<MacAddr> = config
            .nodes
            .iter()
            .flat_map(|n| n.macs.iter().chain(n.nics.values()).copied())
            .collect();
        {
            let mut store = self.store();
            store.register_nodes(config.nodes.iter().map(|n| n.name.as_str()), "config")?;
            store.forget_discovered(&macs)?;
        }
        let before: std::collections::BTreeSet<&str> =
            current.nodes.iter().map(|n| n.name.as_str()).collect();
        let after: std::collections::BTreeSet<&str> =
            config.nodes.iter().map(|n| n.name.as_str()).collect();
        let summary = format!(
            "{} nodes ({} new, {} gone)",
            after.len(),
            after.difference(&before).count(),
            before.difference(&after).count()
        );
        *self
            .installer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(installer);
        self.provisioner.replace(config);
        Ok(summary)
    }

    /// The decisions of the current config.
    pub(super) fn provisioner(&self) -> &Provisioner {
        &self.provisioner
    }

    /// The budget of log lines enlisting machines cause.
    pub(super) fn enlist_log(&self) -> MutexGuard<'_, crate::loglimit::LogLimit> {
        self.enlist_log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back an
        // unfinished transaction when it is dropped.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The iPXE script for the machine with `mac`, asked from `peer`, by its node's state: the
    /// installer while it is provisioning (and, bounded, while installing), else its local disk.
    /// The installer carries the node's token, so only the node itself gets it
    /// ([`Provisioner::from_node`]); anyone else who names its MAC gets the local disk and the
    /// node an event. An attempt is a network boot of the node, not a fetch.
    pub fn ipxe_script(
        &self,
        mac: MacAddr,
        peer: IpAddr,
        client: &IpxeClient,
    ) -> Result<String, NodeError> {
        let mut store = self.store();
        let record = match self.provisioner.node_of(mac) {
            Some(node) => store.node(&node.name)?,
            None => None,
        };
        let state = record.as_ref().map(|r| r.state);
        let mut attempts = record.as_ref().map_or(0, |r| r.attempts);
        let new_attempt = record
            .as_ref()
            .is_none_or(|r| self.provisioner.sightings().is_new_attempt(&r.name));
        if !new_attempt {
            // The same boot asks again: still the attempt already counted.
            attempts = attempts.saturating_sub(1);
        }
        let disk_written = record.as_ref().is_some_and(|r| r.disk_at.is_some());
        let decision = self
            .provisioner
            .boot_script(mac, state, attempts, disk_written, client);
        // Whether the machine asking is the node: only the node's own asks may serve its
        // installer, count, fail it, or leave events (a `local-boot` event says the node is
        // back on its disk: a stranger must not be able to say so).
        let stranger = record
            .as_ref()
            .map(|r| self.provisioner.from_node(&r.name, mac, peer))
            .and_then(Result::err);
        if let BootScript::Install { node, .. }
        | BootScript::GiveUp { node }
        | BootScript::Chain { node, .. } = &decision
            && let Some(why) = &stranger
        {
            let why = format!("install script for {mac} {why}: answered the local disk");
            if self.refusal_due(node) {
                tracing::warn!(%node, "{why}");
                store.record_event(Some(node), "refused", "http", &why)?;
            }
            return Ok(ipxe::script::local_disk(&format!(
                "{node}: not this machine's to ask"
            )));
        }
        match decision {
            BootScript::LocalDisk(why) if stranger.is_some() => Ok(ipxe::script::local_disk(&why)),
            BootScript::LocalDisk(why) => {
                // The boot after an install: the node came back through the network and
                // boots its disk. Recorded once, so an operator (and `seed lab`) sees it.
                if let Some(record) = record
                    .as_ref()
                    .filter(|r| r.state.is_under_way() && disk_written)
                {
                    store.record_event(
                        Some(&record.name),
                        "boot",
                        "http",
                        &format!("{mac} network-booted after its installer wrote the disk: local disk, not the installer again"),
                    )?;
                }
                if let Some(record) = record.filter(|r| {
                    matches!(r.state, NodeState::Installed | NodeState::Deployed)
                        && r.last_event.as_ref().is_none_or(|e| e.kind != LOCAL_BOOT)
                }) {
                    store.record_event(
                        Some(&record.name),
                        LOCAL_BOOT,
                        "http",
                        &format!("{mac} network-booted again: local disk"),
                    )?;
                }
                Ok(ipxe::script::local_disk(&why))
            }
            BootScript::Chain { node, binary, chip } => {
                store.record_event(
                    Some(&node),
                    "boot",
                    "http",
                    &format!("{mac}: iPXE `{chip}` is not seed's; chainloading {binary}"),
                )?;
                let config = self.config();
                Ok(ipxe::script::chain(
                    &node,
                    &format!("tftp://{}/{binary}", config.seed.address),
                ))
            }
            BootScript::Enlist { agent_image } => self.enlist_script(&store, mac, &agent_image),
            BootScript::GiveUp { node } => {
                let why = format!(
                    "the installer was served {attempts} times without finishing; giving up"
                );
                store.transition(&node, NodeState::Failed, "http", &why, false)?;
                Ok(ipxe::script::local_disk(&format!("{node} failed: {why}")))
            }
            BootScript::Install { node, attempt } => {
                let Some(record) = store.provisioning(&node)? else {
                    return Err(NodeError::Conflict(format!("{node} has no provisioning")));
                };
                let script = match self.install_script(&node, mac, &record) {
                    Ok(script) => script,
                    Err(why) => {
                        // Booting the disk is safe; the operator sees why in the events.
                        store.record_event(Some(&node), "boot", "http", &why)?;
                        return Ok(ipxe::script::local_disk(&format!(
                            "{node} cannot be installed: {why}"
                        )));
                    }
                };
                if new_attempt {
                    store.count_attempt(&node)?;
                    self.provisioner.sightings().attempt_counted(&node);
                }
                store.record_event(
                    Some(&node),
                    "boot",
                    "http",
                    &format!(
                        "installer served to {mac} (attempt {attempt}, iPXE {})",
                        client
                            .chip
                            .as_deref()
                            .filter(|c| !c.contains('$'))
                            .unwrap_or("unknown")
                    ),
                )?;
                Ok(script)
            }
        }
    }

    /// Whether a refusal for `node` is recorded now (at most once a minute per node).
    fn refusal_due(&self, node: &str) -> bool {
        let now = now_ms();
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = refusals
            .get(node)
            .is_none_or(|last| now - last >= REFUSAL_EVENT_EVERY_MS);
        if due {
            refusals.insert(node.to_string(), now);
        }
        due
    }

    fn install_script(
        &self,
        node: &str,
        mac: MacAddr,
        record: &Provisioning,
    ) -> Result<String, String> {
        let config = self.config();
        let node = config
            .node(node)
            .ok_or_else(|| format!("{node} is not in the config"))?;
        if let Err(e) = self.installer().as_ref() {
            return Err(e.clone());
        }
        let boots = match node.method {
            InstallMethod::Autoinstall => &node.image,
            InstallMethod::Image => &node.agent_image,
        };
        let image = self
            .images
            .get(boots)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("image {boots} is not registered (seed images add {boots} …)")
            })?;
        let base = format!("{}/images/{}", config.seed.url, image.name);
        let mac_hexhyp = mac.hexhyp();
        let kernel_url = format!("{base}/{}", image.kernel);
        let initrd_url = format!("{base}/{}", image.initrd);
        // The image's kernel arguments, then the node's.
        let args: Vec<String> = image
            .kernel_args
            .iter()
            .chain(&node.kernel_args)
            .cloned()
            .collect();
        if node.method == InstallMethod::Image {
            return Ok(ipxe::script::deploy(&ipxe::script::Deploy {
                node: &node.name,
                mac_hexhyp: &mac_hexhyp,
                kernel_url: &kernel_url,
                initrd_url: &initrd_url,
                seed_url: &config.seed.url,
                token: Some(&record.token),
                console: node.console.as_deref(),
                args: &args,
            }));
        }
        let iso_url = image.iso.as_ref().map(|iso| format!("{base}/{iso}"));
        let datasource_url = format!("{}/nodes/{}/", config.seed.url, record.token);
        Ok(ipxe::script::install(&ipxe::script::Install {
            node: &node.name,
            mac_hexhyp: &mac_hexhyp,
            kernel_url: &kernel_url,
            initrd_url: &initrd_url,
            iso_url: iso_url.as_deref(),
            datasource_url: &datasource_url,
            console: node.console.as_deref(),
            installer_args: &args,
            installed_args: &[],
        }))
    }

    /// A node's install document, opened by its token. Only while the node installs: the
    /// user-data holds SSH keys and password hashes, and the token is retired once it is done.
    pub fn document(&self, token: &str, document: Document) -> Result<String, NodeError> {
        let record = self.by_token(token)?;
        if !record.state.is_under_way() {
            return Err(NodeError::Retired(format!(
                "{} is {}; its install documents are no longer served",
                record.node, record.state
            )));
        }
        let documents = self.rendered(&record)?;
        Ok(match document {
            Document::UserData => documents.user_data,
            Document::MetaData => documents.meta_data,
            Document::VendorData => String::new(),
        })
    }

    /// The documents of the provisioning `record`: its config, what the store recorded of its
    /// hardware and boot MAC, its token and instance id.
    fn rendered(&self, record: &Provisioning) -> Result<autoinstall::Documents, NodeError> {
        let installer = self.installer();
        let installer = installer
            .as_ref()
            .as_ref()
            .map_err(|e| NodeError::Unavailable(e.clone()))?;
        let (hardware, boot_mac) = {
            let store = self.store();
            (
                store.inventory(&record.node)?,
                store.leased_mac(&record.node)?,
            )
        };
        let instance = Instance {
            hardware,
            boot_mac,
            ..Instance::new(record.token.clone(), record.instance_id.clone())
        };
        Ok(installer.documents(&record.node, &instance)?)
    }

    /// The deploy plan of the node whose token this is (`install.method: image`): the disk
    /// image, the disk rule, the wipe policy and the config drive. Only while its install is
    /// under way: it holds the same secrets as the install documents.
    pub fn deploy_plan(&self, token: &str) -> Result<DeployPlan, NodeError> {
        let record = self.by_token(token)?;
        if !record.state.is_under_way() {
            return Err(NodeError::Retired(format!(
                "{} is {}; its deploy plan is no longer served",
                record.node, record.state
            )));
        }
        let config = self.config();
        let node = config
            .node(&record.node)
            .ok_or_else(|| NodeError::NotFound(format!("{} is not in the config", record.node)))?;
        if node.method != InstallMethod::Image {
            return Err(NodeError::NotFound(format!(
                "{} is installed by autoinstall, not deployed from a disk image",
                node.name
            )));
        }
        let image = self
            .disks
            .get(&node.image)
            .map_err(|e| NodeError::Unavailable(e.to_string()))?
            .ok_or_else(|| {
                NodeError::Unavailable(format!(
                    "disk image {} is not registered (seed images add-disk)",
                    node.image
                ))
            })?;
        let documents = self.rendered(&record)?;
        Ok(DeployPlan {
            node: node.name.clone(),
            image: PlannedImage {
                url: format!("{}/disks/{}/{}", config.seed.url, image.name, image.file),
                name: image.name,
                size: image.size,
                sha256: image.sha256,
            },
            disk: crate::disk::subiquity_match(&node.disk),
            wipe: node.wipe,
            discard: node.discard,
            power_off: boots_disk_through_bmc(node),
            config_drive: ConfigDrive {
                user_data: documents.cloud_config,
                meta_data: documents.meta_data,
                network_config: documents.netplan,
            },
        })
    }

    /// What an installer callback does to its node. Accepted while the node installs and, for a
    /// grace period, after it is deployed or failed (the installer reports its last steps after
    /// `installed`); then the token is retired.
    pub fn report(&self, token: &str, report: Callback) -> Result<NodeState, NodeError> {
        let record = self.by_token(token)?;
        let node = record.node.as_str();
        let grace_ms = i64::try_from(self.config().seed.lifecycle.callback_grace_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let active = matches!(
            record.state,
            NodeState::Provisioning | NodeState::Installing | NodeState::Installed
        );
        let in_grace = matches!(record.state, NodeState::Deployed | NodeState::Failed)
            && now_ms() - record.updated_at < grace_ms;
        if !active && !in_grace {
            return Err(NodeError::Retired(format!(
                "{node} is {}; its token no longer accepts reports",
                record.state
            )));
        }
        let mut store = self.store();
        let state = record.state;
        let to = match &report {
            Callback::Event(event) => {
                let result = event
                    .result
                    .as_deref()
                    .map_or_else(String::new, |r| format!(" [{r}]"));
                let detail = format!(
                    "{} {}: {}{result}",
                    event.event_type, event.name, event.description
                );
                store.record_event(Some(node), "installer", "installer", &detail)?;
                if event.writes_disk() {
                    store.mark_disk_written(
                        node,
                        "installer",
                        &format!(
                            "{} began: the installer writes the disk; a network boot gets the local disk from now on (reinstall: seed provision --force)",
                            event.name
                        ),
                    )?;
                }
                if event.failed() {
                    Some((NodeState::Failed, format!("{} failed", event.name)))
                } else if state == NodeState::Provisioning {
                    Some((NodeState::Installing, format!("first event {}", event.name)))
                } else {
                    None
                }
            }
            Callback::Installed => Some((NodeState::Installed, "late-commands reported".into())),
            Callback::Failed => Some((NodeState::Failed, "error-commands reported".into())),
            Callback::PhoneHome(body) => {
                store.record_event(Some(node), "phone-home", "installed system", body)?;
                if state.is_under_way() {
                    // The installed callback was lost; the system booting from its disk says
                    // more than it would have.
                    store.transition(
                        node,
                        NodeState::Installed,
                        "installed system",
                        "phoned home before the installed callback arrived",
                        false,
                    )?;
                }
                Some((NodeState::Deployed, "first boot from disk".into()))
            }
        };
        let Some((to, detail)) = to else {
            return Ok(state);
        };
        let current = store.node(node)?.map_or(state, |n| n.state);
        if !active || !current.can_become(to, false) {
            // Late or out-of-order callbacks (an installed callback after a timeout) are kept
            // as events; they do not move a finished node.
            if current != to {
                store.record_event(
                    Some(node),
                    "ignored",
                    "installer",
                    &format!("{node} is {current}; not moved to {to} ({detail})"),
                )?;
            }
            return Ok(current);
        }
        store.transition(node, to, "installer", &detail, false)?;
        if to == NodeState::Installed
            && let Some(n) = self.config().node(node)
            && n.method == InstallMethod::Image
            && boots_disk_through_bmc(n)
        {
            // The agent powers the node off now; supervise boots its disk once through the BMC.
            store.record_event(
                Some(node),
                AWAITING_DISK_BOOT,
                "seed",
                "the agent powers it off; seed boots it from its disk once (BIOS has no BootNext)",
            )?;
        }
        Ok(to)
    }

    /// Installed nodes seed is to boot from their disk ([`AWAITING_DISK_BOOT`] is their last
    /// event), with when that was asked (ms).
    pub fn awaiting_disk_boot(&self) -> Result<Vec<(String, i64)>, NodeError> {
        Ok(self
            .store()
            .nodes()?
            .into_iter()
            .filter(|r| r.state == NodeState::Installed)
            .filter_map(|r| {
                r.last_event
                    .filter(|e| e.kind == AWAITING_DISK_BOOT)
                    .map(|e| (r.name, e.at))
            })
            .collect())
    }

    /// What seed's agent last found on `name`, and when (ms).
    pub fn inspection(&self, name: &str) -> Result<Option<(i64, Inspection)>, NodeError> {
        Ok(self.store().inspection(name)?)
    }

    /// Record what seed's agent found on the node whose token this is. Only while its
    /// install is under way (the agent runs before the disk is written): a retired token
    /// records nothing. The report is checked against [`Inspection::check`]'s bounds first.
    pub fn inspected(&self, token: &str, inspection: &Inspection) -> Result<String, NodeError> {
        let record = self.by_token(token)?;
        let node = record.node.as_str();
        if !record.state.is_under_way() {
            return Err(NodeError::Retired(format!(
                "{node} is {}; its token no longer accepts reports",
                record.state
            )));
        }
        let summary = inspection.summary();
        self.store().record_inspection(node, inspection, &summary)?;
        Ok(summary)
    }

    /// Set a node to provisioning: a new token and instance id unless one is under way.
    /// `--force` (or the API's `force`) reinstalls a finished or failed node. The image must be
    /// registered: a node set to provisioning without one would only boot its disk.
    pub fn provision(
        &self,
        name: &str,
        source: &str,
        force: bool,
    ) -> Result<Provisioning, NodeError> {
        let config = self.config();
        let node = config
            .node(name)
            .ok_or_else(|| NodeError::NotFound(format!("no node named {name} in the config")))?;
        if let Err(e) = self.installer().as_ref() {
            return Err(NodeError::Unavailable(format!(
                "{name} cannot be installed: {e}"
            )));
        }
        let mut store = self.store();
        store.register_nodes([name], "config")?;
        // The image is looked up under the store's write lock: `seed images remove` takes the
        // same lock to check that no node is installing from it, so it cannot disappear
        // between this check and the node becoming `provisioning`.
        let registered = || {
            let boots = match node.method {
                InstallMethod::Autoinstall => &node.image,
                InstallMethod::Image => &node.agent_image,
            };
            match self.images.get(boots) {
                Ok(Some(_)) => {}
                Ok(None) if node.method == InstallMethod::Image => {
                    return Err(format!(
                        "{name} is deployed by seed's agent, image {boots}, which is not registered (seed agent ramdisk --kernel-dir … --out agent.gz; seed images add {boots} --kernel … --initrd agent.gz)"
                    ));
                }
                Ok(None) => {
                    return Err(format!(
                        "{name} installs image {boots}, which is not registered (seed images add {boots} --kernel … --initrd …)"
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
            if node.method == InstallMethod::Image {
                match self.disks.get(&node.image) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(format!(
                            "{name} is deployed with disk image {}, which is not registered (seed images add-disk {} --file …)",
                            node.image, node.image
                        ));
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        };
        store
            .provision_if(name, source, force, registered)
            .map_err(|e| match e {
                StoreError::IllegalTransition { .. } => NodeError::Conflict(e.to_string()),
                StoreError::Refused(why) => NodeError::Unavailable(why),
                e => NodeError::Store(e),
            })
    }

    /// Takes back the provisioning `p` started when its machine could not be started: the node
    /// returns to the state it had, with `why` in the event. Returns that state, or `None` when
    /// the provisioning was not this call's or has moved on (the installer was served).
    pub fn roll_back(
        &self,
        p: &Provisioning,
        source: &str,
        why: &str,
    ) -> Result<Option<NodeState>, NodeError> {
        let Some(previous) = p.previous.filter(|_| p.started) else {
            return Ok(None);
        };
        let done = self
            .store()
            .roll_back(&p.node, &p.instance_id, previous, source, why)?;
        Ok(done.then_some(previous))
    }

    /// Whether the store answers: its lock can be taken and a query runs. The service
    /// watchdog is fed only while this holds, so a wedged store (a lock never released, a
    /// disk that stopped answering) gets seed restarted instead of silently answering nothing.
    pub fn store_answers(&self) -> Result<(), NodeError> {
        self.store().schema_version()?;
        Ok(())
    }

    /// Hands the provisioner the MACs `seed inventory` recorded, when they changed since the
    /// last call (the first call always): `Some(recognised MACs)` when taken, `None` when
    /// nothing changed. `seed serve` calls it at start and every few seconds, so an inventory
    /// taken while it runs is answered in DHCP without a restart.
    pub fn refresh_inventory(&self) -> Result<Option<usize>, NodeError> {
        let (version, inventories) = {
            let store = self.store();
            let version = store.inventory_version()?;
            let seen = self
                .inventory_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *seen == Some(version) {
                return Ok(None);
            }
            (version, store.inventories()?)
        };
        let hardware = inventories
            .into_iter()
            .map(|(node, (_, hw))| (node, hw))
            .collect();
        let count = self.provisioner.set_recorded(&hardware);
        *self
            .inventory_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(version);
        Ok(Some(count))
    }

    /// Fail every active node without a state change or event for the configured progress
    /// timeout; returns their names.
    pub fn fail_stalled(&self) -> Result<Vec<String>, NodeError> {
        let lifecycle = self.config().seed.lifecycle;
        let checks: [(&[NodeState], u64, &str); 2] = [
            (
                &NodeState::UNDER_WAY,
                lifecycle.progress_timeout_secs,
                "no progress",
            ),
            (
                &[NodeState::Installed],
                lifecycle.phone_home_timeout_secs,
                "installed, but no phone-home from its disk",
            ),
        ];
        let mut store = self.store();
        let mut failed = Vec::new();
        for (states, timeout, why) in checks {
            if timeout == 0 {
                continue;
            }
            let timeout_ms = i64::try_from(timeout)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            let stalled = store.stalled(states, now_ms().saturating_sub(timeout_ms))?;
            for name in stalled {
                // Where it stopped: the last thing that happened to it.
                let last = store
                    .node(&name)?
                    .and_then(|n| n.last_event)
                    .map(|e| {
                        let detail: String = e.detail.chars().take(120).collect();
                        format!("; last: {} ({}): {detail}", e.kind, e.source)
                    })
                    .unwrap_or_default();
                store.transition(
                    &name,
                    NodeState::Failed,
                    "seed",
                    &format!("{why} for {timeout} s{last}"),
                    false,
                )?;
                failed.push(name);
            }
        }
        Ok(failed)
    }

    /// The provisioning nodes seed started, with how far each got (for [`super::supervise`]).
    pub fn watched(&self) -> Result<Vec<crate::store::Watched>, NodeError> {
        Ok(self.store().watched()?)
    }

    /// Records that seed started `name` through its power driver (again: with why).
    pub fn mark_started(&self, name: &str, again: Option<(&str, &str)>) -> Result<(), NodeError> {
        Ok(self.store().mark_started(name, again)?)
    }

    /// Registers the config's nodes in the store (new ones are `ready`); returns how many
    /// were new.
    pub fn register_config(&self) -> Result<usize, NodeError> {
        let config = self.config();
        Ok(self
            .store()
            .register_nodes(config.nodes.iter().map(|n| n.name.as_str()), "config")?)
    }

    /// Records an event about `name`.
    pub fn note(
        &self,
        name: &str,
        kind: &str,
        source: &str,
        detail: &str,
    ) -> Result<(), NodeError> {
        self.store()
            .record_event(Some(name), kind, source, detail)?;
        Ok(())
    }

    /// Fails `name` for `why` (seed's own judgement, e.g. a missed boot phase).
    pub fn fail(&self, name: &str, why: &str) -> Result<(), NodeError> {
        self.store()
            .transition(name, NodeState::Failed, "seed", why, false)?;
        Ok(())
    }

    /// Fails `name` for `why` if its install is still under way (a deadline `source` set
    /// passed: `seed provision --timeout`); true when it was failed.
    pub fn fail_if_under_way(
        &self,
        name: &str,
        source: &str,
        why: &str,
    ) -> Result<bool, NodeError> {
        let mut store = self.store();
        let under_way = store.node(name)?.is_some_and(|n| n.state.is_under_way());
        if under_way {
            store.transition(name, NodeState::Failed, source, why, false)?;
        }
        Ok(under_way)
    }

    /// Where `name` stands since it was started at `since_ms` (for `seed provision` and `seed
    /// lab run`, which follow it), with its record; `None` for a node not in the store.
    pub fn standing(
        &self,
        name: &str,
        since_ms: i64,
    ) -> Result<Option<(NodeRecord, Standing)>, NodeError> {
        let store = self.store();
        let Some(record) = store.node(name)? else {
            return Ok(None);
        };
        let standing = match record.state {
            NodeState::Failed => Standing::Failed,
            NodeState::Installed | NodeState::Deployed => {
                // The network boot after the install, answered with the local disk.
                let back = store
                    .events(Some(name), 20)?
                    .iter()
                    .any(|e| e.kind == LOCAL_BOOT && e.at >= since_ms);
                if back {
                    Standing::OnItsDisk
                } else {
                    Standing::Installed
                }
            }
            _ => Standing::UnderWay,
        };
        Ok(Some((record, standing)))
    }

    /// The machines seen in DHCP that are not in the config.
    pub fn discovered(&self) -> Result<Vec<crate::store::Discovered>, NodeError> {
        Ok(self.store().discovered()?)
    }

    /// One discovered machine and, once enlisted, what seed's agent found on it.
    pub fn discovered_one(
        &self,
        mac: MacAddr,
    ) -> Result<Option<(crate::store::Discovered, Option<Inspection>)>, NodeError> {
        Ok(self.store().discovered_one(mac)?)
    }

    /// Every node in the store, with its newest event.
    pub fn list(&self) -> Result<Vec<NodeRecord>, NodeError> {
        Ok(self.store().nodes()?)
    }

    /// How many nodes are in each state (states with none left out).
    pub fn count_by_state(&self) -> Result<Vec<(NodeState, u64)>, NodeError> {
        let mut counts: Vec<(NodeState, u64)> = Vec::new();
        for record in self.store().nodes()? {
            match counts.iter_mut().find(|(s, _)| *s == record.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((record.state, 1)),
            }
        }
        Ok(counts)
    }

    /// One node.
    pub fn get(&self, name: &str) -> Result<NodeRecord, NodeError> {
        self.store()
            .node(name)?
            .ok_or_else(|| NodeError::NotFound(format!("no node named {name}")))
    }

    /// A node's newest `limit` events, oldest first.
    pub fn events(&self, name: &str, limit: u32) -> Result<Vec<Event>, NodeError> {
        self.events_before(name, limit, None)
    }

    /// One page of `name`'s events: the `limit` before id `before`, oldest first.
    pub fn events_before(
        &self,
        name: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<Event>, NodeError> {
        let store = self.store();
        if store.node(name)?.is_none() {
            return Err(NodeError::NotFound(format!("no node named {name}")));
        }
        Ok(store.events_before(Some(name), limit, before)?)
    }

    fn by_token(&self, token: &str) -> Result<Provisioning, NodeError> {
        // Tokens are 64 hex digits; anything else is not worth a query.
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NodeError::NotFound("no such token".into()));
        }
        self.store()
            .by_token(token)?
            .ok_or_else(|| NodeError::NotFound("no such token".into()))
    }
}

/// Records an event about `name` in the store of `state_dir` when there is one (a CLI command
/// that may run without `seed serve`, e.g. `seed power`): false when there is none.
pub fn note_in(
    state_dir: &std::path::Path,
    name: &str,
    kind: &str,
    source: &str,
    detail: &str,
) -> Result<bool, NodeError> {
    let Some(mut store) = Store::open_existing(state_dir)? else {
        return Ok(false);
    };
    store.register_nodes([name], "config")?;
    store.record_event(Some(name), kind, source, detail)?;
    Ok(true)
}

/// Where a started node stands ([`Nodes::standing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not done: its install is under way, or it is not marked yet.
    UnderWay,
    /// Installed (or deployed).
    Installed,
    /// Installed, and since its start it network-booted again and was sent to its disk.
    OnItsDisk,
    /// Failed.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CMP3: &str = "3c:ec:ef:10:00:23";

    /// The example rack with `grace_secs` of callback grace, a store and a registered image.
    fn nodes(grace_secs: u64) -> (tempfile::TempDir, Nodes) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::parse(crate::config::EXAMPLE, Path::new("x.yaml")).unwrap();
        config.seed.lifecycle.callback_grace_secs = grace_secs;
        let mut store = Store::open(&dir.path().join("state")).unwrap();
        store
            .register_nodes(config.nodes.iter().map(|n| n.name.as_str()), "test")
            .unwrap();
        for name in ["vmlinuz", "initrd"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let images = images::Catalogue::new(dir.path().join("images"));
        images
            .add(
                &images::NewImage {
                    name: "ubuntu-24.04".into(),
                    kernel: dir.path().join("vmlinuz"),
                    initrd: dir.path().join("initrd"),
                    iso: None,
                    kernel_args: vec![],
                },
                false,
            )
            .unwrap();
        let provisioner = Arc::new(Provisioner::new(Arc::new(config)));
        (dir, Nodes::new(provisioner, store, images))
    }

    /// The address cmp3 asks from: the one seed leases it.
    fn cmp3_at(nodes: &Nodes) -> IpAddr {
        IpAddr::V4(nodes.provisioner.now().boot_addresses("cmp3")[0])
    }

    fn event(event_type: &str, result: Option<&str>) -> Callback {
        Callback::Event(InstallerEvent {
            event_type: event_type.into(),
            name: "subiquity/Install".into(),
            description: "install".into(),
            result: result.map(str::to_string),
        })
    }

    /// A lost installed callback (seed down at the end of the install) must not reinstall the
    /// node: once subiquity's install step began, a network boot gets the local disk, and the
    /// installed system's phone-home still finishes the node.
    #[test]
    fn once_the_installer_writes_the_disk_a_network_boot_never_gets_the_installer() {
        let (_dir, nodes) = nodes(3600);
        let mac: MacAddr = CMP3.parse().unwrap();
        let token = nodes.provision("cmp3", "test", false).unwrap().token;
        let script = nodes
            .ipxe_script(mac, cmp3_at(&nodes), &IpxeClient::default())
            .unwrap();
        assert!(script.contains("kernel"), "first boot installs: {script}");
        let step = |event_type: &str| {
            Callback::Event(InstallerEvent {
                event_type: event_type.into(),
                name: "subiquity/Install/install".into(),
                description: "installing system".into(),
                result: None,
            })
        };
        // Before the install step, a reboot may be served the installer again.
        nodes.report(&token, event("start", None)).unwrap();
        let script = nodes
            .ipxe_script(mac, cmp3_at(&nodes), &IpxeClient::default())
            .unwrap();
        assert!(script.contains("kernel"), "{script}");
        nodes.report(&token, step("start")).unwrap();
        let record = nodes.get("cmp3").unwrap();
        assert!(record.disk_at.is_some());
        assert_eq!(record.last_event.unwrap().kind, "disk");
        let script = nodes
            .ipxe_script(mac, cmp3_at(&nodes), &IpxeClient::default())
            .unwrap();
        assert!(!script.contains("kernel"), "{script}");
        assert!(script.contains("its installer wrote the disk"), "{script}");
        let events = nodes.events("cmp3", 50).unwrap();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.detail.contains("installer served"))
                .count(),
            2,
            "served twice, before the disk was written"
        );
        // The installed system phones home: installed (implied) and deployed.
        nodes
            .report(&token, Callback::PhoneHome("instance_id=x".into()))
            .unwrap();
        assert_eq!(nodes.get("cmp3").unwrap().state, NodeState::Deployed);
        // A new provisioning (--force) starts with a clean slate.
        nodes.provision("cmp3", "test", true).unwrap();
        assert!(nodes.get("cmp3").unwrap().disk_at.is_none());
        let script = nodes
            .ipxe_script(mac, cmp3_at(&nodes), &IpxeClient::default())
            .unwrap();
        assert!(script.contains("kernel"), "{script}");
    }

    #[test]
    fn a_late_installed_callback_does_not_revive_a_failed_node() {
        let (_dir, nodes) = nodes(3600);
        let token = nodes.provision("cmp3", "test", false).unwrap().token;
        assert_eq!(
            nodes.report(&token, event("start", None)).unwrap(),
            NodeState::Installing
        );
        assert_eq!(
            nodes.report(&token, event("finish", Some("FAIL"))).unwrap(),
            NodeState::Failed
        );
        // Within the grace period the callback is taken, kept as an event, and changes nothing.
        assert_eq!(
            nodes.report(&token, Callback::Installed).unwrap(),
            NodeState::Failed
        );
        let last = nodes.get("cmp3").unwrap().last_event.unwrap();
        assert_eq!(last.kind, "ignored");
        assert!(
            last.detail
                .contains("cmp3 is failed; not moved to installed"),
            "{}",
            last.detail
        );
        // A failed node boots its disk.
        let script = nodes
            .ipxe_script(
                CMP3.parse().unwrap(),
                cmp3_at(&nodes),
                &IpxeClient::default(),
            )
            .unwrap();
        assert!(
            script.contains("cmp3 is failed, not provisioning"),
            "{script}"
        );
    }

    #[test]
    fn after_the_grace_period_the_token_is_retired() {
        let (_dir, nodes) = nodes(0);
        let token = nodes.provision("cmp3", "test", false).unwrap().token;
        assert!(nodes.document(&token, Document::UserData).is_ok());
        nodes.report(&token, Callback::Installed).unwrap();
        assert!(matches!(
            nodes.document(&token, Document::UserData),
            Err(NodeError::Retired(_))
        ));
        // Installed still takes reports (the phone home); deployed with no grace does not.
        assert_eq!(
            nodes
                .report(&token, Callback::PhoneHome("hostname=cmp3".into()))
                .unwrap(),
            NodeState::Deployed
        );
        assert!(matches!(
            nodes.report(&token, event("finish", Some("SUCCESS"))),
            Err(NodeError::Retired(_))
        ));
        assert!(matches!(
            nodes.report(&"f".repeat(64), Callback::Installed),
            Err(NodeError::NotFound(_))
        ));
    }

    #[test]
    fn provisioning_needs_a_known_node_and_its_image() {
        let (dir, nodes) = nodes(3600);
        std::fs::remove_dir_all(dir.path().join("images/ubuntu-24.04")).unwrap();
        let err = nodes.provision("cmp3", "test", false).unwrap_err();
        assert!(matches!(err, NodeError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("image ubuntu-24.04"), "{err}");
        assert!(matches!(
            nodes.provision("nosuch", "test", false),
            Err(NodeError::NotFound(_))
        ));
    }
}
