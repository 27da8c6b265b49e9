//! `offgrid get`: fetch any k verified shards per segment, rebuild, decrypt, check, write.
//!
//! The manifest comes from the node's store, or else from the peers (hosts keep a copy),
//! verified against the owner's signature. The content key is unwrapped with this node's
//! X25519 key (or given explicitly). Segments are fetched a window at a time (from the next
//! one to write, as many as fit in [`GET_BUDGET`] of shards, at least enough to keep
//! `storage.max_in_flight` requests busy); for each, the k shards on the fastest hosts
//! (lowest measured latency, data shards before parity) are asked first, and every shard
//! that fails — unreachable host, missing, corrupt on the host's disk, or bytes that do not
//! match the manifest's hash — is replaced by the next candidate.
//!
//! The shards wanted are queued per host and sent as batches ([`Request::FetchBatch`],
//! within the protocol's caps), oldest segments first: at most [`PER_HOST_IN_FLIGHT`]
//! batches per host and `storage.max_in_flight` in all are in flight, and what is wanted
//! from a host while its batches travel makes its next batch, so batches grow when hosts
//! are slower than the client and stay small when they are not. A failed batch (host
//! unreachable) marks the host down and sends each of its shards, and what was queued for
//! it, to the next candidates; a shard the batch answers missing, corrupt or busy goes to
//! the next candidate alone.
//!
//! Rebuilding and decryption run on blocking threads; a writer thread appends segments in
//! order to a temporary file next to the destination, checks size and whole-file BLAKE3, and
//! renames it into place.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::PeerId;
use offgrid_behaviours::shards::{Request, Response, MAX_BATCH_BYTES, MAX_BATCH_SHARDS};
use offgrid_storage::{
    asset::RecoverError, recover_segment, shard_hash, unwrap_key, Codec, FileAssembler, Manifest,
    ShardCandidate, SignedManifest,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{ops::Progress, transfer::FetchOutcome, Storage, StorageError};

/// Bytes of shards a get asks for ahead of the next segment to write (fetched or decoded
/// segments waiting to be written count too).
pub const GET_BUDGET: usize = 16 << 20;
/// Most segments in the window, whatever their size.
const MAX_WINDOW: usize = 32;
/// Fetch requests (batches) in flight to one host: two, so that the next batch is asked
/// for while the host reads the previous one.
pub const PER_HOST_IN_FLIGHT: usize = 2;

/// What to get.
#[derive(Debug, Clone)]
pub struct GetParams {
    /// Asset id, hex.
    pub asset: String,
    /// Absolute destination path on the node's disk.
    pub out: PathBuf,
    /// A content key given explicitly (hex in the API) instead of this node's wrapped one.
    pub key: Option<[u8; 32]>,
}

struct SegFetch {
    index: u64,
    cipher_len: u64,
    candidates: Vec<(u16, String, PeerId)>,
    next: usize,
    /// Shards queued for a host or in flight.
    inflight: usize,
    valid: Vec<ShardCandidate>,
    corrupt: usize,
    unreachable: usize,
    decoding: bool,
}

/// One shard wanted from one host.
struct Want {
    segment: u64,
    shard: u16,
    hash: String,
}

impl Storage {
    /// The newest verified manifest of `asset`: the local copy, else the best one the peers
    /// hold.
    pub(crate) async fn find_manifest(
        &self,
        asset: &str,
    ) -> Result<(Manifest, SignedManifest), StorageError> {
        if let Some(signed) = self.local_manifest(asset).await? {
            let m = signed
                .verify()
                .map_err(|e| StorageError::Integrity(format!("stored manifest: {e}")))?;
            return Ok((m, signed));
        }
        let peers: Vec<PeerId> = self
            .client
            .peers()
            .await
            .map_err(|e| StorageError::Internal(e.to_string()))?
            .into_iter()
            .filter(|r| r.via == "ip" && r.connected)
            .filter_map(|r| r.peer_id.parse().ok())
            .collect();
        let request = Request::FetchManifest {
            asset_id: asset.to_owned(),
        };
        let jobs: Vec<_> = peers
            .into_iter()
            .map(|peer| self.client.shard_request(peer, request.clone()))
            .collect();
        let found: Vec<(Manifest, SignedManifest)> =
            super::repair::bounded(jobs, self.cfg.max_in_flight.max(1))
                .await
                .into_iter()
                .filter_map(|answer| {
                    let Ok(Response::Manifest { manifest }) = answer else {
                        return None;
                    };
                    let signed: SignedManifest = serde_json::from_slice(&manifest.0).ok()?;
                    let m = signed.verify().ok()?;
                    (m.asset_id == asset).then_some((m, signed))
                })
                .collect();
        let best = choose_manifest(asset, found)?;
        if best
            .0
            .wrapped_key_for(&self.identity.x25519_public())
            .is_some()
        {
            self.save_manifest(asset, &best.1).await?;
        }
        Ok(best)
    }

    /// Gets an asset; see the module docs.
    ///
    /// `cancel` stops it: the fetches in flight are dropped and the temporary file is
    /// removed, so nothing appears at the destination; it returns
    /// [`StorageError::Cancelled`].
    ///
    /// # Errors
    /// [`StorageError`]: unknown asset, not shared with us, wrong key, fewer than k
    /// reachable shards of a segment, a failed integrity check, or cancelled.
    pub async fn get(
        &self,
        params: GetParams,
        progress: Arc<Progress>,
        cancel: &CancellationToken,
    ) -> Result<Value, StorageError> {
        let started = Instant::now();
        if !offgrid_storage::is_valid_hash(&params.asset) {
            return Err(StorageError::Invalid(
                "asset must be 64 lower-case hex digits".into(),
            ));
        }
        if !params.out.is_absolute() {
            return Err(StorageError::Invalid(
                "out must be an absolute path (the node writes it on its own disk)".into(),
            ));
        }
        let (manifest, _) = self.find_manifest(&params.asset).await?;
        let explicit = params.key.is_some();
        let key = match params.key {
            Some(k) => k,
            None => {
                let wrapped = manifest
                    .wrapped_key_for(&self.identity.x25519_public())
                    .ok_or_else(|| StorageError::NotShared {
                        asset: manifest.asset_id.clone(),
                        owner: manifest.owner.clone(),
                        me: self.me(),
                    })?;
                unwrap_key(wrapped, &self.identity.x25519_secret()).map_err(|_| {
                    StorageError::WrongKey {
                        asset: manifest.asset_id.clone(),
                        segment: 0,
                    }
                })?
            }
        };
        let asset_bytes = manifest
            .asset_id_bytes()
            .map_err(|e| StorageError::Integrity(e.to_string()))?;
        let codec = Codec::new(manifest.scheme, manifest.shard_size)
            .map_err(|e| StorageError::Integrity(format!("manifest scheme: {e}")))?;
        let k = manifest.scheme.data_shards();
        let file_hash: [u8; 32] = hex::decode(&manifest.file_blake3)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StorageError::Integrity("malformed file hash".into()))?;
        Progress::add(&progress.total_bytes, manifest.size);
        Progress::add(&progress.shards_total, manifest.segment_count * k as u64);

        let assembler =
            FileAssembler::create(&params.out, manifest.size, file_hash).map_err(|e| {
                StorageError::Invalid(format!("cannot write {}: {e}", params.out.display()))
            })?;
        let (wtx, mut wrx) = mpsc::channel::<(u64, Vec<u8>)>(2);
        let writer = tokio::task::spawn_blocking(move || {
            let mut assembler = assembler;
            while let Some((index, plain)) = wrx.blocking_recv() {
                assembler.write_segment(index, &plain)?;
            }
            assembler.finish()
        });

        let max = self.cfg.max_in_flight.max(1);
        let shard_len = codec.shard_size().max(1);
        let window = (GET_BUDGET / (k.max(1) * shard_len))
            .clamp((max / k.max(1) + 2).min(16), MAX_WINDOW) as u64;
        let per_batch = (MAX_BATCH_BYTES / shard_len).clamp(1, MAX_BATCH_SHARDS);
        let mut dead: HashSet<PeerId> = HashSet::new();
        let mut active: BTreeMap<u64, SegFetch> = BTreeMap::new();
        let mut ready: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        // Shards wanted from each host but not asked for yet, and batches in flight per host.
        let mut wanted: HashMap<PeerId, VecDeque<Want>> = HashMap::new();
        let mut per_host: HashMap<PeerId, usize> = HashMap::new();
        let mut next_seg = 0u64;
        let mut next_write = 0u64;
        let mut fetches = FuturesUnordered::new();
        let mut decodes = FuturesUnordered::new();
        let (mut fetched, mut corrupt_total, mut failed_total) = (0u64, 0u64, 0u64);
        let mut stopped = false;

        'segments: while next_write < manifest.segment_count {
            // The window starts at the next segment to write, so segments decoded out of
            // order and waiting for it count against it too.
            while next_seg < manifest.segment_count && next_seg < next_write + window {
                let entry = &manifest.segments[next_seg as usize];
                let mut candidates: Vec<(u16, String, PeerId)> = entry
                    .shards
                    .iter()
                    .filter_map(|s| Some((s.index, s.hash.clone(), s.host.parse().ok()?)))
                    .collect();
                candidates.sort_by(|a, b| {
                    let rank = |c: &(u16, String, PeerId)| {
                        self.fetch_rank(&c.2) + if usize::from(c.0) < k { 0.0 } else { 1.0 }
                    };
                    rank(a).total_cmp(&rank(b))
                });
                active.insert(
                    next_seg,
                    SegFetch {
                        index: next_seg,
                        cipher_len: entry.cipher_len,
                        candidates,
                        next: 0,
                        inflight: 0,
                        valid: Vec::new(),
                        corrupt: 0,
                        unreachable: 0,
                        decoding: false,
                    },
                );
                next_seg += 1;
            }
            // Queue each segment's next candidates on their hosts, and decode what is
            // complete.
            for seg in active.values_mut() {
                while !seg.decoding && seg.valid.len() + seg.inflight < k {
                    let Some((shard, hash, peer)) = seg.candidates.get(seg.next).cloned() else {
                        break;
                    };
                    seg.next += 1;
                    if dead.contains(&peer) {
                        seg.unreachable += 1;
                        continue;
                    }
                    seg.inflight += 1;
                    wanted.entry(peer).or_default().push_back(Want {
                        segment: seg.index,
                        shard,
                        hash,
                    });
                }
                if !seg.decoding
                    && seg.valid.len() + seg.inflight < k
                    && seg.next >= seg.candidates.len()
                {
                    return Err(StorageError::NotEnoughShards {
                        segment: seg.index,
                        found: seg.valid.len(),
                        needed: k,
                        total: seg.candidates.len(),
                        corrupt: seg.corrupt,
                        unreachable: seg.unreachable,
                    });
                }
                if !seg.decoding && seg.valid.len() >= k {
                    seg.decoding = true;
                    let (codec, shards) = (codec.clone(), std::mem::take(&mut seg.valid));
                    let (index, cipher_len) = (seg.index, seg.cipher_len);
                    decodes.push(tokio::task::spawn_blocking(move || {
                        (
                            index,
                            recover_segment(&codec, &key, &asset_bytes, index, cipher_len, shards),
                        )
                    }));
                }
            }
            // Ask each host for what waits for it as one batch, oldest segments first.
            let mut hosts: Vec<(u64, PeerId)> = wanted
                .iter()
                .filter(|(p, _)| per_host.get(*p).copied().unwrap_or(0) < PER_HOST_IN_FLIGHT)
                .filter_map(|(p, q)| Some((q.front()?.segment, *p)))
                .collect();
            hosts.sort_unstable();
            for (_, peer) in hosts {
                if fetches.len() >= max {
                    break;
                }
                let Some(queue) = wanted.get_mut(&peer) else {
                    continue;
                };
                let batch = take_wanted(queue, per_batch, &mut active);
                if batch.is_empty() {
                    continue;
                }
                *per_host.entry(peer).or_default() += 1;
                let hashes = batch.iter().map(|w| w.hash.clone()).collect();
                fetches.push(async move {
                    let outcomes = self.fetch_batch_from(peer, hashes).await;
                    (peer, batch, outcomes)
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    stopped = true;
                    break 'segments;
                }
                Some((peer, batch, outcomes)) = fetches.next(), if !fetches.is_empty() => {
                    if let Some(n) = per_host.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                    }
                    for (want, outcome) in batch.into_iter().zip(outcomes) {
                        let Some(seg) = active.get_mut(&want.segment) else { continue };
                        let (segment, index, hash) = (want.segment, want.shard, want.hash);
                        seg.inflight -= 1;
                        match outcome {
                            FetchOutcome::Bytes(bytes) if shard_hash(&bytes) == hash => {
                                fetched += 1;
                                Progress::add(&progress.shards_done, 1);
                                Progress::add(&progress.bytes_received, bytes.len() as u64);
                                if !seg.decoding {
                                    seg.valid.push(ShardCandidate { index, expected_hash: hash, bytes });
                                }
                            }
                            FetchOutcome::Bytes(_) | FetchOutcome::Missing { corrupt: true } => {
                                debug!(%peer, segment, shard = index, "corrupt shard bypassed");
                                seg.corrupt += 1;
                                corrupt_total += 1;
                            }
                            FetchOutcome::Missing { corrupt: false } => {
                                seg.unreachable += 1;
                                failed_total += 1;
                            }
                            FetchOutcome::Unreachable(e) => {
                                if dead.insert(peer) {
                                    debug!(%peer, error = %e, "host unreachable; bypassing it");
                                }
                                seg.unreachable += 1;
                                failed_total += 1;
                            }
                        }
                    }
                    if dead.contains(&peer) {
                        // What still waits for a host we gave up on goes to the next
                        // candidates.
                        for want in wanted.remove(&peer).unwrap_or_default() {
                            if let Some(seg) = active.get_mut(&want.segment) {
                                seg.inflight -= 1;
                                seg.unreachable += 1;
                            }
                        }
                    }
                }
                Some(done) = decodes.next(), if !decodes.is_empty() => {
                    let (index, result) = done.map_err(|e| StorageError::internal("decoding", e))?;
                    let plain = result.map_err(|e| match e {
                        RecoverError::Decrypt(_) if explicit => StorageError::WrongKey { asset: manifest.asset_id.clone(), segment: index },
                        other => StorageError::Integrity(other.to_string()),
                    })?;
                    active.remove(&index);
                    Progress::add(&progress.done_bytes, plain.len() as u64);
                    ready.insert(index, plain);
                    while let Some(plain) = ready.remove(&next_write) {
                        if wtx.send((next_write, plain)).await.is_err() {
                            // The writer failed; its error is reported below.
                            break 'segments;
                        }
                        next_write += 1;
                    }
                }
            }
        }
        if stopped {
            // Drop the fetches in flight; the writer, short of segments, removes its
            // temporary file.
            drop(fetches);
            drop(decodes);
            drop(wtx);
            let _ = writer.await;
            info!(asset = %manifest.asset_id, segments = next_write, "get cancelled");
            return Err(StorageError::Cancelled(format!(
                "get of {} cancelled after {next_write} of {} segments; nothing was written to {}",
                manifest.asset_id,
                manifest.segment_count,
                params.out.display()
            )));
        }
        drop(wtx);
        let path = writer
            .await
            .map_err(|e| StorageError::internal("writing the file", e))?
            .map_err(|e| StorageError::Integrity(e.to_string()))?;
        info!(asset = %manifest.asset_id, out = %path.display(), fetched, corrupt = corrupt_total, "get done");
        Ok(json!({
            "asset_id": manifest.asset_id,
            "name": manifest.name,
            "out": path.display().to_string(),
            "size": manifest.size,
            "segments": manifest.segment_count,
            "shards_fetched": fetched,
            "corrupt_shards": corrupt_total,
            "failed_fetches": failed_total,
            "unreachable_hosts": dead.len(),
            "file_blake3": manifest.file_blake3,
            "duration_ms": started.elapsed().as_millis() as u64,
        }))
    }
}

