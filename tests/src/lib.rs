//! Helpers for end-to-end tests that start real `offgrid-node` processes.
//!
//! Each [`TestNode`] gets a temporary data directory, a libp2p listener on
//! `127.0.0.1:0` and an API on `127.0.0.1:0`; it is killed when dropped. Nothing sleeps a
//! fixed time: [`wait_until`] polls a condition until a deadline.
//!
//! The binaries are found next to the test executable's `deps/` directory. `cargo test
//! --workspace` builds them before any test runs (the node and CLI crates have
//! integration tests of their own, which makes cargo build their binaries).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    cell::RefCell,
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod netns;

thread_local! {
    /// The message of the panic unwinding this thread, kept so that it can be printed again
    /// after the node logs (CI shows the tail of the output, and the logs are long).
    static FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs, once per process, a panic hook that records the message for [`TestNode`]'s
/// drop and then runs the default hook.
fn record_failures() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let text = info.to_string();
            FAILURE.with(|f| *f.borrow_mut() = Some(text));
            previous(info);
        }));
    });
}

/// Path of a workspace binary (`offgrid-node`, `offgrid`, `hostile-peer`): in
/// `$OFFGRID_BIN_DIR` when set (a target directory shared by several checkouts holds the
/// binaries of whichever built last), else beside the test executable.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("OFFGRID_BIN_DIR") {
        let p = PathBuf::from(dir).join(name);
        assert!(p.exists(), "{} not found in $OFFGRID_BIN_DIR", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target directory");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: run the suite with `cargo test --workspace` (it builds the binaries)",
        p.display()
    );
    p
}

