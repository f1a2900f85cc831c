//! `seed lab up|run|down`: a virtual rack of QEMU machines installs through seed (see
//! [`crate::lab`]). `run` is up, provision every machine, follow each until it is installed and
//! network-booted again into its local disk (or failed), a summary with per-node times, down.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::follow::{self, Until};
use super::global::Global;
use super::provision::open_nodes;
use crate::config::Config;
use crate::lab::{self, Accel, Lab};
use crate::power;
use crate::provision::How;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Bring the lab up and leave it running: namespace, bridge, seed serve, machines (off).
    /// Then `seed provision NODE…` installs them; `seed lab down` removes it all.
    Up(LabArgs),
    /// Up, provision every machine, follow them to installed and back to their disks, print a
    /// summary, down. Exits 0 when every node installed.
    Run(RunArgs),
    /// Tear the lab down: every process in its namespace, the namespace, its taps.
    Down,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// The network namespace the lab lives in.
    #[arg(long, default_value = "seed-lab")]
    netns: String,
    /// Machine emulation: kvm where it works, else tcg.
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    accel: AccelArg,
    /// Register DIR/vmlinuz and DIR/initrd.gz (tests/installer/build, or a kernel and the
    /// agent's ramdisk for nodes deployed from a disk image) as the lab nodes' image.
    #[arg(long, value_name = "DIR")]
    installer: Option<PathBuf>,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// Bring up the namespace, its bridge and the machines, but no `seed serve`: a seed run
    /// elsewhere serves them (the packaged service in a container that joins the namespace).
    #[arg(long)]
    no_serve: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    lab: LabArgs,
    /// Give up on nodes not done after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

pub fn run(global: &Global, cmd: LabCommand) -> anyhow::Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("seed lab needs root: it creates a network namespace, taps and QEMU machines");
    }
    let config = Arc::new(global.load_config()?);
    let state_dir = global.state_dir(Some(&config));
    match cmd {
        LabCommand::Down => {
            match lab::down(&state_dir)? {
                Some(netns) => println!("lab: {netns} torn down"),
                None => println!("lab: none is up for {}", state_dir.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Up(args) => {
            let lab = up(global, &config, &state_dir, &args)?;
            println!(
                "lab: up; install with `seed --config {} --state-dir {} provision --all`, \
                 remove with `seed … lab down`",
                global.config_path().display(),
                state_dir.display()
            );
            lab.keep();
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Run(args) => {
            if args.lab.no_serve {
                bail!(
                    "seed lab run follows the nodes through its own seed serve: --no-serve is for `seed lab up`"
                );
            }
            catch_signals()?;
            let lab = up(global, &config, &state_dir, &args.lab)?;
            let ok = follow(&lab, &config, &state_dir, Duration::from_secs(args.timeout));
            let torn = lab.down();
            let ok = ok?;
            torn?;
            println!("lab: torn down");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn up(global: &Global, config: &Config, state_dir: &Path, args: &LabArgs) -> anyhow::Result<Lab> {
    if let Some(dir) = &args.installer {
        register_installer(config, state_dir, dir)?;
    }
    let accel = match args.accel {
        AccelArg::Auto => None,
        AccelArg::Kvm => Some(Accel::Kvm),
        AccelArg::Tcg => Some(Accel::Tcg),
    };
    let opts = lab::Options {
        netns: args.netns.clone(),
        config_path: global.config_path(),
        state_dir: state_dir.to_path_buf(),
        seed_bin: std::env::current_exe().context("cannot find the seed binary")?,
        accel,
        qemu: args.qemu.clone(),
        serve: !args.no_serve,
    };
    let lab = Lab::up(config, &opts)?;
    let zone = config.provisioning_zone();
    println!(
        "lab: namespace {}, bridge {} {}/{}, {} machine(s), {}; files in {}",
        lab.netns(),
        config.seed.interface,
        config.seed.address,
        zone.subnet.prefix(),
        lab.machines.len(),
        lab.accel,
        lab::dir(state_dir).display()
    );
    for m in &lab.machines {
        println!(
            "lab: {:<12} {:<20} console {}",
            m.node,
            m.boot,
            m.console.display()
        );
    }
    Ok(lab)
}

/// Registers the stand-in installer as every image a lab node boots: the installer image of
/// an autoinstall node, the agent image of one deployed from a disk image (then DIR holds the
/// agent's kernel and `seed agent ramdisk`'s ramdisk), and the agent image unknown machines
/// boot under `seed.enlist`.
fn register_installer(config: &Config, state_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    let catalogue = images::Catalogue::new(state_dir.join("images"));
    let mut names: Vec<&str> = config
        .nodes
        .iter()
        .filter(|n| n.qemu.is_some())
        .map(|n| match n.method {
            crate::config::InstallMethod::Autoinstall => n.image.as_str(),
            crate::config::InstallMethod::Image => n.agent_image.as_str(),
        })
        .chain(config.seed.enlist.as_deref())
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let image = catalogue
            .add(
                &images::NewImage {
                    name: name.to_string(),
                    kernel: dir.join("vmlinuz"),
                    initrd: dir.join("initrd.gz"),
                    iso: None,
                    kernel_args: Vec::new(),
                },
                true,
            )
            .with_context(|| format!("cannot register {} as image {name}", dir.display()))?;
        println!("lab: image {} from {}", image.name, dir.display());
    }
    Ok(())
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// SIGINT and SIGTERM end `lab run` in order (down, then exit) instead of killing it mid-way:
/// a thread waits for them and sets a flag the follow loop checks.
fn catch_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the signal thread's runtime")?;
    let (mut int, mut term) = runtime
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .context("cannot handle SIGINT/SIGTERM")?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        INTERRUPTED.store(true, Ordering::SeqCst);
    });
    Ok(())
}

/// Provisions every machine and follows them until each is back on its local disk (or
/// failed); true when every one installed.
fn follow(
    lab: &Lab,
    config: &Arc<Config>,
    state_dir: &Path,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let nodes = open_nodes(config, state_dir)?;
    // Done machines stop: under software emulation they would take CPU from the rest (a UEFI
    // machine keeps looking for something to boot).
    let stop = |name: &str| {
        if let Some(node) = config.node(name)
            && let Ok(controller) = power::controller(node, state_dir)
            && let Err(e) = controller.off()
        {
            println!("{name}: {e}");
        }
    };
    let plan = follow::Follow {
        nodes: lab
            .machines
            .iter()
            .map(|m| (m.node.clone(), m.boot.clone()))
            .collect(),
        how: How {
            source: "lab",
            force: true,
            power: true,
            preflight: true,
        },
        until: Until::LocalBoot,
        parallel: lab.machines.len(),
        timeout,
        interrupted: &INTERRUPTED,
        on_done: &stop,
    };
    let ok = follow::run(&nodes, state_dir, &plan)?;
    println!("lab: consoles in {}", lab::dir(state_dir).display());
    Ok(ok)
}
