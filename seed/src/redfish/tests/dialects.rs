//! Each vendor dialect end to end: a stateful fake BMC (power, the override, ETags, reset
//! types, off-when-off answers, slowness) speaking one vendor's shapes, driven through the same
//! path `seed provision` takes (`provision::start::start_with` with the node's Redfish
//! controller: preflight, mark, override, restart), then `power off` twice and `off
//! --graceful`. Every test asserts the exact requests seed sent.
//!
//! Sources of the shapes (also in docs/REDFISH.md): Dell's iDRAC9/iDRAC10 Redfish API guides and
//! gofish issue #519 (override in the system vs `/Settings`); HPE's iLO 5 REST API reference
//! (HewlettPackard/ilo-rest-api-docs: weak ETags, `PushPowerButton`, "Power is off");
//! Lenovo's XClarity Controller Redfish guide (`/Pending`, If-Match required); Supermicro's
//! Redfish reference guide (X12 inline list, `@Redfish.ActionInfo`); AMI MegaRAC as bmclib's
//! fixtures show it (`Self`, `Self/SD`, `@odata.etag`, 428 `PreconditionHeaderMissing`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{FakeBmc, Reply, Seen, reply};
use crate::power::{Outcome, Power};

/// Where a dialect gives the system's ETag.
#[derive(Clone, Copy, PartialEq)]
enum Tag {
    /// None at all.
    None,
    /// A strong `ETag` header.
    Strong,
    /// A weak `ETag` header (`W/"…"`) it refuses as a precondition: only the strong form matches.
    Weak,
    /// Only in the body, `@odata.etag`.
    Body,
}

/// One vendor's dialect.
#[derive(Clone)]
struct Dialect {
    system: &'static str,
    tag: Tag,
    /// PATCHes without If-Match are refused 428.
    if_match_required: bool,
    /// The settings object, and whether the override lives there (and only there).
    settings: Option<(&'static str, bool)>,
    /// The action's inline `ResetType@Redfish.AllowableValues` (`None`: absent).
    inline: Option<&'static [&'static str]>,
    /// `@Redfish.ActionInfo`'s list: what the BMC really takes.
    action_info: Option<&'static [&'static str]>,
    /// What a `ForceOff` on a system that is off gets.
    off_when_off: (u16, &'static str),
    /// Every answer comes this late once per path (a loaded iDRAC).
    slow: Option<Duration>,
}

/// The machine behind the fake BMC.
#[derive(Debug, Default)]
struct Machine {
    on: bool,
    target: String,
    enabled: String,
    mode: String,
    version: u32,
    slowed: Vec<String>,
}

