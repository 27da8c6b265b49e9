//! The shard host against a peer that tries to fill its disk, each hostile case next to the
//! honest one: a flood of tiny shards stops at the peer's quota while another peer still
//! stores; the usage survives a restart; a duplicate is not charged twice; new peers stop
//! at the bound; new shards stop at the free-space floor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use libp2p::PeerId;
use offgrid_behaviours::shards::{
    Bytes, LimitCode, Request, Response, ShardData, ShardOutcome, MAX_BATCH_SHARDS,
};
use offgrid_storage::shard_hash;

use super::{Handled, ShardHost};
use crate::{
    config::StorageConfig,
    files::quota::{disk_cost, Usage},
    store::Store,
};

async fn ask(host: &Arc<ShardHost>, peer: PeerId, request: Request) -> Response {
    match host.handle(peer, request) {
        Handled::Now(r) => r,
        Handled::Later(f) => f.await,
    }
}

/// A tiny shard, different for each `i` (and `salt`).
fn tiny(salt: u8, i: u32) -> ShardData {
    let mut bytes = vec![salt; 64];
    bytes[..4].copy_from_slice(&i.to_le_bytes());
    ShardData {
        hash: shard_hash(&bytes),
        bytes: Bytes(bytes),
    }
}

fn single(s: &ShardData) -> Request {
    Request::Store {
        hash: s.hash.clone(),
        bytes: s.bytes.clone(),
    }
}

fn open(dir: &std::path::Path, cfg: &StorageConfig, store: Arc<Store>) -> Arc<ShardHost> {
    Arc::new(ShardHost::open(dir, cfg, store, [0; 32]).unwrap().roomy())
}

