//! Merkle-batched attestations: what verifies, what is refused, and the root cache.

use super::{
    attestation::{root_message, MAX_BATCH, MAX_PROOF_LEN},
    tests::{key, params, pid, sign_att, transfer, ALICE, BOB},
    *,
};
use crate::{
    merkle::{self, Sibling, Side},
    signed::VerifyError,
};

/// The attestation body of a transfer of Alice with nonce `nonce` by witness `seed`.
fn body(seed: u8, nonce: u64) -> WitnessBody {
    let tx = transfer(ALICE, &pid(BOB), 1, 1, nonce);
    WitnessBody {
        tx_id: tx.id(),
        src: pid(ALICE),
        nonce,
        witness: pid(seed),
        epoch: 0,
    }
}

fn bodies(seed: u8, n: u64) -> Vec<WitnessBody> {
    (1..=n).map(|nonce| body(seed, nonce)).collect()
}

fn batch(seed: u8, n: u64) -> Vec<Witness> {
    Attestation::sign_batch(&key(seed), &bodies(seed, n)).unwrap()
}

fn ok(r: &[Result<VerifiedWitness, WitnessError>]) -> Vec<bool> {
    r.iter().map(Result::is_ok).collect()
}

fn bad_signature(r: &Result<VerifiedWitness, WitnessError>) -> bool {
    matches!(r, Err(WitnessError::Verify(VerifyError::BadSignature)))
}

#[test]
fn a_batch_of_one_has_an_empty_path_and_verifies() {
    let att = batch(1, 1).remove(0);
    assert_eq!(att.proof, Some(Vec::new()));
    assert_eq!(att.root(), Some(merkle::leaf_hash(&att.bytes)));
    assert_eq!(att.verify().unwrap(), body(1, 1));
    let mut fin = Finality::new(params()).unwrap();
    let v = fin.verify(std::slice::from_ref(&att)).remove(0).unwrap();
    assert_eq!(v.witness(), pid(1));
    assert_eq!(v.tx_id(), body(1, 1).tx_id);
    // The signature is over the domain-separated root, not over the body.
    let k = ed25519_dalek::VerifyingKey::from_bytes(&att.pubkey).unwrap();
    let sig = ed25519_dalek::Signature::from_bytes(&att.sig);
    assert!(k.verify_strict(&att.bytes, &sig).is_err());
    assert!(k
        .verify_strict(&root_message(&att.root().unwrap()), &sig)
        .is_ok());
}

#[test]
fn a_batch_of_many_shares_one_signature_and_each_verifies_alone() {
    for n in [2, 3, 7, 64] {
        let atts = batch(2, n);
        assert_eq!(atts.len(), n as usize);
        let root = atts[0].root().unwrap();
        for (i, a) in atts.iter().enumerate() {
            assert_eq!(a.root(), Some(root));
            assert_eq!(a.sig, atts[0].sig);
            assert_eq!(a.verify().unwrap(), body(2, i as u64 + 1));
        }
        let mut fin = Finality::new(params()).unwrap();
        assert!(ok(&fin.verify(&atts)).iter().all(|b| *b));
        // One distinct root checked and remembered for the whole batch.
        assert_eq!(fin.cached_roots(), 1);
    }
    // Larger than one batch: split, one root per `MAX_BATCH` leaves.
    let atts = batch(3, MAX_BATCH as u64 + 1);
    assert_ne!(atts[0].root(), atts[MAX_BATCH].root());
    assert_eq!(atts[MAX_BATCH].proof, Some(Vec::new()));
    assert!(atts.iter().all(|a| a.proof.as_ref().unwrap().len() <= 10));
    let mut fin = Finality::new(params()).unwrap();
    assert!(ok(&fin.verify(&atts)).iter().all(|b| *b));
    assert_eq!(fin.cached_roots(), 2);
}

