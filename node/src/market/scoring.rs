//! Auction scoring: a pure function of a bid and what the broker knows about the host.
//!
//! Hosts in good standing rank before demoted ones ([`demoted`]: at least
//! [`DEMOTE_AFTER_MISSES`] misses and more misses than hits), whatever their price. Within a
//! rank, `score = price × link factor × reputation factor × mesh factor`; the lowest wins.
//! - link factor: `ip` and `udp` (a LAN) 1.0, `ble` 1.05, `lora` 1.1, anything else 1.2 — slower links cost;
//! - reputation factor: `1 / s²` with `s = (hits + 1) / (hits + misses + 1)`: 1 for a host
//!   that has not failed (a new host competes on price), 4 after one miss, 9 after two; so a
//!   host that keeps failing drops out of the top ranks after a few misses, however cheap;
//! - mesh factor: 1.0 (neutral) until mesh metrics exist; see [`mesh_factor`].
//!
//! A zero price is no bid at all (the broker drops it). Ties are broken by peer id, so
//! every broker ranks the same bids the same way.

use std::cmp::Ordering;

/// What the broker knows about one host's quote.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    /// Host peer id (text form).
    pub peer: String,
    /// Quoted price per unit, micro-credits.
    pub price: u64,
    /// Link the host is heard over.
    pub via: String,
    /// Jobs the host completed for us.
    pub hits: u64,
    /// Jobs the host failed, timed out or forged.
    pub misses: u64,
    /// Mesh health factor, 1.0 when unknown.
    pub mesh: f64,
}

/// Cost factor of the link a host is heard over.
pub fn link_factor(via: &str) -> f64 {
    match via {
        // UDP multicast runs on a LAN segment: priced like IP, as the design says.
        "ip" | "udp" => 1.0,
        "ble" => 1.05,
        "lora" => 1.1,
        _ => 1.2,
    }
}

/// Misses after which a host that fails more than it succeeds is demoted.
pub const DEMOTE_AFTER_MISSES: u64 = 3;

/// Success rate with an optimistic prior: a host that has not failed counts as reliable.
pub fn success_rate(hits: u64, misses: u64) -> f64 {
    (hits as f64 + 1.0) / (hits as f64 + misses as f64 + 1.0)
}

/// Reputation factor: `1 / success²`, at least 1.
pub fn reputation_factor(hits: u64, misses: u64) -> f64 {
    let s = success_rate(hits, misses);
    1.0 / (s * s)
}

/// Whether a host fails too often to compete on price.
pub fn demoted(hits: u64, misses: u64) -> bool {
    misses >= DEMOTE_AFTER_MISSES && misses > hits
}

pub use crate::mesh::mesh_factor;

/// The bid's score; lower is better.
pub fn score(b: &Bid) -> f64 {
    b.price as f64 * link_factor(&b.via) * reputation_factor(b.hits, b.misses) * b.mesh
}

/// Sorts bids best first; ties broken by peer id.
pub fn rank(mut bids: Vec<Bid>) -> Vec<Bid> {
    bids.sort_by(|a, b| {
        demoted(a.hits, a.misses)
            .cmp(&demoted(b.hits, b.misses))
            .then_with(|| score(a).partial_cmp(&score(b)).unwrap_or(Ordering::Equal))
            .then_with(|| a.peer.cmp(&b.peer))
    });
    bids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bid(peer: &str, price: u64, via: &str, hits: u64, misses: u64) -> Bid {
        Bid {
            peer: peer.into(),
            price,
            via: via.into(),
            hits,
            misses,
            mesh: 1.0,
        }
    }

    #[test]
    fn cheapest_wins_all_else_equal() {
        let r = rank(vec![
            bid("a", 30, "ip", 0, 0),
            bid("b", 10, "ip", 0, 0),
            bid("c", 20, "ip", 0, 0),
        ]);
        assert_eq!(
            r.iter().map(|b| b.peer.as_str()).collect::<Vec<_>>(),
            ["b", "c", "a"]
        );
    }

    #[test]
    fn link_and_reputation_weigh_in() {
        // 100 over LoRa (×1.1) loses to 105 over IP.
        let r = rank(vec![
            bid("lora", 100, "lora", 0, 0),
            bid("ip", 105, "ip", 0, 0),
        ]);
        assert_eq!(r[0].peer, "ip");
        // A host that keeps failing loses to a slightly dearer reliable one.
        let r = rank(vec![
            bid("flaky", 100, "ip", 0, 10),
            bid("solid", 120, "ip", 10, 0),
        ]);
        assert_eq!(r[0].peer, "solid");
        assert_eq!(reputation_factor(0, 0), 1.0, "a new host competes on price");
        assert_eq!(reputation_factor(1000, 0), 1.0);
        assert_eq!(reputation_factor(0, 1), 4.0);
        assert!(reputation_factor(0, 1000) > 1e6);
        assert_eq!(link_factor("ble"), 1.05);
        assert_eq!(link_factor("carrier-pigeon"), 1.2);
        assert_eq!(link_factor("udp"), 1.0);
    }

    /// A host at price 0.0001 that fails every job against an honest one at 0.03: it wins
    /// while its misses are few, then is demoted for good.
    #[test]
    fn a_cheap_host_that_keeps_failing_gets_at_most_three_of_twenty_jobs() {
        let (mut liar, mut honest) = ((0u64, 0u64), (0u64, 0u64));
        let mut liar_jobs = 0;
        for _ in 0..20 {
            let r = rank(vec![
                bid("liar", 100, "ip", liar.0, liar.1),
                bid("honest", 30_000, "ip", honest.0, honest.1),
            ]);
            if r[0].peer == "liar" {
                liar_jobs += 1;
                liar.1 += 1;
            }
            // The job fails over to the honest host, or goes there first.
            honest.0 += 1;
        }
        assert!(liar_jobs <= 3, "the liar got {liar_jobs} of 20");
        assert_eq!(liar_jobs, 3);
        // Demoted whatever its price: even free work would not bring it back.
        let r = rank(vec![
            bid("liar", 1, "ip", 0, 3),
            bid("honest", u64::MAX / 4, "ip", 20, 0),
        ]);
        assert_eq!(r[0].peer, "honest");
        // It comes back by succeeding (when nothing better is there).
        assert!(!demoted(4, 3));
    }

    #[test]
    fn ties_are_broken_by_peer_id_whatever_the_input_order() {
        let a = rank(vec![bid("z", 10, "ip", 0, 0), bid("m", 10, "ip", 0, 0)]);
        let b = rank(vec![bid("m", 10, "ip", 0, 0), bid("z", 10, "ip", 0, 0)]);
        assert_eq!(a, b);
        assert_eq!(a[0].peer, "m");
    }

    #[test]
    fn mesh_factor_is_neutral_without_metrics_and_penalises_a_bad_mesh() {
        assert_eq!(mesh_factor(None, 9, Some(1.0)), 1.0);
        assert!(mesh_factor(Some(true), 5, None) < 1.0);
        assert!(mesh_factor(Some(false), 0, None) > 1.2);
        assert!(mesh_factor(Some(true), 0, Some(1.0)) > mesh_factor(Some(true), 0, Some(0.0)));
    }
}
