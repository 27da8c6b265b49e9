//! Which hosts get shards, and which are asked first for them.
//!
//! A storage host is a peer whose verified announcement says it is active and offers storage
//! (`capacity.storage_bytes > 0`), heard on an IP link: radio links carry only small
//! protocols, never bulk shards. Hosts are ordered by a score (lower is better): the
//! broker's reputation factor (1.0 for a perfect record up to 2.0), times a latency factor
//! from the fetch latencies this node measured (an exponentially weighted mean), with a
//! small bonus for a peer already connected.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use libp2p::PeerId;

use super::{Storage, StorageError};
use crate::market::scoring::reputation_factor;

/// Measured request latencies per host.
#[derive(Debug, Default)]
pub struct HostStats {
    latency_ms: Mutex<HashMap<PeerId, f64>>,
}

impl HostStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, f64>> {
        self.latency_ms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one answered request.
    pub fn observe(&self, peer: PeerId, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        let mut map = self.lock();
        let e = map.entry(peer).or_insert(ms);
        *e = 0.8 * *e + 0.2 * ms;
    }

    /// The mean latency, if measured.
    pub fn latency_ms(&self, peer: &PeerId) -> Option<f64> {
        self.lock().get(peer).copied()
    }
}

/// One operation's deadline for its batch requests: a batch not answered within
/// `factor` × the operation's own mean batch latency (between `min` and the request
/// timeout; `first`, capped by the timeout, before any answer) counts as failed, and the
/// operation drops that host instead of waiting for its timeout again.
#[derive(Debug, Clone)]
pub struct BatchDeadline {
    mean_ms: Option<f64>,
    factor: f64,
    min: Duration,
    first: Duration,
    timeout: Duration,
}

impl BatchDeadline {
    /// A deadline policy.
    pub fn new(factor: f64, min: Duration, first: Duration, timeout: Duration) -> Self {
        BatchDeadline {
            mean_ms: None,
            factor,
            min,
            first,
            timeout,
        }
    }

    /// Records an answered batch.
    pub fn observe(&mut self, took: Duration) {
        let ms = took.as_secs_f64() * 1000.0;
        self.mean_ms = Some(self.mean_ms.map_or(ms, |m| 0.8 * m + 0.2 * ms));
    }

    /// The deadline of a batch sent now.
    pub fn get(&self) -> Duration {
        match self.mean_ms {
            None => self.first.min(self.timeout),
            Some(ms) => Duration::from_secs_f64(ms * self.factor / 1000.0)
                .clamp(self.min.min(self.timeout), self.timeout),
        }
    }
}

/// A storage host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostInfo {
    /// Peer id.
    pub peer: PeerId,
    /// Score; lower is better.
    pub score: f64,
}

impl Storage {
    /// Active storage hosts heard on IP links, best first.
    ///
    /// # Errors
    /// [`StorageError::Internal`] when the node is shutting down.
    pub async fn candidates(&self) -> Result<Vec<HostInfo>, StorageError> {
        let peers = self
            .client
            .peers()
            .await
            .map_err(|e| StorageError::Internal(e.to_string()))?;
        let me = self.identity.peer_id();
        let mut hosts: Vec<HostInfo> = peers
            .into_iter()
            .filter(|r| r.via == "ip" && r.signed_announcement.is_some())
            .filter(|r| {
                r.announcement
                    .as_ref()
                    .is_some_and(|a| a.active && a.capacity.storage_bytes > 0)
            })
            .filter_map(|r| {
                let peer: PeerId = r.peer_id.parse().ok()?;
                (peer != me).then_some((peer, r.connected))
            })
            .map(|(peer, connected)| {
                let rec = self.reputation.get(&peer.to_string());
                let latency = self.stats.latency_ms(&peer).unwrap_or(5.0);
                let link = if connected { 1.0 } else { 1.1 };
                HostInfo {
                    peer,
                    score: reputation_factor(rec.hits, rec.misses) * (1.0 + latency / 50.0) * link,
                }
            })
            .collect();
        hosts.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.peer.cmp(&b.peer)));
        Ok(hosts)
    }

    /// A host's fetch score (lower first): measured latency, unknown hosts in the middle.
    pub(crate) fn fetch_rank(&self, peer: &PeerId) -> f64 {
        self.stats.latency_ms(peer).unwrap_or(5.0)
    }
}
