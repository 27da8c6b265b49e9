//! NAT traversal: the relay v2 server and client, DCUtR hole punching and AutoNAT v2, all
//! rust-libp2p's own protocols. This module only sizes them from [`RelayLimits`]; the event
//! loop routes their events.

use std::{collections::HashMap, time::Duration};

use libp2p::{autonat, dcutr, relay, PeerId, Swarm};
use rand::{rngs::StdRng, SeedableRng};
use tracing::{debug, info};

use crate::{Behaviour, BehaviourEvent};

/// Bounds of a relay server (the node's `[network] relay_server`). Relay v2's defaults are
/// sized for coordination, not data (128 KiB and 2 minutes per circuit): bulk traffic is
/// meant to move to a direct connection once DCUtR has punched one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Most reservations held at once, over every peer.
    pub max_reservations: usize,
    /// Most reservations one peer holds.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before it must be renewed.
    pub reservation_duration: Duration,
    /// Most circuits relayed at once.
    pub max_circuits: usize,
    /// Most circuits relayed for one peer.
    pub max_circuits_per_peer: usize,
    /// Longest life of one circuit.
    pub max_circuit_duration: Duration,
    /// Most bytes one circuit carries (each way) before the relay closes it.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_reservations_per_peer: 4,
            reservation_duration: Duration::from_secs(3600),
            max_circuits: 16,
            max_circuits_per_peer: 4,
            max_circuit_duration: Duration::from_secs(120),
            max_circuit_bytes: 128 * 1024,
        }
    }
}

impl RelayLimits {
    /// The relay server's config; libp2p's per-peer and per-IP rate limiters stay on, so a
    /// reservation flood from one peer or address is refused past the rate as well as past
    /// the caps.
    pub fn relay_config(&self) -> relay::Config {
        relay::Config {
            max_reservations: self.max_reservations,
            max_reservations_per_peer: self.max_reservations_per_peer,
            reservation_duration: self.reservation_duration,
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer,
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            ..relay::Config::default()
        }
    }
}

/// The relay server behaviour, when this node is a relay.
pub fn relay_server(peer: PeerId, limits: Option<&RelayLimits>) -> Option<relay::Behaviour> {
    limits.map(|l| relay::Behaviour::new(peer, l.relay_config()))
}

/// The AutoNAT v2 client: asks peers to dial back each candidate address, one at a time.
pub fn autonat_client() -> autonat::v2::client::Behaviour {
    autonat::v2::client::Behaviour::new(
        StdRng::from_rng(&mut rand::rng()),
        autonat::v2::client::Config::default(),
    )
}

/// The AutoNAT v2 server: dials back only the address asked about, after the client has
/// paid for the dial with bytes of its own, so it cannot be used for amplification.
pub fn autonat_server() -> autonat::v2::server::Behaviour {
    autonat::v2::server::Behaviour::new(StdRng::from_rng(&mut rand::rng()))
}

/// Why a shard request is refused on a peer reachable only through a relay.
pub const RELAYED_ONLY: &str = "the peer is reachable only through a relay, whose circuits \
     carry at most 128 KiB and 2 minutes: shard transfers need a direct connection (hole \
     punching has not succeeded yet)";

/// Open connections per peer, direct and relayed. Bounded by the swarm's connection limit:
/// an entry exists only while the peer has a connection.
#[derive(Debug, Default)]
pub(crate) struct Paths {
    open: HashMap<PeerId, (u32, u32)>,
}

impl Paths {
    /// A connection opened.
    pub(crate) fn opened(&mut self, peer: PeerId, relayed: bool) {
        let e = self.open.entry(peer).or_default();
        if relayed {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }

    /// A connection closed.
    pub(crate) fn closed(&mut self, peer: PeerId, relayed: bool) {
        if let Some(e) = self.open.get_mut(&peer) {
            let n = if relayed { &mut e.1 } else { &mut e.0 };
            *n = n.saturating_sub(1);
            if *e == (0, 0) {
                self.open.remove(&peer);
            }
        }
    }

    /// The peer is connected, but only through relays: bulk data must wait for a direct
    /// connection.
    pub(crate) fn relayed_only(&self, peer: &PeerId) -> bool {
        self.open.get(peer).is_some_and(|&(d, r)| d == 0 && r > 0)
    }
}

/// Routes an event of the NAT behaviours; returns the event back when it is not one of them.
///
/// An address AutoNAT v2 confirms becomes an external address (announced by identify and
/// used by DCUtR); one it refutes is withdrawn, so a node does not keep announcing an
/// address it does not have.
pub(crate) fn on_event(swarm: &mut Swarm<Behaviour>, ev: BehaviourEvent) -> Option<BehaviourEvent> {
    match ev {
        BehaviourEvent::Autonat(autonat::v2::client::Event {
            tested_addr,
            server,
            result,
            ..
        }) => match result {
            Ok(()) => {
                info!(addr = %tested_addr, %server, "address reachable");
                swarm.add_external_address(tested_addr);
            }
            Err(error) => {
                debug!(addr = %tested_addr, %server, %error, "address not reachable");
                swarm.remove_external_address(&tested_addr);
            }
        },
        BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
            relay_peer_id,
            renewal,
            ..
        }) => info!(relay = %relay_peer_id, renewal, "relay reservation accepted"),
        BehaviourEvent::RelayClient(ev) => debug!(?ev, "relay client"),
        BehaviourEvent::RelayServer(ev) => debug!(?ev, "relay server"),
        BehaviourEvent::Dcutr(dcutr::Event {
            remote_peer_id,
            result,
        }) => match result {
            Ok(_) => info!(peer = %remote_peer_id, "hole punched: direct connection"),
            Err(error) => debug!(peer = %remote_peer_id, %error, "hole punch failed"),
        },
        BehaviourEvent::AutonatServer(ev) => debug!(?ev, "autonat server"),
        other => return Some(other),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_relay_v2s_coordination_sizes() {
        let l = RelayLimits::default();
        assert_eq!(l.max_circuit_bytes, 128 * 1024);
        assert_eq!(l.max_circuit_duration, Duration::from_secs(120));
        let c = l.relay_config();
        assert_eq!(c.max_reservations, 128);
        assert_eq!(c.max_circuits, 16);
        assert!(relay_server(PeerId::random(), None).is_none());
        assert!(relay_server(PeerId::random(), Some(&l)).is_some());
    }

    #[test]
    fn a_peer_is_relayed_only_until_a_direct_connection_opens() {
        let mut p = Paths::default();
        let peer = PeerId::random();
        assert!(!p.relayed_only(&peer));
        p.opened(peer, true);
        assert!(p.relayed_only(&peer));
        p.opened(peer, false);
        assert!(!p.relayed_only(&peer));
        p.closed(peer, false);
        assert!(p.relayed_only(&peer));
        p.closed(peer, true);
        assert!(p.open.is_empty());
    }
}
