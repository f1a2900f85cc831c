//! Starting a node's install, the one path behind `seed provision`, `seed lab run` and the
//! API's `POST /api/v1/nodes/<name>/provision`: preflight (what the BMC reports), mark the
//! node `provisioning` (new token and instance id), one network boot, power.
//!
//! Blocking: the power drivers speak QMP and Redfish synchronously; the API calls this on
//! tokio's blocking pool.

use std::path::Path;

use super::nodes::{NodeError, Nodes};
use crate::lifecycle::NodeState;
use crate::power::{self, PowerError};
use crate::preflight::{self, Level, Report};

/// How [`start`] provisions a node.
#[derive(Debug, Clone, Copy)]
pub struct How {
    /// Who asks (`cli`, `api`, `lab`), for the events.
    pub source: &'static str,
    /// Reinstall a finished node.
    pub force: bool,
    /// Start it from its firmware through its power driver (false: only mark it).
    pub power: bool,
    /// Run the preflight checks first and refuse on an error (only when `power`).
    pub preflight: bool,
}

/// A node that was started (or found under way).
#[derive(Debug, Clone)]
pub struct Started {
    /// The node.
    pub node: String,
    /// Its state now.
    pub state: NodeState,
    /// The instance id of its install.
    pub instance_id: String,
    /// False when it was already provisioning or installing: nothing was done to it.
    pub started: bool,
    /// What was done to its power, in words.
    pub power: String,
    /// The preflight's warnings, `check: message`.
    pub warnings: Vec<String>,
}

/// Why a node was not started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The decision refused (unknown node, already installed without force, no image, …).
    #[error("{0}")]
    Node(#[from] NodeError),
    /// The preflight found an error; the node was left as it was.
    #[error("{}: preflight refused: {}", .0.node, .0.errors())]
    Preflight(Report),
    /// Its power driver could not start it; what was done is undone where it could be.
    #[error("{node}: could not be started: {}{}; {}", error.detail(), cleanup.as_deref().map(|c| format!("; {c}")).unwrap_or_default(), match state { NodeState::Provisioning => format!("it stays provisioning (instance {instance_id})"), s => format!("it is {s} again") })]
    Power {
        /// The node.
        node: String,
        /// The instance id it was marked with.
        instance_id: String,
        /// What the power driver said (boxed: the error stays small on the happy path).
        error: Box<PowerError>,
        /// What was undone after it (the one-time network boot taken back), in words.
        cleanup: Option<String>,
        /// The node's state now: the one it had before, or provisioning where that could not
        /// be restored.
        state: NodeState,
    },
}

/// Provisions `name` and network-boots it; `state_dir` holds the lab's QMP sockets and the
/// BMC certificate pins.
pub fn start(
    nodes: &Nodes,
    state_dir: &Path,
    name: &str,
    how: &How,
) -> Result<Started, StartError> {
    let node = nodes
        .config()
        .node(name)
        .ok_or_else(|| NodeError::NotFound(format!("no node named {name} in the config")))?
        .clone();
    // No I/O yet: a Redfish controller logs in at its first action and keeps the session for
    // the preflight, the boot override and the restart.
    start_with(nodes, power::controller(&node, state_dir), &node, how)
}

