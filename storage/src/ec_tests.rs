use rand::{Rng, RngExt};

use super::*;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Every subset of `0..n` with exactly `size` members, as index lists.
fn combinations(n: usize, size: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    fn walk(start: usize, n: usize, size: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == size {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            walk(i + 1, n, size, cur, out);
            cur.pop();
        }
    }
    walk(0, n, size, &mut current, &mut out);
    out
}

fn drop_and_rebuild(codec: &Codec, shards: &[Vec<u8>], lost: &[usize], len: usize) -> Vec<u8> {
    let slots = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (!lost.contains(&i)).then(|| s.clone()))
        .collect();
    codec
        .reconstruct(slots, len)
        .unwrap_or_else(|e| panic!("lost {lost:?}: {e}"))
}

#[test]
fn encode_gives_n_equal_padded_shards() {
    let codec = Codec::new(Scheme::ReedSolomon { k: 4, n: 6 }, 100).unwrap();
    assert_eq!(codec.segment_capacity(), 400);
    assert_eq!(codec.segment_plain_len(), 360);
    let segment = random_bytes(250);
    let shards = codec.encode(&segment).unwrap();
    assert_eq!(shards.len(), 6);
    assert!(shards.iter().all(|s| s.len() == 100));
    assert_eq!(&shards[0][..], &segment[..100]);
    assert_eq!(&shards[2][..50], &segment[200..]);
    assert!(shards[2][50..].iter().all(|&b| b == 0));
    assert!(shards[3].iter().all(|&b| b == 0), "fully padded data shard");
    assert!(shards[4].iter().any(|&b| b != 0), "parity carries data");
    assert_eq!(
        codec.encode(&random_bytes(401)),
        Err(EncodeError::TooLarge {
            len: 401,
            capacity: 400
        })
    );
}

#[test]
fn segment_plain_len_is_the_largest_that_fits() {
    for (scheme, size) in [
        (Scheme::ReedSolomon { k: 12, n: 20 }, 65_536u32),
        (Scheme::ReedSolomon { k: 3, n: 5 }, 17),
        (Scheme::Replicate { r: 5 }, 4096),
    ] {
        let codec = Codec::new(scheme, size).unwrap();
        let fits = crate::crypto::cipher_len(codec.segment_plain_len());
        assert!(codec.encode(&vec![1u8; fits]).is_ok());
        assert!(codec.encode(&vec![1u8; fits + 1]).is_err());
    }
}

#[test]
fn any_n_minus_k_losses_are_survived_small_schemes() {
    for (k, n) in [(1u16, 2u16), (2, 4), (3, 5), (4, 6), (4, 8), (5, 7)] {
        let codec = Codec::new(Scheme::ReedSolomon { k, n }, 64).unwrap();
        let len = codec.segment_capacity() - 13;
        let segment = random_bytes(len);
        let shards = codec.encode(&segment).unwrap();
        let (k, n) = (usize::from(k), usize::from(n));
        for lost_count in 0..=(n - k) {
            for lost in combinations(n, lost_count) {
                assert_eq!(drop_and_rebuild(&codec, &shards, &lost, len), segment);
            }
        }
        // One more loss than the parity count is fatal, with a clear count.
        let lost: Vec<usize> = (0..=n - k).collect();
        let slots = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (!lost.contains(&i)).then(|| s.clone()))
            .collect();
        let err = codec.reconstruct(slots, len).unwrap_err();
        assert_eq!(
            err,
            ReconstructError::NotEnoughShards {
                present: k - 1,
                needed: k,
                total: n
            }
        );
        assert!(err.to_string().contains(&format!("only {} of {n}", k - 1)));
    }
}

#[test]
fn random_eight_losses_of_twenty_are_survived() {
    let codec = Codec::new(Scheme::ReedSolomon { k: 12, n: 20 }, 1024).unwrap();
    let len = codec.segment_capacity() - 5;
    let segment = random_bytes(len);
    let shards = codec.encode(&segment).unwrap();
    let mut rng = rand::rng();
    for _ in 0..200 {
        let mut order: Vec<usize> = (0..20).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let lost = &order[..rng.random_range(1..=8)];
        assert_eq!(drop_and_rebuild(&codec, &shards, lost, len), segment);
    }
    // The worst case: every parity shard kept, 8 data shards lost.
    let lost: Vec<usize> = (0..8).collect();
    assert_eq!(drop_and_rebuild(&codec, &shards, &lost, len), segment);
}

#[test]
fn reconstruct_rejects_bad_shapes() {
    let codec = Codec::new(Scheme::ReedSolomon { k: 2, n: 3 }, 64).unwrap();
    let shards = codec.encode(&random_bytes(100)).unwrap();
    assert_eq!(
        codec.reconstruct(vec![None, None], 100),
        Err(ReconstructError::WrongShardCount {
            got: 2,
            expected: 3
        })
    );
    let mut slots: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
    slots[1] = Some(vec![0u8; 10]);
    assert!(matches!(
        codec.reconstruct(slots, 100),
        Err(ReconstructError::ShardSize { index: 1, .. })
    ));
    let slots = shards.into_iter().map(Some).collect();
    assert!(matches!(
        codec.reconstruct(slots, 129),
        Err(ReconstructError::OriginalLenTooLarge { .. })
    ));
}

