//! The fetch loop of a get: verified, decrypted segments of a range, in order, into a
//! bounded channel.
//!
//! Segments are fetched a window at a time (from the next one to hand over, as many as fit
//! in the byte budget, at least enough to keep `storage.max_in_flight` requests busy). For
//! each, k + `storage.get_margin` shards are asked at once (hedging) on the fastest hosts
//! (lowest measured latency, data shards before parity); the first k verified ones are
//! decoded and the rest are dropped: wants still queued are forgotten, and a batch in
//! flight whose every shard belongs to segments already decoded is cancelled. Every shard
//! that fails — unreachable host, missing, corrupt on the host's disk, or bytes that do not
//! match the manifest's hash — is replaced by the next candidate at once.
//!
//! **Hosts within one get.** Each host is asked once per request (no transport retries: the
//! get has other shards to ask). A host whose request failed, or did not answer within the
//! get's deadline, is dropped for the rest of the get at once, and everything queued for it
//! goes to the next candidates, so a dead host's timeout is paid at most once per get, and
//! in parallel with the other hosts' work. The deadline follows this get's own batch
//! latencies (an exponentially weighted mean × [`DEADLINE_FACTOR`], between
//! [`MIN_DEADLINE`] and `storage.request_timeout_s`; [`FIRST_DEADLINE`] before the first
//! answer). A host with a batch in flight for longer than a quarter of that deadline is
//! passed over (asked last) by segments that have other candidates.
//!
//! The shards wanted are queued per host and sent as batches ([`Request::FetchBatch`],
//! within the protocol's caps), oldest segments first: at most [`PER_HOST_IN_FLIGHT`]
//! batches per host and `storage.max_in_flight` in all are in flight, and what is wanted
//! from a host while its batches travel makes its next batch.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    ops::Range,
    time::{Duration, Instant},
};

use futures::{stream::FuturesUnordered, StreamExt};
use libp2p::PeerId;
use offgrid_behaviours::shards::{MAX_BATCH_BYTES, MAX_BATCH_SHARDS};
use offgrid_storage::{asset::RecoverError, recover_segment, shard_hash, ShardCandidate};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Plan;
use crate::files::{
    hosts::BatchDeadline, ops::Progress, transfer::FetchOutcome, Storage, StorageError,
};

/// Most segments in the window, whatever their size.
const MAX_WINDOW: usize = 32;
/// Fetch requests (batches) in flight to one host: two, so that the next batch is asked
/// for while the host reads the previous one.
pub const PER_HOST_IN_FLIGHT: usize = 2;
/// A batch not answered within this many times the get's mean batch latency fails.
pub const DEADLINE_FACTOR: f64 = 8.0;
/// The shortest deadline of a batch.
pub const MIN_DEADLINE: Duration = Duration::from_millis(1_000);
/// The deadline of a batch sent before any answer of this get (capped by the request
/// timeout).
pub const FIRST_DEADLINE: Duration = Duration::from_secs(5);

/// What a fetch did.
#[derive(Debug, Default, Clone)]
pub struct FetchStats {
    /// Shards fetched and verified (used or not).
    pub fetched: u64,
    /// Shards that failed their hash check or that the host found corrupt.
    pub corrupt: u64,
    /// Shards not fetched: missing on the host, host unreachable or too slow.
    pub failed: u64,
    /// Batches cancelled because their segments were decoded without them.
    pub cancelled_batches: u64,
    /// Hosts dropped for the rest of the get (failed or timed out).
    pub dropped_hosts: usize,
    /// Segments handed over.
    pub segments: u64,
}

/// Which segments a fetch reads, and how far ahead it may ask.
pub struct Span {
    /// The segments, handed over in order.
    pub segments: Range<u64>,
    /// About how many bytes of shards are asked ahead of the next segment to hand over.
    pub budget: usize,
}

/// How a fetch ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchEnd {
    /// Every segment of the range was handed over.
    Done,
    /// The receiver went away (the writer failed, or the reader of a stream stopped).
    SinkClosed,
}

