//! Ubuntu autoinstall documents for one node: user-data, meta-data and netplan.
//!
//! Pure: a [`NodeContext`] in, text out; no tokio, no sockets, no file system. Templates are
//! minijinja, embedded as defaults; an operator's override of a template is passed in by name
//! (seed reads the override directory). Templates are YAML with autoescape off, and every value
//! that comes from the operator's config goes through the `yaml` filter (JSON, YAML's flow syntax), so a key comment or a disk model
//! with `: # ' " {` or a newline cannot break the document (JSON is YAML's flow syntax).
//! Undefined variables are errors, never empty strings.

use std::collections::BTreeMap;

use base64::Engine;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// Template names, embedded defaults.
pub const TEMPLATES: [(&str, &str); 4] = [
    ("user-data", include_str!("../templates/user-data")),
    ("cloud-config", include_str!("../templates/cloud-config")),
    ("meta-data", include_str!("../templates/meta-data")),
    ("netplan", include_str!("../templates/netplan")),
];

/// Everything the templates may use about one node. Its field names are the templates'
/// top-level variables.
#[derive(Debug, Clone, Serialize)]
pub struct NodeContext {
    /// Host name of the installed system.
    pub hostname: String,
    /// The node's role.
    pub role: String,
    /// cloud-init instance id; changes on every provisioning so cloud-init runs again.
    pub instance_id: String,
    /// seed's base URL (`http://10.1.10.5`).
    pub seed_url: String,
    /// This node's private base URL, holding its secret token (`<seed_url>/nodes/<token>`).
    pub node_url: String,
    /// The APT mirror for `primary` and `security`.
    pub apt_mirror: String,
    /// The NIC(s) the node PXE-boots from; the installer keeps its path to seed over the first.
    pub boot_macs: Vec<String>,
    /// Serial console of the installed system, e.g. `ttyS1,115200n8`.
    pub console: Option<String>,
    /// The operator account.
    pub user: User,
    /// Which disk to install to (subiquity match keys: serial, model, path, size, ssd).
    pub disk: BTreeMap<String, serde_json::Value>,
    /// `lvm` or `direct`.
    pub storage_layout: String,
    /// subiquity's LVM `sizing-policy`, if set.
    pub sizing_policy: Option<String>,
    /// The root LV's least size in bytes, if set.
    pub root_bytes: Option<u64>,
    /// Time zone.
    pub timezone: String,
    /// Locale.
    pub locale: String,
    /// Keyboard layout.
    pub keyboard_layout: String,
    /// Extra packages.
    pub packages: Vec<String>,
    /// NTP servers for timesyncd in the installed system.
    pub ntp: Vec<String>,
    /// The installed system's network.
    pub network: Network,
}

/// The operator account (OSISM's is `dragon`).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// SSH public keys.
    pub ssh_authorized_keys: Vec<String>,
    /// A crypt(3) hash; without one the account's password is locked.
    pub password_hash: Option<String>,
    /// uid, if set.
    pub uid: Option<u32>,
    /// gid of its primary group (created at install time), if set.
    pub gid: Option<u32>,
}

/// The node's full netplan, as data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Network {
    /// Plain NICs: bond members and NIC links.
    pub ethernets: Vec<Ethernet>,
    /// Bonds.
    pub bonds: Vec<BondIface>,
    /// VLAN interfaces.
    pub vlans: Vec<Vlan>,
    /// Bridges (a host Open vSwitch bridge for a provider network, when asked for).
    pub bridges: Vec<Bridge>,
}

/// What every interface kind carries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Iface {
    /// Interface name.
    pub name: String,
    /// MTU, where set.
    pub mtu: Option<u16>,
    /// `a.b.c.d/len` addresses.
    pub addresses: Vec<String>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS servers.
    pub nameservers: Vec<String>,
}

/// A route.
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Destination (`default` or a CIDR).
    pub to: String,
    /// Gateway.
    pub via: String,
}

/// A plain NIC.
#[derive(Debug, Clone, Serialize)]
pub struct Ethernet {
    /// Name, addresses, MTU.
    #[serde(flatten)]
    pub iface: Iface,
    /// Match by MAC (and set the name) when the config gives one.
    pub mac: Option<String>,
}

/// A bond.
#[derive(Debug, Clone, Serialize)]
pub struct BondIface {
    /// Name, addresses, MTU.
    #[serde(flatten)]
    pub iface: Iface,
    /// Member NIC names.
    pub members: Vec<String>,
    /// netplan bond parameters (`mode`, `lacp-rate`, `transmit-hash-policy`, `mii-monitor-interval`).
    pub parameters: BTreeMap<String, serde_json::Value>,
}