impl Dialect {
    fn allowed(&self) -> Vec<&'static str> {
        self.action_info
            .or(self.inline)
            .unwrap_or(&["On", "ForceOff", "ForceRestart", "GracefulShutdown"])
            .to_vec()
    }

    fn etag(&self, m: &Machine) -> String {
        format!("\"{}\"", m.version)
    }

    fn boot(&self, m: &Machine, with_targets: bool) -> Value {
        let mut boot = json!({
            "BootSourceOverrideTarget": m.target,
            "BootSourceOverrideEnabled": m.enabled,
            "BootSourceOverrideMode": m.mode,
        });
        if with_targets {
            boot["BootSourceOverrideTarget@Redfish.AllowableValues"] =
                json!(["None", "Pxe", "Hdd", "Cd", "BiosSetup", "UefiHttp"]);
        }
        boot
    }

    fn system_body(&self, m: &Machine) -> Value {
        let in_settings = matches!(self.settings, Some((_, true)));
        let mut reset =
            json!({ "target": format!("{}/Actions/ComputerSystem.Reset", self.system) });
        if let Some(inline) = self.inline {
            reset["ResetType@Redfish.AllowableValues"] = json!(inline);
        }
        if self.action_info.is_some() {
            reset["@Redfish.ActionInfo"] = json!(format!("{}/ResetActionInfo", self.system));
        }
        let mut body = json!({
            "@odata.id": self.system,
            "Id": self.system.rsplit('/').next().unwrap(),
            "PowerState": if m.on { "On" } else { "Off" },
            "Boot": if in_settings {
                json!({ "BootSourceOverrideMode": m.mode })
            } else {
                self.boot(m, true)
            },
            "Actions": { "#ComputerSystem.Reset": reset },
        });
        if let Some((path, _)) = self.settings {
            body["@Redfish.Settings"] = json!({ "SettingsObject": { "@odata.id": path } });
        }
        if self.tag == Tag::Body {
            body["@odata.etag"] = json!(format!("W/{}", self.etag(m)));
        }
        body
    }

    /// Whether a PATCH's precondition holds for this dialect.
    fn precondition(&self, req: &Seen, m: &Machine) -> Result<(), Reply> {
        let sent = req.headers.get("if-match");
        let current = self.etag(m);
        match sent {
            None if self.if_match_required => Err(super::refused(428, "PreconditionHeaderMissing")),
            None => Ok(()),
            Some(t) if t == "*" => Ok(()),
            // iLO: a weak tag is no precondition it accepts.
            Some(t) if self.tag == Tag::Weak && t.starts_with("W/") => {
                Err(super::refused(412, "The ETag does not match."))
            }
            Some(t) if t.trim_start_matches("W/") == current => Ok(()),
            Some(_) => Err(super::refused(412, "ETag mismatch")),
        }
    }

    fn answer(&self, req: &Seen, m: &mut Machine) -> Reply {
        let with_tag = |mut r: Reply, m: &Machine| {
            match self.tag {
                Tag::Strong => r.headers.push(("ETag", self.etag(m))),
                Tag::Weak => r.headers.push(("ETag", format!("W/{}", self.etag(m)))),
                Tag::None | Tag::Body => {}
            }
            r
        };
        let settings = self.settings.map(|(p, _)| p);
        let reset = format!("{}/Actions/ComputerSystem.Reset", self.system);
        let info = format!("{}/ResetActionInfo", self.system);
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/redfish/v1/") => reply(
                200,
                json!({
                    "Systems": { "@odata.id": "/redfish/v1/Systems" },
                    "SessionService": { "@odata.id": "/redfish/v1/SessionService" },
                    "Links": { "Sessions": { "@odata.id": "/redfish/v1/SessionService/Sessions" } }
                }),
            ),
            ("POST", "/redfish/v1/SessionService/Sessions") => Reply {
                status: 201,
                headers: vec![
                    ("X-Auth-Token", "tok".into()),
                    ("Location", "/redfish/v1/SessionService/Sessions/9".into()),
                ],
                body: "{}".into(),
            },
            ("DELETE", _) => reply(204, json!({})),
            ("GET", "/redfish/v1/Systems") => {
                reply(200, json!({ "Members": [ { "@odata.id": self.system } ] }))
            }
            ("GET", p) if p == self.system => with_tag(reply(200, self.system_body(m)), m),
            ("GET", p) if Some(p) == settings => {
                let in_settings = matches!(self.settings, Some((_, true)));
                let body = if in_settings {
                    json!({ "Boot": self.boot(m, true) })
                } else {
                    json!({ "Boot": { "BootOrder": ["NIC.Integrated.1-1-1", "HardDisk.List.1-1"] } })
                };
                with_tag(reply(200, body), m)
            }
            ("GET", p) if p == info => reply(
                200,
                json!({ "Parameters": [ { "Name": "ResetType", "Required": true,
                    "AllowableValues": self.action_info.unwrap_or(&[]) } ] }),
            ),
            ("PATCH", p) if p == self.system || Some(p) == settings => {
                let here_ok = match self.settings {
                    Some((s, true)) => p == s,
                    _ => p == self.system,
                };
                if !here_ok {
                    return super::refused(400, "PropertyNotWritable");
                }
                if let Err(r) = self.precondition(req, m) {
                    return r;
                }
                let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
                let boot = &body["Boot"];
                if let Some(t) = boot["BootSourceOverrideTarget"].as_str() {
                    m.target = t.into();
                }
                if let Some(e) = boot["BootSourceOverrideEnabled"].as_str() {
                    m.enabled = e.into();
                }
                if let Some(mode) = boot["BootSourceOverrideMode"].as_str() {
                    m.mode = mode.into();
                }
                m.version += 1;
                reply(200, json!({}))
            }
            ("POST", p) if p == reset => {
                let body: Value = serde_json::from_str(&req.body).unwrap_or_default();
                let kind = body["ResetType"].as_str().unwrap_or_default();
                if !self.allowed().contains(&kind) {
                    return super::refused(400, "ActionParameterNotSupported");
                }
                match kind {
                    "On" | "ForceOn" => m.on = true,
                    "ForceOff" | "GracefulShutdown" | "PushPowerButton" if !m.on => {
                        let (status, message) = self.off_when_off;
                        return super::refused(status, message);
                    }
                    "ForceOff" | "GracefulShutdown" | "PushPowerButton" => m.on = false,
                    _ => m.on = true, // the restarts
                }
                reply(204, json!({}))
            }
            _ => reply(404, json!({})),
        }
    }
}

