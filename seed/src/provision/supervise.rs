//! Watching the nodes seed started, phase by phase: after a power cycle a node must ask DHCP
//! (`dhcp_timeout`), then fetch its iPXE script (`boot_timeout`), then its installer must report
//! (`installer_timeout`), each within a bound of its own. A node that misses one is started
//! again through its power driver, up to `install_attempts` starts, then failed with the phase
//! it missed, its power state and, when it never asked DHCP, the unknown MACs that did right
//! after its start (a wrong MAC in the config looks exactly like that).
//!
//! `seed serve` runs [`run`] on its periodic check; the decision ([`decide`]) is pure.

use std::fmt;
use std::path::Path;

use super::nodes::{NodeError, Nodes};
use crate::config::Lifecycle;
use crate::power;
use crate::store::{Discovered, Watched, now_ms};

/// The phase a started node did not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// It never asked DHCP (firmware not network-booting, a wrong MAC, no link).
    Dhcp,
    /// It asked DHCP but never fetched its iPXE script (PXE/TFTP/iPXE trouble).
    Script,
    /// It was served the installer, which never reported (kernel or initrd download cut, an
    /// installer that panicked).
    Report,
}

impl fmt::Display for Missed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dhcp => "never asked DHCP",
            Self::Script => "asked DHCP but never fetched its iPXE script",
            Self::Report => {
                "was served the installer, which never reported (kernel or initrd not fetched, or the installer died)"
            }
        })
    }
}

/// What to do about a node that missed a phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start it again (network boot once, power cycle).
    Again {
        /// Which start this is.
        n: u32,
        /// Of how many (`install_attempts`).
        of: u32,
    },
    /// It had all its starts: fail it.
    Fail,
}

/// The phase `w` missed by `now`, with its bound in seconds; `None` while it is within them.
pub fn missed(w: &Watched, lifecycle: &Lifecycle, now: i64) -> Option<(Missed, u64)> {
    let since = |at: i64| (now - at) / 1000;
    let after_start = |at: Option<i64>| at.filter(|t| *t >= w.started_at);
    let over =
        |secs: u64, from: i64| secs > 0 && since(from) >= i64::try_from(secs).unwrap_or(i64::MAX);
    match (after_start(w.dhcp_at), after_start(w.served_at)) {
        (_, Some(served)) => over(lifecycle.installer_timeout_secs, served)
            .then_some((Missed::Report, lifecycle.installer_timeout_secs)),
        (Some(dhcp), None) => over(lifecycle.boot_timeout_secs, dhcp)
            .then_some((Missed::Script, lifecycle.boot_timeout_secs)),
        (None, None) => over(lifecycle.dhcp_timeout_secs, w.started_at)
            .then_some((Missed::Dhcp, lifecycle.dhcp_timeout_secs)),
    }
}

/// What to do about `w` now, and why.
pub fn decide(w: &Watched, lifecycle: &Lifecycle, now: i64) -> Option<(Action, Missed, u64)> {
    let (missed, bound) = missed(w, lifecycle, now)?;
    let starts = w.cycles + 1;
    let action = if starts < lifecycle.install_attempts {
        Action::Again {
            n: starts + 1,
            of: lifecycle.install_attempts,
        }
    } else {
        Action::Fail
    };
    Some((action, missed, bound))
}

/// The unknown MACs that asked DHCP after `started_at`: who booted in a node's place.
pub fn strangers_since(discovered: &[Discovered], started_at: i64) -> String {
    let seen: Vec<String> = discovered
        .iter()
        .filter(|d| d.last_seen >= started_at)
        .map(|d| {
            let at = if d.first_seen >= started_at {
                d.first_seen
            } else {
                d.last_seen
            };
            format!("{} {} s after", d.mac, (at - started_at) / 1000)
        })
        .collect();
    // A few name the likely culprit; a flood of made-up MACs must not make the event long.
    const NAMED: usize = 5;
    match seen.as_slice() {
        [] => String::new(),
        [one] => format!("; unknown MAC {one} its start asked DHCP (a wrong MAC in the config?)"),
        many if many.len() <= NAMED => format!(
            "; unknown MACs asked DHCP after its start: {} (a wrong MAC in the config?)",
            many.join(", ")
        ),
        many => format!(
            "; {} unknown MACs asked DHCP after its start, among them {} (a wrong MAC in the config?)",
            many.len(),
            many[..NAMED].join(", ")
        ),
    }
}