/// Core's header signature for `body` under the HMAC `key`: `X-Offgrid-Timestamp` (now) and
/// `X-Offgrid-Signature` = hex HMAC-SHA256 over `timestamp + "." + body`.
pub fn core_headers(key: &str, body: &str) -> [(&'static str, String); 2] {
    use hmac::{Hmac, KeyInit, Mac};
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        .to_string();
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    m.update(format!("{ts}.{body}").as_bytes());
    [
        ("x-offgrid-timestamp", ts),
        (
            "x-offgrid-signature",
            hex::encode(m.finalize().into_bytes()),
        ),
    ]
}

/// Writes a test CA (`ca.pem`) and a certificate for 127.0.0.1 it signed (`srv.pem`,
/// `srv.key`) into `dir` with the openssl CLI; `false` if openssl is missing or fails.
pub fn test_certificates(dir: &Path) -> bool {
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").is_err() {
        return false;
    }
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=offgrid test CA",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ])
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A running `offgrid-node` process.
pub struct TestNode {
    child: Option<Child>,
    /// Its data directory (kept across restarts while this value lives).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// API base URL, e.g. `http://127.0.0.1:41234`.
    pub api: String,
    /// Bearer token for mutating routes.
    pub token: String,
    /// Peer id.
    pub peer_id: String,
    /// A dialable multiaddr ending in `/p2p/<peer id>`.
    pub addr: String,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    http: reqwest::Client,
}

/// Default arguments for a loopback test node.
pub fn loopback_args() -> Vec<String> {
    [
        "--no-mdns",
        // Test files live in temporary directories, outside the default allowed paths.
        "--allow-path",
        "/tmp",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl TestNode {
    /// Starts a node in a fresh temporary data directory with loopback defaults plus
    /// `extra` arguments.
    pub async fn start(extra: &[&str]) -> TestNode {
        Self::start_with(extra, &[], None).await
    }

    /// Starts a node with extra arguments, environment variables and an optional config
    /// file body (written as `config.toml` in its data directory and passed with --config).
    pub async fn start_with(
        extra: &[&str],
        env: &[(&str, &str)],
        config: Option<&str>,
    ) -> TestNode {
        record_failures();
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if let Some(body) = config {
            let path = dir.join("config.toml");
            std::fs::write(&path, body).expect("write config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_in_env(dir, Some(tmp), args, env).await
    }

    /// Starts a node on an existing data directory.
    pub async fn start_in(
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        extra: Vec<String>,
    ) -> TestNode {
        Self::start_in_env(dir, tmp, extra, Vec::new()).await
    }

    async fn start_in_env(
        dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        extra: Vec<String>,
        env: Vec<(String, String)>,
    ) -> TestNode {
        let _ = std::fs::remove_file(dir.join("api.url"));
        let log = std::fs::File::create(dir.join("node.log")).expect("log file");
        let mut cmd = Command::new(bin("offgrid-node"));
        cmd.arg("--data-dir")
            .arg(&dir)
            .args(loopback_args())
            .args(&extra)
            .env(
                "RUST_LOG",
                std::env::var("OFFGRID_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env.clone())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().expect("spawn offgrid-node");
        let env_copy = env;
        let mut node = TestNode {
            child: Some(child),
            dir,
            _tmp: tmp,
            api: String::new(),
            token: String::new(),
            peer_id: String::new(),
            addr: String::new(),
            extra,
            env: env_copy,
            http: reqwest::Client::new(),
        };
        node.api = {
            let dir = node.dir.clone();
            let child = &mut node.child;
            let found = wait_until(Duration::from_secs(30), "the node's api.url", || {
                let url = std::fs::read_to_string(dir.join("api.url")).ok();
                let exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                async move {
                    match (url, exited) {
                        (_, Some(status)) => Some(Err(status)),
                        (Some(u), None) if u.ends_with('\n') => Some(Ok(u)),
                        _ => None,
                    }
                }
            })
            .await;
            match found {
                Ok(u) => u.trim().to_owned(),
                Err(status) => panic!("node exited early ({status}): {}", node.log()),
            }
        };
        node.token = std::fs::read_to_string(node.dir.join("api.token"))
            .expect("api.token")
            .trim()
            .to_owned();
        let status = node.get("/status").await;
        node.peer_id = status["peer_id"].as_str().expect("peer_id").to_owned();
        let listen = wait_until(Duration::from_secs(10), "a listen address", || async {
            let s = node.get("/status").await;
            s["listen_addrs"]
                .as_array()?
                .first()?
                .as_str()
                .map(str::to_owned)
        })
        .await;
        node.addr = format!("{listen}/p2p/{}", node.peer_id);
        node
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    /// GET a JSON document (panics on transport errors).
    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        r.json().await.expect("JSON body")
    }

    /// Raw request: returns status, headers' Retry-After and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Runs the `offgrid` CLI against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("offgrid"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run offgrid")
    }

    /// Runs `offgrid --json <args>` and parses its output; panics on failure.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.cli(&a);
        assert!(
            out.status.success(),
            "offgrid {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("offgrid --json prints JSON")
    }

    /// Peer ids this node lists with a verified announcement.
    pub fn verified_peers(&self) -> Vec<Value> {
        self.cli_json(&["peers"])["peers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["verified"] == Value::Bool(true))
            .collect()
    }

    /// Waits until this node lists `peer` with a verified announcement for which `cond`
    /// holds, or panics after `timeout`.
    pub async fn wait_peer(
        &self,
        peer: &str,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Value) -> bool,
    ) {
        wait_until(timeout, what, || {
            let ok = self
                .verified_peers()
                .iter()
                .any(|p| p["peer_id"] == peer && cond(p));
            async move { ok.then_some(()) }
        })
        .await;
    }

    /// Starts `offgrid --json <args>` on a thread (for a job that should still be running
    /// while the test acts); join the handle for its output.
    pub fn cli_in_background(&self, args: &[&str]) -> std::thread::JoinHandle<Output> {
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        std::thread::spawn(move || {
            Command::new(bin("offgrid"))
                .arg("--data-dir")
                .arg(&dir)
                .arg("--json")
                .args(&args)
                .output()
                .expect("run offgrid")
        })
    }

    /// Starts `offgrid <args>` against this node and returns at once, with stdout and
    /// stderr piped (for a test that signals the CLI while it runs).
    pub fn cli_spawn(&self, args: &[&str]) -> Child {
        Command::new(bin("offgrid"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn offgrid")
    }

    /// Sends SIGKILL and waits for the process to go.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and returns how long the process took to exit and its status.
    pub fn terminate(&mut self) -> (Duration, std::process::ExitStatus) {
        let mut c = self.child.take().expect("node running");
        let t = Instant::now();
        // std has no way to send SIGTERM; the kill(1) command does it without unsafe code.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let status = loop {
            if let Ok(Some(s)) = c.try_wait() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = c.kill();
                break c.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (t.elapsed(), status)
    }

    /// Restarts the node on the same data directory with the same arguments.
    pub async fn restart(mut self) -> TestNode {
        self.kill9();
        let tmp = self._tmp.take();
        let dir = self.dir.clone();
        let extra = std::mem::take(&mut self.extra);
        let env = std::mem::take(&mut self.env);
        TestNode::start_in_env(dir, tmp, extra, env).await
    }

    /// Data directory path.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Bytes of the files under `dir`, recursively (0 for a missing directory).
pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Sends signal `name` (`INT`, `TERM`, …) to process `pid`. std cannot send signals; the
/// kill(1) command does it without unsafe code.
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits until `child` exits, or kills it and panics after `timeout`; returns its status
/// and what it wrote to its piped stdout and stderr.
pub async fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("child output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("child output");
            panic!(
                "timed out after {timeout:?} waiting for {what} to exit; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of node {} ---\n{}", self.peer_id, self.log());
            FAILURE.with(|f| {
                if let Some(text) = f.borrow().as_deref() {
                    eprintln!("--- the test failed: {text} ---");
                }
            });
        }
        self.kill9();
    }
}

/// The npm folder `tests/<folder>` with its packages installed (`marker` is a path under its
/// `node_modules`), and a Node.js of version 20 or later; or why a test cannot use them here.
pub fn node_package(folder: &str, marker: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(folder);
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("`node` cannot be run ({e}); install nodejs"))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    // js-libp2p 2.x and playwright-core 1.65 need Node 20 or later (bookworm's own is 18).
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 20 {
        return Err(format!("node {version} is older than v20"));
    }
    if !dir.join("node_modules").join(marker).exists() {
        return Err(format!(
            "{}/node_modules is missing; run `npm ci --prefix tests/{folder}`",
            dir.display()
        ));
    }
    Ok(dir)
}
