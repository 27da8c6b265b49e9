//! Core's adapter end to end: `POST /auction` exactly per the contract, async jobs,
//! metrics and the Python client, against real node processes.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ed25519_dalek::Signer;
use hmac::{Hmac, KeyInit, Mac};
use offgrid_e2e::{core_headers, wait_until, TestNode};
use serde_json::{json, Value};

const KEY: &str = "shared-secret";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn hmac_hex(key: &str, msg: &str) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Canonical form written out by hand (keys sorted, compact) — what Python's
/// `json.dumps(sort_keys=True, separators=(",", ":"))` prints for this body.
fn canonical(job_id: &str, job_type: &str, ts: i64, payload: &str, timeout_s: u64) -> String {
    format!(
        r#"{{"job_id":"{job_id}","payload":{payload},"size":0.25,"timeout_s":{timeout_s},"timestamp":{ts},"type":"{job_type}"}}"#
    )
}

/// The body as Core sends it: other key order, spaces, and the signature.
fn body(
    job_id: &str,
    job_type: &str,
    ts: i64,
    payload: &str,
    timeout_s: u64,
    sig: &str,
) -> Vec<u8> {
    format!(
        r#"{{"job_id": "{job_id}", "type": "{job_type}", "size": 0.25, "timestamp": {ts}, "payload": {payload}, "timeout_s": {timeout_s}, "signature": "{sig}"}}"#
    )
    .into_bytes()
}

/// A body signed over its canonical form; `payload` is sent with spaces after ':' and ','
/// so the node must canonicalise it.
fn signed(key: &str, job_id: &str, ts: i64, payload: &str) -> Vec<u8> {
    let sig = hmac_hex(key, &canonical(job_id, "echo", ts, payload, 10));
    let spaced = payload.replace("\":", "\": ").replace(",\"", ", \"");
    body(job_id, "echo", ts, &spaced, 10, &sig)
}

async fn post(
    n: &TestNode,
    path: &str,
    bytes: Vec<u8>,
    headers: &[(&str, String)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", n.api))
        .header("content-type", "application/json")
        .body(bytes);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), h)
}

