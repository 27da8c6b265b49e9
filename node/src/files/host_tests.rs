//! The shard host's store and manifest side: per-shard outcomes of a store batch (stored,
//! already held, wrong hash, over quota), busy answers beyond the store slots, and which
//! manifests it keeps. (Fetches are tested in `host.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use libp2p::PeerId;
use offgrid_behaviours::shards::{Bytes, Request, Response, ShardData, ShardOutcome};
use offgrid_storage::{manifest::MANIFEST_VERSION, shard_hash, Manifest, Scheme, SignedManifest};

use super::host::{Handled, ShardHost};
use crate::{
    config::StorageConfig,
    identity::Identity,
    store::{Store, Table},
};

struct Host {
    host: Arc<ShardHost>,
    store: Arc<Store>,
    _dir: tempfile::TempDir,
}

impl Host {
    async fn answer(&self, request: Request) -> Response {
        match self.host.handle(PeerId::random(), request) {
            Handled::Now(r) => r,
            Handled::Later(f) => f.await,
        }
    }
}

fn host(cfg: StorageConfig) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::in_memory().unwrap());
    let host = ShardHost::open(dir.path(), &cfg, store.clone(), [0; 32])
        .unwrap()
        .roomy();
    Host {
        host: Arc::new(host),
        store,
        _dir: dir,
    }
}

fn data(bytes: &[u8]) -> ShardData {
    ShardData {
        hash: shard_hash(bytes),
        bytes: Bytes(bytes.to_vec()),
    }
}

#[tokio::test]
async fn a_store_batch_answers_each_shard_stored_held_mismatched_or_over_quota() {
    // Room for one tiny shard on disk (4608 bytes: a block and its file), not two.
    let h = host(StorageConfig {
        quota_bytes: 4700,
        ..Default::default()
    });
    let a = data(&[1; 40]);
    let mut forged = data(&[2; 10]);
    forged.hash = shard_hash(b"something else");
    let big = data(&[3; 80]);
    let request = Request::StoreBatch {
        shards: vec![a.clone(), forged, big],
    };
    let Response::StoredBatch { outcomes } = h.answer(request).await else {
        panic!("not a batch answer");
    };
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0], ShardOutcome::Stored { already_had: false });
    assert!(
        matches!(&outcomes[1], ShardOutcome::Refused { reason } if reason.contains("hash")),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(outcomes[2], ShardOutcome::QuotaExceeded { quota: 4700, .. }),
        "{:?}",
        outcomes[2]
    );
    // The same shard again is already held and costs no quota.
    let again = Request::Store {
        hash: a.hash.clone(),
        bytes: a.bytes.clone(),
    };
    assert_eq!(
        h.answer(again).await,
        Response::Stored { already_had: true }
    );
    let s = h.host.status();
    assert_eq!((s.shards, s.used_bytes), (1, 4608));
    assert_eq!((s.stored_shards, s.received_shards), (1, 2));
    assert_eq!((s.received_bytes, s.quota_refusals), (80, 1));
    // What it holds, it serves.
    let fetched = h.answer(Request::Fetch { hash: a.hash }).await;
    assert_eq!(fetched, Response::Shard { bytes: a.bytes });
}

#[tokio::test]
async fn a_store_beyond_the_store_slots_is_answered_busy_at_once() {
    let h = host(StorageConfig {
        max_concurrent_stores: 1,
        busy_retry_ms: 25,
        ..Default::default()
    });
    let (a, b) = (data(b"first"), data(b"second"));
    let store = |d: &ShardData| Request::StoreBatch {
        shards: vec![d.clone()],
    };
    // The first takes the only slot until its work is polled to the end.
    let Handled::Later(first) = h.host.handle(PeerId::random(), store(&a)) else {
        panic!("the first store is not queued work");
    };
    let Handled::Now(busy) = h.host.handle(PeerId::random(), store(&b)) else {
        panic!("the second store waits for a slot instead of answering busy");
    };
    assert_eq!(busy, Response::Busy { retry_after_ms: 25 });
    assert_eq!(h.host.status().busy, 1);
    assert!(matches!(first.await, Response::StoredBatch { .. }));
    // The slot is free again.
    let r = h.answer(store(&b)).await;
    let Response::StoredBatch { outcomes } = r else {
        panic!("{r:?}")
    };
    assert_eq!(outcomes, vec![ShardOutcome::Stored { already_had: false }]);
}

