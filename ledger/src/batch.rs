//! Receipt batches: a list of receipts under one Merkle root.
//!
//! Leaf `i` of the tree is receipt `i`'s signed bytes (see [`crate::merkle`] for the tree
//! rules), so a receipt's inclusion can be shown to anyone who knows the root.
//!
//! A batch may not contain the same receipt twice, nor two receipts for the same
//! `(node_id, job_id)`: settlement pays per receipt, so either would pay a job twice.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::{
    codec,
    merkle::{self, Hash, Proof},
    receipt::{verify_receipt, ReceiptBody, ReceiptError, SignedReceipt},
};

/// Most receipts one batch may hold; keeps blocks and proofs bounded.
pub const MAX_BATCH_RECEIPTS: usize = 4096;

/// One receipt of a batch with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The receipt as signed by its host.
    pub receipt: SignedReceipt,
    /// Position of the receipt in the batch.
    pub index: u64,
    /// Proof that `receipt.bytes` is leaf `index` under the batch root.
    pub proof: Proof,
}

/// A Merkle-rooted batch of receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBatch {
    /// Lowercase hex Merkle root over the receipts' signed bytes.
    pub root: String,
    /// When the batch was built, Unix milliseconds.
    pub created_at_ms: u64,
    /// The receipts, in leaf order.
    pub items: Vec<BatchItem>,
}

/// Why a batch could not be built or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// More than [`MAX_BATCH_RECEIPTS`] receipts.
    #[error("batch holds {0} receipts, more than {MAX_BATCH_RECEIPTS}")]
    TooLarge(usize),
    /// A receipt failed verification.
    #[error("receipt {index}: {source}")]
    Receipt {
        /// Position of the receipt.
        index: usize,
        /// What was wrong with it.
        #[source]
        source: ReceiptError,
    },
    /// The same receipt, or a second receipt for the same host and job, appears again.
    #[error("receipt {0} duplicates an earlier receipt or (node_id, job_id)")]
    Duplicate(usize),
    /// `root` is not 32 hex-encoded bytes.
    #[error("malformed root")]
    MalformedRoot,
    /// The root does not match the receipts.
    #[error("root does not match the receipts")]
    RootMismatch,
    /// An item's index is not its position.
    #[error("item {0} carries a wrong index")]
    IndexMismatch(usize),
    /// An item's proof does not lead to the root.
    #[error("item {0} has an invalid inclusion proof")]
    BadProof(usize),
}

/// Verifies every receipt and rejects duplicates. Returns the decoded bodies in order.
pub fn verify_receipts(receipts: &[SignedReceipt]) -> Result<Vec<ReceiptBody>, BatchError> {
    if receipts.len() > MAX_BATCH_RECEIPTS {
        return Err(BatchError::TooLarge(receipts.len()));
    }
    let mut seen_hashes = BTreeSet::new();
    let mut seen_jobs = BTreeSet::new();
    let mut bodies = Vec::with_capacity(receipts.len());
    for (index, r) in receipts.iter().enumerate() {
        let body = verify_receipt(r).map_err(|source| BatchError::Receipt { index, source })?;
        if !seen_hashes.insert(r.hash())
            || !seen_jobs.insert((body.node_id.clone(), body.job_id.clone()))
        {
            return Err(BatchError::Duplicate(index));
        }
        bodies.push(body);
    }
    Ok(bodies)
}

/// Merkle root over the receipts' signed bytes.
pub fn receipts_root(receipts: &[SignedReceipt]) -> Hash {
    merkle::root_from_hashes(
        receipts
            .iter()
            .map(|r| merkle::leaf_hash(&r.bytes))
            .collect(),
    )
}

impl ReceiptBatch {
    /// Builds a batch over `receipts` (in the given order) with a proof per receipt. Verifies
    /// every receipt and refuses duplicates, so a built batch always passes
    /// [`ReceiptBatch::verify`].
    pub fn build(receipts: Vec<SignedReceipt>, now_ms: u64) -> Result<Self, BatchError> {
        verify_receipts(&receipts)?;
        Ok(Self::build_unchecked(receipts, now_ms))
    }

