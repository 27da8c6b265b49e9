//! Reputation gossip end to end: a broker's observations reach the other nodes, which merge
//! them under the broker's id because the report is signed with the broker's node key (the
//! gossip envelope itself is unsigned).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ledger_common;

use std::time::Duration;

use ledger_common::{start_mesh, wait_connected, MeshOpts};
use offgrid_e2e::wait_until;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brokers_signed_reputation_report_is_merged_under_its_id_everywhere() {
    let mut opts = MeshOpts::wallet(3, 2.0);
    opts.extra = "[ledger]\nreputation_interval_s = 1\nblock_interval_s = 3600\n".into();
    let nodes = start_mesh(opts).await;
    wait_connected(&nodes, 2).await;
    let broker = &nodes[0];
    assert_eq!(broker.cli_json(&["toggle", "off"])["active"], false);
    for h in &nodes[1..] {
        wait_until(T, "the broker to see the host active", || async {
            broker
                .verified_peers()
                .iter()
                .any(|p| p["peer_id"] == h.peer_id.as_str() && p["active"] == true)
                .then_some(())
        })
        .await;
    }
    let r = broker.cli_json(&["job", "run", "--type", "echo", "--size", "1"]);
    let host = r["host"].as_str().unwrap().to_owned();

    for n in &nodes[1..] {
        let entry = wait_until(T, "the broker's observation to arrive", || async {
            let v = n.get("/ledger/reputation").await;
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["observer"] == broker.peer_id.as_str() && e["subject"] == host)
                .cloned()
        })
        .await;
        assert!(entry["hits"].as_u64().unwrap() >= 1, "{entry}");
    }
    for n in &nodes {
        let s = n.get("/ledger/status").await;
        assert_eq!(s["rejected"]["reputation"], 0, "{s}");
    }
}
