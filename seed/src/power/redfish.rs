//! The `redfish` power driver: a node's BMC over [`crate::redfish`]. Each action connects,
//! acts and gives its session back.

use std::time::Duration;

use super::{Inventory, Power, PowerError, PowerState};
use std::path::Path;

use crate::config::{BmcTls, Firmware, NetBoot, Node};
use crate::redfish::tls::{self, Trust};
use crate::redfish::{Client, Endpoint, RedfishError, ResetKind, System};

/// Per-call timeout: BMCs answer in well under a second when healthy, some take seconds.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a busy BMC (503) is retried in all.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// One node's BMC.
pub struct RedfishPower {
    node: String,
    endpoint: Result<Endpoint, String>,
    trust: Trust,
    system_hint: Option<String>,
    macs: Vec<String>,
    firmware: Firmware,
    boot: NetBoot,
}

impl RedfishPower {
    /// The BMC of `node` (its credentials are read now; a missing one fails each action).
    /// A first-use pin is recorded under `state_dir`.
    pub fn new(node: &Node, state_dir: &Path) -> Self {
        let trust = match &node.bmc.tls {
            BmcTls::System => Trust::System,
            BmcTls::CaFile(path) => Trust::CaFile(path.clone()),
            BmcTls::Fingerprint(hex) => Trust::Pinned(hex.clone()),
            BmcTls::FirstUse => Trust::FirstUse(
                state_dir
                    .join("bmc-pins")
                    .join(format!("{}.sha256", node.name)),
            ),
        };
        let endpoint = match (&node.bmc.username, &node.bmc.password) {
            (Some(username), Some(password)) => password
                .resolve()
                .map(|password| Endpoint {
                    base: node.bmc.endpoint.clone(),
                    username: username.clone(),
                    password,
                    timeout: CALL_TIMEOUT,
                    retry_for: RETRY_FOR,
                })
                .map_err(|e| format!("BMC password: {e}")),
            _ => Err("the redfish driver needs bmc.username and bmc.password".into()),
        };
        Self {
            node: node.name.clone(),
            endpoint,
            trust,
            system_hint: node.bmc.system.clone(),
            macs: node.macs.iter().map(ToString::to_string).collect(),
            firmware: node.firmware,
            boot: node.bmc.boot,
        }
    }

    fn failed(&self, action: &'static str, why: impl std::fmt::Display) -> PowerError {
        PowerError::Failed {
            node: self.node.clone(),
            action,
            why: why.to_string(),
        }
    }

    /// Connects and finds the node's system.
    fn connect(&self, action: &'static str) -> Result<(Client, String, System), PowerError> {
        let endpoint = self.endpoint.clone().map_err(|e| self.failed(action, e))?;
        let http = tls::client(&self.trust).map_err(|e| self.failed(action, e))?;
        let client = Client::connect(endpoint, http).map_err(|e| self.redfish(action, e))?;
        let (path, system) = client
            .system(self.system_hint.as_deref(), &self.macs)
            .map_err(|e| self.redfish(action, e))?;
        Ok((client, path, system))
    }

    fn redfish(&self, action: &'static str, e: RedfishError) -> PowerError {
        self.failed(action, e)
    }
}

impl Power for RedfishPower {
    fn status(&self) -> Result<PowerState, PowerError> {
        let (_, _, system) = self.connect("power status")?;
        // `PoweringOn` runs already; `PoweringOff`, `Paused` and vendor states do not boot.
        Ok(match system.power_state.as_deref() {
            Some("On" | "PoweringOn") => PowerState::On,
            _ => PowerState::Off,
        })
    }

    fn on(&self) -> Result<(), PowerError> {
        let (client, _, system) = self.connect("power on")?;
        if matches!(system.power_state.as_deref(), Some("On" | "PoweringOn")) {
            return Ok(());
        }
        client
            .reset(&system, ResetKind::On)
            .map_err(|e| self.redfish("power on", e))
    }

    fn off(&self) -> Result<(), PowerError> {
        let (client, _, system) = self.connect("power off")?;
        client
            .reset(&system, ResetKind::ForceOff)
            .map_err(|e| self.redfish("power off", e))
    }

    fn cycle(&self) -> Result<(), PowerError> {
        let (client, _, system) = self.connect("power cycle")?;
        let kind = match system.power_state.as_deref() {
            Some("On" | "PoweringOn") => ResetKind::ForceRestart,
            _ => ResetKind::On,
        };
        client
            .reset(&system, kind)
            .map_err(|e| self.redfish("power cycle", e))
    }

    fn network_boot_once(&self) -> Result<(), PowerError> {
        let (client, path, _) = self.connect("boot override")?;
        let mode = match self.firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "Legacy",
        };
        client
            .boot_once(&path, self.boot.redfish_target(), Some(mode))
            .map_err(|e| self.redfish("boot override", e))
    }

    fn inventory(&self) -> Result<Inventory, PowerError> {
        let action = "read the system";
        let (client, _, system) = self.connect(action)?;
        let secure_boot = client
            .secure_boot(&system)
            .map_err(|e| self.redfish(action, e))?;
        let macs = client.macs(&system).map_err(|e| self.redfish(action, e))?;
        Ok(Inventory {
            power: system.power_state.clone().unwrap_or_default(),
            boot_targets: system.boot.allowed_targets.clone(),
            boot_modes: system.boot.allowed_modes.clone(),
            secure_boot: secure_boot.and_then(|s| s.on()),
            memory_gib: system.memory.total_gib,
            id: Some(system.id.clone()).filter(|i| !i.is_empty()),
            uuid: system.uuid.clone(),
            serial: system.serial.clone(),
            macs,
        })
    }
}
