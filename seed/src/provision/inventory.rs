//! Recording what BMCs report (`seed inventory`): a report is taken only when none of its MACs
//! is already another node's, so one BMC address typed twice cannot give two nodes one MAC.

use std::collections::HashMap;
use std::path::Path;

use crate::config::Config;
use crate::inventory::{self, Hardware};
use crate::store::Store;

use super::nodes::NodeError;

/// The inventories recorded in a store, and the rule for adding one.
pub struct Inventories {
    store: Store,
    recorded: HashMap<String, Hardware>,
}

impl Inventories {
    /// The inventories recorded in the store of `state_dir` (created if there is none).
    pub fn open(state_dir: &Path) -> Result<Self, NodeError> {
        let store = Store::open(state_dir)?;
        let recorded = store
            .inventories()?
            .into_iter()
            .map(|(node, (_, hw))| (node, hw))
            .collect();
        Ok(Self { store, recorded })
    }

    /// Records `hardware` as `node`'s unless it clashes with another node's (config MACs or a
    /// recorded inventory, this run's included); returns the clashes, empty when recorded.
    pub fn record(
        &mut self,
        config: &Config,
        node: &str,
        hardware: Hardware,
        summary: &str,
    ) -> Result<Vec<String>, NodeError> {
        let clashes = inventory::conflicts(config, node, &hardware, &self.recorded);
        if clashes.is_empty() {
            self.store.record_inventory(node, &hardware, summary)?;
            self.recorded.insert(node.to_string(), hardware);
        }
        Ok(clashes)
    }
}
