//! Wire structs → domain model, checked once.
//!
//! The validator keeps going after a problem so that `seed check` can list every problem in one
//! run. Items it cannot build (a zone whose subnet does not parse) are left out of the model; items
//! with a broken reference (a node whose role does not exist) stay in, so that the address plan
//! checks still see them. The model is only handed out when there were no problems at all.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_saphyr::Spanned;

use super::Problem;
use super::model::{
    BMC_ACTION_TIMEOUT_SECS, BMC_TIMEOUT_SECS, Bmc, BmcTls, Bond, Config, DhcpSettings, DiskMatch,
    Firmware, Install, IpxePolicy, Lifecycle, Link, Mirror, MirrorRepo, NetBoot, Node,
    OperatorUser, Pool, Ports, PowerDriver, QemuBoot, QemuNode, Role, SecretRef, SeedHost, Zone,
};
use super::wire::{self, ConfigFile};
use crate::net::{Ipv4Net, MacAddr};
use crate::plan;

/// Where seed keeps its state when the config does not say.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/seed";

/// The image nodes install from when neither they, their role nor `install.image` name one.
pub const DEFAULT_IMAGE: &str = "ubuntu-24.04";

/// Ethernet MTU bounds: IPv4's minimum and the usual jumbo-frame ceiling of data-centre switches.
const MTU_RANGE: std::ops::RangeInclusive<u16> = 576..=9216;

struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, line: Option<u64>, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }
}

fn line_of<T>(item: &Spanned<T>) -> Option<u64> {
    let line = item.referenced.line();
    (line > 0).then_some(line)
}

/// Validate a parsed file. `Err` carries every problem found.
pub fn validate(file: ConfigFile, source: &Path) -> Result<Config, Vec<Problem>> {
    let mut v = Validator {
        problems: Vec::new(),
    };
    let links = links(&mut v, &file.links);
    // Roles default their boot link to their boot zone's link (the provisioning zone's, or the
    // relayed zone's they join), so find those first.
    let boot_links: HashMap<String, String> = file
        .zones
        .iter()
        .filter(|z| z.value.relayed && !z.value.provisioning)
        .flat_map(|z| {
            z.value
                .roles
                .iter()
                .map(|r| (r.clone(), z.value.link.clone()))
        })
        .collect();
    let provisioning_link = file
        .zones
        .iter()
        .find(|z| z.value.provisioning)
        .map(|z| z.value.link.clone());
    let roles = roles(
        &mut v,
        &file.roles,
        &links,
        &boot_links,
        provisioning_link.as_deref(),
    );
    let seed = seed_host(&file.seed.value);
    let zones = zones(&mut v, &file.zones, &links, &roles, &seed);
    let default_image = match file.install.as_ref().and_then(|i| i.value.image.as_ref()) {
        Some(image) => {
            let line = file.install.as_ref().and_then(line_of);
            check_image(&mut v, line, "install.image".into(), image);
            image.clone()
        }
        None => DEFAULT_IMAGE.to_string(),
    };
    let nodes = nodes(&mut v, &file.nodes, &roles, &zones, &links, &default_image);
    let install = file.install.as_ref().map(|i| install(&mut v, i, &seed));
    let mirror = file.mirror.as_ref().map(|m| mirror(&mut v, m));
    if let (Some(install), Some(mirror)) = (&install, &mirror) {
        // The nodes' apt source is seed's own /apt/<prefix>: that prefix must exist.
        let own = format!("{}/apt/", seed.url);
        if let Some(prefix) = install.apt_mirror.strip_prefix(&own)
            && !mirror.repos.iter().any(|r| r.prefix == prefix)
        {
            v.problem(
                file.install.as_ref().and_then(line_of),
                "install.apt_mirror",
                format!(
                    "{} is seed's own mirror, but mirror.repos has no prefix `{prefix}`",
                    install.apt_mirror
                ),
            );
        }
    }
    let config = Config {
        source: source.to_path_buf(),
        seed,
        zones,
        links,
        roles,
        nodes,
        install,
        mirror,
    };
    seed_in_provisioning_zone(&mut v, line_of(&file.seed), &config);

    let node_lines: HashMap<&str, Option<u64>> = file
        .nodes
        .iter()
        .map(|n| (n.value.name.as_str(), line_of(n)))
        .collect();
    let zone_lines: HashMap<&str, Option<u64>> = file
        .zones
        .iter()
        .map(|z| (z.value.name.as_str(), line_of(z)))
        .collect();
    for conflict in plan::check(&config) {
        let (prefix, name, lines) = match &conflict.subject {
            plan::Subject::Node(name) => ("nodes", name, &node_lines),
            plan::Subject::Zone(name) => ("zones", name, &zone_lines),
        };
        let line = lines.get(name.as_str()).copied().flatten();
        v.problem(
            line,
            format!("{prefix}[{name}].{}", conflict.field),
            conflict.message,
        );
    }

    if v.problems.is_empty() {
        Ok(config)
    } else {
        // File order reads best; problems on one line keep the order they were found in.
        v.problems.sort_by_key(|p| p.line);
        Err(v.problems)
    }
}

