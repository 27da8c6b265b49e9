use ed25519_dalek::SigningKey;

use super::*;
use crate::{peer_id::peer_id_from_pubkey, signed::VerifyError};

pub(crate) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub(crate) fn pid(seed: u8) -> String {
    peer_id_from_pubkey(key(seed).verifying_key().as_bytes())
}

/// Witness seeds 1..=5, weight 1000 each, quorum 3000.
pub(crate) const WITNESSES: [u8; 5] = [1, 2, 3, 4, 5];
pub(crate) const ALICE: u8 = 10;
pub(crate) const BOB: u8 = 11;
pub(crate) const CAROL: u8 = 12;
pub(crate) const MINTER: u8 = 20;

pub(crate) fn params() -> WalletParams {
    WalletParams {
        witnesses: WITNESSES.iter().map(|s| (pid(*s), 1000)).collect(),
        quorum_milli: 3000,
        genesis: vec![(pid(ALICE), 100), (pid(BOB), 50), (pid(CAROL), 0)],
        tx_fee_min: 1,
        tx_fee_max: 3,
        host_reserve_bps: 100,
    }
}

pub(crate) fn transfer(from: u8, to: &str, amount: u64, fee: u64, nonce: u64) -> Tx {
    let body = TxBody {
        kind: TxKind::Transfer,
        src: pid(from),
        dst: to.to_string(),
        amount,
        fee,
        nonce,
        meta: None,
        author: pid(from),
        created_ms: 1,
        claim: None,
        reconfig: None,
    };
    Signed::sign(&key(from), &body).unwrap()
}

pub(crate) fn mint(to: &str, amount: u64, meta: &str) -> Tx {
    let body = TxBody {
        kind: TxKind::Mint,
        src: SYSTEM.into(),
        dst: to.to_string(),
        amount,
        fee: 0,
        nonce: 0,
        meta: Some(meta.into()),
        author: pid(MINTER),
        created_ms: 1,
        claim: None,
        reconfig: None,
    };
    Signed::sign(&key(MINTER), &body).unwrap()
}

/// `body` signed by `signer` as a batch of one.
pub(crate) fn sign_att(signer: u8, body: &WitnessBody) -> Witness {
    Attestation::sign_batch(&key(signer), std::slice::from_ref(body))
        .unwrap()
        .remove(0)
}

fn accept_all(_: &TxBody) -> bool {
    true
}

/// Runs the witness protocol for `tx` at witness `seed`.
fn witness(
    ws: &mut WitnessState,
    state: &WalletState,
    seed: u8,
    tx: &Tx,
) -> Result<Witness, TxReject> {
    let c = ws.check(state, tx, &accept_all)?;
    ws.record(c.slot, c.tx_id)?;
    Ok(ws.attest(&key(seed), tx).unwrap())
}

#[test]
fn params_require_a_strict_majority_quorum() {
    let mut p = params();
    p.validate().unwrap();
    p.quorum_milli = 2500;
    assert_eq!(
        p.validate(),
        Err(ParamsError::QuorumTooLow {
            quorum: 2500,
            total: 5000
        })
    );
    p.quorum_milli = 2501;
    p.validate().unwrap();
    p.quorum_milli = 5001;
    assert!(matches!(
        p.validate(),
        Err(ParamsError::QuorumUnreachable { .. })
    ));
    let mut p = params();
    p.witnesses.push((pid(1), 1000));
    assert!(matches!(
        p.validate(),
        Err(ParamsError::DuplicateWitness(_))
    ));
    let mut p = params();
    p.witnesses[0].1 = 0;
    assert!(matches!(p.validate(), Err(ParamsError::ZeroWeight(_))));
    let mut p = params();
    p.witnesses[0].0 = "not-a-peer".into();
    assert!(matches!(p.validate(), Err(ParamsError::BadWitnessId(_))));
    let mut p = params();
    p.tx_fee_min = 4;
    assert_eq!(p.validate(), Err(ParamsError::FeeRange));
    let mut p = params();
    p.genesis.push((pid(ALICE), 1));
    assert!(matches!(
        p.validate(),
        Err(ParamsError::DuplicateGenesis(_))
    ));
    assert!(Finality::new(WalletParams {
        quorum_milli: 1,
        ..params()
    })
    .is_err());
}