/// Takes up to `most` of the shards waiting for one host, oldest first, dropping those of
/// segments that no longer need them (being decoded, or done).
fn take_wanted(
    queue: &mut VecDeque<Want>,
    most: usize,
    active: &mut BTreeMap<u64, SegFetch>,
) -> Vec<Want> {
    let mut batch = Vec::new();
    while batch.len() < most {
        let Some(want) = queue.pop_front() else { break };
        match active.get_mut(&want.segment) {
            Some(seg) if !seg.decoding => batch.push(want),
            Some(seg) => seg.inflight -= 1,
            None => {}
        }
    }
    batch
}

/// Picks the manifest to trust among those peers sent for `asset`, never across owners: an
/// owner-bound id (see `offgrid_storage::manifest::bound_asset_id`) names its owner, so only
/// manifests signed by that key count; ids of the first format name no one, so manifests of
/// two owners for one of them are refused rather than chosen between (a host serving its own
/// file under a victim's id). Then the highest revision.
fn choose_manifest(
    asset: &str,
    found: Vec<(Manifest, SignedManifest)>,
) -> Result<(Manifest, SignedManifest), StorageError> {
    let owner = found
        .iter()
        .find(|(m, _)| m.owner_bound())
        .map(|(m, _)| m.owner_pubkey.clone());
    let candidates: Vec<_> = match &owner {
        Some(o) => found
            .into_iter()
            .filter(|(m, _)| &m.owner_pubkey == o)
            .collect(),
        None => {
            let owners: std::collections::BTreeSet<&str> =
                found.iter().map(|(m, _)| m.owner.as_str()).collect();
            if owners.len() > 1 {
                return Err(StorageError::Integrity(format!(
                    "manifests of {} different owners claim asset {asset} ({}); refusing to choose",
                    owners.len(),
                    owners.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            found
        }
    };
    candidates
        .into_iter()
        .max_by_key(|(m, _)| m.revision)
        .ok_or_else(|| {
            StorageError::NotFound(format!(
                "asset {asset} is unknown here and no connected peer has its manifest"
            ))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use offgrid_storage::{manifest::new_bound_asset_id, Manifest, SignedManifest};

    use super::choose_manifest;
    use crate::{files::StorageError, identity::Identity};

    fn manifest(
        owner: &Identity,
        asset: &str,
        salt: Option<[u8; 16]>,
        revision: u64,
    ) -> (Manifest, SignedManifest) {
        let signed = crate::files::host_tests::signed_manifest(owner, asset, salt, revision);
        (signed.verify().unwrap(), signed)
    }

    /// A host answers with its own manifest under the victim's id, at a higher revision:
    /// the owner-bound id picks the victim's; for an id of the first format the two owners
    /// are refused by name, never chosen between.
    #[test]
    fn a_substituted_manifest_is_never_chosen() {
        let (victim, thief) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let (id, salt) = new_bound_asset_id(&victim.public_key(), 1);
        let asset = hex::encode(id);
        let genuine = manifest(&victim, &asset, Some(salt), 0);
        let fake = manifest(&thief, &asset, None, 99);
        let (m, _) = choose_manifest(&asset, vec![fake.clone(), genuine.clone()]).unwrap();
        assert_eq!(m.owner_pubkey, hex::encode(victim.public_key()));
        let (m, _) = choose_manifest(&asset, vec![genuine, fake]).unwrap();
        assert_eq!(m.revision, 0);

        let legacy = "ab".repeat(32);
        let a = manifest(&victim, &legacy, None, 0);
        let b = manifest(&thief, &legacy, None, 5);
        match choose_manifest(&legacy, vec![a.clone(), b]) {
            Err(StorageError::Integrity(msg)) => {
                assert!(msg.contains("2 different owners"), "{msg}");
                assert!(msg.contains(&victim.peer_id().to_string()), "{msg}");
            }
            other => panic!("chose across owners: {other:?}"),
        }
        // One owner's revisions: the highest.
        let a2 = manifest(&victim, &legacy, None, 3);
        let (m, _) = choose_manifest(&legacy, vec![a, a2]).unwrap();
        assert_eq!(m.revision, 3);
        assert!(matches!(
            choose_manifest(&legacy, vec![]),
            Err(StorageError::NotFound(_))
        ));
    }
}
