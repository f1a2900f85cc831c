//! Starting a node's install, the one path behind `seed provision`, `seed lab run` and the
//! API's `POST /api/v1/nodes/<name>/provision`: preflight (what the BMC reports), mark the
//! node `provisioning` (new token and instance id), one network boot, power.
//!
//! Blocking: the power drivers speak QMP and Redfish synchronously; the API calls this on
//! tokio's blocking pool.

use std::path::Path;

use super::{NodeError, Nodes};
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
    /// The node is marked, but its power driver could not start it.
    #[error("{node}: provisioning (instance {instance_id}), but it could not be started: {}", error.detail())]
    Power {
        /// The node.
        node: String,
        /// The instance id it was marked with.
        instance_id: String,
        /// What the power driver said.
        error: PowerError,
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
    let controller = power::controller(&node, state_dir);
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
    let p = nodes.provision(name, how.source, how.force)?;
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
    started.power = match controller {
        Ok(controller) => {
            controller
                .network_boot_once()
                .and_then(|()| controller.cycle())
                .map_err(|error| StartError::Power {
                    node: name.to_string(),
                    instance_id: started.instance_id.clone(),
                    error,
                })?;
            "started from its firmware (network boot once, power cycle)".into()
        }
        Err(PowerError::Unsupported { why, .. }) => why,
        Err(error) => {
            return Err(StartError::Power {
                node: name.to_string(),
                instance_id: started.instance_id,
                error,
            });
        }
    };
    Ok(started)
}
