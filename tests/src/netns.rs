//! Two Linux network namespaces joined by a veth pair, for tests that need multicast or a
//! LAN of their own (mDNS, Babel). Multicast never leaves them. Everything — processes
//! started through [`VethPair::spawn`] and the namespaces — is removed on drop.

use std::process::{Child, Command};

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
