//! End to end: QEMU machines with real firmware (SeaBIOS with QEMU's iPXE ROM, OVMF with it,
//! with its own PXE client and with its HTTP boot client) install through seed's DHCP → TFTP/HTTP → iPXE → kernel + initrd → user-data →
//! events → installed callback, and come back through the network to their local disk. The
//! installer is the stand-in of `tests/installer` (a Debian kernel and a busybox initrd that
//! does subiquity's network part). Everything runs inside network namespaces `seed lab`
//! creates; the tests read seed's store and API, and check that no namespace, tap or QEMU
//! process is left behind, also when `seed lab run` is interrupted.
//!
//! Needs root, QEMU, OVMF and dnsmasq (`tests/setup` installs them). The labs run one at a time:
//! under software emulation on two cores, more machines at once only make each slower.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on purpose

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{KillOnDrop, describe, repo_root, seed};
use seed::store::{Event, Store};

/// One lab at a time (see the module doc).
static LAB: Mutex<()> = Mutex::new(());

fn one_lab_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stand-in installer, built once (`tests/installer/build`; `tests/setup` builds it first).
fn installer() -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    // Rebuilt when older than its sources (a checkout that pulled a new /init).
    built_once(
        &BUILT,
        "target/lab-installer",
        "tests/installer/build",
        &["tests/installer"],
        &["initrd.gz", "vmlinuz"],
    )
}

/// The first-boot machine (`tests/firstboot/build`; `tests/setup` builds it first): the
/// installer's kernel with Debian's systemd-udevd and systemd-networkd.
fn firstboot() -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    built_once(
        &BUILT,
        "target/lab-firstboot",
        "tests/firstboot/build",
        &["tests/firstboot", "tests/installer/kernel.sh"],
        &["initrd.gz", "vmlinuz"],
    )
}

/// The kernel package the deploy ramdisk is built against, unpacked with its modules
/// (`tests/agent/kernel`; `tests/setup` fetches it first).
fn agent_kernel() -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    built_once(
        &BUILT,
        "target/lab-agent-kernel",
        "tests/agent/kernel",
        &["tests/agent", "tests/installer/kernel.sh"],
        &["KERNEL"],
    )
}

/// The Debian disk image the lab deploys (`tests/deploy/image`; `tests/setup` builds it
/// first): systemd, cloud-init and netplan.io, booting on UEFI and BIOS from its own disk.
fn deploy_image() -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    built_once(
        &BUILT,
        "target/lab-deploy-image",
        "tests/deploy/image",
        &["tests/deploy"],
        &["disk.raw", "IMAGE"],
    )
    .join("disk.raw")
}

/// `dir` (under the repository) as `script DIR` builds it, once per test run: built again
/// unless every `outputs` file is there and the first is not older than any file of
/// `sources` (files, or directories whose files count).
fn built_once(
    done: &Mutex<bool>,
    dir: &str,
    script: &str,
    sources: &[&str],
    outputs: &[&str],
) -> PathBuf {
    let dir = repo_root().join(dir);
    let mut built = done.lock().unwrap_or_else(|e| e.into_inner());
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_source = sources
        .iter()
        .map(|s| repo_root().join(s))
        .flat_map(|s| match std::fs::read_dir(&s) {
            Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
            Err(_) => vec![s],
        })
        .filter_map(|p| modified(&p))
        .max();
    let fresh = outputs.iter().all(|o| dir.join(o).exists())
        && modified(&dir.join(outputs[0])).is_some_and(|t| newest_source.is_none_or(|s| t >= s));
    if !(*built || fresh) {
        let out = Command::new(repo_root().join(script))
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("run {script}: {e}"));
        assert!(out.status.success(), "{script}: {}", describe(&out));
    }
    *built = true;
    dir
}

/// What one lab started, found again from outside it: the processes whose command line names
/// the lab's directory (`seed serve`, QEMU, dnsmasq: their configs, consoles, sockets and
/// leases live there), the network namespaces it was given, and host links with a lab's
/// names (a tap or bridge that escaped its namespace). A test checks only these, so another
/// VM, namespace or link on the machine, started or stopped meanwhile, cannot fail it.
struct Footprint {
    dir: String,
    netns: Vec<String>,
    links_before: BTreeSet<String>,
}

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    processes: Vec<String>,
    netns: Vec<String>,
    links: BTreeSet<String>,
}

impl Footprint {
    fn of(dir: &std::path::Path, netns: &[&str]) -> Self {
        Self {
            dir: dir.display().to_string(),
            netns: netns.iter().map(|n| n.to_string()).collect(),
            links_before: lab_links(),
        }
    }

