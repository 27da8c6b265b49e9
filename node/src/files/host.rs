//! The host side of the shard protocol: keep other nodes' shards and manifests.
//!
//! Shards live in an [`offgrid_storage::ShardStore`] under `<data-dir>/shards` (hash checked
//! on store and on fetch, durable before the ack, a quota). At most
//! `storage.max_concurrent_stores` stores run at once and `storage.max_concurrent_fetches`
//! fetches (or has/manifest requests) — a batch of stores takes one store slot and is
//! group-committed ([`ShardStore::put_many`]: two durability barriers per batch, acks only
//! after the second), and a batch of fetches ([`Request::FetchBatch`]) takes one fetch slot
//! and reads its shards one after the other, each checked against its hash, until the
//! answer holds [`MAX_BATCH_BYTES`]; beyond, the host answers
//! [`Response::Busy`] at once instead of queueing, so a client moves on or waits, and a flood
//! costs the host no memory. Disk work runs in `spawn_blocking`.
//!
//! Counters ([`HostCounters`]) say what the host received: `received_bytes` counts the shard
//! bytes of every store it accepted (stored or already held), which is what a client sent.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use libp2p::PeerId;
use offgrid_behaviours::shards::{
    Bytes, FetchedShard, Request, Response, ShardData, ShardOutcome, MAX_BATCH_BYTES,
    MAX_BATCH_SHARDS, MAX_HAS_HASHES, MAX_SHARD_BYTES,
};
use offgrid_storage::{is_valid_hash, PutOutcome, ShardStore, SignedManifest, StoreError};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::{
    config::StorageConfig,
    store::{Store, Table},
};

/// What [`ShardHost::handle`] did with a request.
pub enum Handled {
    /// Answer now.
    Now(Response),
    /// Answer when this finishes.
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

/// What a host has done, for `GET /storage/status`.
#[derive(Debug, Default)]
pub struct HostCounters {
    /// Shard bytes of accepted stores (stored or already held).
    pub received_bytes: AtomicU64,
    /// Accepted stores.
    pub received_shards: AtomicU64,
    /// Stores that wrote a new shard.
    pub stored_shards: AtomicU64,
    /// Shards served.
    pub served_shards: AtomicU64,
    /// Requests answered busy.
    pub busy: AtomicU64,
    /// Stores refused for the quota.
    pub quota_refusals: AtomicU64,
    /// Fetches that found a rotten shard.
    pub corrupt: AtomicU64,
}

/// A snapshot of the host's state.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// Shards held.
    pub shards: u64,
    /// Bytes held.
    pub used_bytes: u64,
    /// The quota.
    pub quota_bytes: u64,
    /// Shard bytes of accepted stores since start.
    pub received_bytes: u64,
    /// Accepted stores since start.
    pub received_shards: u64,
    /// Stores that wrote a new shard since start.
    pub stored_shards: u64,
    /// Shards served since start.
    pub served_shards: u64,
    /// Requests answered busy since start.
    pub busy: u64,
    /// Stores refused for the quota since start.
    pub quota_refusals: u64,
    /// Rotten shards found since start.
    pub corrupt: u64,
}

/// The shard host.
pub struct ShardHost {
    shards: Arc<ShardStore>,
    store: Arc<Store>,
    stores: Arc<Semaphore>,
    fetches: Arc<Semaphore>,
    busy_retry_ms: u64,
    max_manifests: u64,
    local_x25519: [u8; 32],
    /// What the host did.
    pub counters: Arc<HostCounters>,
}

fn manifest_is_newer(store: &Store, table: Table, asset: &str, m: &SignedManifest) -> bool {
    let Ok(new) = m.verify() else { return false };
    match store.get::<SignedManifest>(table, asset) {
        Ok(Some(old)) => match old.verify() {
            Ok(old_m) => old_m.owner_pubkey == new.owner_pubkey && new.revision >= old_m.revision,
            Err(_) => true,
        },
        Ok(None) => true,
        Err(_) => false,
    }
}

