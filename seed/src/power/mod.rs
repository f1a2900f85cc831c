//! Power control: switch a node on, off or through a reset, whatever its driver is. `seed
//! provision`, `seed preflight`, `seed lab` and `seed power` ask this module; the drivers
//! below it speak QMP or Redfish.

mod driver;
pub mod qemu;
pub mod redfish;

use std::path::Path;

pub use driver::*;

use crate::config::{Node, PowerDriver};

/// The power controller of `node`; `state_dir` is where lab machines' QMP sockets are.
pub fn controller(node: &Node, state_dir: &Path) -> Result<Box<dyn Power>, PowerError> {
    match node.bmc.driver {
        PowerDriver::Qemu => Ok(Box::new(qemu::Qmp::new(
            &node.name,
            qemu::socket(state_dir, &node.name),
        ))),
        PowerDriver::Redfish => Ok(Box::new(redfish::RedfishPower::new(node, state_dir))),
        PowerDriver::Manual => Err(PowerError::Unsupported {
            node: node.name.clone(),
            why: "manual power driver: network-boot it by hand".into(),
        }),
    }
}
