use ed25519_dalek::SigningKey;
use proptest::prelude::*;

use super::*;
use crate::{merkle, receipt::tests::receipt, signed::Signed};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn block(seed: u8, parents: &[&str], receipts: Vec<SignedReceipt>, ts: u64) -> Block {
    new_block(
        &key(seed),
        parents.iter().map(|s| s.to_string()).collect(),
        receipts,
        ts,
    )
    .unwrap()
}

fn inserted(outcome: InsertOutcome) -> Vec<String> {
    match outcome {
        InsertOutcome::Inserted(ids) => ids,
        other => panic!("expected Inserted, got {other:?}"),
    }
}

#[test]
fn chain_tips_and_lookups() {
    let mut dag = Dag::new();
    let r1 = receipt(9, "job-1", 1_000_000, 30_000);
    let r2 = receipt(8, "job-2", 500_000, 30_000);
    let g = block(1, &[], vec![r1.clone(), r2.clone()], 1);
    let gid = g.id();
    assert_eq!(inserted(dag.insert(g.clone()).unwrap()), vec![gid.clone()]);
    assert_eq!(dag.insert(g.clone()).unwrap(), InsertOutcome::Duplicate);
    assert_eq!(dag.tips(), vec![gid.clone()]);

    let a = dag.build_block(&key(2), vec![], 2).unwrap();
    let b = dag.build_block(&key(3), vec![], 3).unwrap();
    dag.insert(a.clone()).unwrap();
    dag.insert(b.clone()).unwrap();
    let mut fork = vec![a.id(), b.id()];
    fork.sort();
    assert_eq!(dag.tips(), fork);

    let m = dag.build_block(&key(1), vec![], 4).unwrap();
    assert_eq!(m.verify().unwrap().parents, fork);
    dag.insert(m.clone()).unwrap();
    assert_eq!(dag.tips(), vec![m.id()]);
    assert_eq!(dag.len(), 4);
    assert_eq!(dag.get(&gid), Some(&g));
    assert_eq!(dag.ids_in_order().first(), Some(&gid));

    let root = g.verify().unwrap().batch.root;
    assert!(dag.contains_batch(&root));
    assert!(!dag.contains_batch(&hex::encode([1u8; 32])));
    let batch = dag.batch(&root).unwrap();
    assert_eq!(batch.root, root);
    batch.verify().unwrap();

    let (bid, proof) = dag.find_receipt(&r2.hash()).unwrap();
    assert_eq!(bid, gid);
    assert_eq!(proof.index, 1);
    let root_bytes: [u8; 32] = hex::decode(&root).unwrap().try_into().unwrap();
    assert!(merkle::verify(&r2.bytes, &proof, &root_bytes));
    assert!(dag.find_receipt(&[0u8; 32]).is_none());
}

#[test]
fn orphans_wait_for_their_parents() {
    let mut dag = Dag::new();
    let g = block(1, &[], vec![], 1);
    let a = block(2, &[&g.id()], vec![], 2);
    let b = block(3, &[&a.id()], vec![], 3);

    assert_eq!(
        dag.insert(b.clone()).unwrap(),
        InsertOutcome::MissingParents(vec![a.id()])
    );
    assert_eq!(
        dag.insert(b.clone()).unwrap(),
        InsertOutcome::MissingParents(vec![a.id()])
    );
    assert_eq!(dag.missing_ancestors(), vec![a.id()]);
    assert_eq!(
        dag.insert(a.clone()).unwrap(),
        InsertOutcome::MissingParents(vec![g.id()])
    );
    // `a` is pooled, so only `g` is still to fetch.
    assert_eq!(dag.missing_ancestors(), vec![g.id()]);
    assert_eq!(dag.len(), 0);
    assert_eq!(dag.orphan_count(), 2);

    assert_eq!(
        inserted(dag.insert(g.clone()).unwrap()),
        vec![g.id(), a.id(), b.id()]
    );
    assert_eq!(dag.tips(), vec![b.id()]);
    assert_eq!(dag.orphan_count(), 0);
    assert!(dag.missing_ancestors().is_empty());
}

#[test]
fn orphan_with_two_missing_parents_waits_for_both() {
    let mut dag = Dag::new();
    let p1 = block(1, &[], vec![], 1);
    let p2 = block(2, &[], vec![], 2);
    let c = block(3, &[&p1.id(), &p2.id()], vec![], 3);
    assert!(
        matches!(dag.insert(c.clone()).unwrap(), InsertOutcome::MissingParents(m) if m.len() == 2)
    );
    assert_eq!(inserted(dag.insert(p2.clone()).unwrap()), vec![p2.id()]);
    assert_eq!(dag.missing_ancestors(), vec![p1.id()]);
    assert_eq!(
        inserted(dag.insert(p1.clone()).unwrap()),
        vec![p1.id(), c.id()]
    );
    assert_eq!(dag.tips(), vec![c.id()]);
}

