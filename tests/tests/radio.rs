//! Nodes with no IP path between them, joined only by a radio: a socat PTY pair carrying
//! KISS (as two LoRa TNCs would), or the simulated LoRa medium of a `SimHub` running in this
//! test process. They must find each other by signed beacon (`via` lora) and complete an
//! `echo` auction over the radio; a node must keep within its duty cycle as the simulator
//! counts it.
//!
//! "No IP path": no mDNS, no bootstrap, and beacons never carry loopback addresses, so
//! neither node learns an IP address of the other; each test checks that no IP connection
//! was ever opened.

// A panic in a test is a failure with a message, which is what a test wants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use offgrid_e2e::{bin, wait_until, TestNode};
use offgrid_transports::{
    lora::LoraParams,
    sim::{SimConfig, SimHub},
    LinkAddr,
};
use serde_json::Value;

fn radio_config(link: &str, extra: &str) -> String {
    format!(
        "[[radio]]\nlink = \"{link}\"\nbeacon_interval_s = 2\nannounce_fraction = 0.2\n{extra}\n\
         [mesh]\nsource = \"off\"\n"
    )
}

/// Runs `offgrid --json job run --type echo` against `node` without blocking the runtime.
async fn run_echo(node: &TestNode, payload: &str) -> (bool, Value, String) {
    let dir = node.dir.clone();
    let payload = payload.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin("offgrid"))
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "--json",
                "job",
                "run",
                "--type",
                "echo",
                "--payload",
                &payload,
                "--timeout",
                "120",
            ])
            .output()
            .expect("run offgrid")
    })
    .await
    .expect("join");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until `a` lists `b` as a peer heard over `via`.
async fn wait_heard(a: &TestNode, b: &TestNode, via: &str) {
    wait_until(Duration::from_secs(60), "a beacon to be heard", || async {
        let peers = a.get("/peers").await;
        let p = peers["peers"]
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == b.peer_id.as_str())?
            .clone();
        (p["via"] == via).then_some(())
    })
    .await;
}

fn no_ip_connection(n: &TestNode, status: &Value) {
    let connected = status["peers"]["connected"]
        .as_u64()
        .or(status["connected_peers"].as_u64());
    assert_eq!(
        connected,
        Some(0),
        "an IP connection was opened: {status}\n{}",
        n.log()
    );
}

/// A socat PTY pair; killed on drop.
struct PtyPair {
    child: Child,
    paths: [String; 2],
}

