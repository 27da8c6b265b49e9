//! Weighted acknowledgement quorums (design v0.15) for uploads, jobs and tokens.
//!
//! An item needs acknowledgements ([`Ack`]) whose *effective* weight reaches `required`. An
//! ack's weight decays with age: at time `now` an ack of weight `w` and age `a` seconds counts
//! `w · 0.5^(a / half_life)` while `a ≤ max_age`, and 0 after. Weights here are floats by the
//! design's spec; they measure confidence, never money.
//!
//! [`Monitor`] watches items for stalled progress and asks for requeues.

mod monitor;

use std::collections::BTreeMap;

pub use monitor::{Monitor, Requeue};
use serde::{Deserialize, Serialize};

/// Most acks kept per item (one per node).
pub const MAX_ACKS: usize = 256;
/// Most progress samples kept per item.
pub const MAX_PROGRESS_SAMPLES: usize = 64;

/// What an item tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuorumKind {
    /// A stored file's shards.
    Upload,
    /// A compute job.
    Job,
    /// A token (wallet) operation.
    Token,
}

/// One node's acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Acknowledging node's peer id.
    pub node: String,
    /// Its weight when fresh.
    pub weight: f64,
    /// When it was received, Unix milliseconds.
    pub at_ms: u64,
}

/// Weighting rules for one kind of item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Weight of a node without an entry in `node_weights`.
    pub weight_default: f64,
    /// Per-node weight overrides.
    pub node_weights: BTreeMap<String, f64>,
    /// Seconds after which an ack counts half. Zero, negative or non-finite: no decay.
    pub decay_half_life_s: f64,
    /// Seconds after which an ack no longer counts. Non-finite: never expires.
    pub max_age_s: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            weight_default: 1.0,
            node_weights: BTreeMap::new(),
            decay_half_life_s: 600.0,
            max_age_s: 3600.0,
        }
    }
}

impl Policy {
    /// Sets the default weight.
    pub fn with_weight_default(mut self, w: f64) -> Self {
        self.weight_default = w;
        self
    }

    /// Sets a node's weight.
    pub fn with_node_weight(mut self, node: impl Into<String>, w: f64) -> Self {
        self.node_weights.insert(node.into(), w);
        self
    }

    /// Sets the decay half-life in seconds.
    pub fn with_half_life_s(mut self, s: f64) -> Self {
        self.decay_half_life_s = s;
        self
    }

    /// Sets the maximum ack age in seconds.
    pub fn with_max_age_s(mut self, s: f64) -> Self {
        self.max_age_s = s;
        self
    }

    /// The configured weight of `node`.
    pub fn weight_of(&self, node: &str) -> f64 {
        self.node_weights
            .get(node)
            .copied()
            .unwrap_or(self.weight_default)
    }

    /// What an ack of `weight` received at `at_ms` counts at `now_ms`. An ack from the future
    /// (clock skew) counts as fresh.
    pub fn decayed(&self, weight: f64, at_ms: u64, now_ms: u64) -> f64 {
        let age_s = now_ms.saturating_sub(at_ms) as f64 / 1000.0;
        if age_s > self.max_age_s {
            return 0.0;
        }
        let hl = self.decay_half_life_s;
        if !(hl.is_finite() && hl > 0.0) {
            return weight;
        }
        weight * 0.5f64.powf(age_s / hl)
    }
}

/// Policies per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policies {
    /// For uploads.
    pub upload: Policy,
    /// For jobs.
    pub job: Policy,
    /// For tokens.
    pub token: Policy,
}

impl Policies {
    /// The policy of `kind`.
    pub fn get(&self, kind: QuorumKind) -> &Policy {
        match kind {
            QuorumKind::Upload => &self.upload,
            QuorumKind::Job => &self.job,
            QuorumKind::Token => &self.token,
        }
    }
}

