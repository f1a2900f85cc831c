//! Preflight: before a node is provisioned, read what the provision depends on from its BMC
//! and say plainly what is wrong. `seed preflight` prints the report; `seed provision` and the
//! API's provision call run the same checks first and refuse a node with an error.
//!
//! The checks are a pure function of the node's config and what its controller reports
//! ([`Inventory`]), so they are tested without a BMC.

use std::fmt;
use std::path::Path;

use crate::config::{DiskMatch, Firmware, NetBoot, Node};
use crate::disk::{self, ReportedDisk, Selection};
use crate::power::{self, Inventory, Power, PowerError};
use crate::redfish::same_mac;

/// casper copies the live-server ISO (2.6–3.2 GB) into RAM; with the installer and the
/// target's page cache on top, nodes need about 6–8 GB (the project's field notes).
pub const MIN_MEMORY_GIB: f64 = 8.0;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// As it should be.
    Ok,
    /// Worth knowing; the provision goes ahead.
    Warning,
    /// The provision would fail (or install the wrong machine): refused.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Error => "ERROR",
        })
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// How bad.
    pub level: Level,
    /// What was checked (`power`, `boot`, `secure boot`, `memory`, `identity`, `macs`).
    pub check: &'static str,
    /// What was found, and what to do about it.
    pub message: String,
}

