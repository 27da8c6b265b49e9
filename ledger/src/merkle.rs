//! BLAKE3 Merkle trees over receipt batches and witness attestation batches.
//!
//! These rules are a public contract: any implementation that follows them computes the same
//! roots and accepts the same proofs.
//!
//! - **Leaf hash**: `blake3(0x00 || data)`.
//! - **Node hash**: `blake3(0x01 || left || right)`.
//!   The distinct prefixes keep a leaf from ever being read as an inner node (second-preimage
//!   resistance).
//! - **Levels**: hash the leaves in order; then repeatedly pair neighbours left to right. When
//!   a level has an odd number of nodes, the last one is **promoted unchanged** to the next
//!   level. It is never paired with a copy of itself, so two different leaf lists can never
//!   share a root the way Bitcoin's duplicate-last-node rule allowed (CVE-2012-2459).
//! - **Root**: the single node left. A one-leaf tree's root is that leaf's hash.
//! - **Empty tree**: the root is `blake3(b"")` (no prefix), which no leaf or node hash can
//!   equal without a BLAKE3 preimage.
//! - **Proof**: the sibling hashes from the leaf up to the root, each tagged with the side the
//!   sibling sits on. A level where the path node was promoted contributes no sibling.
//!   Verification folds the siblings into the leaf hash in order and compares with the root.

use serde::{Deserialize, Serialize};

use crate::codec;

/// A 32-byte BLAKE3 digest.
pub type Hash = [u8; 32];

/// Which side of the path node a proof sibling sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The sibling is the left input: `node(sibling, path)`.
    Left,
    /// The sibling is the right input: `node(path, sibling)`.
    Right,
}

/// One step of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sibling {
    /// Where the sibling sits.
    pub side: Side,
    /// The sibling's hash (hex on the wire).
    #[serde(with = "codec::hex_bytes")]
    pub hash: Hash,
}

/// Inclusion proof of one leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// Position of the leaf in the tree (informational; the siblings carry the path).
    pub index: u64,
    /// Sibling hashes from the leaf level upwards.
    pub siblings: Vec<Sibling>,
}

/// Hash of a leaf's data: `blake3(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x00]);
    h.update(data);
    *h.finalize().as_bytes()
}

/// Hash of an inner node: `blake3(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(&[0x01]);
    h.update(left);
    h.update(right);
    *h.finalize().as_bytes()
}

/// Root of the empty tree: `blake3(b"")`.
pub fn empty_root() -> Hash {
    *blake3::hash(b"").as_bytes()
}

/// Next level up: pairs neighbours and promotes an odd last node.
fn parent_level(level: &[Hash]) -> Vec<Hash> {
    let mut out = Vec::with_capacity(level.len().div_ceil(2));
    for pair in level.chunks(2) {
        out.push(match pair {
            [l, r] => node_hash(l, r),
            // `chunks(2)` yields one element only for the odd last node.
            _ => pair[0],
        });
    }
    out
}

/// Root of the tree whose leaves are `leaves`, in order.
pub fn root<L: AsRef<[u8]>>(leaves: &[L]) -> Hash {
    let level: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    root_from_hashes(level)
}

/// Root of a tree given its leaf hashes (already `leaf_hash`ed).
pub fn root_from_hashes(mut level: Vec<Hash>) -> Hash {
    if level.is_empty() {
        return empty_root();
    }
    while level.len() > 1 {
        level = parent_level(&level);
    }
    level[0]
}

/// Inclusion proof of `leaves[index]`, or `None` if `index` is out of range.
pub fn proof<L: AsRef<[u8]>>(leaves: &[L], index: usize) -> Option<Proof> {
    let level: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    proof_from_hashes(level, index)
}

/// Inclusion proof of leaf `index` given the leaf hashes.
pub fn proof_from_hashes(mut level: Vec<Hash>, index: usize) -> Option<Proof> {
    if index >= level.len() {
        return None;
    }
    let mut siblings = Vec::new();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if let Some(hash) = level.get(sibling) {
            let side = if sibling < i { Side::Left } else { Side::Right };
            siblings.push(Sibling { side, hash: *hash });
        }
        level = parent_level(&level);
        i /= 2;
    }
    Some(Proof {
        index: index as u64,
        siblings,
    })
}

/// Root implied by a leaf's data and its proof.
pub fn fold(leaf_data: &[u8], proof: &Proof) -> Hash {
    fold_path(leaf_data, &proof.siblings)
}

/// Root implied by a leaf's data and the sibling path from the leaf up (see [`fold`]).
pub fn fold_path(leaf_data: &[u8], siblings: &[Sibling]) -> Hash {
    siblings
        .iter()
        .fold(leaf_hash(leaf_data), |acc, s| match s.side {
            Side::Left => node_hash(&s.hash, &acc),
            Side::Right => node_hash(&acc, &s.hash),
        })
}

