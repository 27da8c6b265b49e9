//! Jobs through the broker with 3 and with 10 `echo` hosts on loopback: jobs/s and
//! p50/p99 latency, measured at the HTTP client (`POST /market/run`, keep-alive, several
//! concurrent clients). Beside them, the same clients' `GET /status` round trip as a
//! baseline for the HTTP + event-loop cost alone.
//!
//! Then the same through Core's `POST /auction` (HMAC-signed bodies, unique job ids, so
//! every request also makes the durable idempotency record).
//!
//! Goals on a 2-core machine: ≥ 2,000 jobs/s and p99 ≤ 20 ms with 3 hosts through the
//! broker; ≥ 1,500 jobs/s and p99 ≤ 25 ms through `POST /auction`.
//!
//! Run: `cargo build --release -p offgrid-node -p offgrid-cli && cargo bench -p offgrid-e2e --bench market_throughput`
//! (env `JOBS`, default 4000; `CLIENTS`, default 16).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use offgrid_e2e::{wait_until, TestNode};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[derive(Clone, Copy)]
enum Mode {
    Status,
    Market,
    Auction,
}

fn hmac_hex(key: &str, msg: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn auction_body(i: usize, run: u64) -> String {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let canon = format!(
        r#"{{"job_id":"bench-{run}-{i}","payload":{{"i":{i}}},"size":0.001,"timeout_s":10,"timestamp":{ts},"type":"echo"}}"#
    );
    let sig = hmac_hex(KEY, &canon);
    format!(
        r#"{{"job_id":"bench-{run}-{i}","type":"echo","size":0.001,"timestamp":{ts},"payload":{{"i":{i}}},"timeout_s":10,"signature":"{sig}"}}"#
    )
}

const KEY: &str = "bench-key";

async fn drive(
    broker: &TestNode,
    jobs: usize,
    clients: usize,
    mode: Mode,
) -> (f64, Vec<Duration>, usize) {
    let path = match mode {
        Mode::Status => "/status",
        Mode::Market => "/market/run",
        Mode::Auction => "/auction",
    };
    let run: u64 = rand_run();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let url = Arc::new(format!("{}{path}", broker.api));
    let token = Arc::new(broker.token.clone());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token, next) = (http.clone(), url.clone(), token.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                let t = Instant::now();
                let req = match mode {
                    Mode::Status => http.get(url.as_str()),
                    Mode::Market => http
                        .post(url.as_str())
                        .bearer_auth(token.as_str())
                        .json(&json!({"type": "echo", "size": 0.001, "payload": {"i": i}, "timeout_s": 10})),
                    Mode::Auction => http
                        .post(url.as_str())
                        .header("content-type", "application/json")
                        .body(auction_body(i, run)),
                };
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort();
    (all.len() as f64 / secs, all, errors)
}

fn rand_run() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn scenario(hosts: usize, jobs: usize, clients: usize, mode: Mode) {
    let broker = TestNode::start_with(&[], &[("OFFGRID_AUTH_KEY", KEY)], None).await;
    let mut hs = Vec::new();
    for _ in 0..hosts {
        hs.push(
            TestNode::start_with(
                &["--bootstrap", &broker.addr],
                &[],
                Some("[host]\nburst = 64\n"),
            )
            .await,
        );
    }
    wait_until(
        Duration::from_secs(30),
        "all hosts known and active",
        || async { (broker.get("/status").await["peers"]["active_hosts"] == hosts).then_some(()) },
    )
    .await;
    // Warm up connections and caches.
    let _ = drive(&broker, 200, clients, mode).await;
    let (base_rps, base, _) = drive(&broker, jobs, clients, Mode::Status).await;
    let (rps, lat, errors) = drive(&broker, jobs, clients, mode).await;
    let what = match mode {
        Mode::Auction => "POST /auction   ",
        _ => "POST /market/run",
    };
    println!(
        "{what} {hosts:>2} hosts, {clients} clients, {jobs} jobs: {rps:>7.0} jobs/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {errors}   | baseline GET /status: {base_rps:>7.0} req/s  p50 {:.2} ms  p99 {:.2} ms",
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        percentile(&base, 0.5).as_secs_f64() * 1e3,
        percentile(&base, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let jobs: usize = std::env::var("JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let clients: usize = std::env::var("CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    println!("goals with 3 hosts: broker >= 2000 jobs/s, p99 <= 20 ms; POST /auction >= 1500 jobs/s, p99 <= 25 ms");
    scenario(3, jobs, clients, Mode::Market).await;
    scenario(10, jobs, clients, Mode::Market).await;
    scenario(3, jobs, clients, Mode::Auction).await;
}
