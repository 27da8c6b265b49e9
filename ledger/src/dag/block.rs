//! Ledger blocks: a signed batch root plus its receipts, pointing at parent blocks.

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::{
    batch::{receipts_root, verify_receipts, BatchError, ReceiptBatch},
    codec,
    peer_id::peer_id_from_pubkey,
    receipt::{ReceiptBody, SignedReceipt},
    signed::{SignError, Signed, VerifyError},
};

/// Most parents a block may name.
pub const MAX_PARENTS: usize = 32;

/// The receipts a block commits to. Proofs are not carried: the root is recomputed from the
/// receipts, and proofs are derived on demand ([`crate::dag::Dag::find_receipt`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockBatch {
    /// Lowercase hex Merkle root over the receipts' signed bytes.
    pub root: String,
    /// The receipts in leaf order.
    pub receipts: Vec<SignedReceipt>,
}

impl BlockBatch {
    /// The batch in its standalone form (with proofs), stamped with `created_at_ms`.
    pub fn to_receipt_batch(&self, created_at_ms: u64) -> ReceiptBatch {
        ReceiptBatch::build_unchecked(self.receipts.clone(), created_at_ms)
    }
}

impl From<&ReceiptBatch> for BlockBatch {
    fn from(b: &ReceiptBatch) -> Self {
        Self {
            root: b.root.clone(),
            receipts: b.receipts().cloned().collect(),
        }
    }
}

/// The signed content of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockBody {
    /// Ids of the parent blocks (lowercase hex BLAKE3 of their bytes), strictly ascending.
    pub parents: Vec<String>,
    /// The committed receipts.
    pub batch: BlockBatch,
    /// Peer id of the block's signer.
    pub author: String,
    /// When the block was made, Unix milliseconds (informational; not used for ordering).
    pub timestamp_ms: u64,
}

/// A block as it travels and is stored. Its id is [`Signed::id`].
pub type Block = Signed<BlockBody>;

impl crate::signed::Domain for BlockBody {
    /// The type tag of a ledger block.
    const TAG: &'static [u8] = b"offgrid/block/v1";
}

/// Why a block is invalid.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Signature or decoding failure.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// `author` is not the peer id of the signing key.
    #[error("author does not match the signing key")]
    AuthorMismatch,
    /// A parent id is not 32 hex-encoded bytes.
    #[error("malformed parent id {0:?}")]
    MalformedParent(String),
    /// Parents are not strictly ascending (unsorted or repeated).
    #[error("parents are not sorted and unique")]
    UnsortedParents,
    /// More than [`MAX_PARENTS`] parents.
    #[error("too many parents: {0}")]
    TooManyParents(usize),
    /// The batch is invalid (bad receipt, duplicate, too large, malformed root).
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
    /// The batch root does not match the receipts.
    #[error("batch root does not match the receipts")]
    RootMismatch,
    /// Failed to sign a new block.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A block whose contents passed [`validate_block`].
#[derive(Debug, Clone)]
pub struct ValidBlock {
    /// The block as received.
    pub block: Block,
    /// Its id.
    pub id: String,
    /// Its decoded body.
    pub body: BlockBody,
    /// The decoded receipt bodies, in leaf order.
    pub receipts: Vec<ReceiptBody>,
}

/// Checks everything about a block that does not depend on other blocks: the signature, the
/// author, the parent list's form, every receipt and the batch root.
pub fn validate_block(block: &Block) -> Result<ValidBlock, BlockError> {
    let body = block.verify()?;
    if body.author != peer_id_from_pubkey(&block.pubkey) {
        return Err(BlockError::AuthorMismatch);
    }
    if body.parents.len() > MAX_PARENTS {
        return Err(BlockError::TooManyParents(body.parents.len()));
    }
    for p in &body.parents {
        if codec::hex_array::<32>(p).is_none() || p.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(BlockError::MalformedParent(p.clone()));
        }
    }
    if body.parents.windows(2).any(|w| w[0] >= w[1]) {
        return Err(BlockError::UnsortedParents);
    }
    let root = codec::hex_array::<32>(&body.batch.root).ok_or(BatchError::MalformedRoot)?;
    let receipts = verify_receipts(&body.batch.receipts)?;
    if receipts_root(&body.batch.receipts) != root {
        return Err(BlockError::RootMismatch);
    }
    Ok(ValidBlock {
        id: block.id(),
        block: block.clone(),
        body,
        receipts,
    })
}

/// Signs a new block over `receipts` with the given parents (sorted and deduplicated here).
pub fn new_block(
    key: &SigningKey,
    mut parents: Vec<String>,
    receipts: Vec<SignedReceipt>,
    timestamp_ms: u64,
) -> Result<Block, BlockError> {
    parents.sort();
    parents.dedup();
    if parents.len() > MAX_PARENTS {
        return Err(BlockError::TooManyParents(parents.len()));
    }
    verify_receipts(&receipts)?;
    let body = BlockBody {
        parents,
        batch: BlockBatch {
            root: hex::encode(receipts_root(&receipts)),
            receipts,
        },
        author: peer_id_from_pubkey(key.verifying_key().as_bytes()),
        timestamp_ms,
    };
    Ok(Signed::sign(key, &body)?)
}
