//! A small typed Redfish client: what seed needs of a BMC and no more. The service root names
//! the Systems collection and the session service; a session (`X-Auth-Token`) is opened once
//! and deleted when the client is dropped, so BMCs with few session slots (iDRAC) do not run
//! out; without a session service the client sends Basic auth on every call.
//!
//! Parsing is lenient on purpose: only the fields seed reads are declared, enum values stay
//! strings (real BMCs send values the schema does not know), vendor extras are ignored.
//!
//! Every call has a timeout; a 503 is retried, honouring `Retry-After`; 401, 403 and 404 are
//! errors that say what was asked. Credentials never appear in an error or a log line.

mod model;
pub mod tls;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{ETAG, HeaderValue, IF_MATCH, LOCATION, RETRY_AFTER};
use serde_json::{Value, json};

use crate::config::Secret;
use crate::disk::ReportedDisk;
pub use model::{Boot, EthernetInterface, ResetAction, SecureBoot, ServiceRoot, System};

/// [`crate::fuzzing::redfish`]: a body as the client reads it, into every model it reads.
#[doc(hidden)]
pub fn fuzz_models(body: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let _ = model::error_message(&value);
    let _ = serde_json::from_value::<ServiceRoot>(value.clone()).map(|r| r.sessions_path());
    let _ = serde_json::from_value::<model::Collection>(value.clone());
    if let Ok(system) = serde_json::from_value::<System>(value.clone()) {
        let _ = system.settings_path();
        let _ = text(&format!("{system:?}"));
    }
    let _ = serde_json::from_value::<SecureBoot>(value.clone()).map(|s| s.on());
    let _ = serde_json::from_value::<EthernetInterface>(value.clone());
    let _ = serde_json::from_value::<model::ActionInfo>(value.clone())
        .map(|a| a.allowable("ResetType"));
    let _ = serde_json::from_value::<model::Storage>(value.clone());
    let _ = serde_json::from_value::<model::StorageDevice>(value);
}

/// Why a Redfish call failed. Names the BMC and what was asked, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    /// No answer in time, or no connection.
    #[error("{bmc}: {what}: {why}")]
    Unreachable {
        /// The BMC's address.
        bmc: String,
        /// What was asked.
        what: String,
        /// Timeout or connection error.
        why: String,
    },
    /// The BMC refused the credentials (401) or the action (403).
    #[error("{bmc}: {what}: {status}: check the node's bmc.username and password")]
    Denied {
        /// The BMC's address.
        bmc: String,
        /// What was asked.
        what: String,
        /// 401 or 403.
        status: StatusCode,
    },
    /// No answer within the timeout (reads were tried twice).
    #[error("{bmc}: {what}: no answer within {after:?}")]
    TimedOut {
        /// The BMC's address.
        bmc: String,
        /// What was asked.
        what: String,
        /// The timeout.
        after: Duration,
    },
    /// Any other refusal, with the BMC's own message when it sent one.
    #[error("{bmc}: {what}: {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// The BMC's address.
        bmc: String,
        /// What was asked.
        what: String,
        /// The status.
        status: StatusCode,
        /// The Redfish error message, if any.
        message: Option<String>,
    },
    /// The BMC's answer did not have what seed needs.
    #[error("{bmc}: {what}: {why}")]
    Unexpected {
        /// The BMC's address.
        bmc: String,
        /// What was asked.
        what: String,
        /// What was missing or malformed.
        why: String,
    },
}

/// How to reach and authenticate to a BMC.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `https://10.1.0.31` (or `http://` for an emulator in a test).
    pub base: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// Timeout of one read (a GET); a read that times out is tried once more.
    pub timeout: Duration,
    /// Timeout of one action (a reset, a boot override): longer, as BMCs answer those late;
    /// one that times out is read back before it counts as failed.
    pub action_timeout: Duration,
    /// How long 503s are retried in all.
    pub retry_for: Duration,
}

/// The most of one BMC answer seed reads. Real payloads (a Storage collection of a 60-bay
/// chassis, a system with its links) are tens of KiB.
pub const MAX_BODY: u64 = 4 << 20;

/// A string a BMC sent, fit for a terminal, a log line and the store: control characters (a
/// terminal's escape sequences among them) dropped, surrounding space trimmed, at most 128
/// characters. Model names, serials and Ids are far shorter.
pub fn text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect::<String>()
        .trim()
        .to_string()
}

