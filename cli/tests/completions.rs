//! `offgrid completions bash|zsh|fish` prints a script that names the subcommands, needs no
//! node, and parses in its shell (each shell that is installed checks its own script).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{io::Write, process::Command};

#[test]
fn completions_for_each_shell_name_the_subcommands_and_parse() {
    for (shell, check) in [
        ("bash", &["-n"][..]),
        ("zsh", &["-n"][..]),
        ("fish", &["--no-execute"][..]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_offgrid"))
            .args(["completions", shell])
            // No node anywhere: the command must not look for one.
            .env("OFFGRID_DATA_DIR", "/nonexistent")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "offgrid completions {shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["offgrid", "status", "peers", "put", "wallet", "completions"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(script.as_bytes()).unwrap();
        match Command::new(shell).args(check).arg(file.path()).output() {
            Ok(r) => {
                assert!(
                    r.status.success(),
                    "{shell} rejects its script: {}",
                    String::from_utf8_lossy(&r.stderr)
                );
                println!("{shell}: {} bytes, parses", script.len());
            }
            Err(_) => println!(
                "{shell}: {} bytes; {shell} not installed, parse skipped",
                script.len()
            ),
        }
    }
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_offgrid"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
