//! The node's wallet with batched attestations: a witness signs a round's attestations
//! once, after recording every slot, and a peer refuses (so the gossip message is rejected)
//! any attestation whose path does not fold to a root its witness signed.

#![allow(clippy::unwrap_used)]

use offgrid_ledger::{peer_id_from_pubkey, wallet::NoMints, Signed, TxBody, TxKind};

use super::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pid(seed: u8) -> String {
    peer_id_from_pubkey(key(seed).verifying_key().as_bytes())
}

const SENDERS: [u8; 4] = [20, 21, 22, 23];

fn params() -> WalletParams {
    WalletParams {
        witnesses: (1..=5).map(|s| (pid(s), 1000)).collect(),
        quorum_milli: 3000,
        genesis: SENDERS.iter().map(|s| (pid(*s), 1_000)).collect(),
        tx_fee_min: 0,
        tx_fee_max: 10,
        host_reserve_bps: 100,
    }
}

fn core(seed: u8) -> WalletCore {
    let store = Store::in_memory().unwrap();
    WalletCore::load(pid(seed), params(), &store).unwrap()
}

fn transfer(from: u8) -> Tx {
    let body = TxBody {
        kind: TxKind::Transfer,
        src: pid(from),
        dst: pid(1),
        amount: 5,
        fee: 1,
        nonce: 1,
        meta: None,
        author: pid(from),
        created_ms: 1,
        claim: None,
        reconfig: None,
    };
    Signed::sign(&key(from), &body).unwrap()
}

/// Witness `seed` takes in `txs` in one round and seals it.
fn witness_round(seed: u8, txs: &[Tx]) -> Effects {
    let mut w = core(seed);
    let mut fx = Effects::default();
    assert_eq!(w.on_txs(txs, &NoMints, 1, &mut fx), 0);
    // Recorded, not signed yet.
    let records = fx
        .ops
        .iter()
        .filter(|o| matches!(o, Write::Witness(..)))
        .count();
    assert_eq!(records, txs.len());
    assert_eq!(fx.to_attest.len(), txs.len());
    assert!(fx.attests.is_empty());
    w.seal(&key(seed), 1, &mut fx);
    assert!(fx.to_attest.is_empty());
    fx
}

#[test]
fn a_witness_signs_one_root_per_round_after_recording_every_slot() {
    let txs: Vec<Tx> = SENDERS.iter().map(|s| transfer(*s)).collect();
    let fx = witness_round(1, &txs);
    assert_eq!(fx.attests.len(), txs.len());
    let root = fx.attests[0].root().unwrap();
    for (a, tx) in fx.attests.iter().zip(&txs) {
        assert_eq!(a.root(), Some(root));
        assert_eq!(a.sig, fx.attests[0].sig);
        assert_eq!(a.verify().unwrap().tx_id, tx.id());
    }
    // A node that is not a witness records and signs nothing.
    let mut outsider = core(9);
    let mut fx = Effects::default();
    assert_eq!(outsider.on_txs(&txs, &NoMints, 1, &mut fx), 0);
    outsider.seal(&key(9), 1, &mut fx);
    assert!(fx.attests.is_empty() && fx.to_attest.is_empty());
}