#[test]
fn transfer_becomes_final_with_quorum_and_moves_money() {
    let p = params();
    let mut state = WalletState::new(&p).unwrap();
    let mut fin = Finality::new(p.clone()).unwrap();
    let tx = transfer(ALICE, &pid(BOB), 30, 2, 1);
    let id = tx.id();

    let ws = WitnessState::new(p.clone()).unwrap();
    // Attesting before recording is refused.
    assert!(matches!(
        ws.attest(&key(1), &tx),
        Err(AttestError::NotRecorded)
    ));

    for (n, seed) in WITNESSES.iter().take(3).enumerate() {
        let mut ws = WitnessState::new(p.clone()).unwrap();
        let w = witness(&mut ws, &state, *seed, &tx).unwrap();
        assert_eq!(w.verify().unwrap().tx_id, id);
        let now_final = fin.add(&w).unwrap();
        assert_eq!(now_final, n == 2);
        // The same attestation twice counts once.
        fin.add(&w).unwrap();
        assert_eq!(fin.weight(&id), 1000 * (n as u64 + 1));
    }
    assert!(fin.is_final(&id));
    assert_eq!(certified_weight(&p, &id, &fin.attestations(&id)), 3000);
    assert_eq!(certified_weight(&p, "other", &fin.attestations(&id)), 0);

    assert_eq!(
        state.apply_final(&tx).unwrap(),
        ApplyOutcome::Applied(vec![id.clone()])
    );
    assert_eq!(
        state.apply_final(&tx).unwrap(),
        ApplyOutcome::AlreadyApplied
    );
    assert_eq!(state.balance(&pid(ALICE)), 68);
    assert_eq!(state.balance(&pid(BOB)), 80);
    assert_eq!(state.balance(SYSTEM), 2);
    assert_eq!(state.supply(), 150);
    assert_eq!(state.next_nonce(&pid(ALICE)), 2);
    assert_eq!(state.last_nonce(&pid(BOB)), 0);
}

