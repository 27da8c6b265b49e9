//! Checking and repairing an asset's shards.
//!
//! A check asks every host named in the manifest which of its shards it still holds (one
//! batched `Has` per host); a host that does not answer holds nothing. A segment whose
//! reachable shards fall below the threshold — k + `storage.repair_margin` for the
//! background check, all n for `offgrid repair` — is rebuilt: any k verified shards are
//! fetched, the sealed segment is reconstructed and re-encoded (no key needed: shards are
//! ciphertext), each rebuilt shard must hash to the manifest's hash, and the missing ones
//! are stored on active hosts that hold no shard of that segment yet (a host that fails a
//! store is not asked again during that repair; a segment with no such host left is not
//! rebuilt at all). The owner then signs the manifest with the new hosts (revision + 1),
//! keeps it and sends it to every host. One repair of an asset runs at a time.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use futures::{stream::FuturesUnordered, Future, StreamExt};
use libp2p::PeerId;
use offgrid_behaviours::shards::{Request, Response, MAX_HAS_HASHES};
use offgrid_storage::{shard_hash, Codec, Manifest, ShardEntry, SignedManifest};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{
    ops::Progress,
    transfer::{FetchOutcome, StoreOutcome},
    Claim, Storage, StorageError,
};

/// When a segment is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    /// Fewer than k + this many reachable shards.
    Margin(usize),
    /// Any shard missing.
    All,
}

/// What a repair did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// Asset id.
    pub asset_id: String,
    /// Segments in the asset.
    pub segments: u64,
    /// Total shards per segment (n).
    pub n: usize,
    /// Fewest reachable shards of any segment before the repair.
    pub reachable_min_before: usize,
    /// Fewest reachable shards of any segment after the repair.
    pub reachable_min_after: usize,
    /// Segments rebuilt.
    pub segments_repaired: u64,
    /// Shards rebuilt and stored on new hosts.
    pub shards_rebuilt: u64,
    /// Segments with fewer than k reachable shards (lost).
    pub segments_lost: u64,
    /// Manifest revision after the repair.
    pub revision: u64,
}

