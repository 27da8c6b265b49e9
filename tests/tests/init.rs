//! `offgrid-node init` writes a commented config, creates the key and the token, prints the
//! next steps, refuses to overwrite without `--force`, and the node starts on what it wrote.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use offgrid_e2e::{bin, TestNode};

fn init(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin("offgrid-node"))
        .arg("--data-dir")
        .arg(dir)
        .arg("init")
        .args(extra)
        .env_remove("OFFGRID_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_commented_config_prints_next_steps_and_keeps_an_existing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = init(&dir, &[]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(
        config.lines().filter(|l| l.starts_with('#')).count() > 20,
        "the config is not commented:\n{config}"
    );
    assert!(config.contains(&format!("data_dir = \"{}\"", dir.display())));
    let token = std::fs::read_to_string(dir.join("api.token")).unwrap();
    for step in [
        token.trim(),
        "wallet join",
        "[[radio]]",
        "--radio",
        "config.toml",
    ] {
        assert!(said.contains(step), "next steps lack {step:?}:\n{said}");
    }
    println!("{said}");

    // A second init would replace the owner's edits: refused, file untouched.
    std::fs::write(dir.join("config.toml"), format!("{config}\n# edited\n")).unwrap();
    let again = init(&dir, &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .ends_with("# edited\n"));
    let forced = init(&dir, &["--force"]);
    assert!(forced.status.success());
    assert!(!std::fs::read_to_string(dir.join("config.toml"))
        .unwrap()
        .contains("# edited"));
    // The same token survives a second init: it is what the owner already wrote down.
    assert_eq!(
        std::fs::read_to_string(dir.join("api.token")).unwrap(),
        token
    );

    // The node starts on the config init wrote (the test's loopback flags override its
    // listen addresses), with the token init printed.
    let node = TestNode::start_in(dir.clone(), None, Vec::new()).await;
    assert_eq!(node.token, token.trim());
    let printed_id = said
        .lines()
        .find_map(|l| l.strip_prefix("peer id"))
        .unwrap()
        .trim();
    assert_eq!(node.peer_id, printed_id, "init made a different key");
    drop(node);
    drop(tmp);
}