#[test]
fn batched_attestations_finalize_and_forged_ones_are_counted_as_bad() {
    let txs: Vec<Tx> = SENDERS.iter().map(|s| transfer(*s)).collect();
    let from1 = witness_round(1, &txs).attests;
    let from2 = witness_round(2, &txs).attests;
    let mut peer = core(7);
    let mut fx = Effects::default();
    assert_eq!(peer.on_txs(&txs, &NoMints, 1, &mut fx), 0);

    // A path that does not fold to the signed root, and a root signed by a non-witness
    // under a witness's name: each makes the message bad (the service rejects it).
    let mut bad_path = from1[0].clone();
    bad_path.proof.as_mut().unwrap()[0].hash[0] ^= 1;
    let mut msg = from1.clone();
    msg.push(bad_path);
    assert_eq!(peer.on_attests(&msg, 2, &mut fx), 1);
    // Witness 1's bodies signed by an outsider, as is and claiming witness 1's key.
    let bodies: Vec<_> = from1.iter().map(|a| a.body().unwrap()).collect();
    let stolen = offgrid_ledger::Attestation::sign_batch(&key(9), &bodies).unwrap();
    let mut claimed = stolen[1].clone();
    claimed.pubkey = key(1).verifying_key().to_bytes();
    assert_eq!(peer.on_attests(&[claimed], 2, &mut fx), 1);
    assert_eq!(peer.on_attests(&stolen, 2, &mut fx), stolen.len());
    assert!(fx.finalized.is_empty());

    // Witness 2's batch brings two of five; witness 3's the third.
    assert_eq!(peer.on_attests(&from2, 2, &mut fx), 0);
    assert!(fx.finalized.is_empty());
    let from3 = witness_round(3, &txs).attests;
    assert_eq!(peer.on_attests(&from3, 3, &mut fx), 0);
    let mut finalized = fx.finalized.clone();
    finalized.sort();
    let mut ids: Vec<String> = txs.iter().map(Tx::id).collect();
    ids.sort();
    assert_eq!(finalized, ids);
    for id in &ids {
        let mut w = peer.witnesses_of(id);
        w.sort();
        let mut want = vec![pid(1), pid(2), pid(3)];
        want.sort();
        assert_eq!(w, want);
        assert_eq!(peer.record(id).unwrap().cert.len(), 3);
    }
    // A late attestation of a final transaction changes nothing and costs no check.
    let from4 = witness_round(4, &txs).attests;
    assert_eq!(peer.on_attests(&from4, 4, &mut fx), 0);
}

#[test]
fn a_stored_certificate_in_the_version_0_form_is_still_read() {
    let tx = transfer(SENDERS[0]);
    let v0: Vec<Witness> = (1..=3u8)
        .map(|s| {
            let body = offgrid_ledger::WitnessBody {
                tx_id: tx.id(),
                src: pid(SENDERS[0]),
                nonce: 1,
                witness: pid(s),
                epoch: 0,
            };
            // What a node stored before batching: the body's bare JSON, signed directly.
            let bytes = serde_json::to_vec(&body).unwrap();
            let sig = ed25519_dalek::Signer::sign(&key(s), &bytes).to_bytes();
            let old = offgrid_ledger::wallet::Attestation::from_parts(
                bytes,
                None,
                sig,
                key(s).verifying_key().to_bytes(),
            );
            serde_json::from_value(serde_json::to_value(&old).unwrap()).unwrap()
        })
        .collect();
    let store = Store::in_memory().unwrap();
    let rec = TxRecord {
        tx: tx.clone(),
        status: TxStatus::Final,
        cert: v0.clone(),
        received_ms: 1,
        final_ms: Some(2),
    };
    store.put_blocking(Table::Txs, &tx.id(), &rec).unwrap();
    let w = WalletCore::load(pid(7), params(), &store).unwrap();
    assert!(w.final_ids().contains(&tx.id()));
    assert_eq!(w.state().balance(&pid(1)), 5);
    let mut peer = core(8);
    let mut fx = Effects::default();
    assert!(peer.on_certified(&w.certified(&tx.id()).unwrap(), 1, &mut fx));
}

#[test]
fn only_transactions_pending_for_the_minimum_age_are_republished() {
    let mut w = core(1);
    let mut fx = Effects::default();
    // Seen at 1,000 ms and at 5,000 ms.
    w.on_tx(&transfer(20), &NoMints, 1_000, &mut fx).unwrap();
    w.on_tx(&transfer(21), &NoMints, 5_000, &mut fx).unwrap();
    let ids = |v: Vec<Tx>| v.iter().map(Tx::id).collect::<Vec<_>>();
    // At 5,500 ms with a 2 s minimum age: only the first.
    assert_eq!(
        ids(w.pending_txs(256, 5_500, 2_000)),
        vec![transfer(20).id()]
    );
    // At 2,000 ms (the clock went back before the second was seen): the first is too young,
    // the second, seen "in the future", is not held back.
    assert_eq!(
        ids(w.pending_txs(256, 2_000, 2_000)),
        vec![transfer(21).id()]
    );
    // No minimum age: both, oldest first; `max` bounds the answer.
    assert_eq!(
        ids(w.pending_txs(256, 5_500, 0)),
        vec![transfer(20).id(), transfer(21).id()]
    );
    assert_eq!(ids(w.pending_txs(1, 5_500, 0)), vec![transfer(20).id()]);
}