/// A node's preflight.
#[derive(Debug, Clone)]
pub struct Report {
    /// The node.
    pub node: String,
    /// Every check, in order.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The findings at `level`.
    pub fn at(&self, level: Level) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.level == level)
    }

    /// Whether a provision must not go ahead.
    pub fn refuses(&self) -> bool {
        self.at(Level::Error).next().is_some()
    }

    /// The errors, `; `-joined: what a refused provision says.
    pub fn errors(&self) -> String {
        self.at(Level::Error)
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Runs the checks of `node` against its controller.
pub fn run(node: &Node, state_dir: &Path) -> Report {
    match power::controller(node, state_dir) {
        Ok(controller) => of(node, controller.as_ref()),
        Err(e) => without_controller(node, &e),
    }
}

/// Runs the checks of `node` against `controller` (a provision then uses the same one: one
/// BMC session). A controller that cannot be read is an error finding: a provision could
/// not start the node either.
pub fn of(node: &Node, controller: &dyn Power) -> Report {
    match controller.inventory() {
        Ok(inventory) => check(node, &inventory),
        Err(e) => without_controller(node, &e),
    }
}

/// The report when there is nothing to read: fine for a manual node, else an error.
pub fn without_controller(node: &Node, e: &PowerError) -> Report {
    let finding = match e {
        PowerError::Unsupported { why, .. } => Finding {
            level: Level::Ok,
            check: "power",
            message: format!("nothing to read ({why})"),
        },
        PowerError::Failed { .. } => Finding {
            level: Level::Error,
            check: "bmc",
            message: e.detail(),
        },
    };
    Report {
        node: node.name.clone(),
        findings: vec![finding],
    }
}

/// The checks of `node` against what its controller reports.
pub fn check(node: &Node, inv: &Inventory) -> Report {
    let reports = inv.reports;
    let mut findings = Vec::new();
    let mut add = |level, check, message: String| {
        findings.push(Finding {
            level,
            check,
            message,
        });
    };

    add(
        Level::Ok,
        "power",
        match inv.power.as_str() {
            "" => "the BMC does not report it; seed will restart or power on".to_string(),
            "On" | "PoweringOn" => format!("{}: seed will restart it", inv.power),
            other => format!("{other}: seed will power it on"),
        },
    );

    if reports.boot_override {
        let target = node.bmc.boot.redfish_target();
        if inv.boot_targets.is_empty() {
            add(
                Level::Ok,
                "boot",
                format!("the BMC lists no override targets; seed will ask for {target} once"),
            );
        } else if !inv.boot_targets.iter().any(|t| t == target) {
            add(
                Level::Error,
                "boot",
                format!(
                    "the BMC allows a one-time boot from {} but not {target}{}",
                    inv.boot_targets.join(", "),
                    if node.bmc.boot == NetBoot::Http {
                        " (UEFI HTTP boot): set bmc.boot: pxe, or enable HTTP boot in the firmware"
                    } else {
                        ": enable PXE on the boot NIC in the firmware setup"
                    }
                ),
            );
        } else {
            add(Level::Ok, "boot", format!("{target} once is allowed"));
        }
        let mode = match node.firmware {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "Legacy",
        };
        if !inv.boot_modes.is_empty() && !inv.boot_modes.iter().any(|m| m == mode) {
            add(
                Level::Error,
                "boot",
                format!(
                    "the config says firmware: {}, the BMC offers boot mode {} only: fix the \
                     node's firmware in the config",
                    match node.firmware {
                        Firmware::Uefi => "uefi",
                        Firmware::Bios => "bios",
                    },
                    inv.boot_modes.join(", "),
                ),
            );
        }
    }

    // Secure Boot verifies UEFI images only: a BIOS node boots seed's undionly.kpxe whatever
    // the BMC says of it (iDRAC reports it enabled as a setting in Legacy mode).
    let secure_boot = match node.firmware {
        Firmware::Uefi => inv.secure_boot,
        Firmware::Bios => None,
    };
    match secure_boot {
        Some(true) => add(
            Level::Error,
            "secure boot",
            "on: seed's iPXE (Debian's ipxe.efi and snponly.efi) is unsigned and the firmware \
             will refuse to start it; switch Secure Boot off (firmware setup, or PATCH \
             SecureBoot.SecureBootEnable=false) and run again"
                .to_string(),
        ),
        Some(false) => add(Level::Ok, "secure boot", "off".to_string()),
        None if reports.secure_boot && node.firmware == Firmware::Uefi => add(
            Level::Warning,
            "secure boot",
            "the BMC does not report it: if it is on, the node will not start seed's unsigned \
             iPXE"
                .to_string(),
        ),
        None => {}
    }

    match inv.memory_gib {
        Some(gib) if gib < MIN_MEMORY_GIB => add(
            Level::Warning,
            "memory",
            format!(
                "{gib} GiB: casper loads the live ISO (2.6-3.2 GB) into RAM; under \
                 {MIN_MEMORY_GIB} GiB the installer may run out of memory"
            ),
        ),
        Some(gib) => add(Level::Ok, "memory", format!("{gib} GiB")),
        None if reports.memory => add(
            Level::Ok,
            "memory",
            "the BMC does not report it (nodes need 8 GiB for the live ISO)".to_string(),
        ),
        None => {}
    }

    if let Some(hint) = &node.bmc.system {
        let named = inv.id.as_deref() == Some(hint.as_str())
            || inv
                .uuid
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case(hint))
            || inv.serial.as_deref() == Some(hint.as_str());
        if named {
            add(Level::Ok, "identity", format!("bmc.system {hint} found"));
        } else {
            add(
                Level::Error,
                "identity",
                format!(
                    "bmc.system is {hint}, but the BMC's system is Id {}, UUID {}, serial {}: \
                     a wrong bmc.address, or a replaced board",
                    inv.id.as_deref().unwrap_or("-"),
                    inv.uuid.as_deref().unwrap_or("-"),
                    inv.serial.as_deref().unwrap_or("-"),
                ),
            );
        }
    } else if reports.identity {
        let known: Vec<String> = [
            ("Id", &inv.id),
            ("UUID", &inv.uuid),
            ("serial", &inv.serial),
        ]
        .into_iter()
        .filter_map(|(what, v)| v.as_ref().map(|v| format!("{what} {v}")))
        .collect();
        add(
            Level::Ok,
            "identity",
            if known.is_empty() {
                "the BMC reports no Id, UUID or serial".to_string()
            } else {
                known.join(", ")
            },
        );
    }

    let reported = inv.macs();
    if !reported.is_empty() && !node.macs.is_empty() {
        let known: Vec<String> = node
            .macs
            .iter()
            .map(ToString::to_string)
            .filter(|m| reported.iter().any(|r| same_mac(r, m)))
            .collect();
        if known.is_empty() {
            add(
                Level::Error,
                "macs",
                format!(
                    "none of the node's MACs ({}) is among the {} the BMC reports ({}): a wrong \
                     bmc.address or a wrong MAC; the node would boot without its reservation",
                    node.macs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    reported.len(),
                    reported.join(", ")
                ),
            );
        } else {
            add(
                Level::Ok,
                "macs",
                format!("{} reported by the BMC", known.join(", ")),
            );
        }
    } else if reports.nics {
        add(
            Level::Ok,
            "macs",
            "the BMC reports no NICs; not compared".to_string(),
        );
    }

    if reports.disks {
        let (level, message) = match &inv.disks_unreadable {
            Some(why) => (
                Level::Ok,
                format!(
                    "the BMC's storage inventory could not be read ({why}); `{}` is checked by \
                     the installer only",
                    node.disk
                ),
            ),
            None => disk_finding(&node.disk, &inv.disks),
        };
        add(level, "disk", message);
    }

    Report {
        node: node.name.clone(),
        findings,
    }
}

