//! `seed lab`: a virtual rack on this machine. A network namespace holds a bridge for the
//! provisioning network (seed's interface and address from the config), `seed serve` bound to
//! it, and one QEMU machine per node with driver `qemu`, on a tap device on the bridge, with the
//! node's boot MAC and firmware. Nothing touches the host's own interfaces: every address, tap
//! and process lives inside the namespace, and tearing the lab down kills every process in it
//! and deletes it (taps go with it).
//!
//! The machines start powered off (`-S`); power is the `qemu` driver of [`crate::power`], so
//! provisioning a lab node is the same code path as provisioning a rack.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::{Config, Firmware, IpxePolicy, Node, QemuBoot};
use crate::power;

/// Why a lab could not be brought up or down. Messages name the step and the node.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A step failed.
    #[error("{step}: {why}")]
    Step {
        /// What was being done.
        step: String,
        /// What went wrong.
        why: String,
    },
}

fn step(step: impl Into<String>, why: impl std::fmt::Display) -> LabError {
    LabError::Step {
        step: step.into(),
        why: why.to_string(),
    }
}

/// How the machines are emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accel {
    /// KVM when it really runs guests here, TCG otherwise.
    ///
    /// `/dev/kvm` can exist and still not work: nested under another hypervisor, these CI
    /// machines run a guest's real-mode code under KVM but a Linux kernel hangs silently, and
    /// QEMU warns that the host lacks CPUID features its baseline CPU model needs. A tiny guest
    /// that exits through `isa-debug-exit` proves KVM starts at all; a CPUID warning rules it
    /// out.
    pub fn detect(qemu: &Path, dir: &Path) -> Self {
        if File::options()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return Self::Tcg;
        }
        // A 64 KiB "BIOS" whose reset vector writes 0x21 to port 0xf4 and halts: QEMU exits
        // with (0x21 << 1) | 1 = 67.
        let mut bios = vec![0xf4u8; 65536];
        bios[0xfff0..0xfff5].copy_from_slice(&[0xb0, 0x21, 0xe6, 0xf4, 0xf4]);
        let path = dir.join("kvm-probe.bin");
        if fs::write(&path, &bios).is_err() {
            return Self::Tcg;
        }
        let child = Command::new(qemu)
            .args(["-accel", "kvm", "-M", "pc", "-m", "16", "-display", "none"])
            .args([
                "-nodefaults",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ])
            .arg("-bios")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let accel = match child {
            Ok(child) => match wait_output(child, Duration::from_secs(5)) {
                Some((Some(67), stderr))
                    if !stderr.contains("doesn't support requested feature") =>
                {
                    Self::Kvm
                }
                _ => Self::Tcg,
            },
            Err(_) => Self::Tcg,
        };
        let _ = fs::remove_file(&path);
        accel
    }

    fn name(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Waits for `child` up to `limit`, killing it after; its exit code and stderr.
fn wait_output(mut child: Child, limit: Duration) -> Option<(Option<i32>, String)> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut stderr);
                }
                return Some((status.code(), stderr));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// How a process the lab just started came out of the wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Started {
    /// It answers.
    Ready,
    /// It exited first.
    Exited,
    /// It did not answer within the limit.
    Late,
}

impl std::fmt::Display for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ready => "ready",
            Self::Exited => "exited",
            Self::Late => "not ready after 20 s",
        })
    }
}

