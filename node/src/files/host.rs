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
//! A store is admitted against limits that one peer cannot escape by sending many small
//! shards: the peer's byte and shard quotas (bytes counted in blocks on disk, see
//! [`super::quota`]), the number of peers it keeps shards for, and the free-space floor of
//! the file system ([`super::disk`]). Each refusal is answered
//! [`Response::LimitReached`] (or per shard in a batch) with its code, and stores nothing.
//! The store side lives in `host_store.rs`.
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
    Bytes, FetchedShard, Request, Response, MAX_BATCH_BYTES, MAX_BATCH_SHARDS, MAX_HAS_HASHES,
};
use offgrid_storage::{is_valid_hash, ShardStore, SignedManifest, StoreError};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::{
    disk::{self, FreeSpace},
    quota::{HostedShard, PeerQuotas},
};
use crate::{
    config::StorageConfig,
    store::{Op, Store, Table},
};

#[path = "host_store.rs"]
mod store_side;

#[path = "host_delete.rs"]
mod delete_side;

#[path = "host_gc.rs"]
mod gc_side;
pub use gc_side::GcReport;

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
    /// Stores refused by a per-peer limit (bytes, shards, or peers kept).
    pub limit_refusals: AtomicU64,
    /// Stores refused by the free-space floor (or a full disk).
    pub low_disk_refusals: AtomicU64,
    /// Fetches that found a rotten shard.
    pub corrupt: AtomicU64,
}

/// A snapshot of the host's state, as `/storage/status` shows it.
pub use offgrid_api::storage::HostStatus;

/// The shard host.
pub struct ShardHost {
    shards: Arc<ShardStore>,
    store: Arc<Store>,
    stores: Arc<Semaphore>,
    fetches: Arc<Semaphore>,
    busy_retry_ms: u64,
    max_manifests: u64,
    local_x25519: [u8; 32],
    quotas: PeerQuotas,
    free: FreeSpace,
    /// `[storage] debug_serve_delay_ms`: a test's slow host.
    serve_delay: std::time::Duration,
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
        let shards = Arc::new(ShardStore::open(dir, cfg.quota_bytes)?);
        let (quotas, dropped) =
            PeerQuotas::load(cfg, &store, |h| shards.has(h)).map_err(|e| StoreError::Io {
                op: "read the shard index",
                path: dir.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let (peers, usage) = quotas.totals();
        info!(
            peers,
            shards = usage.shards,
            bytes = usage.bytes,
            dropped,
            "per-peer shard usage loaded"
        );
        Ok(ShardHost {
            free: FreeSpace::new(
                disk::statvfs_probe(dir.to_path_buf()),
                cfg.min_free_bytes,
                disk::MAX_AGE,
            ),
            quotas,
            shards,
            store,
            stores: Arc::new(Semaphore::new(cfg.max_concurrent_stores.max(1))),
            fetches: Arc::new(Semaphore::new(cfg.max_concurrent_fetches.max(1))),
            busy_retry_ms: cfg.busy_retry_ms.max(1),
            max_manifests: cfg.max_hosted_manifests,
            local_x25519,
            serve_delay: std::time::Duration::from_millis(cfg.debug_serve_delay_ms),
            counters: Arc::default(),
        })
    }

    /// The same host with another free-space probe (tests simulate a full disk).
    #[cfg(test)]
    pub(crate) fn with_free_space(
        mut self,
        probe: disk::Probe,
        max_age: std::time::Duration,
    ) -> Self {
        self.free = FreeSpace::new(probe, self.free.floor(), max_age);
        self
    }

    /// The same host on a disk that never runs out (unit tests must not depend on the free
    /// space of the machine that runs them).
    #[cfg(test)]
    pub(crate) fn roomy(self) -> Self {
        self.with_free_space(Arc::new(|| Ok(u64::MAX)), disk::MAX_AGE)
    }

    /// What `peer` has here (bytes on disk and shards, with stores in progress).
    pub fn peer_usage(&self, peer: &PeerId) -> super::quota::Usage {
        self.quotas.usage(peer)
    }

    /// The state for `/storage/status`.
    pub fn status(&self) -> HostStatus {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (peers, usage) = self.quotas.totals();
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
            peers,
            peer_disk_bytes: usage.bytes,
            peer_quota_bytes: self.quotas.quota_bytes(),
            peer_quota_shards: self.quotas.quota_shards(),
            limit_refusals: get(&c.limit_refusals),
            free_bytes: self.free.estimate(),
            min_free_bytes: self.free.floor(),
            low_disk_refusals: get(&c.low_disk_refusals),
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
                self.fetching(move || {
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
            Request::Delete { asset_id, order } => self.delete_asset(peer, asset_id, order.0),
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
        Handled::Later(Box::pin(run_blocking(work)))
    }

    /// [`ShardHost::blocking`] for a fetch, after the test-only serve delay (the fetch
    /// slot held meanwhile, as a slow disk would hold it).
    fn fetching(&self, work: impl FnOnce() -> Response + Send + 'static) -> Handled {
        let delay = self.serve_delay;
        Handled::Later(Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            run_blocking(work).await
        }))
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
        self.fetching(move || {
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
                self.uncharge(hash);
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

    /// A shard is gone (quarantined): its peer is no longer charged for it. The index record
    /// goes without waiting; if that write is lost, the next start drops it anyway.
    fn uncharge(&self, hash: &str) {
        let Ok(Some(rec)) = self.store.get::<HostedShard>(Table::HostedShards, hash) else {
            return;
        };
        if let Ok(peer) = rec.peer.parse::<PeerId>() {
            self.quotas.forget(peer, rec.len);
        }
        if let Err(e) = self
            .store
            .commit_later(vec![Op::delete(Table::HostedShards, hash)])
        {
            debug!(error = %e, "cannot drop the record of a quarantined shard now");
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
        if manifest.is_expired(crate::now_ms()) {
            return refused("the manifest has expired".into());
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

async fn run_blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Response::Refused {
            reason: format!("host task failed: {e}"),
        })
}

#[cfg(test)]
#[path = "host_fetch_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "host_quota_tests.rs"]
mod quota_tests;