impl ShardHost {
    /// Opens the shard directory.
    ///
    /// # Errors
    /// The shard store's error when the directory cannot be created or scanned.
    pub fn open(
        dir: &std::path::Path,
        cfg: &StorageConfig,
        store: Arc<Store>,
        local_x25519: [u8; 32],
    ) -> Result<Self, StoreError> {
        Ok(ShardHost {
            shards: Arc::new(ShardStore::open(dir, cfg.quota_bytes)?),
            store,
            stores: Arc::new(Semaphore::new(cfg.max_concurrent_stores.max(1))),
            fetches: Arc::new(Semaphore::new(cfg.max_concurrent_fetches.max(1))),
            busy_retry_ms: cfg.busy_retry_ms.max(1),
            max_manifests: cfg.max_hosted_manifests,
            local_x25519,
            counters: Arc::default(),
        })
    }

    /// The state for `/storage/status`.
    pub fn status(&self) -> HostStatus {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HostStatus {
            shards: self.shards.shard_count(),
            used_bytes: self.shards.used_bytes(),
            quota_bytes: self.shards.quota(),
            received_bytes: get(&c.received_bytes),
            received_shards: get(&c.received_shards),
            stored_shards: get(&c.stored_shards),
            served_shards: get(&c.served_shards),
            busy: get(&c.busy),
            quota_refusals: get(&c.quota_refusals),
            corrupt: get(&c.corrupt),
        }
    }

    fn busy(&self) -> Handled {
        self.counters.busy.fetch_add(1, Ordering::Relaxed);
        Handled::Now(Response::Busy {
            retry_after_ms: self.busy_retry_ms,
        })
    }

    fn refuse(reason: impl Into<String>) -> Handled {
        Handled::Now(Response::Refused {
            reason: reason.into(),
        })
    }

