//! Enlistment (`seed.enlist`): a machine seed does not know boots seed's agent, which inspects
//! it and posts what it found; the machine is then listed as discovered with its inventory until
//! an operator adopts it (`seed adopt`), as MAAS enlists and Ironic's inspector discovers.
//!
//! An unknown machine has no token, so what vouches for its report is the network: it must come
//! from the address seed's DHCP leased to the MAC it names, while that lease holds, for a MAC
//! seed's DHCP saw and no node owns, and the inspection must list that MAC. What a stranger can
//! leave is one bounded inspection per MAC it holds a lease for, and at most
//! [`MAX_ENLISTED`](crate::store::MAX_ENLISTED) of those in all.

use std::net::IpAddr;

use super::nodes::{NodeError, Nodes};
use super::sightings::requester_v4;
use crate::agent::inspect::Inspection;
use crate::net::MacAddr;
use crate::store::{Enlisted, Store, now_ms};

impl Nodes {
    /// The iPXE script of the unknown machine `mac` under `seed.enlist`: seed's agent from
    /// `agent_image` to enlist it, once; an enlisted machine (or one DHCP did not see) boots
    /// its disk. `store` is the caller's (it holds the lock).
    pub(super) fn enlist_script(
        &self,
        store: &Store,
        mac: MacAddr,
        agent_image: &str,
    ) -> Result<String, NodeError> {
        let found = store.discovered_one(mac)?;
        let why = match &found {
            None => Some(format!(
                "{mac} is not a configured node and seed's DHCP has not seen it"
            )),
            Some((_, Some(_))) => Some(format!(
                "{mac} is enlisted; seed adopt {mac} --name NAME --role ROLE --bmc ADDRESS makes it a node"
            )),
            Some((_, None)) => None,
        };
        if let Some(why) = why {
            return Ok(ipxe::script::local_disk(&why));
        }
        let image = match self.images.get(agent_image) {
            Ok(Some(image)) => image,
            Ok(None) | Err(_) => {
                let why = format!(
                    "cannot enlist {mac}: the agent image {agent_image} is not registered (seed images add {agent_image} …)"
                );
                crate::limited!(self.enlist_log(), warn, "{why}");
                return Ok(ipxe::script::local_disk(&why));
            }
        };
        let config = self.config();
        let base = format!("{}/images/{}", config.seed.url, image.name);
        let (kernel_url, initrd_url) = (
            format!("{base}/{}", image.kernel),
            format!("{base}/{}", image.initrd),
        );
        Ok(ipxe::script::deploy(&ipxe::script::Deploy {
            node: &mac.to_string(),
            mac_hexhyp: &mac.hexhyp(),
            kernel_url: &kernel_url,
            initrd_url: &initrd_url,
            seed_url: &config.seed.url,
            token: None,
            // Where a stranger's serial console is, nobody has said: the first UART and the
            // screen, as MAAS boots its enlistment (the agent's lines go to the first UART).
            console: Some("ttyS0,115200n8"),
            args: &image.kernel_args,
        }))
    }

    /// seed's agent enlists the unknown machine `mac` (`POST /enlist/<mac>` from `peer`) with
    /// what it found on it; seed's summary of it.
    pub fn enlist(
        &self,
        mac: MacAddr,
        peer: IpAddr,
        inspection: &Inspection,
    ) -> Result<String, NodeError> {
        if self.config().seed.enlist.is_none() {
            return Err(NodeError::Refused(
                "seed does not enlist unknown machines (seed.enlist is off)".into(),
            ));
        }
        if let Some(node) = self.provisioner().node_of(mac) {
            return Err(NodeError::Conflict(format!(
                "{mac} is {}'s; a node's agent reports with its token",
                node.name
            )));
        }
        let mut store = self.store();
        let lease = store.lease(mac)?;
        let from = requester_v4(peer);
        match lease {
            Some(lease) if Some(lease.ip) == from && lease.expires_at > now_ms() => {}
            Some(lease) => {
                return Err(NodeError::Refused(format!(
                    "asked from {}, which is not the address seed leased to {mac} ({}, or it expired)",
                    peer.to_canonical(),
                    lease.ip
                )));
            }
            None => {
                return Err(NodeError::Refused(format!(
                    "seed leased no address to {mac}"
                )));
            }
        }
        // Who asks first, then what they say.
        if !inspection.nics.iter().any(|n| n.mac == mac) {
            return Err(NodeError::Invalid(format!(
                "nics: {mac} is not among the machine's NICs"
            )));
        }
        let summary = inspection.summary();
        match store.record_enlisted(mac, inspection)? {
            Enlisted::Recorded => {
                crate::limited!(self.enlist_log(), info, %mac, %summary, "enlisted an unknown machine");
                Ok(format!("{mac} enlisted: {summary}"))
            }
            Enlisted::NotSeen => Err(NodeError::Refused(format!(
                "seed's DHCP has not seen {mac}"
            ))),
            Enlisted::Kept => {
                crate::limited!(
                    self.enlist_log(),
                    warn,
                    %mac,
                    peer = %peer.to_canonical(),
                    %summary,
                    "a second, different enlistment for an enlisted machine was refused: another host may be using its MAC"
                );
                Err(NodeError::Conflict(format!(
                    "{mac} is enlisted already; its first inspection is kept until it is adopted (seed adopt)"
                )))
            }
            Enlisted::Full => Err(NodeError::Unavailable(format!(
                "{} machines are enlisted and wait to be adopted (seed adopt) or to age out; {mac} is not kept",
                crate::store::MAX_ENLISTED
            ))),
        }
    }
}
