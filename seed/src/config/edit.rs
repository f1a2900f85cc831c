//! A node added to a config file as the operator wrote it (`seed adopt`): the file stays
//! theirs — comments, order, spelling — and gains one item at the end of `nodes:`. The result
//! is only text; the caller checks it as a whole config before writing it.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::net::MacAddr;

/// A node `seed adopt` adds.
#[derive(Debug, Clone)]
pub struct NewNode {
    /// Host name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its boot NIC's MAC (the one seed saw); `None` for a Redfish node whose BMC reports them.
    pub mac: Option<MacAddr>,
    /// Its BMC's address: the address plan's suffix.
    pub bmc: Ipv4Addr,
    /// `redfish`, `qemu` or `manual`.
    pub driver: String,
    /// The Redfish service's URL when it is not `https://<bmc>`.
    pub endpoint: Option<String>,
    /// Which of the BMC's systems (Id, UUID or serial).
    pub system: Option<String>,
    /// The BMC user.
    pub username: Option<String>,
    /// Where the BMC password is: `("env", VAR)` or `("file", PATH)`.
    pub password: Option<(&'static str, String)>,
    /// It booted legacy BIOS (`firmware: bios`; UEFI is the default).
    pub bios: bool,
    /// A comment line above the item (where the node came from).
    pub comment: String,
}

/// A YAML double-quoted scalar (JSON's string syntax is a subset of it).
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

impl NewNode {
    /// The list item, each line starting with `indent`.
    fn item(&self, indent: &str) -> String {
        let mut bmc = format!("address: {}, driver: {}", self.bmc, quoted(&self.driver));
        if let Some(endpoint) = &self.endpoint {
            let _ = write!(bmc, ", endpoint: {}", quoted(endpoint));
        }
        if let Some(system) = &self.system {
            let _ = write!(bmc, ", system: {}", quoted(system));
        }
        if let Some(user) = &self.username {
            let _ = write!(bmc, ", username: {}", quoted(user));
        }
        if let Some((kind, value)) = &self.password {
            let _ = write!(bmc, ", password: {{ {kind}: {} }}", quoted(value));
        }
        let mut s = String::new();
        let comment: String = self.comment.chars().filter(|c| !c.is_control()).collect();
        let _ = writeln!(s, "{indent}# {comment}");
        let _ = writeln!(s, "{indent}- name: {}", quoted(&self.name));
        let _ = writeln!(s, "{indent}  role: {}", quoted(&self.role));
        let _ = writeln!(s, "{indent}  bmc: {{ {bmc} }}");
        if let Some(mac) = self.mac {
            let _ = writeln!(s, "{indent}  macs: [{}]", quoted(&mac.to_string()));
        }
        if self.bios {
            let _ = writeln!(s, "{indent}  firmware: bios");
        }
        s
    }
}

/// `text` with `node` as the last item of its top-level `nodes:` list (which is added when the
/// file has none, or written out when it is `nodes: []`). A `nodes:` written as a non-empty
/// flow list (`[...]`) is left to the operator.
pub fn add_node(text: &str, node: &NewNode) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let at: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("nodes:"))
        .map(|(i, _)| i)
        .collect();
    let mut out = String::with_capacity(text.len() + 256);
    let Some(&start) = at.first() else {
        out.push_str(text);
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("nodes:\n");
        out.push_str(&node.item("  "));
        return Ok(out);
    };
    if at.len() > 1 {
        return Err(format!(
            "`nodes:` appears {} times at the top level (lines {})",
            at.len(),
            at.iter()
                .map(|i| (i + 1).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let rest = lines[start]["nodes:".len()..].trim();
    let value = rest.split(" #").next().unwrap_or("").trim();
    let value = if value.starts_with('#') { "" } else { value };
    match value {
        "" => {}
        "[]" => {
            for l in &lines[..start] {
                out.push_str(l);
            }
            out.push_str("nodes:\n");
            out.push_str(&node.item("  "));
            for l in &lines[start + 1..] {
                out.push_str(l);
            }
            return Ok(out);
        }
        _ => {
            return Err(format!(
                "line {}: `nodes:` is written as `{}`; add the node by hand",
                start + 1,
                crate::net::printable(value)
            ));
        }
    }
    // The block: indented lines, blank lines and items of an indentless sequence (`- ` at the
    // first column), up to the next top-level key or comment.
    let in_block =
        |l: &str| l.trim().is_empty() || l.starts_with([' ', '\t']) || l.starts_with('-');
    let end = lines[start + 1..]
        .iter()
        .position(|l| !in_block(l))
        .map_or(lines.len(), |p| start + 1 + p);
    // After its last line with content: trailing blank lines and comments stay before what follows.
    let last = (start + 1..end)
        .rev()
        .find(|&i| {
            let t = lines[i].trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(start);
    let indent = lines[start + 1..end]
        .iter()
        .find_map(|l| {
            let t = l.trim_start_matches([' ', '\t']);
            t.starts_with("- ")
                .then(|| l[..l.len() - t.len()].to_string())
        })
        .unwrap_or_else(|| "  ".to_string());
    for l in &lines[..=last] {
        out.push_str(l);
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&node.item(&indent));
    for l in &lines[last + 1..] {
        out.push_str(l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_node() -> NewNode {
        NewNode {
            name: "rack1-new".into(),
            role: "compute".into(),
            mac: Some("52:54:00:20:00:99".parse().unwrap()),
            bmc: Ipv4Addr::new(10, 10, 10, 99),
            driver: "redfish".into(),
            endpoint: None,
            system: None,
            username: Some("root".into()),
            password: Some(("env", "BMC_PASSWORD".into())),
            bios: true,
            comment: "adopted".into(),
        }
    }

    #[test]
    fn the_node_goes_after_the_last_item_and_everything_else_stays() {
        let text = "seed: {}\nnodes:\n  # the first\n  - name: a\n    role: compute\n\n# storage\ninstall:\n  user: {}\n";
        let out = add_node(text, &new_node()).unwrap();
        assert_eq!(
            out,
            "seed: {}\nnodes:\n  # the first\n  - name: a\n    role: compute\n  # adopted\n  - name: \"rack1-new\"\n    role: \"compute\"\n    bmc: { address: 10.10.10.99, driver: \"redfish\", username: \"root\", password: { env: \"BMC_PASSWORD\" } }\n    macs: [\"52:54:00:20:00:99\"]\n    firmware: bios\n\n# storage\ninstall:\n  user: {}\n"
        );
        // An indentless sequence keeps its style; a last line without a newline gets one.
        let out = add_node("nodes:\n- name: a\n  role: r", &new_node()).unwrap();
        assert!(
            out.starts_with("nodes:\n- name: a\n  role: r\n# adopted\n- name: \"rack1-new\"\n"),
            "{out}"
        );
    }

    #[test]
    fn a_file_without_nodes_gets_the_list_and_a_flow_list_is_left_alone() {
        let out = add_node("seed: {}\nnodes: []  # none yet\nroles: []\n", &new_node()).unwrap();
        assert!(
            out.starts_with("seed: {}\nnodes:\n  # adopted\n  - name:"),
            "{out}"
        );
        assert!(out.ends_with("roles: []\n"), "{out}");
        let out = add_node("seed: {}", &new_node()).unwrap();
        assert!(out.starts_with("seed: {}\nnodes:\n  # adopted\n"), "{out}");
        let err = add_node("nodes: [{name: a}]\n", &new_node()).unwrap_err();
        assert!(err.contains("line 1") && err.contains("by hand"), "{err}");
    }

    #[test]
    fn names_are_quoted_so_yaml_cannot_be_injected() {
        let mut node = new_node();
        node.name = "x\"\n  evil: true".into();
        node.comment = "a\nb".into();
        let out = add_node("nodes:\n", &node).unwrap();
        assert!(out.contains(r#"- name: "x\"\n  evil: true""#), "{out}");
        assert!(out.contains("# ab\n"), "{out}");
    }
}
