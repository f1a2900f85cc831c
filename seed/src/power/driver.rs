//! What every power driver is: the [`Power`] trait, its errors and outcomes, and what a
//! controller reports about its machine.

/// Whether a machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    /// Running.
    On,
    /// Off (or halted: a QEMU machine that shut itself down).
    Off,
}

impl std::fmt::Display for PowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// Why a power action failed. Every message names the node.
#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    /// The driver cannot do this (manual nodes).
    #[error("{node}: {why}")]
    Unsupported {
        /// The node.
        node: String,
        /// What to do instead.
        why: String,
    },
    /// The machine's controller could not be reached or refused.
    #[error("{node}: {action}: {why}")]
    Failed {
        /// The node.
        node: String,
        /// What was asked (`power on`, …).
        action: &'static str,
        /// What went wrong.
        why: String,
    },
}

/// What a node's controller reports about its machine: what a provision depends on, for
/// `preflight`. A field the controller does not know stays empty; [`Self::reports`] says which
/// ones it can know at all.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// What this kind of controller can report: an empty field it could have filled is a
    /// finding, one it never could is not.
    pub reports: Reports,
    /// The power state as the controller says it (`On`, `Off`, `PoweringOn`, …).
    pub power: String,
    /// The one-time boot targets the BMC allows (empty: it does not say).
    pub boot_targets: Vec<String>,
    /// The boot override modes the BMC allows (empty: it does not say).
    pub boot_modes: Vec<String>,
    /// Whether the next boot verifies signatures (`None`: not reported).
    pub secure_boot: Option<bool>,
    /// Installed memory in GiB.
    pub memory_gib: Option<f64>,
    /// The system's Id at its BMC.
    pub id: Option<String>,
    /// The system's UUID.
    pub uuid: Option<String>,
    /// The system's serial number.
    pub serial: Option<String>,
    /// Its NICs: the BMC's Id for each and its MAC as the BMC writes it (empty: none
    /// reported).
    pub nics: Vec<ReportedNic>,
    /// Its drives and volumes (empty: the BMC has no storage inventory).
    pub disks: Vec<crate::disk::ReportedDisk>,
    /// Why the storage inventory could not be read, where it could not: many BMCs fail on some
    /// controllers, and that is no reason to refuse the node.
    pub disks_unreadable: Option<String>,
}

/// What a kind of controller can report ([`Inventory::reports`]). A lab machine's QMP knows
/// its power only; a Redfish BMC knows the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reports {
    /// The boot override it allows (targets and modes).
    pub boot_override: bool,
    /// Whether Secure Boot is on.
    pub secure_boot: bool,
    /// Installed memory.
    pub memory: bool,
    /// The system's Id, UUID and serial.
    pub identity: bool,
    /// Its NICs and their MACs.
    pub nics: bool,
    /// Its drives and volumes.
    pub disks: bool,
}

impl Reports {
    /// A BMC: everything, when its firmware has it.
    pub const BMC: Self = Self {
        boot_override: true,
        secure_boot: true,
        memory: true,
        identity: true,
        nics: true,
        disks: true,
    };
}

/// A NIC as the BMC reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportedNic {
    /// The BMC's Id for the port (`NIC.Integrated.1-1-1`).
    pub id: String,
    /// Its MAC as the BMC writes it.
    pub mac: String,
}

impl Inventory {
    /// The MACs of its NICs, as the BMC writes them.
    pub fn macs(&self) -> Vec<&str> {
        self.nics.iter().map(|n| n.mac.as_str()).collect()
    }
}

impl PowerError {
    /// The message without the node's name (for a line that names it already).
    pub fn detail(&self) -> String {
        match self {
            Self::Unsupported { why, .. } => why.clone(),
            Self::Failed { action, why, .. } => format!("{action}: {why}"),
        }
    }
}

/// What a power action did: it was carried out, or the machine was in that state already
/// (`seed power off --all` on a rack where some nodes are off succeeds, and says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The controller carried it out.
    Done,
    /// Nothing to do: the machine was on (off) already.
    Already,
}

/// One node's power controller.
pub trait Power {
    /// Whether the machine runs.
    fn status(&self) -> Result<PowerState, PowerError>;
    /// Switch it on (nothing to do when it runs).
    fn on(&self) -> Result<Outcome, PowerError>;
    /// Switch it off hard (no shutdown of the OS: installs are disposable); nothing to do when
    /// it is off.
    fn off(&self) -> Result<Outcome, PowerError>;
    /// Ask its OS to shut down (ACPI power button); returns once asked, not once off; nothing
    /// to do when it is off.
    fn shutdown(&self) -> Result<Outcome, PowerError>;
    /// Start it from its firmware again: a hard reset when it runs, power on when it does not.
    fn cycle(&self) -> Result<(), PowerError>;
    /// Make its next boot (only) a network boot. Lab machines always boot the NIC first.
    fn network_boot_once(&self) -> Result<(), PowerError> {
        Ok(())
    }
    /// Make its next boot (only) from its local disk: a BIOS machine seed's agent wrote an
    /// image to, which has no `BootNext` and would network-boot again.
    fn disk_boot_once(&self) -> Result<(), PowerError>;
    /// Take back a one-time network boot that was set but not used (a start that failed after
    /// it): the next unrelated reboot must not netboot the installer.
    fn clear_network_boot(&self) -> Result<(), PowerError> {
        Ok(())
    }
    /// What the controller knows about the machine. Lab machines report their power only.
    fn inventory(&self) -> Result<Inventory, PowerError> {
        let power = match self.status()? {
            PowerState::On => "On",
            PowerState::Off => "Off",
        };
        Ok(Inventory {
            power: power.to_string(),
            ..Inventory::default()
        })
    }
}