    /// Builds a batch without verifying the receipts (for receipts already verified, e.g.
    /// taken from a validated block).
    pub fn build_unchecked(receipts: Vec<SignedReceipt>, now_ms: u64) -> Self {
        let leaves: Vec<Hash> = receipts
            .iter()
            .map(|r| merkle::leaf_hash(&r.bytes))
            .collect();
        let root = merkle::root_from_hashes(leaves.clone());
        let items = receipts
            .into_iter()
            .enumerate()
            .map(|(i, receipt)| BatchItem {
                receipt,
                index: i as u64,
                // In range by construction: `i` enumerates the same leaves.
                proof: merkle::proof_from_hashes(leaves.clone(), i).unwrap_or(Proof {
                    index: i as u64,
                    siblings: Vec::new(),
                }),
            })
            .collect();
        Self {
            root: hex::encode(root),
            created_at_ms: now_ms,
            items,
        }
    }

    /// The root as bytes, if well formed.
    pub fn root_bytes(&self) -> Option<Hash> {
        codec::hex_array(&self.root)
    }

    /// The receipts in leaf order.
    pub fn receipts(&self) -> impl Iterator<Item = &SignedReceipt> {
        self.items.iter().map(|i| &i.receipt)
    }

    /// Verifies every receipt, rejects duplicates, recomputes the root and checks every
    /// item's index and proof. Returns the decoded receipt bodies in order.
    pub fn verify(&self) -> Result<Vec<ReceiptBody>, BatchError> {
        let root = self.root_bytes().ok_or(BatchError::MalformedRoot)?;
        let receipts: Vec<SignedReceipt> = self.receipts().cloned().collect();
        let bodies = verify_receipts(&receipts)?;
        if receipts_root(&receipts) != root {
            return Err(BatchError::RootMismatch);
        }
        for (i, item) in self.items.iter().enumerate() {
            if item.index != i as u64 || item.proof.index != i as u64 {
                return Err(BatchError::IndexMismatch(i));
            }
            if !merkle::verify(&item.receipt.bytes, &item.proof, &root) {
                return Err(BatchError::BadProof(i));
            }
        }
        Ok(bodies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::tests::receipt;

    fn three() -> Vec<SignedReceipt> {
        vec![
            receipt(1, "a", 1_000_000, 30_000),
            receipt(2, "b", 250_000, 30_000),
            receipt(1, "c", 500_000, 10_000),
        ]
    }

    #[test]
    fn built_batch_verifies_and_round_trips() {
        let b = ReceiptBatch::build(three(), 42).unwrap();
        assert_eq!(b.items.len(), 3);
        assert_eq!(b.created_at_ms, 42);
        let leaves: Vec<&[u8]> = b.receipts().map(|r| r.bytes.as_slice()).collect();
        assert_eq!(b.root, hex::encode(merkle::root(&leaves)));
        assert_eq!(b.verify().unwrap().len(), 3);
        let json = serde_json::to_string(&b).unwrap();
        let back: ReceiptBatch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        back.verify().unwrap();
    }

    #[test]
    fn empty_batch_has_the_empty_root() {
        let b = ReceiptBatch::build(vec![], 0).unwrap();
        assert_eq!(b.root_bytes(), Some(merkle::empty_root()));
        b.verify().unwrap();
    }

    #[test]
    fn duplicates_are_refused() {
        let mut rs = three();
        rs.push(rs[0].clone());
        assert!(matches!(
            ReceiptBatch::build(rs, 0),
            Err(BatchError::Duplicate(3))
        ));
        // Same host and job, different size: still a duplicate job.
        let mut rs = three();
        rs.push(receipt(1, "a", 2, 3));
        assert!(matches!(
            ReceiptBatch::build(rs, 0),
            Err(BatchError::Duplicate(3))
        ));
    }

    #[test]
    fn tampered_batches_fail() {
        let good = ReceiptBatch::build(three(), 0).unwrap();

        let mut b = good.clone();
        b.items.swap(0, 1);
        assert!(matches!(b.verify(), Err(BatchError::RootMismatch)));

        let mut b = good.clone();
        b.root = hex::encode([0u8; 32]);
        assert!(matches!(b.verify(), Err(BatchError::RootMismatch)));

        let mut b = good.clone();
        b.root = "zz".into();
        assert!(matches!(b.verify(), Err(BatchError::MalformedRoot)));

        let mut b = good.clone();
        b.items[1].proof.siblings[0].hash[0] ^= 1;
        assert!(matches!(b.verify(), Err(BatchError::BadProof(1))));

        let mut b = good.clone();
        b.items[2].index = 0;
        assert!(matches!(b.verify(), Err(BatchError::IndexMismatch(2))));

        let mut b = good;
        b.items[0].receipt.sig[1] ^= 1;
        assert!(matches!(
            b.verify(),
            Err(BatchError::Receipt { index: 0, .. })
        ));
    }
}
