//! The block DAG as the node keeps it: loading from the store, inserting (with the store
//! writes queued), building blocks from exported receipt batches, settlement mints and
//! receipt proofs.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use offgrid_ledger::{
    batch::ReceiptBatch,
    dag::{Block, BlockError, Dag, InsertOutcome},
    merkle::Proof,
    wallet::WalletState,
    Signed, Tx,
};
use serde::Serialize;
use tracing::{info, warn};

use super::wallet::{Effects, Write};
use crate::store::{Store, StoreError, Table};

/// Rebuilds the DAG from stored blocks, parents first.
pub fn load_dag(store: &Store) -> Result<Dag, StoreError> {
    let stored: BTreeMap<String, Block> = store.scan(Table::Blocks)?.into_iter().collect();
    let mut dag = Dag::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    // Iterative depth-first walk so that long chains cannot overflow the stack.
    for root in stored.keys() {
        let mut stack = vec![(root.clone(), false)];
        while let Some((id, expanded)) = stack.pop() {
            if done.contains(&id) {
                continue;
            }
            let Some(block) = stored.get(&id) else {
                continue;
            };
            if expanded {
                done.insert(id.clone());
                if let Err(e) = dag.insert(block.clone()) {
                    warn!(block = %id, error = %e, "stored block no longer validates");
                }
                continue;
            }
            stack.push((id.clone(), true));
            if let Ok(body) = serde_json::from_slice::<offgrid_ledger::BlockBody>(&block.bytes) {
                for p in body.parents {
                    if !done.contains(&p) {
                        stack.push((p, false));
                    }
                }
            }
        }
    }
    Ok(dag)
}

/// Inserts a block; every block that joins the DAG (it and the orphans it completes) is
/// queued for the store.
pub fn insert_block(
    dag: &mut Dag,
    block: Block,
    fx: &mut Effects,
) -> Result<InsertOutcome, BlockError> {
    let out = dag.insert(block)?;
    if let InsertOutcome::Inserted(ids) = &out {
        for id in ids {
            if let Some(b) = dag.get(id) {
                fx.ops.push(Write::Block(id.clone(), b.clone()));
            }
        }
    }
    Ok(out)
}

/// Exported batches (`Table::Batches`) that no block commits to yet, oldest first.
pub fn unblocked_batches(store: &Store, dag: &Dag) -> Result<Vec<ReceiptBatch>, StoreError> {
    let mut v: Vec<ReceiptBatch> = store
        .scan::<ReceiptBatch>(Table::Batches)?
        .into_iter()
        .map(|(_, b)| b)
        .filter(|b| !dag.contains_batch(&b.root))
        .collect();
    v.sort_by_key(|b| b.created_at_ms);
    Ok(v)
}

/// Signs, inserts and queues for gossip a block over `batch` (or over no receipts).
pub fn make_block(
    dag: &mut Dag,
    key: &SigningKey,
    batch: Option<&ReceiptBatch>,
    now_ms: u64,
    fx: &mut Effects,
) -> Result<String, BlockError> {
    let receipts = batch
        .map(|b| b.receipts().cloned().collect())
        .unwrap_or_default();
    let block = dag.build_block(key, receipts, now_ms)?;
    let id = block.id();
    insert_block(dag, block.clone(), fx)?;
    info!(block = %id, receipts = batch.map_or(0, |b| b.items.len()), "block created");
    fx.blocks.push(block);
    Ok(id)
}

/// The settlements this node's receipts call for: for each receipt in a block it made whose
/// order is not paid yet, a settlement signed by this node, at its payer's next nonces in
/// turn. A receipt that claims nothing (no order, or one that does not hold) is skipped
/// alone, with a warning. Run again after a payer's nonces moved on (its own transfers, other
/// hosts' settlements), it makes the unpaid ones afresh at the new nonces.
pub fn settlement_claims(dag: &Dag, key: &SigningKey, me: &str, state: &WalletState) -> Vec<Tx> {
    let mut claims = Vec::new();
    for id in dag.ids_in_order() {
        let Some(b) = dag.get_valid(id) else { continue };
        if b.body.author != me || b.body.batch.receipts.is_empty() {
            continue;
        }
        let Some(batch) = dag.batch(&b.body.batch.root) else {
            continue;
        };
        for item in batch.items {
            match offgrid_ledger::payment::claim(&item.receipt) {
                Ok(c) if !state.is_settled(&c.order_id) => {
                    claims.push((item.receipt, c, b.body.timestamp_ms));
                }
                Ok(_) | Err(offgrid_ledger::ClaimError::NoOrder) => {}
                Err(e) => warn!(block = %id, error = %e, "a receipt claims nothing"),
            }
        }
    }
    let claims = claims.iter().map(|(r, c, t)| (r, c.clone(), *t));
    offgrid_ledger::settlement::in_sequence(claims, |payer| state.next_nonce(payer))
        .iter()
        .filter_map(|body| match Signed::sign(key, body) {
            Ok(tx) => Some(tx),
            Err(e) => {
                warn!(error = %e, "cannot sign a settlement");
                None
            }
        })
        .collect()
}

/// A receipt's inclusion proof.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptProof {
    /// The block holding the receipt.
    pub block: String,
    /// The block's batch root (lowercase hex).
    pub root: String,
    /// The receipt's hash (lowercase hex BLAKE3 of its signed bytes).
    pub receipt_hash: String,
    /// The receipt as signed by its host.
    pub receipt: offgrid_ledger::SignedReceipt,
    /// The inclusion proof under `root`.
    pub proof: Proof,
    /// Whether the proof verifies here.
    pub verified: bool,
}

/// Proves a receipt named by its hash (64 hex digits) or by its job id.
pub fn prove(dag: &Dag, query: &str) -> Option<ReceiptProof> {
    let hash = hex_hash(query).or_else(|| {
        dag.ids_in_order().iter().find_map(|id| {
            let b = dag.get_valid(id)?;
            b.receipts
                .iter()
                .position(|r| r.job_id == query)
                .map(|i| b.body.batch.receipts[i].hash())
        })
    })?;
    let (block, proof) = dag.find_receipt(&hash)?;
    let b = dag.get_valid(&block)?;
    let receipt = b.body.batch.receipts.get(proof.index as usize)?.clone();
    let root = b.body.batch.root.clone();
    let root_bytes = hex_hash(&root)?;
    Some(ReceiptProof {
        verified: offgrid_ledger::merkle::verify(&receipt.bytes, &proof, &root_bytes),
        block,
        root,
        receipt_hash: hex::encode(hash),
        receipt,
        proof,
    })
}

fn hex_hash(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn blocks_reload_parents_first_whatever_the_key_order() {
        let store = Store::in_memory().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut dag = Dag::new();
        let mut fx = Effects::default();
        for t in 0..20 {
            make_block(&mut dag, &key, None, t, &mut fx).unwrap();
        }
        let ops = fx.ops.iter().map(|w| w.op().unwrap()).collect();
        store.commit_blocking(ops).unwrap();
        let again = load_dag(&store).unwrap();
        assert_eq!(again.len(), 20);
        assert_eq!(again.tips(), dag.tips());
        assert_eq!(again.orphan_count(), 0);
    }
}
