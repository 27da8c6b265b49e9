//! Ledger blocks: `Block` from JSON (the blocks gossip topic, the node's `on_block_gossip`),
//! `validate_block`, `Dag::insert`, and the inclusion proofs the DAG derives for the
//! receipts it holds.
//!
//! Input: the first byte picks the mode (even: a block as JSON; odd: a `BlockBody` signed
//! here with the fuzz key); the rest is the record.
//! Invariants: a block inserts exactly when it validates; a valid block without parents
//! becomes the one tip; each of its receipts is found with a proof that folds to the
//! batch root; its batch rebuilt with proofs verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offgrid_fuzz::{assert_envelope_round_trip, mode, sign_bytes, Mode};
use offgrid_ledger::{dag::validate_block, merkle, Block, Dag, InsertOutcome};

fuzz_target!(|data: &[u8]| {
    let Some((m, rest)) = mode(data) else { return };
    let block: Block = match m {
        Mode::Wire => match serde_json::from_slice(rest) {
            Ok(b) => b,
            Err(_) => return,
        },
        Mode::Signed => sign_bytes(rest),
    };
    assert_envelope_round_trip(&block);
    let valid = validate_block(&block);
    let mut dag = Dag::new();
    let inserted = dag.insert(block.clone());
    assert_eq!(
        valid.is_ok(),
        inserted.is_ok(),
        "insert and validate disagree"
    );
    let (Ok(valid), Ok(outcome)) = (valid, inserted) else {
        return;
    };
    assert_eq!(valid.receipts.len(), valid.body.batch.receipts.len());
    let id = block.id();
    if !valid.body.parents.is_empty() {
        assert_eq!(
            outcome,
            InsertOutcome::MissingParents(valid.body.parents.clone())
        );
        assert_eq!(dag.orphan_count(), 1);
        return;
    }
    assert_eq!(outcome, InsertOutcome::Inserted(vec![id.clone()]));
    assert_eq!(dag.tips(), vec![id.clone()]);
    assert_eq!(
        dag.insert(block.clone()).ok(),
        Some(InsertOutcome::Duplicate)
    );
    let root: merkle::Hash = hex::decode(&valid.body.batch.root)
        .expect("a valid root is hex")
        .try_into()
        .expect("a valid root is 32 bytes");
    for r in &valid.body.batch.receipts {
        let (at, proof) = dag
            .find_receipt(&r.hash())
            .expect("a held receipt is found");
        assert_eq!(at, id);
        assert!(
            merkle::verify(&r.bytes, &proof, &root),
            "a derived proof does not verify"
        );
    }
    let batch = valid.body.batch.to_receipt_batch(valid.body.timestamp_ms);
    assert!(
        batch.verify().is_ok(),
        "a valid block's batch does not verify"
    );
    assert!(dag.contains_batch(&valid.body.batch.root));
});
