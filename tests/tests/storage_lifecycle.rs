//! `offgrid rm`: the owner's signed delete empties every host; a non-owner cannot delete.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_common;

use std::time::Duration;

use offgrid_e2e::wait_until;
use storage_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rm_by_the_owner_empties_every_host_and_a_non_owner_is_refused() {
    let (a, hosts) = mesh(5, None).await;
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
    assert_eq!(a.cli_json(&["ls"])["assets"].as_array().unwrap().len(), 0);
    let out = dir.path().join("gone.bin");
    assert!(!a
        .cli(&["get", &asset, "-o", out.to_str().unwrap()])
        .status
        .success());
}
