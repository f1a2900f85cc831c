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

use super::model::{
    BMC_ACTION_TIMEOUT_SECS, BMC_TIMEOUT_SECS, Bmc, BmcTls, Bond, Config, DhcpSettings, DiskMatch,
    Firmware, Install, InstallMethod, IpxePolicy, Lifecycle, Link, Mirror, MirrorRepo, NetBoot,
    Node, OperatorUser, Pool, Ports, PowerDriver, QemuBoot, QemuNode, Registry, RegistryUpstream,
    Role, SecretRef, SeedHost, Wipe, Zone,
};
use super::problem::Problem;
use super::wire::{self, ConfigFile};
use crate::net::{Ipv4Net, MacAddr};
use crate::plan;

mod install;
mod links;
mod mirror;
mod nodes;
mod registry;
mod roles;
mod seed;
mod zones;

use install::*;
use links::*;
use mirror::*;
use nodes::*;
use registry::*;
use roles::*;
use seed::*;
use zones::*;

/// Where seed keeps its state when the config does not say.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/seed";

/// The image nodes install from when neither they, their role nor `install.image` name one.
pub const DEFAULT_IMAGE: &str = "ubuntu-24.04";

/// The image `method: image` nodes boot (a kernel and `seed agent ramdisk`'s ramdisk) unless
/// `install.agent_image` names another.
pub const DEFAULT_AGENT_IMAGE: &str = "seed-agent";

/// What a node has unless its role or itself says otherwise: `install:`'s settings.
struct NodeDefaults {
    image: String,
    agent_image: String,
    method: InstallMethod,
}

fn method(wire: wire::MethodWire) -> InstallMethod {
    match wire {
        wire::MethodWire::Autoinstall => InstallMethod::Autoinstall,
        wire::MethodWire::Image => InstallMethod::Image,
    }
}

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
    let mut seed = seed_host(&file.seed.value);
    let zones = zones(&mut v, &file.zones, &links, &roles, &seed);
    let install_line = file.install.as_ref().and_then(line_of);
    let install_wire = file.install.as_ref().map(|i| &i.value);
    let mut image_of = |field: &str, given: Option<&String>, default: &str| match given {
        Some(image) => {
            check_image(&mut v, install_line, format!("install.{field}"), image);
            image.clone()
        }
        None => default.to_string(),
    };
    let defaults = NodeDefaults {
        image: image_of(
            "image",
            install_wire.and_then(|i| i.image.as_ref()),
            DEFAULT_IMAGE,
        ),
        agent_image: image_of(
            "agent_image",
            install_wire.and_then(|i| i.agent_image.as_ref()),
            DEFAULT_AGENT_IMAGE,
        ),
        method: install_wire
            .and_then(|i| i.method)
            .map(method)
            .unwrap_or_default(),
    };
    if file.seed.value.enlist {
        if !zones
            .iter()
            .any(|z| z.boots() && z.discovery_pool.is_some())
        {
            v.problem(
                line_of(&file.seed),
                "seed.enlist",
                "no provisioning or relayed zone has a discovery_pool: unknown machines would get no address to be enlisted with",
            );
        }
        seed.enlist = Some(defaults.agent_image.clone());
    }
    let nodes = nodes(&mut v, &file.nodes, &roles, &zones, &links, &defaults);
    let install = file.install.as_ref().map(|i| install(&mut v, i, &seed));
    let mirror = file.mirror.as_ref().map(|m| mirror(&mut v, m));
    let registry = file
        .registry
        .as_ref()
        .map(|r| registry(&mut v, r, &seed))
        .unwrap_or_else(|| Registry {
            upstreams: Vec::new(),
            tag_max_age: crate::config::model::DEFAULT_TAG_MAX_AGE,
            cache_bytes: crate::config::model::DEFAULT_REGISTRY_CACHE,
            port: None,
            tls: None,
        });
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
        registry,
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

/// What each section's tests share: the example rack with one edit, checked.
#[cfg(test)]
mod testing {
    use super::super::Problem;

    /// The problems of the example rack (examples/osism-rack.yaml) after `from` → `to` (which
    /// must occur in it), as `field: message` lines; empty when it checks.
    pub(super) fn problems_after(from: &str, to: &str) -> Vec<String> {
        let example = crate::config::EXAMPLE;
        assert!(example.contains(from), "the example has no `{from}`");
        let text = example.replacen(from, to, 1);
        match crate::config::parse(&text, std::path::Path::new("rack.yaml")) {
            Ok(_) => Vec::new(),
            Err(crate::config::ConfigError::Invalid { problems, .. }) => problems
                .iter()
                .map(|Problem { field, message, .. }| format!("{field}: {message}"))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    /// Asserts that the edit gives a problem on `field` saying `says` (others may follow
    /// from it: a missing link also leaves a zone's role without it).
    pub(super) fn refused(from: &str, to: &str, field: &str, says: &str) {
        let problems = problems_after(from, to);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(says)),
            "`{to}`: expected a problem on {field} saying `{says}`, got {problems:#?}"
        );
    }
}
