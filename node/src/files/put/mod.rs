//! `offgrid put`: stream a file from the node's disk into encrypted shards on the mesh.
//!
//! A blocking reader thread reads the file one segment at a time, seals it
//! (XChaCha20-Poly1305 under a fresh content key, asset id + segment index as associated
//! data), erasure-codes and hashes it, and hands the shards over a channel of capacity one;
//! at most a few segments (a 16 MiB budget, 2 to 8 segments) are held while their shards are
//! in flight, so memory does not grow with the file. Shards are sent per host in batches
//! (`StoreBatch`, within the protocol's caps): everything waiting for a host goes in one
//! request, which the host makes durable with one group commit; at most
//! [`PER_HOST_IN_FLIGHT`] batches per host and `storage.max_in_flight` in all are in flight,
//! so batches grow by themselves when hosts are slower than the reader and stay small when
//! they are not. Shard i of segment s goes to the planned host `top[(s + i) mod |top|]` among
//! the n best-scored hosts, so every segment's shards land on distinct hosts and the data
//! shards rotate over them; a host that fails, refuses or is full is replaced by the best
//! host not yet holding a shard of that segment. A store batch not answered within the
//! put's own deadline ([`BatchDeadline`]: 8 × its mean batch latency, at least
//! [`MIN_STORE_DEADLINE`], at most `storage.request_timeout_s`) counts as failed: the host is
//! dropped for the rest of the put and its shards go to others at once, so a hung host is
//! waited for once, not once per segment (a store that lands late only leaves a shard the
//! manifest does not list).
//!
//! **Resume.** The [`UploadState`] (nonces, shard hashes, which host acknowledged which
//! shard, the content key wrapped for the owner) is saved in the store after
//! acknowledgements, coalesced so that at most one write runs at a time and no more than
//! one every [`PERSIST_EVERY`], except that the first acknowledgements are saved at once (a
//! put stopped soon after its first shards were placed keeps them). A put of the same path
//! with the same parameters after a crash finds it, checks the file is unchanged, re-seals
//! recorded segments with their recorded nonces (reproducing identical shards) and sends
//! only the shards that no host acknowledged (plus at most the last [`PERSIST_EVERY`] of
//! acknowledgements not yet saved).
//!
//! A cancelled put (`DELETE /storage/ops/{id}`, which the CLI sends on Ctrl-C) drops its
//! requests in flight and saves the upload state as it stands, so the same put resumes too.
//!
//! The upload is complete when every segment has at least k acknowledged shards; then the
//! owner signs the manifest, keeps it and sends it to every host that holds a shard.

mod persist;
mod report;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::PeerId;
use offgrid_behaviours::shards::{MAX_BATCH_BYTES, MAX_BATCH_SHARDS};
use offgrid_storage::{
    manifest::MANIFEST_VERSION, unwrap_key, upload::SegmentProgress, Codec, Manifest, Scheme,
    SignedManifest, UploadState,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use self::report::UploadReport;
use super::{
    hosts::{BatchDeadline, HostInfo},
    ops::Progress,
    reader::{read_segments, Prepared, ResumeInfo},
    transfer::StoreOutcome,
    Claim, Storage, StorageError,
};
use crate::store::{Op, Table};

/// Shortest interval between two saves of the upload state.
pub const PERSIST_EVERY: Duration = Duration::from_millis(50);
/// Shortest interval between two progress reports to the failover monitor.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Bytes of prepared shards held at once (at least two segments).
const SEGMENT_BUDGET: usize = 16 << 20;
/// Store requests (batches) in flight to one host: two, so that the next batch travels
/// while the host commits the previous one.
const PER_HOST_IN_FLIGHT: usize = 2;
/// The shortest deadline of a store batch: hosts fsync before they answer, so a busy disk
/// is given time.
pub const MIN_STORE_DEADLINE: Duration = Duration::from_secs(5);

/// What to put.
#[derive(Debug, Clone)]
pub struct PutParams {
    /// Absolute path of the file on the node's disk.
    pub path: PathBuf,
    /// Scheme asked for (shrunk when there are fewer hosts).
    pub scheme: Scheme,
    /// Shard size, bytes.
    pub shard_size: u32,
    /// Name recorded in the manifest (the file name by default).
    pub name: Option<String>,
    /// Refuse with fewer hosts than the scheme's n instead of shrinking it.
    pub no_adapt: bool,
    /// How long hosts keep the asset (`--expires-in`); `None`: until the owner deletes it.
    pub expires_in: Option<std::time::Duration>,
}

/// The persisted upload: the parameters asked for and the progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadRecord {
    requested: Scheme,
    shard_size: u32,
    name: Option<String>,
    state: UploadState,
    /// The manifest's expiry (from the upload's start plus `expires_in`).
    #[serde(default)]
    expires_ms: Option<u64>,
}