/// A broker with Core keys and `hosts` echo hosts, all known before returning.
async fn setup(hosts: usize, host_cfg: &str, broker_cfg: &str) -> (TestNode, Vec<TestNode>) {
    let broker = TestNode::start_with(
        &[],
        &[("OFFGRID_AUTH_KEY", "old-key,shared-secret")],
        Some(broker_cfg),
    )
    .await;
    let mut hs = Vec::new();
    for _ in 0..hosts {
        hs.push(TestNode::start_with(&["--bootstrap", &broker.addr], &[], Some(host_cfg)).await);
    }
    wait_until(
        Duration::from_secs(15),
        "hosts known and active",
        || async { (broker.get("/status").await["peers"]["active_hosts"] == hosts).then_some(()) },
    )
    .await;
    (broker, hs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auction_contract_success_errors_idempotency_and_header_variant() {
    let (broker, hosts) = setup(1, "", "").await;

    // Valid HMAC → completed, in Core's shape.
    let b = signed(KEY, "job-ok", now(), r#"{"prompt":"Test"}"#);
    let (s, v, _) = post(&broker, "/auction", b.clone(), &[]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "completed");
    let r = &v["result"];
    assert_eq!(r["ok"], true);
    assert_eq!(r["host"], hosts[0].peer_id.as_str());
    assert_eq!(r["output"]["prompt"], "Test");
    assert_eq!(r["quote"], 0.001);
    assert_eq!(r["offgrid_receipt"]["node_id"], hosts[0].peer_id.as_str());
    assert!(r["offgrid_receipt"]["metrics"]["compute_tokens_m"].is_number());
    assert!(r["offgrid_receipt"]["metrics"]["latency_ms"].is_u64());
    assert!(r["offgrid_receipt"]["sig"].is_string());

    // A replay of the same signed body: same answer, and the job ran once.
    let (s2, v2, _) = post(&broker, "/auction", b, &[]).await;
    assert_eq!((s2, &v2), (200, &v));
    // Re-signed later (new timestamp) it is still the same job.
    let (s3, v3, _) = post(
        &broker,
        "/auction",
        signed(KEY, "job-ok", now() + 1, r#"{"prompt":"Test"}"#),
        &[],
    )
    .await;
    assert_eq!((s3, &v3), (200, &v));
    assert_eq!(
        hosts[0].cli_json(&["receipts", "export"])["count"],
        1,
        "the job ran exactly once"
    );

    // Same job_id, other content → 409.
    let (s, v, _) = post(
        &broker,
        "/auction",
        signed(KEY, "job-ok", now(), r#"{"prompt":"Other"}"#),
        &[],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")));

    // The previous key still works while keys rotate; a wrong key does not.
    let (s, _, _) = post(
        &broker,
        "/auction",
        signed("old-key", "job-rot", now(), "{}"),
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let (s, v, _) = post(
        &broker,
        "/auction",
        signed("wrong-key", "job-bad", now(), "{}"),
        &[],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_signature")));

    // 301 s old → stale.
    let (s, v, _) = post(
        &broker,
        "/auction",
        signed(KEY, "job-old", now() - 301, "{}"),
        &[],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (401, Some("stale_timestamp")));

    // Malformed JSON → 400 naming the problem.
    let (s, v, _) = post(
        &broker,
        "/auction",
        br#"{"job_id": "x", "type": }"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("unexpected character"),
        "{v}"
    );

    // 2 MiB → 413.
    let big = format!(
        r#"{{"job_id":"big","payload":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (s, v, _) = post(&broker, "/auction", big.into_bytes(), &[]).await;
    assert_eq!((s, v["error"].as_str()), (413, Some("too_large")));

    // Header variant: HMAC over timestamp + "." + raw body, no signature in the body.
    let raw = br#"{"job_id":"job-hdr","type":"echo","payload":{"h":1}}"#.to_vec();
    let ts = now().to_string();
    let sig = hmac_hex(KEY, &format!("{ts}.{}", std::str::from_utf8(&raw).unwrap()));
    let (s, v, _) = post(
        &broker,
        "/auction",
        raw.clone(),
        &[
            ("x-offgrid-timestamp", ts.clone()),
            ("x-offgrid-signature", sig),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["output"]["h"], 1);
    let (s, _, _) = post(
        &broker,
        "/auction",
        raw,
        &[
            ("x-offgrid-timestamp", ts),
            ("x-offgrid-signature", "00".repeat(32)),
        ],
    )
    .await;
    assert_eq!(s, 401);

    // The OpenAPI document describes the contract.
    let doc: Value = reqwest::get(format!("{}/openapi.json", broker.api))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in ["/auction", "/jobs", "/jobs/{id}", "/metrics", "/status"] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
    assert!(doc["paths"]["/auction"]["post"]["responses"]["504"].is_object());

    // Metrics count what happened.
    let text = reqwest::get(format!("{}/metrics", broker.api))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("offgrid_jobs_total{outcome=\"completed\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("offgrid_job_duration_seconds_count 3"),
        "{text}"
    );
    assert!(
        text.contains("offgrid_http_requests_total{route=\"/auction\",status=\"401\"}"),
        "{text}"
    );
    assert!(text.contains("offgrid_active_hosts 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_hosts_is_503_and_a_silent_host_is_504_within_timeout_plus_one_second() {
    let slow = "[executors.echo]\nkind = \"exec\"\nprogram = \"/bin/sleep\"\nargs = [\"100\"]\ntimeout_s = 200\n";
    let (broker, _hosts) = setup(1, slow, "").await;
    let (s, v, h) = post(&broker, "/auction", {
        let sig = hmac_hex(KEY, &format!(r#"{{"job_id":"nh","payload":{{}},"size":0.25,"timeout_s":10,"timestamp":{t},"type":"compute"}}"#, t = now()));
        format!(r#"{{"job_id":"nh","type":"compute","size":0.25,"timestamp":{},"payload":{{}},"timeout_s":10,"signature":"{sig}"}}"#, now()).into_bytes()
    }, &[]).await;
    assert_eq!((s, v["error"].as_str()), (503, Some("no_hosts")), "{v}");
    assert!(h.get("retry-after").is_none() || s == 503);

    let ts = now();
    let sig = hmac_hex(KEY, &canonical("silent", "echo", ts, "{}", 2));
    let t = Instant::now();
    let (s, v, _) = post(
        &broker,
        "/auction",
        body("silent", "echo", ts, "{}", 2, &sig),
        &[],
    )
    .await;
    let took = t.elapsed();
    assert_eq!((s, v["error"].as_str()), (504, Some("job_timeout")), "{v}");
    assert!(
        took < Duration::from_secs(3),
        "504 after {took:?}, limit timeout_s + 1 s"
    );
    assert!(took >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_jobs_from_listed_keys_only_and_async_jobs() {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let cfg = format!(
        "[core]\ned25519_keys = [{{ id = \"core-2026\", public_key = \"{}\" }}]\n",
        hex::encode(sk.verifying_key().to_bytes())
    );
    let (broker, _hosts) = setup(1, "", &cfg).await;
    let ed = |key_id: &str, signer: &ed25519_dalek::SigningKey, job_id: &str| {
        let ts = now();
        let canon = format!(
            r#"{{"job_id":"{job_id}","key_id":"{key_id}","payload":{{"e":1}},"sig_alg":"ed25519","timestamp":{ts},"type":"echo"}}"#
        );
        let sig = hex::encode(signer.sign(canon.as_bytes()).to_bytes());
        format!(r#"{{"type":"echo","job_id":"{job_id}","timestamp":{ts},"payload":{{"e":1}},"sig_alg":"ed25519","key_id":"{key_id}","signature":"{sig}"}}"#).into_bytes()
    };
    let (s, v, _) = post(&broker, "/auction", ed("core-2026", &sk, "ed-1"), &[]).await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = post(&broker, "/auction", ed("core-1999", &sk, "ed-2"), &[]).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_signature")));
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let (s, _, _) = post(&broker, "/auction", ed("core-2026", &other, "ed-3"), &[]).await;
    assert_eq!(s, 401);

    // Async: 202 at once, then the state by id (signed GET over timestamp + "." + path).
    let (s, v, _) = post(
        &broker,
        "/jobs",
        signed(KEY, "async-1", now(), r#"{"a":1}"#),
        &[],
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["job_id"], "async-1");
    let done = wait_until(
        Duration::from_secs(10),
        "the async job to complete",
        || async {
            let ts = now().to_string();
            let sig = hmac_hex(KEY, &format!("{ts}./jobs/async-1"));
            let r = reqwest::Client::new()
                .get(format!("{}/jobs/async-1", broker.api))
                .header("x-offgrid-timestamp", ts)
                .header("x-offgrid-signature", sig)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            (v["state"] == "completed").then_some(v)
        },
    )
    .await;
    assert_eq!(done["result"]["ok"], true);
    assert_eq!(done["result"]["output"]["a"], 1);
    let r = reqwest::get(format!("{}/jobs/async-1", broker.api))
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "unsigned GET refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_rate_limit_answers_429_with_retry_after() {
    let broker = TestNode::start_with(
        &[],
        &[],
        Some("[core]\nrate_limit_per_s = 1\nrate_limit_burst = 5\n"),
    )
    .await;
    // Fresh client addresses (all of 127/8 is loopback), so start-up polling from
    // 127.0.0.1 has not used their buckets.
    let client = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let a = client([127, 0, 0, 2]);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let r = a
            .get(format!("{}/status", broker.api))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..5], &[200; 5], "the burst passes: {statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 2,
        "{statuses:?}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Another client is not affected.
    let b = client([127, 0, 0, 3]);
    assert_eq!(
        b.get(format!("{}/status", broker.api))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_core_client_completes_a_job() {
    let (broker, hosts) = setup(1, "", "").await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/core_client.py");
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args([
            "--url",
            &broker.api,
            "--type",
            "echo",
            "--payload",
            r#"{"prompt": "Grüße from Python"}"#,
        ])
        .env("OFFGRID_AUTH_KEY", KEY)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["http_status"], 200);
    assert_eq!(v["response"]["result"]["host"], hosts[0].peer_id.as_str());
    assert_eq!(
        v["response"]["result"]["output"]["prompt"],
        "Grüße from Python"
    );
    let _ = json!({});
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_signed_for_one_broker_is_refused_by_another_and_runs_once() {
    let (broker, hosts) = setup(1, "", "").await;
    let other = TestNode::start_with(
        &["--bootstrap", &hosts[0].addr],
        &[("OFFGRID_AUTH_KEY", "shared-secret")],
        None,
    )
    .await;
    let body = format!(
        r#"{{"job_id":"aud-1","type":"echo","payload":{{"n":1}},"audience":"{}"}}"#,
        broker.peer_id
    );
    let headers = |b: &str| core_headers(KEY, b);
    let (s, v, _) = post(
        &broker,
        "/auction",
        body.clone().into_bytes(),
        &headers(&body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // The same signed bytes replayed to a second broker of the same Core.
    let (s, v, _) = post(
        &other,
        "/auction",
        body.clone().into_bytes(),
        &headers(&body),
    )
    .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "invalid_signature");
    assert!(
        v["message"].as_str().unwrap().contains(&broker.peer_id),
        "{v}"
    );
    assert_eq!(
        hosts[0].cli_json(&["receipts", "export"])["count"],
        1,
        "the job ran once"
    );
    // A malformed audience is a 400, not a run.
    let bad = r#"{"job_id":"aud-2","type":"echo","payload":{},"audience":7}"#;
    let (s, _, _) = post(&broker, "/auction", bad.as_bytes().to_vec(), &headers(bad)).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_job_gets_its_outcome_on_retry_and_the_job_ran_once() {
    let slow = "[executors.slow]\nkind = \"exec\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"/bin/sleep 1.5; /bin/cat\"]\ntimeout_s = 20\n[host.prices]\nslow = 0.001\n";
    let (broker, hosts) = setup(1, slow, "").await;
    let body = r#"{"job_id":"gone-1","type":"slow","payload":{"n":5},"timeout_s":20}"#;
    let headers = |b: &str| core_headers(KEY, b);
    // The client gives up long before the job ends, and drops the connection.
    let mut req = reqwest::Client::new()
        .post(format!("{}/auction", broker.api))
        .header("content-type", "application/json")
        .timeout(Duration::from_millis(300))
        .body(body);
    for (k, v) in headers(body) {
        req = req.header(k, v);
    }
    assert!(req.send().await.unwrap_err().is_timeout());
    // Its retry (signed again) gets the job's outcome, whether still running or ended.
    let (s, v, _) = post(
        &broker,
        "/auction",
        body.as_bytes().to_vec(),
        &headers(body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"]["output"]["n"], 5, "{v}");
    let (s2, v2, _) = post(
        &broker,
        "/auction",
        body.as_bytes().to_vec(),
        &headers(body),
    )
    .await;
    assert_eq!((s2, &v2), (200, &v));
    assert_eq!(
        hosts[0].cli_json(&["receipts", "export"])["count"],
        1,
        "the job ran once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_failed_on_a_host_retried_three_times_ran_once() {
    let runs = tempfile::tempdir().unwrap();
    let log = runs.path().join("runs");
    let failing = format!(
        "[executors.fail]\nkind = \"exec\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"/bin/echo run >> {}; exit 3\"]\n[host.prices]\nfail = 0.001\n",
        log.display()
    );
    let (broker, _hosts) = setup(1, &failing, "").await;
    let body = r#"{"job_id":"fail-1","type":"fail","payload":{}}"#;
    let mut answers = Vec::new();
    for _ in 0..4 {
        let h = core_headers(KEY, body);
        answers.push(post(&broker, "/auction", body.as_bytes().to_vec(), &h).await);
    }
    let (s, v, _) = &answers[0];
    assert_eq!(*s, 502, "the host's failure is the answer: {v}");
    assert_eq!(v["error"], "job_failed");
    assert!(
        v["message"].as_str().unwrap().contains("exit status: 3"),
        "{v}"
    );
    for (s2, v2, _) in &answers[1..] {
        assert_eq!((s2, v2), (s, v), "a retry replays the first answer");
    }
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().count(), 1, "the host ran it once: {ran:?}");
}
