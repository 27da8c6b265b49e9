use std::{
    io,
    path::Path,
    sync::{Arc, Mutex},
};

use super::{super::TMP_PREFIX, Barrier, GroupSync};
use crate::{disk_cost, shard_hash, PutOutcome, ShardStore, StoreError};

fn shard(tag: u8, len: usize) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(29) ^ tag).collect();
    (shard_hash(&bytes), bytes)
}

fn batch(shards: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    shards
        .iter()
        .map(|(h, b)| (h.as_str(), b.as_slice()))
        .collect()
}

fn final_path(dir: &Path, hash: &str) -> std::path::PathBuf {
    dir.join("shards").join(&hash[..2]).join(&hash[2..])
}

/// Names of temporary files anywhere under the store.
fn temp_files(dir: &Path) -> usize {
    let mut n = 0;
    for prefix in std::fs::read_dir(dir.join("shards")).unwrap().flatten() {
        for f in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            if f.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_batch_is_stored_and_reported_per_shard_in_both_modes() {
    for mode in [GroupSync::SyncFs, GroupSync::PerFile] {
        let dir = tempfile::tempdir().unwrap();
        let quota = 4 * disk_cost(1000) + 100;
        let store = ShardStore::open(dir.path(), quota)
            .unwrap()
            .with_group_sync(mode);
        let (held, held_bytes) = shard(1, 1000);
        store.put(&held, &held_bytes).unwrap();
        let fresh: Vec<_> = (2..5u8).map(|t| shard(t, 1000)).collect();
        let (bad, mut bad_bytes) = shard(9, 10);
        bad_bytes[0] ^= 1;
        let too_big = shard(10, 5000);
        let mut items = batch(&fresh);
        items.push((held.as_str(), held_bytes.as_slice()));
        items.push((bad.as_str(), bad_bytes.as_slice()));
        items.push(("not-a-hash", b"x"));
        items.push((too_big.0.as_str(), too_big.1.as_slice()));
        items.push((fresh[0].0.as_str(), fresh[0].1.as_slice()));
        let results = store.put_many(&items);
        assert_eq!(results.len(), items.len());
        for r in &results[..3] {
            assert!(matches!(r, Ok(PutOutcome::Stored)), "{mode:?}: {r:?}");
        }
        assert!(matches!(results[3], Ok(PutOutcome::AlreadyHad)));
        assert!(matches!(results[4], Err(StoreError::HashMismatch { .. })));
        assert!(matches!(results[5], Err(StoreError::InvalidHash(_))));
        assert!(matches!(results[6], Err(StoreError::QuotaExceeded { .. })));
        // The same hash twice in one batch: the second copy is refused, the first stored.
        assert!(matches!(results[7], Err(StoreError::InFlight(_))));
        assert_eq!(store.used_bytes(), 4 * 4608);
        assert_eq!(store.shard_count(), 4);
        for (h, b) in &fresh {
            assert_eq!(&store.get(h).unwrap(), b);
        }
        assert_eq!(temp_files(dir.path()), 0);
        let reopened = ShardStore::open(dir.path(), quota).unwrap();
        assert_eq!(
            (reopened.used_bytes(), reopened.shard_count()),
            (4 * 4608, 4)
        );
    }
}

#[test]
fn data_is_made_durable_before_any_name_and_names_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let fresh: Vec<_> = (0..6u8).map(|t| shard(t, 4096)).collect();
    let hashes: Vec<String> = fresh.iter().map(|(h, _)| h.clone()).collect();
    let seen: Arc<Mutex<Vec<(Barrier, usize, usize)>>> = Arc::default();
    let log = seen.clone();
    let store = ShardStore::open(dir.path(), 1 << 20)
        .unwrap()
        .with_hook(move |barrier, root| {
            // What is on disk when the barrier starts: temp files and final names.
            let finals = hashes
                .iter()
                .filter(|h| final_path(root, h).is_file())
                .count();
            log.lock()
                .unwrap()
                .push((barrier, temp_files(root), finals));
            Ok(())
        });
    let results = store.put_many(&batch(&fresh));
    assert!(results.iter().all(|r| matches!(r, Ok(PutOutcome::Stored))));
    let seen = seen.lock().unwrap().clone();
    // One data barrier with every shard still under its temporary name, then one name
    // barrier with every shard renamed: two barriers for six shards, and nothing returned
    // (acknowledged) before the second.
    assert_eq!(
        seen,
        vec![(Barrier::Data, 6, 0), (Barrier::Names, 0, 6)],
        "barriers and disk state"
    );
}

#[test]
fn a_batch_of_held_shards_still_runs_the_name_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let held = shard(3, 100);
    let seen: Arc<Mutex<Vec<Barrier>>> = Arc::default();
    let log = seen.clone();
    let store = ShardStore::open(dir.path(), 1 << 20)
        .unwrap()
        .with_hook(move |b, _| {
            log.lock().unwrap().push(b);
            Ok(())
        });
    store.put(&held.0, &held.1).unwrap();
    let results = store.put_many(&batch(std::slice::from_ref(&held)));
    assert!(matches!(results[0], Ok(PutOutcome::AlreadyHad)));
    // The put that stored it may have been killed before its directory fsync.
    assert_eq!(*seen.lock().unwrap(), vec![Barrier::Names]);
}

