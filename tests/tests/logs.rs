//! The node's logs carry no ANSI colour codes when stderr is not a terminal (a pipe, a log
//! file, journald).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::Read,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use offgrid_e2e::{bin, loopback_args};

#[test]
fn logs_to_a_pipe_have_no_escape_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("offgrid-node"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(loopback_args())
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(64);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Wait (with a deadline) until the node has logged a few lines, levels included: those
    // are what a coloured formatter paints.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(String::from_utf8_lossy(&seen).contains("INFO")
        && seen.iter().filter(|b| **b == b'\n').count() >= 2)
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => seen.extend(chunk),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("INFO"),
        "the node logged no INFO line: {text}"
    );
    assert!(
        !seen.contains(&0x1b),
        "ESC byte in the node's piped stderr: {text:?}"
    );
    println!("{} bytes of piped log, no ESC byte", seen.len());
}