fn manifest(owner: &Identity, asset: &str, revision: u64) -> SignedManifest {
    signed_manifest(owner, asset, None, revision)
}

/// An empty manifest of `asset` signed by `owner` (its id bound by `salt`, when given).
pub(super) fn signed_manifest(
    owner: &Identity,
    asset: &str,
    salt: Option<[u8; 16]>,
    revision: u64,
) -> SignedManifest {
    let m = Manifest {
        version: MANIFEST_VERSION,
        asset_id: asset.to_owned(),
        owner: owner.peer_id().to_string(),
        owner_pubkey: hex::encode(owner.public_key()),
        name: None,
        size: 0,
        scheme: Scheme::ReedSolomon { k: 2, n: 3 },
        shard_size: 1024,
        segment_count: 0,
        segments: vec![],
        wrapped_keys: vec![],
        file_blake3: shard_hash(b""),
        created_ms: 1,
        revision,
        id_salt: salt.map(hex::encode),
        expires_ms: None,
    };
    SignedManifest::sign(owner.signing_key(), &m).unwrap()
}

fn keep(asset: &str, m: &SignedManifest) -> Request {
    Request::StoreManifest {
        asset_id: asset.to_owned(),
        manifest: Bytes(serde_json::to_vec(m).unwrap()),
    }
}

fn refused(r: &Response, why: &str) -> bool {
    matches!(r, Response::Refused { reason } if reason.contains(why))
}

#[tokio::test]
async fn a_manifest_is_kept_only_when_verified_for_its_asset_and_not_older_or_another_owners() {
    let h = host(StorageConfig::default());
    let (owner, other) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
    let asset = shard_hash(b"asset");
    let r1 = manifest(&owner, &asset, 1);
    assert_eq!(h.answer(keep(&asset, &r1)).await, Response::ManifestStored);
    // Not readable here (no key wrapped for this host): kept as hosted.
    let held = |t| h.store.get::<SignedManifest>(t, &asset).unwrap();
    assert_eq!(held(Table::HostedManifests), Some(r1.clone()));
    assert_eq!(held(Table::Manifests), None);

    let older = h.answer(keep(&asset, &manifest(&owner, &asset, 0))).await;
    assert!(refused(&older, "newer revision"), "{older:?}");
    let stolen = h.answer(keep(&asset, &manifest(&other, &asset, 5))).await;
    assert!(refused(&stolen, "another owner"), "{stolen:?}");
    let elsewhere = h.answer(keep(&shard_hash(b"other"), &r1)).await;
    assert!(refused(&elsewhere, "does not match"), "{elsewhere:?}");
    // Signed by one key while naming another as its owner.
    let mut forged = manifest(&owner, &asset, 9);
    forged.pubkey = other.public_key();
    let forged = h.answer(keep(&asset, &forged)).await;
    assert!(matches!(forged, Response::Refused { .. }), "{forged:?}");
    let garbage = Request::StoreManifest {
        asset_id: asset.clone(),
        manifest: Bytes(b"{not json".to_vec()),
    };
    let garbage = h.answer(garbage).await;
    assert!(refused(&garbage, "not a signed manifest"), "{garbage:?}");
    assert_eq!(held(Table::HostedManifests), Some(r1.clone()), "unchanged");

    // A newer revision by the owner replaces it, and is what the host serves.
    let r2 = manifest(&owner, &asset, 2);
    assert_eq!(h.answer(keep(&asset, &r2)).await, Response::ManifestStored);
    let served = h
        .answer(Request::FetchManifest {
            asset_id: asset.clone(),
        })
        .await;
    let Response::Manifest { manifest } = served else {
        panic!("{served:?}")
    };
    let served: SignedManifest = serde_json::from_slice(&manifest.0).unwrap();
    assert_eq!(served, r2);
}
