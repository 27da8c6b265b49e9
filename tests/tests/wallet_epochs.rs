//! Witness reconfiguration end to end: a wallet made by `wallet init` with one witness grows
//! to three by `wallet witnesses add`, then loses its first witness by `remove`. Each change
//! is final by the epoch before it; the added witnesses attest to new transfers, and the
//! removed one no longer counts.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ledger_common;

use std::time::Duration;

use ledger_common::{cli_send, start_mesh, tx_on, wait_connected, wait_final_everywhere, MeshOpts};
use offgrid_e2e::{wait_until, TestNode};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// `offgrid wallet witnesses <op> <peer>` on each of `on`; returns the reconfiguration id
/// (the same on every witness asking for the same change).
fn change(on: &[&TestNode], op: &str, peer: &str) -> String {
    let ids: Vec<String> = on
        .iter()
        .map(|n| {
            let v = n.cli_json(&["wallet", "witnesses", op, peer, "--wait", "0"]);
            v["tx_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    ids[0].clone()
}

async fn epoch_of(n: &TestNode) -> Value {
    n.cli_json(&["ledger", "status"])["wallet"].clone()
}

async fn wait_epoch(nodes: &[TestNode], epoch: u64) {
    for n in nodes {
        wait_until(T, &format!("epoch {epoch} on {}", n.peer_id), || async {
            (epoch_of(n).await["epoch"] == epoch).then_some(())
        })
        .await;
    }
}

/// Sends a transfer from node 0 and returns the sorted witnesses of its certificate once
/// it is final everywhere.
async fn witnessed_transfer(nodes: &[TestNode], amount: u64) -> Vec<String> {
    let id = cli_send(&nodes[0], &nodes[1].peer_id, amount, 0);
    wait_final_everywhere(nodes, &id, T).await;
    let v = tx_on(&nodes[2], &id).await;
    let mut w: Vec<String> = v["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    w.sort();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_witnesses_attest_new_transfers_and_a_removed_one_no_longer_counts() {
    let mut opts = MeshOpts::wallet(3, 0.0);
    opts.witnesses = 0;
    opts.extra = "[ledger]\nsync_interval_s = 1\nrepublish_ms = 300\n".into();
    let nodes = start_mesh(opts).await;
    wait_connected(&nodes, 2).await;
    let [a, b, c] = [&nodes[0], &nodes[1], &nodes[2]];
    let g = a.cli_json(&[
        "wallet",
        "init",
        "--witness",
        &a.peer_id,
        "--alloc",
        &format!("{}=1000000", a.peer_id),
    ]);
    let gid = g["genesis_id"].as_str().unwrap();
    for n in [b, c] {
        n.cli_json(&["wallet", "join", gid]);
    }
    assert_eq!(witnessed_transfer(&nodes, 1).await, vec![a.peer_id.clone()]);

    // Only a current witness may propose; B is not one yet.
    let out = b.cli(&["wallet", "witnesses", "add", &c.peer_id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only a witness"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Epoch 1 = {A, B}: A alone is epoch 0's quorum.
    let r1 = change(&[a], "add", &b.peer_id);
    wait_final_everywhere(&nodes, &r1, T).await;
    wait_epoch(&nodes, 1).await;
    assert_eq!(epoch_of(b).await["witness"], true);
    let mut ab = vec![a.peer_id.clone(), b.peer_id.clone()];
    ab.sort();
    // Both of two are the quorum now: B's attestation is needed, and counted.
    assert_eq!(witnessed_transfer(&nodes, 2).await, ab);

    // Epoch 2 = {A, B, C} needs both A and B to ask for it. A alone is not enough.
    let r2 = change(&[a], "add", &c.peer_id);
    // B has it, with A's attestation only: B does not sign a change it was not asked for.
    let seen = wait_until(T, "B to hold A's approval of epoch 2", || async {
        let v = tx_on(b, &r2).await;
        (v["witnesses"].as_array().is_some_and(|w| w.len() == 1)).then_some(v)
    })
    .await;
    assert_eq!(seen["state"], "pending", "{seen}");
    assert_eq!(seen["witnesses"][0], a.peer_id.as_str());
    change(&[b], "add", &c.peer_id);
    wait_final_everywhere(&nodes, &r2, T).await;
    wait_epoch(&nodes, 2).await;

    // Epoch 3 = {B, C}: B and C (two of three) remove A.
    let r3 = change(&[b, c], "remove", &a.peer_id);
    wait_final_everywhere(&nodes, &r3, T).await;
    wait_epoch(&nodes, 3).await;
    assert_eq!(epoch_of(a).await["witness"], false);
    let mut bc = vec![b.peer_id.clone(), c.peer_id.clone()];
    bc.sort();
    // A no longer signs or counts: the transfer is final by B and C alone.
    assert_eq!(witnessed_transfer(&nodes, 3).await, bc);
    let status = epoch_of(c).await;
    assert_eq!(status["quorum_milli"], 1001, "{status}");
    let listed: Vec<&str> = status["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["peer"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    assert!(!listed.contains(&a.peer_id.as_str()));
}
