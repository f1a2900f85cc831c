//! `seed agent`: seed's own agent on a node (issue 21). `inspect` prints what it finds;
//! `report` sends that to seed with the node's token, as the deploy ramdisk's init will.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::agent::deploy::{self, Seed};
use crate::agent::inspect::inspect;
use crate::agent::write::{self, Job, Ticker};
use crate::agent::{configdrive, ramdisk, wipe};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Print this machine's hardware as JSON: firmware, DMI, CPU, memory, NICs, and disks
    /// named as udev names them (what a role's `disk:` rule matches).
    Inspect(InspectArgs),
    /// Inspect this machine and send the result to seed (`POST <url>/nodes/<token>/inventory`).
    /// `--url` and `--token` default to the kernel command line's `seed.url=` and
    /// `seed.token=`, which seed's deploy ramdisk is booted with.
    Report(ReportArgs),
    /// Write a disk image from seed to a disk: streamed, hashed while written, resumed with a
    /// byte range where the transfer breaks off, refused unless its SHA-256 is the registered
    /// one, flushed to the disk. Every byte is written, zeros too.
    Write(WriteArgs),
    /// Wipe a disk's metadata before an image is written: the first and last 2 MiB of the
    /// disk and of every partition its MBR, primary or backup GPT names (partition tables, md,
    /// LVM, ZFS, bcache and filesystem signatures), and btrfs's mirror superblocks.
    Wipe(WipeArgs),
    /// Add a NoCloud config drive to a written disk: a `cidata` ISO 9660 volume with the
    /// node's user-data, meta-data and network-config, in a new partition at the end of the
    /// disk (the image's GPT is extended to the disk, or a free MBR slot is used).
    Configdrive(ConfigdriveArgs),
    /// Lease an address for a NIC from DHCP and put it on the NIC (address, default route),
    /// as the deploy ramdisk does on its boot NIC. The NIC is set up first.
    Dhcp(DhcpArgs),
    /// Assemble the deploy ramdisk: this binary as `/init` and the kernel modules a node needs
    /// for its disks and NICs (with their dependencies), from a kernel package unpacked in
    /// `--kernel-dir` (its `lib/modules/<version>/`). Boot it with that kernel; the command
    /// line's `seed.action=inspect` prints the inspection on the console and powers off.
    Ramdisk(RamdiskArgs),
}