/// How many members of a NIC, storage or drive collection are read: a server has a few dozen
/// at most, and a BMC that lists thousands would otherwise cost a GET each.
pub const MAX_MEMBERS: usize = 256;

/// At most `limit` bytes of `response`'s body.
fn bounded(response: Response, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    response.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// How the client authenticates.
enum Auth {
    /// `X-Auth-Token`, and the session to delete at the end.
    Session {
        token: HeaderValue,
        location: String,
    },
    /// Basic auth on every call (no session service).
    Basic,
}

/// A client for one BMC, logged in.
pub struct Client {
    http: Http,
    endpoint: Endpoint,
    root: ServiceRoot,
    auth: Auth,
}

impl Client {
    /// Reads the service root and logs in (a session where the BMC has a session service).
    pub fn connect(endpoint: Endpoint, http: Http) -> Result<Self, RedfishError> {
        let mut client = Self {
            http,
            endpoint,
            root: ServiceRoot::default(),
            auth: Auth::Basic,
        };
        // The service root needs no authentication (Redfish spec, "Service root").
        client.root = client.get_json("/redfish/v1/", "read the service root")?;
        if let Some(sessions) = client.root.sessions_path() {
            client.auth = client.login(&sessions)?;
        }
        Ok(client)
    }

    /// Whether the client holds a session (else it sends Basic auth).
    pub fn has_session(&self) -> bool {
        matches!(self.auth, Auth::Session { .. })
    }

    fn login(&self, sessions: &str) -> Result<Auth, RedfishError> {
        let what = "open a session";
        let body = json!({
            "UserName": self.endpoint.username,
            "Password": self.endpoint.password.expose(),
        });
        let response = self.send(what, || {
            self.http
                .post(self.url(sessions))
                .json(&body)
                .timeout(self.endpoint.timeout)
        })?;
        let token = response
            .headers()
            .get("X-Auth-Token")
            .cloned()
            .ok_or_else(|| self.unexpected(what, "no X-Auth-Token in the answer"))?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default();
        Ok(Auth::Session { token, location })
    }

    /// The systems this BMC manages.
    pub fn systems(&self) -> Result<Vec<String>, RedfishError> {
        let path = self
            .root
            .systems
            .as_ref()
            .map(|l| l.id.clone())
            .ok_or_else(|| self.unexpected("list systems", "the service root names no Systems"))?;
        let collection: model::Collection = self.get_json(&path, "list systems")?;
        Ok(collection.members.into_iter().map(|m| m.id).collect())
    }

    /// The one system to act on: the only member; when the BMC manages several (a chassis
    /// manager, a multi-node enclosure), the one whose Id, UUID or serial number is `hint`, or
    /// without a hint the one with a NIC whose MAC is among `macs`.
    pub fn system(
        &self,
        hint: Option<&str>,
        macs: &[String],
    ) -> Result<(String, System), RedfishError> {
        let members = self.systems()?;
        let mut found = Vec::new();
        for path in &members {
            let system: System = self.get_json(path, "read a system")?;
            if members.len() == 1 {
                return Ok((path.clone(), system));
            }
            let matches = match hint {
                Some(h) => {
                    system.id == h
                        || system
                            .uuid
                            .as_deref()
                            .is_some_and(|u| u.eq_ignore_ascii_case(h))
                        || system.serial.as_deref() == Some(h)
                }
                None => self
                    .nics(&system)?
                    .iter()
                    .any(|(_, m)| macs.iter().any(|c| same_mac(m, c))),
            };
            if matches {
                found.push((path.clone(), system));
            }
        }
        let wanted = match hint {
            Some(h) => h.to_string(),
            None if macs.is_empty() => "(no bmc.system and no MAC configured)".to_string(),
            None => format!("a NIC with MAC {}", macs.join(" or ")),
        };
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(self.unexpected(
                "choose a system",
                format!(
                    "{} systems and none matches {wanted}: set bmc.system to its Id, UUID or serial",
                    members.len()
                ),
            )),
            n => Err(self.unexpected(
                "choose a system",
                format!("{n} systems match {wanted}: set bmc.system to its Id, UUID or serial"),
            )),
        }
    }

    /// The NICs `system` reports, one `(Id, MAC)` per distinct MAC (`MACAddress`, and
    /// `PermanentMACAddress` where it differs), MACs as the BMC writes them; empty when the BMC
    /// lists no NICs. At most [`MAX_MEMBERS`] NICs are read.
    pub fn nics(&self, system: &System) -> Result<Vec<(String, String)>, RedfishError> {
        let Some(link) = &system.ethernet_interfaces else {
            return Ok(Vec::new());
        };
        let collection: model::Collection = self.get_json(&link.id, "list the system's NICs")?;
        let mut nics: Vec<(String, String)> = Vec::new();
        for member in collection.members.iter().take(MAX_MEMBERS) {
            let nic: EthernetInterface = self.get_json(&member.id, "read a NIC")?;
            for mac in [nic.mac, nic.permanent_mac].into_iter().flatten() {
                let mac = text(&mac);
                if !mac.is_empty() && !nics.iter().any(|(_, m)| same_mac(m, &mac)) {
                    nics.push((text(&nic.id), mac));
                }
            }
        }
        Ok(nics)
    }

    /// The drives and volumes `system`'s storage subsystems report, as disks an install rule
    /// can be checked against; empty when the BMC has no storage inventory (a 404 included:
    /// many BMCs have none for some controllers).
    pub fn disks(&self, system: &System) -> Result<Vec<ReportedDisk>, RedfishError> {
        let Some(link) = &system.storage else {
            return Ok(Vec::new());
        };
        let collection: model::Collection = match self.get_json(&link.id, "list storage") {
            Ok(c) => c,
            Err(RedfishError::Refused { status, .. }) if status == StatusCode::NOT_FOUND => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut disks = Vec::new();
        for member in collection.members.iter().take(MAX_MEMBERS) {
            let storage: model::Storage = self.get_json(&member.id, "read a storage subsystem")?;
            let mut devices = storage.drives;
            if let Some(volumes) = &storage.volumes {
                let list: model::Collection = self
                    .get_json(&volumes.id, "list volumes")
                    .unwrap_or_default();
                devices.extend(list.members);
            }
            for device in devices.iter().take(MAX_MEMBERS) {
                if disks.len() >= MAX_MEMBERS {
                    break;
                }
                let d: model::StorageDevice = self.get_json(&device.id, "read a drive")?;
                disks.push(ReportedDisk {
                    name: text(if d.name.is_empty() { &d.id } else { &d.name }),
                    model: text(&d.model.unwrap_or_default()),
                    vendor: text(&d.manufacturer.unwrap_or_default()),
                    serial: text(&d.serial.unwrap_or_default()),
                    wwns: d
                        .identifiers
                        .iter()
                        .filter_map(|i| i.durable_name.as_deref())
                        .filter_map(crate::disk::wwn_hex)
                        .collect(),
                    size: d.capacity,
                    ssd: d.media_type.map(|m| m.eq_ignore_ascii_case("SSD")),
                });
            }
        }
        Ok(disks)
    }

    /// `system`'s Secure Boot resource; `None` where the BMC has none (BIOS-only systems,
    /// older BMCs).
    pub fn secure_boot(&self, system: &System) -> Result<Option<SecureBoot>, RedfishError> {
        let Some(link) = &system.secure_boot else {
            return Ok(None);
        };
        match self.get_json(&link.id, "read Secure Boot") {
            Ok(secure_boot) => Ok(Some(secure_boot)),
            Err(RedfishError::Refused { status, .. }) if status == StatusCode::NOT_FOUND => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Resets `system` with `wanted`, or what the BMC allows instead: a BMC without
    /// `ForceRestart` gets `ForceOff` then `On`; `On` falls back to `ForceOn`; a graceful
    /// shutdown is `PushPowerButton` where that is all there is (iLO 5 1.x). What is allowed
    /// comes from `@Redfish.ActionInfo` where the BMC has one (it wins over an inline list,
    /// which Supermicro X12 sends malformed, and over an empty one), else the inline list;
    /// with neither, anything is tried, and a refused `ForceRestart` becomes `ForceOff` + `On`.
    /// A 202 with a task monitor is followed until the task ends.
    pub fn reset(&self, system: &System, wanted: ResetKind) -> Result<(), RedfishError> {
        let action = system.actions.reset.as_ref().ok_or_else(|| {
            self.unexpected("reset", "the system has no ComputerSystem.Reset action")
        })?;
        let mut allowed = action.allowed.clone();
        if let Some(info) = &action.action_info {
            match self.get_json::<model::ActionInfo>(info, "read the reset's ActionInfo") {
                Ok(info) if !info.allowable("ResetType").is_empty() => {
                    allowed = info.allowable("ResetType");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("ActionInfo unreadable, the inline list is used: {e}"),
            }
        }
        let known = !allowed.is_empty();
        let allows = |v: &str| !known || allowed.iter().any(|a| a == v);
        let plan: Vec<&str> = match wanted {
            ResetKind::On if allows("On") => vec!["On"],
            ResetKind::On if allows("ForceOn") => vec!["ForceOn"],
            ResetKind::ForceOff if allows("ForceOff") => vec!["ForceOff"],
            ResetKind::GracefulShutdown if allows("GracefulShutdown") => vec!["GracefulShutdown"],
            ResetKind::GracefulShutdown if allows("PushPowerButton") => vec!["PushPowerButton"],
            ResetKind::ForceRestart if allows("ForceRestart") => vec!["ForceRestart"],
            ResetKind::ForceRestart if allows("ForceOff") && allows("On") => vec!["ForceOff", "On"],
            _ => {
                return Err(
                    self.unexpected("reset", format!("{wanted:?} is not among {allowed:?}"))
                );
            }
        };
        let target = action.target.clone();
        let post = |reset_type: &str| -> Result<(), RedfishError> {
            let what = format!("reset {reset_type}");
            let body = json!({ "ResetType": reset_type });
            let response = match self.send(&what, || {
                self.authed(self.http.post(self.url(&target)))
                    .json(&body)
                    .timeout(self.endpoint.action_timeout)
            }) {
                Ok(response) => response,
                // The answer did not come; the BMC may still have done it: read it back.
                Err(timed_out @ RedfishError::TimedOut { .. }) => {
                    if self.done_after_all(system, reset_type) {
                        tracing::debug!("{what}: no answer, but the system is as asked");
                        return Ok(());
                    }
                    return Err(timed_out);
                }
                Err(e) => return Err(e),
            };
            self.follow_task(&what, response)
        };
        if plan == ["ForceRestart"] && !known {
            // The BMC did not say what it allows: a refusal of ForceRestart is its answer.
            match post("ForceRestart") {
                Err(RedfishError::Refused { status, .. }) if status == StatusCode::BAD_REQUEST => {
                    tracing::debug!("ForceRestart refused: ForceOff, then On");
                    post("ForceOff")?;
                    return post("On");
                }
                other => return other,
            }
        }
        for reset_type in plan {
            post(reset_type)?;
        }
        Ok(())
    }

    /// Whether `system`, read again, is in the state `reset_type` leads to: the check after a
    /// reset whose answer did not come (a BMC that answers late still performs it, and a second
    /// reset would reset the node twice). False when it is not, or cannot be read.
    fn done_after_all(&self, system: &System, reset_type: &str) -> bool {
        let expected: &[&str] = match reset_type {
            "ForceOff" | "GracefulShutdown" | "PushPowerButton" => &["Off"],
            // A restart leaves it on, as before: what can be seen is that it runs.
            _ => &["On", "PoweringOn"],
        };
        !system.odata_id.is_empty()
            && self
                .get_json::<System>(&system.odata_id, "read the system after a reset")
                .is_ok_and(|now| expected.contains(&now.power_state.as_deref().unwrap_or_default()))
    }

    /// Switches `system` (at `path`) off with `kind` (ForceOff, GracefulShutdown) unless it is
    /// off; `true` when it was off already. A BMC that refuses the action because the machine
    /// is off (iDRAC answers 409, iLO 400 "Power is off") is asked for the state again: off is
    /// what was wanted, so `seed power off --all` succeeds on a rack where some nodes are off.
    pub fn switch_off(
        &self,
        path: &str,
        system: &System,
        kind: ResetKind,
    ) -> Result<bool, RedfishError> {
        if system.power_state.as_deref() == Some("Off") {
            return Ok(true);
        }
        match self.reset(system, kind) {
            Ok(()) => Ok(false),
            Err(refused @ RedfishError::Refused { .. }) => {
                let now: System = self.get_json(path, "read the system")?;
                if now.power_state.as_deref() == Some("Off") {
                    tracing::debug!("the BMC refused {kind:?} and the system is off: {refused}");
                    Ok(true)
                } else {
                    Err(refused)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Boot from `target` (`Pxe`, `UefiHttp`) once, in `mode` (`UEFI`, `Legacy`) where the BMC
    /// lists the mode.
    ///
    /// Where to write it, as gofish (#519) and sushy learned from the field: the system itself
    /// first, with its ETag; its `@Redfish.Settings` object only when that object carries the
    /// override (iDRAC 10 keeps it there) — first when the system does not carry it, as the
    /// fallback when the system refuses. A settings object without the property is never
    /// written: iDRAC 9 (6.x/7.x) answers 400 for its `/Settings`, Lenovo XCC 428 for its
    /// `/Pending`, which holds only `BootOrder`. Preconditions: see `patch`.
    pub fn boot_once(
        &self,
        path: &str,
        target: &str,
        mode: Option<&str>,
    ) -> Result<(), RedfishError> {
        let what = format!("set the next boot to {target}");
        let (system, etag) = self.get_tagged::<System>(path, &what)?;
        let allowed = self.boot_targets(&system);
        if !allowed.is_empty() && !allowed.iter().any(|t| t == target) {
            return Err(self.unexpected(&what, format!("{target} is not among {allowed:?}")));
        }
        let mut boot = json!({
            "BootSourceOverrideTarget": target,
            "BootSourceOverrideEnabled": "Once",
        });
        if let Some(mode) = mode
            && system.boot.mode.is_some()
        {
            boot["BootSourceOverrideMode"] = json!(mode);
        }
        self.write_boot(path, &what, &system, etag, &boot, Some(target))
    }

    /// Takes a one-time boot override back (`BootSourceOverrideEnabled: Disabled`), written
    /// where [`Self::boot_once`] writes.
    pub fn clear_boot_override(&self, path: &str) -> Result<(), RedfishError> {
        let what = "clear the boot override".to_string();
        let (system, etag) = self.get_tagged::<System>(path, &what)?;
        let boot = json!({ "BootSourceOverrideEnabled": "Disabled" });
        self.write_boot(path, &what, &system, etag, &boot, None)
    }

    /// PATCHes `{"Boot": boot}` to where the BMC takes it (see [`Self::boot_once`]). `target`:
    /// what a write whose answer did not come is read back for (`None`: the override off).
    fn write_boot(
        &self,
        path: &str,
        what: &str,
        system: &System,
        etag: Option<String>,
        boot: &Value,
        target: Option<&str>,
    ) -> Result<(), RedfishError> {
        let what = what.to_string();
        let mut places = vec![(path.to_string(), etag)];
        if let Some(settings) = system.settings_path() {
            match self.get_tagged::<Value>(&settings, &what) {
                Ok((object, tag)) => {
                    let carries = object["Boot"].get("BootSourceOverrideTarget").is_some();
                    if carries && system.boot.target.is_none() {
                        places.insert(0, (settings, tag));
                    } else if carries {
                        places.push((settings, tag));
                    } else {
                        tracing::debug!(%settings, "the settings object has no boot override: not written");
                    }
                }
                Err(e) => {
                    tracing::debug!(%settings, "settings object unreadable, the system only: {e}")
                }
            }
        }
        let body = json!({ "Boot": boot });
        let mut refused = None;
        for (place, tag) in places {
            tracing::info!(bmc = %self.endpoint.base, path = %place, %boot, "one-time boot override");
            match self.patch(&what, &place, &body, tag) {
                Ok(response) => return self.follow_task(&what, response),
                // No answer: the override may be set all the same; read it back.
                Err(timed_out @ RedfishError::TimedOut { .. }) => {
                    let now: System = self.get_json(path, &what)?;
                    let set = match target {
                        Some(target) => {
                            now.boot.target.as_deref() == Some(target)
                                && now.boot.enabled.as_deref() == Some("Once")
                        }
                        None => now.boot.enabled.as_deref() != Some("Once"),
                    };
                    return if set { Ok(()) } else { Err(timed_out) };
                }
                Err(e @ RedfishError::Refused { .. }) => {
                    tracing::debug!(path = %place, "boot override refused: {e}");
                    refused = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(refused.unwrap_or_else(|| self.unexpected(&what, "nowhere to write the override")))
    }

    /// The one-time boot targets `system` allows: its own list, else the one its settings object
    /// carries (iDRAC 10 lists them only there); empty when neither says.
    pub fn boot_targets(&self, system: &System) -> Vec<String> {
        if !system.boot.allowed_targets.is_empty() {
            return system.boot.allowed_targets.clone();
        }
        let Some(settings) = system.settings_path() else {
            return Vec::new();
        };
        match self.get_json::<Value>(&settings, "read the settings object") {
            Ok(object) => object["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(%settings, "settings object unreadable: {e}");
                Vec::new()
            }
        }
    }

    /// A resource and its ETag: the `ETag` header, else the body's `@odata.etag`.
    fn get_tagged<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<(T, Option<String>), RedfishError> {
        let response = self.send(what, || {
            self.authed(self.http.get(self.url(path)))
                .timeout(self.endpoint.timeout)
        })?;
        let header = response
            .headers()
            .get(ETAG)
            .and_then(|t| t.to_str().ok())
            .map(str::to_string);
        let body: Value = serde_json::from_slice(&self.body(response, what, path)?)
            .map_err(|e| self.unexpected(what, format!("{path} is not JSON: {e}")))?;
        let tag = header.or_else(|| body["@odata.etag"].as_str().map(str::to_string));
        let value = serde_json::from_value(body)
            .map_err(|e| self.unexpected(what, format!("{path} is not the JSON expected: {e}")))?;
        Ok((value, tag))
    }

    /// PATCHes `body` to `path` with `If-Match: tag` where there is one, and answers the
    /// preconditions BMCs ask for: a 412 for a weak tag (`W/"…"`, iLO) is retried with the
    /// strong form, a 412 for a stale tag with the tag read again, and a 428 (AMI MegaRAC,
    /// Lenovo XCC: "precondition required") with the tag read again, else `*`.
    fn patch(
        &self,
        what: &str,
        path: &str,
        body: &Value,
        tag: Option<String>,
    ) -> Result<Response, RedfishError> {
        let attempt = |tag: Option<&str>| {
            self.send(what, || {
                let mut request = self
                    .authed(self.http.patch(self.url(path)))
                    .json(body)
                    .timeout(self.endpoint.action_timeout);
                if let Some(tag) = tag {
                    request = request.header(IF_MATCH, tag);
                }
                request
            })
        };
        let status = match attempt(tag.as_deref()) {
            Err(RedfishError::Refused { status, .. })
                if status == StatusCode::PRECONDITION_FAILED
                    || status == StatusCode::PRECONDITION_REQUIRED =>
            {
                status
            }
            other => return other,
        };
        if status == StatusCode::PRECONDITION_FAILED
            && let Some(strong) = tag.as_deref().and_then(|t| t.strip_prefix("W/"))
        {
            tracing::debug!(%path, "412 for a weak ETag: retried with its strong form");
            match attempt(Some(strong)) {
                Err(RedfishError::Refused { status, .. })
                    if status == StatusCode::PRECONDITION_FAILED => {}
                other => return other,
            }
        }
        let fresh = self.get_tagged::<Value>(path, what)?.1;
        tracing::debug!(%path, ?fresh, "{status}: retried with the resource's current ETag");
        attempt(Some(fresh.as_deref().unwrap_or("*")))
    }

    /// Follows a 202's task monitor until it stops answering 202 (bounded by `retry_for`).
    fn follow_task(&self, what: &str, response: Response) -> Result<(), RedfishError> {
        if response.status() != StatusCode::ACCEPTED {
            return Ok(());
        }
        let Some(monitor) = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
        else {
            return Ok(());
        };
        let deadline = Instant::now() + self.endpoint.retry_for;
        loop {
            let response = self.send(what, || {
                self.authed(self.http.get(self.url(&monitor)))
                    .timeout(self.endpoint.timeout)
            })?;
            if response.status() != StatusCode::ACCEPTED {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.unexpected(what, format!("task {monitor} still running")));
            }
            std::thread::sleep(retry_after(&response).unwrap_or(Duration::from_secs(1)));
        }
    }

    /// GET `path` as `T`.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<T, RedfishError> {
        self.get_tagged(path, what).map(|(value, _)| value)
    }

    /// An answer's body, at most [`MAX_BODY`] bytes: a BMC is on the network, and what it sends
    /// is read only as far as Redfish payloads go.
    fn body(&self, response: Response, what: &str, path: &str) -> Result<Vec<u8>, RedfishError> {
        let bytes = bounded(response, MAX_BODY + 1)
            .map_err(|e| self.unexpected(what, format!("{path}: {e}")))?;
        if bytes.len() as u64 > MAX_BODY {
            return Err(self.unexpected(
                what,
                format!(
                    "{path}: the answer is larger than {} MiB, which no Redfish resource is",
                    MAX_BODY >> 20
                ),
            ));
        }
        Ok(bytes)
    }

    fn authed(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::Session { token, .. } => request.header("X-Auth-Token", token.clone()),
            Auth::Basic => request.basic_auth(
                &self.endpoint.username,
                Some(self.endpoint.password.expose()),
            ),
        }
    }

    /// Sends what `build` makes, retrying 503s (honouring `Retry-After`, else backing off)
    /// until `retry_for` has passed; maps refusals to errors.
    fn send(
        &self,
        what: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, RedfishError> {
        let deadline = Instant::now() + self.endpoint.retry_for;
        let mut backoff = Duration::from_millis(500);
        // A read that timed out is asked once more (slow BMCs answer the second time from
        // what the first one loaded); an action is not sent twice: its caller reads back.
        let read = build()
            .build()
            .is_ok_and(|r| r.method() == reqwest::Method::GET);
        let mut retried = false;
        loop {
            let response = match build().send() {
                Ok(response) => response,
                Err(e) if e.is_timeout() => {
                    let after = build()
                        .build()
                        .ok()
                        .and_then(|r| r.timeout().copied())
                        .unwrap_or(self.endpoint.timeout);
                    if read && !retried {
                        tracing::debug!(bmc = %self.bmc(), "{what}: no answer within {after:?}, asked again");
                        retried = true;
                        continue;
                    }
                    return Err(RedfishError::TimedOut {
                        bmc: self.bmc(),
                        what: what.to_string(),
                        after,
                    });
                }
                Err(e) => {
                    return Err(RedfishError::Unreachable {
                        bmc: self.bmc(),
                        what: what.to_string(),
                        // reqwest's messages name the URL, never the Authorization header; the
                        // causes (a refused certificate, a refused connection) are what the
                        // operator needs.
                        why: crate::error_chain(&e),
                    });
                }
            };
            let status = response.status();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                let wait = retry_after(&response).unwrap_or(backoff);
                if Instant::now() + wait <= deadline {
                    std::thread::sleep(wait);
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
            if status.is_success() {
                return Ok(response);
            }
            // A read the BMC failed inside (500, or its proxy's 502/504: a busy BMC, a locked
            // database on its side) is asked once more after a pause, as a timed-out one is.
            if read
                && !retried
                && matches!(
                    status,
                    StatusCode::INTERNAL_SERVER_ERROR
                        | StatusCode::BAD_GATEWAY
                        | StatusCode::GATEWAY_TIMEOUT
                )
                && Instant::now() + backoff <= deadline
            {
                tracing::debug!(bmc = %self.bmc(), "{what}: {status}, asked again");
                retried = true;
                std::thread::sleep(backoff);
                continue;
            }
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(RedfishError::Denied {
                    bmc: self.bmc(),
                    what: what.to_string(),
                    status,
                });
            }
            // An error body is read as far as an error message goes.
            let message = bounded(response, 64 << 10)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                .and_then(|v| model::error_message(&v));
            return Err(RedfishError::Refused {
                bmc: self.bmc(),
                what: what.to_string(),
                status,
                message,
            });
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.endpoint.base.trim_end_matches('/'))
        }
    }

    fn bmc(&self) -> String {
        self.endpoint.base.clone()
    }

    fn unexpected(&self, what: &str, why: impl Into<String>) -> RedfishError {
        RedfishError::Unexpected {
            bmc: self.bmc(),
            what: what.to_string(),
            why: why.into(),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Give the session slot back; a BMC that forgets it times it out anyway.
        if let Auth::Session { token, location } = &self.auth
            && !location.is_empty()
        {
            let _ = self
                .http
                .delete(self.url(location))
                .header("X-Auth-Token", token.clone())
                .timeout(self.endpoint.timeout)
                .send();
        }
    }
}

/// What a reset should achieve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// Power on.
    On,
    /// Hard power off.
    ForceOff,
    /// Ask the OS to shut down.
    GracefulShutdown,
    /// Hard reset (or off and on).
    ForceRestart,
}

/// `Retry-After` in seconds (RFC 9110 10.2.3; BMCs send seconds, not dates).
fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}

/// Whether two MAC addresses are the same, whatever their case and separators (BMCs write
/// `AA:BB:…`, `aa-bb-…` or `aabb.cc…`).
pub fn same_mac(a: &str, b: &str) -> bool {
    let hex = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let a = hex(a);
    a.len() == 12 && a == hex(b)
}
