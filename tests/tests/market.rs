//! Compute market end to end: one broker and three hosts as separate processes.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use offgrid_e2e::{wait_until, TestNode};
use serde_json::Value;

/// Host config with one echo price; `slow` makes its echo executor take `slow` seconds.
fn host_config(price: &str, burst: u32, slow: Option<u32>) -> String {
    let exec = match slow {
        None => "[executors.echo]\nkind = \"echo\"\n".to_string(),
        Some(s) => format!(
            "[executors.echo]\nkind = \"exec\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"/bin/sleep {s}; /bin/cat\"]\n"
        ),
    };
    format!("[host]\nburst = {burst}\n[host.prices]\necho = {price}\n{exec}")
}

struct Market {
    broker: TestNode,
    hosts: Vec<TestNode>,
}

impl Market {
    /// A broker and hosts with the given configs (and per-host env), all known to the
    /// broker with verified announcements before this returns.
    async fn start(hosts: &[(String, Vec<(&str, &str)>)]) -> Market {
        Self::start_with_broker(None, hosts).await
    }

    /// [`Market::start`] with a config file for the broker.
    async fn start_with_broker(
        broker_cfg: Option<&str>,
        hosts: &[(String, Vec<(&str, &str)>)],
    ) -> Market {
        let broker = TestNode::start_with(&[], &[], broker_cfg).await;
        let mut hs = Vec::new();
        for (cfg, env) in hosts {
            hs.push(TestNode::start_with(&["--bootstrap", &broker.addr], env, Some(cfg)).await);
        }
        let m = Market { broker, hosts: hs };
        for h in &m.hosts {
            m.wait_host(h, |p| p["active"] == true).await;
        }
        m
    }

    async fn wait_host(&self, h: &TestNode, cond: impl Fn(&Value) -> bool) {
        self.broker
            .wait_peer(
                &h.peer_id,
                Duration::from_secs(15),
                "the broker to see the host's announcement",
                cond,
            )
            .await;
    }

    /// The broker's reputation row of `peer`.
    fn reputation_of(&self, peer: &str) -> Value {
        let rep = self.broker.cli_json(&["reputation"]);
        rep["reputation"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["peer"] == peer)
            .cloned()
            .unwrap_or_else(|| panic!("no reputation row for {peer} in {rep}"))
    }

    /// Starts an echo job (25 s timeout) in the background and returns once the first
    /// (cheapest) host is running it.
    async fn run_on_the_first_host_in_background(
        &self,
        payload: &str,
    ) -> std::thread::JoinHandle<std::process::Output> {
        let job = self.broker.cli_in_background(&[
            "job",
            "run",
            "--type",
            "echo",
            "--payload",
            payload,
            "--timeout",
            "25",
        ]);
        let first = &self.hosts[0];
        wait_until(
            Duration::from_secs(10),
            "the cheapest host to be running the job",
            || async { (first.get("/status").await["jobs_in_flight"] == 1).then_some(()) },
        )
        .await;
        job
    }

