//! What this node offers as a host: active flag, prices, burst limits and the
//! announcement sequence number. Persisted, so run-time changes survive a restart.
//!
//! The peer service announces it; the market's host reads it on every request through a
//! shared [`Offer`].

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use serde::{Deserialize, Serialize};

use crate::{config::Config, now_ms};

/// A change to what this node offers (`POST /announce`, `POST /toggle`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostUpdate {
    /// Take jobs or not.
    #[serde(default)]
    pub active: Option<bool>,
    /// New prices per resource type, micro-credits; merged into the current ones.
    #[serde(default)]
    pub prices: Option<BTreeMap<String, u64>>,
    /// Percent of time on call.
    #[serde(default)]
    pub min_oncall_percent: Option<u8>,
    /// Highest percent of capacity lent in bursts.
    #[serde(default)]
    pub burst_percent_max: Option<u8>,
    /// Most jobs at once.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// The current settings, shared between the peer service (their only writer) and the
/// market's host (a reader on every request).
#[derive(Debug, Clone, Default)]
pub struct Offer(Arc<RwLock<HostSettings>>);

impl Offer {
    /// Wraps settings.
    pub fn new(s: HostSettings) -> Self {
        Offer(Arc::new(RwLock::new(s)))
    }

    /// A copy of the settings as they stand.
    pub fn get(&self) -> HostSettings {
        // A poisoned lock only means a panic elsewhere mid-clone; the value is whole.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the settings without copying them.
    pub fn read<R>(&self, f: impl FnOnce(&HostSettings) -> R) -> R {
        f(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the settings.
    pub fn set(&self, s: HostSettings) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// What this node offers; persisted so that run-time changes survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSettings {
    /// Takes jobs.
    pub active: bool,
    /// Prices per resource type, micro-credits.
    pub prices: BTreeMap<String, u64>,
    /// Percent on call.
    pub min_oncall_percent: u8,
    /// Highest percent of capacity lent in bursts.
    pub burst_percent_max: u8,
    /// Most jobs at once.
    pub burst: u32,
    /// Last announcement sequence number issued.
    pub seq: u64,
}

impl HostSettings {
    /// Settings from the config file.
    pub fn from_config(cfg: &Config) -> Self {
        HostSettings {
            active: cfg.host.active,
            prices: cfg
                .host
                .prices
                .iter()
                .map(|(k, v)| (k.clone(), v.0))
                .collect(),
            min_oncall_percent: cfg.host.min_oncall_percent,
            burst_percent_max: cfg.host.burst_percent_max,
            burst: cfg.host.burst,
            seq: 0,
        }
    }

    /// Moves to the next announcement seq. Time-based, so a restart continues above the
    /// last one; persisted, so a clock that restarts in the past (a board without an RTC)
    /// never makes peers see the node's announcements as stale.
    pub fn bump_seq(&mut self) {
        self.seq = self.seq.saturating_add(1).max(now_ms());
    }

    /// Applies a change, or says why it is refused (and changes nothing).
    pub fn apply(&mut self, u: HostUpdate) -> Result<(), String> {
        if let Some(p) = u.min_oncall_percent {
            if p > 100 {
                return Err("min_oncall_percent must be 0..=100".into());
            }
            self.min_oncall_percent = p;
        }
        if let Some(p) = u.burst_percent_max {
            if p > 100 {
                return Err("burst_percent_max must be 0..=100".into());
            }
            self.burst_percent_max = p;
        }
        if let Some(b) = u.burst {
            if b == 0 {
                return Err("burst must be at least 1".into());
            }
            self.burst = b;
        }
        if let Some(prices) = u.prices {
            if prices.len() > 64 || prices.keys().any(|k| k.is_empty() || k.len() > 64) {
                return Err("at most 64 resource types, names of 1..=64 bytes".into());
            }
            self.prices.extend(prices);
        }
        if let Some(a) = u.active {
            self.active = a;
        }
        Ok(())
    }
}

/// Key of the settings in `Table::Settings`.
pub const SETTINGS_KEY: &str = "host";
