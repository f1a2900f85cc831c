//! Every unknown field of a config file at once.
//!
//! serde stops at the first unknown field (`deny_unknown_fields` is an error, not a report),
//! so an operator with three typos would fix them one `seed check` at a time. Before serde runs,
//! this walks the YAML's mappings with their lines and compares each key with the fields the
//! wire struct at that place declares; the field lists come from serde's own derive (the
//! `FIELDS` a derived `Deserialize` hands to `deserialize_struct`), so they cannot drift from
//! `wire`. serde's own check stays behind it as the safety net for any place not listed here.

use serde::Deserialize;
use serde::de::{self, Visitor};
use serde_saphyr::granit_parser::{Event, Parser, ScanError, Span};

use super::problem::Problem;
use super::wire;

/// Field names of a wire struct, as serde's derive declares them.
type FieldList = fn() -> &'static [&'static str];

/// Every place a mapping can stand (`[]` is "every item of the list"), the wire struct there
/// and its fields. The config reference (`docs/CONFIG.md`) is written from the same table.
pub(crate) const PLACES: &[(&str, &str, FieldList)] = &[
    ("", "ConfigFile", fields::<wire::ConfigFile>),
    ("seed", "SeedWire", fields::<wire::SeedWire>),
    ("seed.ports", "PortsWire", fields::<wire::PortsWire>),
    ("seed.dhcp", "DhcpWire", fields::<wire::DhcpWire>),
    (
        "seed.lifecycle",
        "LifecycleWire",
        fields::<wire::LifecycleWire>,
    ),
    ("links[]", "LinkWire", fields::<wire::LinkWire>),
    ("links[].bond", "BondWire", fields::<wire::BondWire>),
    ("zones[]", "ZoneWire", fields::<wire::ZoneWire>),
    (
        "zones[].discovery_pool",
        "PoolWire",
        fields::<wire::PoolWire>,
    ),
    ("roles[]", "RoleWire", fields::<wire::RoleWire>),
    ("roles[].disk", "DiskWire", fields::<wire::DiskWire>),
    ("nodes[]", "NodeWire", fields::<wire::NodeWire>),
    ("nodes[].disk", "DiskWire", fields::<wire::DiskWire>),
    ("nodes[].bmc", "BmcWire", fields::<wire::BmcWire>),
    ("nodes[].bmc.tls", "BmcTlsWire", fields::<wire::BmcTlsWire>),
    ("nodes[].qemu", "QemuWire", fields::<wire::QemuWire>),
    ("install", "InstallWire", fields::<wire::InstallWire>),
    ("install.user", "UserWire", fields::<wire::UserWire>),
    ("mirror", "MirrorWire", fields::<wire::MirrorWire>),
    (
        "mirror.repos[]",
        "MirrorRepoWire",
        fields::<wire::MirrorRepoWire>,
    ),
    ("registry", "RegistryWire", fields::<wire::RegistryWire>),
    (
        "registry.upstreams[]",
        "RegistryUpstreamWire",
        fields::<wire::RegistryUpstreamWire>,
    ),
    (
        "registry.tls",
        "RegistryTlsWire",
        fields::<wire::RegistryTlsWire>,
    ),
];

/// The wire struct's fields at `path`.
fn fields_at(path: &str) -> Option<&'static [&'static str]> {
    PLACES
        .iter()
        .find(|(place, _, _)| *place == path)
        .map(|(_, _, fields)| fields())
}

/// Every key of `text` that is not a field where it stands, as problems naming line and field
/// (`links[bond1].mut`). Empty when the text is not YAML: serde then says why.
pub fn unknown_fields(text: &str) -> Vec<Problem> {
    let Some(root) = tree(text) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    walk(&root, "", "", &mut problems);
    problems
}

/// A YAML node with what the check needs: mapping keys with their lines, list items.
enum Node {
    Map(Vec<(String, usize, Node)>),
    Seq(Vec<Node>),
    Scalar(String),
    Other,
}

fn tree(text: &str) -> Option<Node> {
    let mut parser = Parser::new_from_str(text);
    let events: &mut Events<'_> = &mut parser;
    // Up to the first document's content; a second document is serde's business.
    loop {
        match events.next()?.ok()?.0 {
            Event::StreamStart | Event::DocumentStart(..) | Event::Comment(..) => {}
            Event::StreamEnd => return None,
            event => return node(event, events, 0),
        }
    }
}

type Events<'a> = dyn Iterator<Item = Result<(Event<'a>, Span), ScanError>> + 'a;

/// How deep a config can nest before it is not a config (bounds the recursion on hostile
/// input; serde-saphyr has its own budget for the real parse).
const MAX_DEPTH: usize = 64;

fn node<'a>(first: Event<'a>, events: &mut Events<'a>, depth: usize) -> Option<Node> {
    if depth > MAX_DEPTH {
        return None;
    }
    match first {
        Event::Scalar(value, ..) => Some(Node::Scalar(value.into_owned())),
        Event::SequenceStart(..) => {
            let mut items = Vec::new();
            loop {
                let (event, _) = next_content(events)?;
                if matches!(event, Event::SequenceEnd) {
                    return Some(Node::Seq(items));
                }
                items.push(node(event, events, depth + 1)?);
            }
        }
        Event::MappingStart(..) => {
            let mut entries = Vec::new();
            loop {
                let (key, span) = next_content(events)?;
                let key = match key {
                    Event::MappingEnd => return Some(Node::Map(entries)),
                    Event::Scalar(value, ..) => value.into_owned(),
                    // A complex key: not a field name, and serde will refuse it anyway.
                    other => {
                        node(other, events, depth + 1)?;
                        let (value, _) = next_content(events)?;
                        node(value, events, depth + 1)?;
                        continue;
                    }
                };
                let (value, _) = next_content(events)?;
                let value = node(value, events, depth + 1)?;
                entries.push((key, span.start.line(), value));
            }
        }
        _ => Some(Node::Other),
    }
}