fn seed_host(w: &wire::SeedWire) -> SeedHost {
    let defaults = Ports::default();
    let ports = Ports {
        dhcp: w.ports.dhcp.unwrap_or(defaults.dhcp),
        tftp: w.ports.tftp.unwrap_or(defaults.tftp),
        http: w.ports.http.unwrap_or(defaults.http),
    };
    // An IP literal, not a name: a node in the installer may have no working DNS yet.
    let url = match &w.url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None if ports.http == 80 => format!("http://{}", w.address),
        None => format!("http://{}:{}", w.address, ports.http),
    };
    SeedHost {
        interface: w.interface.clone(),
        address: w.address,
        url,
        ports,
        state_dir: w
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
        dhcp: DhcpSettings {
            proxy: w.dhcp.proxy.unwrap_or(false),
            // Long enough that a node does not renew during an install, short enough that a
            // pool address of a vanished machine comes back within the hour.
            lease_secs: w.dhcp.lease_time.unwrap_or(3600),
            router_advertisements: w.dhcp.router_advertisements.unwrap_or(true),
        },
        tftp_root: w.tftp_root.clone(),
        api_token: w.api_token.as_ref().map(secret_ref),
        lifecycle: {
            let d = Lifecycle::default();
            Lifecycle {
                install_attempts: w.lifecycle.install_attempts.unwrap_or(d.install_attempts),
                progress_timeout_secs: w
                    .lifecycle
                    .progress_timeout
                    .unwrap_or(d.progress_timeout_secs),
                phone_home_timeout_secs: w
                    .lifecycle
                    .phone_home_timeout
                    .unwrap_or(d.phone_home_timeout_secs),
                callback_grace_secs: w.lifecycle.callback_grace.unwrap_or(d.callback_grace_secs),
                dhcp_timeout_secs: w.lifecycle.dhcp_timeout.unwrap_or(d.dhcp_timeout_secs),
                boot_timeout_secs: w.lifecycle.boot_timeout.unwrap_or(d.boot_timeout_secs),
                installer_timeout_secs: w
                    .lifecycle
                    .installer_timeout
                    .unwrap_or(d.installer_timeout_secs),
            }
        },
    }
}

fn secret_ref(w: &wire::SecretRefWire) -> SecretRef {
    match w {
        wire::SecretRefWire::Env(var) => SecretRef::Env(var.clone()),
        wire::SecretRefWire::File(path) => SecretRef::File(path.clone()),
    }
}

/// Image names are directory names under the images directory and URL path segments.
fn check_image(v: &mut Validator, line: Option<u64>, field: String, name: &str) {
    if let Err(e) = images::check_name(name) {
        v.problem(line, field, e.to_string());
    }
}

fn mtu(v: &mut Validator, line: Option<u64>, field: String, mtu: Option<u16>) -> u16 {
    let mtu = mtu.unwrap_or(1500);
    if !MTU_RANGE.contains(&mtu) {
        v.problem(
            line,
            field,
            format!(
                "MTU {mtu} is outside {}-{}",
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ),
        );
    }
    mtu
}

/// A name that is also a Linux interface name, a hostname label and a YAML-safe token.
fn check_name(v: &mut Validator, line: Option<u64>, field: String, name: &str, max: usize) {
    let ok = !name.is_empty()
        && name.len() <= max
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_'
        })
        && !name.starts_with('-');
    if !ok {
        v.problem(
            line,
            field,
            format!(
                "`{name}` must be 1-{max} characters of a-z, 0-9, `-`, `_` or `.`, not starting with `-`"
            ),
        );
    }
}

