use std::sync::Arc;

use super::*;

fn shard(tag: u8, len: usize) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect();
    (shard_hash(&bytes), bytes)
}

#[test]
fn round_trip_and_already_had() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path(), 1 << 20).unwrap();
    let (hash, bytes) = shard(1, 1000);
    assert!(!store.has(&hash));
    assert_eq!(store.put(&hash, &bytes).unwrap(), PutOutcome::Stored);
    assert!(store.has(&hash));
    assert_eq!(store.get(&hash).unwrap(), bytes);
    assert_eq!(store.put(&hash, &bytes).unwrap(), PutOutcome::AlreadyHad);
    // Counted in blocks on disk, not payload.
    assert_eq!(store.used_bytes(), 4608);
    assert_eq!(store.shard_count(), 1);
    let on_disk = dir.path().join("shards").join(&hash[..2]).join(&hash[2..]);
    assert_eq!(fs::read(on_disk).unwrap(), bytes);
}

#[test]
fn wrong_hash_and_malformed_hash_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path(), 1 << 20).unwrap();
    let (hash, mut bytes) = shard(2, 100);
    bytes[0] ^= 1;
    assert!(matches!(
        store.put(&hash, &bytes),
        Err(StoreError::HashMismatch { .. })
    ));
    assert!(!store.has(&hash));
    assert_eq!(store.used_bytes(), 0);
    for bad in ["../../etc/passwd", &hash.to_uppercase(), &hash[..63]] {
        assert!(matches!(
            store.put(bad, &bytes),
            Err(StoreError::InvalidHash(_))
        ));
        assert!(matches!(store.get(bad), Err(StoreError::InvalidHash(_))));
    }
    let (absent, _) = shard(3, 10);
    assert!(matches!(store.get(&absent), Err(StoreError::NotFound(_))));
}

#[test]
fn quota_is_enforced_and_freed_by_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path(), 2 * disk_cost(1000) + 100).unwrap();
    let (a, a_bytes) = shard(1, 1000);
    let (b, b_bytes) = shard(2, 1000);
    let (c, c_bytes) = shard(3, 1000);
    store.put(&a, &a_bytes).unwrap();
    store.put(&b, &b_bytes).unwrap();
    match store.put(&c, &c_bytes) {
        Err(StoreError::QuotaExceeded { used, quota }) => {
            assert_eq!((used, quota), (2 * 4608, 2 * 4608 + 100))
        }
        other => panic!("expected quota refusal, got {other:?}"),
    }
    assert!(!store.has(&c));
    assert!(store.delete(&a).unwrap());
    assert!(!store.delete(&a).unwrap());
    assert_eq!(store.used_bytes(), 4608);
    assert_eq!(store.put(&c, &c_bytes).unwrap(), PutOutcome::Stored);
    assert_eq!(store.used_bytes(), 2 * 4608);
}

#[test]
fn corruption_is_detected_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path(), 1 << 20).unwrap();
    let (hash, bytes) = shard(4, 500);
    store.put(&hash, &bytes).unwrap();
    let path = dir.path().join("shards").join(&hash[..2]).join(&hash[2..]);
    let mut rotten = bytes.clone();
    rotten[250] ^= 0x80;
    fs::write(&path, &rotten).unwrap();
    match store.get(&hash) {
        Err(StoreError::Corrupt {
            hash: h,
            quarantined,
        }) => {
            assert_eq!(h, hash);
            assert!(quarantined.starts_with(dir.path().join("quarantine")));
            assert_eq!(fs::read(quarantined).unwrap(), rotten);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(!store.has(&hash));
    assert_eq!(store.used_bytes(), 0);
    assert!(matches!(store.get(&hash), Err(StoreError::NotFound(_))));
    // A rotten file is also caught when the shard is offered again, and replaced.
    fs::write(&path, &rotten).unwrap();
    assert_eq!(store.put(&hash, &bytes).unwrap(), PutOutcome::Stored);
    assert_eq!(store.get(&hash).unwrap(), bytes);
    let quarantined = fs::read_dir(dir.path().join("quarantine")).unwrap().count();
    assert_eq!(quarantined, 2);
    assert!(store.delete(&hash).unwrap());
    // A good copy can be stored again.
    assert_eq!(store.put(&hash, &bytes).unwrap(), PutOutcome::Stored);
    assert_eq!(store.get(&hash).unwrap(), bytes);
}

#[test]
fn reopen_keeps_shards_and_removes_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, a_bytes) = shard(5, 700);
    let (b, b_bytes) = shard(6, 300);
    {
        let store = ShardStore::open(dir.path(), 1 << 20).unwrap();
        store.put(&a, &a_bytes).unwrap();
        store.put(&b, &b_bytes).unwrap();
    }
    // A write killed before its rename leaves a temp file behind.
    let prefix = dir.path().join("shards").join(&a[..2]);
    let leftover = prefix.join(format!(".tmp-{a}-999-1"));
    fs::write(&leftover, b"half written").unwrap();
    let store = ShardStore::open(dir.path(), 1 << 20).unwrap();
    assert!(!leftover.exists());
    assert_eq!(store.used_bytes(), 2 * 4608);
    assert_eq!(store.shard_count(), 2);
    assert_eq!(store.get(&a).unwrap(), a_bytes);
    assert_eq!(store.get(&b).unwrap(), b_bytes);
    let names: Vec<_> = fs::read_dir(&prefix)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names
        .iter()
        .all(|n| !n.to_string_lossy().starts_with(TMP_PREFIX)));
}

#[test]
fn concurrent_puts_account_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 10 * disk_cost(1000);
    let store = Arc::new(ShardStore::open(dir.path(), quota).unwrap());
    let shards: Vec<_> = (0..16u8).map(|i| shard(i, 1000)).collect();
    let handles: Vec<_> = shards
        .into_iter()
        .map(|(hash, bytes)| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.put(&hash, &bytes))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let stored = results
        .iter()
        .filter(|r| matches!(r, Ok(PutOutcome::Stored)))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::QuotaExceeded { .. })))
        .count();
    assert_eq!((stored, refused), (10, 6));
    assert_eq!(store.used_bytes(), quota);
    let reopened = ShardStore::open(dir.path(), quota).unwrap();
    assert_eq!(reopened.used_bytes(), quota);
}

#[test]
fn tiny_shards_cost_whole_blocks() {
    assert_eq!(disk_cost(0), 4608);
    assert_eq!(disk_cost(64), 4608);
    assert_eq!(disk_cost(4096), 4608);
    assert_eq!(disk_cost(4097), 8704);
    assert_eq!(disk_cost(1 << 20), (1 << 20) + 512);
    // 64-byte shards fill a quota at 72 times their payload.
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path(), 10 * 4608).unwrap();
    let stored = (0..20u8)
        .filter(|i| {
            let (h, b) = shard(*i, 64);
            store.put(&h, &b).is_ok()
        })
        .count();
    assert_eq!(stored, 10);
}