impl Storage {
    /// Which shard entries of each segment are reachable, and which hosts did not answer.
    pub(crate) async fn check_presence(
        &self,
        manifest: &Manifest,
    ) -> (Vec<Vec<bool>>, Vec<PeerId>) {
        let mut by_host: HashMap<PeerId, Vec<(usize, usize)>> = HashMap::new();
        for (si, seg) in manifest.segments.iter().enumerate() {
            for (pi, e) in seg.shards.iter().enumerate() {
                if let Ok(peer) = e.host.parse() {
                    by_host.entry(peer).or_default().push((si, pi));
                }
            }
        }
        let mut present: Vec<Vec<bool>> = manifest
            .segments
            .iter()
            .map(|s| vec![false; s.shards.len()])
            .collect();
        let mut jobs = Vec::with_capacity(by_host.len());
        for (peer, slots) in by_host {
            let hashes: Vec<Vec<String>> = slots
                .chunks(MAX_HAS_HASHES)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|&(si, pi)| manifest.segments[si].shards[pi].hash.clone())
                        .collect()
                })
                .collect();
            jobs.push(self.has_on(peer, slots, hashes));
        }
        let answers = bounded(jobs, self.cfg.max_in_flight.max(1)).await;
        let mut down = Vec::new();
        for (peer, slots, flags) in answers {
            match flags {
                Some(flags) => {
                    for ((si, pi), f) in slots.into_iter().zip(flags) {
                        present[si][pi] = f;
                    }
                }
                None => down.push(peer),
            }
        }
        (present, down)
    }

    /// Reachable shards per segment of an asset this node can read.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] for an unknown asset.
    pub async fn check(&self, asset: &str) -> Result<serde_json::Value, StorageError> {
        let (manifest, _) = self.find_manifest(asset).await?;
        let (present, down) = self.check_presence(&manifest).await;
        let counts: Vec<usize> = present
            .iter()
            .map(|p| p.iter().filter(|x| **x).count())
            .collect();
        let k = manifest.scheme.data_shards();
        let hosts = shards_per_host(&manifest, &present, &down);
        Ok(serde_json::json!({
            "asset_id": manifest.asset_id,
            "k": k,
            "n": manifest.scheme.total_shards(),
            "segments": manifest.segment_count,
            "reachable_min": counts.iter().copied().min().unwrap_or(0),
            "reachable": counts,
            "segments_below_threshold": counts.iter().filter(|c| **c < k + usize::from(self.cfg.repair_margin)).count(),
            "segments_lost": counts.iter().filter(|c| **c < k).count(),
            "hosts_down": down.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "hosts": hosts,
        }))
    }

    /// Repairs an asset this node owns; see the module docs.
    ///
    /// `cancel` stops it between steps: the shard requests in flight are dropped, and the
    /// shards rebuilt so far are kept (the manifest is signed with them) before it returns
    /// [`StorageError::Cancelled`].
    ///
    /// # Errors
    /// [`StorageError::NotOwner`], [`StorageError::NotFound`],
    /// [`StorageError::Conflict`] while another repair of the asset runs,
    /// [`StorageError::Cancelled`], or a local failure.
    pub async fn repair(
        &self,
        asset: &str,
        threshold: Threshold,
        progress: Option<Arc<Progress>>,
        cancel: &CancellationToken,
    ) -> Result<RepairReport, StorageError> {
        let Some(_claim) = Claim::take(&self.active_repairs, asset) else {
            return Err(StorageError::Conflict(format!(
                "a repair of {asset} is already running"
            )));
        };
        let cancelled = |rebuilt: u64| {
            StorageError::Cancelled(format!(
                "repair of {asset} cancelled after rebuilding {rebuilt} shard(s), which are kept; run `offgrid repair {asset}` again to finish"
            ))
        };
        let (mut manifest, _) = self.find_manifest(asset).await?;
        if manifest.owner_pubkey != hex::encode(self.identity.public_key()) {
            return Err(StorageError::NotOwner {
                asset: asset.to_owned(),
                owner: manifest.owner.clone(),
                action: "repair",
            });
        }
        let codec = Codec::new(manifest.scheme, manifest.shard_size)
            .map_err(|e| StorageError::Integrity(e.to_string()))?;
        let (k, n) = (
            manifest.scheme.data_shards(),
            manifest.scheme.total_shards(),
        );
        let limit = match threshold {
            Threshold::Margin(m) => (k + m).min(n),
            Threshold::All => n,
        };
        let (present, down) = cancel
            .run_until_cancelled(self.check_presence(&manifest))
            .await
            .ok_or_else(|| cancelled(0))?;
        let hosts = self.candidates().await?;
        // Hosts that did not answer: those named in the manifest that failed the check,
        // and any that fail a store below. Dead hosts stay in the registry (their last
        // announcement said active), so without this each one would be retried for every
        // shard.
        let mut dead: HashSet<PeerId> = down.into_iter().collect();
        let spare: Vec<PeerId> = hosts.iter().map(|h| h.peer).collect();
        if let Some(p) = &progress {
            Progress::add(&p.shards_total, manifest.segment_count * n as u64);
        }
        let mut report = RepairReport {
            asset_id: manifest.asset_id.clone(),
            segments: manifest.segment_count,
            n,
            reachable_min_before: usize::MAX,
            reachable_min_after: usize::MAX,
            segments_repaired: 0,
            shards_rebuilt: 0,
            segments_lost: 0,
            revision: manifest.revision,
        };
        let mut stopped = false;
        for (si, seg) in manifest.segments.iter_mut().enumerate() {
            let reachable: Vec<&ShardEntry> = seg
                .shards
                .iter()
                .zip(&present[si])
                .filter_map(|(e, p)| p.then_some(e))
                .collect();
            let count = reachable.len();
            report.reachable_min_before = report.reachable_min_before.min(count);
            let mut holders: Vec<PeerId> = reachable
                .iter()
                .filter_map(|e| e.host.parse().ok())
                .collect();
            let has_spare = spare
                .iter()
                .any(|p| !holders.contains(p) && !dead.contains(p));
            // Nothing to do, nothing to rebuild from, nowhere to put it (fetching k shards
            // would be wasted), or cancelled: the segment stays as it is.
            if stopped || count >= limit || count < k || !has_spare || cancel.is_cancelled() {
                stopped |= cancel.is_cancelled();
                if count < k {
                    report.segments_lost += 1;
                }
                report.reachable_min_after = report.reachable_min_after.min(count);
                continue;
            }
            let rebuilt = cancel
                .run_until_cancelled(self.rebuild_segment(
                    &codec,
                    si as u64,
                    seg.cipher_len,
                    &reachable,
                ))
                .await;
            let Some(shards) = rebuilt.flatten() else {
                stopped |= cancel.is_cancelled();
                report.reachable_min_after = report.reachable_min_after.min(count);
                continue;
            };
            let reachable_idx: Vec<u16> = reachable.iter().map(|e| e.index).collect();
            let mut placed = count;
            'shards: for (index, bytes) in shards.iter().enumerate() {
                let index = index as u16;
                if reachable_idx.contains(&index) {
                    continue;
                }
                let hash = shard_hash(bytes);
                if let Some(e) = seg.shards.iter().find(|e| e.index == index) {
                    if e.hash != hash {
                        debug!(
                            segment = si,
                            index, "rebuilt shard does not match the manifest"
                        );
                        continue;
                    }
                }
                let offset = si % spare.len().max(1);
                let order = spare[offset..].iter().chain(&spare[..offset]);
                for peer in order
                    .filter(|p| !holders.contains(p) && !dead.contains(p))
                    .copied()
                    .collect::<Vec<_>>()
                {
                    let Some(outcome) = cancel
                        .run_until_cancelled(self.store_on(peer, &hash, bytes))
                        .await
                    else {
                        stopped = true;
                        break 'shards;
                    };
                    match outcome {
                        StoreOutcome::Stored => {
                            holders.push(peer);
                            seg.shards.retain(|e| e.index != index);
                            seg.shards.push(ShardEntry {
                                index,
                                hash: hash.clone(),
                                host: peer.to_string(),
                            });
                            placed += 1;
                            report.shards_rebuilt += 1;
                            if let Some(p) = &progress {
                                Progress::add(&p.shards_done, 1);
                            }
                            break;
                        }
                        StoreOutcome::Unreachable(_) | StoreOutcome::Full => {
                            dead.insert(peer);
                        }
                        StoreOutcome::Refused(_) => {}
                    }
                }
            }
            seg.shards.sort_by_key(|e| e.index);
            report.segments_repaired += u64::from(placed > count);
            report.reachable_min_after = report.reachable_min_after.min(placed);
        }
        if report.reachable_min_before == usize::MAX {
            report.reachable_min_before = 0;
            report.reachable_min_after = 0;
        }
        if report.shards_rebuilt > 0 {
            manifest.revision += 1;
            let signed = SignedManifest::sign(self.identity.signing_key(), &manifest)
                .map_err(|e| StorageError::internal("signing the manifest", e))?;
            self.save_manifest(&manifest.asset_id, &signed).await?;
            self.publish_manifest(&manifest, &signed, &[]).await;
            report.revision = manifest.revision;
        }
        info!(
            asset,
            rebuilt = report.shards_rebuilt,
            lost = report.segments_lost,
            cancelled = stopped,
            "repair done"
        );
        if stopped {
            return Err(cancelled(report.shards_rebuilt));
        }
        Ok(report)
    }

    /// Fetches k verified shards of a segment and re-encodes all n.
    async fn rebuild_segment(
        &self,
        codec: &Codec,
        segment: u64,
        cipher_len: u64,
        reachable: &[&ShardEntry],
    ) -> Option<Vec<Vec<u8>>> {
        let k = codec.scheme().data_shards();
        let mut slots: Vec<Option<Vec<u8>>> = vec![None; codec.scheme().total_shards()];
        let mut have = 0;
        let mut pending: Vec<(u16, String, PeerId)> = reachable
            .iter()
            .filter_map(|e| Some((e.index, e.hash.clone(), e.host.parse().ok()?)))
            .collect();
        pending.reverse();
        let width = k.min(self.cfg.max_in_flight.max(1));
        let mut fetches = FuturesUnordered::new();
        loop {
            while fetches.len() < width && have + fetches.len() < k {
                let Some((index, hash, peer)) = pending.pop() else {
                    break;
                };
                fetches.push(self.fetch_verified(peer, index, hash));
            }
            let Some(r) = fetches.next().await else { break };
            if let Some((index, bytes)) = r {
                if let Some(slot) = slots.get_mut(usize::from(index)) {
                    *slot = Some(bytes);
                    have += 1;
                }
            }
            if have >= k {
                break;
            }
        }
        drop(fetches);
        if have < k {
            debug!(segment, have, k, "not enough shards to rebuild");
            return None;
        }
        let codec = codec.clone();
        tokio::task::spawn_blocking(move || {
            let sealed = codec
                .reconstruct(slots, usize::try_from(cipher_len).ok()?)
                .ok()?;
            codec.encode(&sealed).ok()
        })
        .await
        .ok()
        .flatten()
    }

    async fn fetch_verified(
        &self,
        peer: PeerId,
        index: u16,
        hash: String,
    ) -> Option<(u16, Vec<u8>)> {
        match self.fetch_from(peer, &hash).await {
            FetchOutcome::Bytes(b) if shard_hash(&b) == hash => Some((index, b)),
            _ => None,
        }
    }

    async fn has_on(
        &self,
        peer: PeerId,
        slots: Vec<(usize, usize)>,
        chunks: Vec<Vec<String>>,
    ) -> (PeerId, Vec<(usize, usize)>, Option<Vec<bool>>) {
        let mut flags = Vec::with_capacity(slots.len());
        for hashes in chunks {
            let len = hashes.len();
            match self.ask_host(peer, Request::Has { hashes }).await {
                Ok(Response::Have { present }) if present.len() == len => flags.extend(present),
                _ => return (peer, slots, None),
            }
        }
        (peer, slots, Some(flags))
    }
}