/// Installing to anything this small is installing to an SD module or a USB stick.
pub const MIN_DISK_BYTES: u64 = 32_000_000_000;

/// The install-disk rule against the drives and volumes the BMC reports.
fn disk_finding(rule: &DiskMatch, disks: &[ReportedDisk]) -> (Level, String) {
    if disks.is_empty() {
        return (
            Level::Ok,
            format!("the BMC reports no drives; `{rule}` is checked by the installer only"),
        );
    }
    let listed = || {
        disks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    match disk::select_reported(rule, disks) {
        Selection::One(d) if d.size.is_some_and(|s| s < MIN_DISK_BYTES) => (
            Level::Error,
            format!(
                "`{rule}` selects {d}: under {} GB, an SD module or a USB stick, not an install \
                 disk; name the boot SSD or volume",
                MIN_DISK_BYTES / 1_000_000_000
            ),
        ),
        Selection::One(d) => (Level::Ok, format!("`{rule}` selects {d}")),
        Selection::Several(found) => (
            Level::Warning,
            format!(
                "`{rule}` matches {} drives ({}): subiquity installs to whichever it lists \
                 first; add a serial (or size) to name one",
                found.len(),
                found
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ),
        // A serial or WWN is reported by the BMC as it is: none matching is a wrong rule (or
        // a wrong BMC). A model may not be: BOSS cards and RAID volumes show the installer
        // another name (`DELLBOSS VD`) than the BMC, so that is only worth a warning.
        Selection::Nothing
            if (rule.serial.is_some() || rule.wwn.is_some())
                && ![&rule.serial, &rule.model, &rule.vendor]
                    .iter()
                    .any(|v| v.as_deref().is_some_and(disk::is_glob)) =>
        {
            (
                Level::Error,
                format!(
                    "`{rule}` matches none of the {} drives the BMC reports ({}): the installer \
                     would stop with \"matched no disk\"",
                    disks.len(),
                    listed()
                ),
            )
        }
        Selection::Nothing => (
            Level::Warning,
            format!(
                "`{rule}` matches none of the drives the BMC reports ({}); RAID volumes and \
                 BOSS cards may show the installer another model than the BMC, so this is not \
                 refused",
                listed()
            ),
        ),
        Selection::Unknown(why) => (Level::Ok, format!("`{rule}` not checked: {why}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::config;

    fn rack() -> config::Config {
        config::parse(config::EXAMPLE, Path::new("example.yaml")).unwrap()
    }

    fn nic(id: &str, mac: &str) -> crate::power::ReportedNic {
        crate::power::ReportedNic {
            id: id.into(),
            mac: mac.into(),
        }
    }

    fn healthy() -> Inventory {
        Inventory {
            reports: crate::power::Reports::BMC,
            power: "Off".into(),
            boot_targets: vec!["None".into(), "Pxe".into(), "Hdd".into()],
            boot_modes: vec![],
            secure_boot: Some(false),
            memory_gib: Some(256.0),
            id: Some("System.Embedded.1".into()),
            uuid: Some("4c4c4544-0000".into()),
            serial: Some("ABC123".into()),
            nics: vec![
                nic("NIC.Embedded.1-1-1", "3C:EC:EF:10:00:21"),
                nic("NIC.Embedded.2-1-1", "3c:ec:ef:10:00:99"),
            ],
            disks: Vec::new(),
            disks_unreadable: None,
        }
    }

    fn drive(name: &str, model: &str, serial: &str, gb: u64) -> ReportedDisk {
        ReportedDisk {
            name: name.into(),
            model: model.into(),
            serial: serial.into(),
            size: Some(gb * 1_000_000_000),
            ..ReportedDisk::default()
        }
    }

    fn levels(report: &Report) -> Vec<(&'static str, Level)> {
        report.findings.iter().map(|f| (f.check, f.level)).collect()
    }

    #[test]
    fn a_healthy_node_passes_with_every_check_named() {
        let config = rack();
        let report = check(config.node("cmp1").unwrap(), &healthy());
        assert!(!report.refuses(), "{report:?}");
        assert_eq!(
            levels(&report),
            vec![
                ("power", Level::Ok),
                ("boot", Level::Ok),
                ("secure boot", Level::Ok),
                ("memory", Level::Ok),
                ("identity", Level::Ok),
                ("macs", Level::Ok),
                ("disk", Level::Ok),
            ]
        );
    }

    #[test]
    fn a_check_is_made_only_where_the_controller_can_report_it() {
        let config = rack();
        let node = config.node("cmp1").unwrap();
        // A BMC that reports nothing of what it could: each silence is named.
        let silent = Inventory {
            reports: crate::power::Reports::BMC,
            ..Inventory::default()
        };
        assert_eq!(
            levels(&check(node, &silent)),
            vec![
                ("power", Level::Ok),
                ("boot", Level::Ok),
                ("secure boot", Level::Warning),
                ("memory", Level::Ok),
                ("identity", Level::Ok),
                ("macs", Level::Ok),
                ("disk", Level::Ok),
            ]
        );
        // A lab machine's QMP knows its power only: nothing else is checked, nothing warned,
        // whatever the node's config says of its driver.
        let qmp = Inventory {
            power: "On".into(),
            ..Inventory::default()
        };
        assert_eq!(levels(&check(node, &qmp)), vec![("power", Level::Ok)]);
    }

    #[test]
    fn secure_boot_does_not_apply_to_a_bios_node() {
        let mut config = rack();
        let node = config.nodes.iter_mut().find(|n| n.name == "cmp1").unwrap();
        node.firmware = Firmware::Bios;
        let inv = Inventory {
            secure_boot: Some(true),
            ..healthy()
        };
        let report = check(config.node("cmp1").unwrap(), &inv);
        assert!(!report.refuses(), "{report:?}");
        assert!(report.findings.iter().all(|f| f.check != "secure boot"));
    }

    #[test]
    fn secure_boot_on_refuses_and_says_why() {
        let config = rack();
        let inv = Inventory {
            secure_boot: Some(true),
            ..healthy()
        };
        let report = check(config.node("cmp1").unwrap(), &inv);
        assert!(report.refuses());
        assert!(report.errors().contains("unsigned"), "{}", report.errors());
    }

    #[test]
    fn pxe_not_allowed_a_wrong_mac_and_a_wrong_mode_are_errors() {
        let config = rack();
        let inv = Inventory {
            boot_targets: vec!["Hdd".into(), "Cd".into()],
            boot_modes: vec!["Legacy".into()],
            nics: vec![nic("1", "aa:bb:cc:dd:ee:ff")],
            ..healthy()
        };
        let report = check(config.node("cmp1").unwrap(), &inv);
        let errors: Vec<_> = report.at(Level::Error).map(|f| f.check).collect();
        assert_eq!(errors, vec!["boot", "boot", "macs"], "{report:?}");
        assert!(report.errors().contains("3c:ec:ef:10:00:21"));
    }

    #[test]
    fn little_memory_and_unknown_secure_boot_warn_but_do_not_refuse() {
        let config = rack();
        let inv = Inventory {
            secure_boot: None,
            memory_gib: Some(4.0),
            ..healthy()
        };
        let report = check(config.node("cmp1").unwrap(), &inv);
        assert!(!report.refuses());
        let warnings: Vec<_> = report.at(Level::Warning).map(|f| f.check).collect();
        assert_eq!(warnings, vec!["secure boot", "memory"]);
    }

    #[test]
    fn a_system_hint_must_name_the_bmcs_system() {
        let mut config = rack();
        let with_hint = |config: &mut config::Config, hint: &str| {
            let node = config.nodes.iter_mut().find(|n| n.name == "cmp1").unwrap();
            node.bmc.system = Some(hint.into());
            check(config.node("cmp1").unwrap(), &healthy())
        };
        let report = with_hint(&mut config, "OTHER-SERIAL");
        assert!(report.errors().contains("OTHER-SERIAL"), "{report:?}");
        for hint in ["ABC123", "System.Embedded.1", "4C4C4544-0000"] {
            let report = with_hint(&mut config, hint);
            assert!(!report.refuses(), "{hint}: {report:?}");
        }
    }

    #[test]
    fn the_disk_rule_against_the_drives_the_bmc_reports() {
        let disk = |rule: DiskMatch, disks: &[ReportedDisk]| disk_finding(&rule, disks);
        let serial = |s: &str| DiskMatch {
            serial: Some(s.into()),
            ..DiskMatch::default()
        };
        // Dell's drive names and models as iDRAC reports them; the serials of seed::disk's rows.
        let dell = [
            drive(
                "Solid State Disk 0:1:0",
                "MTFDDAK1T9TDT",
                "222939CA58D4",
                1920,
            ),
            drive(
                "Solid State Disk 0:1:1",
                "HFS1T9G3H2X069N",
                "ADB5N4365I150584Z",
                1920,
            ),
            drive("Internal Dual SD", "Internal Dual SD", "0123456789AB", 16),
        ];
        let (level, text) = disk(serial("222939CA58D4"), &dell);
        assert_eq!(level, Level::Ok, "{text}");
        assert!(text.contains("selects Solid State Disk 0:1:0"), "{text}");
        // A serial no drive has: the installer would find no disk either.
        let (level, text) = disk(serial("S4EVNX0N123456"), &dell);
        assert_eq!(level, Level::Error, "{text}");
        assert!(text.contains("matches none of the 3 drives"), "{text}");
        // The SD module, named: refused.
        let (level, text) = disk(
            DiskMatch {
                model: Some("Internal Dual SD".into()),
                ..DiskMatch::default()
            },
            &dell,
        );
        assert_eq!(level, Level::Error, "{text}");
        assert!(text.contains("SD module"), "{text}");
        // The BOSS card by its installer-side model: BMCs call it otherwise; a warning.
        let (level, _) = disk(
            DiskMatch {
                model: Some("DELLBOSS VD".into()),
                ..DiskMatch::default()
            },
            &dell,
        );
        assert_eq!(level, Level::Warning);
        // Two drives of one model, no size: subiquity's pick is arbitrary; a warning.
        let twins = [
            drive(
                "Disk 1",
                "KXG70PNV2T04 NVMe KIOXIA 2048GB",
                "12KFC0BAFTW5",
                2048,
            ),
            drive(
                "Disk 2",
                "KXG70PNV2T04 NVMe KIOXIA 2048GB",
                "12KFC0BAFTX2",
                2048,
            ),
        ];
        let (level, text) = disk(
            DiskMatch {
                model: Some("KXG70PNV2T04_NVMe_KIOXIA_2048GB".into()),
                ..DiskMatch::default()
            },
            &twins,
        );
        assert_eq!(level, Level::Warning, "{text}");
        assert!(text.contains("matches 2 drives"), "{text}");
        // A WWN against the BMC's durable names, whatever their case and prefix.
        let sas = [ReportedDisk {
            wwns: vec![disk::wwn_hex("5000C50093FDDC5F").unwrap()],
            ..drive("Disk.Bay.1", "MB8000JFECQ", "ZA17WDAG", 8000)
        }];
        let (level, text) = disk(
            DiskMatch {
                wwn: Some("0x5000c50093fddc5f".into()),
                ..DiskMatch::default()
            },
            &sas,
        );
        assert_eq!(level, Level::Ok, "{text}");
        // No storage inventory: nothing to compare, nothing refused.
        assert_eq!(disk(serial("222939CA58D4"), &[]).0, Level::Ok);
    }
}
