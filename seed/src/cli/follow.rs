//! Provision nodes and follow them to the end: `seed provision` (until installed) and `seed lab
//! run` (until back on the local disk). At most `parallel` nodes install at once; each gets its
//! own timeout; progress is printed as seed's store records it (a line per change), and a
//! summary table at the end.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::progress::Screen;
use super::table::Table;
use crate::lifecycle::NodeState;
use crate::provision::{How, Nodes, Standing, StartError, Started, start};
use crate::store::now_ms;

/// When a node is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Installed (or deployed).
    Installed,
    /// Installed and network-booted again into its local disk (the lab's stand-in installer
    /// leaves no OS to phone home).
    LocalBoot,
}

/// What to do and how long to wait.
pub(crate) struct Follow<'a> {
    /// The nodes, in order, each with a label for the summary (how it boots).
    pub nodes: Vec<(String, String)>,
    /// How they are provisioned.
    pub how: How,
    /// When a node counts as done.
    pub until: Until,
    /// How many install at once.
    pub parallel: usize,
    /// How long one node may take from its start.
    pub timeout: Duration,
    /// Set by a signal handler: stop following.
    pub interrupted: &'a AtomicBool,
    /// Called once per node when it is done (the lab stops its machine).
    pub on_done: &'a dyn Fn(&str),
}

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
    error: Option<String>,
    /// Its start (preflight, mark, power) is still running.
    starting: bool,
}

impl Progress {
    fn done(&self, until: Until) -> bool {
        self.failed.is_some()
            || self.error.is_some()
            || match until {
                Until::Installed => self.installed.is_some(),
                Until::LocalBoot => self.local_boot.is_some(),
            }
    }

    fn ok(&self, until: Until) -> bool {
        self.failed.is_none()
            && self.error.is_none()
            && match until {
                Until::Installed => self.installed.is_some(),
                Until::LocalBoot => self.local_boot.is_some(),
            }
    }
}