struct Job {
    segment: u64,
    shard: u16,
    hash: String,
    bytes: Arc<Vec<u8>>,
    tried: Vec<PeerId>,
}

struct OpenSegment {
    outstanding: usize,
    plain_len: u64,
    used: HashSet<PeerId>,
}

impl Storage {
    /// Puts a file; see the module docs.
    ///
    /// `cancel` stops it: the store requests in flight are dropped, the reader stops, and
    /// the upload progress is saved (so the same put later resumes) before it returns
    /// [`StorageError::Cancelled`].
    ///
    /// # Errors
    /// [`StorageError`]: bad input, too few hosts, an upload that could not place k shards of
    /// every segment (resumable), cancelled (resumable), or a local failure.
    pub async fn put(
        &self,
        params: PutParams,
        progress: Arc<Progress>,
        cancel: &CancellationToken,
    ) -> Result<Value, StorageError> {
        let started = Instant::now();
        if !params.path.is_absolute() {
            return Err(StorageError::Invalid(
                "path must be absolute (the node reads it from its own disk)".into(),
            ));
        }
        let key = params.path.display().to_string();
        let Some(_claim) = Claim::take(&self.active_puts, &key) else {
            return Err(StorageError::Conflict(format!(
                "a put of {key} is already running"
            )));
        };
        let meta = tokio::fs::metadata(&params.path)
            .await
            .map_err(|e| StorageError::Invalid(format!("cannot read {key}: {e}")))?;
        if !meta.is_file() {
            return Err(StorageError::Invalid(format!(
                "{key} is not a regular file"
            )));
        }
        Codec::new(params.scheme, params.shard_size)
            .map_err(|e| StorageError::Invalid(e.to_string()))?;
        let hosts = self.candidates().await?;
        let wanted = params.scheme.total_shards();
        if params.no_adapt && hosts.len() < wanted {
            return Err(StorageError::NoHosts {
                found: hosts.len(),
                needed: wanted,
            });
        }
        let previous: Option<UploadRecord> = self
            .store
            .get(Table::Uploads, &key)
            .map_err(|e| StorageError::internal("reading upload state", e))?;
        let resumable = previous.filter(|r| {
            r.requested == params.scheme
                && r.shard_size == params.shard_size
                && r.state.matches_source(&meta)
        });
        let resumed = resumable.is_some();
        let mut record = match resumable {
            Some(r) => r,
            None => self.new_upload(&params, &meta, hosts.len())?,
        };
        let scheme = record.state.scheme;
        let codec = Codec::new(scheme, record.state.shard_size)
            .map_err(|e| StorageError::Invalid(e.to_string()))?;
        let content_key = unwrap_key(&record.state.owner_key, &self.identity.x25519_secret())
            .map_err(|e| StorageError::internal("opening the upload's content key", e))?;
        let asset_bytes: [u8; 32] = hex::decode(&record.state.asset_id)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StorageError::Internal("malformed asset id in upload state".into()))?;
        let n = scheme.total_shards();
        let k = scheme.data_shards();
        if hosts.len() < 2 {
            return Err(StorageError::NoHosts {
                found: hosts.len(),
                needed: 2,
            });
        }
        let resume: ResumeInfo = record
            .state
            .segments
            .iter()
            .map(|s| {
                let missing = s
                    .shards
                    .iter()
                    .filter(|sh| sh.host.is_none())
                    .map(|sh| sh.index)
                    .collect();
                (s.nonce.clone(), s.plain_blake3.clone(), missing)
            })
            .collect();
        let already = record
            .state
            .segments
            .iter()
            .flat_map(|s| &s.shards)
            .filter(|s| s.host.is_some())
            .count();
        Progress::add(&progress.total_bytes, meta.len());
        Progress::add(
            &progress.shards_total,
            record.state.segment_count * n as u64,
        );
        Progress::add(&progress.shards_done, already as u64);
        info!(asset = %record.state.asset_id, path = %key, %scheme, resumed, hosts = hosts.len(), "put started");
        let mut report = UploadReport::start(self, &record.state.asset_id, &progress);