    /// Handles one inbound request: an answer now, or bounded work that answers later.
    pub fn handle(self: &Arc<Self>, peer: PeerId, request: Request) -> Handled {
        match request {
            Request::Store { hash, bytes } => self.store_shard(peer, hash, bytes.0),
            Request::StoreBatch { shards } => self.store_batch(peer, shards),
            Request::Fetch { hash } => {
                if !is_valid_hash(&hash) {
                    return Self::refuse("malformed shard hash");
                }
                let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
                    return self.busy();
                };
                let this = self.clone();
                self.blocking(move || {
                    let _permit = permit;
                    match this.read_shard(&hash) {
                        FetchedShard::Shard { bytes } => {
                            this.counters.served_shards.fetch_add(1, Ordering::Relaxed);
                            Response::Shard { bytes }
                        }
                        FetchedShard::NotFound => Response::NotFound,
                        FetchedShard::Corrupt => Response::Corrupt,
                        FetchedShard::Busy { retry_after_ms } => Response::Busy { retry_after_ms },
                        FetchedShard::Refused { reason } => Response::Refused { reason },
                    }
                })
            }
            Request::FetchBatch { hashes } => self.fetch_batch(hashes),
            Request::Has { hashes } => {
                if hashes.len() > MAX_HAS_HASHES {
                    return Self::refuse(format!("at most {MAX_HAS_HASHES} hashes per request"));
                }
                let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
                    return self.busy();
                };
                let shards = self.shards.clone();
                self.blocking(move || {
                    let _permit = permit;
                    Response::Have {
                        present: hashes.iter().map(|h| shards.has(h)).collect(),
                    }
                })
            }
            Request::StoreManifest { asset_id, manifest } => {
                let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
                    return self.busy();
                };
                let this = self.clone();
                self.blocking(move || {
                    let _permit = permit;
                    this.keep_manifest(peer, &asset_id, &manifest.0)
                })
            }
            Request::FetchManifest { asset_id } => {
                let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
                    return self.busy();
                };
                let store = self.store.clone();
                self.blocking(move || {
                    let _permit = permit;
                    for table in [Table::Manifests, Table::HostedManifests] {
                        if let Ok(Some(m)) = store.get::<SignedManifest>(table, &asset_id) {
                            if let Ok(bytes) = serde_json::to_vec(&m) {
                                return Response::Manifest {
                                    manifest: Bytes(bytes),
                                };
                            }
                        }
                    }
                    Response::NotFound
                })
            }
        }
    }

    fn blocking(&self, work: impl FnOnce() -> Response + Send + 'static) -> Handled {
        Handled::Later(Box::pin(async move {
            tokio::task::spawn_blocking(work)
                .await
                .unwrap_or_else(|e| Response::Refused {
                    reason: format!("host task failed: {e}"),
                })
        }))
    }

    fn store_shard(self: &Arc<Self>, peer: PeerId, hash: String, bytes: Vec<u8>) -> Handled {
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
            let result = this.shards.put(&hash, &bytes);
            match this.outcome(peer, &hash, bytes.len(), result) {
                ShardOutcome::Stored { already_had } => Response::Stored { already_had },
                ShardOutcome::QuotaExceeded { used, quota } => {
                    Response::QuotaExceeded { used, quota }
                }
                ShardOutcome::Busy { retry_after_ms } => Response::Busy { retry_after_ms },
                ShardOutcome::Refused { reason } => Response::Refused { reason },
            }
        })
    }

    /// A batch: checked whole against the caps, then group-committed on one store slot.
    fn store_batch(self: &Arc<Self>, peer: PeerId, shards: Vec<ShardData>) -> Handled {
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
            let items: Vec<(&str, &[u8])> = shards
                .iter()
                .map(|s| (s.hash.as_str(), s.bytes.0.as_slice()))
                .collect();
            let results = this.shards.put_many(&items);
            let outcomes = shards
                .iter()
                .zip(results)
                .map(|(s, r)| this.outcome(peer, &s.hash, s.bytes.0.len(), r))
                .collect();
            Response::StoredBatch { outcomes }
        })
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
            Err(e) => {
                warn!(error = %e, "cannot store shard");
                ShardOutcome::Refused {
                    reason: "the host cannot write the shard".into(),
                }
            }
        }
    }

    /// A batch of fetches: checked whole against the shard cap, then read on one fetch slot.
    fn fetch_batch(self: &Arc<Self>, hashes: Vec<String>) -> Handled {
        if hashes.is_empty() || hashes.len() > MAX_BATCH_SHARDS {
            return Self::refuse(format!("a batch asks for 1 to {MAX_BATCH_SHARDS} shards"));
        }
        let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
            return self.busy();
        };
        let this = self.clone();
        self.blocking(move || {
            let _permit = permit;
            let mut total = 0usize;
            let shards = hashes
                .iter()
                .map(|hash| match this.read_shard(hash) {
                    FetchedShard::Shard { bytes } if total + bytes.0.len() > MAX_BATCH_BYTES => {
                        // Keeps the answer under the codec's response cap.
                        FetchedShard::Busy {
                            retry_after_ms: this.busy_retry_ms,
                        }
                    }
                    FetchedShard::Shard { bytes } => {
                        total += bytes.0.len();
                        this.counters.served_shards.fetch_add(1, Ordering::Relaxed);
                        FetchedShard::Shard { bytes }
                    }
                    other => other,
                })
                .collect();
            Response::ShardBatch { shards }
        })
    }

    /// Reads one shard, checked against its hash (a rotten one is quarantined).
    fn read_shard(&self, hash: &str) -> FetchedShard {
        if !is_valid_hash(hash) {
            return FetchedShard::Refused {
                reason: "malformed shard hash".into(),
            };
        }
        match self.shards.get(hash) {
            Ok(bytes) => FetchedShard::Shard {
                bytes: Bytes(bytes),
            },
            Err(StoreError::NotFound(_)) => FetchedShard::NotFound,
            Err(StoreError::Corrupt { quarantined, .. }) => {
                self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                warn!(hash, quarantined = %quarantined.display(), "shard rotted on disk");
                FetchedShard::Corrupt
            }
            Err(e) => {
                warn!(error = %e, "cannot read shard");
                FetchedShard::Refused {
                    reason: "the host cannot read the shard".into(),
                }
            }
        }
    }

    /// Keeps a verified manifest: as a host, and in the readable table if it is shared with
    /// this node.
    fn keep_manifest(&self, peer: PeerId, asset_id: &str, bytes: &[u8]) -> Response {
        let refused = |reason: String| Response::Refused { reason };
        let signed: SignedManifest = match serde_json::from_slice(bytes) {
            Ok(s) => s,
            Err(e) => return refused(format!("not a signed manifest: {e}")),
        };
        let manifest = match signed.verify() {
            Ok(m) => m,
            Err(e) => return refused(e.to_string()),
        };
        if manifest.asset_id != asset_id {
            return refused("asset id does not match the manifest".into());
        }
        let readable = manifest.wrapped_key_for(&self.local_x25519).is_some();
        let table = if readable {
            Table::Manifests
        } else {
            Table::HostedManifests
        };
        let exists = matches!(
            self.store.get::<SignedManifest>(table, asset_id),
            Ok(Some(_))
        );
        if !exists && !readable {
            let count = self.store.len(Table::HostedManifests).unwrap_or(u64::MAX);
            if count >= self.max_manifests {
                return refused("the host keeps no more manifests".into());
            }
        }
        if !manifest_is_newer(&self.store, table, asset_id, &signed) {
            return refused(
                "a newer revision of this manifest, or one of another owner, is held".into(),
            );
        }
        match self.store.put_blocking(table, asset_id, &signed) {
            Ok(()) => {
                debug!(%peer, asset_id, revision = manifest.revision, readable, "manifest kept");
                Response::ManifestStored
            }
            Err(e) => {
                warn!(error = %e, "cannot keep manifest");
                refused("the host cannot write the manifest".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use offgrid_storage::shard_hash;

    use super::*;

    fn host(dir: &std::path::Path) -> Arc<ShardHost> {
        let store = Arc::new(Store::in_memory().unwrap());
        Arc::new(ShardHost::open(dir, &StorageConfig::default(), store, [0; 32]).unwrap())
    }

    /// Stores `bytes` on `host` and returns its hash.
    fn keep(host: &ShardHost, bytes: &[u8]) -> String {
        let hash = shard_hash(bytes);
        host.shards.put(&hash, bytes).unwrap();
        hash
    }

    /// The shard file of `hash` under `dir`.
    fn file_of(dir: &std::path::Path, hash: &str) -> std::path::PathBuf {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().and_then(|n| n.to_str()) == Some(&hash[2..]) {
                    return p;
                }
            }
        }
        panic!("no file for {hash}");
    }

    async fn answer(host: &Arc<ShardHost>, request: Request) -> Response {
        match host.handle(PeerId::random(), request) {
            Handled::Now(r) => r,
            Handled::Later(f) => f.await,
        }
    }

    #[tokio::test]
    async fn a_fetch_batch_answers_each_shard_present_missing_corrupt_or_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let good = keep(&host, b"a shard that is fine");
        let rotten = keep(&host, b"a shard that will rot");
        std::fs::write(file_of(dir.path(), &rotten), b"bit rot").unwrap();
        let missing = shard_hash(b"never stored");
        let request = Request::FetchBatch {
            hashes: vec![
                good.clone(),
                missing,
                rotten.clone(),
                "not a hash".into(),
                good,
            ],
        };
        let Response::ShardBatch { shards } = answer(&host, request).await else {
            panic!("not a batch answer");
        };
        let fine = FetchedShard::Shard {
            bytes: Bytes(b"a shard that is fine".to_vec()),
        };
        assert_eq!(shards.len(), 5);
        assert_eq!(shards[0], fine);
        assert_eq!(shards[1], FetchedShard::NotFound);
        assert_eq!(shards[2], FetchedShard::Corrupt);
        assert!(matches!(shards[3], FetchedShard::Refused { .. }));
        assert_eq!(shards[4], fine);
        let status = host.status();
        assert_eq!((status.served_shards, status.corrupt), (2, 1));
        // The rotten shard was quarantined: a second ask finds it gone.
        let again = answer(&host, Request::Fetch { hash: rotten }).await;
        assert_eq!(again, Response::NotFound);
    }

    #[tokio::test]
    async fn a_fetch_batch_beyond_the_caps_is_refused_or_cut() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let too_many = Request::FetchBatch {
            hashes: vec![shard_hash(b"x"); MAX_BATCH_SHARDS + 1],
        };
        assert!(matches!(
            answer(&host, too_many).await,
            Response::Refused { .. }
        ));
        let empty = Request::FetchBatch { hashes: Vec::new() };
        assert!(matches!(
            answer(&host, empty).await,
            Response::Refused { .. }
        ));

        // Five shards of 1 MiB: the answer holds four (MAX_BATCH_BYTES) and says busy for
        // the fifth, so it stays under the codec's response cap.
        let hashes: Vec<String> = (0..5u8)
            .map(|i| keep(&host, &vec![i; MAX_SHARD_BYTES]))
            .collect();
        let Response::ShardBatch { shards } = answer(&host, Request::FetchBatch { hashes }).await
        else {
            panic!("not a batch answer");
        };
        let sent: usize = shards
            .iter()
            .map(|s| match s {
                FetchedShard::Shard { bytes } => bytes.0.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(sent, MAX_BATCH_BYTES);
        assert!(matches!(shards[4], FetchedShard::Busy { .. }));
    }
}
