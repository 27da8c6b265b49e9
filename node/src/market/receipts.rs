//! Exporting receipts as Merkle-rooted batches for the ledger.
//!
//! An export takes every receipt stored since the previous export (at most
//! [`MAX_BATCH_RECEIPTS`]), builds a [`ReceiptBatch`] (leaf = a receipt's signed bytes;
//! tree rules in `offgrid_ledger::merkle`), keeps the batch under its root and moves the
//! export mark — all in one write transaction, so a crash never loses or repeats receipts.

use offgrid_ledger::{
    batch::{ReceiptBatch, MAX_BATCH_RECEIPTS},
    receipt::SignedReceipt,
};

use crate::store::{Op, Store, StoreError, Table};

const MARK: &str = "receipts_exported_upto";

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored receipt no longer verifies (corruption).
    #[error("stored receipt does not verify: {0}")]
    Batch(#[from] offgrid_ledger::batch::BatchError),
}

/// Builds and keeps the next batch; `None` when nothing is new.
pub fn export(store: &Store, now_ms: u64) -> Result<Option<ReceiptBatch>, ExportError> {
    let mark: Option<String> = store.get(Table::Meta, MARK)?;
    let rows: Vec<(String, SignedReceipt)> =
        store.scan_after(Table::Receipts, mark.as_deref(), MAX_BATCH_RECEIPTS)?;
    let Some((last_key, _)) = rows.last() else {
        return Ok(None);
    };
    let last_key = last_key.clone();
    let batch = ReceiptBatch::build(rows.into_iter().map(|(_, r)| r).collect(), now_ms)?;
    // Called from blocking threads (the export route, the ledger tick).
    store.commit_blocking(vec![
        Op::put(Table::Batches, batch.root.as_str(), &batch)?,
        Op::put(Table::Meta, MARK, &last_key)?,
    ])?;
    Ok(Some(batch))
}

/// A batch kept by an earlier export.
pub fn get_batch(store: &Store, root: &str) -> Result<Option<ReceiptBatch>, StoreError> {
    store.get(Table::Batches, root)
}

#[cfg(test)]
mod tests {
    use offgrid_ledger::{
        receipt::{Metrics, Proofs, ReceiptBody, RECEIPT_VERSION},
        signed::Signed,
    };

    use super::*;
    use crate::identity::Identity;

    fn receipt(id: &Identity, job: &str) -> SignedReceipt {
        let body = ReceiptBody {
            version: RECEIPT_VERSION.into(),
            cluster_id: "c".into(),
            job_id: job.into(),
            resource_type: "echo".into(),
            units: 1_000_000,
            metrics: Metrics::default(),
            proofs: Proofs::default(),
            cids: vec![],
            node_id: id.peer_id().to_string(),
            host_pubkey: hex::encode(id.public_key()),
            broker_id: "b".into(),
            started_at_ms: 1,
            finished_at_ms: 2,
            price: 1000,
            order: None,
        };
        Signed::sign(id.signing_key(), &body).unwrap()
    }

    #[test]
    fn each_export_takes_only_new_receipts_and_keeps_the_batch() {
        let store = Store::in_memory().unwrap();
        let id = Identity::generate();
        assert!(export(&store, 1).unwrap().is_none());
        for (k, j) in [("0001-a", "a"), ("0002-b", "b")] {
            store
                .put_blocking(Table::Receipts, k, &receipt(&id, j))
                .unwrap();
        }
        let first = export(&store, 2).unwrap().unwrap();
        assert_eq!(first.items.len(), 2);
        first.verify().unwrap();
        assert!(export(&store, 3).unwrap().is_none(), "nothing new");
        store
            .put_blocking(Table::Receipts, "0003-c", &receipt(&id, "c"))
            .unwrap();
        let second = export(&store, 4).unwrap().unwrap();
        assert_eq!(second.items.len(), 1);
        assert_eq!(get_batch(&store, &first.root).unwrap().unwrap(), first);
    }
}
