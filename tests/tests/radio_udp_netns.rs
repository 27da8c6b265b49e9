//! `--radio udp` end to end: two nodes in two network namespaces joined by a veth pair,
//! each listening for libp2p on its own loopback only and with mDNS off, so the UDP
//! multicast radio link (group 239.23.0.7:47007 on the veth) is their only path. They
//! discover each other by signed beacons (`via` udp) and complete an `echo` job over a
//! radio session. Multicast never runs in the root namespace; skips with a printed reason
//! where namespaces cannot be created.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use offgrid_e2e::{netns::VethPair, wait_until};
use serde_json::Value;

const PREFIX: &str = "10.79.2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radio_udp_in_two_namespaces_discovers_by_beacon_and_runs_an_echo_job() {
    let Some(mut ns) = VethPair::create_or_skip("u", PREFIX, "--radio udp") else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (i, d) in dirs.iter().enumerate() {
        let config = format!(
            "[[radio]]\nlink = \"udp:{PREFIX}.{}\"\nbeacon_interval_s = 2\nannounce_fraction = 0.2\n\
             [mesh]\nsource = \"off\"\n",
            i + 1
        );
        let path = d.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        ns.spawn_node(
            i,
            d.path(),
            &[
                "--config",
                path.to_str().unwrap(),
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--no-mdns",
            ],
        )
        .unwrap();
    }
    let mut ids = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        ids.push(ns.wait_started(i, d.path()).await);
    }
    let logs = || {
        dirs.iter()
            .map(|d| std::fs::read_to_string(d.path().join("node.log")).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };

    // Each hears the other's beacon on the UDP link: via udp, its ACTIVE flag shown.
    for (i, d) in dirs.iter().enumerate() {
        let other = ids[1 - i].clone();
        let peer = wait_until(Duration::from_secs(60), "a UDP beacon to be heard", || {
            let v = ns.cli_json(i, d.path(), &["peers"]);
            let other = other.clone();
            async move {
                v?["peers"]
                    .as_array()?
                    .iter()
                    .find(|p| p["peer_id"] == other.as_str() && p["via"] == "udp")
                    .cloned()
            }
        })
        .await;
        assert_eq!(peer["active"], true, "{peer}");
        assert!(
            peer["addrs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a.as_str().unwrap().starts_with("/offgrid-radio/udp0/")),
            "the radio address is listed: {peer}"
        );
    }

    // An echo job from the first node runs on the second over the radio session.
    let out = ns
        .cli(
            0,
            dirs[0].path(),
            &[
                "job",
                "run",
                "--type",
                "echo",
                "--payload",
                r#"{"over":"udp"}"#,
                "--timeout",
                "60",
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "job failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["host"], ids[1].as_str(), "{r}");
    assert_eq!(r["output"]["over"], "udp", "{r}");

    // No IP path was used: neither node has a libp2p connection, and the link counted the
    // session's frames.
    for (i, d) in dirs.iter().enumerate() {
        let status = ns.cli_json(i, d.path(), &["status"]).unwrap();
        assert_eq!(status["peers"]["connected"], 0, "{status}");
    }
    let radio = ns
        .cli_json(0, dirs[0].path(), &["radio", "status"])
        .unwrap();
    let link = &radio["status"]["links"][0];
    assert_eq!(link["via"], "udp", "{radio}");
    assert!(link["frames_in"].as_u64().unwrap() >= 3, "{radio}");
    assert_eq!(link["peers"][0], ids[1].as_str(), "{radio}");
}
