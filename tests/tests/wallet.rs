//! Wallet end to end with real node processes: witnessed transfers reach finality with a
//! quorum, double spends never finalise twice, and a crash loses nothing final.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ledger_common;

use std::{collections::BTreeMap, time::Duration};

use ledger_common::{
    balances_agree, cli_send, final_transfers, post, start_mesh, tx_on, wait_connected,
    wait_final_everywhere, MeshOpts, GENESIS,
};
use offgrid_e2e::{wait_until, TestNode};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_is_final_with_three_of_five_witnesses_and_balances_agree_everywhere() {
    let mut nodes = start_mesh(MeshOpts::wallet(5, 3.0)).await;
    wait_connected(&nodes, 4).await;
    // Two witnesses go down: the remaining three are exactly the quorum.
    let mut n4 = nodes.pop().unwrap();
    let mut n3 = nodes.pop().unwrap();
    n3.kill9();
    n4.kill9();
    let dst = nodes[1].peer_id.clone();
    let id = cli_send(&nodes[0], &dst, 250_000, 1_000);
    wait_final_everywhere(&nodes, &id, T).await;
    let shown = nodes[0].cli_json(&["tx", "show", &id]);
    assert_eq!(shown["state"], "final");
    let witnesses = shown["witnesses"].as_array().unwrap();
    assert_eq!(witnesses.len(), 3, "{shown}");
    assert_eq!(shown["weight_milli"], 3000);

    // The two come back and catch up by sync; all five agree on every balance.
    nodes.push(n3.restart().await);
    nodes.push(n4.restart().await);
    wait_final_everywhere(&nodes, &id, T).await;
    let src = nodes[0].peer_id.clone();
    let got = balances_agree(&nodes, &[&src, &dst, "system"]).await;
    assert_eq!(got, vec![GENESIS - 251_000, 250_000, 1_000]);
    let b = nodes[2].cli_json(&["wallet", "balance", &dst]);
    assert_eq!(b["balance"], 250_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_spend_sent_to_different_halves_never_yields_two_finals() {
    let nodes = start_mesh(MeshOpts::wallet(5, 3.0)).await;
    wait_connected(&nodes, 4).await;
    let src = nodes[0].peer_id.clone();
    let (a_dst, b_dst) = (nodes[1].peer_id.clone(), nodes[2].peer_id.clone());
    for nonce in 1..=5u64 {
        // Same nonce, two destinations, signed by the owner but not submitted by it.
        let sign = |dst: &str| json!({ "dst": dst, "amount": 1_000 + nonce, "nonce": nonce, "submit": false });
        let a = post(&nodes[0], "/wallet/tx", sign(&a_dst)).await;
        let b = post(&nodes[0], "/wallet/tx", sign(&b_dst)).await;
        let (a_id, b_id) = (a["tx_id"].as_str().unwrap(), b["tx_id"].as_str().unwrap());
        assert_ne!(a_id, b_id);
        // One half hears A first, the other half B, at the same moment.
        let (ra, rb) = tokio::join!(
            post(&nodes[1], "/wallet/tx/submit", json!({ "tx": a["tx"] })),
            post(&nodes[4], "/wallet/tx/submit", json!({ "tx": b["tx"] })),
        );
        assert_eq!(ra["tx_id"], a_id);
        assert_eq!(rb["tx_id"], b_id);
        // Every witness signs one of the two, so one of them reaches 3 of 5.
        let winner = wait_until(T, "one of the two to be final on node 0", || async {
            let (va, vb) = (tx_on(&nodes[0], a_id).await, tx_on(&nodes[0], b_id).await);
            if va["state"] == "final" {
                Some(a_id.to_owned())
            } else if vb["state"] == "final" {
                Some(b_id.to_owned())
            } else {
                None
            }
        })
        .await;
        wait_final_everywhere(&nodes, &winner, T).await;
        let loser = if winner == a_id { b_id } else { a_id };
        for n in &nodes {
            let v = tx_on(n, loser).await;
            assert_ne!(
                v["state"], "final",
                "both {a_id} and {b_id} final on {}",
                n.peer_id
            );
            let finals = final_transfers(n, &src).await;
            let nonces: Vec<u64> = finals.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                nonces,
                (1..=nonce).collect::<Vec<_>>(),
                "one final per nonce"
            );
        }
    }
    let accounts = [src.as_str(), a_dst.as_str(), b_dst.as_str(), "system"];
    let got = balances_agree(&nodes, &accounts).await;
    assert_eq!(
        got.iter().sum::<u64>(),
        GENESIS,
        "supply unchanged by transfers"
    );
}

/// Every attestation in every final certificate matches its witness's durable record of
/// that slot: no witness ever signed two transactions for one (src, nonce).
async fn assert_no_conflicting_signatures(nodes: &[TestNode], src: &str) {
    // Certificates first: a witness records a slot before it attests, so every attestation
    // seen here has its record on disk by the time the records are read below.
    let mut attested: Vec<(String, String, String)> = Vec::new();
    for n in nodes {
        for (nonce, id) in final_transfers(n, src).await {
            let view = tx_on(n, &id).await;
            for w in view["witnesses"].as_array().unwrap() {
                let slot = format!("acct:{src}:{nonce}");
                attested.push((w.as_str().unwrap().to_owned(), slot, id.clone()));
            }
        }
    }
    let mut records: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for n in nodes {
        let v = n.get("/wallet/witness-records").await;
        let mut per_slot = BTreeMap::new();
        for r in v["records"].as_array().unwrap() {
            let slot = r["slot"].as_str().unwrap().to_owned();
            let tx = r["tx_id"].as_str().unwrap().to_owned();
            assert!(
                per_slot.insert(slot.clone(), tx).is_none(),
                "two records for {slot}"
            );
        }
        records.insert(n.peer_id.clone(), per_slot);
    }
    assert!(!attested.is_empty());
    for (w, slot, id) in attested {
        assert_eq!(
            records[&w].get(&slot).map(String::as_str),
            Some(id.as_str()),
            "witness {w} attested {id} but recorded otherwise for {slot}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_transfer_burst_loses_no_final_tx_and_no_witness_signs_a_conflict() {
    let mut nodes = start_mesh(MeshOpts::wallet(5, 3.0)).await;
    wait_connected(&nodes, 4).await;
    // Node 1 is the sender: it restarts with its bootstrap address, so it finds the mesh again.
    let funding = cli_send(&nodes[0], &nodes[1].peer_id.clone(), 10_000_000, 0);
    wait_final_everywhere(&nodes, &funding, T).await;
    let src = nodes[1].peer_id.clone();
    let dst = nodes[3].peer_id.clone();
    // A burst of transfers from the sender; it is killed while they are in flight.
    let sender = nodes.remove(1);
    let api = sender.api.clone();
    let token = sender.token.clone();
    let dst2 = dst.clone();
    let burst = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut accepted = Vec::new();
        for i in 0..200u64 {
            let r = http
                .post(format!("{api}/wallet/tx"))
                .bearer_auth(&token)
                .json(&json!({ "dst": dst2, "amount": 100 + i, "fee": 1 }))
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_success() => {
                    let v: Value = r.json().await.unwrap();
                    accepted.push(v["tx_id"].as_str().unwrap().to_owned());
                }
                _ => break,
            }
        }
        accepted
    });
    // Kill once some transfers are final somewhere, mid-burst.
    let seen_final = wait_until(T, "some transfers final", || async {
        let f = final_transfers(&nodes[0], &src).await;
        (f.len() >= 5).then_some(f)
    })
    .await;
    let mut sender = sender;
    sender.kill9();
    let accepted = burst.await.unwrap();
    assert!(accepted.len() >= 5, "only {} accepted", accepted.len());
    let final_before: Vec<String> = {
        let mut all = Vec::new();
        for n in &nodes {
            all.extend(final_transfers(n, &src).await.into_iter().map(|(_, id)| id));
        }
        all.extend(seen_final.into_iter().map(|(_, id)| id));
        all.sort();
        all.dedup();
        all
    };
    // It comes back on a new port; one connection is enough for gossip and sync.
    eprintln!(
        "{} transfers acknowledged before the kill, {} already final somewhere",
        accepted.len(),
        final_before.len()
    );
    nodes.insert(1, sender.restart().await);
    wait_connected(&nodes[1..2], 1).await;
    // Every transfer the sender acknowledged was durable there and becomes final everywhere.
    for id in &accepted {
        wait_final_everywhere(&nodes, id, T).await;
    }
    for id in &final_before {
        for n in &nodes {
            assert_eq!(
                tx_on(n, id).await["state"],
                "final",
                "final tx {id} lost on {}",
                n.peer_id
            );
        }
    }
    for n in &nodes {
        let nonces: Vec<u64> = final_transfers(n, &src)
            .await
            .iter()
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(nonces, (1..=nonces.len() as u64).collect::<Vec<_>>());
        assert!(nonces.len() >= accepted.len());
    }
    assert_no_conflicting_signatures(&nodes, &src).await;
    // Transfers in flight at the kill (never acknowledged) may still be finalising on some
    // nodes: compare balances once every node holds the same final transfers.
    wait_until(T, "the same final transfers on every node", || async {
        let mut sets = Vec::new();
        for n in &nodes {
            sets.push(final_transfers(n, &src).await);
        }
        sets.windows(2).all(|w| w[0] == w[1]).then_some(())
    })
    .await;
    let first = nodes[0].peer_id.clone();
    let accounts = [first.as_str(), src.as_str(), dst.as_str(), "system"];
    let got = balances_agree(&nodes, &accounts).await;
    assert_eq!(got.iter().sum::<u64>(), GENESIS);
}