        let (tx, mut rx) = mpsc::channel(1);
        let reader = {
            let (path, codec) = (params.path.clone(), codec.clone());
            tokio::task::spawn_blocking(move || {
                read_segments(path, codec, content_key, asset_bytes, resume, tx)
            })
        };
        let window = (SEGMENT_BUDGET / (n * codec.shard_size()).max(1)).clamp(2, 8);
        let max = self.cfg.max_in_flight.max(1);
        let top = hosts.len().min(n);
        let mut excluded: HashSet<PeerId> = HashSet::new();
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut open: HashMap<u64, OpenSegment> = HashMap::new();
        let mut inflight = FuturesUnordered::new();
        // Jobs given a host but not sent yet, and requests in flight per host.
        let mut assigned: HashMap<PeerId, VecDeque<Job>> = HashMap::new();
        let mut per_host: HashMap<PeerId, usize> = HashMap::new();
        let mut end: Option<([u8; 32], u64)> = None;
        let mut reader_done = false;
        let (mut sent, mut bytes_sent) = (0u64, 0u64);
        let mut persist: Option<tokio::task::JoinHandle<()>> = None;
        let mut last_persist = Instant::now();
        let mut dirty = false;
        // Whether a save holding acknowledgements of this run was started.
        let mut acks_saved = false;
        let mut stopped = false;
        let timeout = Duration::from_secs(self.cfg.request_timeout_s.max(1));
        let mut deadline = BatchDeadline::new(8.0, MIN_STORE_DEADLINE, timeout, timeout);

