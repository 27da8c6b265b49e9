//! Encrypted, erasure-coded file storage across the mesh: the node's half of
//! `offgrid put/get/share/ls/repair`.
//!
//! The pure parts (encryption, Reed–Solomon, manifests, shard files, resume state) live in
//! the `offgrid-storage` crate; this module moves shards over the shard protocol
//! (`/offgrid/shards/1.0.0`, see `network/shards.rs`) and keeps manifests and upload
//! progress in the node's store. The CLI is a thin client: the node reads and writes the
//! files (absolute paths on its own disk) in long-running operations ([`ops`]) whose
//! progress the CLI polls, and which it cancels when it is interrupted.
//!
//! - [`host`]: this node as a host of other nodes' shards (quota, busy, counters).
//! - [`hosts`]: which hosts to use: active peers heard on IP links that offer storage,
//!   ordered by the broker's reputation and by measured latency.
//! - [`transfer`]: one shard to or from one host, with retries, exponential backoff and
//!   jitter.
//! - [`put`], [`get`], [`repair`], [`share`], [`rm`]: the operations.
//!
//! Placement: shards of a segment go to distinct hosts; with fewer hosts than n the scheme
//! shrinks by [`offgrid_storage::ec::adapt`] (documented there), unless the put says
//! `no_adapt` (`offgrid put --no-adapt`), which then fails with `no_hosts` instead. A host that fails or refuses
//! is replaced by the next one; a host over quota is not asked again during that operation.
//!
//! Measured by `tests/benches/storage_put_get.rs` (release build, 64 MiB, 20 hosts and the
//! client as 21 processes on this 2-core machine, CLI wall time): RS 12/20 with 64 KiB
//! shards put 100–107 MB/s, get 131–161 MB/s, and with 256 KiB shards put 127–130 MB/s, get
//! 216–224 MB/s (medians of 3, a quiet machine). Fetch batches took 64 KiB gets from
//! 142–151 to 211–234 MB/s (medians of 5, four rounds alternating the two builds on a busy
//! machine, where 256 KiB gets measured 156–181 before and 156–193 after, and puts 60–73 at
//! 64 KiB). Before store batches and the hosts' group commit, 64 KiB puts were bound by the
//! hosts' per-shard cost (two fsyncs and one request per shard) at 50 MB/s; single-shard
//! fetches bound 64 KiB gets the same way.

pub mod disk;
pub mod get;
pub mod host;
#[cfg(test)]
mod host_tests;
pub mod hosts;
pub mod ops;
pub mod paths;
pub mod put;
pub mod quota;
mod reader;
pub mod repair;
pub mod rm;
pub mod serve;
#[cfg(test)]
mod service_tests;
pub mod share;
pub mod transfer;

use std::sync::Arc;

use offgrid_storage::SignedManifest;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::{host::ShardHost, hosts::HostStats, ops::Ops};
use crate::{
    config::StorageConfig,
    identity::Identity,
    market::broker::Reputation,
    peers::PeersHandle as Client,
    store::{Op, Store, Table},
};

/// Directory of shard files inside the data directory.
pub const SHARDS_DIR: &str = "shards";

