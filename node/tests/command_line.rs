//! The `offgrid-node` command-line contract: `id`, `--print-config`, precedence, and
//! refusal of bad configuration and key files.

use std::process::Command;

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_offgrid-node"))
}

#[test]
fn id_creates_the_key_once_and_prints_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = node()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["id", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    let second = run();
    assert_eq!(first, second);
    assert!(first["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    assert_eq!(first["ed25519"].as_str().unwrap().len(), 64);
    assert_eq!(first["x25519"].as_str().unwrap().len(), 64);
}

#[test]
fn corrupt_key_file_is_a_clear_error_and_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    std::fs::write(&key, b"garbage").unwrap();
    let out = node()
        .arg("--data-dir")
        .arg(dir.path())
        .arg("id")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), b"garbage");
    // The daemon refuses to start on it as well.
    let out = node()
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    assert_eq!(std::fs::read(&key).unwrap(), b"garbage");
}

#[test]
fn unknown_config_key_is_named_and_the_node_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "mdns = false\n[network]\nmax_conections = 3\n").unwrap();
    let out = node()
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_conections"), "{err}");
    assert!(
        !dir.path().join("node.redb").exists(),
        "nothing was created"
    );
}

#[test]
fn precedence_is_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "api_listen = \"127.0.0.1:1111\"\ncluster_id = \"from-file\"\n",
    )
    .unwrap();
    let print = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = node();
        c.arg("--config").arg(&cfg).arg("--print-config").args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
        (
            v["api_listen"].as_str().unwrap().to_owned(),
            v["cluster_id"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        print(&[], &[]),
        ("127.0.0.1:1111".into(), "from-file".into())
    );
    assert_eq!(
        print(&[("OFFGRID_API_LISTEN", "127.0.0.1:2222")], &[]).0,
        "127.0.0.1:2222"
    );
    assert_eq!(
        print(
            &[("OFFGRID_API_LISTEN", "127.0.0.1:2222")],
            &["--api-listen", "127.0.0.1:3333"]
        )
        .0,
        "127.0.0.1:3333"
    );
    // Defaults fill what the file leaves out.
    let out = node()
        .arg("--print-config")
        .env("OFFGRID_CONFIG", &cfg)
        .output()
        .unwrap();
    let v: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(v["mdns"].as_bool(), Some(true));
    assert_eq!(v["market"]["quote_window_ms"].as_integer(), Some(250));
}