/// Weight of a node heard over link `via` with reputation `reputation` ∈ [0, 1]: a link factor
/// (`ip` and `udp` (a LAN link) 1.0, `ble` 0.9, `lora` 0.8, anything else 0.7: slower, lossier links are less sure to
/// have delivered) times a reputation factor `0.5 + 0.5 · reputation` ∈ [0.5, 1] (an unknown or
/// poorly rated node still counts half). Out-of-range or NaN reputations are clamped (NaN → 0).
pub fn auto_weight(via: &str, reputation: f64) -> f64 {
    let link = match via {
        "ip" | "udp" => 1.0,
        "ble" => 0.9,
        "lora" => 0.8,
        _ => 0.7,
    };
    let rep = if reputation.is_nan() {
        0.0
    } else {
        reputation.clamp(0.0, 1.0)
    };
    link * (0.5 + 0.5 * rep)
}

/// A progress observation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProgressSample {
    /// When observed, Unix milliseconds.
    pub at_ms: u64,
    /// Progress in [0, 1].
    pub value: f64,
}

/// Something waiting for a weighted quorum of acks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuorumItem {
    /// What it is.
    pub kind: QuorumKind,
    /// Its id (upload id, job id, tx id).
    pub id: String,
    /// Effective weight needed.
    pub required: f64,
    /// Acks, at most one per node.
    pub acks: Vec<Ack>,
    /// When it was created, Unix milliseconds.
    pub created_ms: u64,
    /// Progress history, oldest first.
    pub progress: Vec<ProgressSample>,
}

impl QuorumItem {
    /// A new item with no acks.
    pub fn new(kind: QuorumKind, id: impl Into<String>, required: f64, created_ms: u64) -> Self {
        Self {
            kind,
            id: id.into(),
            required,
            acks: Vec::new(),
            created_ms,
            progress: Vec::new(),
        }
    }

    /// Adds or refreshes `node`'s ack. A node counts once: a newer ack replaces its older one.
    /// Beyond [`MAX_ACKS`] nodes, the oldest ack is dropped.
    pub fn ack(&mut self, node: impl Into<String>, weight: f64, at_ms: u64) {
        let node = node.into();
        self.acks.retain(|a| a.node != node);
        if self.acks.len() >= MAX_ACKS {
            if let Some(oldest) = (0..self.acks.len()).min_by_key(|i| self.acks[*i].at_ms) {
                self.acks.remove(oldest);
            }
        }
        self.acks.push(Ack {
            node,
            weight,
            at_ms,
        });
    }

    /// Effective weight at `now_ms` under `policy`.
    pub fn effective_weight(&self, policy: &Policy, now_ms: u64) -> f64 {
        self.acks
            .iter()
            .map(|a| policy.decayed(a.weight, a.at_ms, now_ms))
            .sum()
    }

    /// Whether the effective weight reaches `required`.
    pub fn reached(&self, policy: &Policy, now_ms: u64) -> bool {
        self.effective_weight(policy, now_ms) >= self.required
    }

    /// Progress toward the quorum at `now_ms`, in [0, 1].
    pub fn quorum_progress(&self, policy: &Policy, now_ms: u64) -> f64 {
        if self.required <= 0.0 {
            return 1.0;
        }
        (self.effective_weight(policy, now_ms) / self.required).clamp(0.0, 1.0)
    }

    /// Records a progress observation (clamped to [0, 1]), keeping the last
    /// [`MAX_PROGRESS_SAMPLES`].
    pub fn record_progress(&mut self, at_ms: u64, value: f64) {
        let value = if value.is_nan() {
            0.0
        } else {
            value.clamp(0.0, 1.0)
        };
        self.progress.push(ProgressSample { at_ms, value });
        if self.progress.len() > MAX_PROGRESS_SAMPLES {
            let excess = self.progress.len() - MAX_PROGRESS_SAMPLES;
            self.progress.drain(..excess);
        }
    }

    /// Latest recorded progress (0 if none).
    pub fn latest_progress(&self) -> f64 {
        self.progress.last().map_or(0.0, |s| s.value)
    }

