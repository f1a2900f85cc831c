//! `seed` as the deploy ramdisk's `/init` (PID 1, see [`super::ramdisk`]): it mounts the
//! kernel's file systems, loads the ramdisk's modules in order, waits until the disks stop
//! appearing, then does what the kernel command line asks and powers the machine off. PID 1
//! must never exit (the kernel panics), so every error is printed and ends in a power-off.
//!
//! `seed.action=inspect` (the default) prints the machine's inspection as one line
//! (`seed-agent: inspection: {…}`) on the console, and with `seed.url=` and `seed.token=`
//! reports it to seed. `seed.action=deploy` follows the node's deploy plan
//! ([`super::deploy`]) and reboots into the written disk. Both bring up the boot NIC first:
//! the one `BOOTIF=01-<mac>` names (iPXE's script passes it), leased by [`super::dhcp`] and
//! configured by [`super::netlink`].

use std::time::{Duration, Instant};

/// What one console line starts with.
const SAY: &str = "seed-agent:";

/// Becomes the ramdisk's init when this process is PID 1 started as `/init` (the kernel runs
/// the initramfs's `/init` so); otherwise returns at once. `seed serve` as PID 1 of a
/// container is started by another name and stays `seed serve`.
pub fn run_if_init() {
    let argv0 = std::env::args_os().next();
    if std::process::id() == 1 && argv0.as_deref() == Some(std::ffi::OsStr::new("/init")) {
        run();
    }
}

/// Runs as PID 1; never returns.
pub fn run() -> ! {
    match boot() {
        Ok(After::Reboot) => end(nix::sys::reboot::RebootMode::RB_AUTOBOOT),
        Ok(After::PowerOff) => end(nix::sys::reboot::RebootMode::RB_POWER_OFF),
        Err(e) => {
            println!("{SAY} {e}");
            end(nix::sys::reboot::RebootMode::RB_POWER_OFF)
        }
    }
}

/// What the machine does once the agent is done.
enum After {
    /// Boot again: the written disk.
    Reboot,
    /// Power off: an inspection is all that was asked.
    PowerOff,
}

fn boot() -> Result<After, String> {
    use nix::mount::{MsFlags, mount};
    for (source, target, kind) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
        ("tmpfs", "/tmp", "tmpfs"),
    ] {
        mount(
            Some(source),
            target,
            Some(kind),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount {target}: {e}"))?;
    }
    // The console is for what the agent says; the kernel's messages stay in its ring buffer.
    let _ = std::fs::write("/proc/sys/kernel/printk", "1");
    load_modules();
    if std::path::Path::new("/sys/firmware/efi").is_dir() {
        let _ = mount(
            Some("efivarfs"),
            "/sys/firmware/efi/efivars",
            Some("efivarfs"),
            MsFlags::empty(),
            None::<&str>,
        );
    }
    settle();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let action = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("seed.action="))
        .unwrap_or("inspect");
    let arg = |key: &str| {
        cmdline
            .split_whitespace()
            .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
    };
    let seed = match (arg("seed.url"), arg("seed.token")) {
        (Some(url), Some(token)) => Some(super::deploy::Seed::new(url, token)?),
        // A machine seed does not know: enlisting needs no token.
        (Some(url), None) if action == "enlist" => Some(super::deploy::Seed::unknown(url)?),
        _ => None,
    };
    let boot_mac = match seed {
        Some(_) => Some(network(arg("BOOTIF"))?),
        None => None,
    };
    let root = std::path::Path::new("/");
    match (action, seed) {
        ("enlist", Some(seed)) => {
            let inspection = super::inspect::inspect(root);
            let mac = boot_mac.ok_or("no boot NIC")?;
            // seed may be restarting: it is waited for a while; then the machine powers off,
            // enlisted, until an operator adopts it (MAAS powers enlisted machines off too).
            let said = seed.enlist(mac, &inspection, Duration::from_secs(300))?;
            println!("{SAY} {said}");
            Ok(After::PowerOff)
        }
        ("enlist", None) => Err("seed.action=enlist needs seed.url=".into()),
        ("inspect", seed) => {
            let inspection = super::inspect::inspect(root);
            let json = serde_json::to_string(&inspection).map_err(|e| e.to_string())?;
            println!("{SAY} inspection: {json}");
            if let Some(seed) = seed {
                let said = seed.report(&inspection, Duration::from_secs(60))?;
                println!("{SAY} reported: {said}");
            }
            Ok(After::PowerOff)
        }
        ("deploy", Some(seed)) => Ok(if super::deploy::deploy(&seed, root)? {
            After::PowerOff
        } else {
            After::Reboot
        }),
        ("deploy", None) => Err("seed.action=deploy needs seed.url= and seed.token=".into()),
        (other, _) => Err(format!(
            "seed.action={} is not one this agent knows (inspect, deploy, enlist)",
            crate::net::printable(other)
        )),
    }
}

