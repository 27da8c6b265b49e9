//! Whom to dial and when. Only the lower peer id dials at once, so two nodes that find
//! each other at the same moment never race two Noise handshakes; unreachable peers are
//! redialled with a doubling backoff.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

use libp2p::{Multiaddr, PeerId};
use offgrid_net::Dial;

use super::service::Service;
use crate::now_ms;

/// How long the higher peer id waits for the lower one to dial before dialling itself.
const HIGHER_ID_GRACE: Duration = Duration::from_secs(15);
/// Longest wait between redials of an unreachable peer.
const MAX_REDIAL_BACKOFF: Duration = Duration::from_secs(60);
/// Between two Kademlia bootstraps.
const KAD_BOOTSTRAP_EVERY: Duration = Duration::from_secs(60);
/// Most peers with a redial schedule (the registry is bounded too; this bounds the map
/// even if a flood of discoveries outruns it).
const MAX_SCHEDULED: usize = 4096;

/// The dial policy's state.
pub(super) struct Dialer {
    bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Next allowed dial and the current backoff, per peer.
    schedule: HashMap<PeerId, (Instant, Duration)>,
    last_redial: Instant,
    last_kad_bootstrap: Instant,
}

/// What to do about a peer we are not connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Nothing now.
    Wait,
    /// Dial, with the new backoff recorded.
    Dial,
}

impl Dialer {
    pub(super) fn new(bootstrap: Vec<(PeerId, Multiaddr)>, now: Instant) -> Self {
        Dialer {
            bootstrap,
            schedule: HashMap::new(),
            last_redial: now,
            last_kad_bootstrap: now,
        }
    }

    /// A connection opened: no more redials for it.
    pub(super) fn connected(&mut self, peer: &PeerId) {
        self.schedule.remove(peer);
    }

    /// Decides about a disconnected peer with known addresses. `we_dial` says whether we
    /// are the lower id.
    pub(super) fn decide(&mut self, peer: PeerId, we_dial: bool, now: Instant) -> Decision {
        if self.schedule.len() >= MAX_SCHEDULED && !self.schedule.contains_key(&peer) {
            self.schedule.retain(|_, (next, _)| *next > now);
            if self.schedule.len() >= MAX_SCHEDULED {
                return Decision::Wait;
            }
        }
        if !we_dial && !self.schedule.contains_key(&peer) {
            // The lower id should dial us. If it has not after a grace period (it may only
            // know an address we no longer listen on, say after our restart), we dial too.
            self.schedule
                .insert(peer, (now + HIGHER_ID_GRACE, HIGHER_ID_GRACE / 2));
            return Decision::Wait;
        }
        if let Some((next, _)) = self.schedule.get(&peer) {
            if *next > now {
                return Decision::Wait;
            }
        }
        let backoff = self
            .schedule
            .get(&peer)
            .map_or(Duration::from_secs(1), |(_, b)| {
                (*b * 2).min(MAX_REDIAL_BACKOFF)
            });
        self.schedule.insert(peer, (now + backoff, backoff));
        Decision::Dial
    }
}

impl Service {
    /// Whether this node should be the one to dial `peer` at once.
    fn we_dial(&self, peer: &PeerId) -> bool {
        self.identity.peer_id().to_bytes() < peer.to_bytes()
    }