/// A VLAN interface.
#[derive(Debug, Clone, Serialize)]
pub struct Vlan {
    /// Name, addresses, MTU.
    #[serde(flatten)]
    pub iface: Iface,
    /// VLAN id.
    pub id: u16,
    /// Parent interface.
    pub link: String,
}

/// A bridge.
#[derive(Debug, Clone, Serialize)]
pub struct Bridge {
    /// Name, addresses, MTU.
    #[serde(flatten)]
    pub iface: Iface,
    /// Ports.
    pub interfaces: Vec<String>,
    /// An Open vSwitch bridge rather than a Linux bridge.
    pub openvswitch: bool,
}

/// A template problem, naming the template, line and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A template does not parse.
    #[error("template {name} line {line}: {detail}")]
    Syntax {
        /// Template name.
        name: String,
        /// 1-based line.
        line: usize,
        /// minijinja's message.
        detail: String,
    },
    /// A template uses a variable that [`NodeContext`] does not have.
    #[error("template {name} line {line}: unknown variable `{variable}`")]
    UnknownVariable {
        /// Template name.
        name: String,
        /// 1-based line of its first use.
        line: usize,
        /// The variable.
        variable: String,
    },
    /// Rendering failed (an undefined attribute, a type error).
    #[error("template {name} line {line}: {detail}")]
    Render {
        /// Template name.
        name: String,
        /// 1-based line.
        line: usize,
        /// minijinja's message.
        detail: String,
    },
    /// An override names no template seed has.
    #[error(
        "template override `{0}` matches no template (known: user-data, cloud-config, meta-data, netplan)"
    )]
    UnknownTemplate(String),
}

/// The documents of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documents {
    /// `#cloud-config` with `autoinstall:`.
    pub user_data: String,
    /// `#cloud-config` for the first boot of a written disk image (`install.method: image`).
    pub cloud_config: String,
    /// instance-id and local-hostname.
    pub meta_data: String,
    /// The installed system's full netplan.
    pub netplan: String,
}

/// Renders a node's documents from the embedded templates and any overrides.
pub struct Renderer {
    env: Environment<'static>,
}

/// The top-level variables a template may use: [`NodeContext`]'s fields plus what the renderer
/// adds (`netplan_b64`, the rendered netplan for late-commands).
fn known_variables() -> Vec<String> {
    let probe = serde_json::to_value(NodeContext {
        hostname: String::new(),
        role: String::new(),
        instance_id: String::new(),
        seed_url: String::new(),
        node_url: String::new(),
        apt_mirror: String::new(),
        boot_macs: Vec::new(),
        console: None,
        user: User {
            name: String::new(),
            ssh_authorized_keys: Vec::new(),
            password_hash: None,
            uid: None,
            gid: None,
        },
        disk: BTreeMap::new(),
        storage_layout: String::new(),
        sizing_policy: None,
        root_bytes: None,
        timezone: String::new(),
        locale: String::new(),
        keyboard_layout: String::new(),
        packages: Vec::new(),
        ntp: Vec::new(),
        network: Network::default(),
    })
    .unwrap_or_default();
    let mut names: Vec<String> = probe
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    names.extend(["netplan_b64".to_string(), "timesyncd_b64".to_string()]);
    names
}

