//! `seed lab up|run|down`: a virtual rack of QEMU machines installs through seed (see
//! [`crate::lab`]). `run` is up, provision every machine, follow each until it is installed and
//! network-booted again into its local disk (or failed), a summary with per-node times, down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::Global;
use super::provision::{How, open_nodes, start};
use super::table::Table;
use crate::config::Config;
use crate::lab::{self, Accel, Lab};
use crate::lifecycle::NodeState;
use crate::power;
use crate::provision::LOCAL_BOOT;
use crate::store::{Store, now_ms};

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
    /// Register DIR/vmlinuz and DIR/initrd.gz (tests/installer/build) as the lab nodes' image.
    #[arg(long, value_name = "DIR")]
    installer: Option<PathBuf>,
    /// The QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
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

/// Registers the stand-in installer as every image a lab node installs from.
fn register_installer(config: &Config, state_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    let catalogue = images::Catalogue::new(state_dir.join("images"));
    let mut names: Vec<&str> = config
        .nodes
        .iter()
        .filter(|n| n.qemu.is_some())
        .map(|n| n.image.as_str())
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

/// How one node's install went.
#[derive(Debug, Default)]
struct Progress {
    started: Option<Instant>,
    /// When it was provisioned (ms since the epoch): older local boots do not count.
    started_ms: i64,
    installed: Option<Duration>,
    local_boot: Option<Duration>,
    failed: Option<Duration>,
    last_seen: Option<(NodeState, i64)>,
    last_event: String,
    start_error: Option<String>,
}

impl Progress {
    fn done(&self) -> bool {
        self.local_boot.is_some() || self.failed.is_some() || self.start_error.is_some()
    }
}

/// Provisions every machine and follows them; true when every one installed and came back to
/// its disk.
fn follow(
    lab: &Lab,
    config: &Arc<Config>,
    state_dir: &Path,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let nodes = open_nodes(config, state_dir)?;
    let store = Store::open(state_dir)?;
    let t0 = Instant::now();
    let mut progress: BTreeMap<String, Progress> = BTreeMap::new();
    for m in &lab.machines {
        let p = progress.entry(m.node.clone()).or_default();
        p.started = Some(Instant::now());
        p.started_ms = now_ms();
        let how = How {
            source: "lab",
            force: true,
            power: true,
        };
        match start(&nodes, config, state_dir, &m.node, &how) {
            Ok(line) => println!("{:>7}  {line}", secs(t0.elapsed())),
            Err(e) => {
                println!("{:>7}  {e:#}", secs(t0.elapsed()));
                p.start_error = Some(format!("{e:#}"));
            }
        }
    }
    let deadline = t0 + timeout;
    let mut interrupted = false;
    while !progress.values().all(Progress::done) {
        if INTERRUPTED.load(Ordering::SeqCst) {
            println!("lab: interrupted; tearing down");
            interrupted = true;
            break;
        }
        if Instant::now() > deadline {
            println!("lab: {} s passed; giving up on the rest", timeout.as_secs());
            break;
        }
        for (name, p) in progress.iter_mut().filter(|(_, p)| !p.done()) {
            let Some(record) = store.node(name)? else {
                continue;
            };
            let event_id = record.last_event.as_ref().map_or(0, |e| e.id);
            if p.last_seen != Some((record.state, event_id)) {
                p.last_seen = Some((record.state, event_id));
                if let Some(e) = &record.last_event {
                    p.last_event = format!("{}: {}", e.kind, e.detail);
                }
                println!(
                    "{:>7}  {name:<12} {:<13} {}",
                    secs(t0.elapsed()),
                    record.state.to_string(),
                    p.last_event
                );
            }
            let since = p.started.map(|s| s.elapsed()).unwrap_or_default();
            match record.state {
                NodeState::Failed => p.failed = Some(since),
                NodeState::Installed | NodeState::Deployed => {
                    p.installed.get_or_insert(since);
                    let events = store.events(Some(name), 20)?;
                    if events
                        .iter()
                        .any(|e| e.kind == LOCAL_BOOT && e.at >= p.started_ms)
                    {
                        p.local_boot = Some(since);
                    }
                }
                _ => {}
            }
            if p.done() {
                // Done machines stop: under software emulation they would take CPU from the
                // rest (a UEFI machine keeps looking for something to boot).
                if let Some(node) = config.node(name)
                    && let Ok(controller) = power::controller(node, state_dir)
                    && let Err(e) = controller.off()
                {
                    println!("{name}: {e}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut table = Table::new(&[
        "NODE",
        "BOOT",
        "RESULT",
        "INSTALLED",
        "LOCAL BOOT",
        "LAST EVENT",
    ]);
    let mut ok = !interrupted;
    for m in &lab.machines {
        let p = &progress[&m.node];
        let result = if p.local_boot.is_some() {
            "installed"
        } else if p.failed.is_some() || p.start_error.is_some() {
            ok = false;
            "FAILED"
        } else {
            ok = false;
            "NOT DONE"
        };
        let last = p
            .start_error
            .clone()
            .unwrap_or_else(|| p.last_event.clone());
        table.row(vec![
            m.node.clone(),
            m.boot.clone(),
            result.to_string(),
            p.installed.map_or("-".into(), secs),
            p.local_boot.map_or("-".into(), secs),
            last,
        ]);
    }
    print!("{}", table.render());
    println!(
        "lab: {} of {} installed in {}; consoles in {}",
        progress.values().filter(|p| p.local_boot.is_some()).count(),
        progress.len(),
        secs(t0.elapsed()),
        lab::dir(state_dir).display()
    );
    Ok(ok)
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