struct SegFetch {
    index: u64,
    cipher_len: u64,
    candidates: Vec<(u16, String, PeerId)>,
    next: usize,
    /// Candidates passed over once because their host was slow.
    deferred: HashSet<u16>,
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

/// A batch in flight.
struct Batch {
    peer: PeerId,
    segments: Vec<u64>,
    sent: Instant,
    cancel: CancellationToken,
}

/// How a batch ended.
enum BatchEnd {
    Answered(Vec<FetchOutcome>),
    TimedOut,
    Cancelled,
}

/// This get's view of its hosts: latencies, hosts dropped, batches in flight.
struct Hosts {
    dead: HashSet<PeerId>,
    deadline: BatchDeadline,
    batches: HashMap<u64, Batch>,
    per_host: HashMap<PeerId, usize>,
}

impl Hosts {
    fn new(timeout: Duration) -> Self {
        Hosts {
            dead: HashSet::new(),
            deadline: BatchDeadline::new(DEADLINE_FACTOR, MIN_DEADLINE, FIRST_DEADLINE, timeout),
            batches: HashMap::new(),
            per_host: HashMap::new(),
        }
    }

    fn observe(&mut self, took: Duration) {
        self.deadline.observe(took);
    }

    fn deadline(&self) -> Duration {
        self.deadline.get()
    }

