//! What may happen to the image catalogues while nodes install from them: an image a node is
//! installing from keeps its kernel, initrd and ISO until that install is over, and so do the
//! agent image an image-deploy node boots and the disk image its agent writes (a disk image
//! replaced mid-deploy would be served with a SHA-256 that is not the plan's).

use std::path::Path;

use crate::config::{Config, InstallMethod};
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

/// Which catalogue an image name is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalogue {
    /// `seed images add|import`: a kernel and initrd (an installer, or seed's agent).
    Boot,
    /// `seed images add-disk`: a disk image seed's agent writes.
    Disk,
}

/// The nodes of `config` that use `image` of `catalogue`: an autoinstall node boots its image,
/// an image-deploy node boots its agent image and writes its (disk) image.
fn users<'a>(config: Option<&'a Config>, catalogue: Catalogue, image: &str) -> Vec<&'a str> {
    config
        .map(|c| {
            c.nodes
                .iter()
                .filter(|n| match (catalogue, n.method) {
                    (Catalogue::Boot, InstallMethod::Autoinstall) => n.image == image,
                    (Catalogue::Boot, InstallMethod::Image) => n.agent_image == image,
                    (Catalogue::Disk, InstallMethod::Image) => n.image == image,
                    (Catalogue::Disk, InstallMethod::Autoinstall) => false,
                })
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
    catalogue: Catalogue,
    image: &str,
    what: &'static str,
    act: impl FnOnce() -> T,
) -> Result<T, ImageError> {
    let users = users(config, catalogue, image);
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
        Catalogue::Boot,
        image,
        "removed",
        || catalogue.remove(image),
    )??)
}

/// Removes disk image `image` from `disks` unless a node is deploying it; false when there is
/// no such disk image.
pub fn remove_disk_image(
    config: Option<&Config>,
    state_dir: &Path,
    disks: &images::disks::DiskCatalogue,
    image: &str,
) -> Result<bool, ImageError> {
    Ok(unless_installing(
        config,
        state_dir,
        Catalogue::Disk,
        image,
        "removed",
        || disks.remove(image),
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
        let err = unless_installing(
            Some(&config),
            dir.path(),
            Catalogue::Boot,
            &image,
            "removed",
            || ran = true,
        )
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
        let provisioned = unless_installing(
            Some(&config),
            dir.path(),
            Catalogue::Boot,
            &image,
            "removed",
            || serve.provision(&other, "test", false).is_ok(),
        )
        .unwrap();
        assert!(!provisioned, "a node started provisioning during a removal");
        // Afterwards it can.
        assert!(serve.provision(&other, "test", false).is_ok());
    }

    /// An image-deploy node keeps its disk image and the agent image it boots while its
    /// deploy runs: replacing the disk image mid-deploy served a `disk.raw` whose SHA-256 was
    /// not the plan's, and removing the agent image left the node `provisioning`.
    #[test]
    fn a_deploying_node_keeps_its_disk_image_and_its_agent_image() {
        let dir = tempfile::tempdir().unwrap();
        let text = crate::config::EXAMPLE.replacen(
            "    macs: [\"3c:ec:ef:10:00:11\"]\n",
            "    macs: [\"3c:ec:ef:10:00:11\"]\n    method: image\n    image: osism-node\n",
            1,
        );
        assert_ne!(
            text,
            crate::config::EXAMPLE,
            "the example's first node changed"
        );
        let config = crate::config::parse(&text, std::path::Path::new("osism-rack.yaml")).unwrap();
        let node = &config.nodes[0];
        assert_eq!(node.method, InstallMethod::Image);
        let mut store = Store::open(dir.path()).unwrap();
        store.register_nodes([node.name.as_str()], "test").unwrap();
        store.provision(&node.name, "test", false).unwrap();
        let refused = |catalogue, image: &str| {
            unless_installing(
                Some(&config),
                dir.path(),
                catalogue,
                image,
                "removed",
                || (),
            )
            .is_err()
        };
        assert!(refused(Catalogue::Disk, "osism-node"), "its disk image");
        assert!(
            refused(Catalogue::Boot, &node.agent_image),
            "its agent image"
        );
        // Its disk image's name as an installer image, and another disk image: free.
        assert!(!refused(Catalogue::Boot, "osism-node"));
        assert!(!refused(Catalogue::Disk, "other"));
        let disks = images::disks::DiskCatalogue::new(dir.path().join("disks"));
        let err = remove_disk_image(Some(&config), dir.path(), &disks, "osism-node").unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "image osism-node is being installed on {}",
                node.name
            )),
            "{err}"
        );
        // Once the deploy is over, it may go.
        store
            .transition(&node.name, NodeState::Failed, "test", "", false)
            .unwrap();
        assert!(!refused(Catalogue::Disk, "osism-node"));
    }
}
