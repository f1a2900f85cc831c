//! The parts of Redfish resources seed reads. Lenient: every field is optional or defaulted,
//! enum values are strings, unknown fields are ignored (serde's default).

use serde::Deserialize;
use serde_json::Value;

/// `{"@odata.id": …}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Link {
    /// The resource's path.
    #[serde(rename = "@odata.id")]
    pub id: String,
}

/// `/redfish/v1/`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceRoot {
    /// The Systems collection.
    #[serde(rename = "Systems")]
    pub systems: Option<Link>,
    /// The session service.
    #[serde(rename = "SessionService")]
    pub session_service: Option<Link>,
    /// `Links.Sessions`: where sessions are created.
    #[serde(rename = "Links", default)]
    pub links: RootLinks,
}

/// `Links` of the service root.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootLinks {
    /// The sessions collection.
    #[serde(rename = "Sessions")]
    pub sessions: Option<Link>,
}

impl ServiceRoot {
    /// Where to POST a new session, if the BMC has a session service.
    pub fn sessions_path(&self) -> Option<String> {
        self.session_service.as_ref()?;
        Some(
            self.links
                .sessions
                .as_ref()
                .map(|l| l.id.clone())
                .unwrap_or_else(|| "/redfish/v1/SessionService/Sessions".to_string()),
        )
    }
}

/// A collection's members.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Collection {
    /// Members.
    #[serde(rename = "Members", default)]
    pub members: Vec<Link>,
}

/// A `ComputerSystem`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct System {
    /// `@odata.id`: where it is read again (after an action whose answer did not come).
    #[serde(rename = "@odata.id", default)]
    pub odata_id: String,
    /// `Id`.
    #[serde(rename = "Id", default)]
    pub id: String,
    /// `PowerState`: `On`, `Off`, `PoweringOn`, … (kept as the BMC says it).
    #[serde(rename = "PowerState")]
    pub power_state: Option<String>,
    /// `UUID`.
    #[serde(rename = "UUID")]
    pub uuid: Option<String>,
    /// `SerialNumber`.
    #[serde(rename = "SerialNumber")]
    pub serial: Option<String>,
    /// `Boot`.
    #[serde(rename = "Boot", default)]
    pub boot: Boot,
    /// `Actions`.
    #[serde(rename = "Actions", default)]
    pub actions: Actions,
    /// `@Redfish.Settings`: present when the BMC applies changes through a settings object.
    #[serde(rename = "@Redfish.Settings")]
    pub settings: Option<Value>,
    /// `MemorySummary`.
    #[serde(rename = "MemorySummary", default)]
    pub memory: MemorySummary,
    /// `SecureBoot`: the link to its Secure Boot resource (UEFI systems).
    #[serde(rename = "SecureBoot")]
    pub secure_boot: Option<Link>,
    /// `EthernetInterfaces`: the link to its NICs.
    #[serde(rename = "EthernetInterfaces")]
    pub ethernet_interfaces: Option<Link>,
    /// `Storage`: the link to its storage subsystems (controllers, drives, volumes).
    #[serde(rename = "Storage")]
    pub storage: Option<Link>,
}

/// `MemorySummary` of a system.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MemorySummary {
    /// `TotalSystemMemoryGiB` (a number; some BMCs send a fraction).
    #[serde(rename = "TotalSystemMemoryGiB")]
    pub total_gib: Option<f64>,
}

/// A `SecureBoot` resource.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecureBoot {
    /// `SecureBootEnable`: whether it is enabled for the next boot.
    #[serde(rename = "SecureBootEnable")]
    pub enable: Option<bool>,
    /// `SecureBootCurrentBoot`: `Enabled` or `Disabled`, for the running boot.
    #[serde(rename = "SecureBootCurrentBoot")]
    pub current_boot: Option<String>,
}

impl SecureBoot {
    /// Whether boots verify signatures: `SecureBootCurrentBoot` where the BMC says it, else
    /// `SecureBootEnable`. The enable flag is the setting, not the state: iDRAC reports
    /// `SecureBootEnable: true` with `SecureBootCurrentBoot: "Disabled"` on a system in Legacy
    /// (BIOS) boot mode, where nothing is verified (issue 16's iDRAC 9 payload).
    pub fn on(&self) -> Option<bool> {
        self.current_boot
            .as_deref()
            .and_then(|s| match s {
                s if s.eq_ignore_ascii_case("Enabled") => Some(true),
                s if s.eq_ignore_ascii_case("Disabled") => Some(false),
                _ => None,
            })
            .or(self.enable)
    }
}

#[cfg(test)]
mod tests {
    use super::SecureBoot;

    #[test]
    fn secure_boot_is_the_current_boots_state_before_the_setting() {
        let sb = |enable, current: Option<&str>| SecureBoot {
            enable,
            current_boot: current.map(str::to_string),
        };
        // iDRAC 9 in Legacy mode: enabled as a setting, off in fact.
        assert_eq!(sb(Some(true), Some("Disabled")).on(), Some(false));
        assert_eq!(sb(Some(false), Some("Enabled")).on(), Some(true));
        // Only the setting: taken as the state.
        assert_eq!(sb(Some(true), None).on(), Some(true));
        // An unknown current state falls back to the setting.
        assert_eq!(sb(Some(false), Some("Unknown")).on(), Some(false));
        assert_eq!(sb(None, None).on(), None);
    }
}

