//! `links:`: the NICs, bonds and MTUs of a node's links.

use super::*;

pub(super) fn links(v: &mut Validator, items: &[Spanned<wire::LinkWire>]) -> Vec<Link> {
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

pub(super) fn bond_mode(m: wire::BondModeWire) -> &'static str {
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

pub(super) fn hash_policy(p: wire::HashPolicyWire) -> &'static str {
    use wire::HashPolicyWire::*;
    match p {
        Layer2 => "layer2",
        Layer2And3 => "layer2+3",
        Layer3And4 => "layer3+4",
        Encap2And3 => "encap2+3",
        Encap3And4 => "encap3+4",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::refused;

    #[test]
    fn a_bond_member_is_a_nic_of_one_bond_only() {
        refused(
            "members: [ens1f0, ens1f1]",
            "members: [ens1f0, eno1]",
            "links[bond1].bond.members",
            "NIC `eno1` is already a member of bond bond0",
        );
        refused(
            "members: [ens2f0, ens2f1]",
            "members: [ens2f0, bond0]",
            "links[bond2].bond.members",
            "is a link of its own",
        );
    }

    #[test]
    fn mtus_are_ethernet_mtus() {
        refused(
            "  - name: bond1              # data plane: storage and tunnel traffic, jumbo frames\n    mtu: 9000",
            "  - name: bond1\n    mtu: 9600",
            "links[bond1].mtu",
            "",
        );
    }
}
