//! Auction scoring: a pure function of a bid and what the broker knows about the host.
//!
//! `score = price × link factor × reputation factor × mesh factor`; the lowest score wins.
//! - link factor: `ip` 1.0, `ble` 1.05, `lora` 1.1, anything else 1.2 — slower links cost;
//! - reputation factor: `2 − (hits + 1) / (hits + misses + 2)`, in (1, 2): a host with no
//!   history scores 1.5, a reliable one approaches 1, an unreliable one approaches 2;
//! - mesh factor: 1.0 (neutral) until mesh metrics exist; see [`mesh_factor`].
//!
//! Ties are broken by peer id, so every broker ranks the same bids the same way.

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
        "ip" => 1.0,
        "ble" => 1.05,
        "lora" => 1.1,
        _ => 1.2,
    }
}

/// Reputation factor from hit and miss counts (Laplace-smoothed success rate).
pub fn reputation_factor(hits: u64, misses: u64) -> f64 {
    let success = (hits as f64 + 1.0) / (hits as f64 + misses as f64 + 2.0);
    2.0 - success
}

pub use crate::mesh::mesh_factor;

/// The bid's score; lower is better.
pub fn score(b: &Bid) -> f64 {
    b.price as f64 * link_factor(&b.via) * reputation_factor(b.hits, b.misses) * b.mesh
}

/// Sorts bids best first; ties broken by peer id.
pub fn rank(mut bids: Vec<Bid>) -> Vec<Bid> {
    bids.sort_by(|a, b| {
        score(a)
            .partial_cmp(&score(b))
            .unwrap_or(Ordering::Equal)
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
        assert!((reputation_factor(0, 0) - 1.5).abs() < 1e-12);
        assert!(reputation_factor(1000, 0) < 1.01);
        assert!(reputation_factor(0, 1000) > 1.99);
        assert_eq!(link_factor("ble"), 1.05);
        assert_eq!(link_factor("carrier-pigeon"), 1.2);
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
