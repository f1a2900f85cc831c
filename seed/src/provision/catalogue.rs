//! What may happen to the image catalogue while nodes install from it: an image a node is
//! installing from keeps its kernel, initrd and ISO until that install is over.

use std::path::Path;

use crate::config::Config;
use crate::store::{DB_FILE, Store, StoreError};

/// Why an image was not taken away.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Nodes are installing from it.
    #[error(
        "image {image} is being installed on {}: it cannot be {what} now; wait, or fail those nodes first",
        nodes.join(", ")
    )]
    InUse {
        /// The image.
        image: String,
        /// The nodes installing from it.
        nodes: Vec<String>,
        /// What was asked (`removed`, `replaced`).
        what: &'static str,
    },
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The catalogue refused.
    #[error(transparent)]
    Catalogue(#[from] images::Error),
}

/// The nodes of `config` that install `image`.
fn users<'a>(config: Option<&'a Config>, image: &str) -> Vec<&'a str> {
    config
        .map(|c| {
            c.nodes
                .iter()
                .filter(|n| n.image == image)
                .map(|n| n.name.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `act` unless a node of `config` is installing from `image`, holding the store's write
/// lock while it runs (a provisioning checks its image under the same lock). Without a store
/// in `state_dir` nothing was ever provisioned from it.
pub fn unless_installing<T>(
    config: Option<&Config>,
    state_dir: &Path,
    image: &str,
    what: &'static str,
    act: impl FnOnce() -> T,
) -> Result<T, ImageError> {
    let users = users(config, image);
    if users.is_empty() || !state_dir.join(DB_FILE).exists() {
        return Ok(act());
    }
    let mut store = Store::open(state_dir)?;
    store
        .unless_under_way(&users, act)?
        .map_err(|nodes| ImageError::InUse {
            image: image.to_string(),
            nodes,
            what,
        })
}

/// Removes `image` from `catalogue` unless a node is installing from it; false when there is
/// no such image.
pub fn remove_image(
    config: Option<&Config>,
    state_dir: &Path,
    catalogue: &images::Catalogue,
    image: &str,
) -> Result<bool, ImageError> {
    Ok(unless_installing(
        config,
        state_dir,
        image,
        "removed",
        || catalogue.remove(image),
    )??)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::NodeState;

    #[test]
    fn an_image_is_removed_only_while_no_node_installs_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse(
            crate::config::EXAMPLE,
            std::path::Path::new("osism-rack.yaml"),
        )
        .unwrap();
        let image = config.nodes[0].image.clone();
        let name = config.nodes[0].name.clone();
        let mut store = Store::open(dir.path()).unwrap();
        store.register_nodes([name.as_str()], "test").unwrap();
        store.provision(&name, "test", false).unwrap();
        let mut ran = false;
        let err = unless_installing(Some(&config), dir.path(), &image, "removed", || ran = true)
            .unwrap_err();
        assert!(!ran, "removed while {name} installs from it");
        assert!(
            matches!(&err, ImageError::InUse { nodes, .. } if *nodes == [name.as_str()]),
            "{err}"
        );
        // While the check holds the lock, no node can start provisioning.
        store
            .transition(&name, NodeState::Failed, "test", "", false)
            .unwrap();
        let other = config.nodes[1].name.clone();
        store.register_nodes([other.as_str()], "test").unwrap();
        // A second connection, as `seed serve` holds one.
        let mut serve = Store::open(dir.path()).unwrap();
        serve.set_busy_timeout_for_tests(std::time::Duration::from_millis(50));
        let provisioned = unless_installing(Some(&config), dir.path(), &image, "removed", || {
            serve.provision(&other, "test", false).is_ok()
        })
        .unwrap();
        assert!(!provisioned, "a node started provisioning during a removal");
        // Afterwards it can.
        assert!(serve.provision(&other, "test", false).is_ok());
    }
}
