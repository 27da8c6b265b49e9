//! In-process end-to-end test of the storage pipeline: file → segments → sealed shards →
//! shard stores → loss and corruption → recovered file, plus a signed manifest and key sharing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{fs, io::Cursor};

use ed25519_dalek::SigningKey;
use offgrid_storage::{
    asset::RecoverError,
    crypto::{new_content_key, unwrap_key, wrap_key},
    keys::{x25519_public_from_ed25519_public, x25519_secret_from_ed25519_seed},
    manifest::{new_asset_id, MANIFEST_VERSION},
    prepare_segment, recover_segment, Codec, FileAssembler, Manifest, Scheme, SegmentEntry,
    SegmentReader, ShardCandidate, ShardEntry, ShardStore, SignedManifest,
};
use rand::{Rng, RngExt};

const MARKER: &[u8] = b"OFFGRID-PLAINTEXT-MARKER-7f3a";

fn random_file_with_markers(len: usize) -> Vec<u8> {
    let mut file = vec![0u8; len];
    rand::rng().fill_bytes(&mut file);
    for pos in (0..len - MARKER.len()).step_by(100_003) {
        file[pos..pos + MARKER.len()].copy_from_slice(MARKER);
    }
    file
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn three_mib_file_survives_eight_of_twenty_losses_and_corruption() {
    let owner = SigningKey::from_bytes(&[11u8; 32]);
    let owner_pub = owner.verifying_key().to_bytes();
    let asset_id = new_asset_id(&owner_pub, 1_767_000_000_000);
    let content_key = new_content_key();
    let codec = Codec::new(Scheme::ReedSolomon { k: 12, n: 20 }, 64 * 1024).unwrap();
    let file = random_file_with_markers(3 * 1024 * 1024);

    // Put: stream the file, store every shard on its "host" (one store per shard index).
    let hosts_dir = tempfile::tempdir().unwrap();
    let hosts: Vec<ShardStore> = (0..20)
        .map(|i| ShardStore::open(hosts_dir.path().join(format!("host{i}")), 64 << 20).unwrap())
        .collect();
    let mut reader = SegmentReader::new(Cursor::new(&file), codec.segment_plain_len());
    let mut segments = Vec::new();
    for item in reader.by_ref() {
        let (index, plain) = item.unwrap();
        let shards = prepare_segment(&codec, &content_key, &asset_id, index, &plain).unwrap();
        assert_eq!(shards.len(), 20);
        let mut entries = Vec::new();
        for shard in shards {
            assert!(
                !contains(&shard.bytes, MARKER),
                "plaintext leaked into a shard"
            );
            hosts[usize::from(shard.index)]
                .put(&shard.hash, &shard.bytes)
                .unwrap();
            entries.push(ShardEntry {
                index: shard.index,
                hash: shard.hash,
                host: format!("host{}", shard.index),
            });
        }
        segments.push(SegmentEntry {
            index,
            cipher_len: (plain.len() + 40) as u64,
            shards: entries,
        });
    }
    // Segments hold 12 x 64 KiB - 40 bytes, so 3 MiB spills 160 bytes into a fifth.
    assert_eq!(segments.len(), 5);
    let file_blake3 = reader.file_blake3().unwrap();

    // No host's data dir contains the marker.
    for entry in walk(hosts_dir.path()) {
        assert!(!contains(&fs::read(&entry).unwrap(), MARKER), "{entry:?}");
    }

    // The owner signs the manifest, wrapping the key for itself and for a friend.
    let friend_seed = [22u8; 32];
    let friend_pub = SigningKey::from_bytes(&friend_seed)
        .verifying_key()
        .to_bytes();
    let mut wrapped_keys = Vec::new();
    for ed in [owner_pub, friend_pub] {
        let x = x25519_public_from_ed25519_public(&ed).unwrap();
        wrapped_keys.push(wrap_key(&content_key, &x).unwrap());
    }
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        asset_id: hex::encode(asset_id),
        owner: "12D3KooWOwner".into(),
        owner_pubkey: hex::encode(owner_pub),
        name: Some("random.bin".into()),
        size: file.len() as u64,
        scheme: codec.scheme(),
        shard_size: 64 * 1024,
        segment_count: segments.len() as u64,
        segments,
        wrapped_keys,
        file_blake3: hex::encode(file_blake3),
        created_ms: 1_767_000_000_000,
        revision: 0,
        id_salt: None,
        expires_ms: None,
    };
    let signed = SignedManifest::sign(&owner, &manifest).unwrap();
    let wire = serde_json::to_string(&signed).unwrap();

    // Get, as the friend: verify, unwrap, kill 8 hosts per segment, corrupt one more shard.
    let received: SignedManifest = serde_json::from_str(&wire).unwrap();
    let manifest = received.verify().unwrap();
    let secret = x25519_secret_from_ed25519_seed(&friend_seed);
    let friend_x = x25519_public_from_ed25519_public(&friend_pub).unwrap();
    let key = unwrap_key(manifest.wrapped_key_for(&friend_x).unwrap(), &secret).unwrap();
    let codec = Codec::new(manifest.scheme, manifest.shard_size).unwrap();
    let asset = manifest.asset_id_bytes().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let dest = out_dir.path().join("restored.bin");
    let expected_hash: [u8; 32] = hex::decode(&manifest.file_blake3)
        .unwrap()
        .try_into()
        .unwrap();
    let mut assembler = FileAssembler::create(&dest, manifest.size, expected_hash).unwrap();
    let mut rng = rand::rng();
    for segment in &manifest.segments {
        let mut order: Vec<usize> = (0..20).collect();
        for i in (1..20).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let (dead, alive) = order.split_at(8);
        let fetch = |i: usize| {
            let entry = &segment.shards[i];
            ShardCandidate {
                index: entry.index,
                expected_hash: entry.hash.clone(),
                bytes: hosts[i].get(&entry.hash).unwrap(),
            }
        };
        // Exactly 12 survivors with one corrupted in transit: detected, too few left.
        let mut exact: Vec<ShardCandidate> = alive.iter().map(|&i| fetch(i)).collect();
        exact[0].bytes[100] ^= 0x01;
        let corrupt_index = exact[0].index;
        let err = recover_segment(
            &codec,
            &key,
            &asset,
            segment.index,
            segment.cipher_len,
            exact,
        )
        .unwrap_err();
        match &err {
            RecoverError::NotEnoughShards {
                valid,
                corrupt,
                needed,
                ..
            } => {
                assert_eq!(
                    (*valid, corrupt.as_slice(), *needed),
                    (11, &[corrupt_index][..], 12)
                );
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().contains("only 11 valid"));
        // With one of the dead hosts' shards fetched from elsewhere, the corrupt one is bypassed.
        let mut more: Vec<ShardCandidate> = alive.iter().map(|&i| fetch(i)).collect();
        more[0].bytes[100] ^= 0x01;
        more.push(fetch(dead[0]));
        let plain = recover_segment(
            &codec,
            &key,
            &asset,
            segment.index,
            segment.cipher_len,
            more,
        )
        .unwrap();
        assembler.write_segment(segment.index, &plain).unwrap();
    }
    assembler.finish().unwrap();
    assert_eq!(fs::read(&dest).unwrap(), file, "byte-identical");
}

#[test]
fn corrupt_shard_on_disk_is_quarantined_and_bypassed() {
    let asset = [5u8; 32];
    let key = new_content_key();
    let codec = Codec::new(Scheme::ReedSolomon { k: 4, n: 6 }, 4096).unwrap();
    let plain = random_file_with_markers(codec.segment_plain_len());
    let shards = prepare_segment(&codec, &key, &asset, 0, &plain).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path(), 1 << 20).unwrap();
    for shard in &shards {
        store.put(&shard.hash, &shard.bytes).unwrap();
    }
    // Bit rot on the host's disk.
    let victim = &shards[1].hash;
    let path = dir
        .path()
        .join("shards")
        .join(&victim[..2])
        .join(&victim[2..]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[7] ^= 0x10;
    fs::write(&path, bytes).unwrap();
    let candidates: Vec<ShardCandidate> = shards
        .iter()
        .filter_map(|s| {
            store.get(&s.hash).ok().map(|bytes| ShardCandidate {
                index: s.index,
                expected_hash: s.hash.clone(),
                bytes,
            })
        })
        .collect();
    assert_eq!(
        candidates.len(),
        5,
        "the corrupt shard is refused by the host"
    );
    assert!(!store.has(victim));
    let cipher_len = (plain.len() + 40) as u64;
    let back = recover_segment(&codec, &key, &asset, 0, cipher_len, candidates).unwrap();
    assert_eq!(back, plain);
    // The wrong key fails clearly.
    let candidates: Vec<ShardCandidate> = shards
        .iter()
        .map(|s| ShardCandidate {
            index: s.index,
            expected_hash: s.hash.clone(),
            bytes: s.bytes.clone(),
        })
        .collect();
    let err = recover_segment(
        &codec,
        &new_content_key(),
        &asset,
        0,
        cipher_len,
        candidates,
    )
    .unwrap_err();
    assert!(matches!(err, RecoverError::Decrypt(_)), "{err}");
}

#[test]
fn replication_pipeline_survives_r_minus_one_losses() {
    let asset = [6u8; 32];
    let key = new_content_key();
    let codec = Codec::new(Scheme::Replicate { r: 5 }, 8192).unwrap();
    let plain = random_file_with_markers(5000);
    let shards = prepare_segment(&codec, &key, &asset, 3, &plain).unwrap();
    assert_eq!(shards.len(), 5);
    assert!(
        shards.iter().all(|s| s.hash == shards[0].hash),
        "identical replicas"
    );
    let survivor = ShardCandidate {
        index: 4,
        expected_hash: shards[4].hash.clone(),
        bytes: shards[4].bytes.clone(),
    };
    let cipher_len = (plain.len() + 40) as u64;
    let back = recover_segment(&codec, &key, &asset, 3, cipher_len, vec![survivor]).unwrap();
    assert_eq!(back, plain);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
