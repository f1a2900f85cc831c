//! A node's lifecycle: which states exist and which moves between them are allowed.
//!
//! ```text
//! discovered → ready → provisioning → installing → installed → deployed
//!                          │    └──────────────────────┘ (no events arrived)
//!                          │              │            │
//!                          └──────────────┴────────────┴──→ failed
//! installed, deployed, failed ──(forced re-provision only)──→ provisioning
//! ```
//!
//! "deployed" is only claimed when the installed system phones home on its first boot from disk,
//! so `installed` is still an active state that can time out into `failed`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Seen in DHCP, not in the config; nothing is installed on it.
    Discovered,
    /// Known and idle.
    Ready,
    /// Set to install; waiting for its firmware to network-boot.
    Provisioning,
    /// The installer is running and reporting.
    Installing,
    /// The installer finished; waiting for the first boot from disk.
    Installed,
    /// The installed system booted from its disk and phoned home.
    Deployed,
    /// The install failed or timed out.
    Failed,
}

impl NodeState {
    /// Every state, in lifecycle order.
    pub const ALL: [NodeState; 7] = [
        Self::Discovered,
        Self::Ready,
        Self::Provisioning,
        Self::Installing,
        Self::Installed,
        Self::Deployed,
        Self::Failed,
    ];

    /// The states of an install under way: seed served (or will serve) the node its installer,
    /// and its token opens its documents. Its image must stay; its start is not repeated.
    pub const UNDER_WAY: [NodeState; 2] = [Self::Provisioning, Self::Installing];

    /// Whether an install is under way ([`Self::UNDER_WAY`]).
    pub fn is_under_way(self) -> bool {
        Self::UNDER_WAY.contains(&self)
    }

    /// The lowercase name stored in the database and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Discovered => "discovered",
            Self::Ready => "ready",
            Self::Provisioning => "provisioning",
            Self::Installing => "installing",
            Self::Installed => "installed",
            Self::Deployed => "deployed",
            Self::Failed => "failed",
        }
    }

    /// Whether a move from `self` to `to` is allowed. A forced move is an operator's deliberate
    /// re-provision of a node that is finished or failed.
    pub fn can_become(self, to: NodeState, forced: bool) -> bool {
        use NodeState::*;
        match (self, to) {
            (Discovered, Ready) | (Ready, Provisioning) => true,
            (Provisioning, Installing) | (Installing, Installed) | (Installed, Deployed) => true,
            // The installer's webhook events are best effort; its installed callback is not.
            (Provisioning, Installed) => true,
            (Provisioning | Installing | Installed, Failed) => true,
            (Installed | Deployed | Failed, Provisioning) => forced,
            _ => false,
        }
    }
}

impl NodeState {
    /// Whether a start that never reached the machine may take a node from `self` back to
    /// `to`, the state it had before: only a provisioning whose firmware was never told to
    /// boot (its BMC refused), back to where it was.
    pub fn can_roll_back_to(self, to: NodeState) -> bool {
        use NodeState::*;
        self == Provisioning && matches!(to, Ready | Installed | Deployed | Failed)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`NodeState::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a node state")]
pub struct UnknownState(pub String);

impl FromStr for NodeState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// How long something has lasted, for people: `42s`, `3m05s`, `2h07m`, `3d04h`.
pub fn duration_text(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::NodeState::*;
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(-5), "0s");
        assert_eq!(duration_text(42_999), "42s");
        assert_eq!(duration_text(185_000), "3m05s");
        assert_eq!(duration_text(7_620_000), "2h07m");
        assert_eq!(duration_text(273_600_000), "3d04h");
    }

    #[test]
    fn names_round_trip() {
        for state in NodeState::ALL {
            assert_eq!(state.as_str().parse::<NodeState>(), Ok(state));
        }
        assert!("Ready".parse::<NodeState>().is_err());
    }

    #[test]
    fn the_happy_path_is_allowed() {
        let path = [
            Discovered,
            Ready,
            Provisioning,
            Installing,
            Installed,
            Deployed,
        ];
        for pair in path.windows(2) {
            assert!(
                pair[0].can_become(pair[1], false),
                "{} -> {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn finished_nodes_reinstall_only_when_forced() {
        for from in [Installed, Deployed, Failed] {
            assert!(!from.can_become(Provisioning, false), "{from}");
            assert!(from.can_become(Provisioning, true), "{from}");
        }
    }

    #[test]
    fn nothing_skips_ahead_or_goes_back() {
        assert!(!Ready.can_become(Installed, false));
        assert!(!Provisioning.can_become(Deployed, true));
        assert!(!Deployed.can_become(Failed, false));
        assert!(!Installing.can_become(Provisioning, true));
        assert!(!Discovered.can_become(Provisioning, true));
    }
}