/// An `EthernetInterface`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EthernetInterface {
    /// `Id`: the BMC's name for the port (`NIC.Integrated.1-1-1` on iDRAC, `1` on iLO and
    /// Supermicro, the MAC itself on sushy-tools).
    #[serde(rename = "Id", default)]
    pub id: String,
    /// `MACAddress`: the address in use.
    #[serde(rename = "MACAddress")]
    pub mac: Option<String>,
    /// `PermanentMACAddress`: the burned-in address.
    #[serde(rename = "PermanentMACAddress")]
    pub permanent_mac: Option<String>,
}

impl System {
    /// The settings object to PATCH instead of the system, if the BMC asks for one.
    pub fn settings_path(&self) -> Option<String> {
        self.settings
            .as_ref()?
            .get("SettingsObject")?
            .get("@odata.id")?
            .as_str()
            .map(str::to_string)
    }
}

/// `Boot` of a system.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Boot {
    /// `BootSourceOverrideTarget`.
    #[serde(rename = "BootSourceOverrideTarget")]
    pub target: Option<String>,
    /// `BootSourceOverrideEnabled`: `Once`, `Continuous`, `Disabled`.
    #[serde(rename = "BootSourceOverrideEnabled")]
    pub enabled: Option<String>,
    /// `BootSourceOverrideMode`: `UEFI`, `Legacy` (absent where the BMC has no choice).
    #[serde(rename = "BootSourceOverrideMode")]
    pub mode: Option<String>,
    /// The targets the BMC allows.
    #[serde(rename = "BootSourceOverrideTarget@Redfish.AllowableValues", default)]
    pub allowed_targets: Vec<String>,
    /// The modes the BMC allows (often absent).
    #[serde(rename = "BootSourceOverrideMode@Redfish.AllowableValues", default)]
    pub allowed_modes: Vec<String>,
}

/// `Actions` of a system.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Actions {
    /// `#ComputerSystem.Reset`.
    #[serde(rename = "#ComputerSystem.Reset")]
    pub reset: Option<ResetAction>,
}

/// `#ComputerSystem.Reset`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ResetAction {
    /// Where to POST.
    pub target: String,
    /// The reset types the BMC allows inline (empty: it does not say).
    #[serde(rename = "ResetType@Redfish.AllowableValues", default)]
    pub allowed: Vec<String>,
    /// `@Redfish.ActionInfo`: where the BMC describes the action's parameters (Supermicro
    /// X12/X13 lists the right values there and a malformed list inline).
    #[serde(rename = "@Redfish.ActionInfo")]
    pub action_info: Option<String>,
}

/// An `ActionInfo` resource.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionInfo {
    /// `Parameters`.
    #[serde(rename = "Parameters", default)]
    pub parameters: Vec<ActionParameter>,
}

/// One of an `ActionInfo`'s `Parameters`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionParameter {
    /// `Name`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// `AllowableValues`.
    #[serde(rename = "AllowableValues", default)]
    pub allowable: Vec<String>,
}

impl ActionInfo {
    /// The allowable values of the parameter `name` (empty: not listed).
    pub fn allowable(&self, name: &str) -> Vec<String> {
        self.parameters
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.allowable.clone())
            .unwrap_or_default()
    }
}

/// The message of a Redfish error body (`error.message`, or the first extended message).
pub fn error_message(body: &Value) -> Option<String> {
    let error = body.get("error")?;
    error
        .get("@Message.ExtendedInfo")
        .and_then(|i| i.get(0))
        .and_then(|i| i.get("Message"))
        .or_else(|| error.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A `Storage` subsystem: a controller with its drives and volumes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Storage {
    /// `Drives`: links to the drives behind it.
    #[serde(rename = "Drives", default)]
    pub drives: Vec<Link>,
    /// `Volumes`: the link to its volumes collection (RAID controllers).
    #[serde(rename = "Volumes")]
    pub volumes: Option<Link>,
}

/// A `Drive` or a `Volume`: the fields seed compares with an install-disk rule.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StorageDevice {
    /// `Id`.
    #[serde(rename = "Id", default)]
    pub id: String,
    /// `Name`.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// `Model` (drives).
    #[serde(rename = "Model")]
    pub model: Option<String>,
    /// `Manufacturer` (drives).
    #[serde(rename = "Manufacturer")]
    pub manufacturer: Option<String>,
    /// `SerialNumber` (drives).
    #[serde(rename = "SerialNumber")]
    pub serial: Option<String>,
    /// `CapacityBytes`.
    #[serde(rename = "CapacityBytes")]
    pub capacity: Option<u64>,
    /// `MediaType`: `SSD`, `HDD`, `SMR` (drives).
    #[serde(rename = "MediaType")]
    pub media_type: Option<String>,
    /// `Identifiers`: durable names (NAA, EUI, …).
    #[serde(rename = "Identifiers", default)]
    pub identifiers: Vec<Identifier>,
}

/// One of a device's `Identifiers`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Identifier {
    /// `DurableName`, e.g. `5000C500A1B2C3D4` (NAA or EUI-64; others are not hex WWNs and
    /// are dropped by `disk::wwn_hex`).
    #[serde(rename = "DurableName")]
    pub durable_name: Option<String>,
}