#[test]
fn orphan_pool_is_bounded() {
    let mut dag = Dag::with_max_orphans(2);
    let parents: Vec<Block> = (1..=3)
        .map(|i| block(i, &[], vec![], u64::from(i)))
        .collect();
    let children: Vec<Block> = parents
        .iter()
        .map(|p| block(9, &[&p.id()], vec![], 10))
        .collect();
    for c in &children {
        dag.insert(c.clone()).unwrap();
    }
    assert_eq!(dag.orphan_count(), 2);
    // The oldest orphan was evicted: its parent arrives alone.
    assert_eq!(
        inserted(dag.insert(parents[0].clone()).unwrap()),
        vec![parents[0].id()]
    );
    assert_eq!(
        inserted(dag.insert(parents[2].clone()).unwrap()),
        vec![parents[2].id(), children[2].id()]
    );
    assert_eq!(dag.orphan_count(), 1);
}

#[test]
fn invalid_blocks_are_rejected() {
    let mut dag = Dag::new();
    let k = key(1);
    let author = crate::peer_id::peer_id_from_pubkey(k.verifying_key().as_bytes());
    let good = BlockBody {
        parents: vec![],
        batch: BlockBatch {
            root: hex::encode(merkle::empty_root()),
            receipts: vec![],
        },
        author: author.clone(),
        timestamp_ms: 1,
    };

    let mut b = good.clone();
    b.author = "12D3KooWsomeoneelse".into();
    let blk = Signed::sign(&k, &b).unwrap();
    assert!(matches!(dag.insert(blk), Err(BlockError::AuthorMismatch)));

    let mut b = good.clone();
    b.parents = vec![hex::encode([2u8; 32]), hex::encode([1u8; 32])];
    let blk = Signed::sign(&k, &b).unwrap();
    assert!(matches!(dag.insert(blk), Err(BlockError::UnsortedParents)));

    let mut b = good.clone();
    b.parents = vec![hex::encode([1u8; 32]), hex::encode([1u8; 32])];
    let blk = Signed::sign(&k, &b).unwrap();
    assert!(matches!(dag.insert(blk), Err(BlockError::UnsortedParents)));

    let mut b = good.clone();
    b.parents = vec!["abc".into()];
    let blk = Signed::sign(&k, &b).unwrap();
    assert!(matches!(
        dag.insert(blk),
        Err(BlockError::MalformedParent(_))
    ));

    let mut b = good.clone();
    b.batch.receipts = vec![receipt(5, "j", 1, 1)];
    let blk = Signed::sign(&k, &b).unwrap();
    assert!(matches!(dag.insert(blk), Err(BlockError::RootMismatch)));

    let mut bad_receipt = receipt(5, "j", 1, 1);
    bad_receipt.sig[0] ^= 1;
    let mut b = good.clone();
    b.batch.receipts = vec![bad_receipt];
    b.batch.root = hex::encode(crate::batch::receipts_root(&b.batch.receipts));
    let blk = Signed::sign(&k, &b).unwrap();
    assert!(matches!(dag.insert(blk), Err(BlockError::Batch(_))));

    let mut blk = Signed::sign(&k, &good).unwrap();
    blk.sig[0] ^= 1;
    assert!(matches!(dag.insert(blk), Err(BlockError::Verify(_))));

    assert!(dag.is_empty());
    assert_eq!(dag.orphan_count(), 0);
    dag.insert(Signed::sign(&k, &good).unwrap()).unwrap();
    assert_eq!(dag.len(), 1);
}

/// A random DAG: block `i` names a random subset of blocks `0..i` as parents.
fn random_dag(shape: &[(u64, u8)]) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    for (i, (mask, author)) in shape.iter().enumerate() {
        let parents: Vec<String> = blocks
            .iter()
            .enumerate()
            .filter(|(j, _)| mask >> (j % 64) & 1 == 1)
            .map(|(_, b)| b.id())
            .collect();
        let receipts = if i % 4 == 0 {
            vec![receipt(*author, &format!("job-{i}"), 1_000, 1_000)]
        } else {
            vec![]
        };
        blocks.push(new_block(&key(*author), parents, receipts, i as u64).unwrap());
    }
    blocks
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn tips_converge_regardless_of_order(
        (shape, perm) in prop::collection::vec((any::<u64>(), 1u8..4), 1..14)
            .prop_flat_map(|shape| {
                let n = shape.len();
                (Just(shape), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
            })
    ) {
        let blocks = random_dag(&shape);
        let mut in_order = Dag::new();
        for b in &blocks {
            prop_assert!(matches!(in_order.insert(b.clone()).unwrap(), InsertOutcome::Inserted(_)));
        }
        let mut shuffled = Dag::new();
        for &i in &perm {
            shuffled.insert(blocks[i].clone()).unwrap();
        }
        prop_assert_eq!(shuffled.len(), blocks.len());
        prop_assert_eq!(shuffled.orphan_count(), 0);
        prop_assert_eq!(shuffled.tips(), in_order.tips());
        // The recorded order is topological: replaying it never creates orphans.
        let mut replay = Dag::new();
        for id in shuffled.ids_in_order() {
            let b = shuffled.get(id).unwrap().clone();
            prop_assert!(matches!(replay.insert(b).unwrap(), InsertOutcome::Inserted(v) if v.len() == 1));
        }
        // Merge = union: inserting one DAG's blocks into a DAG holding a subset gives the same tips.
        let mut partial = Dag::new();
        for &i in perm.iter().take(perm.len() / 2) {
            partial.insert(blocks[i].clone()).unwrap();
        }
        for id in in_order.ids_in_order() {
            partial.insert(in_order.get(id).unwrap().clone()).unwrap();
        }
        prop_assert_eq!(partial.tips(), in_order.tips());
    }
}