impl Renderer {
    /// The embedded templates, with `overrides` (template name → text) replacing them by name.
    /// Every template is parsed and checked for unknown variables here, so a broken override
    /// fails when seed starts, not when a node boots.
    pub fn new(overrides: &BTreeMap<String, String>) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Block tags on their own lines leave no blank lines or indentation behind: YAML cares.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|e| Error::Syntax {
                name: "(syntax)".into(),
                line: 0,
                detail: e.to_string(),
            })?;
        env.set_syntax(syntax);
        // `yaml`: a value as JSON, which is YAML flow syntax, so `: # ' " {` and newlines stay
        // inside their scalar. Unlike minijinja's `tojson` it does not HTML-escape `<>&'`,
        // which would be valid but unreadable in a shell command.
        env.add_filter("yaml", |value: minijinja::Value| {
            // Strict mode still hands an undefined value to a filter; it must not become `null`.
            if value.is_undefined() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::UndefinedError,
                    "undefined value passed to the yaml filter",
                ));
            }
            serde_json::to_string(&value).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        });
        for name in overrides.keys() {
            if !TEMPLATES.iter().any(|(n, _)| n == name) {
                return Err(Error::UnknownTemplate(name.clone()));
            }
        }
        let known = known_variables();
        for (name, default) in TEMPLATES {
            let source = overrides
                .get(name)
                .cloned()
                .unwrap_or_else(|| default.to_string());
            env.add_template_owned(name.to_string(), source.clone())
                .map_err(|e| Error::Syntax {
                    name: name.to_string(),
                    line: e.line().unwrap_or(0),
                    detail: e.detail().unwrap_or_default().to_string(),
                })?;
            let template = env.get_template(name).map_err(|e| render_error(name, &e))?;
            let mut unknown: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !known.contains(v) && env.globals().all(|(g, _)| g != v.as_str()))
                .collect();
            unknown.sort();
            if let Some(variable) = unknown.into_iter().next() {
                return Err(Error::UnknownVariable {
                    name: name.to_string(),
                    line: first_use(&source, &variable),
                    variable,
                });
            }
        }
        Ok(Self { env })
    }

    /// Render all of a node's documents.
    pub fn render(&self, node: &NodeContext) -> Result<Documents, Error> {
        let netplan = self.render_one("netplan", node, &[])?;
        let timesyncd = timesyncd_conf(&node.ntp);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let extra = [
            ("netplan_b64", b64(&netplan)),
            ("timesyncd_b64", b64(&timesyncd)),
        ];
        Ok(Documents {
            user_data: self.render_one("user-data", node, &extra)?,
            cloud_config: self.render_one("cloud-config", node, &extra)?,
            meta_data: self.render_one("meta-data", node, &[])?,
            netplan,
        })
    }

    fn render_one(
        &self,
        name: &str,
        node: &NodeContext,
        extra: &[(&str, String)],
    ) -> Result<String, Error> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| render_error(name, &e))?;
        let mut ctx = serde_json::to_value(node).unwrap_or_default();
        if let Some(vars) = ctx.as_object_mut() {
            for (key, value) in extra {
                vars.insert((*key).to_string(), value.clone().into());
            }
        }
        let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));
        template.render(ctx).map_err(|e| render_error(name, &e))
    }
}

fn render_error(name: &str, e: &minijinja::Error) -> Error {
    Error::Render {
        name: e.name().unwrap_or(name).to_string(),
        line: e.line().unwrap_or(0),
        detail: e
            .detail()
            .map_or_else(|| e.kind().to_string(), str::to_string),
    }
}

/// The 1-based line of the first place `variable` appears inside `{{ }}` or `{% %}`.
fn first_use(source: &str, variable: &str) -> usize {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (i, line) in source.lines().enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find(variable) {
            let before = rest[..pos].chars().next_back();
            let after = rest[pos + variable.len()..].chars().next();
            let in_tag = line.contains("{{") || line.contains("{%");
            if in_tag && !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
                return i + 1;
            }
            rest = &rest[pos + variable.len()..];
        }
    }
    0
}