    /// Whether `peer` has a batch in flight for longer than a quarter of the deadline.
    fn slow(&self, peer: &PeerId) -> bool {
        let limit = self.deadline() / 4;
        self.batches
            .values()
            .any(|b| b.peer == *peer && b.sent.elapsed() > limit)
    }
}

impl Storage {
    /// Fetches, verifies and decrypts the segments of `span` of the plan's asset and sends
    /// them in order, `(index, plaintext)`, into `out`.
    ///
    /// # Errors
    /// [`StorageError::NotEnoughShards`] when a segment cannot be rebuilt,
    /// [`StorageError::WrongKey`] / [`StorageError::Integrity`] when one does not decrypt,
    /// [`StorageError::Cancelled`] when `cancel` fires.
    pub(crate) async fn fetch_segments(
        &self,
        plan: &Plan,
        span: Span,
        out: mpsc::Sender<(u64, Vec<u8>)>,
        progress: &Progress,
        cancel: &CancellationToken,
        stats: &mut FetchStats,
    ) -> Result<FetchEnd, StorageError> {
        let (segs, budget) = (span.segments, span.budget);
        let manifest = &plan.manifest;
        let k = plan.k;
        let n = manifest.scheme.total_shards();
        let target = k + usize::from(self.cfg.get_margin).min(n.saturating_sub(k));
        let max = self.cfg.max_in_flight.max(1);
        let timeout = Duration::from_secs(self.cfg.request_timeout_s.max(1));
        let shard_len = plan.codec.shard_size().max(1);
        let window = (budget / (target.max(1) * shard_len))
            .clamp((max / k.max(1) + 2).min(16), MAX_WINDOW) as u64;
        let per_batch = (MAX_BATCH_BYTES / shard_len).clamp(1, MAX_BATCH_SHARDS);
        let mut hosts = Hosts::new(timeout);
        let mut active: BTreeMap<u64, SegFetch> = BTreeMap::new();
        let mut ready: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        // Shards wanted from each host but not asked for yet.
        let mut wanted: HashMap<PeerId, VecDeque<Want>> = HashMap::new();
        let (mut next_seg, mut next_out) = (segs.start, segs.start);
        let mut next_batch = 0u64;
        let mut fetches = FuturesUnordered::new();
        let mut decodes = FuturesUnordered::new();

        while next_out < segs.end {
            // The window starts at the next segment to hand over, so segments decoded out
            // of order and waiting for it count against it too.
            while next_seg < segs.end && next_seg < next_out + window {
                let entry = &manifest.segments[next_seg as usize];
                let mut candidates: Vec<(u16, String, PeerId)> = entry
                    .shards
                    .iter()
                    .filter_map(|s| Some((s.index, s.hash.clone(), s.host.parse().ok()?)))
                    .collect();
                let rank = |c: &(u16, String, PeerId)| {
                    let dead = if hosts.dead.contains(&c.2) { 1e9 } else { 0.0 };
                    dead + self.fetch_rank(&c.2) + if usize::from(c.0) < k { 0.0 } else { 1.0 }
                };
                candidates.sort_by(|a, b| rank(a).total_cmp(&rank(b)));
                active.insert(
                    next_seg,
                    SegFetch {
                        index: next_seg,
                        cipher_len: entry.cipher_len,
                        candidates,
                        next: 0,
                        deferred: HashSet::new(),
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
                while !seg.decoding && seg.valid.len() + seg.inflight < target {
                    let Some((shard, hash, peer)) = seg.candidates.get(seg.next).cloned() else {
                        break;
                    };
                    if hosts.dead.contains(&peer) {
                        seg.next += 1;
                        seg.unreachable += 1;
                        continue;
                    }
                    let others_left = seg.candidates.len() > seg.next + 1;
                    if others_left && !seg.deferred.contains(&shard) && hosts.slow(&peer) {
                        // Ask it last: move it to the end of the candidates, once.
                        seg.deferred.insert(shard);
                        let c = seg.candidates.remove(seg.next);
                        seg.candidates.push(c);
                        continue;
                    }
                    seg.next += 1;
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
                    let (codec, shards) = (plan.codec.clone(), std::mem::take(&mut seg.valid));
                    let (index, cipher_len) = (seg.index, seg.cipher_len);
                    let (key, asset) = (plan.key, plan.asset_bytes);
                    decodes.push(tokio::task::spawn_blocking(move || {
                        (
                            index,
                            recover_segment(&codec, &key, &asset, index, cipher_len, shards),
                        )
                    }));
                }
            }
            // Cancel the batches that only segments already decoded (or done) wait for.
            for b in hosts.batches.values() {
                let useless = b
                    .segments
                    .iter()
                    .all(|s| active.get(s).is_none_or(|seg| seg.decoding));
                if useless && !b.cancel.is_cancelled() {
                    b.cancel.cancel();
                }
            }
            // Ask each host for what waits for it as one batch, oldest segments first.
            let mut ready_hosts: Vec<(u64, PeerId)> = wanted
                .iter()
                .filter(|(p, _)| hosts.per_host.get(*p).copied().unwrap_or(0) < PER_HOST_IN_FLIGHT)
                .filter_map(|(p, q)| Some((q.front()?.segment, *p)))
                .collect();
            ready_hosts.sort_unstable();
            for (_, peer) in ready_hosts {
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
                *hosts.per_host.entry(peer).or_default() += 1;
                let id = next_batch;
                next_batch += 1;
                let token = CancellationToken::new();
                let mut segments: Vec<u64> = batch.iter().map(|w| w.segment).collect();
                segments.dedup();
                hosts.batches.insert(
                    id,
                    Batch {
                        peer,
                        segments,
                        sent: Instant::now(),
                        cancel: token.clone(),
                    },
                );
                let deadline = hosts.deadline();
                let hashes = batch.iter().map(|w| w.hash.clone()).collect();
                fetches.push(async move {
                    let end = tokio::select! {
                        _ = token.cancelled() => BatchEnd::Cancelled,
                        r = tokio::time::timeout(deadline, self.fetch_batch_once(peer, hashes)) => {
                            r.map_or(BatchEnd::TimedOut, BatchEnd::Answered)
                        }
                    };
                    (id, peer, batch, end)
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    return Err(StorageError::Cancelled(format!(
                        "cancelled after {} of {} segments", next_out - segs.start, segs.end - segs.start
                    )));
                }
                Some((id, peer, batch, end)) = fetches.next(), if !fetches.is_empty() => {
                    if let Some(n) = hosts.per_host.get_mut(&peer) {
                        *n = n.saturating_sub(1);
                    }
                    let took = hosts.batches.remove(&id).map(|b| b.sent.elapsed()).unwrap_or_default();
                    let outcomes = match end {
                        BatchEnd::Answered(outcomes) => {
                            hosts.observe(took);
                            outcomes
                        }
                        BatchEnd::TimedOut => {
                            debug!(%peer, ms = took.as_millis() as u64, "host too slow; dropped for this get");
                            // What it took is a lower bound of its latency.
                            self.stats.observe(peer, took / batch.len().max(1) as u32);
                            batch.iter().map(|_| FetchOutcome::Unreachable("timed out".into())).collect()
                        }
                        BatchEnd::Cancelled => {
                            stats.cancelled_batches += 1;
                            self.stats.observe(peer, took / batch.len().max(1) as u32);
                            for want in &batch {
                                if let Some(seg) = active.get_mut(&want.segment) {
                                    seg.inflight = seg.inflight.saturating_sub(1);
                                }
                            }
                            continue;
                        }
                    };
                    for (want, outcome) in batch.into_iter().zip(outcomes) {
                        let good = matches!(&outcome, FetchOutcome::Bytes(b) if shard_hash(b) == want.hash);
                        let rotten = match &outcome {
                            FetchOutcome::Bytes(_) => !good,
                            FetchOutcome::Missing { corrupt } => *corrupt,
                            FetchOutcome::Unreachable(_) => false,
                        };
                        if rotten {
                            // Counted even when the segment was rebuilt meanwhile.
                            stats.corrupt += 1;
                        }
                        let Some(seg) = active.get_mut(&want.segment) else { continue };
                        let (segment, index, hash) = (want.segment, want.shard, want.hash);
                        seg.inflight = seg.inflight.saturating_sub(1);
                        match outcome {
                            FetchOutcome::Bytes(bytes) if good => {
                                stats.fetched += 1;
                                Progress::add(&progress.shards_done, 1);
                                Progress::add(&progress.bytes_received, bytes.len() as u64);
                                if !seg.decoding {
                                    seg.valid.push(ShardCandidate { index, expected_hash: hash, bytes });
                                }
                            }
                            FetchOutcome::Bytes(_) | FetchOutcome::Missing { corrupt: true } => {
                                debug!(%peer, segment, shard = index, "corrupt shard bypassed");
                                seg.corrupt += 1;
                            }
                            FetchOutcome::Missing { corrupt: false } => {
                                seg.unreachable += 1;
                                stats.failed += 1;
                            }
                            FetchOutcome::Unreachable(e) => {
                                if hosts.dead.insert(peer) {
                                    debug!(%peer, error = %e, "host unreachable; dropped for this get");
                                }
                                seg.unreachable += 1;
                                stats.failed += 1;
                            }
                        }
                    }
                    if hosts.dead.contains(&peer) {
                        // What still waits for a host we gave up on goes to the next
                        // candidates, and its other batches in flight are not waited for.
                        for want in wanted.remove(&peer).unwrap_or_default() {
                            if let Some(seg) = active.get_mut(&want.segment) {
                                seg.inflight = seg.inflight.saturating_sub(1);
                                seg.unreachable += 1;
                            }
                        }
                        for b in hosts.batches.values().filter(|b| b.peer == peer) {
                            b.cancel.cancel();
                        }
                    }
                }
                Some(done) = decodes.next(), if !decodes.is_empty() => {
                    let (index, result) = done.map_err(|e| StorageError::internal("decoding", e))?;
                    let plain = result.map_err(|e| match e {
                        RecoverError::Decrypt(_) if plan.explicit_key => StorageError::WrongKey {
                            asset: manifest.asset_id.clone(),
                            segment: index,
                        },
                        other => StorageError::Integrity(other.to_string()),
                    })?;
                    active.remove(&index);
                    Progress::add(&progress.done_bytes, plain.len() as u64);
                    ready.insert(index, plain);
                    while let Some(plain) = ready.remove(&next_out) {
                        if out.send((next_out, plain)).await.is_err() {
                            stats.dropped_hosts = hosts.dead.len();
                            return Ok(FetchEnd::SinkClosed);
                        }
                        stats.segments += 1;
                        next_out += 1;
                    }
                }
            }
        }
        stats.dropped_hosts = hosts.dead.len();
        Ok(FetchEnd::Done)
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
            Some(seg) => seg.inflight = seg.inflight.saturating_sub(1),
            None => {}
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_follows_the_get_and_stays_within_bounds() {
        let timeout = Duration::from_secs(30);
        let mut h = Hosts::new(timeout);
        assert_eq!(h.deadline(), FIRST_DEADLINE);
        assert_eq!(
            Hosts::new(Duration::from_secs(2)).deadline(),
            Duration::from_secs(2)
        );
        h.observe(Duration::from_millis(10));
        assert_eq!(h.deadline(), MIN_DEADLINE);
        for _ in 0..50 {
            h.observe(Duration::from_millis(500));
        }
        let d = h.deadline();
        assert!(
            d > Duration::from_secs(3) && d <= Duration::from_secs(4),
            "{d:?}"
        );
        for _ in 0..50 {
            h.observe(Duration::from_secs(60));
        }
        assert_eq!(h.deadline(), timeout);
    }
}