    pub(super) fn maybe_dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, now: Instant) {
        if addrs.is_empty() || self.connected.contains(&peer) {
            return;
        }
        let we = self.we_dial(&peer);
        if self.dialer.decide(peer, we, now) == Decision::Dial {
            self.net.dial(Dial {
                peer,
                addrs,
                new_port: true,
                only_if_disconnected: false,
            });
        }
    }

    /// At start: tell Kademlia about the bootstrap peers and dial them.
    pub(super) fn dial_bootstrap(&mut self) {
        // Peers restored from the store: Kademlia learns their addresses, so a request to
        // one that is not connected yet dials it (the router keeps no address book).
        let known: Vec<(PeerId, Multiaddr)> = self
            .registry
            .iter()
            .filter(|r| r.via == "ip")
            .filter_map(|r| Some((r.peer_id.parse().ok()?, r.addrs.clone())))
            .flat_map(|(p, addrs): (PeerId, Vec<String>)| {
                addrs
                    .into_iter()
                    .filter_map(move |a| Some((p, a.parse().ok()?)))
            })
            .collect();
        for (peer, addr) in known {
            self.net.kad_address(peer, addr);
        }
        for (peer, addr) in self.dialer.bootstrap.clone() {
            self.net.kad_address(peer, addr.clone());
            self.registry
                .observe(&peer.to_string(), Some(&addr.to_string()), "ip", now_ms());
            self.dial_plain(peer, addr);
        }
        if !self.dialer.bootstrap.is_empty() {
            self.net.kad_bootstrap();
        }
    }

    fn dial_plain(&self, peer: PeerId, addr: Multiaddr) {
        if !self.connected.contains(&peer) {
            self.net.dial(Dial {
                peer,
                addrs: vec![addr],
                new_port: false,
                only_if_disconnected: false,
            });
        }
    }

    /// Every redial interval: known IP peers we lost, and the bootstrap peers.
    pub(super) fn redial_tick(&mut self, now: Instant) {
        let every = Duration::from_secs(self.cfg.network.redial_interval_s.max(1));
        if now.duration_since(self.dialer.last_redial) >= every {
            self.dialer.last_redial = now;
            let lost: Vec<(PeerId, Vec<Multiaddr>)> = self
                .registry
                .iter()
                .filter(|r| !r.connected && r.via == "ip")
                .filter_map(|r| {
                    let peer: PeerId = r.peer_id.parse().ok()?;
                    let addrs = r.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                    Some((peer, addrs))
                })
                .collect();
            for (peer, addrs) in lost {
                self.maybe_dial(peer, addrs, now);
            }
            for (peer, addr) in self.dialer.bootstrap.clone() {
                self.dial_plain(peer, addr);
            }
        }
        if now.duration_since(self.dialer.last_kad_bootstrap) >= KAD_BOOTSTRAP_EVERY {
            self.dialer.last_kad_bootstrap = now;
            self.net.kad_bootstrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_id_dials_at_once_the_higher_after_a_grace_then_backoff_doubles() {
        let t = Instant::now();
        let mut d = Dialer::new(Vec::new(), t);
        let p = PeerId::random();
        assert_eq!(d.decide(p, true, t), Decision::Dial);
        assert_eq!(d.decide(p, true, t), Decision::Wait, "backoff 1 s");
        assert_eq!(
            d.decide(p, true, t + Duration::from_secs(1)),
            Decision::Dial
        );
        assert_eq!(
            d.decide(p, true, t + Duration::from_secs(2)),
            Decision::Wait,
            "now 2 s"
        );
        assert_eq!(
            d.decide(p, true, t + Duration::from_secs(3)),
            Decision::Dial
        );

        let q = PeerId::random();
        assert_eq!(
            d.decide(q, false, t),
            Decision::Wait,
            "the other side dials first"
        );
        assert_eq!(
            d.decide(q, false, t + Duration::from_secs(14)),
            Decision::Wait
        );
        assert_eq!(d.decide(q, false, t + HIGHER_ID_GRACE), Decision::Dial);
        d.connected(&q);
        assert_eq!(
            d.decide(q, false, t + HIGHER_ID_GRACE),
            Decision::Wait,
            "grace again"
        );
    }

    #[test]
    fn backoff_never_exceeds_a_minute_and_the_schedule_is_bounded() {
        let t = Instant::now();
        let mut d = Dialer::new(Vec::new(), t);
        let p = PeerId::random();
        let mut now = t;
        for _ in 0..20 {
            now += MAX_REDIAL_BACKOFF;
            d.decide(p, true, now);
        }
        assert_eq!(d.schedule[&p].1, MAX_REDIAL_BACKOFF);
        for _ in 0..MAX_SCHEDULED + 10 {
            d.decide(PeerId::random(), true, t);
        }
        assert!(d.schedule.len() <= MAX_SCHEDULED);
    }
}