/// A fake BMC speaking `dialect`, its machine running (racks are powered) with no override.
fn vendor(dialect: Dialect) -> (FakeBmc, Arc<Mutex<Machine>>) {
    let machine = Arc::new(Mutex::new(Machine {
        on: true,
        target: "None".into(),
        enabled: "Disabled".into(),
        mode: "UEFI".into(),
        version: 1,
        ..Machine::default()
    }));
    let state = Arc::clone(&machine);
    let fake = FakeBmc::start(move |req, _| {
        // The BMC does what it is asked at once; a slow one answers late, the first time each
        // request of the system comes.
        let (answer, late) = {
            let mut m = state.lock().unwrap();
            let answer = dialect.answer(req, &mut m);
            let key = format!("{} {}", req.method, req.path);
            let late = dialect
                .slow
                .filter(|_| req.path.starts_with(dialect.system) && !m.slowed.contains(&key));
            if late.is_some() {
                m.slowed.push(key);
            }
            (answer, late)
        };
        if let Some(delay) = late {
            std::thread::sleep(delay);
        }
        Some(answer)
    });
    (fake, machine)
}

/// The requests a fake saw, as `METHOD path [If-Match] [ResetType]`, without the session's.
fn requests(fake: &FakeBmc) -> Vec<String> {
    fake.seen()
        .into_iter()
        .filter(|s| !s.path.starts_with("/redfish/v1/SessionService") && s.path != "/redfish/v1/")
        .map(|s| {
            let mut line = format!("{} {}", s.method, s.path);
            if let Some(tag) = s.headers.get("if-match") {
                line.push_str(&format!(" if-match {tag}"));
            }
            if let Some(kind) = serde_json::from_str::<Value>(&s.body)
                .ok()
                .and_then(|b| b["ResetType"].as_str().map(str::to_string))
            {
                line.push_str(&format!(" {kind}"));
            }
            line
        })
        .collect()
}

/// `seed provision`'s path, `power off` twice and `off --graceful` against `dialect`: the
/// requests of each step.
struct Run {
    provision: Vec<String>,
    off_twice: Vec<String>,
    graceful: Vec<String>,
}

fn run(dialect: Dialect) -> Run {
    let (fake, machine) = vendor(dialect.clone());
    let dir = tempfile::tempdir().unwrap();
    let config =
        crate::config::parse(crate::config::EXAMPLE, std::path::Path::new("x.yaml")).unwrap();
    let mut node = config.node("cmp1").unwrap().clone();
    std::fs::write(dir.path().join("pw"), "s3cret-pw").unwrap();
    node.bmc.endpoint = fake.base.clone();
    node.bmc.username = Some("root".into());
    node.bmc.password = Some(crate::config::SecretRef::File(dir.path().join("pw")));
    // Scaled down from a loaded iDRAC's 25-40 s: a slow dialect answers after 1.5 s.
    node.bmc.timeout = Duration::from_millis(1000);
    node.bmc.action_timeout = Duration::from_millis(1000);
    let nodes = crate::provision::start::tests::nodes(dir.path());
    let how = crate::provision::start::How {
        source: "test",
        force: false,
        power: true,
        preflight: true,
    };
    let power = crate::power::redfish::RedfishPower::new(&node, dir.path());
    let started = crate::provision::start::start_with(&nodes, Ok(Box::new(power)), &node, &how)
        .unwrap_or_else(|e| panic!("provision: {e}\n{:#?}", requests(&fake)));
    assert!(started.started, "{started:?}");
    {
        let m = machine.lock().unwrap();
        assert!(m.on, "the machine runs: {m:?}");
        assert_eq!(
            (m.target.as_str(), m.enabled.as_str()),
            ("Pxe", "Once"),
            "{m:?}"
        );
        assert_eq!(m.mode, "UEFI");
    }
    let provision = requests(&fake);

    let power = crate::power::redfish::RedfishPower::new(&node, dir.path());
    let before = fake.seen().len();
    assert_eq!(power.off().unwrap(), Outcome::Done);
    assert_eq!(power.off().unwrap(), Outcome::Already);
    assert!(!machine.lock().unwrap().on);
    let off_twice = requests(&fake)[provision.len()..].to_vec();
    let _ = before;

    machine.lock().unwrap().on = true;
    let power = crate::power::redfish::RedfishPower::new(&node, dir.path());
    assert_eq!(power.shutdown().unwrap(), Outcome::Done);
    assert!(!machine.lock().unwrap().on);
    let graceful = requests(&fake)[provision.len() + off_twice.len()..].to_vec();
    Run {
        provision,
        off_twice,
        graceful,
    }
}

