//! `seed` as the deploy ramdisk's `/init` (PID 1, see [`super::ramdisk`]): it mounts the
//! kernel's file systems, loads the ramdisk's modules in order, waits until the disks stop
//! appearing, then does what the kernel command line asks and powers the machine off. PID 1
//! must never exit (the kernel panics), so every error is printed and ends in a power-off.
//!
//! `seed.action=inspect` (the default) prints the machine's inspection as one line
//! (`seed-agent: inspection: {…}`) on the console. Reporting to seed and deploying need the
//! network, which this init does not bring up yet (issue 21: a DHCP client on BOOTIF).

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
    if let Err(e) = boot() {
        println!("{SAY} {e}");
    }
    power_off()
}

fn boot() -> Result<(), String> {
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
    match action {
        "inspect" => {
            let inspection = super::inspect::inspect(std::path::Path::new("/"));
            let json = serde_json::to_string(&inspection).map_err(|e| e.to_string())?;
            println!("{SAY} inspection: {json}");
            Ok(())
        }
        other => Err(format!(
            "seed.action={} is not one this agent knows (inspect)",
            crate::net::printable(other)
        )),
    }
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

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