/// Why a storage operation failed. Each variant maps to one stable API error code
/// ([`StorageError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The request is malformed (bad path, scheme, shard size, asset id, peer id).
    #[error("{0}")]
    Invalid(String),
    /// No such asset, file or operation.
    #[error("{0}")]
    NotFound(String),
    /// Too few storage hosts to place the file.
    #[error("only {found} storage host(s) reachable; at least {needed} needed")]
    NoHosts {
        /// Hosts found.
        found: usize,
        /// Hosts needed.
        needed: usize,
    },
    /// The asset's content key is not wrapped for this node.
    #[error("asset {asset} is not shared with this node ({me}); its owner {owner} can run `offgrid share {asset} {me}`")]
    NotShared {
        /// Asset id.
        asset: String,
        /// Owner peer id.
        owner: String,
        /// This node's peer id.
        me: String,
    },
    /// The content key does not decrypt the asset.
    #[error("wrong key: segment {segment} of asset {asset} does not decrypt with it")]
    WrongKey {
        /// Asset id.
        asset: String,
        /// First segment that failed.
        segment: u64,
    },
    /// Only the owner may change (share, repair) an asset.
    #[error("asset {asset} belongs to {owner}; only its owner can {action} it")]
    NotOwner {
        /// Asset id.
        asset: String,
        /// Owner peer id.
        owner: String,
        /// What was attempted.
        action: &'static str,
    },
    /// Fewer than k verified shards of a segment could be fetched.
    #[error("segment {segment}: only {found} of {total} shards reachable and valid, {needed} needed ({corrupt} corrupt, {unreachable} unreachable)")]
    NotEnoughShards {
        /// Segment index.
        segment: u64,
        /// Valid shards found.
        found: usize,
        /// Shards needed (k).
        needed: usize,
        /// Shards in the manifest for that segment.
        total: usize,
        /// Shards that failed their hash check.
        corrupt: usize,
        /// Shards whose host did not answer or did not have them.
        unreachable: usize,
    },
    /// A put could not place k shards of every segment; its progress is kept for a resume.
    #[error("upload incomplete: segment {segment} has {placed} of {needed} needed shards placed ({hosts} hosts usable); run the same put again to resume")]
    Incomplete {
        /// First short segment.
        segment: u64,
        /// Shards placed.
        placed: usize,
        /// Shards needed.
        needed: usize,
        /// Hosts that were usable.
        hosts: usize,
    },
    /// Another operation on the same file or asset is running.
    #[error("{0}")]
    Conflict(String),
    /// Too many reads are being served; try again shortly.
    #[error("{0}")]
    Busy(String),
    /// The operation was cancelled (`DELETE /storage/ops/{id}`, or shutdown); the message
    /// says what was kept and how to resume.
    #[error("{0}")]
    Cancelled(String),
    /// The rebuilt file does not match the manifest (size or whole-file hash).
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A local failure (disk, store); details are in the log.
    #[error("{0}")]
    Internal(String),
}

impl StorageError {
    /// The stable API error code.
    pub fn code(&self) -> &'static str {
        match self {
            StorageError::Invalid(_) => "invalid_request",
            StorageError::NotFound(_) => "not_found",
            StorageError::NoHosts { .. } => "no_hosts",
            StorageError::NotShared { .. } => "not_shared",
            StorageError::WrongKey { .. } => "wrong_key",
            StorageError::NotOwner { .. } => "not_owner",
            StorageError::NotEnoughShards { .. } => "not_enough_shards",
            StorageError::Incomplete { .. } => "upload_incomplete",
            StorageError::Conflict(_) => "conflict",
            StorageError::Busy(_) => "busy",
            StorageError::Cancelled(_) => "cancelled",
            StorageError::Integrity(_) => "integrity",
            StorageError::Internal(_) => "internal",
        }
    }

    pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        warn!(error = %e, "{what}");
        StorageError::Internal(format!("{what}: {e}"))
    }
}

/// The storage service: shared by the API handlers and the background repair task.
pub struct Storage {
    pub(crate) client: Client,
    pub(crate) store: Arc<Store>,
    pub(crate) identity: Identity,
    pub(crate) cfg: StorageConfig,
    pub(crate) host: Arc<ShardHost>,
    pub(crate) reputation: Arc<Reputation>,
    pub(crate) stats: HostStats,
    /// Long-running operations and their progress.
    pub ops: Ops,
    /// Source paths with a put running (one put per file at a time).
    pub(crate) active_puts: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Assets with a repair running (the background check and `offgrid repair` would
    /// otherwise both sign revision r + 1 and one would drop the other's new hosts).
    pub(crate) active_repairs: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The failover monitor puts report to: start, each host's first ack, progress.
    pub(crate) upload_tracker: std::sync::OnceLock<Arc<crate::failover::JobTracker>>,
    /// Slots of the range and stream reads served at once ([`get::stream::MAX_STREAMS`]).
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
}

impl Storage {
    /// Builds the service around the shard host the event loop serves.
    ///
    /// # Errors
    /// [`StorageError::Invalid`] for a bad `[storage]` config.
    pub fn open(
        cfg: &StorageConfig,
        host: Arc<ShardHost>,
        identity: Identity,
        store: Arc<Store>,
        client: Client,
        reputation: Arc<Reputation>,
    ) -> Result<Arc<Self>, StorageError> {
        validate_config(cfg)?;
        Ok(Arc::new(Storage {
            client,
            store,
            identity,
            cfg: cfg.clone(),
            host,
            reputation,
            stats: HostStats::default(),
            ops: Ops::default(),
            active_puts: Default::default(),
            active_repairs: Default::default(),
            upload_tracker: std::sync::OnceLock::new(),
            streams: Arc::new(tokio::sync::Semaphore::new(get::stream::MAX_STREAMS)),
        }))
    }

