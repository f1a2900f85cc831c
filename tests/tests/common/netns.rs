//! Two network namespaces joined by a veth pair: `srv` (seed, 10.99.10.1/24) and `cli`
//! (the clients). Created per test with unique names and removed on drop, also when the test
//! panics. Nothing here touches the host's own interfaces.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{describe, seed_bin};

/// seed's address inside `srv`.
pub const SEED_IP: &str = "10.99.10.1";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A server and a client namespace.
pub struct Netns {
    /// Server namespace name.
    pub srv: String,
    /// Client namespace name.
    pub cli: String,
    /// Server-side interface (seed.interface).
    pub srv_if: String,
    /// Client-side interface.
    pub cli_if: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 `ip`");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        describe(&out)
    );
}

impl Netns {
    /// Create both namespaces and the veth pair between them.
    pub fn new() -> Self {
        assert!(
            running_as_root(),
            "network namespace tests need root: run the README's test command in a root shell (sudo -i)"
        );
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let ns = Self {
            srv: format!("seedt-srv-{tag}"),
            cli: format!("seedt-cli-{tag}"),
            srv_if: format!("sts{tag}"),
            cli_if: format!("stc{tag}"),
        };
        // From here on, Drop cleans up whatever was created.
        ip(&["netns", "add", &ns.srv]);
        ip(&["netns", "add", &ns.cli]);
        ip(&[
            "link", "add", &ns.srv_if, "type", "veth", "peer", "name", &ns.cli_if,
        ]);
        ip(&["link", "set", &ns.srv_if, "netns", &ns.srv]);
        ip(&["link", "set", &ns.cli_if, "netns", &ns.cli]);
        ip(&[
            "-n",
            &ns.srv,
            "addr",
            "add",
            &format!("{SEED_IP}/24"),
            "dev",
            &ns.srv_if,
        ]);
        for (netns, iface) in [(&ns.srv, &ns.srv_if), (&ns.cli, &ns.cli_if)] {
            ip(&["-n", netns, "link", "set", "lo", "up"]);
            ip(&["-n", netns, "link", "set", iface, "up"]);
        }
        ns
    }

