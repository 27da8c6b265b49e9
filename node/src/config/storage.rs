//! `[storage]`: this node as a shard host and as a storage client.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Encrypted, erasure-coded file storage (`[storage]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Bytes of other nodes' shards this host keeps at most; beyond, stores are refused.
    pub quota_bytes: u64,
    /// Bytes on disk this host keeps for any one peer, counted in file-system blocks (a shard
    /// costs its length rounded up to 4 KiB, plus 512 bytes for its inode and directory
    /// entry); beyond, that peer's stores are refused (`LimitReached`, `PeerBytes`).
    pub peer_quota_bytes: u64,
    /// Shards this host keeps for any one peer; beyond, that peer's stores are refused
    /// (`LimitReached`, `PeerShards`).
    pub peer_quota_shards: u64,
    /// Most peers this host keeps shards for (which bounds its per-peer state); a new peer
    /// beyond is refused (`LimitReached`, `Peers`).
    pub max_hosted_peers: u64,
    /// Free bytes the data directory's file system keeps: a new shard that would leave less
    /// is refused (`LimitReached`, `FreeSpace`), so the database and the OS keep room.
    pub min_free_bytes: u64,
    /// Shard stores a host writes at once; beyond, it answers busy.
    pub max_concurrent_stores: usize,
    /// Shard fetches a host serves at once; beyond, it answers busy.
    pub max_concurrent_fetches: usize,
    /// Milliseconds a busy host asks the client to wait.
    pub busy_retry_ms: u64,
    /// Shard requests a put, get or repair keeps in flight.
    pub max_in_flight: usize,
    /// Seconds before one shard request is given up.
    pub request_timeout_s: u64,
    /// Attempts per shard on one host (backoff with jitter between them) before another
    /// host is tried. A get tries each host once: it has other shards to ask instead.
    pub max_attempts: u32,
    /// Shards a get asks for per segment beyond the k it needs (hedging): the first k
    /// verified ones are used and the rest cancelled, so one slow or dead host does not
    /// hold a segment up. At most n - k are asked beyond k.
    pub get_margin: u16,
    /// Default shard size of `offgrid put`, bytes (at most 1 MiB).
    pub shard_size: u32,
    /// Default Reed–Solomon data shards.
    pub k: u16,
    /// Default Reed–Solomon total shards.
    pub n: u16,
    /// Default replicas of `--mode rep`.
    pub r: u16,
    /// A segment with fewer than k + this many reachable shards is repaired.
    pub repair_margin: u16,
    /// Seconds between background checks of this node's assets; 0 turns them off.
    pub repair_interval_s: u64,
    /// Seconds between garbage collections of the host: expired assets and shards no held
    /// manifest lists go; 0 turns collection off.
    pub gc_interval_s: u64,
    /// Seconds a shard that no held manifest lists is kept before it is collected (a put
    /// sends its shards before its manifest).
    pub orphan_grace_s: u64,
    /// Most manifests of other nodes' assets kept as a host.
    pub max_hosted_manifests: u64,
    /// Directories `put` may read from and `get` write to (the API names paths on the node's
    /// own disk). Empty: the node user's home and the node's working directory. The data
    /// directory is never allowed (keys, database).
    pub allowed_paths: Vec<PathBuf>,
    /// Test only: milliseconds this host waits before answering each shard fetch (it holds
    /// a fetch slot meanwhile), to play a slow host. Not in `--print-config` unless set.
    #[doc(hidden)]
    #[serde(skip_serializing_if = "is_zero")]
    pub debug_serve_delay_ms: u64,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            quota_bytes: 10 * 1024 * 1024 * 1024,
            peer_quota_bytes: 1024 * 1024 * 1024,
            peer_quota_shards: 65_536,
            max_hosted_peers: 4096,
            min_free_bytes: 512 * 1024 * 1024,
            max_concurrent_stores: 4,
            max_concurrent_fetches: 16,
            busy_retry_ms: 20,
            max_in_flight: 16,
            request_timeout_s: 30,
            max_attempts: 3,
            get_margin: 2,
            shard_size: 64 * 1024,
            k: 12,
            n: 20,
            r: 5,
            repair_margin: 3,
            repair_interval_s: 600,
            gc_interval_s: 600,
            orphan_grace_s: 86_400,
            max_hosted_manifests: 100_000,
            allowed_paths: Vec::new(),
            debug_serve_delay_ms: 0,
        }
    }
}
