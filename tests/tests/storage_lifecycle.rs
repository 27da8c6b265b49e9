//! Lifecycle: `offgrid rm` (the owner's signed delete) empties every host and a non-owner
//! cannot delete; an expiry (`offgrid put --expires-in`) that is not in the future is
//! refused. (The host's collection of expired assets is shown by the unit tests in
//! node/src/files/host_gc_tests.rs.)

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_common;

use std::time::Duration;

use offgrid_e2e::{dir_size, wait_until, TestNode};
use serde_json::json;
use storage_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_by_the_owner_empties_every_host_and_a_non_owner_is_refused() {
    let (a, hosts) = mesh(5, None).await;
    let before = shard_dirs(&hosts);
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "rm.bin", 1 << 20, 3, None);
    let put = a.cli_json(&["put", src.to_str().unwrap(), "--k", "3", "--n", "5"]);
    let asset = put["asset_id"].as_str().unwrap().to_owned();
    for h in &hosts {
        assert!(
            h.cli_json(&["storage", "status"])["host"]["shards"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    // A host is not the owner: its rm is refused and deletes nothing.
    let refused = hosts[0].cli(&["rm", &asset]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        hosts[0].cli_json(&["storage", "status"])["host"]["shards"]
            .as_u64()
            .unwrap()
            > 0
    );

    let r = a.cli_json(&["rm", &asset]);
    assert_eq!(r["hosts_confirmed"], 5, "{r}");
    for h in &hosts {
        wait_until(Duration::from_secs(10), "the host to drop the shards", || {
            let st = h.cli_json(&["storage", "status"]);
            async move {
                (st["host"]["shards"] == 0 && st["host"]["used_bytes"] == 0).then_some(())
            }
        })
        .await;
    }
    assert_eq!(
        shard_dirs(&hosts),
        before,
        "every host's shard directory is back to its size"
    );
    assert_eq!(a.cli_json(&["ls"])["assets"].as_array().unwrap().len(), 0);
    let out = dir.path().join("gone.bin");
    assert!(!a
        .cli(&["get", &asset, "-o", out.to_str().unwrap()])
        .status
        .success());
}

/// Bytes under each host's shard directory.
fn shard_dirs(hosts: &[TestNode]) -> Vec<u64> {
    hosts
        .iter()
        .map(|h| dir_size(&h.data_dir().join("shards")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_that_is_not_in_the_future_is_refused() {
    let a = TestNode::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "never.bin", 4096, 6, None);
    let cli = a.cli(&["put", src.to_str().unwrap(), "--expires-in", "0s"]);
    assert_eq!(cli.status.code(), Some(1));
    let said = String::from_utf8_lossy(&cli.stderr);
    assert!(said.contains("expires_in_s must be at least 1"), "{said}");
    let body = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let path = src.to_str().unwrap();
    for (bad, why) in [
        (json!({"path": path, "expires_in_s": 0}), "at least 1"),
        (
            json!({"path": path, "expires_in_s": 3_155_760_001_u64}),
            "at most",
        ),
    ] {
        let (status, v) = a
            .request(
                reqwest::Method::POST,
                "/storage/put",
                Some(&a.token),
                body(bad),
            )
            .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"], "invalid_request", "{v}");
        assert!(v["message"].as_str().unwrap().contains(why), "{v}");
    }
    let bad_unit = a.cli(&["put", path, "--expires-in", "5y"]);
    assert_eq!(bad_unit.status.code(), Some(2), "a clap usage error");
    assert_eq!(a.cli_json(&["ls"])["assets"].as_array().unwrap().len(), 0);
}
