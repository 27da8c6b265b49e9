//! `offgrid get`: fetch any k verified shards per segment, rebuild, decrypt, check, write.
//!
//! The manifest comes from the node's store, or else from the peers (hosts keep a copy),
//! verified against the owner's signature. The content key is unwrapped with this node's
//! X25519 key (or given explicitly). Segments are fetched a few at a time (a window sized
//! so that `storage.max_in_flight` requests stay busy); for each, the k shards on the
//! fastest hosts (lowest measured latency, data shards before parity) are asked first, and
//! every shard that fails — unreachable host, missing, corrupt on the host's disk, or bytes
//! that do not match the manifest's hash — is replaced by the next candidate. Rebuilding and
//! decryption run on blocking threads; a writer thread appends segments in order to a
//! temporary file next to the destination, checks size and whole-file BLAKE3, and renames it
//! into place.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::Instant,
};

use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::PeerId;
use offgrid_behaviours::shards::{Request, Response};
use offgrid_storage::{
    asset::RecoverError, recover_segment, shard_hash, unwrap_key, Codec, FileAssembler, Manifest,
    ShardCandidate, SignedManifest,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{ops::Progress, transfer::FetchOutcome, Storage, StorageError};

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
    inflight: usize,
    valid: Vec<ShardCandidate>,
    corrupt: usize,
    unreachable: usize,
    decoding: bool,
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
        let best = found
            .into_iter()
            .max_by_key(|(m, _)| m.revision)
            .ok_or_else(|| {
                StorageError::NotFound(format!(
                    "asset {asset} is unknown here and no connected peer has its manifest"
                ))
            })?;
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
        let window = (max / k.max(1) + 2).min(16);
        let mut dead: HashSet<PeerId> = HashSet::new();
        let mut active: BTreeMap<u64, SegFetch> = BTreeMap::new();
        let mut ready: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut next_seg = 0u64;
        let mut next_write = 0u64;
        let mut fetches = FuturesUnordered::new();
        let mut decodes = FuturesUnordered::new();
        let (mut fetched, mut corrupt_total, mut failed_total) = (0u64, 0u64, 0u64);
        let mut stopped = false;

        'segments: while next_write < manifest.segment_count {
            while next_seg < manifest.segment_count && active.len() < window {
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
            for seg in active.values_mut() {
                while !seg.decoding && seg.valid.len() + seg.inflight < k && fetches.len() < max {
                    let Some((index, hash, peer)) = seg.candidates.get(seg.next).cloned() else {
                        break;
                    };
                    seg.next += 1;
                    if dead.contains(&peer) {
                        seg.unreachable += 1;
                        continue;
                    }
                    seg.inflight += 1;
                    let segment = seg.index;
                    fetches.push(async move {
                        let outcome = self.fetch_from(peer, &hash).await;
                        (segment, index, hash, peer, outcome)
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
            tokio::select! {
                _ = cancel.cancelled() => {
                    stopped = true;
                    break 'segments;
                }
                Some((segment, index, hash, peer, outcome)) = fetches.next(), if !fetches.is_empty() => {
                    let Some(seg) = active.get_mut(&segment) else { continue };
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
                            debug!(%peer, error = %e, "host unreachable; bypassing it");
                            dead.insert(peer);
                            seg.unreachable += 1;
                            failed_total += 1;
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