/// Report the second and later uses of the same key.
fn duplicates<'a, T>(
    v: &mut Validator,
    items: &'a [Spanned<T>],
    key: impl Fn(&'a T) -> String,
    field: impl Fn(&'a T) -> String,
    what: &str,
) {
    let mut seen: HashMap<String, Option<u64>> = HashMap::new();
    for item in items {
        let k = key(&item.value);
        match seen.get(&k) {
            Some(first) => {
                let at = first.map_or_else(String::new, |l| format!(" (line {l})"));
                v.problem(
                    line_of(item),
                    field(&item.value),
                    format!("duplicate {what} `{k}`, first used{at}"),
                );
            }
            None => {
                seen.insert(k, line_of(item));
            }
        }
    }
}

fn links(v: &mut Validator, items: &[Spanned<wire::LinkWire>]) -> Vec<Link> {
    duplicates(
        v,
        items,
        |l| l.name.clone(),
        |l| format!("links[{}].name", l.name),
        "link name",
    );
    let link_names: HashSet<&str> = items.iter().map(|l| l.value.name.as_str()).collect();
    let mut member_of: HashMap<&str, &str> = HashMap::new();
    let mut out = Vec::new();
    for item in items {
        let (w, line) = (&item.value, line_of(item));
        let at = |f: &str| format!("links[{}].{f}", w.name);
        check_name(v, line, at("name"), &w.name, 15);
        let mtu = mtu(v, line, at("mtu"), w.mtu);
        let bond = w.bond.as_ref().map(|b| {
            if b.members.is_empty() {
                v.problem(
                    line,
                    at("bond.members"),
                    "a bond needs at least one member NIC",
                );
            }
            for m in &b.members {
                if link_names.contains(m.as_str()) {
                    v.problem(
                        line,
                        at("bond.members"),
                        format!("`{m}` is a link of its own; a bond's members are NICs"),
                    );
                } else if let Some(other) = member_of.insert(m, &w.name) {
                    v.problem(
                        line,
                        at("bond.members"),
                        format!("NIC `{m}` is already a member of bond {other}"),
                    );
                }
            }
            let lacp = matches!(b.mode, wire::BondModeWire::Lacp);
            if b.lacp_rate.is_some() && !lacp {
                v.problem(
                    line,
                    at("bond.lacp_rate"),
                    "lacp_rate only applies to mode 802.3ad",
                );
            }
            Bond {
                members: b.members.clone(),
                mode: bond_mode(b.mode),
                lacp_rate: b.lacp_rate.map(|r| match r {
                    wire::LacpRateWire::Slow => "slow",
                    wire::LacpRateWire::Fast => "fast",
                }),
                transmit_hash_policy: b.transmit_hash_policy.map(hash_policy),
                mii_monitor_interval: b.mii_monitor_interval.unwrap_or(100),
            }
        });
        out.push(Link {
            name: w.name.clone(),
            mtu,
            bond,
        });
    }
    out
}

fn bond_mode(m: wire::BondModeWire) -> &'static str {
    use wire::BondModeWire::*;
    match m {
        BalanceRr => "balance-rr",
        ActiveBackup => "active-backup",
        BalanceXor => "balance-xor",
        Broadcast => "broadcast",
        Lacp => "802.3ad",
        BalanceTlb => "balance-tlb",
        BalanceAlb => "balance-alb",
    }
}

fn hash_policy(p: wire::HashPolicyWire) -> &'static str {
    use wire::HashPolicyWire::*;
    match p {
        Layer2 => "layer2",
        Layer2And3 => "layer2+3",
        Layer3And4 => "layer3+4",
        Encap2And3 => "encap2+3",
        Encap3And4 => "encap3+4",
    }
}

fn disk(v: &mut Validator, line: Option<u64>, field: String, w: &wire::DiskWire) -> DiskMatch {
    let d = DiskMatch {
        serial: w.serial.clone(),
        wwn: w.wwn.clone(),
        model: w.model.clone(),
        vendor: w.vendor.clone(),
        id_path: w.id_path.clone(),
        path: w.path.clone(),
        size: w.size.map(|s| match s {
            wire::DiskSizeWire::Smallest => "smallest",
            wire::DiskSizeWire::Largest => "largest",
        }),
        ssd: w.ssd,
    };
    for (key, value) in [
        ("serial", &d.serial),
        ("wwn", &d.wwn),
        ("model", &d.model),
        ("vendor", &d.vendor),
        ("id_path", &d.id_path),
        ("path", &d.path),
    ] {
        if value.as_deref().is_some_and(|s| s.trim().is_empty()) {
            v.problem(line, format!("{field}.{key}"), "is empty");
        }
    }
    let names_a_disk = [&d.serial, &d.wwn, &d.model, &d.id_path, &d.path]
        .iter()
        .any(|k| k.is_some());
    if d == DiskMatch::default() {
        v.problem(line, field.clone(), "an empty disk match selects subiquity's default, the largest disk; name it by model, serial, wwn or id_path");
    } else if !names_a_disk {
        // size and ssd choose by what else is in the machine: the largest disk of a storage
        // node is a Ceph OSD, the smallest SSD of a Dell is often its 16 GB SD module, and
        // hardware-RAID volumes say they rotate. A vendor is shared by every disk it sold.
        let what = match (d.size, d.ssd, &d.vendor) {
            (Some(size), _, _) => format!("`size: {size}`"),
            (None, Some(_), _) => "`ssd`".to_string(),
            _ => "`vendor`".to_string(),
        };
        v.problem(
            line,
            field.clone(),
            format!(
                "{what} without a disk's name picks a different disk on other hardware (the largest is a Ceph OSD, the smallest SSD an internal SD module); name the disk by model (as the BMC shows it, e.g. `model: \"DELLBOSS VD\"`), serial, wwn or id_path, and keep size/ssd only to choose among equal ones"
            ),
        );
    }
    if d.serial.is_some() && d.wwn.is_some() {
        v.problem(
            line,
            format!("{field}.wwn"),
            "serial and wwn both become subiquity's serial match; give one (wwn for SAS disks and RAID volumes, serial for SATA and NVMe)",
        );
    }
    if let Some(wwn) = &d.wwn
        && crate::disk::wwn_hex(wwn).is_none()
    {
        v.problem(
            line,
            format!("{field}.wwn"),
            format!("`{wwn}` is not a world wide name (16 or 32 hex digits, as `0x5000c500a1b2c3d4` or `naa.…`)"),
        );
    }
    if let Some(serial) = &d.serial
        && !crate::disk::is_glob(serial)
        && serial.trim().chars().count() < 4
    {
        // The serial is matched anywhere in udev's ID_SERIAL (after the model, before an NVMe
        // namespace): a short one would be found inside other disks' names.
        v.problem(
            line,
            format!("{field}.serial"),
            format!("`{serial}` is too short to name one disk (at least 4 characters)"),
        );
    }
    d
}