/// The root and the sibling path of every leaf, given the leaf hashes: what
/// [`proof_from_hashes`] gives for each leaf, in `O(n log n)` instead of `O(n²)`.
pub fn all_paths(leaf_hashes: Vec<Hash>) -> (Hash, Vec<Vec<Sibling>>) {
    if leaf_hashes.is_empty() {
        return (empty_root(), Vec::new());
    }
    let n = leaf_hashes.len();
    let mut levels = vec![leaf_hashes];
    while let Some(last) = levels.last().filter(|l| l.len() > 1) {
        let up = parent_level(last);
        levels.push(up);
    }
    let root = levels[levels.len() - 1][0];
    let paths = (0..n)
        .map(|index| {
            let mut path = Vec::new();
            let mut i = index;
            for level in &levels[..levels.len() - 1] {
                let sibling = i ^ 1;
                if let Some(hash) = level.get(sibling) {
                    let side = if sibling < i { Side::Left } else { Side::Right };
                    path.push(Sibling { side, hash: *hash });
                }
                i /= 2;
            }
            path
        })
        .collect();
    (root, paths)
}

/// Whether `proof` shows that `leaf_data` is a leaf of the tree with root `root`.
pub fn verify(leaf_data: &[u8], proof: &Proof, root: &Hash) -> bool {
    fold(leaf_data, proof) == *root
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn small_trees_follow_the_rules() {
        let e: [&[u8]; 0] = [];
        assert_eq!(root(&e), *blake3::hash(b"").as_bytes());
        assert_eq!(root(&[b"a"]), leaf_hash(b"a"));
        let (a, b, c) = (leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c"));
        assert_eq!(root(&[b"a", b"b"]), node_hash(&a, &b));
        // Odd node promoted, not duplicated.
        let ab = node_hash(&a, &b);
        assert_eq!(root(&[b"a", b"b", b"c"]), node_hash(&ab, &c));
        assert_ne!(root(&[b"a", b"b", b"c"]), root(&[b"a", b"b", b"c", b"c"]));
        // Leaf and node hashes are domain-separated.
        let mut concat = Vec::from(a);
        concat.extend_from_slice(&b);
        assert_ne!(leaf_hash(&concat), node_hash(&a, &b));
        assert_ne!(root(&[concat.as_slice()]), root(&[b"a", b"b"]));
    }

    #[test]
    fn proof_of_promoted_leaf_skips_a_level() {
        let leaves = [b"a", b"b", b"c"];
        let p = proof(&leaves, 2).unwrap();
        assert_eq!(p.siblings.len(), 1);
        assert_eq!(p.siblings[0].side, Side::Left);
        assert!(verify(b"c", &p, &root(&leaves)));
        assert!(proof(&leaves, 3).is_none());
    }

    #[test]
    fn proof_wire_form() {
        let p = proof(&[b"a", b"b"], 0).unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["index"], 0);
        assert_eq!(json["siblings"][0]["side"], "right");
        assert_eq!(json["siblings"][0]["hash"], hex::encode(leaf_hash(b"b")));
        let back: Proof = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn all_paths_match_single_proofs() {
        for n in 1..40usize {
            let leaves: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; i % 5 + 1]).collect();
            let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
            let (r, paths) = all_paths(hashes);
            assert_eq!(r, root(&leaves));
            assert_eq!(paths.len(), n);
            for (i, path) in paths.iter().enumerate() {
                assert_eq!(*path, proof(&leaves, i).unwrap().siblings, "n {n} leaf {i}");
                assert_eq!(fold_path(&leaves[i], path), r);
            }
        }
        assert_eq!(all_paths(Vec::new()), (empty_root(), Vec::new()));
    }

    proptest! {
        #[test]
        fn every_proof_verifies(leaves in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 1..40)) {
            let r = root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let p = proof(&leaves, i).unwrap();
                prop_assert!(verify(leaf, &p, &r));
            }
        }

        #[test]
        fn tampering_fails(
            // Distinct leaves: with two equal leaves, swapping sides cannot change a hash.
            leaves in prop::collection::btree_set(prop::collection::vec(any::<u8>(), 1..16), 2..40)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
            pick in any::<prop::sample::Index>(),
            byte in any::<prop::sample::Index>(),
            sib in any::<prop::sample::Index>(),
        ) {
            let r = root(&leaves);
            let i = pick.index(leaves.len());
            let p = proof(&leaves, i).unwrap();

            let mut leaf = leaves[i].clone();
            let b = byte.index(leaf.len());
            leaf[b] ^= 0x01;
            prop_assert!(!verify(&leaf, &p, &r));

            prop_assert!(!p.siblings.is_empty());
            let mut bad = p.clone();
            let s = sib.index(bad.siblings.len());
            bad.siblings[s].hash[0] ^= 0x80;
            prop_assert!(!verify(&leaves[i], &bad, &r));

            let mut flipped = p.clone();
            flipped.siblings[s].side = match flipped.siblings[s].side {
                Side::Left => Side::Right,
                Side::Right => Side::Left,
            };
            prop_assert!(!verify(&leaves[i], &flipped, &r));
        }
    }
}
