//! Storage against a hostile peer, end to end: a peer in this test process, speaking the
//! node's own network stack (`offgrid-net`) and shard protocol, floods a real host with tiny
//! shards; the host refuses them once that peer's quota is reached, stores nothing more, and
//! an honest node's `put` through the same host still succeeds.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_common;

use std::time::{Duration, Instant};

use libp2p::{identity::Keypair, Multiaddr, PeerId};
use offgrid_behaviours::shards::{
    Bytes, LimitCode, Request, Response, ShardData, ShardOutcome, MAX_BATCH_SHARDS,
};
use offgrid_e2e::{wait_until, TestNode};
use offgrid_net::{build_swarm, Client, Config, EventLoop, Inbound};
use storage_common::*;
use tokio_util::sync::CancellationToken;

/// A bare peer: the node's swarm with nothing behind it, driven through its [`Client`].
struct Hostile {
    client: Client,
    cancel: CancellationToken,
}

impl Hostile {
    fn start(key: &Keypair) -> Hostile {
        let swarm = build_swarm(key, &Config::default().with_mdns(false)).unwrap();
        let (client, commands) = Client::channel();
        let cancel = CancellationToken::new();
        tokio::spawn(EventLoop::new(swarm, commands, Inbound::default(), cancel.clone()).run());
        Hostile { client, cancel }
    }