fn roles(
    v: &mut Validator,
    items: &[Spanned<wire::RoleWire>],
    links: &[Link],
    boot_links: &HashMap<String, String>,
    provisioning_link: Option<&str>,
) -> Vec<Role> {
    duplicates(
        v,
        items,
        |r| r.name.clone(),
        |r| format!("roles[{}].name", r.name),
        "role name",
    );
    let mut out = Vec::new();
    for item in items {
        let (w, line) = (&item.value, line_of(item));
        let at = |f: &str| format!("roles[{}].{f}", w.name);
        check_name(v, line, at("name"), &w.name, 63);
        let mut seen = HashSet::new();
        for l in &w.links {
            if !links.iter().any(|k| k.name == *l) {
                v.problem(line, at("links"), format!("no link named `{l}` in links"));
            }
            if !seen.insert(l) {
                v.problem(line, at("links"), format!("link `{l}` is listed twice"));
            }
        }
        let boot_link = w
            .boot_link
            .clone()
            .or_else(|| boot_links.get(&w.name).cloned())
            .or_else(|| provisioning_link.map(str::to_string))
            .unwrap_or_default();
        if !boot_link.is_empty() && !w.links.contains(&boot_link) {
            v.problem(
                line,
                at("boot_link"),
                format!(
                    "boot link `{boot_link}` is not one of the role's links ({})",
                    w.links.join(", ")
                ),
            );
        }
        role_ports(v, line, w, links);
        let disk = match &w.disk {
            Some(d) => Some(disk(v, line, at("disk"), d)),
            None => {
                v.problem(
                    line,
                    at("disk"),
                    "no install disk: subiquity would pick the largest disk (a Ceph OSD on a storage node); name one by model, serial, wwn or id_path",
                );
                None
            }
        };
        if let Some(image) = &w.image {
            check_image(v, line, at("image"), image);
        }
        out.push(Role {
            name: w.name.clone(),
            links: w.links.clone(),
            boot_link,
            disk,
            image: w.image.clone(),
            ports: w.ports.clone(),
        });
    }
    out
}

