//! Wallet transactions: `Tx` from JSON and the gossip message `TxGossip` (the node's
//! `on_tx_gossip`), `VerifiedTx::new` and `VerifiedTx::new_many` (one batch check per
//! message), a witness's `check_verified` and `WalletState::apply_final_verified`.
//!
//! Input: the first byte picks the mode (0 a `Tx` as JSON, 1 a `TxBody` signed here with the
//! fuzz key, 2 a `TxGossip` as JSON); the rest is the record.
//! Invariants: the batch check of a message gives each transaction the verdict it gets
//! alone; applying a final transfer or settlement never changes the supply.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_behaviours::ledger_sync::TxGossip;
use offgrid_fuzz::{assert_envelope_round_trip, assert_json_round_trip, sign_bytes, wallet_params};
use offgrid_ledger::{wallet::VerifiedTx, NoMints, Tx, TxKind, WalletState, WitnessState};

fn check_one(tx: &Tx) {
    assert_envelope_round_trip(tx);
    let alone = VerifiedTx::new(tx);
    let batch = VerifiedTx::new_many(&[tx])
        .pop()
        .expect("one result per input");
    assert_eq!(
        alone.as_ref().err(),
        batch.as_ref().err(),
        "batch and single verdicts differ"
    );
    let Ok(v) = alone else { return };
    assert_json_round_trip(v.body());
    assert_eq!(v.id(), tx.id());
    let params = wallet_params();
    let mut state = WalletState::new(&params).expect("valid params");
    let witness = WitnessState::new(params).expect("valid params");
    let _ = witness.check_verified(&state, &v, &NoMints);
    let supply = state.supply();
    if state.apply_final_verified(&v).is_ok() && v.body().kind != TxKind::Mint {
        assert_eq!(
            state.supply(),
            supply,
            "a transfer or settlement changed the supply"
        );
    }
    let total: u128 = state.balances().map(|(_, b)| u128::from(b)).sum();
    assert_eq!(
        total,
        u128::from(state.supply()),
        "balances do not add up to the supply"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    match m % 3 {
        0 => {
            if let Ok(tx) = serde_json::from_slice::<Tx>(rest) {
                check_one(&tx);
            }
        }
        1 => check_one(&sign_bytes(rest)),
        _ => {
            let Ok(msg) = serde_json::from_slice::<TxGossip>(rest) else {
                return;
            };
            let refs: Vec<&Tx> = msg.txs.iter().collect();
            let many = VerifiedTx::new_many(&refs);
            assert_eq!(many.len(), refs.len());
            for (tx, r) in refs.iter().zip(&many) {
                let alone = VerifiedTx::new(tx);
                assert_eq!(
                    alone.as_ref().err(),
                    r.as_ref().err(),
                    "batch and single verdicts differ"
                );
            }
            let mut finality =
                offgrid_ledger::Finality::new(wallet_params()).expect("valid params");
            let _ = finality.verify(&msg.attests);
        }
    }
});