    /// `program` (a bare name, looked up in the namespace's PATH) run in the client namespace;
    /// a program that is not installed fails here, naming its package.
    pub fn in_cli(&self, program: &str) -> Command {
        super::need(program);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.cli, program]);
        cmd
    }

    /// Set the client interface's MAC (the identity a DHCP client presents).
    pub fn set_client_mac(&self, mac: &str) {
        ip(&["-n", &self.cli, "link", "set", &self.cli_if, "down"]);
        ip(&["-n", &self.cli, "link", "set", &self.cli_if, "address", mac]);
        ip(&["-n", &self.cli, "link", "set", &self.cli_if, "up"]);
    }

    /// Change the client interface's MAC without taking the link down (its addresses stay).
    pub fn set_client_mac_keep_address(&self, mac: &str) {
        ip(&["-n", &self.cli, "link", "set", &self.cli_if, "address", mac]);
    }

    /// Give the client side an address (for relayed or unicast tests).
    pub fn add_client_address(&self, cidr: &str) {
        ip(&["-n", &self.cli, "addr", "add", cidr, "dev", &self.cli_if]);
    }

    /// Start `seed serve` inside the server namespace and wait until its DHCP socket is bound.
    /// Its log goes to `<state>/../seed.log` ([`Seed::log`]).
    pub fn start_seed(&self, config: &Path, state: &Path) -> Seed {
        self.start_seed_with(config, state, &[])
    }

    /// The same, started through `wrapper` (e.g. `prlimit --nofile=1024:1024`), which must
    /// exec seed (one pid).
    pub fn start_seed_with(&self, config: &Path, state: &Path, wrapper: &[&str]) -> Seed {
        let log_path = state.with_file_name("seed.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.srv])
            .args(wrapper)
            .arg(seed_bin())
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .args(["serve", "-v"])
            .env_remove("SEED_CONFIG")
            .env_remove("SEED_STATE_DIR")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start seed in the server namespace");
        let mut seed = Seed(Some(child), log_path);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ss = Command::new("ip")
                .args([
                    "netns", "exec", &self.srv, "ss", "-H", "-uln", "sport", "=", ":67",
                ])
                .output()
                .unwrap();
            if !String::from_utf8_lossy(&ss.stdout).trim().is_empty() {
                return seed;
            }
            if let Some(status) = seed.0.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("seed exited before binding DHCP: {status}\n{}", seed.log());
            }
            assert!(Instant::now() < deadline, "seed did not bind port 67");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A DHCP test config bound to this pair's server interface: one provisioning zone on
    /// `subnet` (holding seed's 10.99.10.1), `zone_extra` appended to the zone (e.g. a discovery
    /// pool), and `nodes` as the `nodes:` section.
    pub fn config(&self, dir: &Path, subnet: &str, zone_extra: &str, nodes: &str) -> PathBuf {
        let text = format!(
            "seed: {{ interface: {iface}, address: {SEED_IP}, ports: {{ http: 8080 }} }}\n\
             links: [{{ name: eth0 }}]\n\
             zones:\n  - {{ name: prov, vlan: 10, subnet: {subnet}, gateway: 10.99.10.254, dns: [10.99.10.254],\n      \
             ntp: [10.99.10.1], link: eth0, native: true, provisioning: true, roles: [node]{zone_extra} }}\n\
             roles: [{{ name: node, links: [eth0], disk: {{ path: /dev/vda }} }}]\n\
             nodes: {nodes}\n",
            iface = self.srv_if,
        );
        let path = dir.join("seed.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of the veth, and with it the peer.
        for netns in [&self.srv, &self.cli] {
            let _ = Command::new("ip").args(["netns", "del", netns]).output();
        }
    }
}

/// A running `seed serve`; killed on drop.
pub struct Seed(Option<Child>, PathBuf);

impl Seed {
    /// What seed logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// SIGTERM, wait for a clean exit, and return the log.
    pub fn stop(mut self) -> String {
        let mut child = self.0.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "seed exited with {status}\n{}",
                    self.log()
                );
                return self.log();
            }
            assert!(Instant::now() < deadline, "seed ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`HUP`, …) to seed (`ip netns exec` became seed: one pid).
    #[allow(dead_code)] // not every test binary signals
    pub fn signal(&self, signal: &str) {
        let pid = self.0.as_ref().unwrap().id().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// seed's process id (`ip netns exec` and the wrapper became seed).
    #[allow(dead_code)] // not every test binary reads it
    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A client hook script for `client` that only records the environment it is called with, when
/// `condition` (a shell test) holds, instead of configuring anything. Returns the script and the
/// file it writes (removed first, so a stale result is never read).
fn hook(dir: &Path, client: &str, condition: &str) -> (PathBuf, PathBuf) {
    let script = dir.join(format!("{client}.sh"));
    let env_file = dir.join(format!("{client}.env"));
    let _ = std::fs::remove_file(&env_file);
    let out = env_file.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif {condition}; then env > {out}.tmp && mv {out}.tmp {out}; fi\nexit 0\n"
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    (script, env_file)
}

/// `KEY=value` lines of a recorded environment (dhclient quotes some values).
fn read_env(path: &Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// What busybox udhcpc got: the environment its script saw on `bound`.
pub fn udhcpc(
    ns: &Netns,
    dir: &Path,
    extra: &[&str],
) -> (Output, std::collections::BTreeMap<String, String>) {
    let (script, env_file) = hook(dir, "udhcpc", r#"[ "$1" = bound ]"#);
    super::need("busybox");
    let out = ns
        .in_cli("timeout")
        .args([
            "20", "busybox", "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", &ns.cli_if,
            "-s",
        ])
        .arg(&script)
        .args(extra)
        .output()
        .unwrap();
    (out, read_env(&env_file))
}

/// A dhclient run in the client namespace with its own script (never the default one, which
/// rewrites the host's /etc/resolv.conf) and lease file. Returns the environment of its BOUND
/// or REBOOT call and the messages it logged.
pub fn dhclient(
    ns: &Netns,
    dir: &Path,
    lease_file: &Path,
) -> (String, std::collections::BTreeMap<String, String>) {
    let (script, env_file) = hook(
        dir,
        "dhclient",
        r#"case "$reason" in BOUND|REBOOT|RENEW) true;; *) false;; esac"#,
    );
    let mut child = ns
        .in_cli("dhclient")
        .args(["-d", "-1", "-v", "-sf"])
        .arg(&script)
        .arg("-lf")
        .arg(lease_file)
        .arg("-pf")
        .arg(dir.join("dhclient.pid"))
        .arg(&ns.cli_if)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // -d keeps dhclient in the foreground, renewing; stop it once it has an address and has
    // written it to its lease file: ISC dhclient's bind_lease runs the script (BOUND) first and
    // write_client_lease after, and a kill between the two (CI, a loaded machine) left the next
    // run no lease to INIT-REBOOT with.
    let deadline = Instant::now() + Duration::from_secs(30);
    let leased = || {
        env_file.exists()
            && std::fs::read_to_string(lease_file).is_ok_and(|l| l.contains("fixed-address"))
    };
    while !leased() && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let env = read_env(&env_file);
    (String::from_utf8_lossy(&out.stderr).into_owned(), env)
}

/// Fresh namespaces with seed running in them on the config `make_config` writes. Bind the
/// result as `let (ns, dir, config, seed) = serving(…)`: locals drop in reverse order, so seed is
/// killed before the scratch directory and the namespaces go. Its state is `dir/state`.
pub fn serving(
    make_config: impl FnOnce(&Netns, &Path) -> PathBuf,
) -> (Netns, tempfile::TempDir, PathBuf, Seed) {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let config = make_config(&ns, dir.path());
    let seed = ns.start_seed(&config, &dir.path().join("state"));
    (ns, dir, config, seed)
}

/// Add `settings` (YAML flow-mapping entries such as `tftp_root: /x`) to the `seed:` section of
/// a config written by [`Netns::config`].
pub fn with_seed_settings(config: &Path, settings: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let marker = "ports: { http: 8080 }";
    assert!(text.contains(marker), "not a Netns::config file");
    std::fs::write(
        config,
        text.replacen(marker, &format!("{marker}, {settings}"), 1),
    )
    .unwrap();
}
