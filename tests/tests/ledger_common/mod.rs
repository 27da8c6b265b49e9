//! Shared set-up of the ledger and wallet end-to-end tests: a mesh of real nodes whose
//! config (witnesses, genesis) names each other, so the peer ids are learned first with
//! `offgrid-node id`.

#![allow(dead_code)]

use std::{path::Path, process::Command, time::Duration};

use offgrid_e2e::{bin, wait_until, TestNode};
use serde_json::Value;

/// Genesis balance of node 0 in the wallet tests, micro-credits.
pub const GENESIS: u64 = 1_000_000_000;

/// How a mesh is configured.
pub struct MeshOpts {
    /// Number of nodes.
    pub nodes: usize,
    /// The first `witnesses` nodes are witnesses (0 = no wallet).
    pub witnesses: usize,
    /// Quorum weight.
    pub quorum: f64,
    /// Extra TOML appended to every node's config (sections after `[wallet]`).
    pub extra: String,
    /// Extra TOML for one node (index, text), e.g. executors.
    pub per_node: Vec<(usize, String)>,
    /// More genesis balances besides node 0's.
    pub genesis: Vec<(String, u64)>,
}

impl MeshOpts {
    /// `nodes` nodes, all witnesses, quorum just over half.
    pub fn wallet(nodes: usize, quorum: f64) -> Self {
        MeshOpts {
            nodes,
            witnesses: nodes,
            quorum,
            extra: String::new(),
            per_node: Vec::new(),
            genesis: Vec::new(),
        }
    }
}

/// The node's peer id, creating its key (`offgrid-node --data-dir D id --json`).
pub fn peer_id_of(dir: &Path) -> String {
    let out = Command::new(bin("offgrid-node"))
        .arg("--data-dir")
        .arg(dir)
        .args(["id", "--json"])
        .output()
        .expect("offgrid-node id");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("id JSON");
    v["peer_id"].as_str().expect("peer_id").to_owned()
}

/// Starts a mesh: node 0 first, the others bootstrapping from it.
pub async fn start_mesh(opts: MeshOpts) -> Vec<TestNode> {
    let dirs: Vec<tempfile::TempDir> = (0..opts.nodes)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let ids: Vec<String> = dirs.iter().map(|d| peer_id_of(d.path())).collect();
    let mut wallet = String::new();
    if opts.witnesses > 0 {
        let witnesses: Vec<String> = ids[..opts.witnesses]
            .iter()
            .map(|p| format!("{{ peer = \"{p}\", weight = 1.0 }}"))
            .collect();
        let genesis: Vec<String> = std::iter::once((ids[0].clone(), GENESIS))
            .chain(opts.genesis.iter().cloned())
            .map(|(a, v)| format!("{{ account = \"{a}\", amount = {v} }}"))
            .collect();
        wallet = format!(
            "[wallet]\nwitnesses = [{}]\nquorum = {:?}\ngenesis = [{}]\ntx_fee_min = 0\ntx_fee_max = 10000\n",
            witnesses.join(", "),
            opts.quorum,
            genesis.join(", ")
        );
    }
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, tmp) in dirs.into_iter().enumerate() {
        let own: String = opts
            .per_node
            .iter()
            .filter(|(j, _)| *j == i)
            .map(|(_, t)| t.clone())
            .collect();
        let cfg = format!("{own}\n{wallet}\n{}", opts.extra);
        std::fs::write(tmp.path().join("config.toml"), cfg).expect("config");
        let mut extra = Vec::new();
        if let Some(first) = nodes.first() {
            extra.push("--bootstrap".to_owned());
            extra.push(first.addr.clone());
        }
        let dir = tmp.path().to_owned();
        let node = TestNode::start_in(dir, Some(tmp), extra).await;
        assert_eq!(node.peer_id, ids[i]);
        nodes.push(node);
    }
    nodes
}

/// Waits until every node is connected to at least `min` ledger peers.
pub async fn wait_connected(nodes: &[TestNode], min: u64) {
    for n in nodes {
        wait_until(
            Duration::from_secs(30),
            "ledger peers connected",
            || async {
                let s = n.get("/ledger/status").await;
                (s["peers"].as_u64().unwrap_or(0) >= min).then_some(())
            },
        )
        .await;
    }
}

/// POST with the node's token; panics unless 200.
pub async fn post(n: &TestNode, path: &str, body: Value) -> Value {
    let (status, v) = n
        .request(
            reqwest::Method::POST,
            path,
            Some(&n.token),
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(status, 200, "POST {path}: {v}");
    v
}

/// A transaction's view on a node (`Value::Null` if unknown there).
pub async fn tx_on(n: &TestNode, id: &str) -> Value {
    let (status, v) = n
        .request(
            reqwest::Method::GET,
            &format!("/wallet/tx/{id}"),
            None,
            Vec::new(),
        )
        .await;
    if status == 200 {
        v
    } else {
        Value::Null
    }
}

/// Waits until `id` is final on every node.
pub async fn wait_final_everywhere(nodes: &[TestNode], id: &str, timeout: Duration) {
    for n in nodes {
        wait_until(
            timeout,
            &format!("tx {id} final on {}", n.peer_id),
            || async { (tx_on(n, id).await["state"] == "final").then_some(()) },
        )
        .await;
    }
}

/// A balance on a node.
pub async fn balance(n: &TestNode, account: &str) -> u64 {
    n.get(&format!("/wallet/balance?account={account}")).await["balance"]
        .as_u64()
        .expect("balance")
}

/// Every listed account's balance on every node, checked equal; returns them.
pub async fn balances_agree(nodes: &[TestNode], accounts: &[&str]) -> Vec<u64> {
    let first: Vec<u64> = {
        let mut v = Vec::new();
        for a in accounts {
            v.push(balance(&nodes[0], a).await);
        }
        v
    };
    for n in &nodes[1..] {
        for (a, want) in accounts.iter().zip(&first) {
            assert_eq!(
                balance(n, a).await,
                *want,
                "balance of {a} on {}",
                n.peer_id
            );
        }
    }
    first
}

/// Final transfers from `src` on a node: (nonce, id).
pub async fn final_transfers(n: &TestNode, src: &str) -> Vec<(u64, String)> {
    let v = n.get("/wallet/txs?limit=10000").await;
    let mut out: Vec<(u64, String)> = v["txs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "final" && t["kind"] == "transfer" && t["src"] == src)
        .map(|t| {
            (
                t["nonce"].as_u64().unwrap(),
                t["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Sends from a node through the CLI; returns the tx id.
pub fn cli_send(n: &TestNode, dst: &str, amount: u64, fee: u64) -> String {
    let v = n.cli_json(&[
        "tx",
        "send",
        dst,
        &amount.to_string(),
        "--fee",
        &fee.to_string(),
    ]);
    v["tx_id"].as_str().expect("tx_id").to_owned()
}
