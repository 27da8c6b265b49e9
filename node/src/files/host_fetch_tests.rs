//! The shard host's fetch side: per-shard answers of a fetch batch (present, missing,
//! rotten, malformed) and its caps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use offgrid_behaviours::shards::MAX_SHARD_BYTES;
use offgrid_storage::shard_hash;

use super::*;

fn host(dir: &std::path::Path) -> Arc<ShardHost> {
    let store = Arc::new(Store::in_memory().unwrap());
    Arc::new(
        ShardHost::open(dir, &StorageConfig::default(), store, [0; 32])
            .unwrap()
            .roomy(),
    )
}

/// Stores `bytes` on `host` and returns its hash.
fn keep(host: &ShardHost, bytes: &[u8]) -> String {
    let hash = shard_hash(bytes);
    host.shards.put(&hash, bytes).unwrap();
    hash
}

/// The shard file of `hash` under `dir`.
fn file_of(dir: &std::path::Path, hash: &str) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()) == Some(&hash[2..]) {
                return p;
            }
        }
    }
    panic!("no file for {hash}");
}

async fn answer(host: &Arc<ShardHost>, request: Request) -> Response {
    match host.handle(PeerId::random(), request) {
        Handled::Now(r) => r,
        Handled::Later(f) => f.await,
    }
}

#[tokio::test]
async fn a_fetch_batch_answers_each_shard_present_missing_corrupt_or_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let good = keep(&host, b"a shard that is fine");
    let rotten = keep(&host, b"a shard that will rot");
    std::fs::write(file_of(dir.path(), &rotten), b"bit rot").unwrap();
    let missing = shard_hash(b"never stored");
    let request = Request::FetchBatch {
        hashes: vec![
            good.clone(),
            missing,
            rotten.clone(),
            "not a hash".into(),
            good,
        ],
    };
    let Response::ShardBatch { shards } = answer(&host, request).await else {
        panic!("not a batch answer");
    };
    let fine = FetchedShard::Shard {
        bytes: Bytes(b"a shard that is fine".to_vec()),
    };
    assert_eq!(shards.len(), 5);
    assert_eq!(shards[0], fine);
    assert_eq!(shards[1], FetchedShard::NotFound);
    assert_eq!(shards[2], FetchedShard::Corrupt);
    assert!(matches!(shards[3], FetchedShard::Refused { .. }));
    assert_eq!(shards[4], fine);
    let status = host.status();
    assert_eq!((status.served_shards, status.corrupt), (2, 1));
    // The rotten shard was quarantined: a second ask finds it gone.
    let again = answer(&host, Request::Fetch { hash: rotten }).await;
    assert_eq!(again, Response::NotFound);
}

#[tokio::test]
async fn a_fetch_batch_beyond_the_caps_is_refused_or_cut() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let too_many = Request::FetchBatch {
        hashes: vec![shard_hash(b"x"); MAX_BATCH_SHARDS + 1],
    };
    assert!(matches!(
        answer(&host, too_many).await,
        Response::Refused { .. }
    ));
    let empty = Request::FetchBatch { hashes: Vec::new() };
    assert!(matches!(
        answer(&host, empty).await,
        Response::Refused { .. }
    ));

    // Five shards of 1 MiB: the answer holds four (MAX_BATCH_BYTES) and says busy for
    // the fifth, so it stays under the codec's response cap.
    let hashes: Vec<String> = (0..5u8)
        .map(|i| keep(&host, &vec![i; MAX_SHARD_BYTES]))
        .collect();
    let Response::ShardBatch { shards } = answer(&host, Request::FetchBatch { hashes }).await
    else {
        panic!("not a batch answer");
    };
    let sent: usize = shards
        .iter()
        .map(|s| match s {
            FetchedShard::Shard { bytes } => bytes.0.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(sent, MAX_BATCH_BYTES);
    assert!(matches!(shards[4], FetchedShard::Busy { .. }));
}