impl PtyPair {
    fn open() -> Result<PtyPair, String> {
        let mut child = Command::new("socat")
            .args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("socat not available: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut paths = Vec::new();
        // socat prints "... N PTY is /dev/pts/X" for each end, then "starting data transfer loop".
        for line in lines.by_ref() {
            let line = line.map_err(|e| e.to_string())?;
            if let Some(p) = line.split("PTY is ").nth(1) {
                paths.push(p.trim().to_owned());
            }
            if line.contains("starting data transfer loop") {
                break;
            }
        }
        // Keep draining socat's log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        match paths.as_slice() {
            [a, b] => Ok(PtyPair {
                child,
                paths: [a.clone(), b.clone()],
            }),
            _ => Err(format!("socat printed {paths:?}")),
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiss_over_a_pty_pair_nodes_discover_by_beacon_and_complete_an_echo_job() {
    let pty = match PtyPair::open() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED kiss_over_a_pty_pair_…: {why} (install socat; .ci/run does)");
            return;
        }
    };
    let a_cfg = radio_config(&format!("kiss:{}@115200", pty.paths[0]), "");
    let b_cfg = radio_config(&format!("kiss:{}@115200", pty.paths[1]), "");
    let a = TestNode::start_with(&[], &[], Some(&a_cfg)).await;
    let b = TestNode::start_with(&[], &[], Some(&b_cfg)).await;
    wait_heard(&a, &b, "lora").await;
    wait_heard(&b, &a, "lora").await;
    // Heard only by beacon: no announcement, yet the peer's ACTIVE flag shows.
    let peers = a.get("/peers").await;
    let rec = peers["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == b.peer_id.as_str())
        .unwrap();
    assert_eq!(rec["announcement"], Value::Null, "{rec}");
    assert_eq!(rec["active"], true, "{rec}");
    assert_eq!(rec["beacon"]["active"], true, "{rec}");

    let (ok, r, err) = run_echo(&a, r#"{"over":"kiss"}"#).await;
    assert!(ok, "job failed: {err}\nA: {}\nB: {}", a.log(), b.log());
    assert_eq!(r["host"], b.peer_id.as_str(), "{r}");
    assert_eq!(r["output"]["over"], "kiss", "{r}");

    let radio = a.get("/radio").await;
    let link = &radio["status"]["links"][0];
    assert_eq!(link["via"], "lora");
    assert!(link["beacons_sent"].as_u64().unwrap() >= 1, "{radio}");
    assert!(link["frames_in"].as_u64().unwrap() >= 3, "{radio}");
    assert_eq!(link["peers"][0], b.peer_id.as_str(), "{radio}");
    no_ip_connection(&a, &a.get("/status").await);
    no_ip_connection(&b, &b.get("/status").await);
}

fn station_of(pubkey_hex: &str) -> u64 {
    let k = hex::decode(pubkey_hex).expect("hex key");
    u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_lora_sf7_with_10_percent_loss_discovery_and_one_auction_complete() {
    let hub = SimHub::bind(
        SimConfig::default()
            .with_lora(LoraParams::new(7, 125_000))
            .with_loss(0.10)
            .with_seed(0x5eed),
    )
    .await
    .expect("hub");
    let link = format!("sim:{}", hub.local_addr());
    let cfg = radio_config(&link, "");
    let a = TestNode::start_with(&[], &[], Some(&cfg)).await;
    let b = TestNode::start_with(&[], &[], Some(&cfg)).await;
    wait_heard(&a, &b, "lora").await;
    wait_heard(&b, &a, "lora").await;

    let (ok, r, err) = run_echo(&a, r#"{"over":"sim"}"#).await;
    assert!(ok, "job failed: {err}\nA: {}\nB: {}", a.log(), b.log());
    assert_eq!(r["host"], b.peer_id.as_str(), "{r}");
    assert_eq!(r["output"]["over"], "sim");
    assert!(
        r["receipt"]["sig"].is_string(),
        "a signed receipt came back: {r}"
    );

    let stats = hub.medium().stats();
    let lost: u64 = stats.values().map(|s| s.frames_lost).sum();
    let sent: u64 = stats.values().map(|s| s.frames_sent).sum();
    eprintln!("simulator: {sent} frames sent, {lost} deliveries lost");
    let peers = a.cli_json(&["peers"]);
    let b_rec = peers["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["peer_id"] == b.peer_id.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        b_rec["via"], "lora",
        "offgrid --json peers shows via: {peers}"
    );
    no_ip_connection(&a, &a.get("/status").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duty_cycle_of_1_percent_is_never_exceeded_as_counted_by_the_simulator() {
    let hub = SimHub::bind(SimConfig::default().with_lora(LoraParams::new(7, 125_000)))
        .await
        .expect("hub");
    let link = format!("sim:{}", hub.local_addr());
    // 1 % of a 60 s window is 600 ms: two beacons of ~200 ms at SF7. The node asks for a
    // beacon every second (and no announce cap), so only the duty cycle holds it back.
    let cfg = format!(
        "[[radio]]\nlink = \"{link}\"\nbeacon_interval_s = 1\nannounce_fraction = 1.0\n\
         duty_cycle = 0.01\nduty_window_s = 60\n[mesh]\nsource = \"off\"\n"
    );
    let started = std::time::Instant::now();
    let n = TestNode::start_with(&[], &[], Some(&cfg)).await;
    let station = station_of(n.get("/pubkeys").await["ed25519"].as_str().unwrap());
    let radio = wait_until(
        Duration::from_secs(30),
        "the duty cycle to hold beacons back",
        || async {
            let r = n.get("/radio").await;
            (r["status"]["links"][0]["sends_deferred"].as_u64()? >= 3).then_some(r)
        },
    )
    .await;
    let link_status = &radio["status"]["links"][0];
    assert_eq!(link_status["airtime_budget_ms"], 600, "{radio}");
    let counted = hub
        .medium()
        .node_stats(LinkAddr::Id(station))
        .expect("station on the hub");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(60),
        "the check must fit one window"
    );
    assert!(
        counted.frames_sent >= 1,
        "the node did transmit: {counted:?}"
    );
    assert!(
        counted.airtime_sent <= Duration::from_millis(600),
        "sent {:?} of airtime in {elapsed:?}, allowance 600 ms per minute",
        counted.airtime_sent
    );
    eprintln!(
        "duty cycle: {} frames, {:?} on air in {elapsed:?}, {} sends deferred",
        counted.frames_sent, counted.airtime_sent, link_status["sends_deferred"]
    );
}
