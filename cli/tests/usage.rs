//! The `offgrid` exit-status contract: 0 ok, 1 failure with one line on stderr, 2 usage.

use std::process::Command;

fn offgrid() -> Command {
    Command::new(env!("CARGO_BIN_EXE_offgrid"))
}

#[test]
fn usage_errors_exit_2() {
    let out = offgrid().arg("no-such-command").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = offgrid().args(["toggle", "sideways"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_node_that_is_not_running_is_named_with_how_to_start_it() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("api.url"),
        format!("http://127.0.0.1:{port}\n"),
    )
    .unwrap();
    let out = offgrid()
        .arg("--data-dir")
        .arg(dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("is it running"), "{err}");
    assert!(err.contains("offgrid-node --data-dir"), "{err}");
}