/// Provisions and follows `plan.nodes`; true when every one is done without failing.
pub(crate) fn run(nodes: &Nodes, state_dir: &Path, plan: &Follow<'_>) -> anyhow::Result<bool> {
    let mut screen = Screen::stdout();
    let t0 = Instant::now();
    let stamp = || format!("{:>7}", secs(t0.elapsed()));
    let mut queue: VecDeque<&str> = plan.nodes.iter().map(|(n, _)| n.as_str()).collect();
    let mut progress: BTreeMap<String, Progress> = BTreeMap::new();
    let mut interrupted = false;
    let mut timed_out = false;
    // Nodes start on threads of their own: a BMC takes seconds per call, so a rack's starts
    // overlap (up to `parallel`) and the progress display keeps moving meanwhile.
    let (started_tx, started_rx) = mpsc::channel::<(String, Result<Started, StartError>)>();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        loop {
            // Start nodes while there is room.
            let active = progress.values().filter(|p| !p.done(plan.until)).count();
            for _ in active..plan.parallel.max(1) {
                let Some(name) = queue.pop_front() else {
                    break;
                };
                let p = progress.entry(name.to_string()).or_default();
                p.started = Some(Instant::now());
                p.started_ms = now_ms();
                p.starting = true;
                let (tx, how) = (started_tx.clone(), plan.how);
                scope.spawn(move || {
                    let result = start(nodes, state_dir, name, &how);
                    // The receiver outlives the scope; a send cannot fail.
                    let _ = tx.send((name.to_string(), result));
                });
            }
            while let Ok((name, result)) = started_rx.try_recv() {
                let Some(p) = progress.get_mut(&name) else {
                    continue;
                };
                p.starting = false;
                match result {
                    Ok(started) => lines(&started)
                        .iter()
                        .for_each(|l| screen.log(&format!("{}  {l}", stamp()))),
                    Err(e) => {
                        screen.log(&format!("{}  {e}", stamp()));
                        p.error = Some(e.to_string());
                        (plan.on_done)(&name);
                    }
                }
            }
            if queue.is_empty() && progress.values().all(|p| p.done(plan.until)) {
                break;
            }
            if plan.interrupted.load(Ordering::SeqCst) {
                screen.log("interrupted; stopping");
                interrupted = true;
                break;
            }
            // A node still starting is not read yet: its record may be the last round's.
            for (name, p) in progress
                .iter_mut()
                .filter(|(_, p)| !p.done(plan.until) && !p.starting)
            {
                let Some((record, standing)) = nodes.standing(name, p.started_ms)? else {
                    continue;
                };
                let event_id = record.last_event.as_ref().map_or(0, |e| e.id);
                if p.last_seen != Some((record.state, event_id)) {
                    p.last_seen = Some((record.state, event_id));
                    if let Some(e) = &record.last_event {
                        p.last_event = format!("{}: {}", e.kind, crate::net::printable(&e.detail));
                    }
                    screen.change(&format!(
                        "{}  {name:<12} {:<13} {}",
                        stamp(),
                        record.state.to_string(),
                        p.last_event
                    ));
                }
                let since = p.started.map(|s| s.elapsed()).unwrap_or_default();
                match standing {
                    Standing::Failed => p.failed = Some(since),
                    Standing::Installed => {
                        p.installed.get_or_insert(since);
                    }
                    Standing::OnItsDisk => {
                        p.installed.get_or_insert(since);
                        if plan.until == Until::LocalBoot {
                            p.local_boot = Some(since);
                        }
                    }
                    Standing::UnderWay => {}
                }
                if !p.done(plan.until) && since > plan.timeout {
                    // Out of time: failed, in the store too, so the API and status agree.
                    let why = format!("not done {} s after it was started", plan.timeout.as_secs());
                    nodes.fail_if_under_way(name, "cli", &why)?;
                    screen.log(&format!("{}  {name:<12} {:<13} {why}", stamp(), "failed"));
                    p.last_event = why;
                    p.failed = Some(since);
                    timed_out = true;
                }
                if p.done(plan.until) {
                    (plan.on_done)(name);
                }
            }
            screen.rows(rows(plan, &progress));
            std::thread::sleep(Duration::from_millis(250));
        }
        // Leaving the scope waits for starts still under way (each bounded by its driver's
        // timeouts).
        Ok(())
    })?;
    screen.finish();
    let mut table = Table::new(&[
        "NODE",
        "BOOT",
        "RESULT",
        "INSTALLED",
        "LOCAL BOOT",
        "LAST EVENT",
    ]);
    let mut ok = !interrupted;
    for (name, label) in &plan.nodes {
        let Some(p) = progress.get(name) else {
            ok = false;
            table.row(vec![
                name.clone(),
                label.clone(),
                "NOT STARTED".into(),
                "-".into(),
                "-".into(),
                String::new(),
            ]);
            continue;
        };
        let result = if p.ok(plan.until) {
            "installed"
        } else if p.failed.is_some() || p.error.is_some() {
            ok = false;
            "FAILED"
        } else {
            ok = false;
            "NOT DONE"
        };
        let last = p.error.clone().unwrap_or_else(|| p.last_event.clone());
        table.row(vec![
            name.clone(),
            label.clone(),
            result.to_string(),
            p.installed.map_or("-".into(), secs),
            p.local_boot.map_or("-".into(), secs),
            last,
        ]);
    }
    print!("{}", table.render());
    println!(
        "{} of {} installed in {}{}",
        progress.values().filter(|p| p.ok(plan.until)).count(),
        plan.nodes.len(),
        secs(t0.elapsed()),
        if timed_out { " (some timed out)" } else { "" }
    );
    Ok(ok)
}

/// The live block: a line per node with its state, time since its start and last event.
fn rows(plan: &Follow<'_>, progress: &BTreeMap<String, Progress>) -> Vec<String> {
    plan.nodes
        .iter()
        .map(|(name, _)| {
            let Some(p) = progress.get(name) else {
                return format!("{name:<12} {:<13}", "waiting");
            };
            let state = if p.error.is_some() {
                "not started".to_string()
            } else if p.failed.is_some() {
                "failed".to_string()
            } else if p.local_boot.is_some() {
                "local-boot".to_string()
            } else {
                p.last_seen
                    .map_or("starting".to_string(), |(s, _)| s.to_string())
            };
            // Whole seconds: the block changes (and is redrawn) once a second, not per poll.
            let elapsed = match (p.started, p.failed.or(p.local_boot).or(p.installed)) {
                (_, Some(at)) if p.done(plan.until) => format!("{}s", at.as_secs()),
                (Some(start), _) => format!("{}s", start.elapsed().as_secs()),
                (None, _) => String::new(),
            };
            let last = p.error.as_deref().unwrap_or(&p.last_event);
            format!("{name:<12} {state:<13} {elapsed:>7}  {last}")
        })
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The operator's lines for a started node: the outcome, then each preflight warning.
pub(crate) fn lines(s: &Started) -> Vec<String> {
    let mut lines = vec![if s.started {
        format!(
            "{}: provisioning (instance {}); {}",
            s.node, s.instance_id, s.power
        )
    } else {
        format!(
            "{}: already {} (instance {}); not started again",
            s.node, s.state, s.instance_id
        )
    }];
    lines.extend(
        s.warnings
            .iter()
            .map(|w| format!("{}: warning: {w}", s.node)),
    );
    lines
}
