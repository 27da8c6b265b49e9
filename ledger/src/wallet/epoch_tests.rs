//! Reconfiguration end to end in the ledger: witnesses approve and attest a new epoch, it
//! opens once final, an added witness's attestations count and a removed one's do not.

use super::{
    epoch::{propose, reconfig_body, Change},
    tests::{key, params, pid, transfer, ALICE, BOB},
    *,
};

/// A validator that approves exactly these reconfigurations.
struct Approve(Vec<String>);

impl MintValidator for Approve {
    fn validate_mint(&self, _: &TxBody) -> bool {
        false
    }
    fn approve_reconfig(&self, tx_id: &str) -> bool {
        self.0.iter().any(|a| a == tx_id)
    }
}

/// A witness: its key seed and its promises.
type W = (u8, WitnessState);

/// Witness `w` checks, records and attests `tx` in its current epoch.
fn attest(w: &mut W, state: &WalletState, tx: &Tx, v: &dyn MintValidator) -> Witness {
    let c = w.1.check(state, tx, v).unwrap();
    w.1.record(c.slot, c.tx_id).unwrap();
    w.1.attest(&key(w.0), tx).unwrap()
}

#[test]
fn an_added_witness_counts_in_the_new_epoch_and_a_removed_one_no_longer_does() {
    let p = params(); // witnesses 1..=5 at 1000, quorum 3000
    let mut state = WalletState::new(&p).unwrap();
    let mut fin = Finality::new(p.clone()).unwrap();
    let mut ws: Vec<W> = (1..=6u8)
        .map(|s| (s, WitnessState::new(p.clone()).unwrap()))
        .collect();
    let current = state.epoch_set().clone();
    assert_eq!(current.epoch, 0);

    // Epoch 1 adds witness 6 (quorum just over half of 6000).
    let r = propose(&current, &Change::Add(pid(6), 1000), None).unwrap();
    let tx = Signed::sign(&key(1), &reconfig_body(r)).unwrap();
    let id = tx.id();
    // Unapproved, a witness does not sign it; nor one signed by an outsider.
    assert!(matches!(
        ws[1].1.check(&state, &tx, &NoMints),
        Err(TxReject::NotApproved)
    ));
    let outsider = Signed::sign(&key(6), &tx.verify().unwrap()).unwrap();
    assert_eq!(outsider.id(), id, "the body is the same whoever signs it");
    assert!(matches!(
        ws[1].1.check(&state, &outsider, &Approve(vec![id.clone()])),
        Err(TxReject::BadReconfig(_))
    ));
    // Three approving witnesses of epoch 0 make it final.
    let ok = Approve(vec![id.clone()]);
    let mut done = false;
    for w in ws.iter_mut().take(3) {
        let a = attest(w, &state, &tx, &ok);
        done = fin.add(&a).unwrap();
    }
    assert!(done, "final by epoch 0's quorum");
    state.apply_final(&tx).unwrap();
    assert_eq!(state.epoch_set().epoch, 1);
    fin.open_epoch(state.epoch_set());
    for w in &mut ws {
        w.1.set_epoch(1);
    }

    // A transfer in epoch 1: epoch-0 attestations no longer count; witness 6's do.
    let t = transfer(ALICE, &pid(BOB), 5, 2, 1);
    // Witness 1 still signing in epoch 0 (it has not seen the change).
    let old = attest(
        &mut (1, WitnessState::new(p.clone()).unwrap()),
        &state,
        &t,
        &NoMints,
    );
    assert!(fin.add(&old).unwrap_err().is_epoch_mismatch());
    for i in [5, 0, 1] {
        let a = attest(&mut ws[i], &state, &t, &NoMints);
        assert!(
            !fin.add(&a).unwrap(),
            "three of six are not a quorum of 3001"
        );
    }
    assert!(fin.add(&attest(&mut ws[2], &state, &t, &NoMints)).unwrap());
    assert!(fin.certifies(&t.id(), &fin.attestations(&t.id())));

    // Epoch 2 removes witness 1: its attestations in epoch 2 are refused.
    let r2 = propose(state.epoch_set(), &Change::Remove(pid(1)), None).unwrap();
    let tx2 = Signed::sign(&key(6), &reconfig_body(r2)).unwrap();
    let ok2 = Approve(vec![tx2.id()]);
    for w in ws.iter_mut().skip(1).take(4) {
        let a = attest(w, &state, &tx2, &ok2);
        fin.add(&a).unwrap();
    }
    assert!(fin.is_final(&tx2.id()));
    state.apply_final(&tx2).unwrap();
    fin.open_epoch(state.epoch_set());
    for w in &mut ws {
        w.1.set_epoch(2);
    }
    let t2 = transfer(ALICE, &pid(BOB), 5, 2, 2);
    state.apply_final(&t).unwrap();
    let removed = attest(&mut ws[0], &state, &t2, &NoMints);
    assert!(matches!(
        fin.add(&removed),
        Err(WitnessError::NotAWitness(_))
    ));
    assert_eq!(fin.weight(&t2.id()), 0);
}

#[test]
fn a_reconfiguration_for_a_later_epoch_waits_and_a_stale_one_is_dead() {
    let p = params();
    let mut state = WalletState::new(&p).unwrap();
    let e0 = state.epoch_set().clone();
    let r1 = propose(&e0, &Change::Add(pid(6), 1000), None).unwrap();
    let e1 = e0.next(&r1).unwrap();
    let r2 = propose(&e1, &Change::Remove(pid(1)), None).unwrap();
    let t1 = Signed::sign(&key(1), &reconfig_body(r1)).unwrap();
    let t2 = Signed::sign(&key(2), &reconfig_body(r2)).unwrap();
    // Final out of order: epoch 2 waits for epoch 1.
    assert_eq!(state.apply_final(&t2).unwrap(), ApplyOutcome::Deferred);
    assert!(
        matches!(state.apply_final(&t1).unwrap(), ApplyOutcome::Applied(ids) if ids.len() == 2)
    );
    assert_eq!(state.epoch_set().epoch, 2);
    assert!(state.is_dead(&t1.verify().unwrap()));
    // A malformed one: a fee, or an author.
    let mut body = t1.verify().unwrap();
    body.fee = 1;
    let bad = Signed::sign(&key(1), &body).unwrap();
    assert!(VerifiedTx::new(&bad).is_err() || state.apply_final(&bad).is_err());
}
