//! The garbage collector of the shard host: what no live manifest needs any more goes.
//!
//! Every `[storage] gc_interval_s` the host
//! - drops each asset whose signed expiry (`offgrid put --expires-in`) has passed: its shards
//!   charged to the owner, their quota, and the manifest, as the owner's delete would
//!   ([`ShardHost::drop_asset`]), in readable and hosted tables alike;
//! - drops each shard that no manifest it holds lists once the shard is older than
//!   `[storage] orphan_grace_s`: a put sends shards before its manifest, and a put that
//!   never finished, or whose manifest was deleted elsewhere, leaves them behind.
//!
//! A record written before shards carried their storage time starts its grace period when
//! the collector first sees it, so an upgrade never drops a shard at once.

use std::{collections::HashSet, sync::Arc, time::Duration};

use offgrid_storage::SignedManifest;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ShardHost;
use crate::{
    files::quota::HostedShard,
    store::{Op, StoreError, Table},
};

/// What one collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    /// Expired assets dropped.
    pub expired_assets: u64,
    /// Shards removed with them.
    pub expired_shards: u64,
    /// Shards no held manifest lists, removed after their grace period.
    pub orphan_shards: u64,
}

impl ShardHost {
    /// One collection at `now_ms` (blocking: it reads the store and the disk).
    ///
    /// # Errors
    /// The store's error when its tables cannot be read or written.
    pub fn collect_garbage(&self, now_ms: u64, grace: Duration) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let mut live = HashSet::new();
        for table in [Table::Manifests, Table::HostedManifests] {
            for (_, signed) in self.store.scan::<SignedManifest>(table)? {
                // A manifest that does not verify never entered (stores check it): keep it
                // and what it lists, rather than act on bytes no one signed.
                let Ok(manifest) = signed.verify() else {
                    continue;
                };
                if manifest.is_expired(now_ms) {
                    let removed = self.drop_asset(&manifest, &[table])?;
                    report.expired_assets += 1;
                    report.expired_shards += removed;
                    continue;
                }
                for shard in manifest.segments.iter().flat_map(|s| &s.shards) {
                    live.insert(shard.hash.clone());
                }
            }
        }
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let mut ops = Vec::new();
        for (hash, rec) in self.store.scan::<HostedShard>(Table::HostedShards)? {
            if live.contains(&hash) {
                continue;
            }
            if rec.stored_ms == 0 {
                let dated = HostedShard {
                    stored_ms: now_ms,
                    ..rec
                };
                ops.push(Op::put(Table::HostedShards, hash.as_str(), &dated)?);
                continue;
            }
            if now_ms.saturating_sub(rec.stored_ms) < grace_ms {
                continue;
            }
            match self.shards.delete(&hash) {
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, hash, "garbage collection cannot delete a shard");
                    continue;
                }
            }
            if let Ok(peer) = rec.peer.parse() {
                self.quotas.forget(peer, rec.len);
            }
            report.orphan_shards += 1;
            ops.push(Op::delete(Table::HostedShards, hash.as_str()));
        }
        if !ops.is_empty() {
            self.store.commit_blocking(ops)?;
        }
        Ok(report)
    }

    /// Collects every `every` until shutdown, the first time at once (expired assets go
    /// right after a restart). `every` zero turns collection off.
    pub async fn background_gc(
        self: Arc<Self>,
        every: Duration,
        grace: Duration,
        cancel: CancellationToken,
    ) {
        if every.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            let round =
                tokio::task::spawn_blocking(move || this.collect_garbage(crate::now_ms(), grace))
                    .await;
            match round {
                Ok(Ok(r)) if r != GcReport::default() => info!(
                    expired_assets = r.expired_assets,
                    expired_shards = r.expired_shards,
                    orphan_shards = r.orphan_shards,
                    "garbage collected"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(error = %e, "garbage collection failed"),
                Err(e) => warn!(error = %e, "garbage collection task failed"),
            }
        }
    }
}

#[cfg(test)]
#[path = "host_gc_tests.rs"]
mod tests;