/// systemd-timesyncd drop-in for the installed system.
fn timesyncd_conf(ntp: &[String]) -> String {
    if ntp.is_empty() {
        return "[Time]\n".to_string();
    }
    format!("[Time]\nNTP={}\n", ntp.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value with every character that could break YAML: `: # ' " {` and a newline.
    const NASTY: &str = "a: b # c ' \" { d } [e]\nsecond line: f";

    fn context() -> NodeContext {
        NodeContext {
            hostname: "cmp1".into(),
            role: "compute".into(),
            instance_id: "cmp1-1".into(),
            seed_url: "http://10.1.10.5".into(),
            node_url: "http://10.1.10.5/nodes/tok".into(),
            apt_mirror: "http://10.1.10.5/apt/ubuntu".into(),
            boot_macs: vec!["52:54:00:00:00:01".into()],
            console: Some("ttyS1,115200n8".into()),
            user: User {
                name: "dragon".into(),
                ssh_authorized_keys: vec![format!("ssh-ed25519 AAAA {NASTY}")],
                password_hash: None,
                uid: None,
                gid: None,
            },
            disk: [("model".to_string(), serde_json::Value::from(NASTY))].into(),
            storage_layout: "lvm".into(),
            sizing_policy: None,
            root_bytes: None,
            timezone: NASTY.into(),
            locale: "en_US.UTF-8".into(),
            keyboard_layout: "us".into(),
            packages: vec![NASTY.into()],
            ntp: vec!["10.1.10.1".into()],
            network: Network {
                ethernets: vec![Ethernet {
                    iface: Iface {
                        name: "eno1".into(),
                        mtu: Some(1500),
                        addresses: vec!["10.1.10.21/24".into()],
                        routes: vec![Route {
                            to: "default".into(),
                            via: "10.1.10.1".into(),
                        }],
                        nameservers: vec!["10.1.10.1".into()],
                    },
                    mac: None,
                }],
                ..Network::default()
            },
        }
    }

    fn yaml(text: &str) -> serde_json::Value {
        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    #[test]
    fn yaml_special_characters_round_trip() {
        let docs = Renderer::new(&BTreeMap::new())
            .unwrap()
            .render(&context())
            .unwrap();
        assert!(
            docs.user_data.starts_with("#cloud-config\n"),
            "{}",
            docs.user_data
        );
        let ud = yaml(&docs.user_data);
        let ai = &ud["autoinstall"];
        assert_eq!(ai["storage"]["layout"]["match"]["model"], NASTY);
        assert_eq!(ai["timezone"], NASTY);
        assert_eq!(ai["packages"][0], NASTY);
        assert_eq!(
            ai["user-data"]["users"][0]["ssh_authorized_keys"][0],
            format!("ssh-ed25519 AAAA {NASTY}")
        );
        // The netplan that late-commands write decodes to the rendered netplan.
        let write = ai["late-commands"][1].as_str().unwrap();
        let b64 = write.split_whitespace().nth(2).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), docs.netplan);
        let np = yaml(&docs.netplan);
        assert_eq!(
            np["network"]["ethernets"]["eno1"]["addresses"][0],
            "10.1.10.21/24"
        );
        let md = yaml(&docs.meta_data);
        assert_eq!(md["instance-id"], "cmp1-1");
    }

    #[test]
    fn the_operator_is_a_cloud_init_user_with_or_without_a_password() {
        let renderer = Renderer::new(&BTreeMap::new()).unwrap();
        let ud = yaml(&renderer.render(&context()).unwrap().user_data);
        assert!(ud["autoinstall"]["identity"].is_null());
        let user = &ud["autoinstall"]["user-data"]["users"][0];
        assert_eq!(user["lock_passwd"], true);
        assert_eq!(user["sudo"], "ALL=(ALL) NOPASSWD:ALL");
        assert!(user["uid"].is_null());
        assert_eq!(
            ud["autoinstall"]["user-data"]["manage_etc_hosts"],
            "localhost"
        );

        let mut osism = context();
        osism.user.password_hash = Some("$6$salt$hash".into());
        osism.user.uid = Some(45000);
        osism.user.gid = Some(45000);
        let ud = yaml(&renderer.render(&osism).unwrap().user_data);
        assert!(ud["autoinstall"]["identity"].is_null());
        let user = &ud["autoinstall"]["user-data"]["users"][0];
        assert_eq!(user["hashed_passwd"], "$6$salt$hash");
        assert_eq!(user["lock_passwd"], false);
        assert_eq!(user["uid"], 45000);
        assert_eq!(user["primary_group"], "dragon");
        assert_eq!(ud["autoinstall"]["ssh"]["allow-pw"], false);
        let late = ud["autoinstall"]["late-commands"].to_string();
        assert!(late.contains("groupadd --gid 45000 dragon"), "{late}");
    }

    #[test]
    fn an_override_replaces_a_template_by_name() {
        let overrides = [(
            "meta-data".to_string(),
            "instance-id: {{ instance_id|yaml }}\nlocal-hostname: {{ (hostname ~ '.lab')|yaml }}\n"
                .to_string(),
        )]
        .into();
        let docs = Renderer::new(&overrides)
            .unwrap()
            .render(&context())
            .unwrap();
        assert_eq!(
            docs.meta_data,
            "instance-id: \"cmp1-1\"\nlocal-hostname: \"cmp1.lab\"\n"
        );
    }

    #[test]
    fn an_unknown_variable_names_template_line_and_variable() {
        let overrides = [(
            "meta-data".to_string(),
            "instance-id: {{ instance_id|yaml }}\n\nlocal-hostname: {{ host_name|yaml }}\n"
                .to_string(),
        )]
        .into();
        let err = Renderer::new(&overrides).err().unwrap();
        assert_eq!(
            err.to_string(),
            "template meta-data line 3: unknown variable `host_name`"
        );
    }

    #[test]
    fn an_undefined_attribute_fails_rendering_instead_of_rendering_empty() {
        let overrides = [(
            "meta-data".to_string(),
            "instance-id: {{ instance_id|yaml }}\nlocal-hostname: {{ user.nickname|yaml }}\n"
                .to_string(),
        )]
        .into();
        let err = Renderer::new(&overrides)
            .unwrap()
            .render(&context())
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("template meta-data line 2:"), "{msg}");
    }

    #[test]
    fn an_override_for_no_template_is_refused() {
        let overrides = [("userdata".to_string(), String::new())].into();
        assert!(matches!(
            Renderer::new(&overrides),
            Err(Error::UnknownTemplate(name)) if name == "userdata"
        ));
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let overrides = [("netplan".to_string(), "network:\n  {% if %}\n".to_string())].into();
        let err = Renderer::new(&overrides).err().unwrap().to_string();
        assert!(err.starts_with("template netplan line 2:"), "{err}");
    }
}