#[test]
fn tampered_paths_bodies_and_swapped_leaves_are_refused() {
    let atts = batch(1, 5);
    let mut cases = Vec::new();
    // A sibling hash changed.
    let mut t = atts[0].clone();
    t.proof.as_mut().unwrap()[1].hash[3] ^= 1;
    cases.push(t);
    // A sibling's side flipped.
    let mut t = atts[1].clone();
    let s = &mut t.proof.as_mut().unwrap()[0];
    s.side = match s.side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    };
    cases.push(t);
    // A step dropped, and a step added.
    let mut t = atts[2].clone();
    t.proof.as_mut().unwrap().pop();
    cases.push(t);
    let mut t = atts[3].clone();
    t.proof.as_mut().unwrap().push(Sibling {
        side: Side::Right,
        hash: [7; 32],
    });
    cases.push(t);
    // Another body (still a valid body of this witness) under leaf 0's path.
    let mut t = atts[0].clone();
    t.bytes = serde_json::to_vec(&body(1, 9)).unwrap();
    cases.push(t);
    // Leaves swapped: leaf 0's body with leaf 1's path, and leaf 4 (the promoted one) with
    // leaf 0's.
    let mut t = atts[0].clone();
    t.proof = atts[1].proof.clone();
    cases.push(t);
    let mut t = atts[4].clone();
    t.proof = atts[0].proof.clone();
    cases.push(t);
    // The path of a batch of one claimed for a leaf of a batch of five.
    let mut t = atts[2].clone();
    t.proof = Some(Vec::new());
    cases.push(t);
    for (i, t) in cases.iter().enumerate() {
        assert!(t.verify().is_err(), "case {i}");
        let mut fin = Finality::new(params()).unwrap();
        assert!(
            bad_signature(&fin.verify(std::slice::from_ref(t))[0]),
            "case {i}"
        );
        // Also with the genuine batch's root already checked and cached.
        let mut fin = Finality::new(params()).unwrap();
        assert!(ok(&fin.verify(&atts)).iter().all(|b| *b));
        assert!(
            bad_signature(&fin.verify(std::slice::from_ref(t))[0]),
            "case {i}"
        );
    }
    // In one message with good ones, each is judged on its own.
    let mut msg = atts.clone();
    msg.extend(cases.iter().cloned());
    let mut fin = Finality::new(params()).unwrap();
    let r = fin.verify(&msg);
    assert_eq!(ok(&r)[..5], [true; 5]);
    assert!(r[5..].iter().all(bad_signature));
}

#[test]
fn roots_signed_by_anyone_but_the_named_listed_witness_are_refused() {
    let mut fin = Finality::new(params()).unwrap();
    // A non-witness signs a batch of bodies naming itself.
    let outsider = batch(9, 3);
    assert!(fin
        .verify(&outsider)
        .iter()
        .all(|r| matches!(r, Err(WitnessError::NotAWitness(w)) if *w == pid(9))));
    // A non-witness signs bodies naming witness 1, with its own key or claiming witness 1's.
    let forged = Attestation::sign_batch(&key(9), &bodies(1, 3)).unwrap();
    assert!(fin
        .verify(&forged)
        .iter()
        .all(|r| matches!(r, Err(WitnessError::WitnessMismatch))));
    let claimed: Vec<Witness> = forged
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.pubkey = key(1).verifying_key().to_bytes();
            a
        })
        .collect();
    assert!(fin.verify(&claimed).iter().all(bad_signature));
    // Witness 2 signs bodies naming witness 1.
    let other = Attestation::sign_batch(&key(2), &bodies(1, 2)).unwrap();
    assert!(fin
        .verify(&other)
        .iter()
        .all(|r| matches!(r, Err(WitnessError::WitnessMismatch))));
    assert_eq!(fin.cached_roots(), 0);
    assert_eq!(certified_weight(&params(), &body(1, 1).tx_id, &claimed), 0);
}

