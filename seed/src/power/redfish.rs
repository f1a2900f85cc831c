//! The `redfish` power driver: a node's BMC over [`crate::redfish`]. The first action logs
//! in; the controller's later actions reuse the session, given back when it is dropped.

use std::sync::Mutex;
use std::time::Duration;

use super::driver::{Inventory, Outcome, Power, PowerError, PowerState, Reports};
use std::path::Path;

use crate::config::{BmcTls, Firmware, NetBoot, Node};
use crate::redfish::tls::{self, Trust};
use crate::redfish::{Client, Endpoint, RedfishError, ResetKind, System};

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
    /// The session of the first action, reused by the next ones.
    session: Mutex<Option<(Client, String)>>,
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
                    timeout: node.bmc.timeout,
                    action_timeout: node.bmc.action_timeout,
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
            session: Mutex::new(None),
        }
    }

    fn failed(&self, action: &'static str, why: impl std::fmt::Display) -> PowerError {
        PowerError::Failed {
            node: self.node.clone(),
            action,
            why: why.to_string(),
        }
    }

    /// Runs `f` with a logged-in client, the system's path and its current resource. The
    /// first action connects and finds the system; later ones reuse that session (a
    /// provision's preflight, boot override and restart are one session, given back when the
    /// controller is dropped) and read the system again. A session the BMC has dropped
    /// (401) is opened again once.
    fn with_system<T>(
        &self,
        action: &'static str,
        f: impl Fn(&Client, &str, &System) -> Result<T, RedfishError>,
    ) -> Result<T, PowerError> {
        let mut cached = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let reused = cached.is_some();
        let (client, path) = match cached.take() {
            Some(session) => session,
            None => self.connect(action)?,
        };
        let attempt = client
            .get_json::<System>(&path, "read the system")
            .and_then(|system| f(&client, &path, &system));
        match attempt {
            Err(RedfishError::Denied { .. }) if reused => {
                drop(client);
                let (client, path) = self.connect(action)?;
                let result = client
                    .get_json::<System>(&path, "read the system")
                    .and_then(|system| f(&client, &path, &system))
                    .map_err(|e| self.redfish(action, e));
                *cached = Some((client, path));
                result
            }
            other => {
                *cached = Some((client, path));
                other.map_err(|e| self.redfish(action, e))
            }
        }
    }

    /// Connects and finds the node's system.
    fn connect(&self, action: &'static str) -> Result<(Client, String), PowerError> {
        let endpoint = self.endpoint.clone().map_err(|e| self.failed(action, e))?;
        let http = tls::client(&self.trust).map_err(|e| self.failed(action, e))?;
        let client = Client::connect(endpoint, http).map_err(|e| self.redfish(action, e))?;
        let (path, _) = client
            .system(self.system_hint.as_deref(), &self.macs)
            .map_err(|e| self.redfish(action, e))?;
        Ok((client, path))
    }

    fn redfish(&self, action: &'static str, e: RedfishError) -> PowerError {
        self.failed(action, e)
    }
}

/// `switch_off`'s answer: whether the machine was off already.
fn outcome(was_off: bool) -> Outcome {
    if was_off {
        Outcome::Already
    } else {
        Outcome::Done
    }
}

/// `PoweringOn` runs already; `PoweringOff`, `Paused` and vendor states do not boot.
fn runs(system: &System) -> bool {
    matches!(system.power_state.as_deref(), Some("On" | "PoweringOn"))
}

impl Power for RedfishPower {
    fn status(&self) -> Result<PowerState, PowerError> {
        self.with_system("power status", |_, _, system| {
            Ok(if runs(system) {
                PowerState::On
            } else {
                PowerState::Off
            })
        })
    }

    fn on(&self) -> Result<Outcome, PowerError> {
        self.with_system("power on", |client, _, system| {
            if runs(system) {
                return Ok(Outcome::Already);
            }
            client.reset(system, ResetKind::On).map(|()| Outcome::Done)
        })
    }

    fn off(&self) -> Result<Outcome, PowerError> {
        self.with_system("power off", |client, path, system| {
            client
                .switch_off(path, system, ResetKind::ForceOff)
                .map(outcome)
        })
    }

    fn shutdown(&self) -> Result<Outcome, PowerError> {
        self.with_system("shutdown", |client, path, system| {
            client
                .switch_off(path, system, ResetKind::GracefulShutdown)
                .map(outcome)
        })
    }

    fn cycle(&self) -> Result<(), PowerError> {
        self.with_system("power cycle", |client, _, system| {
            let kind = if runs(system) {
                ResetKind::ForceRestart
            } else {
                ResetKind::On
            };
            client.reset(system, kind)
        })
    }

    fn network_boot_once(&self) -> Result<(), PowerError> {
        let mode = match self.firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "Legacy",
        };
        self.with_system("boot override", |client, path, _| {
            client.boot_once(path, self.boot.redfish_target(), Some(mode))
        })
    }

    fn disk_boot_once(&self) -> Result<(), PowerError> {
        let mode = match self.firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "Legacy",
        };
        self.with_system("boot override", |client, path, _| {
            client.boot_once(path, "Hdd", Some(mode))
        })
    }

    fn clear_network_boot(&self) -> Result<(), PowerError> {
        self.with_system("clear the boot override", |client, path, _| {
            client.clear_boot_override(path)
        })
    }

    fn inventory(&self) -> Result<Inventory, PowerError> {
        self.with_system("read the system", |client, _, system| {
            let (disks, disks_unreadable) = match client.disks(system) {
                Ok(disks) => (disks, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
            Ok(Inventory {
                reports: Reports::BMC,
                power: system.power_state.clone().unwrap_or_default(),
                boot_targets: client.boot_targets(system),
                boot_modes: system.boot.allowed_modes.clone(),
                secure_boot: client.secure_boot(system)?.and_then(|s| s.on()),
                memory_gib: system.memory.total_gib,
                id: Some(crate::redfish::text(&system.id)).filter(|i| !i.is_empty()),
                uuid: system.uuid.as_deref().map(crate::redfish::text),
                serial: system.serial.as_deref().map(crate::redfish::text),
                nics: client
                    .nics(system)?
                    .into_iter()
                    .map(|(id, mac)| super::driver::ReportedNic { id, mac })
                    .collect(),
                disks,
                disks_unreadable,
            })
        })
    }
}
