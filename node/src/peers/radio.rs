//! Peers heard by radio beacon, and which requests leave over radio.
//!
//! The radio gateway's tasks never touch the registry: they hand verified beacons to the
//! peer service, which merges them in order. A request to a peer heard only by radio (by
//! beacon and not connected over IP) leaves through the gateway instead of the swarm.

use std::collections::HashMap;

use libp2p::PeerId;
use tracing::debug;

use super::{registry::BeaconSummary, service::Service, Candidate};
use crate::{
    mesh::mesh_factor,
    now_ms,
    radio::{BeaconInfo, RadioHandle},
};

/// Most radio peers remembered (a LoRa channel carries a few dozen stations; beacons are
/// signed, but keys cost nothing).
const MAX_RADIO_PEERS: usize = 1024;

/// The peer service's radio state.
#[derive(Default)]
pub(super) struct RadioPeers {
    pub(super) handle: Option<RadioHandle>,
    peers: HashMap<PeerId, BeaconInfo>,
}

/// Whether a beacon's capabilities cover a job type: `echo` needs ECHO, anything else
/// COMPUTE (the quote tells whether the host really has that executor).
pub fn covers(capabilities: u16, job_type: &str) -> bool {
    use offgrid_transports::beacon::Capabilities as C;
    let caps = C(capabilities);
    match job_type {
        "echo" => caps.contains(C::ECHO),
        _ => caps.contains(C::COMPUTE),
    }
}

impl Service {
    pub(super) fn on_beacon(&mut self, b: BeaconInfo) {
        let now = now_ms();
        let peer = b.peer.to_string();
        for ip in &b.ip_addrs {
            self.registry.observe(&peer, Some(ip), b.via, now);
        }
        let summary = BeaconSummary {
            active: b.active,
            capabilities: b.capabilities,
            price: b.price,
            heard_ms: now,
        };
        self.registry.beacon(&peer, &b.addr, b.via, summary);
        debug!(%peer, via = b.via, active = b.active, "beacon merged");
        if self.radio.peers.len() >= MAX_RADIO_PEERS && !self.radio.peers.contains_key(&b.peer) {
            return;
        }
        self.radio.peers.insert(b.peer, b);
    }

    /// The gateway, when requests to `peer` go over radio: heard by beacon and not
    /// connected over IP.
    pub(super) fn radio_route(&self, peer: &PeerId) -> Option<RadioHandle> {
        let h = self.radio.handle.as_ref()?;
        (self.radio.peers.contains_key(peer) && !self.connected.contains(peer)).then(|| h.clone())
    }

    /// Active hosts offering `job_type`: by announcement, then radio peers whose beacon
    /// offers it (unless an announcement already makes them a candidate).
    pub(super) fn candidates(&self, job_type: &str) -> Vec<Candidate> {
        let mesh = self.mesh_factor();
        let announced = self.registry.iter().filter_map(|r| {
            let a = r.announcement.as_ref()?;
            if !a.active || !a.job_types.iter().any(|t| t == job_type) {
                return None;
            }
            Some(Candidate {
                peer: r.peer_id.parse().ok()?,
                id: r.peer_id.clone(),
                via: r.via.clone(),
                price: *a.prices.get(job_type)?,
                mesh,
            })
        });
        let by_radio = self
            .radio
            .peers
            .values()
            .filter(|b| b.active && covers(b.capabilities, job_type))
            .filter(|b| {
                self.registry
                    .get(&b.peer.to_string())
                    .is_none_or(|r| r.announcement.is_none())
            })
            .map(|b| Candidate {
                peer: b.peer,
                id: b.peer.to_string(),
                via: b.via.to_owned(),
                price: u64::from(b.price.unwrap_or(0)),
                mesh: 1.0,
            });
        announced.chain(by_radio).collect()
    }

    /// The broker's mesh factor for hosts reached over IP, from the latest mesh metrics.
    fn mesh_factor(&self) -> f64 {
        match &*self.mesh.borrow() {
            Some(m) => mesh_factor(
                Some(m.mesh_ok),
                m.neighbours,
                m.path_metric.map(|v| v.clamp(0.0, 1.0)),
            ),
            None => 1.0,
        }
    }
}
