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
    /// Each radio peer's latest beacon and when it was heard (Unix ms).
    peers: HashMap<PeerId, (BeaconInfo, u64)>,
}

impl RadioPeers {
    /// How long a silent radio peer stays one (see [`crate::radio::Gateway::peer_expiry`]).
    fn expiry_ms(&self) -> u64 {
        let e = self
            .handle
            .as_ref()
            .map_or(std::time::Duration::from_secs(3 * 60), |h| h.peer_expiry());
        u64::try_from(e.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a beacon heard at `now_ms`. At capacity, silent peers are forgotten first;
    /// if every remembered peer is live, a new one is not taken (keys cost nothing, and a
    /// flood of fresh ones must not push out the stations already heard).
    fn insert(&mut self, b: BeaconInfo, now_ms: u64) {
        if self.peers.len() >= MAX_RADIO_PEERS && !self.peers.contains_key(&b.peer) {
            let expiry = self.expiry_ms();
            self.peers
                .retain(|_, (_, heard)| now_ms.saturating_sub(*heard) <= expiry);
            if self.peers.len() >= MAX_RADIO_PEERS {
                return;
            }
        }
        self.peers.insert(b.peer, (b, now_ms));
    }

    /// The latest beacon of each peer heard within the expiry.
    fn live_beacons(&self, now_ms: u64) -> impl Iterator<Item = &BeaconInfo> {
        let expiry = self.expiry_ms();
        self.peers
            .values()
            .filter(move |(_, heard)| now_ms.saturating_sub(*heard) <= expiry)
            .map(|(b, _)| b)
    }

    /// Whether `peer` is a live radio peer.
    fn is_live(&self, peer: &PeerId, now_ms: u64) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|(_, heard)| now_ms.saturating_sub(*heard) <= self.expiry_ms())
    }
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
        self.radio.insert(b, now);
    }

    /// The gateway, when requests to `peer` go over radio: heard by beacon within the
    /// expiry and not connected over IP.
    pub(super) fn radio_route(&self, peer: &PeerId) -> Option<RadioHandle> {
        let h = self.radio.handle.as_ref()?;
        (self.radio.is_live(peer, now_ms()) && !self.connected.contains(peer)).then(|| h.clone())
    }

    /// Active hosts offering `job_type`: by announcement, then live radio peers whose beacon
    /// offers it (unless an announcement already makes them a candidate). A radio peer that
    /// missed three beacons is no candidate, so a dead station stops widening quote windows.
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
            .live_beacons(now_ms())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon(peer: PeerId) -> BeaconInfo {
        BeaconInfo {
            peer,
            via: "lora",
            addr: "/offgrid-radio/kiss0/01".into(),
            active: true,
            capabilities: offgrid_transports::beacon::Capabilities::ECHO.0,
            price: Some(1),
            ip_addrs: vec![],
        }
    }

    #[test]
    fn a_radio_peer_that_misses_three_beacons_expires_and_a_new_beacon_revives_it() {
        let mut r = RadioPeers::default();
        let p = PeerId::random();
        r.insert(beacon(p), 1_000);
        let expiry = r.expiry_ms();
        assert!(r.is_live(&p, 1_000 + expiry));
        assert_eq!(r.live_beacons(1_000 + expiry).count(), 1);
        assert!(!r.is_live(&p, 1_001 + expiry));
        assert_eq!(r.live_beacons(1_001 + expiry).count(), 0);
        r.insert(beacon(p), 2_000 + expiry);
        assert!(r.is_live(&p, 2_000 + expiry));
    }

    #[test]
    fn a_flood_of_fresh_keys_is_bounded_and_evicts_no_live_station_but_silent_ones_make_room() {
        let mut r = RadioPeers::default();
        let station = PeerId::random();
        r.insert(beacon(station), 0);
        for i in 0..(2 * MAX_RADIO_PEERS as u64) {
            r.insert(beacon(PeerId::random()), i % 100);
        }
        assert_eq!(r.peers.len(), MAX_RADIO_PEERS);
        assert!(r.is_live(&station, 100));
        // Once the flood falls silent, new stations are heard again.
        let later = r.expiry_ms() + 1_000;
        let fresh = PeerId::random();
        r.insert(beacon(fresh), later);
        assert!(r.is_live(&fresh, later));
        assert_eq!(r.peers.len(), 1);
    }
}
