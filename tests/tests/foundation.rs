//! Foundation end to end: discovery, announcements, toggle, restart, bad input, shutdown.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use offgrid_e2e::{wait_until, TestNode};
use serde_json::{json, Value};

fn ids(peers: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = peers
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap_or("").to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_find_each_other_by_bootstrap_with_verified_announcements() {
    let a = TestNode::start(&[]).await;
    let b = TestNode::start(&["--bootstrap", &a.addr]).await;
    let c = TestNode::start(&["--bootstrap", &a.addr]).await;
    let nodes = [&a, &b, &c];
    let started = std::time::Instant::now();
    for n in nodes {
        let mut want: Vec<String> = nodes
            .iter()
            .filter(|m| m.peer_id != n.peer_id)
            .map(|m| m.peer_id.clone())
            .collect();
        want.sort();
        wait_until(
            Duration::from_secs(10),
            "every node to list the other two, verified",
            || {
                let got = ids(&n.verified_peers());
                let want = want.clone();
                async move { (got == want).then_some(()) }
            },
        )
        .await;
    }
    eprintln!(
        "all three nodes listed each other after {:?}",
        started.elapsed()
    );
    // The announcement carries what the host offers, and the CLI shows the link.
    let peers = a.verified_peers();
    for p in &peers {
        assert_eq!(p["via"], "ip");
        assert_eq!(p["active"], true);
        assert_eq!(p["announcement"]["prices"]["echo"], 1_000);
        // Priced by default, but no executor runs it: not announced.
        assert!(p["announcement"]["prices"].get("compute").is_none());
        assert!(p["announcement"]["job_types"]
            .as_array()
            .unwrap()
            .contains(&json!("echo")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggle_off_shows_as_inactive_at_the_others() {
    let a = TestNode::start(&[]).await;
    let b = TestNode::start(&["--bootstrap", &a.addr]).await;
    let c = TestNode::start(&["--bootstrap", &a.addr]).await;
    for n in [&a, &c] {
        n.wait_peer(
            &b.peer_id,
            Duration::from_secs(10),
            "b to be known as active",
            |p| p["active"] == true,
        )
        .await;
    }
    let out = b.cli_json(&["toggle", "off"]);
    assert_eq!(out["active"], false);
    let t = std::time::Instant::now();
    for n in [&a, &c] {
        n.wait_peer(
            &b.peer_id,
            Duration::from_secs(10),
            "b to show as active: false",
            |p| p["active"] == false,
        )
        .await;
    }
    eprintln!("toggle off seen by both peers after {:?}", t.elapsed());
    // The local announcement agrees, and a toggle back on propagates too.
    assert_eq!(b.cli_json(&["announce"])["active"], false);
    b.cli_json(&["toggle", "on"]);
    a.wait_peer(
        &b.peer_id,
        Duration::from_secs(10),
        "b active again at a",
        |p| p["active"] == true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_and_restart_keeps_identity_peers_and_announcements() {
    let a = TestNode::start(&[]).await;
    let b = TestNode::start(&["--bootstrap", &a.addr]).await;
    // A run-time change that must survive too.
    b.cli_json(&["announce", "--price", "echo=0.05", "--burst", "3"]);
    a.wait_peer(
        &b.peer_id,
        Duration::from_secs(10),
        "a to know b's new price",
        |p| p["announcement"]["prices"]["echo"] == 50_000,
    )
    .await;
    b.wait_peer(&a.peer_id, Duration::from_secs(10), "b to know a", |_| true)
        .await;
    let b_id = b.peer_id.clone();
    let a_id = a.peer_id.clone();
    let mut a = a;
    a.kill9();
    // b keeps the registry even though a is gone; kill -9 b too, then restart it alone.
    let b = b.restart().await;
    assert_eq!(b.peer_id, b_id, "identity survives kill -9");
    let peers = b.verified_peers();
    let known = peers
        .iter()
        .find(|p| p["peer_id"] == a_id.as_str())
        .expect("a still known after restart");
    assert_eq!(known["announcement"]["node_id"], a_id.as_str());
    let own = b.cli_json(&["announce"]);
    assert_eq!(
        own["prices"]["echo"], 50_000,
        "run-time price change survives"
    );
    assert_eq!(own["burst"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_input_gets_the_documented_error_and_changes_nothing() {
    use reqwest::Method;
    let n = TestNode::start(&[]).await;
    let before = n.get("/announce").await;
    let token = n.token.clone();

    let (s, v) = n
        .request(
            Method::POST,
            "/toggle",
            Some(&token),
            b"{\"active\": tru".to_vec(),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "invalid_request");
    assert!(
        v["message"].as_str().unwrap().contains("malformed JSON"),
        "{v}"
    );

    let (s, v) = n
        .request(
            Method::POST,
            "/toggle",
            Some(&token),
            b"{\"actve\": false}".to_vec(),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        v["message"].as_str().unwrap().contains("actve"),
        "names the bad field: {v}"
    );

    let (s, v) = n
        .request(
            Method::POST,
            "/toggle",
            None,
            b"{\"active\": false}".to_vec(),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    let (s, v) = n
        .request(
            Method::POST,
            "/toggle",
            Some("wrong-token"),
            b"{\"active\": false}".to_vec(),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));

    let big = format!(
        "{{\"prices\": {{\"x\": \"{}\"}}}}",
        "1".repeat(2 * 1024 * 1024)
    );
    let (s, v) = n
        .request(Method::POST, "/announce", Some(&token), big.into_bytes())
        .await;
    assert_eq!((s, v["error"].as_str()), (413, Some("too_large")));

    let (s, v) = n
        .request(
            Method::POST,
            "/announce",
            Some(&token),
            b"{\"prices\": {\"compute\": -1}}".to_vec(),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = n.request(Method::GET, "/nope", None, vec![]).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));

    let mut after = n.get("/announce").await;
    let mut before = before;
    // Only the issue time may differ.
    after["issued_at_ms"] = Value::Null;
    before["issued_at_ms"] = Value::Null;
    assert_eq!(before, after, "rejected requests changed nothing");
    // And the node still serves.
    assert_eq!(n.get("/status").await["peer_id"], n.peer_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_within_two_seconds_and_flushes() {
    let a = TestNode::start(&[]).await;
    let mut b = TestNode::start(&["--bootstrap", &a.addr]).await;
    b.wait_peer(&a.peer_id, Duration::from_secs(10), "b to know a", |_| true)
        .await;
    let (took, status) = b.terminate();
    eprintln!("SIGTERM → exit in {took:?}");
    assert!(status.success(), "clean exit, got {status}");
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert!(
        !b.dir.join("api.url").exists(),
        "api.url removed on clean shutdown"
    );
    assert!(b.log().contains("node stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_higher_id_bootstrap_node_on_a_new_port_rejoins() {
    // Two identities, ordered: the bootstrap node gets the higher peer id, so the other
    // side would normally be the one to dial — but it only knows the old address.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ids: Vec<String> = dirs
        .iter()
        .map(|d| {
            let out = std::process::Command::new(offgrid_e2e::bin("offgrid-node"))
                .arg("--data-dir")
                .arg(d.path())
                .args(["id", "--json"])
                .output()
                .unwrap();
            serde_json::from_slice::<Value>(&out.stdout).unwrap()["peer_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let [d0, d1] = dirs;
    let (high, low) = if ids[0] > ids[1] { (d0, d1) } else { (d1, d0) };
    let boot_dir = high.path().to_owned();
    let boot = TestNode::start_in(boot_dir.clone(), Some(high), vec![]).await;
    let other = TestNode::start_in(
        low.path().to_owned(),
        Some(low),
        vec!["--bootstrap".into(), boot.addr.clone()],
    )
    .await;
    other
        .wait_peer(
            &boot.peer_id,
            Duration::from_secs(10),
            "the two to meet",
            |p| p["connected"] == true,
        )
        .await;
    let old_addr = boot.addr.clone();
    let boot = boot.restart().await;
    assert_ne!(
        boot.addr, old_addr,
        "port 0 gives a new port after the restart"
    );
    let t = std::time::Instant::now();
    other
        .wait_peer(
            &boot.peer_id,
            Duration::from_secs(40),
            "the restarted node to reconnect",
            |p| p["connected"] == true,
        )
        .await;
    eprintln!("reconnected {:?} after the restart", t.elapsed());
}
