//! Two nodes in two network namespaces joined by a veth pair find each other by mDNS
//! alone (no bootstrap). mDNS never runs in the root namespace: its multicast would leave
//! the machine. Skips with a printed reason where namespaces cannot be created.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Stdio, time::Duration};

use offgrid_e2e::{bin, netns::VethPair, wait_until};
use serde_json::Value;

fn spawn(ns: &mut VethPair, i: usize, data_dir: &Path) -> Result<(), String> {
    let log = std::fs::File::create(data_dir.join("node.log")).map_err(|e| e.to_string())?;
    let child = ns
        .command(i, bin("offgrid-node"))
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--listen",
            "/ip4/0.0.0.0/tcp/0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "info,libp2p_mdns=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    ns.adopt(child);
    Ok(())
}

fn cli_json(ns: &VethPair, i: usize, data_dir: &Path, args: &[&str]) -> Option<Value> {
    let out = ns
        .command(i, bin("offgrid"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--json")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_two_namespaces_find_each_other_by_mdns_alone() {
    let mut ns = match VethPair::create("m", "10.79.0") {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot create network namespaces here ({e}); run as root to test mDNS"
            );
            return;
        }
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (i, d) in dirs.iter().enumerate() {
        spawn(&mut ns, i, d.path()).unwrap();
    }
    let mut ids = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let id = wait_until(Duration::from_secs(30), "node to start", || {
            let v = cli_json(&ns, i, d.path(), &["status"]);
            async move { v.and_then(|v| v["peer_id"].as_str().map(str::to_owned)) }
        })
        .await;
        ids.push(id);
    }
    for (i, d) in dirs.iter().enumerate() {
        let other = ids[1 - i].clone();
        let peer = wait_until(
            Duration::from_secs(20),
            "mDNS discovery with a verified announcement",
            || {
                let v = cli_json(&ns, i, d.path(), &["peers"]);
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