fn zones(
    v: &mut Validator,
    items: &[Spanned<wire::ZoneWire>],
    links: &[Link],
    roles: &[Role],
    seed: &SeedHost,
) -> Vec<Zone> {
    duplicates(
        v,
        items,
        |z| z.name.clone(),
        |z| format!("zones[{}].name", z.name),
        "zone name",
    );
    duplicates(
        v,
        items,
        |z| z.vlan.to_string(),
        |z| format!("zones[{}].vlan", z.name),
        "VLAN id",
    );
    let provisioning: Vec<&str> = items
        .iter()
        .filter(|z| z.value.provisioning)
        .map(|z| z.value.name.as_str())
        .collect();
    match provisioning.as_slice() {
        [_] => {}
        [] => v.problem(
            None,
            "zones",
            "no zone has `provisioning: true`; exactly one zone is where DHCP and PXE happen",
        ),
        many => v.problem(
            None,
            "zones",
            format!(
                "zones {} all say `provisioning: true`; exactly one may",
                many.join(", ")
            ),
        ),
    }

    let mut out: Vec<(Zone, Option<u64>)> = Vec::new();
    let mut native_on: HashMap<(&str, &str), &str> = HashMap::new();
    let mut booting: HashMap<&str, &str> = HashMap::new();
    for item in items {
        let (w, line) = (&item.value, line_of(item));
        let at = |f: &str| format!("zones[{}].{f}", w.name);
        check_name(v, line, at("name"), &w.name, 63);
        if !(1..=4094).contains(&w.vlan) {
            v.problem(
                line,
                at("vlan"),
                format!("VLAN id {} is outside 1-4094", w.vlan),
            );
        }
        let mtu = mtu(v, line, at("mtu"), w.mtu);
        match links.iter().find(|l| l.name == w.link) {
            None => v.problem(
                line,
                at("link"),
                format!("no link named `{}` in links", w.link),
            ),
            Some(link) if mtu > link.mtu => v.problem(
                line,
                at("mtu"),
                format!(
                    "MTU {mtu} is larger than the MTU {} of its link {}",
                    link.mtu, link.name
                ),
            ),
            Some(_) => {}
        }
        // Two native zones on one link clash only on a node that joins both: routed racks
        // each have their own native network on the same bond name.
        if w.native {
            for role in &w.roles {
                if let Some(other) = native_on.insert((&w.link, role), &w.name) {
                    v.problem(
                        line,
                        at("native"),
                        format!(
                            "zone {other} is already native (untagged) on link {} for role {role}",
                            w.link
                        ),
                    );
                }
            }
        }
        if w.provisioning && !w.native {
            v.problem(
                line,
                at("native"),
                format!(
                    "the provisioning zone must be native (untagged) on its link {}: PXE firmware does not tag VLANs",
                    w.link
                ),
            );
        }
        if w.relayed {
            relayed_zone_problems(v, line, w, seed);
        }
        if w.provisioning && !w.host_addresses {
            v.problem(
                line,
                at("host_addresses"),
                "the provisioning zone hands out node addresses; it cannot be false here",
            );
        }
        for role in &w.roles {
            match roles.iter().find(|r| r.name == *role) {
                None => v.problem(
                    line,
                    at("roles"),
                    format!("no role named `{role}` in roles"),
                ),
                Some(r) if !r.links.contains(&w.link) => v.problem(
                    line,
                    at("roles"),
                    format!(
                        "role {role} joins this zone but has no link {} (its links: {})",
                        w.link,
                        r.links.join(", ")
                    ),
                ),
                Some(r)
                    if (w.relayed || (w.provisioning && provisioning.len() == 1))
                        && r.boot_link != w.link =>
                {
                    v.problem(
                        line,
                        at("link"),
                        format!(
                            "role {role} boots from link {}, but its boot zone {} rides on {}",
                            r.boot_link, w.name, w.link
                        ),
                    )
                }
                Some(_) => {}
            }
        }
        if w.provisioning {
            let relayed = |role: &str| {
                items
                    .iter()
                    .any(|z| z.value.relayed && z.value.roles.iter().any(|r| r == role))
            };
            for r in roles
                .iter()
                .filter(|r| !w.roles.contains(&r.name) && !relayed(&r.name))
            {
                v.problem(
                    line,
                    at("roles"),
                    format!(
                        "role {} joins neither the provisioning zone nor a relayed one; its nodes could not PXE boot",
                        r.name
                    ),
                );
            }
        }
        if w.relayed || (w.provisioning && provisioning.len() == 1) {
            // One boot zone per role: DHCP would answer its nodes from the zone of whichever
            // segment they ask on, and the netplan could not say which one is native.
            for role in &w.roles {
                if let Some(other) = booting.insert(role.as_str(), w.name.as_str()) {
                    v.problem(
                        line,
                        at("roles"),
                        format!(
                            "role {role} already boots in zone {other}; a role has one boot zone (the provisioning zone or one relayed zone)"
                        ),
                    );
                }
            }
        }
        if let Some(bridge) = &w.bridge {
            check_name(v, line, at("bridge"), bridge, 15);
        }
        let iface = if w.native {
            w.link.clone()
        } else {
            format!("{}.{}", w.link, w.vlan)
        };
        if iface.len() > 15 {
            v.problem(
                line,
                at("link"),
                format!("interface name {iface} is longer than Linux's 15 characters; use a shorter link name"),
            );
        }
        let subnet = match w.subnet.parse::<Ipv4Net>() {
            Ok(s) => s,
            Err(e) => {
                v.problem(line, at("subnet"), e.to_string());
                continue;
            }
        };
        if let Some(gw) = w.gateway
            && (!subnet.contains(gw) || gw == subnet.network() || gw == subnet.broadcast())
        {
            v.problem(
                line,
                at("gateway"),
                format!("gateway {gw} is not a host address of {subnet}"),
            );
        }
        let discovery_pool = w.discovery_pool.as_ref().map(|p| Pool {
            start: p.start,
            end: p.end,
        });
        if let Some(pool) = discovery_pool {
            discovery_pool_problems(
                v,
                line,
                at("discovery_pool"),
                w,
                &subnet,
                pool,
                seed.address,
            );
        }
        out.push((
            Zone {
                name: w.name.clone(),
                vlan: w.vlan,
                subnet,
                gateway: w.gateway,
                dns: w.dns.clone(),
                ntp: w.ntp.clone(),
                mtu,
                link: w.link.clone(),
                native: w.native,
                provisioning: w.provisioning,
                relayed: w.relayed,
                host_addresses: w.host_addresses,
                roles: w.roles.clone(),
                discovery_pool,
                bridge: w.bridge.clone(),
            },
            line,
        ));
    }
    for (i, (a, line)) in out.iter().enumerate() {
        if let Some((b, _)) = out[..i].iter().find(|(b, _)| b.subnet.overlaps(&a.subnet)) {
            v.problem(
                *line,
                format!("zones[{}].subnet", a.name),
                format!(
                    "{} overlaps zone {}'s subnet {}",
                    a.subnet, b.name, b.subnet
                ),
            );
        }
    }
    out.into_iter().map(|(z, _)| z).collect()
}

fn discovery_pool_problems(
    v: &mut Validator,
    line: Option<u64>,
    field: String,
    w: &wire::ZoneWire,
    subnet: &Ipv4Net,
    pool: Pool,
    seed_address: Ipv4Addr,
) {
    if !w.boots() {
        v.problem(
            line,
            field,
            "only the provisioning zone and relayed zones can have a discovery pool",
        );
        return;
    }
    if pool.start > pool.end {
        v.problem(
            line,
            field,
            format!("pool start {} is after its end {}", pool.start, pool.end),
        );
        return;
    }
    let host = |a: Ipv4Addr| subnet.contains(a) && a != subnet.network() && a != subnet.broadcast();
    if !host(pool.start) || !host(pool.end) {
        v.problem(
            line,
            field,
            format!(
                "pool {}-{} is not inside the host addresses of {subnet}",
                pool.start, pool.end
            ),
        );
        return;
    }
    for (what, addr) in [
        ("seed's own address", Some(seed_address)),
        ("the gateway", w.gateway),
    ] {
        if let Some(addr) = addr.filter(|a| pool.contains(*a)) {
            v.problem(
                line,
                field.clone(),
                format!("pool {}-{} contains {what} {addr}", pool.start, pool.end),
            );
        }
    }
}

