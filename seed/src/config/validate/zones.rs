//! `zones:`: the networks (subnets, VLANs, gateways, discovery pools, relayed zones).

use super::*;

pub(super) fn zones(
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

pub(super) fn discovery_pool_problems(
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

/// A relayed zone is a routed rack's provisioning network: its firmware talks untagged, its
/// nodes get addresses there, and the installer reaches seed through its gateway.
pub(super) fn relayed_zone_problems(
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

#[cfg(test)]
mod tests {
    use super::super::testing::refused;

    #[test]
    fn vlans_gateways_and_links_are_checked() {
        refused(
            "    vlan: 20\n",
            "    vlan: 5000\n",
            "zones[api].vlan",
            "outside 1-4094",
        );
        refused(
            "    gateway: 203.0.113.1\n",
            "    gateway: 203.0.114.1\n",
            "zones[external].gateway",
            "not a host address of 203.0.113.0/24",
        );
        refused(
            "    link: bond2\n",
            "    link: bond7\n",
            "zones[external].link",
            "no link named `bond7`",
        );
    }

    #[test]
    fn the_discovery_pool_lies_in_the_zone_and_clear_of_nodes() {
        refused(
            "discovery_pool: { start: 10.1.10.200, end: 10.1.10.249 }",
            "discovery_pool: { start: 10.1.10.200, end: 10.1.11.249 }",
            "zones[management].discovery_pool",
            "",
        );
        // cmp3's plan address is 10.1.10.23.
        refused(
            "discovery_pool: { start: 10.1.10.200, end: 10.1.10.249 }",
            "discovery_pool: { start: 10.1.10.20, end: 10.1.10.29 }",
            "zones[management].discovery_pool",
            "contains node cmp3's address 10.1.10.23",
        );
    }
}