/// The reset requests only (`POST …Reset TYPE`).
fn resets(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with("POST ") && l.contains("ComputerSystem.Reset"))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect()
}

/// The PATCH requests only (`path if-match TAG`).
fn patches(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("PATCH "))
        .map(str::to_string)
        .collect()
}

const FULL: &[&str] = &[
    "On",
    "ForceOff",
    "ForceRestart",
    "GracefulShutdown",
    "GracefulRestart",
    "PushPowerButton",
    "Nmi",
];

#[test]
fn idrac_9_with_current_firmware() {
    let sys = "/redfish/v1/Systems/System.Embedded.1";
    let r = run(Dialect {
        system: sys,
        tag: Tag::Strong,
        if_match_required: false,
        settings: Some(("/redfish/v1/Systems/System.Embedded.1/Settings", false)),
        inline: Some(FULL),
        action_info: None,
        off_when_off: (409, "Server is already powered OFF."),
        slow: None,
    });
    // Only the system is written, with its ETag; the settings object is never PATCHed.
    assert_eq!(patches(&r.provision), [format!("{sys} if-match \"1\"")]);
    assert_eq!(resets(&r.provision), ["ForceRestart"]);
    assert_eq!(resets(&r.off_twice), ["ForceOff"], "{:?}", r.off_twice);
    assert_eq!(resets(&r.graceful), ["GracefulShutdown"]);
}

#[test]
fn idrac_10_keeps_the_override_in_settings() {
    let sys = "/redfish/v1/Systems/System.Embedded.1";
    let settings = "/redfish/v1/Systems/System.Embedded.1/Settings";
    let r = run(Dialect {
        system: sys,
        tag: Tag::Strong,
        if_match_required: false,
        settings: Some((settings, true)),
        inline: Some(FULL),
        action_info: None,
        off_when_off: (409, "Server is already powered OFF."),
        slow: None,
    });
    // The system lists no targets and carries no override: the settings object, with its tag.
    assert_eq!(
        patches(&r.provision),
        [format!("{settings} if-match \"1\"")]
    );
    assert_eq!(resets(&r.provision), ["ForceRestart"]);
    assert_eq!(resets(&r.off_twice), ["ForceOff"]);
}

#[test]
fn ilo_5_with_weak_etags_and_the_power_button() {
    let sys = "/redfish/v1/Systems/1";
    let r = run(Dialect {
        system: sys,
        tag: Tag::Weak,
        if_match_required: false,
        settings: None,
        // iLO 5 1.x: no GracefulShutdown.
        inline: Some(&["On", "ForceOff", "ForceRestart", "Nmi", "PushPowerButton"]),
        action_info: None,
        off_when_off: (400, "Power is off"),
        slow: None,
    });
    assert_eq!(
        patches(&r.provision),
        [
            format!("{sys} if-match W/\"1\""),
            format!("{sys} if-match \"1\"")
        ]
    );
    assert_eq!(resets(&r.off_twice), ["ForceOff"]);
    assert_eq!(resets(&r.graceful), ["PushPowerButton"]);
}

