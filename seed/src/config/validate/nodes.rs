//! `nodes:`: each machine (BMC, MACs, NICs, role, firmware, lab settings).

use super::*;

pub(super) fn nodes(
    v: &mut Validator,
    items: &[Spanned<wire::NodeWire>],
    roles: &[Role],
    zones: &[Zone],
    links: &[Link],
    defaults: &NodeDefaults,
) -> Vec<Node> {
    duplicates(
        v,
        items,
        |n| n.name.clone(),
        |n| format!("nodes[{}].name", n.name),
        "node name",
    );
    let mut mac_owner: HashMap<MacAddr, &str> = HashMap::new();
    let mut out = Vec::new();
    for item in items {
        let (w, line) = (&item.value, line_of(item));
        let at = |f: &str| format!("nodes[{}].{f}", w.name);
        check_name(v, line, at("name"), &w.name, 63);
        let role = roles.iter().find(|r| r.name == w.role);
        if role.is_none() {
            v.problem(
                line,
                at("role"),
                format!("no role named `{}` in roles", w.role),
            );
        }
        if matches!(w.bmc.driver, wire::DriverWire::Redfish)
            && (w.bmc.username.is_none() || w.bmc.password.is_none())
        {
            v.problem(
                line,
                at("bmc"),
                "the redfish driver needs `username` and `password` (as `env: VAR` or `file: PATH`)",
            );
        }
        // A Redfish node's MACs may come from its BMC (`seed inventory`); any other needs one
        // here to be recognised in DHCP.
        if w.macs.is_empty() && !matches!(w.bmc.driver, wire::DriverWire::Redfish) {
            v.problem(
                line,
                at("macs"),
                "at least one boot NIC MAC is needed to recognise the node in DHCP (a redfish node's can come from `seed inventory`)",
            );
        }
        let mut macs = Vec::new();
        for m in &w.macs {
            let mline = line_of(m).or(line);
            match m.value.parse::<MacAddr>() {
                Ok(mac) => {
                    if let Some(owner) = mac_owner.insert(mac, &w.name) {
                        v.problem(
                            mline,
                            at("macs"),
                            format!("MAC {mac} is already node {owner}'s"),
                        );
                    } else if mac.0[0] & 1 == 1 {
                        v.problem(
                            mline,
                            at("macs"),
                            format!("MAC {mac} is a multicast address, not a NIC's"),
                        );
                    }
                    macs.push(mac);
                }
                Err(e) => v.problem(mline, at("macs"), e.to_string()),
            }
        }
        if let Some(console) = &w.console {
            let device = console.split(',').next().unwrap_or_default();
            if !(device.starts_with("tty") || device.starts_with("hvc"))
                || console.contains(char::is_whitespace)
            {
                v.problem(
                    line,
                    at("console"),
                    format!("`{console}` is not a kernel console (like ttyS1,115200n8)"),
                );
            }
        }
        let node_disk = w.disk.as_ref().map(|d| disk(v, line, at("disk"), d));
        if let Some(image) = &w.image {
            check_image(v, line, at("image"), image);
        }
        let image = w
            .image
            .clone()
            .or_else(|| role.and_then(|r| r.image.clone()))
            .unwrap_or_else(|| defaults.image.clone());
        let method = w
            .method
            .map(method)
            .or_else(|| role.and_then(|r| r.method))
            .unwrap_or(defaults.method);
        for z in &w.extra_zones {
            match zones.iter().find(|zone| zone.name == *z) {
                None => v.problem(
                    line,
                    at("extra_zones"),
                    format!("no zone named `{z}` in zones"),
                ),
                Some(zone) if zone.roles.contains(&w.role) => v.problem(
                    line,
                    at("extra_zones"),
                    format!("role {} already joins zone {z}", w.role),
                ),
                Some(zone) => {
                    if let Some(r) = role.filter(|r| !r.links.contains(&zone.link)) {
                        v.problem(
                            line,
                            at("extra_zones"),
                            format!(
                                "zone {z} rides on link {}, which role {} does not have",
                                zone.link, r.name
                            ),
                        );
                    }
                }
            }
        }
        for arg in &w.kernel_args {
            if arg.is_empty() || arg.contains(char::is_whitespace) || arg.contains('$') {
                v.problem(
                    line,
                    at("kernel_args"),
                    format!("`{arg}` is not one kernel argument (no spaces or `$`)"),
                );
            }
        }
        let firmware = match w.firmware {
            Some(wire::FirmwareWire::Bios) => Firmware::Bios,
            _ => Firmware::Uefi,
        };
        let qemu = match (&w.bmc.driver, &w.qemu) {
            (wire::DriverWire::Qemu, q) => {
                let boot = match q.as_ref().and_then(|q| q.boot) {
                    Some(wire::QemuBootWire::Pxe) => QemuBoot::Pxe,
                    Some(wire::QemuBootWire::Http) => QemuBoot::Http,
                    _ => QemuBoot::Rom,
                };
                if boot != QemuBoot::Rom && firmware == Firmware::Bios {
                    v.problem(
                        line,
                        at("qemu.boot"),
                        "`pxe` and `http` are for UEFI nodes: SeaBIOS has no network boot client without the NIC's iPXE ROM",
                    );
                }
                let memory_mib = q.as_ref().and_then(|q| q.memory).unwrap_or(512);
                if !(128..=65536).contains(&memory_mib) {
                    v.problem(
                        line,
                        at("qemu.memory"),
                        format!("{memory_mib} MiB is outside 128-65536"),
                    );
                }
                let disk_gib = q.as_ref().and_then(|q| q.disk).unwrap_or(20);
                if disk_gib > 16384 {
                    v.problem(
                        line,
                        at("qemu.disk"),
                        format!("{disk_gib} GiB is more than 16384"),
                    );
                }
                let mac = match q.as_ref().and_then(|q| q.mac.as_deref()) {
                    None => None,
                    Some(m) => match m.parse::<MacAddr>() {
                        Ok(mac) => Some(mac),
                        Err(e) => {
                            v.problem(line, at("qemu.mac"), e.to_string());
                            None
                        }
                    },
                };
                Some(QemuNode {
                    boot,
                    memory_mib,
                    disk_gib,
                    mac,
                })
            }
            (_, Some(_)) => {
                v.problem(
                    line,
                    at("qemu"),
                    "only nodes with `bmc.driver: qemu` are virtual machines",
                );
                None
            }
            (_, None) => None,
        };
        let mut nics = std::collections::BTreeMap::new();
        for (nic, mac) in &w.nics {
            let known = role.is_none_or(|r| role_nics(r, links).any(|n| n == nic));
            if !known {
                v.problem(
                    line,
                    at("nics"),
                    format!(
                        "`{nic}` is not a NIC of role {} (its bond members and plain NIC links)",
                        w.role
                    ),
                );
            }
            match mac.parse::<MacAddr>() {
                Ok(mac) => {
                    // The boot NIC is usually one of these: the same MAC in `macs` is fine.
                    if let Some(owner) = mac_owner.insert(mac, &w.name).filter(|o| *o != w.name) {
                        v.problem(
                            line,
                            at("nics"),
                            format!("MAC {mac} is already node {owner}'s"),
                        );
                    }
                    nics.insert(nic.clone(), mac);
                }
                Err(e) => v.problem(line, at("nics"), format!("{nic}: {e}")),
            }
        }
        out.push(Node {
            name: w.name.clone(),
            role: w.role.clone(),
            bmc: Bmc {
                address: w.bmc.address,
                driver: match w.bmc.driver {
                    wire::DriverWire::Redfish => PowerDriver::Redfish,
                    wire::DriverWire::Qemu => PowerDriver::Qemu,
                    wire::DriverWire::Manual => PowerDriver::Manual,
                },
                username: w.bmc.username.clone(),
                password: w.bmc.password.as_ref().map(secret_ref),
                endpoint: match &w.bmc.endpoint {
                    Some(url) => {
                        check_url(v, line, &at("bmc.endpoint"), url);
                        url.trim_end_matches('/').to_string()
                    }
                    None => format!("https://{}", w.bmc.address),
                },
                system: w.bmc.system.clone(),
                timeout: bmc_seconds(v, line, &at("bmc.timeout"), w.bmc.timeout, BMC_TIMEOUT_SECS),
                action_timeout: bmc_seconds(
                    v,
                    line,
                    &at("bmc.action_timeout"),
                    w.bmc.action_timeout,
                    BMC_ACTION_TIMEOUT_SECS,
                ),
                tls: bmc_tls(v, line, &at("bmc.tls"), w.bmc.tls.as_ref()),
                boot: match w.bmc.boot {
                    Some(wire::NetBootWire::Http) => {
                        if firmware == Firmware::Bios {
                            v.problem(
                                line,
                                at("bmc.boot"),
                                "`http` (UEFI HTTP boot) needs firmware: uefi",
                            );
                        }
                        NetBoot::Http
                    }
                    _ => NetBoot::Pxe,
                },
            },
            macs,
            console: w.console.clone(),
            disk: node_disk
                .or_else(|| role.and_then(|r| r.disk.clone()))
                .unwrap_or_default(),
            extra_zones: w.extra_zones.clone(),
            nics,
            firmware,
            image,
            method,
            wipe: role.map(|r| r.wipe).unwrap_or_default(),
            discard: role.is_some_and(|r| r.discard),
            agent_image: defaults.agent_image.clone(),
            kernel_args: w.kernel_args.clone(),
            ipxe: match w.ipxe {
                Some(wire::IpxeWire::Seed) => IpxePolicy::Seed,
                _ => IpxePolicy::Any,
            },
            qemu,
        });
    }
    out
}