    /// Command lines of live processes that name the lab's directory.
    fn processes(&self) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                continue;
            }
            // A process may end between readdir and read: then it is not there.
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmdline.contains(&self.dir) {
                found.push(format!(
                    "{}: {}",
                    entry.file_name().to_string_lossy(),
                    cmdline.trim()
                ));
            }
        }
        found
    }

    fn seen(&self) -> Seen {
        let all: BTreeSet<String> = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Seen {
            processes: self.processes(),
            netns: self
                .netns
                .iter()
                .filter(|n| all.contains(*n))
                .cloned()
                .collect(),
            links: lab_links(),
        }
    }

    /// Waits (bounded) until nothing of the lab is left.
    fn assert_gone(&self, what: &str) {
        let gone = Seen {
            processes: Vec::new(),
            netns: Vec::new(),
            links: self.links_before.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.seen();
            if now == gone {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the lab left something behind: {now:#?} (links before: {:?})",
                self.links_before
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The host's links with the names a lab gives its own (`seedbr0`, `tapN`, `site0`): outside
/// the lab's namespace, one of them is a leak.
fn lab_links() -> BTreeSet<String> {
    let out = Command::new(common::need("ip"))
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    // `ip -o link`: "7: tap0: <…> …" (a veth peer shows as "site0@if3:").
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|name| {
            name.trim_end_matches(':')
                .split('@')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .filter(|name| {
            ["seedbr", "tap", "site"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .collect()
}

/// A lab's files, and `seed lab down` plus the removal of extra namespaces when dropped, so a
/// failing test leaves nothing behind.
struct LabDir {
    dir: tempfile::TempDir,
    config: PathBuf,
    extra_netns: Vec<String>,
}

impl LabDir {
    fn new(seed_extra: &str, lifecycle: &str, nodes: &str) -> Self {
        Self::with_zones(seed_extra, lifecycle, nodes, "", "")
    }

    /// With more zones and roles after the lab's own (`management` on ens3, role `compute`).
    fn with_zones(
        seed_extra: &str,
        lifecycle: &str,
        nodes: &str,
        zones_extra: &str,
        roles_extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("lab.yaml");
        let state = dir.path().join("state");
        std::fs::write(
            &config,
            common::lab_config(
                &state,
                seed_extra,
                lifecycle,
                nodes,
                zones_extra,
                roles_extra,
            ),
        )
        .expect("write config");
        Self {
            dir,
            config,
            extra_netns: Vec::new(),
        }
    }

    /// Renames the lab's link `ens3` (what udev calls the lab NIC on QEMU's i440fx slot 3) to
    /// `name` in the config: a name the machine's own udev does not give, as a rack's config
    /// says `eno8303` for a port some other kernel or naming scheme calls differently.
    fn rename_link(&self, name: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, text.replace("ens3", name)).unwrap();
    }

    /// `seed lab up` in `netns` with the stand-in installer at `installer`; it must succeed.
    fn up(&self, netns: &str, installer: &std::path::Path) {
        let out = self
            .seed()
            .args(["lab", "up", "--netns", netns, "--installer"])
            .arg(installer)
            .output()
            .expect("seed lab up");
        assert!(out.status.success(), "lab up: {}", describe(&out));
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn seed(&self) -> Command {
        let mut cmd = seed();
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(self.state());
        cmd
    }

    fn events(&self, node: &str) -> Vec<Event> {
        Store::open(&self.state())
            .expect("open seed's store")
            .events(Some(node), 200)
            .expect("events")
    }

    fn state_of(&self, node: &str) -> String {
        Store::open(&self.state())
            .expect("open seed's store")
            .node(node)
            .expect("node")
            .map(|n| n.state.to_string())
            .unwrap_or_default()
    }

    fn console(&self, node: &str) -> String {
        let path = self.state().join("lab").join(format!("{node}.console.log"));
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }
}

impl Drop for LabDir {
    fn drop(&mut self) {
        let _ = self.seed().args(["lab", "down"]).output();
        for ns in &self.extra_netns {
            let pids = Command::new("ip").args(["netns", "pids", ns]).output();
            if let Ok(out) = pids {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// The boot MAC of the lab node with `suffix`.
fn mac(suffix: u8) -> String {
    format!("52:54:00:20:00:{suffix:02x}")
}

/// A lab node: driver qemu, BMC 10.10.0.<suffix> (so its address is 10.10.10.<suffix>).
fn node(name: &str, suffix: u8, firmware: &str, extra: &str) -> String {
    let mut s = format!(
        "  - name: {name}\n    role: compute\n    firmware: {firmware}\n    \
         bmc: {{ address: 10.10.0.{suffix}, driver: qemu }}\n    \
         macs: [\"{}\"]\n    console: ttyS0,115200n8\n",
        mac(suffix)
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("    ");
        s.push_str(line.trim());
        s.push('\n');
    }
    s
}

fn kinds_and_details(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| format!("{} {}: {}", e.source, e.kind, e.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The install path of a node that installed and came back to its disk, from seed's store.
fn assert_installed_and_back(lab: &LabDir, node: &str, chip: &str) {
    let events = lab.events(node);
    let all = kinds_and_details(&events);
    let served = events
        .iter()
        .position(|e| e.kind == "boot" && e.detail.contains("installer served"))
        .unwrap_or_else(|| panic!("{node}: the installer was never served:\n{all}"));
    assert!(
        events[served].detail.contains(&format!("iPXE {chip}")),
        "{node}: expected the installer under iPXE `{chip}`:\n{all}"
    );
    let installing = events
        .iter()
        .position(|e| e.detail.contains("-> installing"))
        .unwrap_or_else(|| panic!("{node}: never installing:\n{all}"));
    let installed = events
        .iter()
        .position(|e| e.detail.contains("-> installed"))
        .unwrap_or_else(|| panic!("{node}: never installed:\n{all}"));
    let local = events
        .iter()
        .position(|e| e.kind == seed::provision::LOCAL_BOOT)
        .unwrap_or_else(|| panic!("{node}: no second boot to the local disk:\n{all}"));
    assert!(
        served < installing && installing < installed && installed < local,
        "{node}: events out of order:\n{all}"
    );
    // Subiquity-shaped webhook events arrived on the way.
    assert!(
        events
            .iter()
            .any(|e| e.kind == "installer" && e.detail.contains("subiquity/Install")),
        "{node}: no installer events:\n{all}"
    );
    assert_eq!(lab.state_of(node), "installed", "{node}:\n{all}");
}

#[test]
fn a_rack_installs_over_every_boot_path_and_broken_nodes_fail() {
    let _one = one_lab_at_a_time();
    let installer = installer();
    let footprint;
    {
        let nodes = [
            node("bios-rom", 11, "bios", ""),
            node("bios-chain", 12, "bios", "ipxe: seed"),
            node("uefi-rom", 13, "uefi", ""),
            node("uefi-pxe", 14, "uefi", "qemu: { boot: pxe }"),
            node("uefi-http", 17, "uefi", "qemu: { boot: http }"),
            node("broken", 15, "bios", "kernel_args: [seed.test=fail]"),
            node("silent", 16, "bios", "kernel_args: [seed.test=silent]"),
        ]
        .concat();
        // 60 s: under software emulation with seven machines on two cores the longest quiet
        // stretch of a healthy node (UEFI firmware to its first script) took about 20 s here.
        let lab = LabDir::new("", "progress_timeout: 60, phone_home_timeout: 0", &nodes);
        footprint = Footprint::of(lab.dir.path(), &["seedt-lab-rack"]);
        let t0 = Instant::now();
        let out = lab
            .seed()
            .args([
                "lab",
                "run",
                "--netns",
                "seedt-lab-rack",
                "--timeout",
                "600",
            ])
            .arg("--installer")
            .arg(&installer)
            .output()
            .expect("seed lab run");
        let took = t0.elapsed();
        let text = describe(&out);
        eprintln!("seed lab run took {took:?}\n{text}");
        // Two nodes fail on purpose: the run says so.
        assert_eq!(out.status.code(), Some(1), "{text}");

        assert_installed_and_back(&lab, "bios-rom", "virtio-net");
        // QEMU's ROM is iPXE too; this node asked for seed's own, which chainloaded over TFTP
        // and then ran the script as `undionly`.
        assert_installed_and_back(&lab, "bios-chain", "undionly");
        assert!(
            kinds_and_details(&lab.events("bios-chain"))
                .contains("iPXE `virtio-net` is not seed's; chainloading undionly.kpxe"),
            "{}",
            kinds_and_details(&lab.events("bios-chain"))
        );
        assert_installed_and_back(&lab, "uefi-rom", "virtio-net");
        // OVMF's own PXE client: DHCP, then ipxe.efi over TFTP (it drives the NIC through
        // the firmware's SNP).
        assert_installed_and_back(&lab, "uefi-pxe", "SNP");
        let console = lab.console("uefi-pxe");
        assert!(
            console.contains("NBP filename is ipxe.efi"),
            "uefi-pxe did not PXE-boot ipxe.efi:\n{console}"
        );
        // OVMF's HTTP boot client, PXE off: ipxe.efi by the URL seed's DHCP gave it.
        assert_installed_and_back(&lab, "uefi-http", "SNP");
        let console = lab.console("uefi-http");
        assert!(
            console.contains("URI: http://10.10.10.1:8080/ipxe/ipxe.efi")
                && !console.contains("Start PXE"),
            "uefi-http did not HTTP-boot ipxe.efi:\n{console}"
        );

        // The installer reported a failure: the node is failed with its words.
        assert_eq!(lab.state_of("broken"), "failed");
        let broken = kinds_and_details(&lab.events("broken"));
        assert!(broken.contains("disk /dev/vda not found"), "{broken}");
        // The installer went quiet after fetching its documents: failed by the timeout.
        assert_eq!(lab.state_of("silent"), "failed");
        let silent = kinds_and_details(&lab.events("silent"));
        assert!(silent.contains("no progress for 60 s"), "{silent}");
        assert!(!silent.contains("-> installed"), "{silent}");

        // The summary names every node with its times.
        let stdout = String::from_utf8_lossy(&out.stdout);
        for (name, result) in [
            ("bios-rom", "installed"),
            ("bios-chain", "installed"),
            ("uefi-rom", "installed"),
            ("uefi-pxe", "installed"),
            ("uefi-http", "installed"),
            ("broken", "FAILED"),
            ("silent", "FAILED"),
        ] {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("{name} ")) && l.contains(result)),
                "summary lacks `{name} … {result}`:\n{stdout}"
            );
        }
        assert!(stdout.contains("5 of 7 installed"), "{stdout}");
    }
    footprint.assert_gone("after seed lab run");
}

#[test]
fn proxy_dhcp_beside_dnsmasq_installs_uefi_nodes() {
    let _one = one_lab_at_a_time();
    let installer = installer();
    let footprint;
    {
        let mut lab = LabDir::new(
            "  dhcp: { proxy: true }",
            "progress_timeout: 300, phone_home_timeout: 0",
            &[
                node("uefi-proxy", 31, "uefi", "qemu: { boot: pxe }"),
                // The ROM is iPXE, but this node wants seed's own: snponly.efi over TFTP.
                node("uefi-chain", 32, "uefi", "ipxe: seed"),
            ]
            .concat(),
        );
        let netns = "seedt-lab-proxy";
        footprint = Footprint::of(lab.dir.path(), &[netns, "seedt-lab-proxy-site"]);
        lab.up(netns, &installer);

        // The site's own DHCP server, on another "machine" (a namespace of its own) on the
        // provisioning network: it hands out the addresses, with the node's reservation.
        let site = format!("{netns}-site");
        lab.extra_netns.push(site.clone());
        for args in [
            vec!["netns", "add", &site],
            vec![
                "-n", netns, "link", "add", "site0", "type", "veth", "peer", "name", "eth0",
                "netns", &site,
            ],
            vec![
                "-n", netns, "link", "set", "site0", "master", "seedbr0", "up",
            ],
            vec!["-n", &site, "addr", "add", "10.10.10.2/24", "dev", "eth0"],
            vec!["-n", &site, "link", "set", "eth0", "up"],
            vec!["-n", &site, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().expect("ip");
            assert!(out.status.success(), "ip {args:?}: {}", describe(&out));
        }
        let leases = lab.dir.path().join("dnsmasq.leases");
        let dnsmasq = Command::new("ip")
            .args(["netns", "exec", &site, "dnsmasq", "--no-daemon", "--port=0"])
            .args([
                "--interface=eth0",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
            ])
            .args(["--dhcp-range=10.10.10.100,10.10.10.149,255.255.255.0,1h"])
            .arg(format!("--dhcp-host={},10.10.10.31", mac(31)))
            .arg(format!("--dhcp-host={},10.10.10.32", mac(32)))
            .args(["--dhcp-authoritative", "--log-dhcp", "--pid-file="])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        let mut dnsmasq = KillOnDrop::new(dnsmasq);

        let out = lab
            .seed()
            // Follows both until installed (bounded), as on a rack.
            .args(["provision", "uefi-proxy", "uefi-chain", "--timeout", "300"])
            .output()
            .expect("seed provision");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success()
                && stdout.matches("started from its firmware").count() == 2
                && stdout.contains("2 of 2 installed"),
            "{}",
            describe(&out)
        );

        // Follow the nodes through seed's API, from inside the lab.
        let api = |path: &str| -> serde_json::Value {
            let out = Command::new("ip")
                .args(["netns", "exec", netns, "curl", "-sf", "--max-time", "5"])
                .arg(format!("http://10.10.10.1:8080/api/v1/nodes/{path}"))
                .output()
                .expect("curl");
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
        };
        let deadline = Instant::now() + Duration::from_secs(300);
        for name in ["uefi-proxy", "uefi-chain"] {
            loop {
                // The open API shows the last event's kind (its details and the event list
                // need the API token, which this lab has none of).
                let node = api(name);
                let events = &node["last_event"];
                let back = events["kind"] == seed::provision::LOCAL_BOOT
                    || lab
                        .events(name)
                        .iter()
                        .any(|e| e.kind == seed::provision::LOCAL_BOOT);
                if back {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} did not install and come back in 300 s: {} / {events}\nconsole:\n{}",
                    api(name),
                    lab.console(name)
                );
                assert!(
                    dnsmasq.child().try_wait().expect("dnsmasq").is_none(),
                    "dnsmasq exited"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            assert_eq!(api(name)["state"], "installed", "{}", api(name));
            assert_installed_and_back(&lab, name, "SNP");
        }
        // The addresses came from dnsmasq, the boot files from seed.
        let leases = std::fs::read_to_string(&leases).unwrap_or_default();
        for (suffix, address) in [(31, "10.10.10.31"), (32, "10.10.10.32")] {
            assert!(
                leases.contains(&format!("{} {address}", mac(suffix))),
                "dnsmasq leased nothing to {}: {leases}",
                mac(suffix)
            );
        }
        let console = lab.console("uefi-proxy");
        assert!(console.contains("NBP filename is ipxe.efi"), "{console}");
        let chain = kinds_and_details(&lab.events("uefi-chain"));
        assert!(
            chain.contains("iPXE `virtio-net` is not seed's; chainloading snponly.efi"),
            "{chain}"
        );

        let out = lab.seed().args(["lab", "down"]).output().expect("lab down");
        assert!(out.status.success(), "lab down: {}", describe(&out));
        drop(dnsmasq);
    }
    footprint.assert_gone("after seed lab up/provision/down");
}

/// Runs `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {}", describe(&out));
}

/// A routed rack: the nodes sit on a segment of their own behind a router namespace whose
/// dnsmasq relays DHCP to seed (`--dhcp-relay`, giaddr 10.10.20.1). seed answers from the
/// relayed zone rack2, so the nodes boot with rack-2 addresses (TFTP, HTTP and callbacks all
/// routed), their netplan carries that subnet untagged on the boot link (the stand-in installer
/// fails on a VLAN), and a stranger behind the relay is listed with its zone and relay.
#[test]
fn a_routed_rack_installs_through_a_dhcp_relay_into_its_own_zone() {
    let _one = one_lab_at_a_time();
    let installer = installer();
    common::need("dnsmasq");
    common::need("busybox");
    let footprint;
    {
        let rack2 = |name: &str, suffix: u8, firmware: &str, extra: &str| {
            node(name, suffix, firmware, extra).replace("role: compute", "role: rack2")
        };
        let mut lab = LabDir::with_zones(
            "",
            "progress_timeout: 300, phone_home_timeout: 0",
            &[
                // OVMF's own PXE client: its TFTP download crosses the router too.
                rack2("relay-uefi", 41, "uefi", "qemu: { boot: pxe }"),
                rack2("relay-bios", 42, "bios", ""),
            ]
            .concat(),
            "  - name: rack2
    vlan: 20
    subnet: 10.10.20.0/24
    gateway: 10.10.20.1
    dns: [10.10.20.1]
    link: ens3
    native: true
    relayed: true
    roles: [rack2]
    discovery_pool: { start: 10.10.20.100, end: 10.10.20.149 }
",
            "  - name: rack2
    links: [ens3]
    disk: { path: /dev/vda }
",
        );
        let netns = "seedt-lab-relay";
        let router = format!("{netns}-rtr");
        let stranger = format!("{netns}-cli");
        footprint = Footprint::of(lab.dir.path(), &[netns, &router, &stranger]);
        lab.up(netns, &installer);

        // The router: one leg on seed's bridge (10.10.10.254), one on rack 2's segment, a bridge
        // of its own in the lab's namespace (10.10.20.1); the machines' taps move there (they
        // are still off: `lab up` starts them paused until a power-on).
        lab.extra_netns.push(router.clone());
        lab.extra_netns.push(stranger.clone());
        ip(&["netns", "add", &router]);
        ip(&["netns", "add", &stranger]);
        ip(&["-n", netns, "link", "add", "far0", "type", "bridge"]);
        ip(&["-n", netns, "link", "set", "far0", "up"]);
        ip(&[
            "-n", netns, "link", "add", "rtr0", "type", "veth", "peer", "name", "eth0", "netns",
            &router,
        ]);
        ip(&[
            "-n", netns, "link", "add", "rtr1", "type", "veth", "peer", "name", "eth1", "netns",
            &router,
        ]);
        ip(&[
            "-n", netns, "link", "add", "cli0", "type", "veth", "peer", "name", "eth0", "netns",
            &stranger,
        ]);
        ip(&[
            "-n", netns, "link", "set", "rtr0", "master", "seedbr0", "up",
        ]);
        for port in ["rtr1", "cli0", "tap0", "tap1"] {
            ip(&["-n", netns, "link", "set", port, "master", "far0", "up"]);
        }
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            "10.10.10.254/24",
            "dev",
            "eth0",
        ]);
        ip(&["-n", &router, "addr", "add", "10.10.20.1/24", "dev", "eth1"]);
        for dev in ["lo", "eth0", "eth1"] {
            ip(&["-n", &router, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &stranger,
            "link",
            "set",
            "eth0",
            "address",
            "02:00:00:00:20:99",
            "up",
        ]);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ])
            .output()
            .expect("sysctl");
        assert!(out.status.success(), "ip_forward: {}", describe(&out));
        // seed reaches rack 2 through the router (its own answers go to giaddr 10.10.20.1).
        ip(&[
            "-n",
            netns,
            "route",
            "add",
            "10.10.20.0/24",
            "via",
            "10.10.10.254",
        ]);

        let relay_log = lab.dir.path().join("dnsmasq-relay.log");
        let dnsmasq = Command::new("ip")
            .args([
                "netns",
                "exec",
                &router,
                "dnsmasq",
                "--no-daemon",
                "--port=0",
            ])
            .args([
                "--interface=eth1",
                "--no-resolv",
                "--no-hosts",
                "--log-dhcp",
            ])
            .args(["--dhcp-relay=10.10.20.1,10.10.10.1", "--pid-file="])
            .arg(format!("--log-facility={}", relay_log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        let mut dnsmasq = KillOnDrop::new(dnsmasq);

        let out = lab
            .seed()
            .args(["provision", "relay-uefi", "relay-bios", "--timeout", "300"])
            .output()
            .expect("seed provision");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let relay = || std::fs::read_to_string(&relay_log).unwrap_or_default();
        assert!(
            out.status.success() && stdout.contains("2 of 2 installed"),
            "{}\nrelay:\n{}\nconsoles:\n{}\n{}",
            describe(&out),
            relay(),
            lab.console("relay-uefi"),
            lab.console("relay-bios")
        );
        assert!(
            dnsmasq.child().try_wait().expect("dnsmasq").is_none(),
            "dnsmasq exited: {}",
            relay()
        );
        for (name, suffix, chip) in [("relay-uefi", 41, "SNP"), ("relay-bios", 42, "virtio-net")] {
            common::wait_until_else(
                std::time::Duration::from_secs(300),
                || {
                    lab.events(name)
                        .iter()
                        .any(|e| e.kind == seed::provision::LOCAL_BOOT)
                },
                || {
                    format!(
                        "{name} did not come back to its disk in 300 s: {}\nconsole:\n{}",
                        kinds_and_details(&lab.events(name)),
                        lab.console(name)
                    )
                },
            );
            assert_installed_and_back(&lab, name, chip);
            let address = format!("10.10.20.{suffix}");
            // The installer's DHCP came through the relay with its rack-2 address (its console
            // says so) and found it untagged in the netplan it was given.
            let console = lab.console(name);
            assert!(
                console.contains(&format!("netplan with {address} (ethernets)")),
                "{name}: {console}"
            );
            let out = lab
                .seed()
                .args(["render", "netplan", name])
                .output()
                .expect("seed render");
            let netplan = String::from_utf8_lossy(&out.stdout);
            assert!(
                netplan.contains(&format!("[\"{address}/24\"]"))
                    && netplan.contains(r#"{"to":"default","via":"10.10.20.1"}"#)
                    && !netplan.contains("vlans:"),
                "{name}: {netplan}"
            );
        }
        assert!(
            relay().contains("10.10.20.1"),
            "the relay saw no traffic: {}",
            relay()
        );

        // A machine seed does not know, behind the relay: a discovery-pool address of rack 2,
        // listed with its zone and relay.
        let out = Command::new("ip")
            .args([
                "netns", "exec", &stranger, "timeout", "20", "busybox", "udhcpc",
            ])
            .args([
                "-f",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "1",
                "-i",
                "eth0",
                "-s",
                "/bin/true",
            ])
            .output()
            .expect("udhcpc");
        assert!(
            describe(&out).contains("lease of 10.10.20.100 obtained"),
            "{}\nrelay:\n{}",
            describe(&out),
            relay()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = lab.seed().arg("status").output().expect("seed status");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // Columns, not the line's end: the table grows (ENLISTED came after RELAY).
            if text.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&"02:00:00:00:20:99")
                    && cols.contains(&"10.10.20.100")
                    && cols.contains(&"rack2")
                    && cols.contains(&"10.10.20.1")
            }) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stranger is not listed with zone rack2 and relay 10.10.20.1:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }

        let out = lab.seed().args(["lab", "down"]).output().expect("lab down");
        assert!(out.status.success(), "lab down: {}", describe(&out));
        drop(dnsmasq);
    }
    footprint.assert_gone("after a routed rack's lab");
}

/// Writes `work/initrd.gz`: the machine's initrd with `work/extra/` appended as a second
/// archive (the kernel unpacks both, the second over the first).
fn append_to_initrd(machine: &std::path::Path, work: &std::path::Path, busybox: &std::path::Path) {
    let cpio = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | '{}' cpio -o -H newc 2>/dev/null | gzip -1",
            work.join("extra").display(),
            busybox.display()
        ))
        .output()
        .unwrap();
    assert!(cpio.status.success() && !cpio.stdout.is_empty());
    let mut initrd = std::fs::read(machine.join("initrd.gz")).unwrap();
    initrd.extend_from_slice(&cpio.stdout);
    std::fs::write(work.join("initrd.gz"), initrd).unwrap();
}

/// Boots the first-boot machine (`tests/firstboot`) with `initrd.gz` from `work` (or the
/// machine's own) and `devices`, until it powers itself off; its `firstboot: ` console lines.
fn run_first_boot(
    qemu: &std::path::Path,
    accel: seed::lab::Accel,
    machine: &std::path::Path,
    work: &std::path::Path,
    model: &str,
    devices: &[String],
) -> String {
    let initrd = Some(work.join("initrd.gz"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| machine.join("initrd.gz"));
    let console = work.join("console.log");
    let child = Command::new(qemu)
        .args(["-machine", model, "-accel", &accel.to_string(), "-m", "768"])
        .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
        .args(["-no-reboot", "-nodefaults"])
        .arg("-kernel")
        .arg(machine.join("vmlinuz"))
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1"])
        .args(devices)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&console).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu");
    let mut child = KillOnDrop::new(child);
    // It powers itself off when done (bounded inside: udev settle 30 s, networkd 30 s).
    common::wait_until_else(
        std::time::Duration::from_secs(240),
        || child.child().try_wait().unwrap().is_some(),
        || {
            format!(
                "the first-boot machine ran longer than 240 s:\n{}",
                std::fs::read_to_string(&console).unwrap_or_default()
            )
        },
    );
    String::from_utf8_lossy(&std::fs::read(&console).unwrap())
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("firstboot: "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Real udev on disks QEMU models as an ATA BOSS card, an ATA SSD, a SAS disk with a WWN, a
/// virtio disk and an NVMe drive (tests/firstboot prints `udevadm info` of each): the match rules
/// seed renders from the operator's words select exactly the intended disk under subiquity's rules
/// (`seed::disk::candidates`), and the literal model the example rack once rendered matches none.
/// seed's agent, run in the same machine without udev, names each disk as udev did and reads
/// the NIC, DMI identity, CPUs and firmware mode QEMU was given.
/// Values: Dell's BOSS-S2 virtual disk reports model `DELLBOSS VD`; Intel D3-S4610 serials look like
/// PHYG…480BGN; a Seagate Exos 7E8's SCSI product is ST8000NM0075 with a NAA-5 WWN.
#[test]
fn rendered_disk_rules_select_their_disk_among_what_real_udev_reports() {
    use seed::config::DiskMatch;
    use seed::disk::{UdevDisk, candidates, subiquity_match};
    let _one = one_lab_at_a_time();
    let machine = firstboot();
    let qemu = common::need("qemu-system-x86_64");
    let dir = tempfile::tempdir().unwrap();
    let accel = seed::lab::Accel::detect(&qemu, dir.path());
    let mut devices: Vec<String> = Vec::new();
    let mut disk = |i: usize, device: String| {
        let image = dir.path().join(format!("d{i}.img"));
        std::fs::File::create(&image)
            .unwrap()
            .set_len(1 << 30)
            .unwrap();
        devices.extend([
            "-drive".into(),
            format!("if=none,id=d{i},file={},format=raw", image.display()),
            "-device".into(),
            format!("{device},drive=d{i}"),
        ]);
    };
    disk(
        1,
        "ide-hd,bus=ide.0,model=DELLBOSS VD,serial=c4a1b2c3d4e5f607".into(),
    );
    disk(
        2,
        "ide-hd,bus=ide.1,model=INTEL SSDSC2KG480G8,serial=PHYG1234567H480BGN,rotation_rate=1"
            .into(),
    );
    disk(
        3,
        "scsi-hd,bus=scsi0.0,vendor=SEAGATE,product=ST8000NM0075,serial=ZA1AB2CD,wwn=0x5000c50093fddc5f"
            .into(),
    );
    disk(4, "virtio-blk-pci,serial=seed-os-disk".into());
    disk(5, "nvme,serial=S4EVNX0N123456".into());
    devices.splice(
        0..0,
        [
            "-device".to_string(),
            "virtio-scsi-pci,id=scsi0".to_string(),
        ],
    );
    // A NIC on a hub of its own (no traffic leaves), and the identity a Dell's SMBIOS gives.
    devices.extend([
        "-netdev".into(),
        "hubport,id=n0,hubid=0".into(),
        "-device".into(),
        "virtio-net-pci,netdev=n0,mac=52:54:00:5e:ed:01".into(),
        "-smbios".into(),
        "type=1,manufacturer=Dell Inc.,product=PowerEdge R650,serial=7XKQ2T3".into(),
        "-smp".into(),
        "2".into(),
    ]);
    // seed's agent beside udev: the test binary without its debug info (a fourth of the
    // size), under usr/bin (the machine's /bin is a link to it: a `bin` directory in the second
    // archive would replace that link).
    let agent = dir.path().join("extra/usr/bin/seed-agent");
    std::fs::create_dir_all(agent.parent().unwrap()).unwrap();
    let out = Command::new(common::need("strip"))
        .arg("--strip-debug")
        .arg("-o")
        .arg(&agent)
        .arg(common::seed_bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "strip: {}", describe(&out));
    append_to_initrd(&machine, dir.path(), &common::need("busybox"));
    let console = run_first_boot(&qemu, accel, &machine, dir.path(), "pc", &devices);
    assert!(console.contains("done"), "{console}");

    // `disk /dev/sda size=… rotational=…` then `disk /dev/sda ID_…=…` lines.
    let mut disks: Vec<UdevDisk> = Vec::new();
    for line in console.lines() {
        let Some(rest) = line.strip_prefix("disk ") else {
            continue;
        };
        let (path, what) = rest.split_once(' ').unwrap();
        if let Some(facts) = what.strip_prefix("size=") {
            let (size, rotational) = facts.split_once(" rotational=").unwrap();
            disks.push(UdevDisk {
                path: path.into(),
                size: size.parse().unwrap(),
                rotational: rotational == "1",
                ..UdevDisk::default()
            });
            continue;
        }
        let d = disks.iter_mut().find(|d| d.path == path).unwrap();
        let (key, value) = what.split_once('=').unwrap();
        match key {
            "ID_SERIAL" => d.id_serial = value.into(),
            "ID_MODEL" => d.id_model = value.into(),
            "ID_VENDOR" => d.id_vendor = value.into(),
            "ID_PATH" => d.id_path = value.into(),
            _ => {}
        }
    }
    assert_eq!(disks.len(), 5, "{console}");
    let by = |f: &dyn Fn(&UdevDisk) -> bool| -> String {
        disks.iter().find(|d| f(d)).map(|d| d.path.clone()).unwrap()
    };
    let boss = by(&|d| d.id_model == "DELLBOSS_VD");
    let ssd = by(&|d| d.id_serial.ends_with("PHYG1234567H480BGN"));
    let sas = by(&|d| d.id_vendor == "SEAGATE");
    let nvme = by(&|d| d.path.starts_with("/dev/nvme"));
    let rule = |f: fn(&mut DiskMatch)| {
        let mut m = DiskMatch::default();
        f(&mut m);
        m
    };
    let cases: Vec<(DiskMatch, &str)> = vec![
        (rule(|m| m.model = Some("DELLBOSS VD".into())), &boss),
        (rule(|m| m.serial = Some("PHYG1234567H480BGN".into())), &ssd),
        (rule(|m| m.wwn = Some("0x5000c50093fddc5f".into())), &sas),
        (
            rule(|m| {
                m.vendor = Some("SEAGATE".into());
                m.model = Some("ST8000NM0075".into());
            }),
            &sas,
        ),
        (rule(|m| m.serial = Some("seed-os-disk".into())), "/dev/vda"),
        (rule(|m| m.serial = Some("S4EVNX0N123456".into())), &nvme),
        (rule(|m| m.model = Some("QEMU NVMe Ctrl".into())), &nvme),
        (
            rule(|m| m.id_path = Some("pci-0000:00:02.0-scsi-0:0:0:0".into())),
            &sas,
        ),
    ];
    for (rule, want) in &cases {
        let m = subiquity_match(rule);
        let chosen: Vec<&str> = candidates(&m, &disks)
            .iter()
            .map(|d| d.path.as_str())
            .collect();
        assert_eq!(
            chosen,
            [*want],
            "{rule:?} rendered {m:?} against:\n{console}"
        );
    }
    // What seed rendered before it spelt models as udev does: the BOSS card is not found.
    let mut literal = std::collections::BTreeMap::new();
    literal.insert("model".to_string(), serde_json::json!("DELLBOSS VD"));
    assert!(candidates(&literal, &disks).is_empty(), "{console}");

    // seed's agent, reading the same kernel without udev, names every disk as udev did
    // (the NVMe drive sits under native multipath, as on Ubuntu; the IDE disks carry the
    // target in ID_PATH, `ata-1.0`, which a published by-path listing had hidden).
    let json = console
        .lines()
        .find_map(|l| l.strip_prefix("agent: "))
        .unwrap_or_else(|| panic!("no agent line in:\n{console}"));
    let inspection: seed::agent::inspect::Inspection = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("agent output is no inspection ({e}): {json}"));
    let mut named: Vec<UdevDisk> = inspection
        .disks
        .iter()
        .map(seed::agent::inspect::Disk::udev)
        .collect();
    named.sort_by(|a, b| a.path.cmp(&b.path));
    let mut seen = disks.clone();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(named, seen, "the agent's names against udev's:\n{console}");
    let wwn = |path: &str| {
        inspection
            .disks
            .iter()
            .find(|d| d.path == path)
            .map(|d| d.id_wwn.clone())
    };
    assert_eq!(wwn(&sas).as_deref(), Some("0x5000c50093fddc5f"));
    let nvme_wwn = console
        .lines()
        .find_map(|l| l.strip_prefix(&format!("disk {nvme} ID_WWN=")))
        .unwrap_or_else(|| panic!("no ID_WWN for {nvme}:\n{console}"));
    assert_eq!(wwn(&nvme).as_deref(), Some(nvme_wwn));
    let nic = inspection
        .nics
        .iter()
        .map(|n| (n.mac.to_string(), n.driver.clone(), n.pci.is_some()));
    assert_eq!(
        nic.collect::<Vec<_>>(),
        [(
            "52:54:00:5e:ed:01".to_string(),
            Some("virtio_net".to_string()),
            true
        )],
        "{json}"
    );
    assert_eq!(inspection.system.vendor.as_deref(), Some("Dell Inc."));
    assert_eq!(inspection.system.product.as_deref(), Some("PowerEdge R650"));
    assert_eq!(inspection.system.serial.as_deref(), Some("7XKQ2T3"));
    assert_eq!(inspection.cpu.threads, 2, "{json}");
    assert_eq!(
        inspection.firmware.mode,
        seed::agent::inspect::BootMode::Bios
    );
}

/// seed's deploy ramdisk (`seed agent ramdisk`: the binary as /init, the cloud kernel's
/// modules) boots on SeaBIOS and on OVMF with no shell or udev in it: seed, as PID 1, loads
/// the modules, inspects the machine, prints it on the console and powers off. What it
/// reports is what QEMU was given: each disk's serial, model and WWN as udev names them, the
/// NIC's MAC and driver, the SMBIOS identity, and the firmware (UEFI with Secure Boot off on
/// OVMF's plain build, whose variable store has SecureBoot = 0).
/// The deploy ramdisk's boot files in `dir/agent/`: the agent kernel's `vmlinuz` and the
/// `initrd.gz` that `seed agent ramdisk` builds from it around the test binary without its
/// debug info (which it becomes: /init). Checks the modules the lab's machines need are in it.
fn agent_boot_files(dir: &std::path::Path) -> PathBuf {
    let kernel = agent_kernel();
    let out_dir = dir.join("agent");
    std::fs::create_dir_all(&out_dir).unwrap();
    let agent = dir.join("seed-stripped");
    let out = Command::new(common::need("strip"))
        .arg("--strip-debug")
        .arg("-o")
        .arg(&agent)
        .arg(common::seed_bin())
        .output()
        .unwrap();
    assert!(out.status.success(), "strip: {}", describe(&out));
    let out = Command::new(&agent)
        .args(["agent", "ramdisk", "--kernel-dir"])
        .arg(&kernel)
        .arg("--out")
        .arg(out_dir.join("initrd.gz"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    for module in [
        "virtio_blk",
        "virtio_scsi",
        "ata_piix",
        "virtio_net",
        "efivarfs",
    ] {
        assert!(
            said.contains(module),
            "{module} missing from the ramdisk: {said}"
        );
    }
    let vmlinuz = std::fs::read_dir(kernel.join("boot"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .unwrap();
    std::fs::copy(vmlinuz, out_dir.join("vmlinuz")).unwrap();
    out_dir
}

#[test]
fn the_deploy_ramdisk_runs_seed_as_init_and_inspects_bios_and_uefi_machines() {
    use seed::agent::inspect::{BootMode, Inspection};
    let _one = one_lab_at_a_time();
    let qemu = common::need("qemu-system-x86_64");
    let dir = tempfile::tempdir().unwrap();
    let accel = seed::lab::Accel::detect(&qemu, dir.path());
    let boot = agent_boot_files(dir.path());
    let (vmlinuz, ramdisk) = (boot.join("vmlinuz"), boot.join("initrd.gz"));
    for uefi in [false, true] {
        let work = dir.path().join(if uefi { "uefi" } else { "bios" });
        std::fs::create_dir_all(&work).unwrap();
        let mut args: Vec<String> = Vec::new();
        // The IDE disk only on SeaBIOS: under OVMF QEMU's PIIX IDE shows Linux no disk (udev
        // finds none either), and q35's AHCI driver is not a module of the cloud kernel.
        let devices = [
            "ide-hd,bus=ide.0,model=DELLBOSS VD,serial=c4a1b2c3d4e5f607",
            "virtio-blk-pci,serial=seed-os-disk",
            "nvme,serial=S4EVNX0N123456",
            "scsi-hd,bus=scsi0.0,vendor=SEAGATE,product=ST8000NM0075,serial=ZA1AB2CD,wwn=0x5000c50093fddc5f",
        ];
        for (i, device) in devices.iter().enumerate().skip(usize::from(uefi)) {
            let image = work.join(format!("d{i}.img"));
            std::fs::File::create(&image)
                .unwrap()
                .set_len(1 << 30)
                .unwrap();
            args.extend([
                "-drive".into(),
                format!("if=none,id=d{i},file={},format=raw", image.display()),
                "-device".into(),
                format!("{device},drive=d{i}"),
            ]);
        }
        args.splice(
            0..0,
            [
                "-device".to_string(),
                "virtio-scsi-pci,id=scsi0".to_string(),
            ],
        );
        args.extend([
            "-netdev".into(),
            "hubport,id=n0,hubid=0".into(),
            "-device".into(),
            "virtio-net-pci,netdev=n0,mac=52:54:00:5e:ed:02".into(),
            "-smbios".into(),
            "type=1,manufacturer=Dell Inc.,product=PowerEdge R650,serial=7XKQ2T3".into(),
        ]);
        if uefi {
            let (code, vars) = [
                (
                    "/usr/share/OVMF/OVMF_CODE_4M.fd",
                    "/usr/share/OVMF/OVMF_VARS_4M.fd",
                ),
                (
                    "/usr/share/OVMF/OVMF_CODE.fd",
                    "/usr/share/OVMF/OVMF_VARS.fd",
                ),
            ]
            .into_iter()
            .find(|(c, v)| std::path::Path::new(c).exists() && std::path::Path::new(v).exists())
            .expect("OVMF (apt-get install ovmf)");
            let own_vars = work.join("vars.fd");
            std::fs::copy(vars, &own_vars).unwrap();
            args.extend([
                "-drive".into(),
                format!("if=pflash,format=raw,readonly=on,file={code}"),
                "-drive".into(),
                format!("if=pflash,format=raw,file={}", own_vars.display()),
            ]);
        }
        let console = work.join("console.log");
        let child = Command::new(&qemu)
            .args([
                "-machine",
                "pc",
                "-accel",
                &accel.to_string(),
                "-m",
                "768",
                "-smp",
                "2",
            ])
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none"])
            .args(["-no-reboot", "-nodefaults"])
            .arg("-kernel")
            .arg(&vmlinuz)
            .arg("-initrd")
            .arg(&ramdisk)
            .args(["-append", "console=ttyS0 panic=-1 seed.action=inspect"])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&console).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu");
        let mut child = KillOnDrop::new(child);
        common::wait_until_else(
            Duration::from_secs(300),
            || child.child().try_wait().unwrap().is_some(),
            || {
                format!(
                    "the ramdisk ran longer than 300 s:\n{}",
                    std::fs::read_to_string(&console).unwrap_or_default()
                )
            },
        );
        let text = String::from_utf8_lossy(&std::fs::read(&console).unwrap()).into_owned();
        let json = text
            .lines()
            .find_map(|l| {
                l.trim_end_matches('\r')
                    .strip_prefix("seed-agent: inspection: ")
            })
            .unwrap_or_else(|| panic!("no inspection on the console:\n{text}"));
        let inspection: Inspection = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("not an inspection ({e}): {json}"));
        let disk = |serial: &str| {
            inspection
                .disks
                .iter()
                .find(|d| d.serial == serial)
                .unwrap_or_else(|| panic!("no disk with serial {serial}: {json}"))
        };
        if !uefi {
            let boss = disk("c4a1b2c3d4e5f607");
            assert_eq!(
                (
                    boss.id_model.as_str(),
                    boss.id_serial.as_str(),
                    boss.id_path.as_str()
                ),
                (
                    "DELLBOSS_VD",
                    "DELLBOSS_VD_c4a1b2c3d4e5f607",
                    "pci-0000:00:01.1-ata-1.0"
                )
            );
        }
        assert_eq!(disk("seed-os-disk").id_serial, "seed-os-disk");
        let nvme = disk("S4EVNX0N123456");
        assert_eq!(nvme.id_serial, "QEMU_NVMe_Ctrl_S4EVNX0N123456_1");
        assert!(nvme.id_path.ends_with("-nvme-1"), "{json}");
        let sas = disk("ZA1AB2CD");
        assert_eq!(
            (
                sas.id_vendor.as_str(),
                sas.id_model.as_str(),
                sas.id_wwn.as_str()
            ),
            ("SEAGATE", "ST8000NM0075", "0x5000c50093fddc5f")
        );
        assert_eq!(inspection.disks.len(), 4 - usize::from(uefi), "{json}");
        assert!(inspection.disks.iter().all(|d| d.size == 1 << 30), "{json}");
        let nic = &inspection.nics;
        assert_eq!(nic.len(), 1, "{json}");
        assert_eq!(nic[0].mac.to_string(), "52:54:00:5e:ed:02");
        assert_eq!(nic[0].driver.as_deref(), Some("virtio_net"));
        assert_eq!(inspection.system.product.as_deref(), Some("PowerEdge R650"));
        assert_eq!(inspection.system.serial.as_deref(), Some("7XKQ2T3"));
        assert_eq!(inspection.cpu.threads, 2);
        if uefi {
            assert_eq!(inspection.firmware.mode, BootMode::Uefi, "{json}");
            assert_eq!(inspection.firmware.secure_boot, Some(false), "{json}");
        } else {
            assert_eq!(inspection.firmware.mode, BootMode::Bios, "{json}");
        }
    }
}

/// The first boot of an installed node, as far as its network goes: the netplan seed renders is
/// turned into systemd files by `netplan generate`, and a QEMU machine whose kernel names its
/// NICs eth0-eth3 (udev would call them ens3/enp0s*) runs Debian's systemd-udevd and
/// systemd-networkd on them (tests/firstboot). The config names the bond's members `data0` and
/// `data1`, names nothing produces: with their MACs in `nics:` the .link files rename the ports
/// and the bond gets both; without (the lab's cmp2 has no `nics:`) the bond stays empty. The NICs
/// hang on QEMU hubs with nothing else on them: no traffic leaves the machine.
#[test]
fn bond_members_are_found_by_mac_whatever_the_kernel_names_them() {
    let _one = one_lab_at_a_time();
    let machine = firstboot();
    let netplan_bin = common::need("netplan");
    let busybox = common::need("busybox");
    let qemu = common::need("qemu-system-x86_64");
    let dir = tempfile::tempdir().unwrap();
    // KVM only where it really runs a guest (nested CI machines hang a kernel under it).
    let accel = seed::lab::Accel::detect(&qemu, dir.path());
    let config = dir.path().join("lab.yaml");
    let text = std::fs::read_to_string(repo_root().join("examples/lab.yaml"))
        .unwrap()
        .replace("members: [ens4, ens5]", "members: [data0, data1]")
        .replace(
            r#"ens4: "52:54:00:10:01:11", ens5: "52:54:00:10:02:11""#,
            r#"data0: "52:54:00:10:01:11", data1: "52:54:00:10:02:11""#,
        );
    assert!(
        text.contains("data0: \"52:54:00:10:01:11\""),
        "lab.yaml changed"
    );
    std::fs::write(&config, text).unwrap();

    let boot = |node: &str, macs: [&str; 4]| -> String {
        let work = dir.path().join(node);
        let netplan_dir = work.join("root/etc/netplan");
        std::fs::create_dir_all(&netplan_dir).unwrap();
        let out = seed()
            .arg("--config")
            .arg(&config)
            .args(["render", "netplan", node])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let yaml = netplan_dir.join("50-seed.yaml");
        std::fs::write(&yaml, &out.stdout).unwrap();
        std::fs::set_permissions(&yaml, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let out = Command::new(&netplan_bin)
            .arg("generate")
            .arg("--root-dir")
            .arg(work.join("root"))
            .output()
            .unwrap();
        assert!(out.status.success(), "netplan generate: {}", describe(&out));
        // The networkd files, appended to the machine's initrd as a second archive.
        let files = work.join("extra/seed/network");
        std::fs::create_dir_all(&files).unwrap();
        for entry in std::fs::read_dir(work.join("root/run/systemd/network")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, files.join(path.file_name().unwrap())).unwrap();
        }
        append_to_initrd(&machine, &work, &busybox);

        let mut args: Vec<String> = Vec::new();
        for (i, mac) in macs.iter().enumerate() {
            args.extend(["-netdev".into(), format!("hubport,id=n{i},hubid={i}")]);
            args.extend([
                "-device".into(),
                format!("virtio-net-pci,netdev=n{i},mac={mac}"),
            ]);
        }
        run_first_boot(&qemu, accel, &machine, &work, "q35", &args)
    };

    let cmp1 = boot(
        "cmp1",
        [
            "52:54:00:10:00:11",
            "52:54:00:10:01:11",
            "52:54:00:10:02:11",
            "52:54:00:10:03:11",
        ],
    );
    assert!(cmp1.contains("done"), "{cmp1}");
    // The kernel called the data ports eth1/eth2; udev renamed them by MAC; networkd bonded them.
    assert!(
        cmp1.contains("kernel named eth1 52:54:00:10:01:11"),
        "{cmp1}"
    );
    let slaves = cmp1
        .lines()
        .find_map(|l| l.strip_prefix("bond bond1 slaves: "))
        .unwrap_or_default();
    let mut slaves: Vec<&str> = slaves.split_whitespace().collect();
    slaves.sort_unstable();
    assert_eq!(slaves, ["data0", "data1"], "{cmp1}");
    for want in [
        "address ens3 10.10.10.11/24",
        "address bond1.40 10.10.40.11/24",
        "link bond1",
    ] {
        assert!(cmp1.contains(want), "want {want:?}:\n{cmp1}");
    }

    // cmp2 names no MACs: its netplan can only look for `data0` by kernel name, and no kernel
    // gives that name; the bond comes up without members and its address has no way out.
    let cmp2 = boot(
        "cmp2",
        [
            "52:54:00:10:00:12",
            "52:54:00:10:01:12",
            "52:54:00:10:02:12",
            "52:54:00:10:03:12",
        ],
    );
    assert!(cmp2.contains("done"), "{cmp2}");
    let slaves = cmp2
        .lines()
        .find_map(|l| l.strip_prefix("bond bond1 slaves:"))
        .map(str::trim);
    assert_eq!(slaves, Some(""), "{cmp2}");
}

/// The end of an install survives seed: `late` is killed out of seed's hands just before its
/// installed callback (the stand-in's `slow-end` gives the window; its callback is retried as
/// the rendered late-command retries it, 60 tries 10 s apart), seed comes back 40 s later, and
/// the node ends installed and boots its disk. `lost` reboots without the callback at all
/// (`no-callback`: seed down longer than the retries): its network boot gets the local disk,
/// not the installer again, because its installer had begun writing the disk.
#[test]
fn a_seed_restart_at_the_end_of_an_install_loses_nothing_and_reinstalls_nothing() {
    let _one = one_lab_at_a_time();
    let installer = installer();
    let footprint;
    {
        let lab = LabDir::new(
            "",
            "progress_timeout: 300, phone_home_timeout: 0",
            &[
                node("late", 51, "bios", "kernel_args: [seed.test=slow-end]"),
                node("lost", 52, "bios", "kernel_args: [seed.test=no-callback]"),
            ]
            .concat(),
        );
        let netns = "seedt-lab-restart";
        footprint = Footprint::of(lab.dir.path(), &[netns]);
        lab.up(netns, &installer);
        let wait_for = |node: &str, what: &str, f: &dyn Fn(&[Event]) -> bool| {
            common::wait_until_else(
                std::time::Duration::from_secs(300),
                || f(&lab.events(node)),
                || {
                    format!(
                        "{node}: no {what} in 300 s:\n{}\nconsole:\n{}",
                        kinds_and_details(&lab.events(node)),
                        lab.console(node)
                    )
                },
            );
        };

        let out = lab
            .seed()
            .args(["provision", "late", "--no-wait"])
            .output()
            .expect("seed provision");
        assert!(out.status.success(), "{}", describe(&out));
        wait_for("late", "end of the install step", &|events| {
            events
                .iter()
                .any(|e| e.detail.starts_with("finish subiquity/Install/install:"))
        });
        // seed dies (SIGKILL: nothing flushed on the way out) and is back 40 s later.
        let pids = Command::new("ip")
            .args(["netns", "pids", netns])
            .output()
            .expect("ip netns pids");
        let serve: Vec<String> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter(|pid| {
                // argv has `serve` as an argument of its own (QEMU's `server=on` does not count).
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"serve"))
            })
            .map(str::to_string)
            .collect();
        assert_eq!(serve.len(), 1, "one seed serve in the lab: {serve:?}");
        let killed = Command::new("kill")
            .args(["-9", &serve[0]])
            .status()
            .unwrap();
        assert!(killed.success());
        let down_at = Instant::now();
        // The outage itself is the scenario (40 s, longer than the old callback retries).
        std::thread::sleep(Duration::from_secs(40));
        assert!(
            !lab.events("late")
                .iter()
                .any(|e| e.detail.contains("-> installed")),
            "installed while seed was down?"
        );
        let log = lab.dir.path().join("seed-restarted.log");
        let restarted = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(common::seed_bin())
            .arg("--config")
            .arg(&lab.config)
            .arg("--state-dir")
            .arg(lab.state())
            .args(["serve", "-v"])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("restart seed serve");
        let _restarted = KillOnDrop::new(restarted);
        common::wait_until(
            std::time::Duration::from_secs(30),
            "seed did not come back",
            || {
                std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("HTTP server running")
            },
        );
        eprintln!("seed was down {:?}", down_at.elapsed());
        wait_for("late", "second boot to its disk", &|events| {
            events.iter().any(|e| e.kind == seed::provision::LOCAL_BOOT)
        });
        assert_installed_and_back(&lab, "late", "virtio-net");
        let late = lab.events("late");
        assert_eq!(
            late.iter()
                .filter(|e| e.detail.contains("installer served"))
                .count(),
            1,
            "installed once:\n{}",
            kinds_and_details(&late)
        );
        assert!(
            lab.console("late").contains("failed; again in 10 s"),
            "the callback was retried: {}",
            lab.console("late")
        );
        // The outage is in the node's timeline.
        let out = lab.seed().args(["status", "late"]).output().unwrap();
        let timeline = String::from_utf8_lossy(&out.stdout);
        assert!(
            timeline.contains("seed started: config")
                && timeline.contains("the run before ended without a stop: crashed or killed"),
            "{}",
            describe(&out)
        );

        // The callback lost for good: the next network boot gets the local disk.
        let out = lab
            .seed()
            .args(["provision", "lost", "--no-wait"])
            .output()
            .expect("seed provision");
        assert!(out.status.success(), "{}", describe(&out));
        wait_for(
            "lost",
            "network boot after the disk was written",
            &|events| {
                events.iter().any(|e| {
                    e.detail
                        .contains("network-booted after its installer wrote the disk")
                })
            },
        );
        let lost = lab.events("lost");
        let all = kinds_and_details(&lost);
        assert_eq!(
            lost.iter()
                .filter(|e| e.detail.contains("installer served"))
                .count(),
            1,
            "never the installer again:\n{all}"
        );
        assert!(lost.iter().any(|e| e.kind == "disk"), "{all}");
        assert_eq!(lab.state_of("lost"), "installing", "{all}");

        let out = lab.seed().args(["lab", "down"]).output().expect("lab down");
        assert!(out.status.success(), "lab down: {}", describe(&out));
    }
    footprint.assert_gone("after a seed restart mid-install");
}

/// Boot phases are watched, each with its own bound (`dhcp_timeout`, `installer_timeout`): `cut`
/// is served a corrupted initrd on its first start (same size, second half zeroed: the kernel
/// panics, as after a download cut short), and seed power-cycles it again by itself; it installs
/// on its second start. `wrong` has a MAC in the config that is not its NIC's: it never asks
/// DHCP as itself, is started again once and then failed, its reason naming the phase, its power
/// state and the unknown MAC that asked DHCP in its place.
#[test]
fn a_missed_boot_phase_starts_the_node_again_and_a_wrong_mac_is_named() {
    let _one = one_lab_at_a_time();
    let installer = installer();
    let footprint;
    {
        let lab = LabDir::new(
            "",
            "progress_timeout: 600, phone_home_timeout: 0, install_attempts: 2, \
             dhcp_timeout: 60, installer_timeout: 60",
            &[
                node("wrong", 61, "bios", "qemu: { mac: \"52:54:00:20:00:99\" }"),
                node("cut", 62, "bios", ""),
            ]
            .concat(),
        );
        let netns = "seedt-lab-phases";
        footprint = Footprint::of(lab.dir.path(), &[netns]);
        lab.up(netns, &installer);
        // The registered initrd, corrupted in place for the first start.
        let initrd = walk(&lab.state().join("images"))
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n == "initrd.gz"))
            .expect("the lab image's initrd");
        let good = std::fs::read(&initrd).unwrap();
        let mut bad = good.clone();
        let half = bad.len() / 2;
        bad[half..].fill(0);
        std::fs::write(&initrd, &bad).unwrap();

        let out = lab
            .seed()
            .args(["provision", "wrong", "cut", "--no-wait"])
            .output()
            .expect("seed provision");
        assert!(out.status.success(), "{}", describe(&out));
        common::wait_until_else(
            std::time::Duration::from_secs(300),
            || lab.console("cut").contains("Kernel panic"),
            || format!("cut's first kernel did not panic: {}", lab.console("cut")),
        );
        std::fs::write(&initrd, &good).unwrap();

        common::wait_until_else(
            std::time::Duration::from_secs(420),
            || {
                lab.state_of("wrong") == "failed"
                    && lab
                        .events("cut")
                        .iter()
                        .any(|e| e.kind == seed::provision::LOCAL_BOOT)
            },
            || {
                format!(
                    "wrong: {}\n{}\ncut: {}\n{}",
                    lab.state_of("wrong"),
                    kinds_and_details(&lab.events("wrong")),
                    lab.state_of("cut"),
                    kinds_and_details(&lab.events("cut"))
                )
            },
        );
        let cut = kinds_and_details(&lab.events("cut"));
        assert!(
            cut.contains("power-cycled again: was served the installer, which never reported")
                && cut.contains("(start 2 of 2)")
                && cut.contains("(attempt 2, iPXE"),
            "{cut}"
        );
        assert_installed_and_back(&lab, "cut", "virtio-net");

        let wrong = lab.events("wrong");
        let all = kinds_and_details(&wrong);
        assert!(
            all.contains("power-cycled again: never asked DHCP"),
            "{all}"
        );
        let failed = wrong
            .iter()
            .rev()
            .find(|e| e.detail.contains("-> failed"))
            .unwrap_or_else(|| panic!("{all}"));
        for want in [
            "never asked DHCP within 60 s of its start",
            "unknown MAC 52:54:00:20:00:99",
            "a wrong MAC in the config?",
            "power on",
            "started 2 times",
        ] {
            assert!(
                failed.detail.contains(want),
                "want {want:?}: {}",
                failed.detail
            );
        }

        let out = lab.seed().args(["lab", "down"]).output().expect("lab down");
        assert!(out.status.success(), "lab down: {}", describe(&out));
    }
    footprint.assert_gone("after the phase lab");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn an_interrupted_lab_run_leaves_nothing_behind() {
    let _one = one_lab_at_a_time();
    let installer = installer();
    let footprint;
    let mut during_lab;
    {
        let lab = LabDir::new(
            "",
            "progress_timeout: 300, phone_home_timeout: 0",
            &node("bios-rom", 41, "bios", ""),
        );
        // Another VM on this machine, none of this lab's business: it runs before the lab and
        // stops during it, and a second one starts during it and outlives it. Neither may
        // count for or against what the lab leaves behind.
        let unrelated = || {
            let child = Command::new(common::need("qemu-system-x86_64"))
                .args(["-machine", "none", "-display", "none", "-S", "-nodefaults"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("an unrelated QEMU");
            KillOnDrop::new(child)
        };
        let mut before_lab = unrelated();
        footprint = Footprint::of(lab.dir.path(), &["seedt-lab-int"]);
        let stdout_path = lab.dir.path().join("run.out");
        let child = lab
            .seed()
            .args(["lab", "run", "--netns", "seedt-lab-int", "--installer"])
            .arg(&installer)
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("seed lab run");
        let mut run = KillOnDrop::new(child);
        // Interrupt once the machine runs.
        common::wait_until(
            std::time::Duration::from_secs(60),
            "lab run did not start a machine",
            || {
                std::fs::read_to_string(&stdout_path)
                    .unwrap_or_default()
                    .contains("power cycle")
            },
        );
        assert!(
            footprint
                .processes()
                .iter()
                .any(|p| p.contains("qemu-system")),
            "no QEMU of this lab runs: {:#?}",
            footprint.processes()
        );
        let _ = before_lab.child().kill();
        let _ = before_lab.child().wait();
        during_lab = unrelated();
        let pid = run.child().id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = common::wait_for(
            Duration::from_secs(40),
            || run.child().try_wait().expect("wait"),
            || "lab run did not end after SIGINT".into(),
        );
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        assert_eq!(status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("interrupted"), "{stdout}");
        assert!(stdout.contains("lab: torn down"), "{stdout}");
    }
    footprint.assert_gone("after an interrupted seed lab run");
    assert!(
        during_lab.child().try_wait().expect("wait").is_none(),
        "the unrelated QEMU must still run: the lab's teardown is not to touch it"
    );
}

#[test]
fn lab_needs_a_config_with_qemu_nodes() {
    let _one = one_lab_at_a_time();
    let state = tempfile::tempdir().unwrap();
    let footprint = Footprint::of(state.path(), &["seedt-lab-none"]);
    let out = seed()
        .arg("--config")
        .arg(repo_root().join("examples/osism-rack.yaml"))
        .arg("--state-dir")
        .arg(state.path())
        .args(["lab", "up", "--netns", "seedt-lab-none"])
        .output()
        .expect("seed lab up");
    let text = describe(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no node with `bmc.driver: qemu`"), "{text}");
    footprint.assert_gone("after a refused lab");
}

/// `install.method: image` in the lab: each machine network-boots seed's agent (its kernel and
/// the ramdisk `seed agent ramdisk` built, /init = seed), which leases its address by DHCP on
/// BOOTIF, fetches its deploy plan with its token, reports its hardware, wipes the disk its
/// rule names, writes the registered disk image (hashed while written) and a config drive, and
/// reports `installed`. The machine whose image was damaged after registration is refused:
/// the node fails with the checksum named, and nothing is said installed.
#[test]
fn the_agent_deploys_a_disk_image_and_a_damaged_image_fails_its_node() {
    let _one = one_lab_at_a_time();
    let footprint;
    {
        let nodes = [
            node(
                "deploy-uefi",
                61,
                "uefi",
                "method: image\nimage: node-disk\nqemu: { memory: 1024, disk: 2 }",
            ),
            node(
                "deploy-bad",
                62,
                "bios",
                "method: image\nimage: damaged\nqemu: { memory: 1024, disk: 2 }",
            ),
        ]
        .concat();
        let lab = LabDir::new("", "progress_timeout: 300, phone_home_timeout: 0", &nodes);
        // The role discards its wiped disks too.
        let text = std::fs::read_to_string(&lab.config).unwrap();
        std::fs::write(
            &lab.config,
            text.replacen(
                "    disk: { path: /dev/vda }\n",
                "    disk: { path: /dev/vda }\n    discard: true\n",
                1,
            ),
        )
        .unwrap();
        let netns = "seedt-lab-deploy";
        footprint = Footprint::of(lab.dir.path(), &[netns]);
        let boot = agent_boot_files(lab.dir.path());

        // The image: a 768 MiB GPT disk (sgdisk) with one partition full of data, the rest
        // zeros the agent writes too (so the write lasts long enough to be cut).
        let image = lab.dir.path().join("node-disk.raw");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(768 << 20)
            .unwrap();
        let sgdisk = common::need("sgdisk");
        let out = Command::new(&sgdisk)
            .args(["-n", "1:2048:+32M", "-t", "1:8300", "-c", "1:root"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        let data: Vec<u8> = (0..32u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&image)
                .unwrap();
            f.write_all_at(&data, 1 << 20).unwrap();
        }
        for name in ["node-disk", "damaged"] {
            let out = lab
                .seed()
                .args(["images", "add-disk", name, "--file"])
                .arg(&image)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", describe(&out));
        }
        // Damaged after registration (a bad sector on the seed host, a tampered file): one
        // byte in the middle of the data.
        {
            use std::os::unix::fs::FileExt;
            let path = lab.state().join("disks/damaged/disk.raw");
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all_at(&[0xff ^ data[7 << 20]], (1 << 20) + (7 << 20))
                .unwrap();
        }

        lab.up(netns, &boot);
        // The machine's disk carried another system: a GPT, an md RAID-1 member, an LVM PV
        // and ext4, past where the image ends (a common cause of failed OSISM installs).
        let disk = lab.state().join("lab/deploy-uefi.disk.raw");
        let old = common::signatures::old_system(&disk, 800 << 20);
        // Old data between the old system's signatures, which the metadata wipe leaves: the
        // discard (an unmapping write-zeroes from the guest, a punched hole in this file under
        // QEMU's discard=unmap) takes it.
        let old_data = 1536u64 << 20;
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
            f.write_all_at(&[0x5e; 4 << 20], old_data).unwrap();
        }
        let out = lab
            .seed()
            .args(["provision", "deploy-uefi", "deploy-bad", "--no-wait"])
            .output()
            .expect("seed provision");
        assert!(out.status.success(), "{}", describe(&out));
        // A power cut in the middle of the write: the next boot deploys again from the start.
        let writing = |events: &[Event]| {
            events
                .iter()
                .filter(|e| e.detail.starts_with("start seed-agent/write"))
                .count()
        };
        common::wait_until_else(
            Duration::from_secs(300),
            || writing(&lab.events("deploy-uefi")) == 1,
            || {
                format!(
                    "deploy-uefi never began writing:\n{}\nconsole:\n{}",
                    kinds_and_details(&lab.events("deploy-uefi")),
                    lab.console("deploy-uefi")
                )
            },
        );
        for action in ["off", "on"] {
            let out = lab
                .seed()
                .args(["power", action, "deploy-uefi"])
                .output()
                .unwrap();
            assert!(out.status.success(), "power {action}: {}", describe(&out));
        }
        for (node, want) in [("deploy-uefi", "installed"), ("deploy-bad", "failed")] {
            common::wait_until_else(
                Duration::from_secs(600),
                || lab.state_of(node) == want,
                || {
                    format!(
                        "{node}: not {want} in 600 s but {}:\n{}\nconsole:\n{}",
                        lab.state_of(node),
                        kinds_and_details(&lab.events(node)),
                        lab.console(node)
                    )
                },
            );
        }

        assert_eq!(
            writing(&lab.events("deploy-uefi")),
            2,
            "{}",
            kinds_and_details(&lab.events("deploy-uefi"))
        );
        let events = kinds_and_details(&lab.events("deploy-uefi"));
        // The cut write never said it finished; the second did.
        assert_eq!(
            events.matches("finish seed-agent/write").count(),
            1,
            "{events}"
        );
        for step in [
            "start seed-agent/deploy",
            "finish seed-agent/inspect",
            "finish seed-agent/disk: /dev/vda",
            "finish seed-agent/wipe: /dev/vda",
            "finish seed-agent/write",
            "SHA-256 verified",
            "finish seed-agent/configdrive: cidata",
        ] {
            assert!(events.contains(step), "no `{step}` in:\n{events}");
        }
        let console = lab.console("deploy-uefi");
        assert!(
            console.contains("seed-agent: ") && console.contains("/24 from 10.10.10.1"),
            "{console}"
        );
        // The old system is gone: nothing of it is found where it was.
        for at in old {
            assert_eq!(
                common::signatures::blkid_at(&disk, at),
                None,
                "still found at {at}"
            );
        }
        assert!(
            events.contains("finish seed-agent/discard: /dev/vda: 2048 MiB discarded"),
            "{events}"
        );
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&disk).unwrap();
            let mut buf = vec![0u8; 4 << 20];
            f.read_exact_at(&mut buf, old_data).unwrap();
            assert!(
                buf.iter().all(|&b| b == 0),
                "old data left in the middle of the disk"
            );
            let hole = nix::unistd::lseek(&f, old_data as i64, nix::unistd::Whence::SeekHole);
            assert_eq!(
                hole,
                Ok(old_data as i64),
                "the old data's blocks are still allocated"
            );
        }
        // The machine's disk: the image's partition byte for byte, the config drive after it.
        let bytes = {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&disk).unwrap();
            let mut buf = vec![0u8; data.len()];
            f.read_exact_at(&mut buf, 1 << 20).unwrap();
            buf
        };
        assert!(
            bytes == data,
            "the written partition differs from the image's"
        );
        let out = Command::new(&sgdisk).arg("-v").arg(&disk).output().unwrap();
        assert!(
            out.status.success() && !describe(&out).contains("aution"),
            "{}",
            describe(&out)
        );
        let out = Command::new(&sgdisk).arg("-p").arg(&disk).output().unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains(" root"), "{table}");
        assert!(
            table.lines().any(|l| l.trim_start().starts_with("2 ")),
            "no config drive partition:\n{table}"
        );
        // The agent's inspection is recorded: the disk as QEMU gave it.
        let inspection = Store::open(&lab.state())
            .unwrap()
            .inspection("deploy-uefi")
            .unwrap()
            .expect("an inspection");
        assert!(
            inspection
                .1
                .disks
                .iter()
                .any(|d| d.path == "/dev/vda" && d.size == 2 << 30),
            "{:?}",
            inspection.1.disks
        );

        // The damaged image: refused by its checksum, the node failed with the reason.
        let bad = kinds_and_details(&lab.events("deploy-bad"));
        assert!(
            bad.contains("finish seed-agent/write") && bad.contains("not the registered"),
            "{bad}"
        );
        assert!(!bad.contains("-> installed"), "{bad}");
    }
    footprint.assert_gone("after the deploy lab");
}

/// A real operating system through seed's agent: the Debian image (`tests/deploy/image`:
/// systemd, cloud-init, netplan.io) is written to a UEFI and a BIOS machine, each boots it from
/// its own disk, cloud-init applies the node's netplan from the config drive (its static
/// address; there is no DHCP in it) and phones home over it: the node is `deployed`.
#[test]
fn a_debian_image_deploys_boots_from_its_disk_and_phones_home_on_uefi_and_bios() {
    let _one = one_lab_at_a_time();
    let image = deploy_image();
    let footprint;
    {
        let nodes = [
            node(
                "debian-uefi",
                71,
                "uefi",
                "method: image\nimage: debian\nqemu: { memory: 1024, disk: 4 }",
            ),
            node(
                "debian-bios",
                72,
                "bios",
                "method: image\nimage: debian\nqemu: { memory: 1024, disk: 4 }",
            ),
        ]
        .concat();
        let lab = LabDir::new("", "progress_timeout: 600, phone_home_timeout: 900", &nodes);
        // The config's name for the boot NIC is not the one udev gives it in the written
        // system (`ens3`): only a netplan that finds it by MAC brings its address up there.
        lab.rename_link("eno8303");
        let netns = "seedt-lab-debian";
        footprint = Footprint::of(lab.dir.path(), &[netns]);
        let boot = agent_boot_files(lab.dir.path());
        let out = lab
            .seed()
            .args(["images", "add-disk", "debian", "--file"])
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        lab.up(netns, &boot);
        let t0 = Instant::now();
        let out = lab
            .seed()
            .args(["provision", "debian-uefi", "debian-bios", "--no-wait"])
            .output()
            .expect("seed provision");
        assert!(out.status.success(), "{}", describe(&out));
        let mut took = Vec::new();
        for node in ["debian-uefi", "debian-bios"] {
            common::wait_until_else(
                Duration::from_secs(1500),
                || matches!(lab.state_of(node).as_str(), "deployed" | "failed"),
                || {
                    format!(
                        "{node}: not deployed in 1500 s but {}:\n{}\nconsole:\n{}",
                        lab.state_of(node),
                        kinds_and_details(&lab.events(node)),
                        lab.console(node)
                    )
                },
            );
            took.push((node, t0.elapsed()));
        }
        // Per node, from seed's own timeline: what bench/deploy puts in docs/BENCHMARKS.md.
        for node in ["debian-uefi", "debian-bios"] {
            let events = lab.events(node);
            let at = |what: &str| {
                events
                    .iter()
                    .find(|e| e.detail.contains(what))
                    .map(|e| e.at)
                    .unwrap_or_else(|| panic!("{node}: no `{what}`"))
            };
            let start = at("-> provisioning");
            let secs = |what: &str| (at(what) - start) as f64 / 1000.0;
            eprintln!(
                "deploy time: {node}: agent {:.0} s, written {:.0} s, installed {:.0} s, deployed {:.0} s",
                secs("start seed-agent/deploy"),
                secs("finish seed-agent/write"),
                secs("-> installed"),
                secs("-> deployed"),
            );
        }
        let accel = seed::lab::Accel::detect(&common::need("qemu-system-x86_64"), lab.dir.path());
        eprintln!("deploy accel: {accel}");
        eprintln!("deployed: {took:?}");
        for node in ["debian-uefi", "debian-bios"] {
            let events = kinds_and_details(&lab.events(node));
            let console = lab.console(node);
            assert_eq!(
                lab.state_of(node),
                "deployed",
                "{node}:\n{events}\nconsole:\n{console}"
            );
            assert!(events.contains("SHA-256 verified"), "{events}");
            // The phone-home came from the written system: cloud-init's, with its instance id.
            assert!(
                events.contains("installed system phone-home: instance_id="),
                "{events}"
            );
            // The system on the disk booted (its kernel and systemd on the console) and
            // cloud-init read the config drive seed's agent wrote.
            assert!(console.contains("Debian GNU/Linux 12"), "{node}: {console}");
            assert!(
                console.contains("Cloud-init v. ") && console.contains("running 'modules:final'"),
                "{node}: {console}"
            );
        }
        // The written systems renamed the NIC udev calls `ens3` to the config's `eno8303` by its
        // MAC, and cloud-init's table shows the static address on it.
        for (node, address) in [
            ("debian-uefi", "10.10.10.71"),
            ("debian-bios", "10.10.10.72"),
        ] {
            let console = lab.console(node);
            assert!(
                console
                    .lines()
                    .any(|l| l.contains("ci-info") && l.contains("eno8303") && l.contains(address)),
                "{node}: no eno8303 with {address} in cloud-init's table:\n{console}"
            );
        }
        // UEFI: the agent set BootNext to the disk's loader, so the next boot asked seed for
        // nothing: no iPXE on the console after the agent was done, no network boot recorded.
        let console = lab.console("debian-uefi");
        let done = console
            .find("seed-agent: debian-uefi is installed")
            .unwrap_or_else(|| panic!("{console}"));
        let after = &console[done..];
        assert!(
            !after.contains("iPXE") && !after.contains("Start PXE"),
            "the first boot after the deploy network-booted:\n{after}"
        );
        let events = kinds_and_details(&lab.events("debian-uefi"));
        assert!(
            events.contains("finish seed-agent/bootentry: Boot"),
            "{events}"
        );
        assert!(!events.contains(seed::provision::LOCAL_BOOT), "{events}");
        // BIOS has no boot variable: the agent powered it off and seed booted its disk once
        // through its power driver (QEMU's boot order here, Redfish's `Hdd` override on a BMC).
        let events = kinds_and_details(&lab.events("debian-bios"));
        assert!(
            events.contains("powered on from its disk (one-time boot override)"),
            "{events}"
        );
        assert!(!events.contains(seed::provision::LOCAL_BOOT), "{events}");
        // Neither machine asked seed's DHCP for anything after its agent said installed: its
        // newest lease was written before (the written system's network is static, from the
        // config drive; a network boot would have leased again).
        let store = Store::open(&lab.state()).unwrap();
        for node in ["debian-uefi", "debian-bios"] {
            let installed = lab
                .events(node)
                .iter()
                .find(|e| e.detail.contains("-> installed"))
                .map(|e| e.at)
                .unwrap();
            let ack = store.last_ack(node).unwrap().unwrap();
            assert!(
                ack < installed,
                "{node}: DHCP acknowledged at {ack}, after installed at {installed}"
            );
        }
    }
    footprint.assert_gone("after the Debian deploy lab");
}

/// `seed.enlist`: a machine seed does not know network-boots, gets a discovery-pool address and
/// seed's agent, which inspects it (the disk serial and MAC QEMU gave it), enlists it from that
/// address and powers it off; it is then listed with its inventory, and `seed adopt` makes it a
/// node whose inspection is what the agent found.
#[test]
fn an_unknown_machine_is_enlisted_with_its_inventory_and_adopted() {
    use seed::agent::inspect::BootMode;
    let _one = one_lab_at_a_time();
    let footprint;
    {
        // A lab VM whose NIC has a MAC the config does not name: a machine seed does not know.
        let stranger = "52:54:00:20:00:ee";
        let nodes = node(
            "unknown",
            63,
            "bios",
            &format!(
                "disk: {{ serial: ENLIST-0001 }}\nqemu: {{ mac: \"{stranger}\", memory: 1024, disk: 2 }}"
            ),
        );
        let lab = LabDir::new(
            "  enlist: true",
            "progress_timeout: 300, phone_home_timeout: 0",
            &nodes,
        );
        let text = std::fs::read_to_string(&lab.config).unwrap();
        std::fs::write(
            &lab.config,
            text.replacen(
                "    provisioning: true\n",
                "    provisioning: true\n    discovery_pool: { start: 10.10.10.200, end: 10.10.10.220 }\n",
                1,
            ),
        )
        .unwrap();
        let netns = "seedt-lab-enlist";
        footprint = Footprint::of(lab.dir.path(), &[netns]);
        let boot = agent_boot_files(lab.dir.path());
        lab.up(netns, &boot);
        let out = lab
            .seed()
            .args(["power", "on", "unknown"])
            .output()
            .unwrap();
        assert!(out.status.success(), "power on: {}", describe(&out));
        let mac: seed::net::MacAddr = stranger.parse().unwrap();
        let enlisted = || Store::open(&lab.state()).ok()?.discovered_one(mac).ok()??.1;
        common::wait_until_else(
            Duration::from_secs(300),
            || enlisted().is_some(),
            || {
                format!(
                    "{stranger} was not enlisted; console:\n{}\nseed log:\n{}",
                    lab.console("unknown"),
                    std::fs::read_to_string(lab.state().join("lab/seed.log")).unwrap_or_default()
                )
            },
        );
        let inspection = enlisted().unwrap();
        let json = serde_json::to_string(&inspection).unwrap();
        assert_eq!(inspection.firmware.mode, BootMode::Bios, "{json}");
        let disk = inspection
            .disks
            .iter()
            .find(|d| d.serial == "ENLIST-0001")
            .unwrap_or_else(|| panic!("no disk with QEMU's serial: {json}"));
        assert_eq!(disk.size, 2 << 30, "{json}");
        let nic = inspection
            .nics
            .iter()
            .find(|n| n.mac == mac)
            .unwrap_or_else(|| panic!("no NIC with the machine's MAC: {json}"));
        assert_eq!(nic.driver.as_deref(), Some("virtio_net"), "{json}");
        // -m 1024, less what the firmware and the kernel keep.
        let memory = inspection.memory_bytes.unwrap_or(0);
        assert!((768 << 20..=1 << 30).contains(&memory), "{json}");
        // Enlisted, the agent powers the machine off.
        common::wait_until_else(
            Duration::from_secs(120),
            || {
                let out = lab
                    .seed()
                    .args(["power", "status", "unknown"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).contains("off")
            },
            || format!("still on after enlisting:\n{}", lab.console("unknown")),
        );
        let out = lab.seed().arg("status").output().unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(stranger) && l.contains("1 disk(s)")),
            "{table}"
        );

        let out = lab
            .seed()
            .args([
                "adopt",
                stranger,
                "--name",
                "newcomer",
                "--role",
                "compute",
                "--bmc",
                "10.10.0.64",
                "--driver",
                "qemu",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "adopt: {}", describe(&out));
        let out = lab.seed().arg("check").output().unwrap();
        assert!(
            out.status.success(),
            "check after adopt: {}",
            describe(&out)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("newcomer"));
        let store = Store::open(&lab.state()).unwrap();
        assert_eq!(store.inspection("newcomer").unwrap().unwrap().1, inspection);
        assert!(store.discovered_one(mac).unwrap().is_none());
    }
    footprint.assert_gone("after the enlist lab");
}
