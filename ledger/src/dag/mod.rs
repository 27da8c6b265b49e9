//! The ledger block DAG.
//!
//! Each block commits to a receipt batch and names the DAG tips its author knew as parents.
//! Merging two DAGs is the union of their valid blocks, so every node that has seen the same
//! blocks has the same DAG and the same tips, whatever order the blocks arrived in.
//!
//! Blocks whose parents are not all known yet wait in a bounded orphan pool and are inserted
//! as soon as their last missing parent arrives. [`Dag::missing_ancestors`] lists the parent
//! ids the node should fetch.

mod block;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use block::{
    new_block, validate_block, Block, BlockBatch, BlockBody, BlockError, ValidBlock, MAX_PARENTS,
};
use ed25519_dalek::SigningKey;

use crate::{
    batch::ReceiptBatch,
    merkle::{self, Hash, Proof},
    receipt::SignedReceipt,
};

/// Default bound on the orphan pool.
pub const DEFAULT_MAX_ORPHANS: usize = 1024;

/// What [`Dag::insert`] did with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The block joined the DAG. Lists the ids of every block that joined in this call, in
    /// insertion (topological) order: the block itself first, then any orphans it completed.
    Inserted(Vec<String>),
    /// The block was already in the DAG.
    Duplicate,
    /// Some parents are unknown; the block waits in the orphan pool. Lists the unknown parent
    /// ids, sorted.
    MissingParents(Vec<String>),
}

/// In-memory block DAG with an orphan pool and receipt and batch indexes.
#[derive(Debug)]
pub struct Dag {
    blocks: BTreeMap<String, ValidBlock>,
    /// Block ids in insertion order; parents always precede children.
    order: Vec<String>,
    tips: BTreeSet<String>,
    orphans: BTreeMap<String, ValidBlock>,
    /// Orphan ids oldest first, for eviction.
    orphan_order: VecDeque<String>,
    /// Missing parent id → orphans waiting for it.
    waiting: BTreeMap<String, BTreeSet<String>>,
    max_orphans: usize,
    /// Batch root → blocks committing to it.
    batches: BTreeMap<String, BTreeSet<String>>,
    /// Receipt hash → (block id, leaf index); several blocks may hold one receipt.
    receipts: BTreeMap<Hash, BTreeSet<(String, usize)>>,
}

impl Default for Dag {
    fn default() -> Self {
        Self::new()
    }
}

impl Dag {
    /// An empty DAG with the default orphan bound.
    pub fn new() -> Self {
        Self::with_max_orphans(DEFAULT_MAX_ORPHANS)
    }

    /// An empty DAG holding at most `max_orphans` blocks in the orphan pool (oldest evicted
    /// first).
    pub fn with_max_orphans(max_orphans: usize) -> Self {
        Self {
            blocks: BTreeMap::new(),
            order: Vec::new(),
            tips: BTreeSet::new(),
            orphans: BTreeMap::new(),
            orphan_order: VecDeque::new(),
            waiting: BTreeMap::new(),
            max_orphans,
            batches: BTreeMap::new(),
            receipts: BTreeMap::new(),
        }
    }

    /// Validates `block` and adds it, or parks it in the orphan pool until its parents arrive.
    pub fn insert(&mut self, block: Block) -> Result<InsertOutcome, BlockError> {
        let id = block.id();
        if self.blocks.contains_key(&id) {
            return Ok(InsertOutcome::Duplicate);
        }
        if let Some(orphan) = self.orphans.get(&id) {
            return Ok(InsertOutcome::MissingParents(self.unknown_parents(orphan)));
        }
        let valid = validate_block(&block)?;
        let missing = self.unknown_parents(&valid);
        if !missing.is_empty() {
            self.park(valid, &missing);
            return Ok(InsertOutcome::MissingParents(missing));
        }
        Ok(InsertOutcome::Inserted(self.connect(valid)))
    }

    /// Parents of `b` not in the DAG.
    fn unknown_parents(&self, b: &ValidBlock) -> Vec<String> {
        b.body
            .parents
            .iter()
            .filter(|p| !self.blocks.contains_key(*p))
            .cloned()
            .collect()
    }

    fn park(&mut self, valid: ValidBlock, missing: &[String]) {
        if self.max_orphans == 0 {
            return;
        }
        while self.orphans.len() >= self.max_orphans {
            match self.orphan_order.pop_front() {
                Some(old) => self.drop_orphan(&old),
                None => break,
            }
        }
        for p in missing {
            self.waiting
                .entry(p.clone())
                .or_default()
                .insert(valid.id.clone());
        }
        self.orphan_order.push_back(valid.id.clone());
        self.orphans.insert(valid.id.clone(), valid);
    }

