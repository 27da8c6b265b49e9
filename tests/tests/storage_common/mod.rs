//! Helpers shared by the storage end-to-end tests and benchmark.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use offgrid_e2e::{wait_until, TestNode};

/// Starts `n` nodes at once with the same extra arguments and config.
pub async fn start_many(n: usize, args: &[&str], config: Option<&str>) -> Vec<TestNode> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let config = config.map(str::to_owned);
        set.spawn(async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            (i, TestNode::start_with(&refs, &[], config.as_deref()).await)
        });
    }
    let mut nodes: Vec<(usize, TestNode)> = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        nodes.push(r.expect("node start task"));
    }
    nodes.sort_by_key(|(i, _)| *i);
    nodes.into_iter().map(|(_, n)| n).collect()
}

/// Storage hosts `node` knows: verified, active, offering storage.
pub fn storage_hosts(node: &TestNode) -> usize {
    node.verified_peers()
        .iter()
        .filter(|p| {
            p["active"] == true
                && p["announcement"]["capacity"]["storage_bytes"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
        })
        .count()
}

/// Waits until `node` knows at least `n` storage hosts.
pub async fn wait_for_hosts(node: &TestNode, n: usize) {
    wait_until(
        Duration::from_secs(60),
        "the storage hosts to be known",
        || {
            let found = storage_hosts(node);
            async move { (found >= n).then_some(()) }
        },
    )
    .await;
}

/// Waits until `node` knows each of `hosts` as a verified, active storage host. Use this
/// rather than a count when dead hosts may still be listed.
pub async fn wait_for_these_hosts(node: &TestNode, hosts: &[TestNode]) {
    for h in hosts {
        node.wait_peer(
            &h.peer_id,
            Duration::from_secs(60),
            "a new storage host to be known",
            |p| {
                p["active"] == true
                    && p["announcement"]["capacity"]["storage_bytes"]
                        .as_u64()
                        .unwrap_or(0)
                        > 0
            },
        )
        .await;
    }
}

/// A client node and `hosts` storage hosts that bootstrapped from it.
pub async fn mesh(hosts: usize, host_config: Option<&str>) -> (TestNode, Vec<TestNode>) {
    mesh_with(None, hosts, host_config).await
}

/// [`mesh`] with a config file for the client node too.
pub async fn mesh_with(
    owner_config: Option<&str>,
    hosts: usize,
    host_config: Option<&str>,
) -> (TestNode, Vec<TestNode>) {
    let a = TestNode::start_with(&[], &[], owner_config).await;
    let list = start_many(hosts, &["--bootstrap", &a.addr], host_config).await;
    wait_for_hosts(&a, hosts).await;
    (a, list)
}

/// Reachable shards per segment of `asset`, as the owner's check sees them now.
pub async fn reachable(owner: &TestNode, asset: &str) -> Vec<u64> {
    owner.get(&format!("/storage/assets/{asset}/check")).await["reachable"]
        .as_array()
        .expect("reachable counts")
        .iter()
        .map(|c| c.as_u64().expect("a count"))
        .collect()
}

/// Writes `len` pseudo-random bytes (xorshift, `seed`), with `marker` copied in at a few
/// places.
pub fn write_random(
    dir: &Path,
    name: &str,
    len: usize,
    seed: u64,
    marker: Option<&[u8]>,
) -> PathBuf {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    if let Some(m) = marker {
        for pos in [0, len / 3, len / 2, len.saturating_sub(m.len())] {
            if pos + m.len() <= len {
                bytes[pos..pos + m.len()].copy_from_slice(m);
            }
        }
    }
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Whether any file under `dir` contains `needle`.
pub fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if dir_contains(&p, needle) {
                return true;
            }
        } else if let Ok(bytes) = std::fs::read(&p) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }
    false
}

/// Flips a byte in every shard file of a host; returns how many.
pub fn corrupt_all_shards(data_dir: &Path) -> usize {
    corrupt_shards(data_dir, |_| true)
}

/// The parity of a shard file name's last hex digit: splits shards into two halves.
pub fn name_parity(name: &str) -> u32 {
    name.chars()
        .last()
        .and_then(|c| c.to_digit(16))
        .unwrap_or(0)
        % 2
}

/// Flips a byte in the middle of every shard file whose name `pick` accepts, under a host's
/// data dir; returns how many.
pub fn corrupt_shards(data_dir: &Path, pick: impl Fn(&str) -> bool) -> usize {
    let root = data_dir.join("shards").join("shards");
    let mut n = 0;
    for prefix in std::fs::read_dir(&root).unwrap().flatten() {
        for f in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !pick(&name) {
                continue;
            }
            let mut bytes = std::fs::read(f.path()).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(f.path(), bytes).unwrap();
            n += 1;
        }
    }
    n
}

/// Asserts two files are byte-identical.
pub fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(x.len(), y.len(), "sizes differ");
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

/// Sum of the hosts' received shard bytes, once it stops changing (polled with a deadline).
pub async fn settled_received_bytes(hosts: &[TestNode]) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = None;
    loop {
        let mut sum = 0;
        for h in hosts {
            sum += h.get("/storage/status").await["host"]["received_bytes"]
                .as_u64()
                .unwrap_or(0);
        }
        if last == Some(sum) {
            return sum;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hosts' received-bytes counters did not settle"
        );
        last = Some(sum);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
