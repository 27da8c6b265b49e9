//! The host's garbage collector: expired assets go with their shards and quota, live ones
//! stay; a shard no manifest lists goes only after its grace period; a record from before
//! shards were dated is never dropped at first sight; an expired manifest is not kept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use libp2p::PeerId;
use offgrid_behaviours::shards::{Bytes, Request, Response, ShardData};
use offgrid_storage::{
    manifest::MANIFEST_VERSION, shard_hash, Manifest, Scheme, SegmentEntry, ShardEntry,
    SignedManifest,
};

use super::super::{Handled, ShardHost};
use crate::{
    config::StorageConfig,
    files::quota::HostedShard,
    identity::Identity,
    store::{Store, Table},
};

const HOUR: Duration = Duration::from_secs(3600);

struct Host {
    host: Arc<ShardHost>,
    store: Arc<Store>,
    owner: Identity,
    _dir: tempfile::TempDir,
}

fn host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::in_memory().unwrap());
    let host = ShardHost::open(
        dir.path(),
        &StorageConfig::default(),
        store.clone(),
        [0; 32],
    )
    .unwrap()
    .roomy();
    Host {
        host: Arc::new(host),
        store,
        owner: Identity::from_seed([7; 32]),
        _dir: dir,
    }
}

impl Host {
    async fn answer(&self, peer: PeerId, request: Request) -> Response {
        match self.host.handle(peer, request) {
            Handled::Now(r) => r,
            Handled::Later(f) => f.await,
        }
    }

    /// Stores `blobs` as the owner's shards; their hashes.
    async fn store(&self, blobs: &[&[u8]]) -> Vec<String> {
        let shards: Vec<ShardData> = blobs
            .iter()
            .map(|b| ShardData {
                hash: shard_hash(b),
                bytes: Bytes(b.to_vec()),
            })
            .collect();
        let hashes = shards.iter().map(|s| s.hash.clone()).collect();
        let r = self
            .answer(self.owner.peer_id(), Request::StoreBatch { shards })
            .await;
        assert!(matches!(r, Response::StoredBatch { .. }), "{r:?}");
        hashes
    }

    /// Keeps the owner's manifest of `asset` listing `hashes`, expiring at `expires_ms`.
    async fn keep(&self, asset: &str, hashes: &[String], expires_ms: Option<u64>) -> Response {
        let m = Manifest {
            version: MANIFEST_VERSION,
            asset_id: asset.to_owned(),
            owner: self.owner.peer_id().to_string(),
            owner_pubkey: hex::encode(self.owner.public_key()),
            name: None,
            size: 1,
            scheme: Scheme::Replicate { r: 1 },
            shard_size: 1024,
            segment_count: hashes.len() as u64,
            segments: hashes
                .iter()
                .enumerate()
                .map(|(i, h)| SegmentEntry {
                    index: i as u64,
                    cipher_len: 41,
                    shards: vec![ShardEntry {
                        index: 0,
                        hash: h.clone(),
                        host: "self".into(),
                    }],
                })
                .collect(),
            wrapped_keys: vec![],
            file_blake3: shard_hash(b""),
            created_ms: 1,
            revision: 0,
            id_salt: None,
            expires_ms,
        };
        let signed = SignedManifest::sign(self.owner.signing_key(), &m).unwrap();
        let request = Request::StoreManifest {
            asset_id: asset.to_owned(),
            manifest: Bytes(serde_json::to_vec(&signed).unwrap()),
        };
        self.answer(self.owner.peer_id(), request).await
    }

    /// One collection, off the async threads (it commits to the store).
    fn gc(
        &self,
        now_ms: u64,
        grace: Duration,
    ) -> Result<super::GcReport, crate::store::StoreError> {
        tokio::task::block_in_place(|| self.host.collect_garbage(now_ms, grace))
    }