    fn run(&self, payload: &str) -> Value {
        self.broker.cli_json(&[
            "job",
            "run",
            "--type",
            "echo",
            "--payload",
            payload,
            "--timeout",
            "20",
        ])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheapest_active_host_wins_and_a_toggled_off_host_gets_no_jobs() {
    let m = Market::start(&[
        (host_config("0.003", 8, None), vec![]),
        (host_config("0.001", 8, None), vec![]),
        (host_config("0.002", 8, None), vec![]),
    ])
    .await;
    let r = m.run("{\"n\":1}");
    assert_eq!(r["host"], m.hosts[1].peer_id.as_str(), "cheapest wins: {r}");
    assert_eq!(r["price_micro"], 1000);
    assert_eq!(r["output"]["n"], 1);
    assert_eq!(r["receipt"]["node_id"], m.hosts[1].peer_id.as_str());

    m.hosts[1].cli_json(&["toggle", "off"]);
    m.wait_host(&m.hosts[1], |p| p["active"] == false).await;
    for i in 0..5 {
        let r = m.run(&format!("{{\"n\":{i}}}"));
        assert_eq!(
            r["host"],
            m.hosts[2].peer_id.as_str(),
            "next cheapest, never the toggled-off host: {r}"
        );
    }
    // Even asked directly, the toggled-off host declines to quote.
    let q = m
        .broker
        .cli_json(&["quote", &m.hosts[1].peer_id, "echo", "1"]);
    assert!(
        q["declined"].as_str().unwrap().contains("not taking jobs"),
        "{q}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_after_winning_is_replaced_by_the_next_best() {
    let mut m = Market::start(&[
        (host_config("0.001", 8, Some(30)), vec![]),
        (host_config("0.002", 8, None), vec![]),
        (host_config("0.003", 8, None), vec![]),
    ])
    .await;
    let job = m.run_on_the_first_host_in_background("{\"k\":7}").await;
    let winner = &m.hosts[0];
    let dead = winner.peer_id.clone();
    m.hosts[0].kill9();
    let out = job.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["host"],
        m.hosts[1].peer_id.as_str(),
        "next best took over: {r}"
    );
    assert_eq!(r["output"]["k"], 7);
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["host"], dead.as_str());
    assert_ne!(attempts[0]["outcome"], "ok");
    let dead_rep = m.reputation_of(&dead);
    assert_eq!(dead_rep["misses"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_receipt_is_rejected_and_its_host_loses_reputation() {
    let m = Market::start(&[
        (
            host_config("0.001", 8, None),
            vec![("OFFGRID_FAULT_INJECT", "forge_receipt")],
        ),
        (host_config("0.002", 8, None), vec![]),
    ])
    .await;
    let forger = m.hosts[0].peer_id.clone();
    let r = m.run("{\"x\":1}");
    assert_eq!(r["host"], m.hosts[1].peer_id.as_str(), "{r}");
    let first = &r["attempts"][0];
    assert_eq!(first["host"], forger.as_str());
    assert!(
        first["outcome"]
            .as_str()
            .unwrap()
            .contains("invalid receipt"),
        "{first}"
    );
    let row = m.reputation_of(&forger);
    assert_eq!(row["hits"], 0);
    assert_eq!(row["misses"], 1);
    // The forger's lost reputation outweighs its lower price once it has a record.
    assert!(row["factor"].as_f64().unwrap() > 1.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_host_is_skipped() {
    let m = Market::start(&[
        (host_config("0.001", 1, Some(5)), vec![]),
        (host_config("0.002", 8, None), vec![]),
    ])
    .await;
    let busy = &m.hosts[0];
    let first = m.broker.cli_in_background(&[
        "job",
        "run",
        "--type",
        "echo",
        "--payload",
        "{}",
        "--timeout",
        "20",
    ]);
    wait_until(
        Duration::from_secs(10),
        "the cheap host's only slot to be taken",
        || async { (busy.get("/status").await["jobs_in_flight"] == 1).then_some(()) },
    )
    .await;
    let r = m.run("{\"second\":true}");
    assert_eq!(
        r["host"],
        m.hosts[1].peer_id.as_str(),
        "the busy host was skipped: {r}"
    );
    assert_eq!(
        r["attempts"].as_array().unwrap().len(),
        1,
        "no run was even tried on the busy host"
    );
    let out = first.join().unwrap();
    let r1: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r1["host"], busy.peer_id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_receipts_verify_from_their_bytes_with_plain_ed25519() {
    let m = Market::start(&[(host_config("0.001", 8, None), vec![])]).await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(
            m.run(&format!("{{\"i\":{i}}}"))["job_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let export = m.hosts[0].cli_json(&["receipts", "export"]);
    assert_eq!(export["count"], 3);
    let root = hex::decode(export["root"].as_str().unwrap()).unwrap();
    let root: [u8; 32] = root.try_into().unwrap();
    let mut seen = Vec::new();
    for item in export["batch"]["items"].as_array().unwrap() {
        let rec = &item["receipt"];
        let bytes = B64.decode(rec["signed"].as_str().unwrap()).unwrap();
        let sig: [u8; 64] = hex::decode(rec["sig"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let pk: [u8; 32] = hex::decode(rec["pubkey"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        // Plain Ed25519 over the type tag, a newline and the exported bytes: no re-encoding,
        // no project code (the receipt contract in ARCHITECTURE.md).
        let mut message = b"offgrid/receipt/v1\n".to_vec();
        message.extend_from_slice(&bytes);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap();
        key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig))
            .expect("receipt signature verifies");
        assert!(
            key.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_err(),
            "the bare bytes, without the tag, are not what was signed"
        );
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["version"], "0.1");
        assert_eq!(body["node_id"], m.hosts[0].peer_id.as_str());
        assert_eq!(body["broker_id"], m.broker.peer_id.as_str());
        seen.push(body["job_id"].as_str().unwrap().to_owned());
        let proof: offgrid_ledger::merkle::Proof =
            serde_json::from_value(item["proof"].clone()).unwrap();
        assert!(
            offgrid_ledger::merkle::verify(&bytes, &proof, &root),
            "inclusion proof"
        );
    }
    seen.sort();
    jobs.sort();
    assert_eq!(seen, jobs);
    assert_eq!(
        m.hosts[0].cli_json(&["receipts", "export"])["count"],
        0,
        "each receipt is exported once"
    );
}

/// A host whose echo executor lies: it prints a fixed document whatever the payload.
fn liar_config(price: &str) -> String {
    format!(
        "[host.prices]\necho = {price}\n[executors.echo]\nkind = \"exec\"\nprogram = \"/bin/echo\"\nargs = [\"{{\\\"lie\\\":1}}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_runs_are_accepted_when_outputs_agree_and_refused_when_they_differ() {
    let m = Market::start(&[
        (host_config("0.001", 8, None), vec![]),
        (host_config("0.002", 8, None), vec![]),
        (liar_config("0.003"), vec![]),
    ])
    .await;
    let r = m.broker.cli_json(&[
        "job",
        "run",
        "--type",
        "echo",
        "--payload",
        "{\"r\":2}",
        "--redundancy",
        "2",
    ]);
    let mut replicas: Vec<String> = r["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    replicas.sort();
    let mut honest = vec![m.hosts[0].peer_id.clone(), m.hosts[1].peer_id.clone()];
    honest.sort();
    assert_eq!(replicas, honest, "the two cheapest agree: {r}");
    assert_eq!(r["output"]["r"], 2);

    // With all three, the liar's output disagrees: the job is refused and says so.
    let out = m.broker.cli(&[
        "job",
        "run",
        "--type",
        "echo",
        "--payload",
        "{\"r\":3}",
        "--redundancy",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disagree"), "{err}");
    assert!(
        err.contains(&m.hosts[2].peer_id),
        "names the hosts and their output hashes: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_failures_reach_the_user_as_clear_job_errors() {
    let missing = "[executors.echo]\nkind = \"exec\"\nprogram = \"/nonexistent/model-server\"\n";
    let failing = "[executors.echo]\nkind = \"exec\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"echo out of memory >&2; exit 3\"]\n";
    let m = Market::start(&[(missing.to_string(), vec![]), (failing.to_string(), vec![])]).await;
    let out = m
        .broker
        .cli(&["job", "run", "--type", "echo", "--payload", "{}"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("all_hosts_failed"), "{err}");
    assert!(err.contains("executor_unavailable"), "{err}");
    assert!(
        err.contains("executor_failed: exited with exit status: 3"),
        "{err}"
    );
    // A remote broker learns the kind of failure, not the host's paths or stderr.
    assert!(!err.contains("/nonexistent/model-server"), "{err}");
    assert!(!err.contains("out of memory"), "{err}");
}

/// A host far cheaper than anyone whose every job fails: it wins the auction only while it
/// has few misses, then ranks after the honest host whatever its price; every job still
/// completes there (within the default timeout, or the job would end in job_timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_host_that_fails_every_job_gets_at_most_three_of_twenty() {
    let failing = "[host.prices]\necho = 0.0001\n[executors.echo]\nkind = \"exec\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"exit 3\"]\n";
    let m = Market::start(&[
        (failing.to_string(), vec![]),
        (host_config("0.03", 8, None), vec![]),
    ])
    .await;
    let (liar, honest) = (&m.hosts[0].peer_id, &m.hosts[1].peer_id);
    let mut liar_jobs = 0;
    for i in 0..20 {
        let r = m.broker.cli_json(&[
            "job",
            "run",
            "--type",
            "echo",
            "--payload",
            &format!("{{\"n\":{i}}}"),
        ]);
        assert_eq!(
            r["host"],
            honest.as_str(),
            "every job completes on the honest host: {r}"
        );
        assert_eq!(r["output"]["n"], i);
        let attempts = r["attempts"].as_array().unwrap();
        liar_jobs += attempts
            .iter()
            .filter(|a| a["host"] == liar.as_str())
            .count();
    }
    println!("the failing host at 0.0001 was tried on {liar_jobs} of 20 jobs");
    assert!(
        liar_jobs <= 3,
        "the failing host got {liar_jobs} of 20 jobs"
    );
    let row = m.reputation_of(&liar);
    assert_eq!(row["hits"], 0);
    assert_eq!(row["misses"].as_u64(), Some(liar_jobs as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_host_runs_on_the_named_host_even_when_another_is_cheaper() {
    let m = Market::start(&[
        (host_config("0.001", 8, None), vec![]),
        (host_config("0.005", 8, None), vec![]),
    ])
    .await;
    let dear = m.hosts[1].peer_id.clone();
    let r = m.broker.cli_json(&[
        "job",
        "run",
        "--type",
        "echo",
        "--payload",
        "{\"n\":7}",
        "--host",
        &dear,
    ]);
    assert_eq!(r["host"], dear.as_str(), "{r}");
    assert_eq!(r["price_micro"], 5000, "paid at the named host's own price");
    assert_eq!(r["receipt"]["node_id"], dear.as_str());
    assert_eq!(r["output"]["n"], 7);
    // Without --host the cheaper one wins, as usual.
    assert_eq!(m.run("{}")["host"], m.hosts[0].peer_id.as_str());
    // A peer that is not an active host for the type, and a malformed id.
    let stranger = m.broker.peer_id.clone();
    let out = m
        .broker
        .cli(&["job", "run", "--type", "echo", "--host", &stranger]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no_hosts") && err.contains(&stranger), "{err}");
    let out = m
        .broker
        .cli(&["job", "run", "--type", "echo", "--host", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a peer id"));
}

/// The broker of the heartbeat tests: polls every 300 ms, gives a host up after 3 silent
/// intervals, and would wait `t_activate_s` for a host it could not poll.
fn heartbeat_broker(t_activate_s: u32) -> String {
    format!("[market]\nheartbeat_ms = 300\nheartbeat_misses = 3\nt_activate_s = {t_activate_s}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_host_that_stops_reporting_is_failed_over_within_three_heartbeat_intervals() {
    let m = Market::start_with_broker(
        Some(&heartbeat_broker(30)),
        &[
            (host_config("0.001", 8, Some(30)), vec![]),
            (host_config("0.002", 8, None), vec![]),
        ],
    )
    .await;
    let job = m.run_on_the_first_host_in_background("{\"k\":8}").await;
    let stuck = &m.hosts[0];
    // Stopped, not killed: its connections stay open, it just never answers again.
    offgrid_e2e::send_signal(stuck.pid(), "STOP");
    let stopped = std::time::Instant::now();
    let out = job.join().unwrap();
    let took = stopped.elapsed();
    offgrid_e2e::send_signal(stuck.pid(), "CONT");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["host"], m.hosts[1].peer_id.as_str(), "failed over: {r}");
    assert_eq!(r["output"]["k"], 8);
    let attempts = r["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["host"], stuck.peer_id.as_str());
    assert_eq!(
        attempts[0]["outcome"], "stopped reporting: no heartbeat for 900 ms",
        "given up for its missed heartbeats: {r}"
    );
    println!(
        "stopped host failed over and the job done {took:?} after SIGSTOP (3 intervals = 900 ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_that_keeps_reporting_finishes_past_the_activation_deadline() {
    let m = Market::start_with_broker(
        Some(&heartbeat_broker(1)),
        &[
            (host_config("0.001", 8, Some(3)), vec![]),
            (host_config("0.002", 8, None), vec![]),
        ],
    )
    .await;
    let t0 = std::time::Instant::now();
    let r = m.run("{\"k\":9}");
    let took = t0.elapsed();
    assert_eq!(
        r["host"],
        m.hosts[0].peer_id.as_str(),
        "the slow host kept the job: {r}"
    );
    assert_eq!(r["output"]["k"], 9);
    assert_eq!(
        r["attempts"].as_array().unwrap().len(),
        1,
        "no failover: {r}"
    );
    println!("slow host (3 s job, t_activate_s = 1) finished after {took:?}");
    assert!(took >= Duration::from_secs(3), "{took:?}");
    assert_eq!(m.reputation_of(&m.hosts[0].peer_id)["misses"], 0);
}