        loop {
            // Give every queued shard a host.
            while let Some(mut job) = queue.pop_front() {
                let Some(seg) = open.get_mut(&job.segment) else {
                    continue;
                };
                match pick_host(&hosts, top, &job, &seg.used, &excluded) {
                    Some(peer) => {
                        seg.used.insert(peer);
                        job.tried.push(peer);
                        assigned.entry(peer).or_default().push_back(job);
                    }
                    None => {
                        debug!(
                            segment = job.segment,
                            shard = job.shard,
                            "no host left for shard"
                        );
                        seg.outstanding -= 1;
                        if seg.outstanding == 0 {
                            Progress::add(&progress.done_bytes, seg.plain_len);
                            open.remove(&job.segment);
                        }
                    }
                }
            }
            // Send each host what waits for it as one batch, oldest segments first; what
            // arrives for a host while its requests are in flight makes its next batch.
            let mut ready: Vec<(u64, PeerId)> = assigned
                .iter()
                .filter(|(p, q)| {
                    !q.is_empty() && per_host.get(*p).copied().unwrap_or(0) < PER_HOST_IN_FLIGHT
                })
                .filter_map(|(p, q)| Some((q.front()?.segment, *p)))
                .collect();
            ready.sort_unstable();
            for (_, peer) in ready {
                if inflight.len() >= max {
                    break;
                }
                let Some(waiting) = assigned.get_mut(&peer) else {
                    continue;
                };
                let batch = take_batch(waiting);
                *per_host.entry(peer).or_default() += 1;
                let limit = deadline.get();
                inflight.push(async move {
                    let sent = Instant::now();
                    let items: Vec<(&str, &[u8])> = batch
                        .iter()
                        .map(|j| (j.hash.as_str(), j.bytes.as_slice()))
                        .collect();
                    let outcomes = tokio::time::timeout(limit, self.store_batch_on(peer, &items))
                        .await
                        .ok();
                    drop(items);
                    let outcomes = outcomes.unwrap_or_else(|| {
                        vec![
                            StoreOutcome::Unreachable("no answer within the put's deadline".into());
                            batch.len()
                        ]
                    });
                    (peer, batch, outcomes, sent.elapsed())
                });
            }
            let waiting = assigned.values().any(|q| !q.is_empty());
            if reader_done && inflight.is_empty() && queue.is_empty() && !waiting {
                break;
            }
            let want_more = !reader_done && open.len() < window;
            tokio::select! {
                _ = cancel.cancelled() => {
                    stopped = true;
                    break;
                }
                Some((peer, batch, outcomes, took)) = inflight.next(), if !inflight.is_empty() => {
                    if let Some(n) = per_host.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                    }
                    if !outcomes.iter().all(|o| matches!(o, StoreOutcome::Unreachable(_))) {
                        deadline.observe(took);
                    }
                    for (job, outcome) in batch.into_iter().zip(outcomes) {
                        let seg_index = job.segment;
                        match outcome {
                            StoreOutcome::Stored => {
                                record.state.ack(seg_index, job.shard, &peer.to_string())
                                    .map_err(|e| StorageError::Internal(e.to_string()))?;
                                dirty = true;
                                sent += 1;
                                bytes_sent += job.bytes.len() as u64;
                                Progress::add(&progress.shards_done, 1);
                                Progress::add(&progress.bytes_sent, job.bytes.len() as u64);
                                if let Some(seg) = open.get_mut(&seg_index) {
                                    seg.outstanding -= 1;
                                    if seg.outstanding == 0 {
                                        Progress::add(&progress.done_bytes, seg.plain_len);
                                        open.remove(&seg_index);
                                    }
                                }
                            }
                            other => {
                                debug!(%peer, segment = seg_index, shard = job.shard, outcome = ?other, "store failed; trying another host");
                                if matches!(other, StoreOutcome::Full | StoreOutcome::Unreachable(_)) {
                                    excluded.insert(peer);
                                }
                                if let Some(seg) = open.get_mut(&seg_index) {
                                    seg.used.remove(&peer);
                                }
                                queue.push_front(job);
                            }
                        }
                    }
                    if excluded.contains(&peer) {
                        // What still waits for a host we gave up on goes to others.
                        for job in assigned.remove(&peer).unwrap_or_default() {
                            if let Some(seg) = open.get_mut(&job.segment) {
                                seg.used.remove(&peer);
                            }
                            queue.push_back(job);
                        }
                    }
                }
                msg = rx.recv(), if want_more => match msg {
                    Some(Ok(Prepared::Segment { index, plain_len, record: new, shards })) => {
                        if let Some(new) = new {
                            record.state.record_segment_progress(new)?;
                            dirty = true;
                        }
                        if shards.is_empty() {
                            Progress::add(&progress.done_bytes, plain_len);
                            continue;
                        }
                        let used = record.state.hosts_of(index).iter().filter_map(|h| h.parse().ok()).collect();
                        open.insert(index, OpenSegment { outstanding: shards.len(), plain_len, used });
                        for s in shards {
                            queue.push_back(Job { segment: index, shard: s.index, hash: s.hash, bytes: Arc::new(s.bytes), tried: Vec::new() });
                        }
                    }
                    Some(Ok(Prepared::End { file_blake3, size })) => end = Some((file_blake3, size)),
                    Some(Err(e)) => return Err(e),
                    None => reader_done = true,
                },
            }
            report.progress(&progress, false);
            if dirty
                && persist.as_ref().is_none_or(|h| h.is_finished())
                && (last_persist.elapsed() >= PERSIST_EVERY || (sent > 0 && !acks_saved))
            {
                persist = Some(self.persist_upload(&key, &record));
                last_persist = Instant::now();
                dirty = false;
                acks_saved = sent > 0;
            }
        }
        if stopped {
            // Drop the requests in flight (their shards count as not placed and are sent
            // again on resume) and stop the reader, which fails its next send.
            drop(inflight);
            drop(rx);
        }
        let _ = reader.await;
        if let Some(h) = persist.take() {
            let _ = h.await;
        }
        if stopped {
            self.save_upload(&key, &record).await?;
            let placed = record
                .state
                .segments
                .iter()
                .flat_map(|s| &s.shards)
                .filter(|s| s.host.is_some())
                .count();
            info!(asset = %record.state.asset_id, path = %key, placed, sent, "put cancelled");
            return Err(StorageError::Cancelled(format!(
                "put of {key} cancelled with {placed} of {} shards placed; its progress is kept: run the same put again to resume",
                record.state.segment_count * n as u64
            )));
        }
        let Some((file_blake3, size)) = end else {
            return Err(StorageError::Internal(
                "the reader stopped before the end of the file".into(),
            ));
        };
        if let Some((segment, placed)) = first_short_segment(&record.state, k) {
            self.save_upload(&key, &record).await?;
            return Err(StorageError::Incomplete {
                segment,
                placed,
                needed: k,
                hosts: hosts.len() - excluded.len(),
            });
        }
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            asset_id: record.state.asset_id.clone(),
            owner: self.me(),
            owner_pubkey: hex::encode(self.identity.public_key()),
            name: record.name.clone(),
            size,
            scheme,
            shard_size: record.state.shard_size,
            segment_count: record.state.segment_count,
            segments: record.state.manifest_segments(),
            wrapped_keys: vec![record.state.owner_key.clone()],
            file_blake3: hex::encode(file_blake3),
            created_ms: record.state.created_ms,
            revision: 0,
            id_salt: record.state.id_salt.clone(),
            expires_ms: record.expires_ms,
        };
        let signed = SignedManifest::sign(self.identity.signing_key(), &manifest)
            .map_err(|e| StorageError::internal("signing the manifest", e))?;
        let saved = Op::put(Table::Manifests, manifest.asset_id.as_str(), &signed)
            .map(|put| vec![put, Op::delete(Table::Uploads, key.as_str())]);
        match saved {
            Ok(ops) => self.store.commit(ops).await,
            Err(e) => Err(e),
        }
        .map_err(|e| StorageError::internal("saving the manifest", e))?;
        let copies = self.publish_manifest(&manifest, &signed, &[]).await;
        let placed: usize = manifest.segments.iter().map(|s| s.shards.len()).sum();
        let distinct: HashSet<&str> = manifest
            .segments
            .iter()
            .flat_map(|s| s.shards.iter().map(|e| e.host.as_str()))
            .collect();
        report.done(distinct.iter().copied());
        info!(asset = %manifest.asset_id, size, placed, sent, ms = started.elapsed().as_millis() as u64, "put done");
        let mut result = json!({
            "asset_id": manifest.asset_id,
            "name": manifest.name,
            "size": size,
            "mode": match scheme { Scheme::ReedSolomon { .. } => "ec", Scheme::Replicate { .. } => "rep" },
            "k": k,
            "n": n,
            "scheme": scheme.to_string(),
            "adapted": scheme != params.scheme,
            "shard_size": manifest.shard_size,
            "segments": manifest.segment_count,
            "shards_placed": placed,
            "shards_total": manifest.segment_count as usize * n,
            "hosts": distinct.len(),
            "resumed": resumed,
            "shards_sent": sent,
            "bytes_sent": bytes_sent,
            "manifest_copies": copies,
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        if let Some(at) = manifest.expires_ms {
            result["expires_ms"] = at.into();
        }
        Ok(result)
    }
}

