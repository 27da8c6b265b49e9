//! The store side of the shard host: admit each shard against its peer's quotas and the
//! free-space floor, write it, record which peer it is charged to, then answer.
//!
//! For each shard, in order: the cheap caps (size, hash form, a store slot); a [`Ticket`]
//! from the peer's quotas (free for a shard already held); the free-space floor for a new
//! one; the write ([`ShardStore::put`] or one group commit for a batch); and, for a shard
//! newly written, its record in the shard index, committed before the answer so that an
//! acknowledged shard is charged to its peer across restarts. A shard whose record cannot
//! be committed is deleted again and refused: nothing is held that is not accounted for. A
//! refused shard costs the host no write at all.

use std::{
    io,
    sync::{atomic::Ordering, Arc},
};

use libp2p::PeerId;
use offgrid_behaviours::shards::{
    LimitCode, Response, ShardData, ShardOutcome, MAX_BATCH_BYTES, MAX_BATCH_SHARDS,
    MAX_SHARD_BYTES,
};
use offgrid_storage::{is_valid_hash, PutOutcome, StoreError};
use tracing::{debug, warn};

use super::{Handled, ShardHost};
use crate::files::quota::{PeerQuotas, Refusal, Ticket};

impl ShardHost {
    pub(super) fn store_shard(
        self: &Arc<Self>,
        peer: PeerId,
        hash: String,
        bytes: Vec<u8>,
    ) -> Handled {
        if bytes.len() > MAX_SHARD_BYTES {
            return Self::refuse(format!("shard larger than {MAX_SHARD_BYTES} bytes"));
        }
        if !is_valid_hash(&hash) {
            return Self::refuse("malformed shard hash");
        }
        let Ok(permit) = self.stores.clone().try_acquire_owned() else {
            return self.busy();
        };
        let this = self.clone();
        self.blocking(move || {
            let _permit = permit;
            let outcome = match this.admit(peer, &hash, bytes.len()) {
                Err(refusal) => this.limited(peer, refusal),
                Ok(ticket) => {
                    let mut results = [this.shards.put(&hash, &bytes)];
                    this.settle(&[(hash.as_str(), ticket)], &mut results);
                    let [result] = results;
                    this.outcome(peer, &hash, bytes.len(), result)
                }
            };
            match outcome {
                ShardOutcome::Stored { already_had } => Response::Stored { already_had },
                ShardOutcome::QuotaExceeded { used, quota } => {
                    Response::QuotaExceeded { used, quota }
                }
                ShardOutcome::LimitReached { code, used, limit } => {
                    Response::LimitReached { code, used, limit }
                }
                ShardOutcome::Busy { retry_after_ms } => Response::Busy { retry_after_ms },
                ShardOutcome::Refused { reason } => Response::Refused { reason },
            }
        })
    }

    /// A batch: checked whole against the caps, then group-committed on one store slot.
    pub(super) fn store_batch(self: &Arc<Self>, peer: PeerId, shards: Vec<ShardData>) -> Handled {
        if shards.is_empty() || shards.len() > MAX_BATCH_SHARDS {
            return Self::refuse(format!("a batch holds 1 to {MAX_BATCH_SHARDS} shards"));
        }
        let total: usize = shards.iter().map(|s| s.bytes.0.len()).sum();
        if total > MAX_BATCH_BYTES || shards.iter().any(|s| s.bytes.0.len() > MAX_SHARD_BYTES) {
            return Self::refuse(format!(
                "a batch holds at most {MAX_BATCH_BYTES} bytes, {MAX_SHARD_BYTES} per shard"
            ));
        }
        let Ok(permit) = self.stores.clone().try_acquire_owned() else {
            return self.busy();
        };
        let this = self.clone();
        self.blocking(move || {
            let _permit = permit;
            let mut outcomes: Vec<Option<ShardOutcome>> = vec![None; shards.len()];
            let mut admitted: Vec<(usize, Ticket)> = Vec::with_capacity(shards.len());
            for (i, s) in shards.iter().enumerate() {
                match this.admit(peer, &s.hash, s.bytes.0.len()) {
                    Ok(ticket) => admitted.push((i, ticket)),
                    Err(refusal) => outcomes[i] = Some(this.limited(peer, refusal)),
                }
            }
            if !admitted.is_empty() {
                let items: Vec<(&str, &[u8])> = admitted
                    .iter()
                    .map(|(i, _)| (shards[*i].hash.as_str(), shards[*i].bytes.0.as_slice()))
                    .collect();
                let mut results = this.shards.put_many(&items);
                let tickets: Vec<(&str, Ticket)> = items
                    .iter()
                    .zip(&admitted)
                    .map(|((h, _), (_, t))| (*h, *t))
                    .collect();
                this.settle(&tickets, &mut results);
                for ((i, _), result) in admitted.iter().zip(results) {
                    let s = &shards[*i];
                    outcomes[*i] = Some(this.outcome(peer, &s.hash, s.bytes.0.len(), result));
                }
            }
            let outcomes = outcomes
                .into_iter()
                .map(|o| {
                    // Every index got an outcome above (refused, or one result per
                    // admitted shard); the fallback only guards a short `put_many` answer.
                    o.unwrap_or_else(|| ShardOutcome::Refused {
                        reason: "the host cannot write the shard".into(),
                    })
                })
                .collect();
            Response::StoredBatch { outcomes }
        })
    }