#[test]
fn a_cached_root_lets_through_nothing_that_does_not_fold_to_it_with_its_signature() {
    let mut fin = Finality::new(params()).unwrap();
    let atts = batch(1, 4);
    assert!(ok(&fin.verify(&atts)).iter().all(|b| *b));
    assert_eq!(fin.cached_roots(), 1);
    // A body outside the batch, carrying the cached batch's signature and a path of it:
    // the path folds elsewhere, so the signature is checked, and fails.
    let outside = body(1, 7);
    for i in 0..4 {
        let forged = Attestation::from_parts(
            serde_json::to_vec(&outside).unwrap(),
            atts[i].proof.clone(),
            atts[i].sig,
            atts[i].pubkey,
        );
        assert_ne!(forged.root(), atts[0].root());
        assert!(bad_signature(&fin.verify(std::slice::from_ref(&forged))[0]));
        assert!(fin.add(&forged).is_err());
    }
    // A genuine leaf of the cached batch with another signature: not a cache hit.
    let mut other_sig = atts[2].clone();
    other_sig.sig[5] ^= 1;
    assert!(bad_signature(
        &fin.verify(std::slice::from_ref(&other_sig))[0]
    ));
    // The same root under another listed witness's key: that key never signed it.
    let mut other_key = atts[1].clone();
    other_key.pubkey = key(2).verifying_key().to_bytes();
    other_key.bytes = serde_json::to_vec(&body(2, 2)).unwrap();
    assert!(fin.verify(std::slice::from_ref(&other_key))[0].is_err());
    assert_eq!(fin.cached_roots(), 1);
    assert_eq!(fin.weight(&outside.tx_id), 0);
    // The genuine items still pass from the cache.
    assert!(ok(&fin.verify(&atts)).iter().all(|b| *b));
}

#[test]
fn paths_longer_than_the_cap_are_refused() {
    let mut att = batch(1, 1).remove(0);
    att.proof = Some(vec![
        Sibling {
            side: Side::Left,
            hash: [1; 32],
        };
        MAX_PROOF_LEN + 1
    ]);
    assert!(matches!(att.verify(), Err(VerifyError::ProofTooLong)));
    assert_eq!(att.root(), None);
    let mut fin = Finality::new(params()).unwrap();
    assert!(matches!(
        fin.verify(std::slice::from_ref(&att))[0],
        Err(WitnessError::Verify(VerifyError::ProofTooLong))
    ));
}

#[test]
fn the_root_cache_is_bounded() {
    let mut fin = Finality::new(params()).unwrap().with_root_cache(4);
    let singles: Vec<Witness> = (1..=10).map(|n| sign_att(1, &body(1, n))).collect();
    for (i, a) in singles.iter().enumerate() {
        assert!(fin.verify(std::slice::from_ref(a))[0].is_ok());
        assert_eq!(fin.cached_roots(), (i + 1).min(4));
    }
    // Evicted roots are checked again, and still pass; forged ones still fail.
    assert!(ok(&fin.verify(&singles)).iter().all(|b| *b));
    assert!(fin.cached_roots() <= 4);
    let mut bad = singles[0].clone();
    bad.sig[0] ^= 1;
    assert!(bad_signature(&fin.verify(std::slice::from_ref(&bad))[0]));
    // No cache at all: still correct.
    let mut none = Finality::new(params()).unwrap().with_root_cache(0);
    assert!(ok(&none.verify(&singles)).iter().all(|b| *b));
    assert_eq!(none.cached_roots(), 0);
    assert!(bad_signature(&none.verify(std::slice::from_ref(&bad))[0]));
}

