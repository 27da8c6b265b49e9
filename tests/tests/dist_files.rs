//! The files in `dist/` pass their tools' own checks: the alerting rules `promtool check
//! rules`, the systemd unit `systemd-analyze verify` (with its hardening settings present).
//! Each skips with a printed reason when its tool is not installed.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Command};

fn dist(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

#[test]
fn the_example_alerting_rules_pass_promtool() {
    if Command::new("promtool").arg("--version").output().is_err() {
        println!("skipped: promtool is not installed (Debian package prometheus)");
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(dist("prometheus/offgrid-alerts.yml"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules: {said}");
    assert!(said.contains("SUCCESS"), "{said}");
    println!("{}", said.trim());
}

#[test]
fn the_systemd_unit_is_hardened_and_verifies() {
    let unit = std::fs::read_to_string(dist("systemd/offgrid-node.service")).unwrap();
    for setting in [
        "StateDirectory=offgrid",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == setting),
            "the unit lacks {setting}"
        );
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped verify: systemd-analyze is not installed");
        return;
    }
    // systemd-analyze checks that ExecStart's program exists: point it at the built binary.
    let node = offgrid_e2e::bin("offgrid-node");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offgrid-node.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/offgrid-node", &node.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    println!("systemd-analyze verify: clean");
}