#[test]
fn witness_rules() {
    let p = params();
    let state = WalletState::new(&p).unwrap();
    let mut ws = WitnessState::new(p.clone()).unwrap();
    let check = |ws: &WitnessState, tx: &Tx| ws.check(&state, tx, &accept_all).map(|_| ());

    assert_eq!(
        check(&ws, &transfer(ALICE, &pid(BOB), 1, 1, 2)),
        Err(TxReject::BadNonce {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        check(&ws, &transfer(ALICE, &pid(BOB), 99, 2, 1)),
        Err(TxReject::InsufficientFunds {
            needed: 101,
            available: 100
        })
    );
    assert_eq!(check(&ws, &transfer(ALICE, &pid(BOB), 99, 1, 1)), Ok(()));
    assert_eq!(
        check(&ws, &transfer(ALICE, &pid(BOB), 1, 0, 1)),
        Err(TxReject::FeeOutOfRange(0))
    );
    assert_eq!(
        check(&ws, &transfer(ALICE, &pid(BOB), 1, 4, 1)),
        Err(TxReject::FeeOutOfRange(4))
    );
    assert_eq!(
        check(&ws, &transfer(ALICE, "nobody", 1, 1, 1)),
        Err(TxReject::BadDestination)
    );
    assert_eq!(
        check(&ws, &transfer(ALICE, &pid(BOB), 0, 1, 1)),
        Err(TxReject::ZeroAmount)
    );
    assert_eq!(
        check(&ws, &transfer(ALICE, &pid(BOB), u64::MAX, 1, 1)),
        Err(TxReject::Overflow)
    );

    // Spending someone else's account: src != author.
    let mut body = transfer(ALICE, &pid(BOB), 1, 1, 1).verify().unwrap();
    body.src = pid(BOB);
    let forged = Signed::sign(&key(ALICE), &body).unwrap();
    assert_eq!(check(&ws, &forged), Err(TxReject::SrcNotAuthor));
    // Author not the signer.
    let mut body = transfer(ALICE, &pid(BOB), 1, 1, 1).verify().unwrap();
    body.author = pid(BOB);
    body.src = pid(BOB);
    let forged = Signed::sign(&key(ALICE), &body).unwrap();
    assert_eq!(check(&ws, &forged), Err(TxReject::AuthorMismatch));
    let mut broken = transfer(ALICE, &pid(BOB), 1, 1, 1);
    broken.sig[0] ^= 1;
    assert_eq!(check(&ws, &broken), Err(TxReject::BadSignature));

    // Double spend: the second transaction for (alice, 1) is refused; the first is
    // idempotent.
    let a = transfer(ALICE, &pid(BOB), 10, 1, 1);
    let b = transfer(ALICE, &pid(CAROL), 10, 1, 1);
    let c = ws.check(&state, &a, &accept_all).unwrap();
    assert!(!c.already_recorded);
    assert!(ws.record(c.slot.clone(), c.tx_id.clone()).unwrap());
    assert!(!ws.record(c.slot.clone(), c.tx_id.clone()).unwrap());
    assert_eq!(
        ws.check(&state, &b, &accept_all),
        Err(TxReject::Conflict(a.id()))
    );
    assert_eq!(
        ws.record(c.slot.clone(), b.id()),
        Err(TxReject::Conflict(a.id()))
    );
    assert!(matches!(
        ws.attest(&key(1), &b),
        Err(AttestError::NotRecorded)
    ));
    assert!(ws.check(&state, &a, &accept_all).unwrap().already_recorded);
    let w1 = ws.attest(&key(1), &a).unwrap();
    let w2 = ws.attest(&key(1), &a).unwrap();
    assert_eq!(w1.verify().unwrap(), w2.verify().unwrap());
    assert_eq!(ws.recorded(&c.slot), Some(a.id().as_str()));
    assert_eq!(c.slot.key(), format!("acct:{}:1", pid(ALICE)));

    // Records survive a restart.
    let restored = WitnessState::from_records(p, [(c.slot, a.id())]).unwrap();
    assert_eq!(
        restored.check(&state, &b, &accept_all),
        Err(TxReject::Conflict(a.id()))
    );
}

#[test]
fn mints_need_the_validator_and_a_fresh_tag() {
    let p = params();
    let mut state = WalletState::new(&p).unwrap();
    let mut ws = WitnessState::new(p.clone()).unwrap();
    let m = mint(&pid(CAROL), 500, "batch:r:c");
    assert_eq!(ws.check(&state, &m, &NoMints), Err(TxReject::MintRejected));
    let only_small = |b: &TxBody| b.amount <= 500;
    let c = ws.check(&state, &m, &only_small).unwrap();
    assert_eq!(
        c.slot,
        Slot::Mint {
            meta: "batch:r:c".into()
        }
    );
    assert_eq!(
        ws.check(&state, &mint(&pid(CAROL), 501, "x"), &only_small),
        Err(TxReject::MintRejected)
    );
    ws.record(c.slot, c.tx_id).unwrap();
    // A second mint with the same tag is a conflict at this witness...
    let m2 = mint(&pid(BOB), 400, "batch:r:c");
    assert_eq!(
        ws.check(&state, &m2, &only_small),
        Err(TxReject::Conflict(m.id()))
    );
    // ...and, once the first is final, at any witness.
    assert!(matches!(
        state.apply_final(&m).unwrap(),
        ApplyOutcome::Applied(_)
    ));
    assert_eq!(state.supply(), 650);
    assert_eq!(state.balance(&pid(CAROL)), 500);
    let fresh = WitnessState::new(p).unwrap();
    assert_eq!(
        fresh.check(&state, &m2, &only_small),
        Err(TxReject::AlreadyMinted)
    );
    assert!(matches!(state.apply_final(&m2), Err(ApplyError::Conflict)));

    // Malformed mints.
    let mut body = m.verify().unwrap();
    body.fee = 1;
    let bad = Signed::sign(&key(MINTER), &body).unwrap();
    assert_eq!(
        ws.check(&state, &bad, &accept_all),
        Err(TxReject::MalformedMint)
    );
    let mut body = m.verify().unwrap();
    body.meta = None;
    let bad = Signed::sign(&key(MINTER), &body).unwrap();
    assert_eq!(
        ws.check(&state, &bad, &accept_all),
        Err(TxReject::MalformedMint)
    );
    let mut body = m.verify().unwrap();
    body.meta = Some("x".repeat(MAX_META_LEN + 1));
    let bad = Signed::sign(&key(MINTER), &body).unwrap();
    assert_eq!(
        ws.check(&state, &bad, &accept_all),
        Err(TxReject::MetaTooLong)
    );
}

#[test]
fn finality_ignores_unlisted_and_forged_witnesses() {
    let p = params();
    let mut fin = Finality::new(p.clone()).unwrap();
    let tx = transfer(ALICE, &pid(BOB), 1, 1, 1);
    let body = WitnessBody {
        tx_id: tx.id(),
        src: pid(ALICE),
        nonce: 1,
        witness: pid(9),
        epoch: 0,
    };
    let outsider = sign_att(9, &body);
    assert!(matches!(
        fin.add(&outsider),
        Err(WitnessError::NotAWitness(_))
    ));
    // Claims to be witness 1 but is signed by 9.
    let claimed = WitnessBody {
        witness: pid(1),
        ..body
    };
    let forged = sign_att(9, &claimed);
    assert!(matches!(
        fin.add(&forged),
        Err(WitnessError::WitnessMismatch)
    ));
    assert_eq!(fin.weight(&tx.id()), 0);
    assert_eq!(certified_weight(&p, &tx.id(), &[outsider, forged]), 0);
    fin.forget(&tx.id());
    assert!(fin.attestations(&tx.id()).is_empty());
}

#[test]
fn final_transactions_apply_in_any_order() {
    let p = params();
    let mut state = WalletState::new(&p).unwrap();
    let t1 = transfer(ALICE, &pid(BOB), 10, 1, 1);
    let t2 = transfer(ALICE, &pid(BOB), 10, 1, 2);
    // Carol has nothing until Bob pays her.
    let t3 = transfer(CAROL, &pid(ALICE), 5, 1, 1);
    let t4 = transfer(BOB, &pid(CAROL), 6, 1, 1);

    assert_eq!(state.apply_final(&t3).unwrap(), ApplyOutcome::Deferred);
    assert_eq!(state.apply_final(&t2).unwrap(), ApplyOutcome::Deferred);
    assert_eq!(state.apply_final(&t2).unwrap(), ApplyOutcome::Deferred);
    assert_eq!(state.pending_count(), 2);
    assert_eq!(
        state.apply_final(&t1).unwrap(),
        ApplyOutcome::Applied(vec![t1.id(), t2.id()])
    );
    assert_eq!(
        state.apply_final(&t4).unwrap(),
        ApplyOutcome::Applied(vec![t4.id(), t3.id()])
    );
    assert_eq!(state.pending_count(), 0);
    assert_eq!(state.balance(&pid(ALICE)), 100 - 22 + 5);
    assert_eq!(state.balance(&pid(BOB)), 50 + 20 - 7);
    assert_eq!(state.balance(&pid(CAROL)), 0);
    assert_eq!(state.balance(SYSTEM), 4);
    let total: u64 = state.balances().map(|(_, b)| b).sum();
    assert_eq!(total, state.supply());
    // A different final transaction for a used nonce means safety broke: reported.
    let conflicting = transfer(ALICE, &pid(CAROL), 1, 1, 1);
    assert!(matches!(
        state.apply_final(&conflicting),
        Err(ApplyError::Conflict)
    ));
}

/// An attestation of `tx` by witness `seed`, made without any witness bookkeeping.
fn attestation(seed: u8, tx: &Tx) -> Witness {
    let body = tx.verify().unwrap();
    let att = WitnessBody {
        tx_id: tx.id(),
        src: body.src,
        nonce: body.nonce,
        witness: pid(seed),
        epoch: 0,
    };
    sign_att(seed, &att)
}

#[test]
fn batch_verification_judges_each_attestation_on_its_own() {
    let p = params();
    let mut fin = Finality::new(p.clone()).unwrap();
    let tx = transfer(ALICE, &pid(BOB), 1, 1, 1);
    let id = tx.id();
    let good: Vec<Witness> = [1, 2, 3].iter().map(|s| attestation(*s, &tx)).collect();
    let mut tampered = attestation(4, &tx);
    tampered.sig[10] ^= 1;
    let outsider = attestation(9, &tx);
    let mut batch = vec![
        good[0].clone(),
        tampered,
        good[1].clone(),
        outsider,
        good[2].clone(),
    ];
    batch.push(Attestation::from_parts(
        b"not json".to_vec(),
        Some(Vec::new()),
        [0; 64],
        [0; 32],
    ));
    let results = fin.verify(&batch);
    let verdicts: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(verdicts, [true, false, true, false, true, false]);
    assert!(matches!(
        results[3],
        Err(WitnessError::NotAWitness(ref w)) if *w == pid(9)
    ));
    let mut finals = Vec::new();
    for v in results.into_iter().flatten() {
        assert_eq!(v.tx_id(), id);
        finals.push(fin.add_verified(v).unwrap());
    }
    assert_eq!(finals, [false, false, true]);
    assert_eq!(certified_weight(&p, &id, &batch), 3000);
    assert_eq!(fin.certified_weight(&id, &batch), 3000);
}

#[test]
fn an_attestation_is_only_trusted_unchecked_when_identical_to_a_counted_one() {
    let p = params();
    let mut fin = Finality::new(p).unwrap();
    let tx = transfer(ALICE, &pid(BOB), 1, 1, 1);
    let good = attestation(1, &tx);
    assert!(!fin.add(&good).unwrap());
    // The very same attestation again: accepted (and counted once).
    assert!(fin.verify(std::slice::from_ref(&good))[0].is_ok());
    // Witness 1 and the same transaction, but a broken signature: refused, though witness 1's
    // attestation of this transaction is already counted.
    let mut bad_sig = good.clone();
    bad_sig.sig[0] ^= 1;
    assert!(matches!(
        fin.verify(std::slice::from_ref(&bad_sig))[0],
        Err(WitnessError::Verify(VerifyError::BadSignature))
    ));
    // Other bytes under witness 1's name with the counted signature: refused.
    let mut body = good.verify().unwrap();
    body.nonce = 2;
    let other = Attestation::from_parts(
        serde_json::to_vec(&body).unwrap(),
        good.proof.clone(),
        good.sig,
        good.pubkey,
    );
    assert!(fin.add(&other).is_err());
    assert_eq!(fin.weight(&tx.id()), 1000);
}

#[test]
fn own_attestations_count_without_a_signature_check() {
    let p = params();
    let state = WalletState::new(&p).unwrap();
    let mut fin = Finality::new(p.clone()).unwrap();
    let tx = transfer(ALICE, &pid(BOB), 1, 1, 1);
    let v = VerifiedTx::new(&tx).unwrap();
    let mut finals = Vec::new();
    for seed in [1, 2, 3] {
        let mut ws = WitnessState::new(p.clone()).unwrap();
        // Not recorded yet: no attestation.
        assert!(matches!(
            ws.attest_own(&key(seed), &v),
            Err(AttestError::NotRecorded)
        ));
        let c = ws.check_verified(&state, &v, &accept_all).unwrap();
        ws.record(c.slot, c.tx_id).unwrap();
        let own = ws.attest_own(&key(seed), &v).unwrap();
        // The very bytes a peer would check.
        assert_eq!(own.attestation(), &ws.attest(&key(seed), &tx).unwrap());
        assert!(own.attestation().verify_signature().is_ok());
        assert_eq!(own.witness(), pid(seed));
        finals.push(fin.add_verified(own).unwrap());
    }
    assert_eq!(finals, [false, false, true]);
    // A node that is not a listed witness cannot count its own attestation.
    let mut outsider = WitnessState::new(p).unwrap();
    let c = outsider.check_verified(&state, &v, &accept_all).unwrap();
    outsider.record(c.slot, c.tx_id).unwrap();
    let own = outsider.attest_own(&key(9), &v).unwrap();
    let mut fresh = Finality::new(params()).unwrap();
    assert!(matches!(
        fresh.add_verified(own),
        Err(WitnessError::NotAWitness(_))
    ));
}

#[test]
fn batched_transaction_checks_agree_with_single_checks() {
    let good = transfer(ALICE, &pid(BOB), 1, 1, 1);
    let mut tampered = transfer(BOB, &pid(ALICE), 1, 1, 1);
    tampered.bytes[12] ^= 1;
    // Signed by Carol but claims Alice as author.
    let mut body = good.verify().unwrap();
    body.nonce = 2;
    let wrong_author = Signed::sign(&key(CAROL), &body).unwrap();
    let zero = transfer(CAROL, &pid(ALICE), 0, 1, 1);
    let txs = [&good, &tampered, &wrong_author, &zero, &good];
    let many = VerifiedTx::new_many(&txs);
    assert_eq!(many.len(), txs.len());
    for (tx, batched) in txs.iter().zip(&many) {
        let single = VerifiedTx::new(tx);
        assert_eq!(batched.as_ref().err(), single.as_ref().err());
        if let (Ok(a), Ok(b)) = (batched, single) {
            assert_eq!((a.id(), a.body()), (b.id(), b.body()));
        }
    }
    assert!(many[0].is_ok() && many[4].is_ok());
    assert_eq!(many[1].as_ref().err(), Some(&TxReject::BadSignature));
    assert_eq!(many[2].as_ref().err(), Some(&TxReject::AuthorMismatch));
    assert_eq!(many[3].as_ref().err(), Some(&TxReject::ZeroAmount));
}