    fn drop_orphan(&mut self, id: &str) {
        if let Some(o) = self.orphans.remove(id) {
            for p in &o.body.parents {
                if let Some(set) = self.waiting.get_mut(p) {
                    set.remove(id);
                    if set.is_empty() {
                        self.waiting.remove(p);
                    }
                }
            }
        }
        self.orphan_order.retain(|x| x != id);
    }

    /// Adds a block whose parents are all present, then every orphan this completes.
    fn connect(&mut self, first: ValidBlock) -> Vec<String> {
        let mut added = Vec::new();
        let mut queue = VecDeque::from([first]);
        while let Some(b) = queue.pop_front() {
            let id = b.id.clone();
            self.add(b);
            added.push(id.clone());
            let Some(children) = self.waiting.remove(&id) else {
                continue;
            };
            for child in children {
                let ready = self
                    .orphans
                    .get(&child)
                    .is_some_and(|o| self.unknown_parents(o).is_empty());
                if ready {
                    if let Some(o) = self.orphans.remove(&child) {
                        self.orphan_order.retain(|x| x != &child);
                        queue.push_back(o);
                    }
                }
            }
        }
        added
    }

    fn add(&mut self, b: ValidBlock) {
        // A block's children can only be added after it, so a new block is always a tip.
        for p in &b.body.parents {
            self.tips.remove(p);
        }
        self.tips.insert(b.id.clone());
        self.batches
            .entry(b.body.batch.root.clone())
            .or_default()
            .insert(b.id.clone());
        for (i, r) in b.body.batch.receipts.iter().enumerate() {
            self.receipts
                .entry(r.hash())
                .or_default()
                .insert((b.id.clone(), i));
        }
        self.order.push(b.id.clone());
        self.blocks.insert(b.id.clone(), b);
    }

    /// Current tips (blocks with no children), sorted.
    pub fn tips(&self) -> Vec<String> {
        self.tips.iter().cloned().collect()
    }

    /// The block with id `id`, if in the DAG (orphans excluded).
    pub fn get(&self, id: &str) -> Option<&Block> {
        self.blocks.get(id).map(|b| &b.block)
    }

    /// The validated block with id `id` (decoded body and receipts).
    pub fn get_valid(&self, id: &str) -> Option<&ValidBlock> {
        self.blocks.get(id)
    }

    /// Whether `id` is in the DAG (orphans excluded).
    pub fn contains(&self, id: &str) -> bool {
        self.blocks.contains_key(id)
    }

    /// Number of blocks in the DAG (orphans excluded).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether the DAG has no blocks.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Number of blocks waiting in the orphan pool.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }

    /// Block ids in insertion order, parents before children: re-inserting the blocks in this
    /// order rebuilds the DAG without orphans (e.g. when loading from storage).
    pub fn ids_in_order(&self) -> &[String] {
        &self.order
    }

    /// Parent ids referenced by orphans that are neither in the DAG nor in the orphan pool:
    /// the blocks to fetch from peers. Sorted.
    pub fn missing_ancestors(&self) -> Vec<String> {
        self.waiting
            .keys()
            .filter(|id| !self.orphans.contains_key(*id) && !self.blocks.contains_key(*id))
            .cloned()
            .collect()
    }

    /// Whether some block in the DAG commits to the batch with this root (lowercase hex).
    pub fn contains_batch(&self, root: &str) -> bool {
        self.batches.contains_key(root)
    }

    /// The batch with this root, rebuilt with proofs from the block with the smallest id that
    /// commits to it, stamped with that block's timestamp.
    pub fn batch(&self, root: &str) -> Option<ReceiptBatch> {
        let id = self.batches.get(root)?.iter().next()?;
        let b = self.blocks.get(id)?;
        Some(b.body.batch.to_receipt_batch(b.body.timestamp_ms))
    }

    /// Finds a receipt by hash ([`crate::Signed::hash`]): the id of the block holding it (the
    /// smallest id when several do) and its inclusion proof under that block's batch root.
    pub fn find_receipt(&self, receipt_hash: &Hash) -> Option<(String, Proof)> {
        let (id, index) = self.receipts.get(receipt_hash)?.iter().next()?;
        let b = self.blocks.get(id)?;
        let leaves: Vec<Hash> = b
            .body
            .batch
            .receipts
            .iter()
            .map(|r| merkle::leaf_hash(&r.bytes))
            .collect();
        Some((id.clone(), merkle::proof_from_hashes(leaves, *index)?))
    }

    /// Signs a new block over `receipts` whose parents are the current tips (the first
    /// [`MAX_PARENTS`] of them). The caller then [`Dag::insert`]s and gossips it.
    pub fn build_block(
        &self,
        key: &SigningKey,
        receipts: Vec<SignedReceipt>,
        timestamp_ms: u64,
    ) -> Result<Block, BlockError> {
        let parents = self.tips.iter().take(MAX_PARENTS).cloned().collect();
        new_block(key, parents, receipts, timestamp_ms)
    }
}
