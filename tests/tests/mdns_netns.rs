//! Two nodes in two network namespaces joined by a veth pair find each other by mDNS
//! alone (no bootstrap). mDNS never runs in the root namespace: its multicast would leave
//! the machine. Skips with a printed reason where namespaces cannot be created.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use offgrid_e2e::{netns::VethPair, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_two_namespaces_find_each_other_by_mdns_alone() {
    let Some(mut ns) = VethPair::create_or_skip("m", "10.79.0", "mDNS") else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (i, d) in dirs.iter().enumerate() {
        ns.spawn_node(i, d.path(), &["--listen", "/ip4/0.0.0.0/tcp/0"])
            .unwrap();
    }
    let mut ids = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        ids.push(ns.wait_started(i, d.path()).await);
    }
    for (i, d) in dirs.iter().enumerate() {
        let other = ids[1 - i].clone();
        let peer = wait_until(
            Duration::from_secs(20),
            "mDNS discovery with a verified announcement",
            || {
                let v = ns.cli_json(i, d.path(), &["peers"]);
                let other = other.clone();
                async move {
                    v?["peers"]
                        .as_array()?
                        .iter()
                        .find(|p| p["peer_id"] == other.as_str() && p["verified"] == true)
                        .cloned()
                }
            },
        )
        .await;
        assert_eq!(peer["via"], "ip");
        assert!(
            peer["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap().contains("10.79.0.")),
            "learned the veth address: {peer}"
        );
    }
    let log = std::fs::read_to_string(dirs[0].path().join("node.log")).unwrap_or_default()
        + &std::fs::read_to_string(dirs[1].path().join("node.log")).unwrap_or_default();
    assert!(log.contains("found by mDNS"), "discovery came from mDNS");
}