    /// Latest progress recorded at or before `at_ms` (0 if none).
    pub fn progress_at(&self, at_ms: u64) -> f64 {
        self.progress
            .iter()
            .rev()
            .find(|s| s.at_ms <= at_ms)
            .map_or(0.0, |s| s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::default()
            .with_half_life_s(10.0)
            .with_max_age_s(30.0)
    }

    #[test]
    fn decay_is_exact_at_half_lives() {
        let p = policy();
        let now = 100_000;
        assert_eq!(p.decayed(1.0, now, now), 1.0);
        assert_eq!(p.decayed(1.0, now - 10_000, now), 0.5);
        assert_eq!(p.decayed(1.0, now - 20_000, now), 0.25);
        assert_eq!(p.decayed(2.0, now - 30_000, now), 0.25);
        assert_eq!(p.decayed(1.0, now - 30_001, now), 0.0);
        // Future acks count as fresh.
        assert_eq!(p.decayed(1.0, now + 5_000, now), 1.0);
        // No decay without a positive half-life.
        assert_eq!(
            p.clone()
                .with_half_life_s(0.0)
                .decayed(1.0, now - 20_000, now),
            1.0
        );
        assert_eq!(
            p.with_max_age_s(f64::INFINITY)
                .with_half_life_s(f64::NAN)
                .decayed(0.7, 0, now),
            0.7
        );
    }

    #[test]
    fn effective_weight_sums_decayed_acks_once_per_node() {
        let p = policy();
        let mut item = QuorumItem::new(QuorumKind::Upload, "u1", 1.5, 0);
        item.ack("a", 1.0, 80_000); // age 20 s → 0.25
        item.ack("b", 1.0, 90_000); // age 10 s → 0.5
        item.ack("c", 1.0, 100_000); // age 0 → 1.0
        item.ack("d", 1.0, 50_000); // age 50 s → 0
        assert_eq!(item.effective_weight(&p, 100_000), 1.75);
        assert!(item.reached(&p, 100_000));
        // Ten seconds later everything halves: 0.125 + 0.25 + 0.5.
        assert_eq!(item.effective_weight(&p, 110_000), 0.875);
        assert!(!item.reached(&p, 110_000));
        // A refreshed ack replaces the old one instead of adding to it.
        item.ack("a", 1.0, 110_000);
        assert_eq!(item.acks.len(), 4);
        assert_eq!(item.effective_weight(&p, 110_000), 1.75);
        assert_eq!(item.quorum_progress(&p, 110_000), 1.0);
    }

    #[test]
    fn policy_weights_and_kinds() {
        let p = Policy::default()
            .with_weight_default(0.6)
            .with_node_weight("trusted", 2.0);
        assert_eq!(p.weight_of("trusted"), 2.0);
        assert_eq!(p.weight_of("other"), 0.6);
        let ps = Policies {
            job: p.clone(),
            ..Policies::default()
        };
        assert_eq!(ps.get(QuorumKind::Job), &p);
        assert_eq!(ps.get(QuorumKind::Token), &Policy::default());
    }

    #[test]
    fn auto_weight_link_times_reputation() {
        assert_eq!(auto_weight("ip", 1.0), 1.0);
        assert_eq!(auto_weight("ip", 0.0), 0.5);
        assert_eq!(auto_weight("ble", 1.0), 0.9);
        assert_eq!(auto_weight("lora", 0.5), 0.8 * 0.75);
        assert_eq!(auto_weight("udp", 1.0), 1.0);
        assert_eq!(auto_weight("carrier-pigeon", 1.0), 0.7);
        assert_eq!(auto_weight("ip", 7.0), 1.0);
        assert_eq!(auto_weight("ip", -1.0), 0.5);
        assert_eq!(auto_weight("ip", f64::NAN), 0.5);
    }

    #[test]
    fn ack_and_progress_history_are_bounded() {
        let mut item = QuorumItem::new(QuorumKind::Job, "j", 1.0, 0);
        for i in 0..(MAX_ACKS as u64 + 10) {
            item.ack(format!("n{i}"), 1.0, i);
        }
        assert_eq!(item.acks.len(), MAX_ACKS);
        assert!(item.acks.iter().all(|a| a.at_ms >= 10));
        for i in 0..(MAX_PROGRESS_SAMPLES as u64 + 5) {
            item.record_progress(i, 2.0);
        }
        assert_eq!(item.progress.len(), MAX_PROGRESS_SAMPLES);
        assert_eq!(item.progress[0].at_ms, 5);
        assert_eq!(item.latest_progress(), 1.0);
        assert_eq!(item.progress_at(4), 0.0);
    }
}
