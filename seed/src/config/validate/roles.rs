//! `roles:`: what each kind of node gets (zones, ports, disks, image).

use super::*;

pub(super) fn disk(
    v: &mut Validator,
    line: Option<u64>,
    field: String,
    w: &wire::DiskWire,
) -> DiskMatch {
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

pub(super) fn roles(
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
            method: w.method.map(method),
            wipe: match w.wipe {
                Some(wire::WipeWire::All) => Wipe::All,
                Some(wire::WipeWire::None) => Wipe::None,
                Some(wire::WipeWire::Root) | None => Wipe::Root,
            },
            discard: w.discard,
            ports: w.ports.clone(),
        });
    }
    out
}

/// `ports:` names ports the role's links have, each a different BMC NIC Id.
pub(super) fn role_ports(v: &mut Validator, line: Option<u64>, w: &wire::RoleWire, links: &[Link]) {
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
pub(super) fn role_nics<'a>(
    role: &'a Role,
    links: &'a [Link],
) -> impl Iterator<Item = &'a String> + 'a {
    links
        .iter()
        .filter(|l| role.links.contains(&l.name))
        .flat_map(|l| match &l.bond {
            Some(b) => b.members.iter().collect::<Vec<_>>(),
            None => vec![&l.name],
        })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{problems_after, refused};

    #[test]
    fn a_disk_rule_names_a_disk() {
        refused(
            r#"disk: { model: "DELLBOSS VD" }   # the BOSS card"#,
            r#"disk: { model: "" }   # the BOSS card"#,
            "roles[control].disk.model",
            "is empty",
        );
        refused(
            r#"disk: { model: "DELLBOSS VD" }   # the BOSS card"#,
            r#"disk: { wwn: "not-a-wwn" }   # the BOSS card"#,
            "roles[control].disk.wwn",
            "",
        );
        assert!(
            problems_after(
                r#"disk: { model: "DELLBOSS VD" }   # the BOSS card"#,
                r#"disk: { serial: "S4EVNX0N123456" }   # the BOSS card"#
            )
            .is_empty()
        );
    }

    #[test]
    fn a_role_joins_links_that_exist() {
        refused(
            "  - name: network\n    links: [bond0, bond1, bond2]",
            "  - name: network\n    links: [bond0, bond1, bond9]",
            "roles[network].links",
            "bond9",
        );
    }
}