/// [`start`] with the node's power controller given (tests give a fake one).
pub fn start_with(
    nodes: &Nodes,
    controller: Result<Box<dyn power::Power>, PowerError>,
    node: &crate::config::Node,
    how: &How,
) -> Result<Started, StartError> {
    let name = node.name.as_str();
    let node = node.clone();
    let mut warnings = Vec::new();
    if how.power && how.preflight {
        let report = match &controller {
            Ok(controller) => preflight::of(&node, controller.as_ref()),
            Err(e) => preflight::without_controller(&node, e),
        };
        if report.refuses() {
            return Err(StartError::Preflight(report));
        }
        warnings = report
            .at(Level::Warning)
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect();
    }
    let p_record = nodes.provision(name, how.source, how.force)?;
    let p = p_record.clone();
    let mut started = Started {
        node: p.node,
        state: p.state,
        instance_id: p.instance_id,
        started: p.started,
        power: String::new(),
        warnings,
    };
    if !p.started {
        started.power = "already under way; not started again".into();
        return Ok(started);
    }
    if !how.power {
        started.power = "power left alone".into();
        return Ok(started);
    }
    // From here on a failure leaves the machine as it was: the override taken back where it
    // was set, and the node back in the state it had (with the BMC's refusal in the event),
    // so the next `seed provision` starts it afresh and nothing half-done remains.
    let failed = |error: PowerError, cleanup: Option<String>| {
        let state = nodes
            .roll_back(&p_record, how.source, &error.detail())
            .ok()
            .flatten()
            .unwrap_or(NodeState::Provisioning);
        StartError::Power {
            node: name.to_string(),
            instance_id: p_record.instance_id.clone(),
            error: Box::new(error),
            cleanup,
            state,
        }
    };
    started.power = match controller {
        Ok(controller) => {
            controller
                .network_boot_once()
                .map_err(|error| failed(error, None))?;
            if let Err(error) = controller.cycle() {
                // The override is set and the machine did not start: take it back, or the
                // next unrelated reboot (an operator's, a power cut's) boots the installer.
                let cleanup = match controller.clear_network_boot() {
                    Ok(()) => "the one-time network boot was taken back".to_string(),
                    Err(e) => format!("the one-time network boot is still set: {}", e.detail()),
                };
                return Err(failed(error, Some(cleanup)));
            }
            // From now on its boot is watched phase by phase (provision::supervise); the
            // override and the restart are in its history.
            nodes.mark_started(name, None)?;
            nodes.note(
                name,
                "power",
                how.source,
                "one-time network boot set, power cycled",
            )?;
            "started from its firmware (network boot once, power cycle)".into()
        }
        Err(PowerError::Unsupported { why, .. }) => why,
        Err(error) => return Err(failed(error, None)),
    };
    Ok(started)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::power::{Outcome, Power, PowerState};
    use crate::provision::Provisioner;
    use crate::store::Store;

    /// A controller that records what it was asked and fails the restart when told to.
    struct Fake {
        calls: Arc<Mutex<Vec<&'static str>>>,
        cycle_fails: bool,
    }

    impl Power for Fake {
        fn status(&self) -> Result<PowerState, PowerError> {
            Ok(PowerState::Off)
        }
        fn on(&self) -> Result<Outcome, PowerError> {
            Ok(Outcome::Done)
        }
        fn off(&self) -> Result<Outcome, PowerError> {
            Ok(Outcome::Done)
        }
        fn shutdown(&self) -> Result<Outcome, PowerError> {
            Ok(Outcome::Done)
        }
        fn cycle(&self) -> Result<(), PowerError> {
            self.calls.lock().unwrap().push("cycle");
            if self.cycle_fails {
                return Err(PowerError::Failed {
                    node: "cmp1".into(),
                    action: "power cycle",
                    why: "400: ActionParameterNotSupported".into(),
                });
            }
            Ok(())
        }
        fn network_boot_once(&self) -> Result<(), PowerError> {
            self.calls.lock().unwrap().push("network boot once");
            Ok(())
        }
        fn clear_network_boot(&self) -> Result<(), PowerError> {
            self.calls.lock().unwrap().push("clear network boot");
            Ok(())
        }
        fn disk_boot_once(&self) -> Result<(), PowerError> {
            self.calls.lock().unwrap().push("disk boot once");
            Ok(())
        }
    }

    impl Nodes {
        /// A node's state and its last event's detail, from the store.
        fn node_record(&self, name: &str) -> (NodeState, String) {
            let store = self.store();
            let record = store.node(name).unwrap().unwrap();
            let events = store.events(Some(name), 1).unwrap();
            (record.state, events[0].detail.clone())
        }
    }

    /// The example rack's decisions over a store in `dir`, with an image registered.
    pub(crate) fn nodes(dir: &Path) -> Nodes {
        let config = crate::config::parse(crate::config::EXAMPLE, Path::new("x.yaml")).unwrap();
        let store = Store::open(&dir.join("state")).unwrap();
        for name in ["vmlinuz", "initrd"] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let images = images::Catalogue::new(dir.join("images"));
        images
            .add(
                &images::NewImage {
                    name: "ubuntu-24.04".into(),
                    kernel: dir.join("vmlinuz"),
                    initrd: dir.join("initrd"),
                    iso: None,
                    kernel_args: vec![],
                },
                false,
            )
            .unwrap();
        Nodes::new(Arc::new(Provisioner::new(Arc::new(config))), store, images)
    }

    #[test]
    fn a_restart_that_fails_takes_the_network_boot_back() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = nodes(dir.path());
        let node = nodes.config().node("cmp1").unwrap().clone();
        let how = How {
            source: "test",
            force: false,
            power: true,
            preflight: false,
        };
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            calls: Arc::clone(&calls),
            cycle_fails: true,
        };
        let err = start_with(&nodes, Ok(Box::new(fake)), &node, &how).unwrap_err();
        assert_eq!(
            *calls.lock().unwrap(),
            ["network boot once", "cycle", "clear network boot"]
        );
        let text = err.to_string();
        assert!(text.contains("ActionParameterNotSupported"), "{text}");
        assert!(
            text.contains("the one-time network boot was taken back"),
            "{text}"
        );
        // All or nothing: the node is ready again, its token retired, the refusal in its event.
        assert!(text.ends_with("it is ready again"), "{text}");
        let record = nodes.node_record("cmp1");
        assert_eq!(record.0, NodeState::Ready);
        assert!(
            record.1.contains(
                "provisioning -> ready (not started: power cycle: 400: ActionParameterNotSupported)"
            ),
            "{}",
            record.1
        );
        // A second provision starts afresh (nothing half-done blocks it).
        let fake = Fake {
            calls: Arc::new(Mutex::new(Vec::new())),
            cycle_fails: false,
        };
        let again = start_with(&nodes, Ok(Box::new(fake)), &node, &how).unwrap();
        assert!(again.started, "{again:?}");

        // A restart that works leaves the network boot for the firmware to use.
        let calls = Arc::new(Mutex::new(Vec::new()));
        let node = nodes.config().node("cmp2").unwrap().clone();
        let fake = Fake {
            calls: Arc::clone(&calls),
            cycle_fails: false,
        };
        start_with(&nodes, Ok(Box::new(fake)), &node, &how).unwrap();
        assert_eq!(*calls.lock().unwrap(), ["network boot once", "cycle"]);
    }
}
