//! The dashboard in a real browser: Playwright (`playwright-core`, pinned by
//! tests/dashboard/package-lock.json) drives Debian's Chromium, headless and kept off the
//! network, against three real `offgrid-node` processes. And the event stream's latency: a
//! running job's update reaches an `/events` client in under a second.
//!
//! The browser test skips with a printed reason without `chromium`, `node` or `npm ci
//! --prefix tests/dashboard` (.ci/run does all three).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use offgrid_e2e::{now_ms, wait_output, wait_until, TestNode};
use serde_json::{json, Value};

/// The Playwright script's directory and the browser, or why the test cannot run here.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        return Err(format!(
            "{} is missing; install Debian's chromium",
            chromium.display()
        ));
    }
    let dir = offgrid_e2e::node_package("dashboard", "playwright-core")?;
    Ok((dir, chromium))
}

/// Three nodes: `a` (whose dashboard is opened) and two hosts that bootstrap from it; each
/// side knows the others' announcements before this returns.
async fn three_nodes(host_config: Option<&str>) -> (TestNode, TestNode, TestNode) {
    let a = TestNode::start(&[]).await;
    let b = TestNode::start_with(&["--bootstrap", &a.addr], &[], host_config).await;
    let c = TestNode::start_with(&["--bootstrap", &a.addr], &[], host_config).await;
    for h in [&b, &c] {
        a.wait_peer(
            &h.peer_id,
            Duration::from_secs(20),
            "a to see a host",
            |p| p["active"] == true,
        )
        .await;
    }
    b.wait_peer(&a.peer_id, Duration::from_secs(20), "b to see a", |p| {
        p["active"] == true
    })
    .await;
    (a, b, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_drives_the_dashboard_of_one_of_three_nodes() {
    let (dir, chromium) = match browser() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED chromium_drives_the_dashboard…: {why} (.ci/run installs them)");
            return;
        }
    };
    let (a, b, c) = three_nodes(None).await;
    let me = a.peer_id.clone();
    a.cli_json(&[
        "wallet",
        "init",
        "--witness",
        &me,
        "--alloc",
        &format!("{me}=1000000000"),
    ]);
    let work = tempfile::tempdir_in("/tmp").unwrap();
    let file = work.path().join("field-notes.txt");
    std::fs::write(&file, "water pump serviced; solar at 80 %\n".repeat(40)).unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let cfg = json!({
        "url": a.api, "token": a.token, "me": me, "peers": [b.peer_id, c.peer_id],
        "second_api": b.api, "file": file, "shots": shots, "chromium": chromium,
        "timeout_ms": 20000,
    });
    let cfg_path = work.path().join("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();

    let started = Instant::now();
    let child = Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .arg(&cfg_path)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node dashboard.mjs");
    let out = wait_output(child, Duration::from_secs(240), "the Playwright script").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the script printed no JSON ({e}): {stdout}\n{stderr}"));
    println!(
        "Playwright finished in {:?}; steps: {}",
        started.elapsed(),
        r["steps"]
    );
    println!("screenshots in {}", shots.display());
    assert!(
        out.status.success() && r["ok"] == true,
        "the dashboard test failed: {r:#}\nstderr: {stderr}"
    );

    // What the browser saw.
    assert_eq!(r["my_id"], me.as_str());
    assert!(r["map_peers"].as_u64().unwrap() >= 2, "{r}");
    for id in [&b.peer_id, &c.peer_id] {
        let short = format!("…{}", &id[id.len() - 8..]);
        assert!(
            r["short_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| *s == short.as_str()),
            "{short} not shown in {}",
            r["short_ids"]
        );
    }
    assert!(
        r["wrong_token_message"].as_str().unwrap().contains("401"),
        "{r}"
    );
    assert_eq!(r["second_node_sees_inactive"], true);
    assert_eq!(r["token_dialogs_after_first"], 0, "the token is asked once");
    assert_eq!(r["receipt_sig"].as_str().unwrap().len(), 128, "{r}");
    assert!(r["job_output"]
        .as_str()
        .unwrap()
        .contains("hello from chromium"));
    assert!(r["health_rows"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["reachable_ok"], true, "{r}");
    assert!(r["transfer"].as_str().unwrap().contains("final"), "{r}");
    assert_eq!(r["phone_overflow"], 0, "a page is wider than a phone");
    assert_eq!(r["foreign_requests"], json!([]), "the page asked elsewhere");
    assert_eq!(
        r["console_errors"],
        json!([]),
        "the page logged errors (the 401 of the wrong token aside?)"
    );
    let shots_taken = r["shots"].as_array().unwrap();
    assert!(shots_taken.len() >= 14, "{}", r["shots"]);
    for s in shots_taken {
        let len = std::fs::metadata(s.as_str().unwrap()).unwrap().len();
        assert!(len > 5_000, "{s} is {len} bytes");
    }

    // And the nodes agree: the job is in a's list with a host's receipt, the file is stored,
    // a is active again in b's view.
    let jobs = a.get("/market/jobs").await;
    let job = &jobs["jobs"][0];
    assert_eq!(job["state"], "completed", "{jobs}");
    assert!([&b.peer_id, &c.peer_id].contains(&&job["host"].as_str().unwrap().to_owned()));
    assert_eq!(job["receipt"]["sig"], r["receipt_sig"]);
    let back = std::fs::read(work.path().join("field-notes.txt.back")).unwrap();
    assert_eq!(
        back,
        std::fs::read(&file).unwrap(),
        "the file got back differs"
    );
    let asset = r["asset"].as_str().unwrap();
    let assets = a.get("/storage/assets").await;
    assert!(assets["assets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["asset_id"] == asset));
    b.wait_peer(
        &me,
        Duration::from_secs(10),
        "b to see a active again",
        |p| p["active"] == true,
    )
    .await;
}

/// One server-sent event.
struct Sse {
    event: String,
    data: Value,
    at: Instant,
}

/// Reads events from an open `/events` response.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    async fn open(api: &str) -> Stream {
        let resp = reqwest::get(format!("{api}/events")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Stream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (keep-alive comments skipped).
    async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut event, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if event.is_empty() {
                    continue;
                }
                return Sse {
                    event,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    at: Instant::now(),
                };
            }
            let chunk = self.resp.chunk().await.unwrap().expect("the stream ended");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event named `kind` for `job`.
    async fn job_event(&mut self, kind: &str, job: &str) -> Sse {
        loop {
            let e = self.next().await;
            if e.event == kind && e.data["job_id"] == job {
                return e;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_a_running_jobs_updates_in_under_a_second() {
    // Hosts whose echo takes a second, so the job is visibly running in between.
    let slow = "[executors.echo]\nkind = \"exec\"\nprogram = \"/bin/sh\"\nargs = [\"-c\", \"/bin/sleep 1; /bin/cat\"]\n";
    let (a, _b, _c) = three_nodes(Some(slow)).await;
    let mut events = Stream::open(&a.api).await;
    let hello = events.next().await;
    assert_eq!(hello.event, "hello");
    assert_eq!(hello.data["peer_id"], a.peer_id.as_str());

    let body = json!({"job_id": "sse-1", "type": "echo", "payload": {"n": 1}, "timeout_s": 20});
    let (api, token) = (a.api.clone(), a.token.clone());
    let posted = Instant::now();
    let run = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(format!("{api}/market/run"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (status, v, Instant::now())
    });
    let started = tokio::time::timeout(
        Duration::from_secs(10),
        events.job_event("job_started", "sse-1"),
    )
    .await
    .expect("a job_started event");
    let start_latency = started.at - posted;
    assert_eq!(started.data["state"], "running");
    let finished = tokio::time::timeout(
        Duration::from_secs(30),
        events.job_event("job_finished", "sse-1"),
    )
    .await
    .expect("a job_finished event");
    let received_ms = now_ms();
    let (status, result, answered) = run.await.unwrap();
    assert_eq!(status, 200, "{result}");
    let d = &finished.data;
    assert_eq!(d["state"], "completed", "{d}");
    assert_eq!(d["host"], result["host"]);
    assert_eq!(d["price_micro"], result["price_micro"]);
    assert!(d["latency_ms"].as_u64().unwrap() >= 1000, "{d}");
    assert_eq!(d["receipt"]["sig"], result["receipt"]["sig"]);
    // From the node's clock at the end to this client's (the same machine).
    let finish_latency = received_ms.saturating_sub(d["finished_ms"].as_u64().unwrap());
    let vs_http = if finished.at > answered {
        format!("{:?} after", finished.at - answered)
    } else {
        format!("{:?} before", answered - finished.at)
    };
    println!(
        "SSE latency: job_started {start_latency:?} after the POST was sent; job_finished \
         {finish_latency} ms after the node finished it ({vs_http} the HTTP answer); the run took {} ms",
        d["duration_ms"]
    );
    assert!(start_latency < Duration::from_secs(1), "{start_latency:?}");
    assert!(finish_latency < 1000, "{finish_latency} ms");

    // The list the dashboard reads on load has it too.
    let jobs = wait_until(
        Duration::from_secs(5),
        "the job in /market/jobs",
        || async {
            let v = a.get("/market/jobs").await;
            (v["jobs"][0]["job_id"] == "sse-1").then_some(v)
        },
    )
    .await;
    assert_eq!(jobs["jobs"][0]["state"], "completed");
}