/// Shard files under a host's directory.
fn files_on_disk(dir: &std::path::Path) -> usize {
    let root = dir.join("shards");
    std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|p| {
            std::fs::read_dir(p.path())
                .unwrap()
                .flatten()
                .filter(|f| !f.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .sum()
}

#[tokio::test]
async fn ten_thousand_tiny_shards_from_one_peer_stop_at_its_quota_and_an_honest_peer_still_stores()
{
    let dir = tempfile::tempdir().unwrap();
    let quota = 200 * disk_cost(64);
    let cfg = StorageConfig {
        peer_quota_bytes: quota,
        ..Default::default()
    };
    let host = open(dir.path(), &cfg, Arc::new(Store::in_memory().unwrap()));
    let (hostile, honest) = (PeerId::random(), PeerId::random());

    let started = Instant::now();
    let (mut stored, mut refused) = (0u32, 0u32);
    let mut first_refused = None;
    let shards: Vec<ShardData> = (0..10_000).map(|i| tiny(1, i)).collect();
    for batch in shards.chunks(MAX_BATCH_SHARDS) {
        let request = Request::StoreBatch {
            shards: batch.to_vec(),
        };
        let Response::StoredBatch { outcomes } = ask(&host, hostile, request).await else {
            panic!("not a batch answer");
        };
        for o in outcomes {
            match o {
                ShardOutcome::Stored { already_had: false } => stored += 1,
                ShardOutcome::LimitReached {
                    code: LimitCode::PeerBytes,
                    used,
                    limit,
                } => {
                    assert_eq!((used, limit), (quota, quota));
                    first_refused.get_or_insert(stored + refused);
                    refused += 1;
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }
    // Single stores are refused the same way.
    let over = ask(&host, hostile, single(&tiny(1, 10_000))).await;
    assert_eq!(
        over,
        Response::LimitReached {
            code: LimitCode::PeerBytes,
            used: quota,
            limit: quota
        }
    );
    eprintln!(
        "10,000 tiny shards: {stored} stored, {refused} refused (first at #{}), {:?}",
        first_refused.unwrap(),
        started.elapsed()
    );
    assert_eq!((stored, refused), (200, 9_800));
    assert_eq!(
        first_refused,
        Some(200),
        "refused once the quota was reached, never before"
    );
    assert_eq!(files_on_disk(dir.path()), 200, "nothing more was written");
    assert_eq!(
        host.peer_usage(&hostile),
        Usage {
            bytes: quota,
            shards: 200
        }
    );

    // The honest peer's store on the same host succeeds, and is charged to it alone.
    let mine = ShardData {
        hash: shard_hash(&[7; 3000]),
        bytes: Bytes(vec![7; 3000]),
    };
    assert_eq!(
        ask(&host, honest, single(&mine)).await,
        Response::Stored { already_had: false }
    );
    assert_eq!(host.peer_usage(&honest).shards, 1);
    let s = host.status();
    assert_eq!((s.shards, s.peers, s.limit_refusals), (201, 2, 9_801));
    assert_eq!(s.peer_disk_bytes, quota + disk_cost(3000));
}

#[tokio::test]
async fn the_usage_survives_a_restart_and_a_shard_gone_meanwhile_is_no_longer_charged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node.redb");
    let cfg = StorageConfig {
        peer_quota_shards: 5,
        ..Default::default()
    };
    let peer = PeerId::random();
    let shards_dir = dir.path().join("shards");
    {
        let host = open(&shards_dir, &cfg, Arc::new(Store::open(&db).unwrap()));
        for i in 0..5 {
            let r = ask(&host, peer, single(&tiny(2, i))).await;
            assert_eq!(r, Response::Stored { already_had: false });
        }
        let r = ask(&host, peer, single(&tiny(2, 5))).await;
        assert!(
            matches!(
                r,
                Response::LimitReached {
                    code: LimitCode::PeerShards,
                    ..
                }
            ),
            "{r:?}"
        );
    }
    // Restarted: still at its quota.
    let store = Arc::new(Store::open(&db).unwrap());
    let host = open(&shards_dir, &cfg, store.clone());
    assert_eq!(host.peer_usage(&peer).shards, 5);
    let r = ask(&host, peer, single(&tiny(2, 5))).await;
    assert_eq!(
        r,
        Response::LimitReached {
            code: LimitCode::PeerShards,
            used: 5,
            limit: 5
        }
    );
    drop(host);

    // One of its shards vanished while the node was down: the next start charges four
    // and drops the stale record.
    let gone = tiny(2, 0).hash;
    std::fs::remove_file(shards_dir.join("shards").join(&gone[..2]).join(&gone[2..])).unwrap();
    let host = open(&shards_dir, &cfg, store.clone());
    assert_eq!(host.peer_usage(&peer).shards, 4);
    crate::files::quota::tests::wait_for_records(&store, 4);
    let r = ask(&host, peer, single(&tiny(2, 5))).await;
    assert_eq!(r, Response::Stored { already_had: false });
}

#[tokio::test]
async fn an_exact_duplicate_is_charged_once_and_still_answers_stored_at_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        peer_quota_shards: 2,
        ..Default::default()
    };
    let host = open(dir.path(), &cfg, Arc::new(Store::in_memory().unwrap()));
    let (a, b) = (PeerId::random(), PeerId::random());
    let x = tiny(3, 0);
    assert_eq!(
        ask(&host, a, single(&x)).await,
        Response::Stored { already_had: false }
    );
    for _ in 0..3 {
        assert_eq!(
            ask(&host, a, single(&x)).await,
            Response::Stored { already_had: true }
        );
    }
    // Twice in one batch, and by another peer: held, so free.
    let twice = Request::StoreBatch {
        shards: vec![x.clone(), x.clone()],
    };
    let Response::StoredBatch { outcomes } = ask(&host, a, twice).await else {
        panic!("not a batch answer");
    };
    assert_eq!(
        outcomes,
        vec![ShardOutcome::Stored { already_had: true }; 2]
    );
    assert_eq!(
        ask(&host, b, single(&x)).await,
        Response::Stored { already_had: true }
    );
    assert_eq!(host.peer_usage(&a).shards, 1);
    assert_eq!(host.peer_usage(&b), Usage::default());

    // At its quota, the peer may still re-send what it placed (a retry after a lost ack).
    assert!(matches!(
        ask(&host, a, single(&tiny(3, 1))).await,
        Response::Stored { already_had: false }
    ));
    let over = ask(&host, a, single(&tiny(3, 2))).await;
    assert!(
        matches!(
            over,
            Response::LimitReached {
                code: LimitCode::PeerShards,
                ..
            }
        ),
        "{over:?}"
    );
    assert_eq!(
        ask(&host, a, single(&x)).await,
        Response::Stored { already_had: true }
    );
    assert_eq!(host.status().shards, 2);
}

#[tokio::test]
async fn a_new_peer_beyond_the_bound_is_refused_and_known_ones_still_store() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig {
        max_hosted_peers: 3,
        ..Default::default()
    };
    let host = open(dir.path(), &cfg, Arc::new(Store::in_memory().unwrap()));
    let known: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    for (i, p) in known.iter().enumerate() {
        let r = ask(&host, *p, single(&tiny(4, i as u32))).await;
        assert_eq!(r, Response::Stored { already_had: false });
    }
    // Fresh peer ids cost nothing: each one is refused, and none leaves state behind.
    for i in 0..100 {
        let r = ask(&host, PeerId::random(), single(&tiny(5, i))).await;
        assert_eq!(
            r,
            Response::LimitReached {
                code: LimitCode::Peers,
                used: 3,
                limit: 3
            }
        );
    }
    assert_eq!(host.status().peers, 3);
    let r = ask(&host, known[0], single(&tiny(4, 99))).await;
    assert_eq!(r, Response::Stored { already_had: false });
    assert_eq!(host.status().shards, 4);
}

#[tokio::test]
async fn below_the_free_space_floor_new_shards_are_refused_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let floor = 1 << 20;
    let cfg = StorageConfig {
        min_free_bytes: floor,
        ..Default::default()
    };
    let free = Arc::new(AtomicU64::new(floor + 2 * disk_cost(64)));
    let probe = {
        let free = free.clone();
        Arc::new(move || Ok(free.load(Ordering::Relaxed)))
    };
    let store = Arc::new(Store::in_memory().unwrap());
    let host = ShardHost::open(dir.path(), &cfg, store, [0; 32])
        .unwrap()
        .with_free_space(probe, Duration::ZERO);
    let host = Arc::new(host);
    let peer = PeerId::random();
    for i in 0..2 {
        // The probe is asked each time (no cache): the disk fills as shards land.
        let r = ask(&host, peer, single(&tiny(6, i))).await;
        assert_eq!(r, Response::Stored { already_had: false });
        free.fetch_sub(disk_cost(64), Ordering::Relaxed);
    }
    let r = ask(&host, peer, single(&tiny(6, 2))).await;
    assert_eq!(
        r,
        Response::LimitReached {
            code: LimitCode::FreeSpace,
            used: floor - disk_cost(64),
            limit: floor
        }
    );
    // An honest peer's new shard is refused too (the disk is the host's, not a peer's),
    // but what is held still answers stored.
    let honest = PeerId::random();
    assert!(matches!(
        ask(&host, honest, single(&tiny(7, 0))).await,
        Response::LimitReached {
            code: LimitCode::FreeSpace,
            ..
        }
    ));
    assert_eq!(
        ask(&host, honest, single(&tiny(6, 0))).await,
        Response::Stored { already_had: true }
    );
    let s = host.status();
    assert_eq!(
        (s.shards, s.low_disk_refusals, s.min_free_bytes),
        (2, 2, floor)
    );
    assert_eq!(files_on_disk(dir.path()), 2);
    assert_eq!(
        host.peer_usage(&peer).shards,
        2,
        "a refusal charges nothing"
    );

    free.store(10 * floor, Ordering::Relaxed);
    let r = ask(&host, honest, single(&tiny(7, 0))).await;
    assert_eq!(r, Response::Stored { already_had: false });
}
