//! Long-tail gets with real processes: hosts killed or hung (SIGSTOP) do not make a get pay
//! a timeout per segment, and a host that answers slowly on purpose
//! (`[storage] debug_serve_delay_ms`) does not hold a get up.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_common;

use std::time::{Duration, Instant};

use offgrid_e2e::{send_signal, TestNode};
use storage_common::*;

/// The client's shard request timeout in these tests, seconds.
const TIMEOUT_S: u64 = 5;

fn client_config() -> String {
    format!("[storage]\nrequest_timeout_s = {TIMEOUT_S}\n")
}

/// Puts `mib` MiB with EC 12/20 and 64 KiB shards; the asset id and segment count.
fn put(a: &TestNode, dir: &std::path::Path, mib: usize) -> (std::path::PathBuf, String, u64) {
    let src = write_random(dir, "long.bin", mib << 20, 7, None);
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "12",
        "--n",
        "20",
        "--shard-size",
        "64KiB",
    ]);
    assert_eq!(put["n"], 20, "{put}");
    let segments = put["segments"].as_u64().unwrap();
    (src, put["asset_id"].as_str().unwrap().to_owned(), segments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_8_hosts_killed_or_hung_does_not_pay_the_timeout_per_segment() {
    let config = client_config();
    let (a, mut hosts) = mesh_with(Some(&config), 20, None).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, asset, segments) = put(&a, dir.path(), 12);
    assert!(segments >= 10, "{segments} segments");

    // Six killed (connections refused), two hung: their connections stay open and their
    // requests are never answered, so only a deadline gets past them.
    for h in hosts.iter_mut().take(6) {
        h.kill9();
    }
    for h in &hosts[6..8] {
        send_signal(h.pid(), "STOP");
    }
    let out = dir.path().join("back.bin");
    let t = Instant::now();
    let got = a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    let took = t.elapsed();
    assert_same_file(&src, &out);
    let per_segment = Duration::from_secs(segments * TIMEOUT_S);
    eprintln!("degraded get of {segments} segments took {took:?} (segments × timeout = {per_segment:?}): {got}");
    assert!(
        took < per_segment / 4,
        "the get took {took:?}: a dead host's timeout was paid again and again ({segments} segments × {TIMEOUT_S} s = {per_segment:?})"
    );
    assert!(got["unreachable_hosts"].as_u64().unwrap() <= 8, "{got}");
    for h in &hosts[6..8] {
        send_signal(h.pid(), "CONT");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_answers_slowly_on_purpose_does_not_hold_up_the_get() {
    const DELAY_MS: u64 = 20_000;
    let a = TestNode::start(&[]).await;
    let slow_config = format!("[storage]\ndebug_serve_delay_ms = {DELAY_MS}\n");
    let bootstrap = ["--bootstrap", a.addr.as_str()];
    let slow = start_many(2, &bootstrap, Some(&slow_config)).await;
    let fast = start_many(18, &bootstrap, None).await;
    wait_for_hosts(&a, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, asset, segments) = put(&a, dir.path(), 8);
    // Both slow hosts hold shards of every segment.
    for h in &slow {
        let st = h.cli_json(&["storage", "status"]);
        assert!(st["host"]["shards"].as_u64().unwrap() >= segments, "{st}");
    }

    let out = dir.path().join("back.bin");
    let t = Instant::now();
    let got = a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    let took = t.elapsed();
    assert_same_file(&src, &out);
    eprintln!("get with 2 slow hosts took {took:?}: {got}");
    assert!(
        took < Duration::from_millis(DELAY_MS / 2),
        "the get took {took:?}: it waited for hosts that answer after {DELAY_MS} ms"
    );
    drop(fast);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_waits_for_a_hung_host_once_and_places_its_shards_elsewhere() {
    let config = client_config();
    let (a, hosts) = mesh_with(Some(&config), 20, None).await;
    for h in &hosts[..2] {
        send_signal(h.pid(), "STOP");
    }
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (src, asset, segments) = put(&a, dir.path(), 6);
    let took = t.elapsed();
    eprintln!("put of {segments} segments with 2 hung hosts took {took:?}");
    // Without a deadline each hung host's batches wait out the timeout on every attempt
    // (3 × 5 s plus backoff) before its shards move; with it, once.
    assert!(
        took < Duration::from_millis(TIMEOUT_S * 2500),
        "the put took {took:?} with two hung hosts ({TIMEOUT_S} s timeout)"
    );
    let out = dir.path().join("back.bin");
    a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
    for h in &hosts[..2] {
        send_signal(h.pid(), "CONT");
    }
}
