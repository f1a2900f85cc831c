//! What seed's agent is told to do on a node with `install.method: image`: the deploy plan,
//! `GET /nodes/<token>/deploy`. seed serve writes it (`provision::Nodes::deploy_plan`), the
//! agent reads it (`agent::deploy`); this is the one type both sides share.
//!
//! Like the install documents it holds the node's secrets (SSH keys, a password hash) and is
//! served only while the node's install is under way, only with its token.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::Wipe;

/// The most bytes a plan may have: its documents are a few KiB; the agent reads no more.
pub const MAX_PLAN_BYTES: u64 = 1 << 20;

/// One node's deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployPlan {
    /// The node.
    pub node: String,
    /// The disk image to write.
    pub image: PlannedImage,
    /// Which disk it goes to: subiquity's match keys (`crate::disk::subiquity_match` of the
    /// node's `disk:`), applied by the agent with `crate::disk::candidates` to the disks it
    /// found, so autoinstall and image deploy choose the same disk.
    pub disk: BTreeMap<String, serde_json::Value>,
    /// Which disks are wiped before the image is written.
    pub wipe: Wipe,
    /// Whether the wiped disks are also discarded whole (the role's `discard:`).
    #[serde(default)]
    pub discard: bool,
    /// The NoCloud config drive written beside the image.
    pub config_drive: ConfigDrive,
    /// After `installed`, power off instead of rebooting: seed then boots the node from its
    /// disk once through its BMC. For BIOS machines, which have no `BootNext` the agent could
    /// set and would otherwise network-boot again (Ironic powers off for the conductor too).
    #[serde(default)]
    pub power_off: bool,
}

/// A registered disk image, where to fetch it and how to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedImage {
    /// Its name in the catalogue.
    pub name: String,
    /// `<seed url>/disks/<name>/disk.raw`.
    pub url: String,
    /// The raw disk's size in bytes.
    pub size: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

/// What cloud-init in the written image reads from the `cidata` volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDrive {
    /// `#cloud-config`: the operator, the phone-home to seed.
    pub user_data: String,
    /// instance-id and local-hostname.
    pub meta_data: String,
    /// The node's netplan (network config version 2).
    pub network_config: String,
}
