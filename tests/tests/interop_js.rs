//! Interop with js-libp2p: a JavaScript peer (tests/interop-js/peer.mjs, packages pinned by its
//! package-lock.json) dials a real `offgrid-node` over TCP + Noise + Yamux, subscribes to
//! `offgrid/announce/1`, and checks the node's signed announcement with Node's own Ed25519
//! code. Skips with a printed reason without `node` or without `npm ci --prefix
//! tests/interop-js` (.ci/run does both).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use libp2p::gossipsub::{Message, TopicHash};
use offgrid_behaviours::announce::{SignedAnnouncement, TOPIC};
use offgrid_e2e::{wait_output, TestNode};
use offgrid_net::content_message_id;
use serde_json::Value;

/// The js peer's directory, or why the test cannot run here.
fn js_peer() -> Result<PathBuf, String> {
    offgrid_e2e::node_package("interop-js", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_libp2p_peer_receives_and_verifies_the_nodes_signed_announcement() {
    let dir = match js_peer() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED a_js_libp2p_peer_…: {why} (.ci/run installs both)");
            return;
        }
    };
    // The node announces again 200 ms after a peer subscribes; the short interval is only a
    // fallback so that the js peer never waits for the default 30 s.
    let node = TestNode::start_with(&[], &[], Some("[network]\nannounce_interval_s = 2\n")).await;
    let started = Instant::now();
    let child = Command::new("node")
        .arg(dir.join("peer.mjs"))
        .arg(&node.addr)
        .arg(&node.peer_id)
        .arg("20000")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node peer.mjs");
    let out = wait_output(child, Duration::from_secs(40), "the js peer").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().last().unwrap_or("");
    let r: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("js peer printed no JSON ({e}): {stdout}\nstderr: {stderr}"));
    eprintln!(
        "js peer finished in {:?} (its own count: {} ms): {}",
        started.elapsed(),
        r["elapsed_ms"],
        line.chars().take(600).collect::<String>()
    );
    assert!(
        out.status.success() && r["ok"] == true,
        "js peer failed ({}): {r}\nstderr: {stderr}",
        out.status
    );

    // What the js peer saw: our announcement, in an unsigned gossipsub envelope, signed by
    // the node's own key.
    assert_eq!(r["received"], true);
    assert_eq!(
        r["unsigned_envelope"], true,
        "the node publishes anonymously"
    );
    assert_eq!(r["from"], node.peer_id.as_str());
    assert_eq!(r["signature_valid"], true);
    assert_eq!(r["signer"], node.peer_id.as_str());
    assert_eq!(r["node_id"], node.peer_id.as_str());
    assert!(r["seq"].as_u64().is_some(), "{r}");
    // And it refused every tampered copy, each for the right reason.
    assert_eq!(r["tampered_rejected"], true);
    assert_eq!(r["tampered"]["body"], "bad signature");
    assert_eq!(r["tampered"]["signature"], "bad signature");
    assert_eq!(r["tampered"]["foreign_key"], "node_id is not the signer");

    // The bytes it checked are the node's: Rust's verifier agrees, and the js peer's
    // message id function is the node's content id, so gossip ids match on both sides.
    let wire = B64
        .decode(r["wire"].as_str().expect("wire"))
        .expect("base64");
    let (signer, ann) = SignedAnnouncement::from_wire(&wire)
        .and_then(|s| s.verify())
        .expect("the node's announcement verifies in Rust too");
    assert_eq!(signer.to_string(), node.peer_id);
    assert_eq!(Some(ann.seq), r["seq"].as_u64());
    let id = content_message_id(&Message {
        source: None,
        data: wire,
        sequence_number: None,
        topic: TopicHash::from_raw(TOPIC),
    });
    assert_eq!(r["msg_id"], hex::encode(id.0));
}