#[test]
fn a_failed_data_barrier_acks_nothing_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fresh: Vec<_> = (0..4u8).map(|t| shard(t, 1000)).collect();
    let store = ShardStore::open(dir.path(), 1 << 20)
        .unwrap()
        .with_hook(|b, _| match b {
            Barrier::Data => Err(io::Error::other("disk gone")),
            Barrier::Names => Ok(()),
        });
    let results = store.put_many(&batch(&fresh));
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(StoreError::Io { .. }))),
        "{results:?}"
    );
    assert_eq!((store.used_bytes(), store.shard_count()), (0, 0));
    assert_eq!(temp_files(dir.path()), 0);
    for (h, _) in &fresh {
        assert!(!store.has(h));
    }
}

#[test]
fn a_failed_name_barrier_withholds_the_ack_and_a_retry_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let fresh: Vec<_> = (0..3u8).map(|t| shard(t, 1000)).collect();
    let fail = Arc::new(Mutex::new(true));
    let names_run = Arc::new(Mutex::new(0));
    let (f, n) = (fail.clone(), names_run.clone());
    let store = ShardStore::open(dir.path(), 1 << 20)
        .unwrap()
        .with_hook(move |b, _| {
            if b == Barrier::Names {
                *n.lock().unwrap() += 1;
                if *f.lock().unwrap() {
                    return Err(io::Error::other("flush failed"));
                }
            }
            Ok(())
        });
    let first = store.put_many(&batch(&fresh));
    assert!(first
        .iter()
        .all(|r| matches!(r, Err(StoreError::Io { .. }))));
    // The bytes are in place (they were durable before the rename) and counted.
    assert_eq!((store.used_bytes(), store.shard_count()), (3 * 4608, 3));
    *fail.lock().unwrap() = false;
    let retry = store.put_many(&batch(&fresh));
    assert!(retry
        .iter()
        .all(|r| matches!(r, Ok(PutOutcome::AlreadyHad))));
    assert_eq!(
        *names_run.lock().unwrap(),
        2,
        "the retry ran the barrier again"
    );
    assert_eq!((store.used_bytes(), store.shard_count()), (3 * 4608, 3));
}

/// A crash (here a panic in the hook, with the store then dropped and reopened, as after
/// `kill -9`) at either barrier of a second batch loses no shard of the first, acknowledged
/// batch; whatever of the second reached its final name holds exactly its bytes.
#[test]
fn a_crash_mid_batch_leaves_every_acknowledged_shard_in_place() {
    for crash_at in [Barrier::Data, Barrier::Names] {
        let dir = tempfile::tempdir().unwrap();
        let acked: Vec<_> = (0..5u8).map(|t| shard(t, 2000)).collect();
        let unacked: Vec<_> = (10..15u8).map(|t| shard(t, 2000)).collect();
        let armed = Arc::new(Mutex::new(false));
        let trigger = armed.clone();
        let store = ShardStore::open(dir.path(), 1 << 20)
            .unwrap()
            .with_hook(move |b, _| {
                if *trigger.lock().unwrap() && b == crash_at {
                    panic!("simulated crash at {b:?}");
                }
                Ok(())
            });
        let results = store.put_many(&batch(&acked));
        assert!(results.iter().all(|r| matches!(r, Ok(PutOutcome::Stored))));
        *armed.lock().unwrap() = true;
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.put_many(&batch(&unacked))
        }));
        assert!(crashed.is_err(), "the hook should have crashed the batch");
        drop(store);

        let reopened = ShardStore::open(dir.path(), 1 << 20).unwrap();
        for (h, b) in &acked {
            assert_eq!(
                &reopened.get(h).unwrap(),
                b,
                "{crash_at:?}: acked shard lost"
            );
        }
        for (h, b) in &unacked {
            match reopened.get(h) {
                Ok(got) => assert_eq!(&got, b),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => panic!("{crash_at:?}: unacked shard left in a bad state: {e}"),
            }
        }
        assert_eq!(temp_files(dir.path()), 0, "open() removes temp files");
        let expect_final = if crash_at == Barrier::Names { 10 } else { 5 };
        assert_eq!(reopened.shard_count(), expect_final, "{crash_at:?}");
    }
}