/// Polls `ready` until it holds, `child` exits, or 20 s pass.
fn wait_started(mut child: Option<&mut Child>, mut ready: impl FnMut() -> bool) -> Started {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if ready() {
            return Started::Ready;
        }
        if child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
        {
            return Started::Exited;
        }
        if Instant::now() > deadline {
            return Started::Late;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a lab keeps its files: consoles, QMP sockets, UEFI variable stores, seed's log.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("lab")
}

/// What `seed lab up` needs besides the config.
#[derive(Debug, Clone)]
pub struct Options {
    /// The network namespace's name.
    pub netns: String,
    /// The config file, for `seed serve` inside the namespace.
    pub config_path: PathBuf,
    /// seed's state directory.
    pub state_dir: PathBuf,
    /// The seed binary to run (this one).
    pub seed_bin: PathBuf,
    /// Emulation; `None` detects.
    pub accel: Option<Accel>,
    /// `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// Whether to run `seed serve` in the namespace (else a seed run elsewhere serves it).
    pub serve: bool,
}

/// One machine of the lab.
#[derive(Debug, Clone)]
pub struct Machine {
    /// The node.
    pub node: String,
    /// How it boots, for people: `bios rom`, `uefi pxe`, …
    pub boot: String,
    /// Its serial console log.
    pub console: PathBuf,
}

/// A lab that is up. Dropping it tears it down (also on panic); [`Lab::keep`] leaves it up
/// for `seed lab down`.
pub struct Lab {
    netns: String,
    dir: PathBuf,
    /// The machines, in config order.
    pub machines: Vec<Machine>,
    /// The emulation used.
    pub accel: Accel,
    children: Vec<Child>,
    keep: bool,
}

impl Lab {
    /// Brings a lab up for every node of `config` with driver `qemu`: namespace, bridge,
    /// `seed serve`, and the machines, powered off. On failure everything created so far is
    /// removed again.
    pub fn up(config: &Config, opts: &Options) -> Result<Self, LabError> {
        let machines: Vec<&Node> = config.nodes.iter().filter(|n| n.qemu.is_some()).collect();
        if machines.is_empty() {
            return Err(step(
                "lab",
                format!(
                    "{} has no node with `bmc.driver: qemu`",
                    config.source.display()
                ),
            ));
        }
        if netns_exists(&opts.netns) {
            return Err(step(
                format!("network namespace {}", opts.netns),
                "exists already: another lab is up (`seed lab down`)",
            ));
        }
        let dir = dir(&opts.state_dir);
        fs::create_dir_all(&dir).map_err(|e| step(format!("create {}", dir.display()), e))?;
        let accel = match opts.accel {
            Some(a) => a,
            None => Accel::detect(&opts.qemu, &dir),
        };
        let mut lab = Lab {
            netns: opts.netns.clone(),
            dir: dir.clone(),
            machines: Vec::new(),
            accel,
            children: Vec::new(),
            keep: false,
        };
        // From here on, Drop removes whatever was created.
        ip(&["netns", "add", &opts.netns])?;
        fs::write(dir.join("netns"), format!("{}\n", opts.netns))
            .map_err(|e| step(format!("write {}", dir.join("netns").display()), e))?;
        let bridge = config.seed.interface.as_str();
        let zone = config.provisioning_zone();
        let cidr = format!("{}/{}", config.seed.address, zone.subnet.prefix());
        let ns = opts.netns.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // No STP listening/learning delay: firmware sends its first DHCPDISCOVER at once.
        let mtu = zone.mtu.to_string();
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            bridge,
            "mtu",
            &mtu,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", ns, "addr", "add", &cidr, "dev", bridge])?;
        ip(&["-n", ns, "link", "set", bridge, "up"])?;
        for i in 0..machines.len() {
            let tap = format!("tap{i}");
            ip(&["-n", ns, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
            ip(&["-n", ns, "link", "set", &tap, "master", bridge])?;
            ip(&["-n", ns, "link", "set", &tap, "up"])?;
        }
        if opts.serve {
            lab.start_seed(opts)?;
        }
        for (i, node) in machines.iter().enumerate() {
            let machine = lab.start_machine(node, &format!("tap{i}"), opts)?;
            lab.machines.push(machine);
        }
        Ok(lab)
    }

    fn start_seed(&mut self, opts: &Options) -> Result<(), LabError> {
        let log_path = self.dir.join("seed.log");
        let log = File::create(&log_path)
            .map_err(|e| step(format!("create {}", log_path.display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| step(format!("open {}", log_path.display()), e))?;
        let child = in_netns(&self.netns, &opts.seed_bin)
            .arg("--config")
            .arg(&opts.config_path)
            .arg("--state-dir")
            .arg(&opts.state_dir)
            .args(["serve", "-v"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| step(format!("start {}", opts.seed_bin.display()), e))?;
        self.children.push(child);
        // Ready once the HTTP server runs: DHCP and TFTP are bound before it starts.
        let started = wait_started(self.children.last_mut(), || {
            fs::read_to_string(&log_path).is_ok_and(|log| log.contains("HTTP server running"))
        });
        if started == Started::Ready {
            return Ok(());
        }
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        // The child's own `error: ` is dropped and its lines indented under ours, so the
        // operator reads one error, with seed serve's words quoted beneath it.
        let tail = lines[lines.len().saturating_sub(8)..]
            .iter()
            .map(|l| format!("  {}", l.strip_prefix("error: ").unwrap_or(l)))
            .collect::<Vec<_>>()
            .join("\n");
        Err(step(
            "seed serve in the lab",
            format!("{started} (log {}):\n{tail}", log_path.display()),
        ))
    }

    fn start_machine(
        &mut self,
        node: &Node,
        tap: &str,
        opts: &Options,
    ) -> Result<Machine, LabError> {
        let Some(vm) = node.qemu else {
            return Err(step(&node.name, "not a qemu node"));
        };
        let Some(mac) = vm.mac.as_ref().or(node.macs.first()) else {
            return Err(step(&node.name, "has no boot MAC"));
        };
        let console = self.dir.join(format!("{}.console.log", node.name));
        let qmp = power::qemu::socket(&opts.state_dir, &node.name);
        let _ = fs::remove_file(&qmp);
        let mut cmd = in_netns(&self.netns, &opts.qemu);
        cmd.args(["-name", &node.name, "-accel", self.accel.name()])
            .args(["-m", &vm.memory_mib.to_string(), "-smp", "1"])
            .args(["-display", "none", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            // Powered off until the power driver switches it on; a guest that powers itself
            // off halts instead of exiting.
            .args(["-S", "-no-shutdown"])
            .arg("-netdev")
            .arg(format!("tap,id=boot,ifname={tap},script=no,downscript=no"));
        // OVMF ignores `-boot n`: the NIC comes first by bootindex (SeaBIOS honours it too).
        let mut nic = format!("virtio-net-pci,netdev=boot,mac={mac},bootindex=1");
        let boot = match (node.firmware, vm.boot) {
            (Firmware::Bios, _) => "bios, iPXE ROM",
            (Firmware::Uefi, QemuBoot::Rom) => "uefi, iPXE ROM",
            (Firmware::Uefi, QemuBoot::Pxe) => {
                // No option ROM: OVMF's own PXE client boots the NIC.
                nic.push_str(",romfile=");
                "uefi, firmware PXE"
            }
            (Firmware::Uefi, QemuBoot::Http) => {
                // No option ROM, and OVMF's PXE off (its fw_cfg knobs, OvmfPkg RUNTIME_CONFIG):
                // the NIC's only boot options are HTTP boot.
                nic.push_str(",romfile=");
                for knob in ["IPv4PXESupport", "IPv6PXESupport"] {
                    cmd.arg("-fw_cfg")
                        .arg(format!("name=opt/org.tianocore/{knob},string=no"));
                }
                "uefi, firmware HTTP"
            }
        };
        let boot = match node.ipxe {
            IpxePolicy::Seed => format!("{boot}, seed's iPXE"),
            IpxePolicy::Any => boot.to_string(),
        };
        cmd.arg("-device").arg(nic);
        // An entropy source, as every cloud VM has and every server CPU (RDRAND): without one
        // the emulated machine's random pool stays unseeded for minutes and seed's agent
        // (and an installed system's sshd) waits on it.
        cmd.args(["-device", "virtio-rng-pci"]);
        if node.firmware == Firmware::Uefi {
            let (code, vars) = ovmf()?;
            let own_vars = self.dir.join(format!("{}.vars.fd", node.name));
            fs::copy(vars, &own_vars)
                .map_err(|e| step(format!("{}: copy {}", node.name, vars.display()), e))?;
            cmd.arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=0,readonly=on,file={}",
                    code.display()
                ))
                .arg("-drive")
                .arg(format!(
                    "if=pflash,format=raw,unit=1,file={}",
                    own_vars.display()
                ));
        }
        if vm.disk_gib > 0 {
            // A fresh sparse disk per lab: the install target, with the serial the node's disk
            // match names (subiquity matches by it), so an installer finds what a rack has.
            let disk = self.dir.join(format!("{}.disk.raw", node.name));
            File::create(&disk)
                .and_then(|f| f.set_len(u64::from(vm.disk_gib) << 30))
                .map_err(|e| step(format!("{}: create {}", node.name, disk.display()), e))?;
            // Second in QEMU's boot order, after the NIC: OVMF keeps only boot options that
            // begin at a device of that order, so the disk's (an installed system's own, or
            // the one seed's agent adds) survive, behind the network boot.
            let mut device = format!(
                "virtio-blk-pci,drive=disk,id={},bootindex={}",
                crate::power::qemu::DISK_DEVICE,
                crate::power::qemu::DISK_BEHIND_NIC
            );
            if let Some(serial) = node.disk.serial.as_deref().filter(|s| {
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            }) {
                device.push_str(&format!(",serial={serial}"));
            }
            cmd.arg("-drive")
                .arg(format!(
                    // discard=unmap: the guest's discards and unmapping write-zeroes punch
                    // holes in the file, as a thin-provisioned SSD deallocates.
                    "if=none,id=disk,format=raw,discard=unmap,file={}",
                    disk.display()
                ))
                .arg("-device")
                .arg(device);
        }
        let log_path = self.dir.join(format!("{}.qemu.log", node.name));
        let log = File::create(&log_path)
            .map_err(|e| step(format!("create {}", log_path.display()), e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| step(format!("{}: start {}", node.name, opts.qemu.display()), e))?;
        self.children.push(child);
        // QMP answers once QEMU is ready; `power on` needs it.
        let controller = power::qemu::Qmp::new(&node.name, qmp.clone());
        let started = wait_started(self.children.last_mut(), || {
            power::Power::status(&controller).is_ok()
        });
        if started != Started::Ready {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            return Err(step(
                format!("{}: QEMU", node.name),
                format!("{started} ({}): {}", log_path.display(), log.trim()),
            ));
        }
        Ok(Machine {
            node: node.name.clone(),
            boot,
            console,
        })
    }

    /// The namespace's name (to run more programs in it).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Leaves the lab running when this value is dropped (`seed lab up`).
    pub fn keep(mut self) {
        self.keep = true;
        // The processes outlive this one; they are not waited for here.
        self.children.clear();
    }

    /// Tears the lab down now.
    pub fn down(mut self) -> Result<(), LabError> {
        self.keep = true;
        let children = std::mem::take(&mut self.children);
        teardown(&self.netns, &self.dir, children)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            let children = std::mem::take(&mut self.children);
            if let Err(e) = teardown(&self.netns, &self.dir, children) {
                eprintln!("lab: teardown: {e}");
            }
        }
    }
}

/// Tears down the lab of `state_dir` (`seed lab down`): every process in its namespace, then
/// the namespace. `Ok(None)` when no lab is up there.
pub fn down(state_dir: &Path) -> Result<Option<String>, LabError> {
    let dir = dir(state_dir);
    let marker = dir.join("netns");
    let Ok(netns) = fs::read_to_string(&marker) else {
        return Ok(None);
    };
    let netns = netns.trim().to_string();
    teardown(&netns, &dir, Vec::new())?;
    Ok(Some(netns))
}

/// Kills every process in `netns` (SIGTERM, then SIGKILL after a grace), reaps `children`,
/// deletes the namespace (and with it the bridge and taps), the QMP sockets and the disks.
fn teardown(netns: &str, dir: &Path, mut children: Vec<Child>) -> Result<(), LabError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    if netns_exists(netns) {
        let grace = Instant::now() + Duration::from_secs(12);
        let mut signal = Signal::SIGTERM;
        loop {
            let pids = netns_pids(netns);
            for c in &mut children {
                let _ = c.try_wait();
            }
            if pids.is_empty() {
                break;
            }
            if Instant::now() > grace {
                if signal == Signal::SIGKILL {
                    return Err(step(
                        format!("network namespace {netns}"),
                        format!("processes {pids:?} survive SIGKILL"),
                    ));
                }
                signal = Signal::SIGKILL;
            }
            for pid in &pids {
                let _ = kill(Pid::from_raw(*pid), signal);
            }
            if signal == Signal::SIGKILL {
                // Give SIGKILL a moment; then the next round may report survivors.
                std::thread::sleep(Duration::from_millis(200));
                if netns_pids(netns).iter().any(|p| pids.contains(p)) {
                    std::thread::sleep(Duration::from_secs(1));
                }
                continue;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        ip(&["netns", "del", netns])?;
    }
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            // Sockets and disks go with the lab; consoles and logs stay for reading.
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".qmp") || name.ends_with(".disk.raw") {
                let _ = fs::remove_file(path);
            }
        }
    }
    let _ = fs::remove_file(dir.join("netns"));
    Ok(())
}

/// A command run inside `netns`.
pub fn in_netns(netns: &str, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).arg(program);
    // Its own process group: a Ctrl-C at the terminal reaches the lab, which tears down in
    // order, not every QEMU at once.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| step(format!("ip {}", args.join(" ")), format!("iproute2: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(step(
            format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

fn netns_exists(netns: &str) -> bool {
    Path::new("/run/netns").join(netns).exists()
}

fn netns_pids(netns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", netns])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// OVMF's code and variable-store templates (Debian's `ovmf` package).
fn ovmf() -> Result<(&'static Path, &'static Path), LabError> {
    const PAIRS: [(&str, &str); 2] = [
        (
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        ),
        (
            "/usr/share/OVMF/OVMF_CODE.fd",
            "/usr/share/OVMF/OVMF_VARS.fd",
        ),
    ];
    PAIRS
        .iter()
        .map(|(c, v)| (Path::new(*c), Path::new(*v)))
        .find(|(c, v)| c.exists() && v.exists())
        .ok_or_else(|| {
            step(
                "UEFI firmware",
                "OVMF not found in /usr/share/OVMF (apt-get install ovmf)",
            )
        })
}
