//! Ledger blocks end to end: gossip and sync converge every node on one DAG, an offline
//! node catches up, and a block with a bad signature is rejected and not relayed.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ledger_common;

use std::time::Duration;

use ledger_common::{post, start_mesh, wait_connected, MeshOpts};
use offgrid_e2e::{wait_until, TestNode};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

fn blocks_only(nodes: usize, extra: &str) -> MeshOpts {
    MeshOpts {
        nodes,
        witnesses: 0,
        quorum: 0.0,
        extra: extra.to_owned(),
        per_node: Vec::new(),
        genesis: Vec::new(),
    }
}

async fn tips(n: &TestNode) -> (u64, Vec<Value>) {
    let s = n.get("/ledger/status").await;
    (
        s["blocks"].as_u64().unwrap(),
        s["tips"].as_array().unwrap().clone(),
    )
}

async fn make_block(n: &TestNode) -> String {
    let v = post(n, "/ledger/blocks", json!({ "allow_empty": true })).await;
    v["created"][0].as_str().unwrap().to_owned()
}

/// Waits until every node holds `count` blocks and the same tips; returns them.
async fn converge(nodes: &[TestNode], count: u64) -> Vec<Value> {
    wait_until(T, "all nodes on the same DAG", || async {
        let first = tips(&nodes[0]).await;
        if first.0 != count {
            return None;
        }
        for n in &nodes[1..] {
            if tips(n).await != first {
                return None;
            }
        }
        Some(first.1)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_nodes_each_create_blocks_and_all_end_with_the_same_tips() {
    let nodes = start_mesh(blocks_only(10, "[ledger]\nsync_interval_s = 2\n")).await;
    wait_connected(&nodes, 1).await;
    // Round 1: one after another. Round 2: all at once, so the DAG forks and merges.
    for n in &nodes {
        make_block(n).await;
    }
    converge(&nodes, 10).await;
    let ids = futures_all(&nodes).await;
    assert_eq!(ids.len(), 10);
    let tips = converge(&nodes, 20).await;
    assert!(!tips.is_empty());
    // The CLI shows the same tips.
    let v = nodes[9].cli_json(&["ledger", "blocks", "--limit", "5"]);
    assert_eq!(v["tips"], Value::Array(tips));
    assert_eq!(v["count"], 20);
}

async fn futures_all(nodes: &[TestNode]) -> Vec<String> {
    let mut handles = Vec::new();
    for n in nodes {
        let (api, token) = (n.api.clone(), n.token.clone());
        handles.push(tokio::spawn(async move {
            let v: Value = reqwest::Client::new()
                .post(format!("{api}/ledger/blocks"))
                .bearer_auth(token)
                .json(&json!({ "allow_empty": true }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["created"][0].as_str().unwrap().to_owned()
        }));
    }
    let mut ids = Vec::new();
    for h in handles {
        ids.push(h.await.unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_offline_catches_up_by_sync() {
    let mut nodes = start_mesh(blocks_only(3, "[ledger]\nsync_interval_s = 1\n")).await;
    wait_connected(&nodes, 2).await;
    make_block(&nodes[0]).await;
    converge(&nodes, 1).await;
    let mut offline = nodes.pop().unwrap();
    offline.kill9();
    // Blocks made while it is down: a chain, so catching up needs ancestors too.
    for i in 0..6 {
        make_block(&nodes[i % 2]).await;
    }
    converge(&nodes, 7).await;
    // Gossip is not replayed: only the sync protocol can fill the gap.
    nodes.push(offline.restart().await);
    converge(&nodes, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_with_a_bad_signature_is_rejected_and_not_relayed() {
    // The nodes inherit this: it switches on the bad-block test hook (a 404 otherwise).
    std::env::set_var("OFFGRID_FAULT_INJECT", "bad_block");
    // a — b — c: c accepts one connection only, so it hears a only through b.
    let quiet = "[ledger]\nsync_interval_s = 3600\n";
    let mut mesh = start_mesh(blocks_only(2, quiet)).await;
    let b = mesh.pop().unwrap();
    let a = mesh.pop().unwrap();
    let c = TestNode::start_with(
        &["--bootstrap", &b.addr],
        &[],
        Some(&format!("[network]\nmax_connections = 1\n{quiet}")),
    )
    .await;
    // A good block from a reaches c through b's relay.
    let good = make_block(&a).await;
    wait_until(T, "c to get a's block via b", || async {
        let (_, t) = tips(&c).await;
        t.contains(&json!(good)).then_some(())
    })
    .await;
    assert_eq!(
        c.get("/ledger/status").await["peers"],
        1,
        "c only talks to b"
    );

    let bad = post(&a, "/ledger/debug/bad-block", json!({})).await["block"]
        .as_str()
        .unwrap()
        .to_owned();
    // Then another good block on the same path: once c has it, anything b relayed before
    // it has arrived too.
    let good2 = make_block(&a).await;
    wait_until(T, "b to reject the bad block", || async {
        let s = b.get("/ledger/status").await;
        (s["rejected"]["blocks"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    wait_until(T, "c to get the second good block", || async {
        let (_, t) = tips(&c).await;
        t.contains(&json!(good2)).then_some(())
    })
    .await;
    let cs = c.get("/ledger/status").await;
    assert_eq!(cs["rejected"]["blocks"], 0, "b relayed the bad block: {cs}");
    for n in [&a, &b, &c] {
        let (status, _) = n
            .request(
                reqwest::Method::GET,
                &format!("/ledger/blocks/{bad}"),
                None,
                Vec::new(),
            )
            .await;
        assert_eq!(status, 404, "bad block stored on {}", n.peer_id);
        assert_eq!(tips(n).await.0, 2);
    }
    let bs = b.get("/ledger/status").await;
    assert_eq!(bs["rejected"]["block_ids"], json!([bad]));
}