    fn held(&self, asset: &str) -> bool {
        self.store
            .get::<SignedManifest>(Table::HostedManifests, asset)
            .unwrap()
            .is_some()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_expired_asset_goes_with_its_shards_and_quota_and_a_live_one_stays() {
    let h = host();
    let now = crate::now_ms();
    let expiring = h.store(&[b"one", b"two"]).await;
    let lasting = h.store(&[b"three"]).await;
    let (dying, living) = (shard_hash(b"dying"), shard_hash(b"living"));
    let at = now + 60_000;
    assert_eq!(
        h.keep(&dying, &expiring, Some(at)).await,
        Response::ManifestStored
    );
    assert_eq!(
        h.keep(&living, &lasting, None).await,
        Response::ManifestStored
    );
    assert_eq!(h.host.status().shards, 3);

    // Not yet: nothing goes.
    let r = h.gc(at - 1, HOUR).unwrap();
    assert_eq!(r, super::GcReport::default());
    assert_eq!(h.host.status().shards, 3);

    let r = h.gc(at, HOUR).unwrap();
    assert_eq!(
        (r.expired_assets, r.expired_shards, r.orphan_shards),
        (1, 2, 0)
    );
    assert!(!h.held(&dying));
    assert!(h.held(&living));
    let s = h.host.status();
    assert_eq!((s.shards, s.used_bytes), (1, 4608), "one 4 KiB block left");
    assert_eq!(h.host.peer_usage(&h.owner.peer_id()).shards, 1);
    for hash in &expiring {
        assert!(h
            .store
            .get::<HostedShard>(Table::HostedShards, hash)
            .unwrap()
            .is_none());
    }
    let fetched = h
        .answer(
            PeerId::random(),
            Request::Fetch {
                hash: expiring[0].clone(),
            },
        )
        .await;
    assert_eq!(fetched, Response::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_shard_no_manifest_lists_goes_only_after_its_grace() {
    let h = host();
    let listed = h.store(&[b"listed"]).await;
    let orphan = h.store(&[b"orphan"]).await;
    let asset = shard_hash(b"asset");
    assert_eq!(
        h.keep(&asset, &listed, None).await,
        Response::ManifestStored
    );
    let now = crate::now_ms();
    // Within its grace (a put sends shards before the manifest): kept.
    let r = h.gc(now, HOUR).unwrap();
    assert_eq!(r.orphan_shards, 0);
    assert_eq!(h.host.status().shards, 2);
    let later = now + 2 * 3_600_000;
    let r = h.gc(later, HOUR).unwrap();
    assert_eq!(r.orphan_shards, 1);
    let s = h.host.status();
    assert_eq!((s.shards, s.used_bytes), (1, 4608));
    assert!(h
        .store
        .get::<HostedShard>(Table::HostedShards, &orphan[0])
        .unwrap()
        .is_none());
    assert!(h
        .store
        .get::<HostedShard>(Table::HostedShards, &listed[0])
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_undated_record_starts_its_grace_when_first_seen() {
    let h = host();
    let hash = h.store(&[b"old"]).await.remove(0);
    let mut rec = h
        .store
        .get::<HostedShard>(Table::HostedShards, &hash)
        .unwrap()
        .unwrap();
    rec.stored_ms = 0;
    tokio::task::block_in_place(|| h.store.put_blocking(Table::HostedShards, &hash, &rec)).unwrap();
    let seen = crate::now_ms() + 10 * 3_600_000;
    let r = h.gc(seen, HOUR).unwrap();
    assert_eq!(
        r.orphan_shards, 0,
        "an undated shard is not dropped at first sight"
    );
    let dated = h
        .store
        .get::<HostedShard>(Table::HostedShards, &hash)
        .unwrap()
        .unwrap();
    assert_eq!(dated.stored_ms, seen);
    let r = h.gc(seen + 3_600_000, HOUR).unwrap();
    assert_eq!(r.orphan_shards, 1);
    assert_eq!(h.host.status().shards, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_expired_manifest_is_refused_and_keeps_nothing() {
    let h = host();
    let hashes = h.store(&[b"late"]).await;
    let asset = shard_hash(b"late asset");
    let r = h.keep(&asset, &hashes, Some(crate::now_ms() - 1)).await;
    assert!(
        matches!(&r, Response::Refused { reason } if reason.contains("expired")),
        "{r:?}"
    );
    assert!(!h.held(&asset));
}