#[test]
fn lenovo_xcc_wants_if_match_and_keeps_only_the_boot_order_pending() {
    let sys = "/redfish/v1/Systems/1";
    let r = run(Dialect {
        system: sys,
        tag: Tag::Strong,
        if_match_required: true,
        settings: Some(("/redfish/v1/Systems/1/Pending", false)),
        inline: Some(&[
            "On",
            "ForceOff",
            "GracefulShutdown",
            "GracefulRestart",
            "ForceRestart",
            "Nmi",
            "ForceOn",
            "PushPowerButton",
        ]),
        action_info: None,
        off_when_off: (
            400,
            "The requested operation is not allowed while the system is off",
        ),
        slow: None,
    });
    assert_eq!(patches(&r.provision), [format!("{sys} if-match \"1\"")]);
    assert_eq!(resets(&r.off_twice), ["ForceOff"]);
    assert_eq!(resets(&r.graceful), ["GracefulShutdown"]);
}

#[test]
fn supermicro_x12_reads_reset_types_from_action_info() {
    let sys = "/redfish/v1/Systems/1";
    let r = run(Dialect {
        system: sys,
        tag: Tag::Strong,
        if_match_required: false,
        settings: None,
        // The inline list runs two values together; the ActionInfo is right.
        inline: Some(&[
            "On",
            "ForceOff",
            "GracefulShutdownGracefulRestart",
            "ForceRestart",
            "Nmi",
            "ForceOn",
        ]),
        action_info: Some(&[
            "On",
            "ForceOff",
            "GracefulShutdown",
            "GracefulRestart",
            "ForceRestart",
            "Nmi",
            "ForceOn",
        ]),
        off_when_off: (400, "ActionNotSupported"),
        slow: None,
    });
    assert!(
        r.provision.contains(&format!("GET {sys}/ResetActionInfo")),
        "{:?}",
        r.provision
    );
    assert_eq!(resets(&r.provision), ["ForceRestart"]);
    assert_eq!(resets(&r.off_twice), ["ForceOff"]);
    assert_eq!(resets(&r.graceful), ["GracefulShutdown"]);
}

#[test]
fn ami_megarac_with_the_tag_in_the_body_and_if_match_required() {
    let sys = "/redfish/v1/Systems/Self";
    let r = run(Dialect {
        system: sys,
        tag: Tag::Body,
        if_match_required: true,
        settings: Some(("/redfish/v1/Systems/Self/SD", false)),
        inline: Some(&[
            "On",
            "ForceOff",
            "GracefulShutdown",
            "ForceRestart",
            "GracefulRestart",
        ]),
        action_info: None,
        off_when_off: (400, "ActionNotSupported"),
        slow: None,
    });
    assert_eq!(patches(&r.provision), [format!("{sys} if-match W/\"1\"")]);
    assert_eq!(resets(&r.off_twice), ["ForceOff"]);
    assert_eq!(resets(&r.graceful), ["GracefulShutdown"]);
}

#[test]
fn an_action_info_only_bmc_restarts_with_off_then_on() {
    let sys = "/redfish/v1/Systems/1";
    let r = run(Dialect {
        system: sys,
        tag: Tag::None,
        if_match_required: false,
        settings: None,
        inline: None,
        action_info: Some(&["On", "ForceOff", "PushPowerButton"]),
        off_when_off: (400, "ActionNotSupported"),
        slow: None,
    });
    assert_eq!(patches(&r.provision), [sys.to_string()]);
    // It runs, and ForceRestart is not offered: off, then on.
    assert_eq!(resets(&r.provision), ["ForceOff", "On"]);
    assert_eq!(resets(&r.off_twice), ["ForceOff"]);
    assert_eq!(resets(&r.graceful), ["PushPowerButton"]);
}

#[test]
fn a_bmc_that_answers_late_is_asked_again_and_starts_the_node_once() {
    let sys = "/redfish/v1/Systems/1";
    let r = run(Dialect {
        system: sys,
        tag: Tag::Strong,
        if_match_required: false,
        settings: None,
        inline: Some(FULL),
        action_info: None,
        off_when_off: (409, "Server is already powered OFF."),
        slow: Some(Duration::from_millis(1500)),
    });
    // Each first request of a kind timed out and was asked again (reads) or read back
    // (actions): the node was still reset once and overridden once.
    let once = |kind: &str| r.provision.iter().filter(|l| l.starts_with(kind)).count();
    assert_eq!(once("PATCH "), 1, "{:?}", r.provision);
    assert_eq!(resets(&r.provision).len(), 1, "{:?}", r.provision);
    assert_eq!(resets(&r.off_twice), ["ForceOff"]);
}
