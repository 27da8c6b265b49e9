//! Two Linux network namespaces joined by a veth pair, for tests that need multicast or a
//! LAN of their own (mDNS, Babel). Multicast never leaves them. Everything — processes
//! started through [`VethPair::spawn`] and the namespaces — is removed on drop.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use serde_json::Value;

/// Runs `ip` with `args`; the error says which command failed and why.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces `names[i]` with device `devs[i]` at `<prefix>.<i + 1>/24`, up, with `lo` up.
pub struct VethPair {
    /// Namespace names.
    pub names: [String; 2],
    /// Device names, one in each namespace.
    pub devs: [String; 2],
    children: Vec<Child>,
}

impl VethPair {
    /// [`VethPair::create`], or `None` after printing why the test `what` is skipped (no
    /// root, no `ip`): namespace tests skip with a reason rather than fail where they
    /// cannot run.
    pub fn create_or_skip(tag: &str, prefix: &str, what: &str) -> Option<Self> {
        match Self::create(tag, prefix) {
            Ok(pair) => Some(pair),
            Err(e) => {
                eprintln!("SKIPPED: cannot create network namespaces here ({e}); run as root to test {what}");
                None
            }
        }
    }

    /// Creates the pair; `tag` (a few letters) keeps names unique per test, `prefix` is
    /// the first three octets of the /24 (e.g. `"10.79.0"`). Fails without root.
    pub fn create(tag: &str, prefix: &str) -> Result<Self, String> {
        let id = std::process::id() % 100_000;
        let names = [format!("og{tag}{id}a"), format!("og{tag}{id}b")];
        let devs = [format!("v{tag}{id}a"), format!("v{tag}{id}b")];
        let mut pair = VethPair {
            names: [String::new(), String::new()],
            devs: devs.clone(),
            children: Vec::new(),
        };
        for (i, n) in names.iter().enumerate() {
            ip(&["netns", "add", n])?;
            // Recorded at once so a later failure still cleans this one up.
            pair.names[i] = n.clone();
        }
        ip(&[
            "link", "add", &devs[0], "type", "veth", "peer", "name", &devs[1],
        ])?;
        for i in 0..2 {
            let (ns, dev) = (&names[i], &devs[i]);
            ip(&["link", "set", dev, "netns", ns])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{prefix}.{}/24", i + 1),
                "dev",
                dev,
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // A veth has no carrier until its peer is up; multicast joined before that can go
        // unheard, so callers get the pair only once both ends are up.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for i in 0..2 {
            loop {
                let out = Command::new("ip")
                    .args(["-n", &names[i], "link", "show", &devs[i]])
                    .output()
                    .map_err(|e| format!("ip: {e}"))?;
                if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("{} in {} never came up", devs[i], names[i]));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(pair)
    }

    /// A command that runs `program` inside namespace `i`.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]).arg(program);
        c
    }

    /// Keeps a child for cleanup (killed on drop).
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Starts `offgrid-node` in namespace `i` on `data_dir` (log in `node.log` there) with
    /// its API on a free loopback port of that namespace and `args` after; killed on drop.
    pub fn spawn_node(&mut self, i: usize, data_dir: &Path, args: &[&str]) -> Result<(), String> {
        let log = std::fs::File::create(data_dir.join("node.log")).map_err(|e| e.to_string())?;
        let child = self
            .command(i, crate::bin("offgrid-node"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api-listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info,libp2p_mdns=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        self.adopt(child);
        Ok(())
    }

    /// `offgrid --json <args>` in namespace `i` against the node on `data_dir`; `None`
    /// unless it succeeds with JSON.
    pub fn cli_json(&self, i: usize, data_dir: &Path, args: &[&str]) -> Option<Value> {
        self.cli(i, data_dir, args)
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| serde_json::from_slice(&out.stdout).ok())
    }

    /// `offgrid --json <args>` in namespace `i` against the node on `data_dir`.
    pub fn cli(&self, i: usize, data_dir: &Path, args: &[&str]) -> std::io::Result<Output> {
        self.command(i, crate::bin("offgrid"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--json")
            .args(args)
            .output()
    }

    /// Waits until the node on `data_dir` in namespace `i` answers; returns its peer id.
    pub async fn wait_started(&self, i: usize, data_dir: &Path) -> String {
        crate::wait_until(Duration::from_secs(30), "node to start", || {
            let v = self.cli_json(i, data_dir, &["status"]);
            async move { v.and_then(|v| v["peer_id"].as_str().map(str::to_owned)) }
        })
        .await
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.names.iter().filter(|n| !n.is_empty()) {
            let _ = ip(&["netns", "del", n]);
        }
    }
}