/// How long seed waits for the agent to power a node off after `installed` before it gives up
/// booting the node's disk through the BMC (ms): the agent powers off within seconds.
pub const POWER_OFF_WAIT_MS: i64 = 600_000;

/// Installed BIOS nodes whose agent powered them off: each is booted from its disk once
/// through its BMC (the image's first boot makes no DHCP request). Returns a line per node.
/// `controller` gives a node's power controller (`power::controller`; a fake in tests).
fn boot_disks(
    nodes: &Nodes,
    now: i64,
    controller: impl Fn(&crate::config::Node) -> Result<Box<dyn power::Power>, power::PowerError>,
) -> Result<Vec<String>, NodeError> {
    let mut done = Vec::new();
    for (name, since) in nodes.awaiting_disk_boot()? {
        let Some(node) = nodes.config().node(&name).cloned() else {
            continue;
        };
        let controller = controller(&node);
        let status = controller
            .as_ref()
            .map_err(power::PowerError::detail)
            .and_then(|c| c.status().map_err(|e| e.detail()));
        let line = match status {
            Ok(power::PowerState::On) if now - since < POWER_OFF_WAIT_MS => continue,
            Ok(power::PowerState::On) => format!(
                "still on {} s after its agent said installed; not booted from its disk by seed (it boots what its firmware picks)",
                POWER_OFF_WAIT_MS / 1000
            ),
            Ok(power::PowerState::Off) => match controller {
                Ok(c) => match c.disk_boot_once() {
                    Ok(()) => match c.on() {
                        Ok(_) => "off after its agent wrote the image: powered on from its disk (one-time boot override)".to_string(),
                        Err(e) => format!("powering it on failed: {}", e.detail()),
                    },
                    // A BMC that refuses the override: power on all the same; the node
                    // network-boots and seed answers its local disk, as for a manual node.
                    Err(refused) => match c.on() {
                        Ok(_) => format!(
                            "the boot override to its disk was refused ({}); powered on: it network-boots and seed answers its local disk",
                            refused.detail()
                        ),
                        Err(e) => format!(
                            "the boot override to its disk was refused ({}) and powering it on failed: {}",
                            refused.detail(),
                            e.detail()
                        ),
                    },
                },
                Err(e) => format!("no power control: {}", e.detail()),
            },
            Err(why) => format!("its power state is unknown: {why}; not booted from its disk"),
        };
        // The event ends the wait: seed does this once per install.
        nodes.note(&name, "boot", "seed", &line)?;
        done.push(format!("{name}: {line}"));
    }
    Ok(done)
}

/// One round: every started node that missed a phase is started again or failed, and every
/// node whose agent powered it off is booted from its disk. Blocking (power drivers); returns
/// a line per node acted on.
pub fn run(nodes: &Nodes, state_dir: &Path) -> Result<Vec<String>, NodeError> {
    let lifecycle = nodes.config().seed.lifecycle;
    let now = now_ms();
    let mut done = boot_disks(nodes, now, |node| power::controller(node, state_dir))?;
    for w in nodes.watched()? {
        let Some((action, missed, bound)) = decide(&w, &lifecycle, now) else {
            continue;
        };
        let Some(node) = nodes.config().node(&w.name).cloned() else {
            continue;
        };
        let mut why = format!("{missed} within {bound} s of its start");
        if missed == Missed::Dhcp {
            why.push_str(&strangers_since(&nodes.discovered()?, w.started_at));
        }
        let controller = power::controller(&node, state_dir);
        match action {
            Action::Again { n, of } => {
                let restarted = controller.and_then(|c| {
                    c.network_boot_once()?;
                    c.cycle()
                });
                match restarted {
                    Ok(()) => {
                        let line = format!("power-cycled again: {why} (start {n} of {of})");
                        nodes.mark_started(&w.name, Some(("seed", &line)))?;
                        done.push(format!("{}: {line}", w.name));
                    }
                    Err(e) => {
                        let line = format!("{why}; starting it again failed: {}", e.detail());
                        nodes.fail(&w.name, &line)?;
                        done.push(format!("{}: failed: {line}", w.name));
                    }
                }
            }
            Action::Fail => {
                let power = match controller.and_then(|c| c.status()) {
                    Ok(state) => format!("power {state:?}").to_lowercase(),
                    Err(e) => format!("power unknown ({})", e.detail()),
                };
                let line = format!("{why}; {power}; started {} times", w.cycles + 1);
                nodes.fail(&w.name, &line)?;
                done.push(format!("{}: failed: {line}", w.name));
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests;
