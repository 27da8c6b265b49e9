//! Two nodes in two network namespaces joined by a veth pair find each other by mDNS
//! alone (no bootstrap). mDNS never runs in the root namespace: its multicast would leave
//! the machine. Skips with a printed reason where namespaces cannot be created.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use offgrid_e2e::{bin, wait_until};
use serde_json::Value;

/// Two namespaces and a veth pair, removed on drop (with the processes inside).
struct Netns {
    names: [String; 2],
    children: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    fn create(tag: &str) -> Result<Self, String> {
        let id = std::process::id() % 100_000;
        let names = [format!("og{tag}{id}a"), format!("og{tag}{id}b")];
        let ns = Netns {
            names: names.clone(),
            children: Vec::new(),
        };
        ip(&["netns", "add", &names[0]])?;
        ip(&["netns", "add", &names[1]])?;
        let (va, vb) = (format!("v{tag}{id}a"), format!("v{tag}{id}b"));
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        ip(&["link", "set", &va, "netns", &names[0]])?;
        ip(&["link", "set", &vb, "netns", &names[1]])?;
        for (n, (dev, addr)) in names
            .iter()
            .zip([(&va, "10.79.0.1/24"), (&vb, "10.79.0.2/24")])
        {
            ip(&["-n", n, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", n, "link", "set", dev, "up"])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }

    fn spawn(&mut self, ns: usize, data_dir: &Path) -> Result<(), String> {
        let log = std::fs::File::create(data_dir.join("node.log")).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.names[ns]])
            .arg(bin("offgrid-node"))
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
        self.children.push(child);
        Ok(())
    }

    fn cli_json(&self, ns: usize, data_dir: &Path, args: &[&str]) -> Option<Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.names[ns]])
            .arg(bin("offgrid"))
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
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in &self.names {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_in_two_namespaces_find_each_other_by_mdns_alone() {
    let mut ns = match Netns::create("m") {
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
        ns.spawn(i, d.path()).unwrap();
    }
    let mut ids = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let id = wait_until(Duration::from_secs(30), "node to start", || {
            let v = ns.cli_json(i, d.path(), &["status"]);
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