/// Takes the oldest waiting shards for one host, within the batch caps of the protocol.
fn take_batch(waiting: &mut VecDeque<Job>) -> Vec<Job> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(next) = waiting.front() {
        let fits = batch.len() < MAX_BATCH_SHARDS && bytes + next.bytes.len() <= MAX_BATCH_BYTES;
        if !batch.is_empty() && !fits {
            break;
        }
        bytes += next.bytes.len();
        batch.extend(waiting.pop_front());
    }
    batch
}

/// The host for a job: the planned one when usable, else the best usable host.
fn pick_host(
    hosts: &[HostInfo],
    top: usize,
    job: &Job,
    used: &HashSet<PeerId>,
    excluded: &HashSet<PeerId>,
) -> Option<PeerId> {
    let usable = |p: &PeerId| !used.contains(p) && !excluded.contains(p) && !job.tried.contains(p);
    if top > 0 {
        let planned = (job.segment as usize).wrapping_add(usize::from(job.shard)) % top;
        if let Some(h) = hosts.get(planned).filter(|h| usable(&h.peer)) {
            return Some(h.peer);
        }
    }
    hosts.iter().map(|h| h.peer).find(|p| usable(p))
}

/// The first segment with fewer than k acknowledged shards, and how many it has.
fn first_short_segment(state: &UploadState, k: usize) -> Option<(u64, usize)> {
    if (state.segments.len() as u64) < state.segment_count {
        return Some((state.segments.len() as u64, 0));
    }
    state.segments.iter().find_map(|s| {
        let placed = s.shards.iter().filter(|sh| sh.host.is_some()).count();
        (placed < k).then_some((s.index, placed))
    })
}

trait RecordProgress {
    fn record_segment_progress(&mut self, seg: SegmentProgress) -> Result<(), StorageError>;
}

impl RecordProgress for UploadState {
    /// Appends a segment sealed by the reader (in order).
    fn record_segment_progress(&mut self, seg: SegmentProgress) -> Result<(), StorageError> {
        if seg.index != self.segments.len() as u64 {
            return Err(StorageError::Internal(format!(
                "segment {} recorded out of order (expected {})",
                seg.index,
                self.segments.len()
            )));
        }
        self.segments.push(seg);
        Ok(())
    }
}
