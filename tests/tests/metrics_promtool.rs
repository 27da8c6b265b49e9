//! `GET /metrics` of a node that has just started passes `promtool check metrics`, and lists
//! the broker's error kinds at zero. Skips with a reason without promtool (CI installs
//! Debian's prometheus package for it).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::Write,
    process::{Command, Stdio},
};

use offgrid_e2e::TestNode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_wrong_with_a_fresh_nodes_metrics() {
    if Command::new("promtool").arg("--version").output().is_err() {
        println!("skipped: promtool is not installed (Debian package prometheus)");
        return;
    }
    let node = TestNode::start(&[]).await;
    let text = reqwest::get(format!("{}/metrics", node.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
    for family in [
        "offgrid_broker_errors_total{kind=\"no_hosts\"} 0",
        "offgrid_jobs_total{outcome=\"completed\"} 0",
        "offgrid_job_duration_seconds_count 0",
        "offgrid_peers 0",
        "offgrid_shard_refusals_total{kind=\"quota\"} 0",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_open_fds gauge",
        "# TYPE process_cpu_seconds_total counter",
    ] {
        assert!(text.contains(family), "missing {family} in\n{text}");
    }
}