/// Runs futures with at most `limit` at once; results in completion order.
pub(crate) async fn bounded<F: Future>(futs: Vec<F>, limit: usize) -> Vec<F::Output> {
    let mut queue = futs.into_iter();
    let mut running = FuturesUnordered::new();
    let mut out = Vec::new();
    loop {
        while running.len() < limit.max(1) {
            let Some(f) = queue.next() else { break };
            running.push(f);
        }
        match running.next().await {
            Some(r) => out.push(r),
            None => return out,
        }
    }
}

/// Shard health per host: what `manifest` places on each host, what `present` says it still
/// holds, and whether it answered (`down` did not). Sorted by peer id.
fn shards_per_host(
    manifest: &Manifest,
    present: &[Vec<bool>],
    down: &[PeerId],
) -> Vec<offgrid_api::storage::HostShards> {
    let mut by_host: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for (si, seg) in manifest.segments.iter().enumerate() {
        for (pi, e) in seg.shards.iter().enumerate() {
            let entry = by_host.entry(e.host.as_str()).or_default();
            entry.0 += 1;
            if present
                .get(si)
                .and_then(|p| p.get(pi))
                .copied()
                .unwrap_or(false)
            {
                entry.1 += 1;
            }
        }
    }
    by_host
        .into_iter()
        .map(|(peer, (shards, held))| offgrid_api::storage::HostShards {
            peer: peer.to_owned(),
            shards,
            present: held,
            up: !down.iter().any(|d| d.to_string() == peer),
        })
        .collect()
}
