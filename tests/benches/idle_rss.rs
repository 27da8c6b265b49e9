//! Prints the idle resident memory of a node with 2 peers. Goal: ≤ 30 MiB.
//!
//! Run: `cargo build --release -p offgrid-node -p offgrid-cli && cargo bench -p offgrid-e2e --bench idle_rss`

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use offgrid_e2e::{wait_until, TestNode};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let a = TestNode::start(&[]).await;
    let b = TestNode::start(&["--bootstrap", &a.addr]).await;
    let c = TestNode::start(&["--bootstrap", &a.addr]).await;
    for n in [&a, &b, &c] {
        wait_until(Duration::from_secs(20), "2 connected peers", || async {
            (n.get("/status").await["peers"]["connected"] == 2).then_some(())
        })
        .await;
    }
    // Idle means idle: let start-up allocations settle, then sample once a second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut samples = Vec::new();
    for _ in 0..5 {
        samples.push(rss_kib(a.pid()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples.sort_unstable();
    let median = samples[samples.len() / 2];
    let profile = if offgrid_e2e::bin("offgrid-node")
        .to_string_lossy()
        .contains("/release/")
    {
        "release"
    } else {
        "debug"
    };
    println!("idle RSS of a node with 2 peers ({profile} build): median {:.1} MiB (min {:.1}, max {:.1}) — goal ≤ 30 MiB",
        median as f64 / 1024.0,
        samples[0] as f64 / 1024.0,
        samples[samples.len() - 1] as f64 / 1024.0);
}