/// `ports:` names ports the role's links have, each a different BMC NIC Id.
fn role_ports(v: &mut Validator, line: Option<u64>, w: &wire::RoleWire, links: &[Link]) {
    let at = format!("roles[{}].ports", w.name);
    let ports: Vec<&String> = links
        .iter()
        .filter(|l| w.links.contains(&l.name))
        .flat_map(|l| match &l.bond {
            Some(b) => b.members.iter().collect::<Vec<_>>(),
            None => vec![&l.name],
        })
        .collect();
    let mut ids: HashMap<&str, &str> = HashMap::new();
    for (port, id) in &w.ports {
        if !ports.contains(&port) {
            v.problem(
                line,
                at.clone(),
                format!(
                    "`{port}` is no port of the role's links (its ports: {})",
                    ports
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if id.trim().is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
            v.problem(
                line,
                at.clone(),
                format!(
                    "{port}: {id:?} is not a NIC Id as a BMC reports it (`NIC.Embedded.1-1-1`)"
                ),
            );
        } else if let Some(other) = ids.insert(id, port) {
            v.problem(
                line,
                at.clone(),
                format!("{port}: NIC {id} is already port {other}'s"),
            );
        }
    }
}

/// The NIC names a node of `role` has: members of its bonds and its plain NIC links.
fn role_nics<'a>(role: &'a Role, links: &'a [Link]) -> impl Iterator<Item = &'a String> + 'a {
    links
        .iter()
        .filter(|l| role.links.contains(&l.name))
        .flat_map(|l| match &l.bond {
            Some(b) => b.members.iter().collect::<Vec<_>>(),
            None => vec![&l.name],
        })
}

fn nodes(
    v: &mut Validator,
    items: &[Spanned<wire::NodeWire>],
    roles: &[Role],
    zones: &[Zone],
    links: &[Link],
    default_image: &str,
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
            .unwrap_or_else(|| default_image.to_string());
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

fn bmc_tls(
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

/// A relayed zone is a routed rack's provisioning network: its firmware talks untagged, its
/// nodes get addresses there, and the installer reaches seed through its gateway.
fn relayed_zone_problems(
    v: &mut Validator,
    line: Option<u64>,
    w: &wire::ZoneWire,
    seed: &SeedHost,
) {
    let at = |f: &str| format!("zones[{}].{f}", w.name);
    if w.provisioning {
        v.problem(
            line,
            at("relayed"),
            "a zone is either seed's own provisioning network or relayed to it, not both",
        );
    }
    if !w.native {
        v.problem(
            line,
            at("native"),
            format!(
                "a relayed zone must be native (untagged) on its link {}: PXE firmware does not tag VLANs",
                w.link
            ),
        );
    }
    if !w.host_addresses {
        v.problem(
            line,
            at("host_addresses"),
            "a relayed zone hands out node addresses; it cannot be false here",
        );
    }
    if w.gateway.is_none() {
        v.problem(
            line,
            at("gateway"),
            "a relayed zone needs its gateway (normally the relay's router): the installer reaches seed through it",
        );
    }
    if let Ok(subnet) = w.subnet.parse::<Ipv4Net>()
        && subnet.contains(seed.address)
    {
        v.problem(
            line,
            at("relayed"),
            format!(
                "seed's address {} is in this zone: it is seed's own segment, not a relayed one",
                seed.address
            ),
        );
    }
}

fn seed_in_provisioning_zone(v: &mut Validator, line: Option<u64>, config: &Config) {
    let Some(zone) = config.zones.iter().find(|z| z.provisioning) else {
        return;
    };
    let addr = config.seed.address;
    let net = &zone.subnet;
    if !net.contains(addr) || addr == net.network() || addr == net.broadcast() {
        v.problem(
            line,
            "seed.address",
            format!(
                "{addr} is not a host address of the provisioning zone {} ({net})",
                zone.name
            ),
        );
    } else if zone.gateway == Some(addr) {
        v.problem(
            line,
            "seed.address",
            format!("{addr} is the gateway of zone {}", zone.name),
        );
    }
    check_url(v, line, "seed.url", &config.seed.url);
    if !(60..=86_400 * 7).contains(&config.seed.dhcp.lease_secs) {
        v.problem(
            line,
            "seed.dhcp.lease_time",
            format!(
                "{} s is outside 60 s to 7 days",
                config.seed.dhcp.lease_secs
            ),
        );
    }
    let lifecycle = config.seed.lifecycle;
    if !(1..=10).contains(&lifecycle.install_attempts) {
        v.problem(
            line,
            "seed.lifecycle.install_attempts",
            format!("{} is outside 1-10", lifecycle.install_attempts),
        );
    }
    // A lab's stand-in installer reports within seconds; subiquity on a rack can be quiet for
    // minutes (keep an hour there). Below 30 s even a TCG virtual machine's firmware is slower.
    if (1..30).contains(&lifecycle.progress_timeout_secs) {
        v.problem(
            line,
            "seed.lifecycle.progress_timeout",
            format!(
                "{} s is shorter than a network boot takes (at least 30 s, or 0 for never)",
                lifecycle.progress_timeout_secs
            ),
        );
    }
    if (1..30).contains(&lifecycle.phone_home_timeout_secs) {
        v.problem(
            line,
            "seed.lifecycle.phone_home_timeout",
            format!(
                "{} s is shorter than a reboot takes (at least 30 s, or 0 for never)",
                lifecycle.phone_home_timeout_secs
            ),
        );
    }
    if config.seed.interface.is_empty() {
        v.problem(
            line,
            "seed.interface",
            "the provisioning interface must be named",
        );
    }
}

/// URLs end up in kernel command lines and shell commands of the installer: only plain
/// characters, so nothing needs quoting on the way.
fn check_url(v: &mut Validator, line: Option<u64>, field: &str, url: &str) {
    let plain = url
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~:/[]%@+=,".contains(c));
    if !(url.starts_with("http://") || url.starts_with("https://")) || !plain {
        v.problem(
            line,
            field,
            format!("`{url}` is not a plain http:// or https:// URL (no spaces, quotes or shell characters)"),
        );
    }
}

fn mirror(v: &mut Validator, item: &Spanned<wire::MirrorWire>) -> Mirror {
    let (w, line) = (&item.value, line_of(item));
    let mut repos: Vec<MirrorRepo> = Vec::new();
    for r in &w.repos {
        let at = format!("mirror.repos[{}]", r.prefix);
        let plain = !r.prefix.is_empty()
            && !r.prefix.starts_with('.')
            && r.prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !plain {
            v.problem(
                line,
                format!("{at}.prefix"),
                "a prefix is one path segment of a-z, A-Z, 0-9, `-`, `_`, `.` (not starting with `.`)",
            );
        }
        if repos.iter().any(|o| o.prefix == r.prefix) {
            v.problem(line, format!("{at}.prefix"), "given twice");
        }
        if r.static_dir.is_none() && r.upstream.is_empty() {
            v.problem(
                line,
                at.clone(),
                "needs `static` (a mirror directory), `upstream` (URLs to cache from), or both",
            );
        }
        for url in &r.upstream {
            check_url(v, line, &format!("{at}.upstream"), url);
        }
        repos.push(MirrorRepo {
            prefix: r.prefix.clone(),
            static_dir: r.static_dir.clone(),
            upstream: r
                .upstream
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
        });
    }
    let cache_bytes = match w.cache_size.as_deref() {
        None => crate::config::model::DEFAULT_MIRROR_CACHE,
        Some(size) => match lvm_size(size) {
            Some(bytes) if bytes > 0 => bytes,
            Some(_) => {
                v.problem(
                    line,
                    "mirror.cache_size",
                    "a cache of 0 bytes keeps nothing",
                );
                crate::config::model::DEFAULT_MIRROR_CACHE
            }
            None => {
                v.problem(
                    line,
                    "mirror.cache_size",
                    format!("`{size}` is not a size like `32G` (a whole number and M, G or T; binary units)"),
                );
                crate::config::model::DEFAULT_MIRROR_CACHE
            }
        },
    };
    Mirror {
        cache_dir: w.cache_dir.clone(),
        cache_bytes,
        repos,
    }
}

fn install(v: &mut Validator, item: &Spanned<wire::InstallWire>, seed: &SeedHost) -> Install {
    let (w, line) = (&item.value, line_of(item));
    let user = &w.user;
    let posix = user
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && user.name.len() <= 32
        && user
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !posix {
        v.problem(
            line,
            "install.user.name",
            format!("`{}` is not a valid login name (a-z, 0-9, `_`, `-`; starting with a letter or `_`)", user.name),
        );
    }
    if RESERVED_USERNAMES.contains(&user.name.as_str()) {
        v.problem(
            line,
            "install.user.name",
            format!(
                "`{}` is a system account or group Ubuntu reserves (subiquity refuses it); OSISM's operator is `dragon`",
                user.name
            ),
        );
    }
    for (key, id) in [("uid", user.uid), ("gid", user.gid)] {
        if let Some(id) = id
            && !(1000..=59999).contains(&id)
        {
            v.problem(
                line,
                format!("install.user.{key}"),
                format!("{id} is outside 1000-59999, the range Debian and Ubuntu leave to local accounts"),
            );
        }
    }
    if user.gid.is_some() && user.uid.is_none() {
        v.problem(line, "install.user.gid", "a gid needs a uid too");
    }
    if user.ssh_authorized_keys.is_empty() && user.password_hash.is_none() {
        v.problem(
            line,
            "install.user",
            "give ssh_authorized_keys (or a password_hash): otherwise nobody can log in to an installed node",
        );
    }
    for key in &user.ssh_authorized_keys {
        let kind = key.split_whitespace().next().unwrap_or_default();
        if !(kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-")) {
            v.problem(
                line,
                "install.user.ssh_authorized_keys",
                format!(
                    "`{}` does not start with an SSH key type (ssh-ed25519, ssh-rsa, ecdsa-…)",
                    key.chars().take(24).collect::<String>()
                ),
            );
        }
    }
    if let Some(hash) = &user.password_hash
        && !hash.starts_with('$')
    {
        v.problem(
            line,
            "install.user.password_hash",
            "not a crypt(3) hash (it starts with `$`, e.g. from `mkpasswd -m sha-512`); never a plain password",
        );
    }
    let apt_mirror = w
        .apt_mirror
        .clone()
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("{}/apt/ubuntu", seed.url));
    check_url(v, line, "install.apt_mirror", &apt_mirror);
    let lvm = !matches!(w.storage_layout, Some(wire::LayoutWire::Direct));
    let sizing_policy = w.sizing_policy.map(|p| match p {
        wire::SizingWire::Scaled => "scaled",
        wire::SizingWire::All => "all",
    });
    let root_bytes = w.root_size.as_deref().and_then(|size| {
        let bytes = lvm_size(size);
        if bytes.is_none() {
            v.problem(
                line,
                "install.root_size",
                format!("`{size}` is not a size like `200G` (a whole number and M, G or T; LVM's binary units)"),
            );
        }
        bytes
    });
    if !lvm {
        for (key, set) in [
            ("sizing_policy", sizing_policy.is_some()),
            ("root_size", root_bytes.is_some()),
        ] {
            if set {
                v.problem(
                    line,
                    format!("install.{key}"),
                    "sizes the LVM layout's root volume; `storage_layout: direct` has none",
                );
            }
        }
    }
    if let Some(bytes) = root_bytes
        && bytes < 10 << 30
    {
        v.problem(
            line,
            "install.root_size",
            "a root under 10G does not hold Ubuntu and its updates",
        );
    }
    Install {
        user: OperatorUser {
            name: user.name.clone(),
            ssh_authorized_keys: user.ssh_authorized_keys.clone(),
            password_hash: user.password_hash.clone(),
            uid: user.uid,
            gid: user.gid.or(user.uid),
        },
        timezone: w.timezone.clone().unwrap_or_else(|| "Etc/UTC".into()),
        locale: w.locale.clone().unwrap_or_else(|| "en_US.UTF-8".into()),
        keyboard: w.keyboard.clone().unwrap_or_else(|| "us".into()),
        storage_layout: if lvm { "lvm" } else { "direct" },
        sizing_policy,
        root_bytes,
        packages: w.packages.clone(),
        templates_dir: w.templates_dir.clone(),
        apt_mirror,
    }
}

/// A BMC timeout in seconds: 1 to 600, `default` when unset.
fn bmc_seconds(
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

/// Bytes of an LVM size as an operator writes it (`200G`: binary units, as `lvextend -L`).
fn lvm_size(size: &str) -> Option<u64> {
    let size = size.trim();
    let (number, unit) = size.split_at(size.len().checked_sub(1)?);
    let shift = match unit {
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Names subiquity refuses for the installed system's user: its `reserved-usernames` file
/// (base-passwd's static users and groups, the names base-passwd's README reserves, Ubuntu's
/// `admin`, and system users of common packages).
const RESERVED_USERNAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "adm",
    "tty",
    "disk",
    "kmem",
    "dialout",
    "fax",
    "voice",
    "cdrom",
    "floppy",
    "tape",
    "sudo",
    "audio",
    "dip",
    "operator",
    "src",
    "shadow",
    "utmp",
    "video",
    "sasl",
    "plugdev",
    "staff",
    "users",
    "nogroup",
    "netplan",
    "ftn",
    "mysql",
    "tac-plus",
    "alias",
    "qmail",
    "qmaild",
    "qmails",
    "qmailr",
    "qmailq",
    "qmaill",
    "qmailp",
    "asterisk",
    "vpopmail",
    "vchkpw",
    "slurm",
    "hacluster",
    "haclient",
    "grsec-tpe",
    "grsec-sock-all",
    "grsec-sock-clt",
    "grsec-sock-srv",
    "grsec-proc",
    "ceph",
    "opensrf",
    "libvirt-qemu",
    "admin",
    "Debian-exim",
    "bind",
    "crontab",
    "cupsys",
    "dcc",
    "dhcp",
    "dictd",
    "dnsmasq",
    "dovecot",
    "fetchmail",
    "firebird",
    "ftp",
    "fuse",
    "gdm",
    "haldaemon",
    "hplilp",
    "identd",
    "input",
    "jwhois",
    "klog",
    "kvm",
    "lpadmin",
    "maas",
    "messagebus",
    "mythtv",
    "netdev",
    "powerdev",
    "radvd",
    "render",
    "saned",
    "sbuild",
    "scanner",
    "sgx",
    "slocate",
    "ssh",
    "sshd",
    "ssl-cert",
    "sslwrap",
    "statd",
    "syslog",
    "telnetd",
    "tftpd",
];
