//! Storage end to end with real processes: put/get across many hosts, loss tolerance,
//! corruption, no plaintext on hosts, resume after kill -9, refusals, sharing, repair and
//! policies. Helpers are in `storage_common.rs`.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_common;

use std::time::Duration;

use offgrid_e2e::{wait_until, TestNode};
use serde_json::{json, Value};
use storage_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec_12_of_20_leaves_no_plaintext_on_hosts_and_survives_8_dead_hosts() {
    let (a, mut hosts) = mesh(20, None).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = b"OFFGRID-PLAINTEXT-MARKER-7f3a9c";
    let src = write_random(dir.path(), "big.bin", 16 << 20, 1, Some(marker));
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--mode",
        "ec",
        "--k",
        "12",
        "--n",
        "20",
    ]);
    assert_eq!(put["k"], 12);
    assert_eq!(put["n"], 20);
    assert_eq!(put["size"], 16 << 20);
    let segments = put["segments"].as_u64().unwrap();
    assert_eq!(
        put["shards_placed"].as_u64().unwrap(),
        segments * 20,
        "{put}"
    );
    assert_eq!(put["hosts"], 20);
    let asset = put["asset_id"].as_str().unwrap().to_owned();

    for h in &hosts {
        assert!(
            !dir_contains(h.data_dir(), marker),
            "host {} holds the plaintext marker",
            h.peer_id
        );
    }
    // Every host holds shards and the manifest (so a reader can find it there).
    for h in &hosts {
        let st = h.cli_json(&["storage", "status"]);
        assert!(st["host"]["shards"].as_u64().unwrap() >= segments, "{st}");
    }

    for h in hosts.iter_mut().take(8) {
        h.kill9();
    }
    let out = dir.path().join("back.bin");
    let got = a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_eq!(got["size"], 16 << 20);
    assert!(got["unreachable_hosts"].as_u64().unwrap() <= 8);
    assert_same_file(&src, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_r5_survives_4_dead_hosts_and_a_corrupt_shard_is_bypassed() {
    let (a, mut hosts) = mesh(5, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "rep.bin", 3 << 20, 2, None);
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--mode",
        "rep",
        "--r",
        "5",
        "--shard-size",
        "256KiB",
    ]);
    assert_eq!(put["mode"], "rep");
    assert_eq!(put["n"], 5);
    let asset = put["asset_id"].as_str().unwrap().to_owned();

    // Four hosts killed: the fifth still has every replica.
    for h in hosts.iter_mut().take(4) {
        h.kill9();
    }
    let out = dir.path().join("four-dead.bin");
    a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);

    // Back with two hosts, each with rot in the replicas the other has intact (replicas
    // share their content-addressed name): whichever host a get asks first, it meets rot
    // in some segment, detects it and takes the other replica.
    let h3 = hosts.remove(3).restart().await;
    hosts.insert(3, h3);
    a.wait_peer(
        &hosts[3].peer_id,
        Duration::from_secs(60),
        "the restarted host to reconnect",
        |p| p["connected"] == true,
    )
    .await;
    let rot3 = corrupt_shards(hosts[3].data_dir(), |name| name_parity(name) == 0);
    let rot4 = corrupt_shards(hosts[4].data_dir(), |name| name_parity(name) == 1);
    assert!(
        rot3 > 0 && rot4 > 0,
        "rot {rot3} and {rot4}: both halves must be non-empty"
    );
    let out2 = dir.path().join("with-rot.bin");
    let got = a.cli_json(&["get", &asset, "-o", out2.to_str().unwrap()]);
    assert_same_file(&src, &out2);
    let detected: u64 = [3, 4]
        .iter()
        .map(|i| {
            hosts[*i].cli_json(&["storage", "status"])["host"]["corrupt"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(
        got["corrupt_shards"].as_u64().unwrap() >= 1 && detected >= 1,
        "the rot was not detected: get {got}, hosts {detected}"
    );
    // With every host dead the error says how many shards were found.
    hosts[4].kill9();
    hosts[3].kill9();
    let out3 = dir.path().join("none.bin");
    let fail = a.cli(&["get", &asset, "-o", out3.to_str().unwrap()]);
    assert!(!fail.status.success());
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(
        err.contains("not_enough_shards") && err.contains("only 0 of 5"),
        "{err}"
    );
    assert!(
        !out3.exists(),
        "a failed get must leave nothing at the destination"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_ec_shard_on_disk_is_detected_and_bypassed() {
    let (a, hosts) = mesh(6, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "ec.bin", 1 << 20, 3, None);
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "3",
        "--n",
        "6",
        "--shard-size",
        "16KiB",
    ]);
    let asset = put["asset_id"].as_str().unwrap().to_owned();
    // A clean get shows which hosts a get asks first (the fastest): rot every shard on the
    // two that served the most, so the next get meets rot. Each segment still has 4 good
    // shards of 6, k = 3.
    let clean = dir.path().join("clean.bin");
    a.cli_json(&["get", &asset, "-o", clean.to_str().unwrap()]);
    let mut served: Vec<(u64, usize)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let v = h.cli_json(&["storage", "status"]);
            (v["host"]["served_shards"].as_u64().unwrap(), i)
        })
        .collect();
    served.sort_unstable_by(|x, y| y.cmp(x));
    let rotted = corrupt_all_shards(hosts[served[0].1].data_dir())
        + corrupt_all_shards(hosts[served[1].1].data_dir());
    assert!(rotted > 0);
    let out = dir.path().join("back.bin");
    let got = a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
    // A hedged get asks k + 2 shards at once and may finish on good ones before a rotten
    // answer arrives (that batch is then cancelled), so the rot is seen by the get or, in
    // any case, by the rotted hosts when they read it for the get.
    let (h0, h1) = (&hosts[served[0].1], &hosts[served[1].1]);
    wait_until(Duration::from_secs(10), "the rot to be detected", || {
        let seen = got["corrupt_shards"].as_u64().unwrap();
        let at_hosts: u64 = [h0, h1]
            .iter()
            .map(|h| {
                h.cli_json(&["storage", "status"])["host"]["corrupt"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        async move { (seen + at_hosts >= 1).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_kill9_of_the_putting_node_sends_only_missing_shards() {
    let (a, hosts) = mesh(8, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "resume.bin", 24 << 20, 4, None);
    let shard = 16 * 1024u64;
    let body = json!({ "path": src, "mode": "ec", "k": 4, "n": 8, "shard_size": shard });
    let (code, started) = a
        .request(
            reqwest::Method::POST,
            "/storage/put",
            Some(&a.token),
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let op = started["op_id"].as_str().unwrap().to_owned();
    let total_shards = wait_until(
        Duration::from_secs(120),
        "a quarter of the shards placed",
        || async {
            let v = a.get(&format!("/storage/ops/{op}")).await;
            assert_eq!(
                v["state"], "running",
                "the put finished before it could be killed: {v}"
            );
            let p = &v["progress"];
            let (done, total) = (p["shards_done"].as_u64()?, p["shards_total"].as_u64()?);
            (total > 0 && done * 4 >= total).then_some(total)
        },
    )
    .await;
    let mut a = a;
    a.kill9();
    let before = settled_received_bytes(&hosts).await;
    assert!(before > 0);

    let a = a.restart().await;
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--mode",
        "ec",
        "--k",
        "4",
        "--n",
        "8",
        "--shard-size",
        "16KiB",
    ]);
    assert_eq!(put["resumed"], true, "{put}");
    let after = settled_received_bytes(&hosts).await;
    let all = total_shards * shard;
    // Everything sent over both runs: all shards once, plus those in flight or acknowledged
    // but not yet saved at the kill (up to `max_in_flight` = 16 batches of up to 64 shards,
    // 80 were seen on a loaded machine). Sending everything again would cost `before` (at
    // least a quarter of the file) more; the bound is a quarter of that.
    let slack = (before / 4).max(64 * shard);
    eprintln!(
        "resume: {before} bytes received before the kill, {after} in all, {all} bytes of shards, {} shards sent by the resumed put",
        put["shards_sent"]
    );
    assert!(
        after <= all + slack,
        "hosts received {after} bytes for {all} bytes of shards ({before} before the kill)"
    );
    assert!(put["shards_sent"].as_u64().unwrap() < total_shards, "{put}");
    let asset = put["asset_id"].as_str().unwrap();
    let out = dir.path().join("back.bin");

    a.cli_json(&["get", asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_over_quota_refuses_and_the_shard_is_placed_elsewhere() {
    let a = TestNode::start(&[]).await;
    let addr = a.addr.clone();
    let mut hosts = start_many(4, &["--bootstrap", &addr], None).await;
    let tiny = TestNode::start_with(
        &["--bootstrap", &addr],
        &[],
        Some("[storage]\nquota_bytes = 1000\n"),
    )
    .await;
    let tiny_id = tiny.peer_id.clone();
    hosts.push(tiny);
    wait_for_hosts(&a, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "q.bin", 512 << 10, 5, None);
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "2",
        "--n",
        "4",
        "--shard-size",
        "16KiB",
    ]);
    let segments = put["segments"].as_u64().unwrap();
    assert_eq!(
        put["shards_placed"].as_u64().unwrap(),
        segments * 4,
        "{put}"
    );
    let asset = put["asset_id"].as_str().unwrap();
    let ls = a.cli_json(&["ls"]);
    assert!(ls["assets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["asset_id"] == asset));
    let tiny_status = hosts[4].cli_json(&["storage", "status"]);
    assert_eq!(tiny_status["host"]["shards"], 0, "{tiny_status}");
    // Every segment's shards are on distinct hosts.
    let check = a.cli_json(&["storage", "check", asset]);
    assert_eq!(check["reachable_min"], 4, "{check}");
    assert!(
        !check.to_string().contains(&tiny_id) || check["hosts_down"].as_array().unwrap().is_empty()
    );
    let out = dir.path().join("back.bin");
    a.cli_json(&["get", asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_peers_need_a_share_and_a_wrong_key_is_refused_clearly() {
    let (a, hosts) = mesh(4, None).await;
    let b = TestNode::start(&["--bootstrap", &a.addr]).await;
    wait_for_hosts(&b, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "s.bin", 300 << 10, 6, None);
    let put = a.cli_json(&["put", src.to_str().unwrap(), "--k", "2", "--n", "4"]);
    let asset = put["asset_id"].as_str().unwrap().to_owned();
    let out = dir.path().join("b.bin");

    // Someone else's asset: B finds the manifest on the hosts but holds no key.
    let fail = b.cli(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert!(!fail.status.success());
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(
        err.contains("not_shared") && err.contains(&b.peer_id),
        "{err}"
    );

    // A wrong content key.
    let bad = "11".repeat(32);
    let fail = b.cli(&["get", &asset, "-o", out.to_str().unwrap(), "--key", &bad]);
    let err = String::from_utf8_lossy(&fail.stderr);
    assert!(!fail.status.success() && err.contains("wrong_key"), "{err}");
    assert!(!out.exists());

    // B cannot share or repair A's asset.
    let fail = b.cli(&["share", &asset, &hosts[0].peer_id]);
    assert!(!fail.status.success());

    // After a share, B gets it.
    let shared = a.cli_json(&["share", &asset, &b.peer_id]);
    assert_eq!(shared["readers"], 2);
    let got = b.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_eq!(got["size"], 300 << 10);
    assert_same_file(&src, &out);
    let ls = b.cli_json(&["ls"]);
    let row = ls["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["asset_id"] == asset.as_str())
        .cloned()
        .unwrap();
    assert_eq!(row["owned"], false);

    // Bad input gets the documented JSON error shape.
    let (code, v) = a
        .request(
            reqwest::Method::POST,
            "/storage/put",
            Some(&a.token),
            br#"{"path":"relative.bin"}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(v["error"], "invalid_request");
    assert!(v["message"].as_str().unwrap().contains("absolute"));
    let (code, v) = a
        .request(
            reqwest::Method::POST,
            "/storage/get",
            Some(&a.token),
            br#"{"asset":"xyz","out":"/tmp/x"}"#.to_vec(),
        )
        .await;
    assert_eq!((code, v["error"].clone()), (400, json!("invalid_request")));
    let (code, v) = a
        .request(
            reqwest::Method::POST,
            "/storage/put",
            None,
            br#"{"path":"/x"}"#.to_vec(),
        )
        .await;
    assert_eq!((code, v["error"].clone()), (401, json!("unauthorized")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_after_6_hosts_die_brings_every_segment_back_to_20_shards() {
    let (a, mut hosts) = mesh(20, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "r.bin", 2 << 20, 7, None);
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "12",
        "--n",
        "20",
        "--shard-size",
        "16KiB",
    ]);
    let asset = put["asset_id"].as_str().unwrap().to_owned();
    for h in hosts.iter_mut().take(6) {
        h.kill9();
    }
    let check = a.cli_json(&["storage", "check", &asset]);
    assert_eq!(check["reachable_min"], 14, "{check}");
    let fresh = start_many(6, &["--bootstrap", &a.addr], None).await;
    // The dead hosts are still listed (their last announcement said active), so a count
    // of 20 would pass before any new host is known: wait for each new one by id.
    wait_for_these_hosts(&a, &fresh).await;
    let report = a.cli_json(&["repair", &asset]);
    assert_eq!(report["reachable_min_after"], 20, "{report}");
    let check = a.cli_json(&["storage", "check", &asset]);
    let counts: Vec<u64> = check["reachable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert!(counts.iter().all(|c| *c == 20), "{check}");
    // The new hosts got the rebuilt shards, and the file still comes back.
    for h in &fresh {
        assert!(
            h.cli_json(&["storage", "status"])["host"]["shards"]
                .as_u64()
                .unwrap()
                > 0
        );
    }
    let out = dir.path().join("back.bin");
    a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_policy_verifies_and_a_tampered_one_does_not() {
    let (a, _hosts) = mesh(2, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "p.bin", 10_000, 8, None);
    let put = a.cli_json(&["put", src.to_str().unwrap(), "--mode", "rep", "--r", "2"]);
    let asset = put["asset_id"].as_str().unwrap();
    let file = dir.path().join("policy.json");
    a.cli_json(&[
        "policy",
        "sign",
        "--asset",
        asset,
        "--license",
        "MIT",
        "--mode",
        "rep",
        "--r",
        "5",
        "--safety-tag",
        "reviewed",
        "--safety-tag",
        "no-pii",
        "-o",
        file.to_str().unwrap(),
    ]);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for field in [
        "asset_id",
        "license",
        "distribution",
        "safety_tags",
        "verify_key",
        "signature",
    ] {
        assert!(doc.get(field).is_some(), "policy lacks {field}: {doc}");
    }
    let ok = a.cli_json(&["policy", "verify", file.to_str().unwrap()]);
    assert_eq!(ok["valid"], true);
    assert_eq!(ok["policy"]["distribution"], json!({"mode": "rep", "r": 5}));
    let mut bad = doc.clone();
    bad["license"] = "Proprietary".into();
    std::fs::write(&file, bad.to_string()).unwrap();
    let out = a.cli(&["policy", "verify", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature does not verify"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_repair_brings_every_segment_back_to_n_shards_without_the_repair_command() {
    // The owner checks its assets every second, and any missing shard is below the
    // threshold (margin n - k = 4), so the outcome does not depend on which round first sees
    // which new host.
    let owner = "[storage]\nrepair_interval_s = 1\nrepair_margin = 4\n";
    let (a, mut hosts) = mesh_with(Some(owner), 8, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "bg.bin", 300 << 10, 9, None);
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "4",
        "--n",
        "8",
        "--shard-size",
        "16KiB",
    ]);
    let asset = put["asset_id"].as_str().unwrap().to_owned();
    let segments = put["segments"].as_u64().unwrap();
    assert_eq!(put["hosts"], 8, "{put}");
    assert_eq!(put["shards_placed"].as_u64().unwrap(), segments * 8);
    for h in hosts.iter_mut().take(3) {
        h.kill9();
    }
    // Every live host holds a shard of every segment, so the timer has nowhere to put
    // rebuilt shards yet: each segment stays at 5 of 8.
    let counts = reachable(&a, &asset).await;
    assert!(counts.iter().all(|c| *c == 5), "{counts:?}");
    let fresh = start_many(3, &["--bootstrap", &a.addr], None).await;
    // The dead hosts are still listed (their last announcement said active), so wait for
    // each new one by id.
    wait_for_these_hosts(&a, &fresh).await;
    let t = std::time::Instant::now();
    wait_until(
        Duration::from_secs(60),
        "the background repair to bring every segment back to 8 shards",
        || async {
            let counts = reachable(&a, &asset).await;
            counts.iter().all(|c| *c == 8).then_some(())
        },
    )
    .await;
    eprintln!(
        "background repair: back to 8 of 8 {} ms after the new hosts were known",
        t.elapsed().as_millis()
    );
    // The repair command never ran: no operation was started on the owner.
    let ls = a.cli_json(&["ls"]);
    let row = ls["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["asset_id"] == asset.as_str())
        .cloned()
        .unwrap();
    assert!(row["revision"].as_u64().unwrap() >= 1, "{row}");
    assert!(
        a.log().contains("background repair"),
        "no background repair in the log"
    );
    for h in &fresh {
        let held = h.cli_json(&["storage", "status"])["host"]["shards"]
            .as_u64()
            .unwrap();
        assert_eq!(held, segments, "a new host holds one shard per segment");
    }
    let out = dir.path().join("back.bin");
    a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
}

/// Owner config for the cancellation tests: one store request in flight, so that a put of
/// a few tens of MiB takes long enough to be caught mid-flight.
const SLOW_PUT: &str = "[storage]\nmax_in_flight = 1\n";

/// Starts a put through the API and returns its operation id once some but not all of its
/// shards are placed.
async fn put_caught_mid_flight(a: &TestNode, body: &Value) -> String {
    op_caught_mid_flight(a, "/storage/put", body).await
}

/// Starts a storage operation (`POST path` with `body`) and returns its id once it has done
/// some but not all of its shards; panics if it ends first.
async fn op_caught_mid_flight(a: &TestNode, path: &str, body: &Value) -> String {
    let (code, started) = a
        .request(
            reqwest::Method::POST,
            path,
            Some(&a.token),
            body.to_string().into_bytes(),
        )
        .await;
    assert_eq!(code, 202, "{path}: {started}");
    let op = started["op_id"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(60),
        "the operation to do its first shards",
        || async {
            let v = a.get(&format!("/storage/ops/{op}")).await;
            assert_eq!(
                v["state"], "running",
                "{path} ended before it could be caught mid-flight: {v}"
            );
            let p = &v["progress"];
            let (done, total) = (p["shards_done"].as_u64()?, p["shards_total"].as_u64()?);
            (done > 0 && done < total).then_some(())
        },
    )
    .await;
    op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_cancelled_mid_flight_ends_cancelled_keeps_its_progress_and_resumes() {
    let (a, hosts) = mesh_with(Some(SLOW_PUT), 4, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "cancel.bin", 16 << 20, 10, None);
    let shard = 16 * 1024u64;
    let body = json!({ "path": src, "mode": "ec", "k": 2, "n": 4, "shard_size": shard });
    let t = std::time::Instant::now();
    let op = put_caught_mid_flight(&a, &body).await;
    let caught = t.elapsed();

    // Bad input first, while it runs: the documented JSON error shape.
    let (code, v) = a
        .request(
            reqwest::Method::DELETE,
            &format!("/storage/ops/{op}"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(
        (code, v["error"].clone()),
        (401, json!("unauthorized")),
        "{v}"
    );
    let (code, v) = a
        .request(
            reqwest::Method::DELETE,
            "/storage/ops/no-such-op",
            Some(&a.token),
            Vec::new(),
        )
        .await;
    assert_eq!((code, v["error"].clone()), (404, json!("not_found")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("no-such-op"), "{v}");

    let t = std::time::Instant::now();
    let (code, v) = a
        .request(
            reqwest::Method::DELETE,
            &format!("/storage/ops/{op}"),
            Some(&a.token),
            Vec::new(),
        )
        .await;
    assert_eq!(code, 200, "the node answers once the put has ended: {v}");
    let cancel_ms = t.elapsed().as_millis();
    assert_eq!(v["state"], "cancelled", "{v}");
    assert_eq!(v["error"], "cancelled", "{v}");
    assert!(v["message"].as_str().unwrap().contains("resume"), "{v}");
    let total_shards = v["progress"]["shards_total"].as_u64().unwrap();
    let done = v["progress"]["shards_done"].as_u64().unwrap();
    assert!(done > 0 && done < total_shards, "{v}");
    // The state stays cancelled; a second DELETE changes nothing.
    let again = a.get(&format!("/storage/ops/{op}")).await;
    assert_eq!(again["state"], "cancelled", "{again}");
    let (code, again) = a
        .request(
            reqwest::Method::DELETE,
            &format!("/storage/ops/{op}"),
            Some(&a.token),
            Vec::new(),
        )
        .await;
    assert_eq!(
        (code, again["state"].clone()),
        (200, json!("cancelled")),
        "{again}"
    );

    // Nothing runs any more and the upload progress is kept for a resume.
    let status = a.get("/storage/status").await;
    assert_eq!(status["ops_running"], 0, "{status}");
    assert_eq!(status["uploads_in_progress"], 1, "{status}");
    // The requests in flight were dropped: the hosts stop receiving well short of the file.
    let before = settled_received_bytes(&hosts).await;
    let all = total_shards * shard;
    assert!(
        before > 0 && before < all,
        "hosts received {before} of {all} bytes"
    );

    let t = std::time::Instant::now();
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "2",
        "--n",
        "4",
        "--shard-size",
        "16KiB",
    ]);
    assert_eq!(put["resumed"], true, "{put}");
    assert!(put["shards_sent"].as_u64().unwrap() < total_shards, "{put}");
    let after = settled_received_bytes(&hosts).await;
    // All shards once, plus at most the batches in flight at the cancel (one request of at
    // most 64 shards with max_in_flight = 1) and acknowledgements not yet saved.
    assert!(
        after <= all + 128 * shard,
        "hosts received {after} bytes for {all}"
    );
    eprintln!(
        "cancel: caught after {} ms, cancelled in {cancel_ms} ms with {done}/{total_shards} shards, resumed put {} ms ({} shards sent)",
        caught.as_millis(),
        t.elapsed().as_millis(),
        put["shards_sent"]
    );
    let asset = put["asset_id"].as_str().unwrap();
    let out = dir.path().join("back.bin");

    get_cancelled_mid_flight_leaves_nothing(&a, asset).await;

    a.cli_json(&["get", asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
}

/// Starts a get of `asset`, cancels it once it has fetched some shards, and checks that it
/// ends `cancelled` and leaves nothing at the destination, not even its temporary file (one
/// fetch in flight at a time keeps it running long enough).
async fn get_cancelled_mid_flight_leaves_nothing(a: &TestNode, asset: &str) {
    let outs = tempfile::tempdir().unwrap();
    let partial = outs.path().join("partial.bin");
    let body = json!({ "asset": asset, "out": partial });
    let get_op = op_caught_mid_flight(a, "/storage/get", &body).await;
    let (code, v) = a
        .request(
            reqwest::Method::DELETE,
            &format!("/storage/ops/{get_op}"),
            Some(&a.token),
            Vec::new(),
        )
        .await;
    assert_eq!((code, v["state"].clone()), (200, json!("cancelled")), "{v}");
    let left: Vec<_> = std::fs::read_dir(outs.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "a cancelled get left {left:?}");
}

/// Runs `offgrid put` (k 2, n 4, 16 KiB shards) on `src`, sends it `signal` once the hosts
/// have received more than `received_before` bytes, and returns its exit code and the
/// operation id named in its last line, after checking that line.
async fn signal_put_mid_flight(
    a: &TestNode,
    hosts: &[TestNode],
    src: &std::path::Path,
    received_before: u64,
    signal: &str,
) -> (Option<i32>, String) {
    let cli = a.cli_spawn(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "2",
        "--n",
        "4",
        "--shard-size",
        "16KiB",
    ]);
    let pid = cli.id();
    // The CLI listens for signals before it starts the put, so once hosts receive its
    // shards the signal reaches its handler.
    wait_until(
        Duration::from_secs(60),
        "the CLI's put to send shards",
        || async {
            let status = a.get("/storage/status").await;
            let mut received = 0;
            for h in hosts {
                received += h.get("/storage/status").await["host"]["received_bytes"]
                    .as_u64()
                    .unwrap_or(0);
            }
            (status["ops_running"] == 1 && received > received_before).then_some(())
        },
    )
    .await;
    offgrid_e2e::send_signal(pid, signal);
    let out = offgrid_e2e::wait_output(cli, Duration::from_secs(30), "offgrid put").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let line = stderr.lines().last().unwrap_or_default();
    let rest = line
        .strip_prefix("offgrid: put cancelled (operation ")
        .unwrap_or_else(|| panic!("unexpected last line after SIG{signal}: {stderr}"));
    assert!(
        line.ends_with("its progress is kept: run the same `offgrid put` again to resume"),
        "{line}"
    );
    (
        out.status.code(),
        rest[..rest.find(')').unwrap()].to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_or_sigterm_to_offgrid_put_cancels_the_put_on_the_node() {
    let (a, hosts) = mesh_with(Some(SLOW_PUT), 4, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "sigint.bin", 16 << 20, 11, None);
    let (code, op) = signal_put_mid_flight(&a, &hosts, &src, 0, "INT").await;
    assert_eq!(code, Some(130), "SIGINT exits 128 + 2");
    let v = a.get(&format!("/storage/ops/{op}")).await;
    assert_eq!(
        (v["kind"].clone(), v["state"].clone()),
        (json!("put"), json!("cancelled")),
        "{v}"
    );
    let status = a.get("/storage/status").await;
    assert_eq!(status["ops_running"], 0, "{status}");
    assert_eq!(status["uploads_in_progress"], 1, "{status}");

    // The same put resumes, and SIGTERM cancels it the same way.
    let before = settled_received_bytes(&hosts).await;
    let (code, op2) = signal_put_mid_flight(&a, &hosts, &src, before, "TERM").await;
    assert_eq!(code, Some(143), "SIGTERM exits 128 + 15");
    assert_ne!(op, op2);
    let v = a.get(&format!("/storage/ops/{op2}")).await;
    assert_eq!(v["state"], "cancelled", "{v}");
    let status = a.get("/storage/status").await;
    assert_eq!(
        (
            status["ops_running"].clone(),
            status["uploads_in_progress"].clone()
        ),
        (json!(0), json!(1)),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_put_stops_the_node_within_2_s_and_the_put_resumes_after_restart() {
    let (a, hosts) = mesh_with(Some(SLOW_PUT), 4, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "term.bin", 16 << 20, 11, None);
    let shard = 16 * 1024u64;
    let body = json!({ "path": src, "mode": "ec", "k": 2, "n": 4, "shard_size": shard });
    let op = put_caught_mid_flight(&a, &body).await;
    let total_shards = a.get(&format!("/storage/ops/{op}")).await["progress"]["shards_total"]
        .as_u64()
        .unwrap();

    // The put in flight is cancelled with the node: it saves its progress and the node
    // still stops within the lifecycle's 2 s.
    let mut a = a;
    let (took, status) = a.terminate();
    eprintln!("SIGTERM mid-put: exit in {took:?} ({status})");
    assert!(status.success(), "the node exited with {status}");
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    let before = settled_received_bytes(&hosts).await;

    let a = a.restart().await;
    let status = a.get("/storage/status").await;
    assert_eq!(status["uploads_in_progress"], 1, "{status}");
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "2",
        "--n",
        "4",
        "--shard-size",
        "16KiB",
    ]);
    assert_eq!(put["resumed"], true, "{put}");
    assert!(put["shards_sent"].as_u64().unwrap() < total_shards, "{put}");
    let after = settled_received_bytes(&hosts).await;
    let all = total_shards * shard;
    // All shards once, plus at most the batch in flight at the stop (one request of at most
    // 64 shards with max_in_flight = 1).
    assert!(
        after <= all + 64 * shard,
        "hosts received {after} bytes for {all} ({before} before the stop)"
    );
    let out = dir.path().join("back.bin");
    a.cli_json(&[
        "get",
        put["asset_id"].as_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_same_file(&src, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_reports_to_the_failover_monitor_which_alerts_when_its_hosts_stall() {
    let owner = "[storage]\nmax_in_flight = 1\n\n[failover]\nmin_progress_delta = 0.001\nstall_age_s = 3\ncooldown_s = 1\ncheck_interval_ms = 100\n";
    let (a, hosts) = mesh_with(Some(owner), 4, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "stall.bin", 16 << 20, 12, None);
    let body = json!({ "path": src, "mode": "ec", "k": 2, "n": 4, "shard_size": 16 * 1024 });
    let op = put_caught_mid_flight(&a, &body).await;

    // The put is an upload item; hosts ack it once it is complete, so none yet.
    let item = wait_until(Duration::from_secs(10), "the upload item", || async {
        let v = a.get("/quorum/items?kind=upload").await;
        v["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(item["acks"], json!([]), "{item}");
    assert_eq!(item["reached"], false, "{item}");
    let asset = item["id"].as_str().unwrap().to_owned();

    // While it moves there is no alert; hosts that keep their connections but answer
    // nothing stall it, and an alert names it.
    let before = a.get("/quorum/alerts").await;
    assert_eq!(before["alerts"], json!([]), "{before}");
    for h in &hosts {
        offgrid_e2e::send_signal(h.pid(), "STOP");
    }
    let alert = wait_until(
        Duration::from_secs(30),
        "a stall alert for the upload",
        || async {
            let v = a.get("/quorum/alerts").await;
            v["alerts"]
                .as_array()?
                .iter()
                .find(|al| al["id"] == asset.as_str())
                .cloned()
        },
    )
    .await;
    assert!(
        alert["message"].as_str().unwrap().contains("no progress"),
        "{alert}"
    );
    for h in &hosts {
        offgrid_e2e::send_signal(h.pid(), "CONT");
    }

    // Resumed hosts let it finish: progress 1, one ack per host that holds shards.
    let done = wait_until(Duration::from_secs(120), "the put to end", || async {
        let v = a.get(&format!("/storage/ops/{op}?wait_ms=2000")).await;
        (v["state"] != "running").then_some(v)
    })
    .await;
    assert_eq!(done["state"], "done", "{done}");
    let item = a.get(&format!("/quorum/items/upload/{asset}")).await;
    assert_eq!(item["progress"], 1.0, "{item}");
    assert_eq!(item["reached"], true, "{item}");
    let mut acked: Vec<String> = item["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ack| ack["node"].as_str().unwrap().to_owned())
        .collect();
    acked.sort();
    let mut expected: Vec<String> = hosts.iter().map(|h| h.peer_id.clone()).collect();
    expected.sort();
    assert_eq!(acked, expected, "{item}");
    let out = dir.path().join("back.bin");
    a.cli_json(&["get", &asset, "-o", out.to_str().unwrap()]);
    assert_same_file(&src, &out);
}
