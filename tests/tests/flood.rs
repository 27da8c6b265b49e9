//! Hostile peers end to end: the `hostile-peer` harness floods a real node, which must stay
//! small and keep serving honest peers (issue 13's "done when").

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use offgrid_e2e::{bin, dir_size, wait_output, wait_until, TestNode};
use serde_json::Value;

/// The victim: a host with an echo executor and storage.
const HOST: &str = "[host.prices]\necho = 0.001\n[executors.echo]\nkind = \"echo\"\n";

/// Resident memory of a process, bytes (0 once it is gone).
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes a process has caused to be written to storage (`/proc/<pid>/io`), if readable.
fn write_bytes(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Samples a process's RSS every 20 ms on a thread until stopped; keeps the peak.
struct RssPeak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssPeak {
    fn start(pid: u32) -> RssPeak {
        let peak = Arc::new(AtomicU64::new(rss(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssPeak {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Starts the harness against `victim`.
fn hostile(victim: &TestNode, args: &[&str]) -> Child {
    Command::new(bin("hostile-peer"))
        .arg("--target")
        .arg(&victim.addr)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hostile-peer")
}

/// Waits for the harness to end and returns its JSON summary.
async fn summary(child: Child, timeout: Duration) -> Value {
    let out = wait_output(child, timeout, "the hostile peer").await;
    assert!(
        out.status.success(),
        "hostile-peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("hostile-peer prints JSON")
}

/// Peers the node lists, by id.
fn peers(node: &TestNode) -> Vec<Value> {
    node.cli_json(&["peers"])["peers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn connected_peers(node: &TestNode) -> u64 {
    peers(node)
        .iter()
        .filter(|p| p["connected"] == true)
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_stream_flood_the_victim_stays_small_and_serves_a_job_and_a_get() {
    let victim = TestNode::start_with(&[], &[], Some(HOST)).await;
    // A put needs two storage hosts: a helper takes the second replica and is killed
    // before the flood, so the get can only be served by the victim.
    let mut helper = TestNode::start(&["--bootstrap", &victim.addr]).await;
    let honest = TestNode::start(&["--bootstrap", &victim.addr]).await;
    for host in [&victim, &helper] {
        honest
            .wait_peer(
                &host.peer_id,
                Duration::from_secs(30),
                "the honest node to see a storage host's announcement",
                |p| p["active"] == true,
            )
            .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("file.bin");
    let body: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&src, &body).unwrap();
    let put = honest.cli_json(&["put", src.to_str().unwrap(), "--mode", "rep", "--r", "2"]);
    let asset = put["asset_id"].as_str().unwrap().to_owned();
    helper.kill9();

    let idle = rss(victim.pid());
    let peak = RssPeak::start(victim.pid());
    let t0 = Instant::now();
    let flood = hostile(
        &victim,
        &[
            "--attack",
            "streams",
            "--connections",
            "8",
            "--duration-s",
            "12",
        ],
    );
    // The flood is on once the victim's inbound budget has dropped 64 requests (it logs the
    // 1st, 2nd, 4th, ... refusal).
    wait_until(
        Duration::from_secs(20),
        "the flood to spend the victim's inbound budget",
        || {
            let refusals = victim.log().matches("inbound budget spent").count();
            async move { (refusals >= 7).then_some(()) }
        },
    )
    .await;
    let flood_on_s = t0.elapsed().as_secs_f64();

    let t = Instant::now();
    let job = honest.cli_json(&[
        "job",
        "run",
        "--type",
        "echo",
        "--payload",
        "{\"n\":13}",
        "--timeout",
        "20",
    ]);
    let job_s = t.elapsed().as_secs_f64();
    assert_eq!(job["host"], victim.peer_id.as_str(), "{job}");
    assert_eq!(job["output"]["n"], 13, "{job}");
    let t = Instant::now();
    let out = dir.path().join("back.bin");
    honest.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    let get_s = t.elapsed().as_secs_f64();
    assert!(
        std::fs::read(&out).unwrap() == body,
        "the file came back changed"
    );
    let mut flood = flood;
    assert!(
        flood.try_wait().unwrap().is_none(),
        "the flood ended before the job and the get were done: the test proves nothing"
    );
    // The peak is taken over the whole flood, which stops by itself.
    let s = summary(flood, Duration::from_secs(30)).await;
    let peak = peak.finish();
    println!(
        "stream flood: {s}\nvictim RSS idle {:.1} MiB, peak {:.1} MiB over {:.1} s; during the flood (on after {flood_on_s:.1} s) a job took {job_s:.2} s and a get {get_s:.2} s",
        idle as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64(),
    );
    assert!(peak < 128 << 20, "victim RSS peaked at {} MiB", peak >> 20);
    // Still alive and answering.
    assert_eq!(
        victim.get("/status").await["peer_id"],
        victim.peer_id.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_announcements_from_fresh_keys_evict_no_peer_and_write_under_1_mb() {
    // A small registry, so that a flood that could evict would.
    let victim = TestNode::start_with(&[], &[], Some("[network]\nmax_known_peers = 64\n")).await;
    let honest = [
        TestNode::start(&["--bootstrap", &victim.addr]).await,
        TestNode::start(&["--bootstrap", &victim.addr]).await,
    ];
    let mut gone = TestNode::start(&["--bootstrap", &victim.addr]).await;
    for h in honest.iter().chain([&gone]) {
        victim
            .wait_peer(
                &h.peer_id,
                Duration::from_secs(20),
                "the victim to know an honest peer",
                |p| p["connected"] == true,
            )
            .await;
    }
    // A genuine peer the victim knows but is not connected to now.
    gone.kill9();
    wait_until(
        Duration::from_secs(20),
        "the killed peer to be disconnected",
        || {
            let down = peers(&victim)
                .iter()
                .any(|p| p["peer_id"] == gone.peer_id.as_str() && p["connected"] == false);
            async move { down.then_some(()) }
        },
    )
    .await;

    let db = victim.dir.join("node.redb");
    let (db0, dir0) = (std::fs::metadata(&db).unwrap().len(), dir_size(&victim.dir));
    let io0 = write_bytes(victim.pid());
    let t0 = Instant::now();
    let flood = hostile(
        &victim,
        &[
            "--attack",
            "announce",
            "--connections",
            "16",
            "--count",
            "10000",
        ],
    );
    let s = summary(flood, Duration::from_secs(60)).await;
    assert_eq!(s["published"], 10_000, "{s}");
    // The flood arrived: the victim holds some of the fresh keys (unconfirmed).
    let known_ids: Vec<String> = [&honest[0], &honest[1], &gone]
        .iter()
        .map(|n| n.peer_id.clone())
        .collect();
    let fresh = peers(&victim)
        .iter()
        .filter(|p| {
            p["verified"] == true && !known_ids.contains(&p["peer_id"].as_str().unwrap().to_owned())
        })
        .count();
    assert!(fresh > 0, "no announcement of the flood reached the victim");
    let list = peers(&victim);
    for h in &honest {
        assert!(
            list.iter()
                .any(|p| p["peer_id"] == h.peer_id.as_str() && p["connected"] == true),
            "connected peer {} was evicted or disconnected",
            h.peer_id
        );
    }
    assert!(
        list.iter().any(|p| p["peer_id"] == gone.peer_id.as_str()),
        "the disconnected genuine peer was evicted"
    );
    assert!(connected_peers(&victim) >= 2);
    let io1 = write_bytes(victim.pid());
    // A clean stop flushes everything the registry would still write: measure after it.
    let mut victim = victim;
    let (_, status) = victim.terminate();
    assert!(status.success(), "the victim exited with {status}");
    let (db1, dir1) = (std::fs::metadata(&db).unwrap().len(), dir_size(&victim.dir));
    let wrote = io0.zip(io1).map(|(a, b)| b.saturating_sub(a));
    println!(
        "announce flood: {} announcements in {:.1} s ({fresh} fresh keys held); node.redb grew {} bytes, the data dir {} bytes; the process wrote {} bytes to storage before its stop",
        s["published"],
        t0.elapsed().as_secs_f64(),
        db1.saturating_sub(db0),
        dir1.saturating_sub(dir0),
        wrote.map_or("?".into(), |w| w.to_string()),
    );
    assert!(
        db1.saturating_sub(db0) < 1 << 20,
        "node.redb grew {} bytes",
        db1 - db0
    );
    assert!(
        dir1.saturating_sub(dir0) < 1 << 20,
        "the data dir grew {} bytes",
        dir1 - dir0
    );
    if let Some(w) = wrote {
        assert!(w < 1 << 20, "the victim wrote {w} bytes");
    }
}