    /// Dials `node` and waits until connected.
    async fn connect(&self, node: &TestNode) -> PeerId {
        let peer: PeerId = node.peer_id.parse().unwrap();
        let addr: Multiaddr = node.addr.parse().unwrap();
        self.client.dial_addr(addr).await.unwrap();
        wait_until(
            Duration::from_secs(20),
            "the hostile peer to connect",
            || async {
                let s = self.client.snapshot().await.ok()?;
                s.connected.contains(&peer).then_some(())
            },
        )
        .await;
        peer
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Tiny shard number `i`.
fn tiny(i: u32) -> ShardData {
    let mut bytes = vec![0xee; 64];
    bytes[..4].copy_from_slice(&i.to_le_bytes());
    ShardData {
        hash: offgrid_storage::shard_hash(&bytes),
        bytes: Bytes(bytes),
    }
}

async fn host_status(node: &TestNode) -> serde_json::Value {
    node.get("/storage/status").await["host"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tiny_shards_from_a_hostile_peer_stop_at_its_quota_and_an_honest_put_succeeds()
{
    const QUOTA_SHARDS: u64 = 500;
    const FLOOD: u32 = 10_000;
    let owner = TestNode::start(&[]).await;
    // No free-space floor on these hosts: this test is about the quota, whatever the free
    // space of the machine that runs it (the floor has its own test below).
    let victim_config =
        format!("[storage]\npeer_quota_shards = {QUOTA_SHARDS}\nmin_free_bytes = 0\n");
    let victim =
        TestNode::start_with(&["--bootstrap", &owner.addr], &[], Some(&victim_config)).await;
    let other = TestNode::start_with(
        &["--bootstrap", &owner.addr],
        &[],
        Some("[storage]\nmin_free_bytes = 0\n"),
    )
    .await;
    wait_for_these_hosts(&owner, std::slice::from_ref(&victim)).await;
    wait_for_these_hosts(&owner, std::slice::from_ref(&other)).await;

    let key = Keypair::generate_ed25519();
    let hostile = Hostile::start(&key);
    let victim_id = hostile.connect(&victim).await;
    let started = Instant::now();
    let (mut stored, mut refused, mut first_refused) = (0u64, 0u64, None);
    let shards: Vec<ShardData> = (0..FLOOD).map(tiny).collect();
    for batch in shards.chunks(MAX_BATCH_SHARDS) {
        let request = Request::StoreBatch {
            shards: batch.to_vec(),
        };
        let answer = hostile
            .client
            .shard_request(victim_id, request)
            .await
            .unwrap();
        let Response::StoredBatch { outcomes } = answer else {
            panic!("not a batch answer: {answer:?}");
        };
        for o in outcomes {
            match o {
                ShardOutcome::Stored { already_had: false } => stored += 1,
                ShardOutcome::LimitReached {
                    code: LimitCode::PeerShards,
                    used,
                    limit,
                } => {
                    assert_eq!((used, limit), (QUOTA_SHARDS, QUOTA_SHARDS));
                    first_refused.get_or_insert(stored + refused);
                    refused += 1;
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
    }
    let flood_time = started.elapsed();
    // A single store after the flood is refused with the same code.
    let one = tiny(FLOOD);
    let again = hostile
        .client
        .shard_request(
            victim_id,
            Request::Store {
                hash: one.hash,
                bytes: one.bytes,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            Response::LimitReached {
                code: LimitCode::PeerShards,
                ..
            }
        ),
        "{again:?}"
    );
    eprintln!(
        "flood of {FLOOD} tiny shards: {stored} stored, {refused} refused (first at #{}), {flood_time:?}",
        first_refused.unwrap_or(0)
    );
    assert_eq!(stored, QUOTA_SHARDS);
    assert_eq!(refused, u64::from(FLOOD) - QUOTA_SHARDS);
    assert_eq!(first_refused, Some(QUOTA_SHARDS));
    let st = host_status(&victim).await;
    assert_eq!(st["shards"], QUOTA_SHARDS, "{st}");
    assert_eq!(st["peers"], 1, "{st}");
    assert_eq!(st["limit_refusals"], refused + 1, "{st}");

    // The honest owner's put: replicated on both hosts, so the victim must take its share.
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "honest.bin", 300 << 10, 13, None);
    let put = owner.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--mode",
        "rep",
        "--r",
        "2",
        "--shard-size",
        "64KiB",
    ]);
    let segments = put["segments"].as_u64().unwrap();
    assert_eq!(
        put["shards_placed"].as_u64().unwrap(),
        segments * 2,
        "{put}"
    );
    let st = host_status(&victim).await;
    assert_eq!(st["shards"], QUOTA_SHARDS + segments, "{st}");
    assert_eq!(st["peers"], 2, "{st}");
    let asset = put["asset_id"].as_str().unwrap();
    let out = dir.path().join("back.bin");
    owner.cli_json(&["get", asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);

    // A restart keeps the hostile peer at its quota: the same key is refused at once.
    drop(hostile);
    let victim = victim.restart().await;
    let st = host_status(&victim).await;
    assert_eq!(st["shards"], QUOTA_SHARDS + segments, "{st}");
    assert_eq!(st["peers"], 2, "{st}");
    let hostile = Hostile::start(&key);
    hostile.connect(&victim).await;
    let one = tiny(FLOOD + 1);
    let after = hostile
        .client
        .shard_request(
            victim_id,
            Request::Store {
                hash: one.hash,
                bytes: one.bytes,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        after,
        Response::LimitReached {
            code: LimitCode::PeerShards,
            used: QUOTA_SHARDS,
            limit: QUOTA_SHARDS
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_below_its_free_space_floor_refuses_new_shards_and_says_so() {
    // A floor far above any real disk's free space: this host is always "full".
    let full = TestNode::start_with(
        &[],
        &[],
        Some("[storage]\nmin_free_bytes = 9223372036854775807\n"),
    )
    .await;
    let peer = Hostile::start(&Keypair::generate_ed25519());
    let full_id = peer.connect(&full).await;
    let one = tiny(1);
    let answer = peer
        .client
        .shard_request(
            full_id,
            Request::StoreBatch {
                shards: vec![one.clone(), tiny(2)],
            },
        )
        .await
        .unwrap();
    let Response::StoredBatch { outcomes } = answer else {
        panic!("not a batch answer: {answer:?}");
    };
    for o in &outcomes {
        assert!(
            matches!(
                o,
                ShardOutcome::LimitReached {
                    code: LimitCode::FreeSpace,
                    limit: 9_223_372_036_854_775_807,
                    ..
                }
            ),
            "{o:?}"
        );
    }
    let st = host_status(&full).await;
    assert_eq!(st["shards"], 0, "{st}");
    assert_eq!(st["low_disk_refusals"], 2, "{st}");
    assert!(st["free_bytes"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["min_free_bytes"], 9_223_372_036_854_775_807u64, "{st}");
    let text = reqwest::get(format!("{}/metrics", full.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("offgrid_shard_refusals_total{kind=\"free_space\"} 2"),
        "{text}"
    );
}
