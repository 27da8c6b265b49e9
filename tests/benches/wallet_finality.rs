//! Prints wallet throughput (final transactions per second) with 3-of-5 witnesses on
//! loopback, and p50/p99 time to finality. Goals (issue 12): ≥ 3,000 final tx/s at saturation,
//! and p99 ≤ 50 ms at 1,000 tx/s offered.
//!
//! Five node processes, all witnesses, quorum 3. The bench signs transfers itself from
//! `ACCOUNTS` funded genesis accounts (one transfer per account per round, so no transfer
//! waits for an earlier nonce), submits them round-robin to the five nodes with
//! `POST /wallet/tx/submit` at `IN_FLIGHT` concurrency, and times each from submission to
//! the node's answer that it is final. Three rounds (their medians are printed), then one
//! paced round per rate in `PACED_RATES`, each offering that many tx/s on a fixed schedule
//! (open loop, so the latencies are those at that load, not the queueing a fixed number in
//! flight causes), then a light-load round at `LIGHT_IN_FLIGHT` that shows finality time
//! without queueing.
//!
//! At saturation with `IN_FLIGHT` requests always outstanding, mean time to finality is
//! `IN_FLIGHT / throughput` (Little's law): ~180 ms at 1,400 tx/s. The paced rounds are the
//! ones that answer "p99 ≤ 50 ms at 1,000 tx/s offered".
//!
//! Run: `cargo build --release -p offgrid-node -p offgrid-cli && cargo bench -p offgrid-e2e --bench wallet_finality`

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/ledger_common/mod.rs"]
mod ledger_common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use ed25519_dalek::SigningKey;
use ledger_common::{start_mesh, wait_connected, MeshOpts};
use offgrid_ledger::{peer_id_from_pubkey, Signed, TxBody, TxKind};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

const ACCOUNTS: usize = 2000;
const IN_FLIGHT: usize = 256;
const ROUNDS: u64 = 3;
/// In flight during the light-load round that measures finality time without queueing.
const LIGHT_IN_FLIGHT: usize = 4;
/// Transfers in the light-load round.
const LIGHT_TXS: usize = 400;
/// Offered loads of the paced rounds, transfers per second, one round each.
const PACED_RATES: [f64; 3] = [500.0, 1000.0, 1500.0];
/// Most requests outstanding in a paced round (it only binds if the mesh falls behind).
const PACED_MAX_IN_FLIGHT: usize = 1024;

/// How a round offers its load.
#[derive(Clone, Copy, PartialEq)]
enum Load {
    /// `IN_FLIGHT` outstanding, all `ACCOUNTS` senders.
    Saturation,
    /// This many tx/s on a schedule, all `ACCOUNTS` senders.
    Paced(f64),
    /// `LIGHT_IN_FLIGHT` outstanding, `LIGHT_TXS` senders.
    Light,
}

fn key(i: usize) -> SigningKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let keys: Vec<SigningKey> = (0..ACCOUNTS).map(key).collect();
    let ids: Vec<String> = keys
        .iter()
        .map(|k| peer_id_from_pubkey(k.verifying_key().as_bytes()))
        .collect();
    let mut opts = MeshOpts::wallet(5, 3.0);
    opts.genesis = ids.iter().map(|a| (a.clone(), 1_000_000)).collect();
    let nodes = start_mesh(opts).await;
    wait_connected(&nodes, 4).await;
    let dst = nodes[0].peer_id.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .expect("http client");
    let targets: Arc<Vec<(String, String)>> = Arc::new(
        nodes
            .iter()
            .map(|n| (n.api.clone(), n.token.clone()))
            .collect(),
    );
    let profile = if offgrid_e2e::bin("offgrid-node")
        .to_string_lossy()
        .contains("/release/")
    {
        "release"
    } else {
        "debug"
    };
    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    let (mut light_lat, mut paced) = (None, Vec::new());
    // Every sender's nonce is the round number, so every round but the last uses all the
    // senders: the round with fewer senders comes last.
    let paced_rounds = PACED_RATES.len() as u64;
    for round in 1..=ROUNDS + paced_rounds + 1 {
        let load = match round {
            r if r <= ROUNDS => Load::Saturation,
            r if r <= ROUNDS + paced_rounds => Load::Paced(PACED_RATES[(r - ROUNDS - 1) as usize]),
            _ => Load::Light,
        };
        let (in_flight, count) = match load {
            Load::Saturation => (IN_FLIGHT, ACCOUNTS),
            Load::Paced(_) => (PACED_MAX_IN_FLIGHT, ACCOUNTS),
            Load::Light => (LIGHT_IN_FLIGHT, LIGHT_TXS),
        };
        let txs: Vec<Value> = keys
            .iter()
            .zip(&ids)
            .take(count)
            .map(|(k, src)| {
                let body = TxBody {
                    kind: TxKind::Transfer,
                    src: src.clone(),
                    dst: dst.clone(),
                    amount: 1,
                    fee: 0,
                    nonce: round,
                    meta: None,
                    author: src.clone(),
                    created_ms: round,
                    claim: None,
                    reconfig: None,
                };
                json!(Signed::sign(k, &body).expect("sign"))
            })
            .collect();
        let limit = Arc::new(Semaphore::new(in_flight));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(txs.len());
        for (i, tx) in txs.into_iter().enumerate() {
            if let Load::Paced(rate) = load {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let permit = limit.clone().acquire_owned().await.expect("semaphore");
            let http = http.clone();
            let targets = targets.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let (api, token) = &targets[i % targets.len()];
                let t = Instant::now();
                let v: Value = http
                    .post(format!("{api}/wallet/tx/submit"))
                    .bearer_auth(token)
                    .json(&json!({ "tx": tx, "wait_ms": 30_000 }))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (v["view"]["state"] == "final").then(|| t.elapsed())
            }));
        }
        let mut lat = Vec::with_capacity(tasks.len());
        for t in tasks {
            if let Ok(Some(d)) = t.await {
                lat.push(d);
            }
        }
        let wall = started.elapsed();
        lat.sort();
        let rate = lat.len() as f64 / wall.as_secs_f64();
        let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
        let offered = match load {
            Load::Paced(rate) => format!("paced at {rate:.0} tx/s"),
            _ => format!("{in_flight} in flight"),
        };
        println!(
            "round {round} ({offered}): {} of {count} final in {:.2} s = {rate:.0} tx/s; time to finality p50 {:.1} ms, p99 {:.1} ms",
            lat.len(),
            wall.as_secs_f64(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
        match load {
            Load::Saturation => {
                rates.push(rate);
                p50s.push(p50);
                p99s.push(p99);
            }
            Load::Paced(offered) => paced.push((offered, rate, p50, p99)),
            Load::Light => light_lat = Some((p50, p99)),
        }
    }
    println!(
        "wallet finality, 3-of-5 witnesses on loopback ({profile} build, {ACCOUNTS} senders, {IN_FLIGHT} in flight): median {:.0} final tx/s, p50 {:.1} ms, p99 {:.1} ms — goal ≥ 3000 tx/s (p99 ≤ 50 ms at 1000 tx/s offered, below)",
        median(rates),
        median(p50s).as_secs_f64() * 1e3,
        median(p99s).as_secs_f64() * 1e3,
    );
    for (offered, rate, p50, p99) in paced {
        println!(
            "at {offered:.0} tx/s offered: {rate:.0} final tx/s, time to finality p50 {:.1} ms, p99 {:.1} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
    if let Some((p50, p99)) = light_lat {
        println!(
            "time to finality at light load ({LIGHT_IN_FLIGHT} in flight): p50 {:.1} ms, p99 {:.1} ms",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }
}