/// Brings up the boot NIC (`BOOTIF=01-aa-bb-…`, else the first Ethernet NIC with a link) with
/// the address DHCP leases it, waiting up to 30 s for its driver to register it; its MAC.
fn network(bootif: Option<&str>) -> Result<crate::net::MacAddr, String> {
    let wanted = bootif.and_then(|b| {
        b.strip_prefix("01-")
            .and_then(crate::net::MacAddr::from_reported)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let (name, mac) = loop {
        if let Some(found) = boot_nic(wanted) {
            break found;
        }
        if Instant::now() >= deadline {
            return Err(match wanted {
                Some(mac) => format!("no NIC with the boot MAC {mac} (BOOTIF) appeared"),
                None => "no Ethernet NIC appeared".into(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    println!("{SAY} DHCP on {name}");
    let mut lo = super::netlink::Link::open("lo").map_err(|e| e.to_string())?;
    lo.up().map_err(|e| e.to_string())?;
    let said = network_on(&name, Duration::from_secs(120))?;
    println!("{SAY} {said}");
    Ok(mac)
}

/// Sets `name` up, leases it an address and configures it (address, default route); what
/// it got, as one line.
pub fn network_on(name: &str, within: Duration) -> Result<String, String> {
    let text = |path: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{path}"));
    let mac: crate::net::MacAddr = text("address")
        .map_err(|e| format!("{name}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{name}: its MAC: {e}"))?;
    let mut link = super::netlink::Link::open(name).map_err(|e| e.to_string())?;
    link.up().map_err(|e| e.to_string())?;
    let lease = super::dhcp::lease(name, mac, within).map_err(|e| e.to_string())?;
    link.add_address(lease.address, lease.prefix)
        .map_err(|e| e.to_string())?;
    if let Some(router) = lease.router {
        link.add_default_route(router).map_err(|e| e.to_string())?;
    }
    Ok(format!(
        "{name} ({mac}): {}/{} from {}{} (lease {} s)",
        lease.address,
        lease.prefix,
        lease.server,
        lease
            .router
            .map_or_else(String::new, |r| format!(", router {r}")),
        lease.lease_secs
    ))
}

/// The NIC with `mac`, or with no MAC asked the first Ethernet NIC (`type` 1) by name.
fn boot_nic(mac: Option<crate::net::MacAddr>) -> Option<(String, crate::net::MacAddr)> {
    let mut nics: Vec<(String, crate::net::MacAddr)> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kind = std::fs::read_to_string(e.path().join("type")).ok()?;
            let address = std::fs::read_to_string(e.path().join("address")).ok()?;
            (kind.trim() == "1")
                .then(|| address.trim().parse().ok())
                .flatten()
                .map(|a| (name, a))
        })
        .collect();
    nics.sort();
    nics.into_iter().find(|(_, a)| mac.is_none_or(|m| m == *a))
}

/// Loads `/lib/modules/order` in order (dependencies first, as the ramdisk wrote it).
fn load_modules() {
    let order = std::fs::read_to_string("/lib/modules/order").unwrap_or_default();
    for name in order.lines().filter(|l| !l.is_empty()) {
        let path = format!("/lib/modules/{name}.ko");
        let result = std::fs::File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                nix::kmod::finit_module(&f, c"", nix::kmod::ModuleInitFlags::empty())
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(()) => {}
            // Loaded already (a dependency pulled it in), or no device it drives here.
            Err(e) if e.contains("EEXIST") || e.contains("ENODEV") => {}
            Err(e) => println!("{SAY} module {name}: {e}"),
        }
    }
}

/// Waits until the block devices stop changing for two seconds (drivers probe asynchronously;
/// a SAS HBA takes seconds), at most 30 s.
fn settle() {
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = || {
        let mut names: Vec<String> = std::fs::read_dir("/sys/block")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    let mut last = list();
    let mut stable_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = list();
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_secs(2) {
            return;
        }
    }
}

fn end(how: nix::sys::reboot::RebootMode) -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(how);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