/// The next event that is part of the document's content (comments and anchors skipped).
fn next_content<'a>(events: &mut Events<'a>) -> Option<(Event<'a>, Span)> {
    loop {
        let (event, span) = events.next()?.ok()?;
        match event {
            Event::Comment(..) | Event::Anchor(..) => {}
            event => return Some((event, span)),
        }
    }
}

fn walk(node: &Node, pattern: &str, shown: &str, problems: &mut Vec<Problem>) {
    match node {
        Node::Map(entries) => {
            let known = fields_at(pattern);
            for (key, line, value) in entries {
                let shown_key = join(shown, key);
                if let Some(known) = known
                    && !known.contains(&key.as_str())
                {
                    problems.push(Problem {
                        line: Some(*line as u64),
                        field: shown_key,
                        message: format!(
                            "unknown field `{key}`, expected one of {}",
                            known.join(", ")
                        ),
                    });
                    continue;
                }
                walk(value, &join(pattern, key), &shown_key, problems);
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                // Items are named as validation names them: by `name` (`prefix` for mirror
                // repos), else by index.
                let label = match item {
                    Node::Map(entries) => entries
                        .iter()
                        .find(|(k, _, _)| k == "name" || k == "prefix")
                        .and_then(|(_, _, v)| match v {
                            Node::Scalar(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_else(|| i.to_string()),
                    _ => i.to_string(),
                };
                walk(
                    item,
                    &format!("{pattern}[]"),
                    &format!("{shown}[{label}]"),
                    problems,
                );
            }
        }
        Node::Scalar(_) | Node::Other => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The field names serde's derive gives `T` (its `FIELDS`), read by asking `T` to deserialize
/// from a deserializer that only listens to `deserialize_struct`.
fn fields<T: Deserialize<'static>>() -> &'static [&'static str] {
    let mut found: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames { found: &mut found });
    found
}

struct FieldNames<'a> {
    found: &'a mut &'static [&'static str],
}

#[derive(Debug)]
struct Listened;

impl std::fmt::Display for Listened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names read")
    }
}

impl std::error::Error for Listened {}

impl de::Error for Listened {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Listened
    }
}

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = Listened;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Listened> {
        Err(Listened)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Listened> {
        *self.found = fields;
        Err(Listened)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn field_lists_come_from_serde() {
        assert_eq!(fields::<wire::PoolWire>(), &["start", "end"]);
        // Renamed fields by their YAML name.
        assert!(fields::<wire::MirrorRepoWire>().contains(&"static"));
    }

    #[test]
    fn every_unknown_field_at_once_with_its_line() {
        let text = "\
seed: { interface: eth0, address: 10.1.10.5, prots: { http: 80 } }
links:
  - name: bond1
    mut: 9000
    bond: { members: [a], mode: 802.3ad, lacp: fast }
nodes:
  - name: n1
    bmc:
      address: 10.1.0.1
      tls: { pin: x }
  - role: r
    colour: blue
zones: []
extra: 1
";
        let got: Vec<String> = unknown_fields(text)
            .into_iter()
            .map(|p| format!("{}: {}", p.line.unwrap(), p.field))
            .collect();
        assert_eq!(
            got,
            [
                "1: seed.prots",
                "4: links[bond1].mut",
                "5: links[bond1].bond.lacp",
                "10: nodes[n1].bmc.tls.pin",
                "12: nodes[1].colour",
                "14: extra",
            ]
        );
    }

    #[test]
    fn the_examples_have_none_and_every_mapping_in_them_is_checked() {
        for text in [
            super::super::EXAMPLE,
            include_str!("../../../examples/lab.yaml"),
        ] {
            assert!(unknown_fields(text).is_empty());
            // A stray key in every mapping of the examples is found: no place they use is
            // missing from `fields_at` (credential references are serde's: an enum).
            let root = tree(text).unwrap();
            let mut places = Vec::new();
            collect(&root, "", &mut places);
            for place in places {
                if place.ends_with(".password") || place.ends_with(".api_token") {
                    continue;
                }
                assert!(fields_at(&place).is_some(), "{place} is not checked");
            }
        }
    }

    fn collect(node: &Node, pattern: &str, out: &mut Vec<String>) {
        match node {
            Node::Map(entries) => {
                out.push(pattern.to_string());
                for (key, _, value) in entries {
                    // A node's `nics` is a map of names, not a struct.
                    if key != "nics" {
                        collect(value, &join(pattern, key), out);
                    }
                }
            }
            Node::Seq(items) => {
                for item in items {
                    collect(item, &format!("{pattern}[]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn not_yaml_is_left_to_serde() {
        assert!(unknown_fields("seed: [unclosed").is_empty());
        assert!(unknown_fields("").is_empty());
    }
}