    /// Reports every put to the failover monitor from now on (`GET /quorum/items`, and an
    /// alert at `GET /quorum/alerts` for an upload that stalls). Set once; later calls are
    /// ignored.
    pub fn track_uploads(&self, tracker: Arc<crate::failover::JobTracker>) {
        let _ = self.upload_tracker.set(tracker);
    }

    /// The shard host, for the event loop.
    pub fn host(&self) -> Arc<ShardHost> {
        self.host.clone()
    }

    /// This node's peer id as text.
    pub(crate) fn me(&self) -> String {
        self.identity.peer_id().to_string()
    }

    /// A manifest this node can read, from its store.
    pub(crate) async fn local_manifest(
        &self,
        asset: &str,
    ) -> Result<Option<SignedManifest>, StorageError> {
        let store = self.store.clone();
        let key = asset.to_owned();
        tokio::task::spawn_blocking(move || store.get::<SignedManifest>(Table::Manifests, &key))
            .await
            .map_err(|e| StorageError::internal("reading a manifest", e))?
            .map_err(|e| StorageError::internal("reading a manifest", e))
    }

    /// Saves a manifest this node can read.
    pub(crate) async fn save_manifest(
        &self,
        asset: &str,
        signed: &SignedManifest,
    ) -> Result<(), StorageError> {
        let op = Op::put(Table::Manifests, asset, signed)
            .map_err(|e| StorageError::internal("saving a manifest", e))?;
        self.store
            .commit(vec![op])
            .await
            .map_err(|e| StorageError::internal("saving a manifest", e))
    }

    /// Runs the background check of this node's assets every `repair_interval_s` until
    /// shutdown. Each round lists the owned assets again and asks [`Storage::candidates`]
    /// for the hosts known now, so hosts that joined since the last round are used.
    /// Shutdown cancels a repair in progress; what it already rebuilt is kept.
    pub async fn background_repair(self: Arc<Self>, cancel: CancellationToken) {
        let secs = self.cfg.repair_interval_s;
        if secs == 0 {
            return;
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; give the node time to find its peers first.
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            let owned = match self.owned_assets().await {
                Ok(list) => list,
                Err(e) => {
                    warn!(error = %e, "background check: cannot list assets");
                    continue;
                }
            };
            for asset in owned {
                let margin = usize::from(self.cfg.repair_margin);
                match self
                    .repair(&asset, repair::Threshold::Margin(margin), None, &cancel)
                    .await
                {
                    Ok(r) if r.shards_rebuilt > 0 => {
                        info!(asset, rebuilt = r.shards_rebuilt, "background repair");
                    }
                    Ok(_) => {}
                    Err(StorageError::Cancelled(_)) => break,
                    Err(StorageError::Conflict(_)) => {
                        debug!(asset, "background check: a repair is already running");
                    }
                    Err(e) => warn!(asset, error = %e, "background repair failed"),
                }
                if cancel.is_cancelled() {
                    break;
                }
            }
        }
    }
}

/// A key held in one of the "running" sets (puts per path, repairs per asset) until drop.
pub(crate) struct Claim<'a> {
    set: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    key: String,
}

impl<'a> Claim<'a> {
    /// Takes `key`, or `None` when an operation holds it already.
    pub(crate) fn take(
        set: &'a std::sync::Mutex<std::collections::HashSet<String>>,
        key: &str,
    ) -> Option<Self> {
        // A poisoned lock only means a panic while inserting or removing; the set is whole.
        let mut held = set.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(key.to_owned()).then(|| Claim {
            set,
            key: key.to_owned(),
        })
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut held = self.set.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(&self.key);
    }
}

fn validate_config(cfg: &StorageConfig) -> Result<(), StorageError> {
    let bad = |m: &str| {
        Err(StorageError::Invalid(format!(
            "invalid [storage] config: {m}"
        )))
    };
    if cfg.shard_size == 0 || cfg.shard_size as usize > offgrid_behaviours::shards::MAX_SHARD_BYTES
    {
        return bad("shard_size must be 1..=1048576");
    }
    if cfg.max_in_flight == 0 || cfg.max_concurrent_stores == 0 || cfg.max_concurrent_fetches == 0 {
        return bad("max_in_flight, max_concurrent_stores and max_concurrent_fetches must be >= 1");
    }
    if cfg.max_attempts == 0 {
        return bad("max_attempts must be >= 1");
    }
    if (offgrid_storage::Scheme::ReedSolomon { k: cfg.k, n: cfg.n })
        .validate()
        .is_err()
        || cfg.r == 0
    {
        return bad("need 1 <= k < n <= 256 and r >= 1");
    }
    Ok(())
}
