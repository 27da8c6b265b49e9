//! The `[quorum]` and `[failover]` sections of the daemon config.

use std::collections::BTreeMap;

use offgrid_ledger::quorum::{Monitor, Policies, Policy};
use serde::{Deserialize, Serialize};

/// Weighting rules for one kind of quorum item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KindConfig {
    /// Effective weight an item of this kind needs.
    pub required: f64,
    /// Weight of a node without an override (when auto-weights are off).
    pub weight_default: f64,
    /// Per-node weight overrides, by peer id.
    pub node_weights: BTreeMap<String, f64>,
    /// Seconds after which an ack counts half; 0 turns decay off.
    pub decay_half_life_s: f64,
    /// Seconds after which an ack no longer counts.
    pub max_age_s: f64,
}

impl Default for KindConfig {
    fn default() -> Self {
        KindConfig {
            required: 1.0,
            weight_default: 1.0,
            node_weights: BTreeMap::new(),
            decay_half_life_s: 600.0,
            max_age_s: 3600.0,
        }
    }
}

impl KindConfig {
    /// The ledger policy.
    pub fn policy(&self) -> Policy {
        Policy {
            weight_default: self.weight_default,
            node_weights: self.node_weights.clone(),
            decay_half_life_s: self.decay_half_life_s,
            max_age_s: self.max_age_s,
        }
    }
}

/// `[quorum]`: the generic quorum engine's policies per kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuorumConfig {
    /// Weigh acks by the link a node is heard over and its gossiped reputation, unless the
    /// node has an entry in `node_weights`.
    pub auto_weights: bool,
    /// Uploads (shards stored).
    pub upload: KindConfig,
    /// Compute jobs.
    pub job: KindConfig,
    /// Wallet tokens (transactions); `required` is taken from `[wallet] quorum`.
    pub token: KindConfig,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            auto_weights: true,
            upload: KindConfig::default(),
            job: KindConfig {
                // One host's ack over any link with an average reputation settles a job.
                required: 0.5,
                ..KindConfig::default()
            },
            token: KindConfig {
                // Token finality is exact (integer weights, no decay); the engine mirrors it.
                decay_half_life_s: 0.0,
                max_age_s: 86_400.0,
                ..KindConfig::default()
            },
        }
    }
}

impl QuorumConfig {
    /// The policies per kind.
    pub fn policies(&self) -> Policies {
        Policies {
            upload: self.upload.policy(),
            job: self.job.policy(),
            token: self.token.policy(),
        }
    }
}

/// `[failover]`: the monitor that requeues stalled jobs and flags stalled uploads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailoverConfig {
    /// Least progress rise over `stall_age_s` that counts as moving (0..1).
    pub min_progress_delta: f64,
    /// Seconds without enough progress before an item is stalled.
    pub stall_age_s: u64,
    /// Least seconds between two requeues of one item.
    pub cooldown_s: u64,
    /// Most requeues per item.
    pub max_retries: u32,
    /// Milliseconds between checks.
    pub check_interval_ms: u64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            min_progress_delta: 0.05,
            stall_age_s: 90,
            cooldown_s: 60,
            max_retries: 3,
            check_interval_ms: 1000,
        }
    }
}

impl FailoverConfig {
    /// The ledger's monitor with these settings.
    pub fn monitor(&self) -> Monitor {
        Monitor::default()
            .with_min_progress_delta(self.min_progress_delta)
            .with_stall_age_s(self.stall_age_s)
            .with_cooldown_s(self.cooldown_s)
            .with_max_retries(self.max_retries)
    }
}
