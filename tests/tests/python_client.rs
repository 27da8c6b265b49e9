//! The Python client for Core (clients/python) under pytest: its unit tests (modes, retries
//! on a fake clock, typed errors, mapping both ways) and its tests against real nodes, which
//! start this build's offgrid-node. Skips with a reason when python3 has no pytest.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_python_client_passes_its_tests_against_real_nodes() {
    let has_pytest = Command::new("python3")
        .args(["-c", "import pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_pytest {
        println!("skipped: python3 with pytest is not installed (pip install pytest)");
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python");
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(dir)
        .env("OFFGRID_NODE_BIN", offgrid_e2e::bin("offgrid-node"))
        .env("PYTHONPATH", dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run pytest");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{}", text.lines().last().unwrap_or_default());
    assert!(
        out.status.success(),
        "pytest failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("passed") && !text.contains("skipped"),
        "{text}"
    );
}