    /// A ticket from `peer`'s quotas, then room above the free-space floor for a new shard.
    fn admit(&self, peer: PeerId, hash: &str, len: usize) -> Result<Ticket, Refusal> {
        let ticket = self
            .quotas
            .reserve(peer, len as u64, || self.shards.has(hash))?;
        if let Ticket::Charged { cost, .. } = ticket {
            if let Err(refusal) = self.free.admit(cost) {
                self.quotas.release(ticket);
                return Err(refusal);
            }
        }
        Ok(ticket)
    }

    /// Ends each shard's ticket: a shard newly written keeps its charge, recorded in the
    /// shard index (one commit for all of them); any other gives it back. When the records
    /// cannot be committed, the shards are deleted again and their results become errors.
    fn settle(&self, tickets: &[(&str, Ticket)], results: &mut [Result<PutOutcome, StoreError>]) {
        let mut kept = Vec::new();
        let mut ops = Vec::new();
        for (i, ((hash, ticket), result)) in tickets.iter().zip(results.iter()).enumerate() {
            match (result, PeerQuotas::keep(ticket, hash)) {
                (Ok(PutOutcome::Stored), Some(op)) => {
                    kept.push(i);
                    ops.push(op);
                }
                _ => self.quotas.release(*ticket),
            }
        }
        if ops.is_empty() {
            return;
        }
        let Err(e) = self.store.commit_blocking(ops) else {
            return;
        };
        warn!(error = %e, shards = kept.len(), "cannot record stored shards; deleting them");
        let full = matches!(e, crate::store::StoreError::NoSpace(_));
        for i in kept {
            let (hash, ticket) = tickets[i];
            if let Err(e) = self.shards.delete(hash) {
                warn!(error = %e, hash, "cannot delete an unrecorded shard");
            }
            self.quotas.release(ticket);
            let kind = if full {
                io::ErrorKind::StorageFull
            } else {
                io::ErrorKind::Other
            };
            results[i] = Err(StoreError::Io {
                op: "record the shard",
                path: self.shards.dir().to_path_buf(),
                source: io::Error::new(kind, e.to_string()),
            });
        }
    }

    /// Counts and logs a limit's refusal, and says what to answer for it.
    fn limited(&self, peer: PeerId, r: Refusal) -> ShardOutcome {
        let c = &self.counters;
        if r.code == LimitCode::FreeSpace {
            c.low_disk_refusals.fetch_add(1, Ordering::Relaxed);
        } else {
            c.limit_refusals.fetch_add(1, Ordering::Relaxed);
        }
        debug!(%peer, code = r.code.as_str(), used = r.used, limit = r.limit, "shard refused");
        ShardOutcome::LimitReached {
            code: r.code,
            used: r.used,
            limit: r.limit,
        }
    }

    /// Counts and logs what a store did, and says what to answer for it.
    fn outcome(
        &self,
        peer: PeerId,
        hash: &str,
        len: usize,
        result: Result<PutOutcome, StoreError>,
    ) -> ShardOutcome {
        let c = &self.counters;
        match result {
            Ok(outcome) => {
                c.received_bytes.fetch_add(len as u64, Ordering::Relaxed);
                c.received_shards.fetch_add(1, Ordering::Relaxed);
                let already_had = outcome == PutOutcome::AlreadyHad;
                if !already_had {
                    c.stored_shards.fetch_add(1, Ordering::Relaxed);
                }
                debug!(%peer, hash = %hash.get(..12).unwrap_or(hash), len, already_had, "shard stored");
                ShardOutcome::Stored { already_had }
            }
            Err(StoreError::QuotaExceeded { used, quota }) => {
                c.quota_refusals.fetch_add(1, Ordering::Relaxed);
                ShardOutcome::QuotaExceeded { used, quota }
            }
            Err(StoreError::InFlight(_)) => {
                c.busy.fetch_add(1, Ordering::Relaxed);
                ShardOutcome::Busy {
                    retry_after_ms: self.busy_retry_ms,
                }
            }
            Err(e @ (StoreError::HashMismatch { .. } | StoreError::InvalidHash(_))) => {
                ShardOutcome::Refused {
                    reason: e.to_string(),
                }
            }
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::StorageFull => {
                warn!(error = %source, "the disk is full; refusing shards");
                self.free.invalidate();
                self.limited(
                    peer,
                    Refusal {
                        code: LimitCode::FreeSpace,
                        used: 0,
                        limit: self.free.floor(),
                    },
                )
            }
            Err(e) => {
                warn!(error = %e, "cannot store shard");
                ShardOutcome::Refused {
                    reason: "the host cannot write the shard".into(),
                }
            }
        }
    }
}