#[test]
fn replication_copies_and_survives_r_minus_one_losses() {
    let codec = Codec::new(Scheme::Replicate { r: 5 }, 4096).unwrap();
    let segment = random_bytes(1000);
    let shards = codec.encode(&segment).unwrap();
    assert_eq!(shards.len(), 5);
    assert!(shards.iter().all(|s| *s == segment));
    for keep in 0..5 {
        let slots = (0..5)
            .map(|i| (i == keep).then(|| segment.clone()))
            .collect();
        assert_eq!(codec.reconstruct(slots, 1000).unwrap(), segment);
    }
    assert_eq!(
        codec.reconstruct(vec![None; 5], 1000),
        Err(ReconstructError::NotEnoughShards {
            present: 0,
            needed: 1,
            total: 5
        })
    );
}

#[test]
fn invalid_schemes_and_sizes_are_refused() {
    for scheme in [
        Scheme::ReedSolomon { k: 0, n: 4 },
        Scheme::ReedSolomon { k: 4, n: 4 },
        Scheme::ReedSolomon { k: 4, n: 257 },
        Scheme::Replicate { r: 0 },
    ] {
        assert!(matches!(
            Codec::new(scheme, 4096),
            Err(CodecError::Scheme(_))
        ));
    }
    assert!(matches!(
        Codec::new(Scheme::ReedSolomon { k: 2, n: 4 }, 20),
        Err(CodecError::BadShardSize { capacity: 40, .. })
    ));
    assert!(matches!(
        Codec::new(Scheme::ReedSolomon { k: 200, n: 256 }, 16 << 20),
        Err(CodecError::BadShardSize { .. })
    ));
}

#[test]
fn scheme_serde_is_tagged() {
    let json = serde_json::to_string(&Scheme::ReedSolomon { k: 12, n: 20 }).unwrap();
    assert_eq!(json, r#"{"mode":"reed_solomon","k":12,"n":20}"#);
    let back: Scheme = serde_json::from_str(r#"{"mode":"replicate","r":5}"#).unwrap();
    assert_eq!(back, Scheme::Replicate { r: 5 });
}

#[test]
fn adapt_follows_the_documented_policy() {
    assert_eq!(adapt(12, 20, 25), Ok((12, 20)));
    assert_eq!(adapt(12, 20, 20), Ok((12, 20)));
    assert_eq!(adapt(12, 20, 15), Ok((9, 15)));
    assert_eq!(adapt(12, 20, 10), Ok((6, 10)));
    assert_eq!(adapt(12, 20, 6), Ok((2, 6)));
    assert_eq!(adapt(12, 20, 3), Ok((1, 3)));
    assert_eq!(adapt(12, 20, 2), Ok((1, 2)));
    assert_eq!(adapt(12, 20, 1), Err(AdaptError::TooFewHosts { hosts: 1 }));
    assert_eq!(adapt(12, 20, 0), Err(AdaptError::TooFewHosts { hosts: 0 }));
    // Parity is raised to the original scheme's 2, not to 4.
    assert_eq!(adapt(10, 12, 6), Ok((4, 6)));
    assert_eq!(adapt(10, 11, 6), Ok((5, 6)));
    assert!(matches!(adapt(5, 5, 10), Err(AdaptError::Scheme(_))));
    // Invariants over a sweep: valid, no more hosts than given, expansion kept.
    for (k, n) in [(12u16, 20u16), (4, 6), (1, 3), (10, 16), (200, 250)] {
        for hosts in 2..usize::from(n) {
            let (k2, n2) = adapt(k, n, hosts).unwrap();
            assert!(
                k2 >= 1 && n2 > k2 && usize::from(n2) == hosts,
                "{k}/{n} @ {hosts}"
            );
            // Expansion is kept, except where k' had to be raised to its floor of 1.
            assert!(k2 == 1 || u32::from(n2) * u32::from(k) >= u32::from(n) * u32::from(k2));
            let parity = n2 - k2;
            assert!(
                parity >= 4.min(n - k).min(n2 - 1),
                "{k}/{n} @ {hosts}: {k2}/{n2}"
            );
        }
    }
    assert_eq!(
        Scheme::Replicate { r: 5 }.adapt(3),
        Ok(Scheme::Replicate { r: 3 })
    );
    assert_eq!(
        Scheme::Replicate { r: 5 }.adapt(9),
        Ok(Scheme::Replicate { r: 5 })
    );
}

#[test]
fn shards_larger_than_a_column_chunk_round_trip() {
    // 40 000 is not a multiple of the 16 KiB column chunk: the last chunk is partial.
    let codec = Codec::new(Scheme::ReedSolomon { k: 5, n: 9 }, 40_000).unwrap();
    let len = codec.segment_capacity() - 77;
    let segment = random_bytes(len);
    let shards = codec.encode(&segment).unwrap();
    // Parity equals what one whole-shard encode gives.
    let rs = ReedSolomon::new(5, 4).unwrap();
    let mut whole: Vec<Vec<u8>> = shards.clone();
    for parity in &mut whole[5..] {
        parity.fill(0);
    }
    rs.encode(&mut whole).unwrap();
    assert_eq!(whole, shards);
    for lost in [vec![0, 1, 2, 3], vec![1, 3, 6, 8], vec![4, 5, 6, 7]] {
        assert_eq!(drop_and_rebuild(&codec, &shards, &lost, len), segment);
    }
}