#[derive(Debug, Args)]
pub struct DhcpArgs {
    /// The NIC (`eno1`).
    #[arg(long)]
    interface: String,
    /// How long to try, in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

#[derive(Debug, Args)]
pub struct RamdiskArgs {
    /// The unpacked kernel (`dpkg-deb -x linux-image-….deb DIR`).
    #[arg(long)]
    kernel_dir: PathBuf,
    /// Where to write the ramdisk (gzip'd newc cpio).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ConfigdriveArgs {
    /// The disk the image was written to, or a disk image file.
    #[arg(long)]
    target: PathBuf,
    /// cloud-init's user-data (`#cloud-config` …).
    #[arg(long)]
    user_data: PathBuf,
    /// meta-data (`instance-id: …`).
    #[arg(long)]
    meta_data: PathBuf,
    /// network-config (the node's netplan, version 2).
    #[arg(long)]
    network_config: PathBuf,
}

#[derive(Debug, Args)]
pub struct WipeArgs {
    /// The disk (`/dev/sda`), or a disk image file.
    #[arg(long)]
    target: PathBuf,
    /// Then discard every block of it too (where the device can).
    #[arg(long)]
    discard: bool,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The raw disk image (`http://SEED/disks/NAME/disk.raw`).
    #[arg(long)]
    url: String,
    /// Its SHA-256, as `seed images list` shows it.
    #[arg(long)]
    sha256: String,
    /// Its size in bytes.
    #[arg(long)]
    size: u64,
    /// The disk to write (`/dev/sda`), or a file.
    #[arg(long)]
    target: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The root whose `sys/` and `proc/` are read.
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// seed's HTTP address (`http://10.10.0.1:8080`).
    #[arg(long)]
    url: Option<String>,
    /// The node's token (from its install script).
    #[arg(long)]
    token: Option<String>,
    /// The root whose `sys/` and `proc/` are read.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// How long to keep trying while seed cannot be reached (the boot NIC may still be
    /// negotiating its link), in seconds.
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

pub fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Inspect(args) => {
            let inspection = inspect(&args.root);
            println!("{}", serde_json::to_string_pretty(&inspection)?);
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Report(args) => report(args),
        AgentCommand::Dhcp(args) => {
            let lease =
                crate::agent::init::network_on(&args.interface, Duration::from_secs(args.wait))
                    .map_err(anyhow::Error::msg)?;
            println!("{lease}");
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Write(args) => write(args),
        AgentCommand::Configdrive(args) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let volume = configdrive::volume(
                &read(&args.user_data)?,
                &read(&args.meta_data)?,
                &read(&args.network_config)?,
            )
            .map_err(anyhow::Error::msg)?;
            let placed =
                configdrive::attach(&args.target, deploy::logical_sector(&args.target), &volume)
                    .with_context(|| {
                        format!("cannot add a config drive to {}", args.target.display())
                    })?;
            println!(
                "config drive: partition {} of {}, {} KiB at {} MiB",
                placed.number,
                args.target.display(),
                placed.len >> 10,
                placed.start >> 20
            );
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Ramdisk(args) => {
            let binary = std::env::current_exe().context("cannot find this binary")?;
            let built = ramdisk::build(&args.kernel_dir, &binary, ramdisk::MODULES, &args.out)
                .context("cannot build the deploy ramdisk")?;
            println!(
                "ramdisk: {} ({} KiB) for kernel {}: {} modules ({}){}",
                args.out.display(),
                built.size >> 10,
                built.version,
                built.modules.len(),
                built.modules.join(" "),
                if built.missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; not modules of this kernel (built in or absent): {}",
                        built.missing.join(" ")
                    )
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Wipe(args) => {
            let sector = deploy::logical_sector(&args.target);
            let wiped = wipe::wipe(&args.target, sector)
                .with_context(|| format!("cannot wipe {}", args.target.display()))?;
            println!(
                "wiped: {}: {} partition(s) found, {} MiB zeroed",
                args.target.display(),
                wiped.partitions.len(),
                wiped.zeroed >> 20
            );
            if args.discard {
                let bytes = wipe::discard(&args.target)
                    .with_context(|| format!("cannot discard {}", args.target.display()))?;
                println!("discarded: {}: {} MiB", args.target.display(), bytes >> 20);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write(args: WriteArgs) -> anyhow::Result<ExitCode> {
    let job = Job {
        url: args.url,
        sha256: args.sha256.to_ascii_lowercase(),
        size: args.size,
        target: args.target,
    };
    // A stalled read fails after 30 s and the write resumes with a range.
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("seed-agent/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut ticker = Ticker::new(Duration::from_secs(5));
    let started = Instant::now();
    let written = write::write(&job, &client, &mut |done, total| {
        if let Some(rate) = ticker.tick(done) {
            eprintln!(
                "{} of {} MiB, {} MiB/s",
                done >> 20,
                total >> 20,
                rate >> 20
            );
        }
    })
    .with_context(|| format!("cannot write {} to {}", job.url, job.target.display()))?;
    println!(
        "written: {} bytes to {} in {:.1} s ({} MiB/s, {} transfer(s)), SHA-256 {}",
        written.bytes,
        job.target.display(),
        started.elapsed().as_secs_f64(),
        write::rate(written.bytes, started.elapsed()) >> 20,
        written.transfers,
        job.sha256
    );
    Ok(ExitCode::SUCCESS)
}

/// `seed.url=` and `seed.token=` of a kernel command line.
fn from_cmdline(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let cmdline = std::fs::read_to_string(args.root.join("proc/cmdline")).unwrap_or_default();
    let url = args
        .url
        .or_else(|| from_cmdline(&cmdline, "seed.url"))
        .context("no seed URL: --url, or seed.url= on the kernel command line")?;
    let token = args
        .token
        .or_else(|| from_cmdline(&cmdline, "seed.token"))
        .context("no node token: --token, or seed.token= on the kernel command line")?;
    let seed = Seed::new(&url, &token).map_err(anyhow::Error::msg)?;
    let said = seed
        .report(&inspect(&args.root), Duration::from_secs(args.wait))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("cannot report to seed at {url}"))?;
    println!("reported: {said}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::from_cmdline;

    #[test]
    fn the_url_and_token_come_from_the_kernel_command_line() {
        let cmdline = "BOOT_IMAGE=vmlinuz seed.url=http://10.10.0.1:8080 seed.tokenx=no \
                       seed.token=abc console=ttyS0\n";
        assert_eq!(
            from_cmdline(cmdline, "seed.url").as_deref(),
            Some("http://10.10.0.1:8080")
        );
        assert_eq!(from_cmdline(cmdline, "seed.token").as_deref(), Some("abc"));
        assert_eq!(from_cmdline(cmdline, "seed.missing"), None);
    }
}