pub(super) fn bmc_tls(
    v: &mut Validator,
    line: Option<u64>,
    field: &str,
    w: Option<&wire::BmcTlsWire>,
) -> BmcTls {
    let Some(w) = w else {
        return BmcTls::System;
    };
    match (&w.ca_file, &w.fingerprint) {
        (Some(_), Some(_)) | (None, None) => {
            v.problem(line, field, "give one of `ca_file` and `fingerprint`");
            BmcTls::System
        }
        (Some(path), None) => BmcTls::CaFile(path.clone()),
        (None, Some(f)) if f == "first-use" => BmcTls::FirstUse,
        (None, Some(f)) => {
            let hex: String = f
                .strip_prefix("sha256:")
                .or_else(|| f.strip_prefix("SHA256:"))
                .unwrap_or(f)
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                BmcTls::Fingerprint(hex)
            } else {
                v.problem(
                    line,
                    format!("{field}.fingerprint"),
                    format!(
                        "`{f}` is not `sha256:` and 64 hex digits (colons allowed), nor `first-use`"
                    ),
                );
                BmcTls::System
            }
        }
    }
}

/// A BMC timeout in seconds: 1 to 600, `default` when unset.
pub(super) fn bmc_seconds(
    v: &mut Validator,
    line: Option<u64>,
    field: &str,
    value: Option<u64>,
    default: u64,
) -> std::time::Duration {
    let secs = value.unwrap_or(default);
    if !(1..=600).contains(&secs) {
        v.problem(line, field, format!("{secs} s is outside 1-600"));
    }
    std::time::Duration::from_secs(secs.clamp(1, 600))
}

#[cfg(test)]
mod tests {
    use super::super::testing::refused;

    #[test]
    fn a_mac_belongs_to_one_node() {
        refused(
            r#"macs: ["3c:ec:ef:10:00:12"]"#,
            r#"macs: ["3c:ec:ef:10:00:11"]"#,
            "nodes[ctl2].macs",
            "MAC 3c:ec:ef:10:00:11 is already node ctl1's",
        );
        refused(
            r#"macs: ["3c:ec:ef:10:00:12"]"#,
            r#"macs: ["01:00:5e:00:00:01"]"#,
            "nodes[ctl2].macs",
            "multicast",
        );
    }

    #[test]
    fn roles_consoles_and_bmc_timeouts() {
        refused(
            "  - name: ctl3\n    role: control",
            "  - name: ctl3\n    role: controller",
            "nodes[ctl3].role",
            "no role named `controller`",
        );
        refused(
            "    console: ttyS1,115200n8\n  - name: ctl2",
            "    console: ttyS1 115200\n  - name: ctl2",
            "nodes[ctl1].console",
            "is not a kernel console",
        );
    }
}