#[test]
fn wire_form_round_trips_and_the_version_0_form_is_still_read() {
    let att = batch(1, 3).remove(1);
    let json = serde_json::to_value(&att).unwrap();
    let obj = json.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["proof", "pubkey", "sig", "signed"]);
    assert_eq!(obj["proof"].as_array().unwrap().len(), 2);
    assert_eq!(obj["proof"][0]["side"], "left");
    assert_eq!(obj["sig"].as_str().unwrap().len(), 128);
    let back: Witness = serde_json::from_value(json).unwrap();
    assert_eq!(back, att);

    // Version 0: the body signed directly, no `proof`.
    let b = body(2, 1);
    let v0_bytes = serde_json::to_vec(&b).unwrap();
    let v0 = Attestation::from_parts(
        v0_bytes.clone(),
        None,
        ed25519_dalek::Signer::sign(&key(2), &v0_bytes).to_bytes(),
        key(2).verifying_key().to_bytes(),
    );
    let text = serde_json::to_string(&v0).unwrap();
    let read: Witness = serde_json::from_str(&text).unwrap();
    assert_eq!(read.proof, None);
    assert_eq!(read.verify().unwrap(), b);
    assert_eq!(serde_json::to_string(&read).unwrap(), text);
    let mut fin = Finality::new(params()).unwrap();
    let v = fin.verify(std::slice::from_ref(&read)).remove(0).unwrap();
    assert!(!fin.add_verified(v).unwrap());
    // Neither form's signature passes as the other's.
    let mut as_root = read.clone();
    as_root.proof = Some(Vec::new());
    assert!(bad_signature(&fin.verify(&[as_root])[0]));
    let mut as_v0 = sign_att(3, &body(3, 1));
    as_v0.proof = None;
    assert!(bad_signature(&fin.verify(&[as_v0])[0]));
    let mut tampered = read;
    tampered.sig[1] ^= 1;
    assert!(bad_signature(&fin.verify(&[tampered])[0]));
}

#[test]
fn batched_attestations_make_a_transaction_final() {
    let p = params();
    let txs: Vec<Tx> = (1..=3)
        .map(|s| transfer(super::tests::CAROL + s, &pid(BOB), 1, 1, 1))
        .collect();
    let mut p2 = p.clone();
    for s in 1..=3 {
        p2.genesis.push((pid(super::tests::CAROL + s), 10));
    }
    let state2 = WalletState::new(&p2).unwrap();
    let vs: Vec<VerifiedTx> = txs.iter().map(|t| VerifiedTx::new(t).unwrap()).collect();
    let refs: Vec<&VerifiedTx> = vs.iter().collect();
    let mut fin = Finality::new(p2.clone()).unwrap();
    for seed in [1, 2, 3] {
        let mut ws = WitnessState::new(p2.clone()).unwrap();
        // Not all recorded: the whole batch is refused.
        let c = ws
            .check_verified(&state2, &vs[0], &|_: &TxBody| true)
            .unwrap();
        ws.record(c.slot, c.tx_id).unwrap();
        assert!(matches!(
            ws.attest_batch(&key(seed), &refs),
            Err(AttestError::NotRecorded)
        ));
        for v in &vs[1..] {
            let c = ws.check_verified(&state2, v, &|_: &TxBody| true).unwrap();
            ws.record(c.slot, c.tx_id).unwrap();
        }
        let own = ws.attest_batch(&key(seed), &refs).unwrap();
        // What a peer receives verifies there, one root for the three.
        let wire: Vec<Witness> = own.iter().map(|v| v.attestation().clone()).collect();
        let mut peer = Finality::new(p2.clone()).unwrap();
        assert!(ok(&peer.verify(&wire)).iter().all(|b| *b));
        assert_eq!(peer.cached_roots(), 1);
        for v in own {
            let id = v.tx_id().to_owned();
            assert_eq!(fin.add_verified(v).unwrap(), seed == 3, "{id}");
        }
    }
    for v in &vs {
        assert!(fin.is_final(v.id()));
        assert_eq!(
            fin.certified_weight(v.id(), &fin.attestations(v.id())),
            3000
        );
        assert_eq!(
            certified_weight(&p2, v.id(), &fin.attestations(v.id())),
            3000
        );
    }
}
