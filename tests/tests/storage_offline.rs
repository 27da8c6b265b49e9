//! Offline EC (`offgrid ec encode/decode`, no node running) and `offgrid put --no-adapt`.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_common;

use std::process::{Command, Output};

use offgrid_e2e::bin;
use storage_common::*;

/// The CLI against a data directory where no node runs.
fn offline(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bin("offgrid"))
        .arg("--data-dir")
        .arg(dir.join("no-node"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn ec_encode_then_decode_with_any_8_of_20_files_deleted_gives_the_original() {
    let tmp = tempfile::tempdir().unwrap();
    let src = write_random(tmp.path(), "usb.bin", (3 << 20) + 12_345, 5, None);
    let shards = tmp.path().join("shards");
    let out = offline(
        tmp.path(),
        &[
            "--json",
            "ec",
            "encode",
            src.to_str().unwrap(),
            shards.to_str().unwrap(),
            "--k",
            "12",
            "--n",
            "20",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let files: Vec<String> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(files.len(), 20);
    assert_eq!(std::fs::read_dir(&shards).unwrap().count(), 20);

    // Several picks of 8 files to delete, from a seeded shuffle, on fresh copies.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..4 {
        let dir = tmp.path().join(format!("stick-{round}"));
        std::fs::create_dir(&dir).unwrap();
        let mut idx: Vec<usize> = (0..20).collect();
        for i in (1..idx.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            idx.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let gone = &idx[..8];
        for (i, f) in files.iter().enumerate() {
            if !gone.contains(&i) {
                let f = std::path::Path::new(f);
                std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
        let back = tmp.path().join(format!("back-{round}.bin"));
        let out = offline(
            tmp.path(),
            &[
                "ec",
                "decode",
                dir.to_str().unwrap(),
                back.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "deleted {gone:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_same_file(&src, &back);
    }

    // Nine gone: a clear one-line refusal, nothing written.
    for f in &files[..9] {
        std::fs::remove_file(f).unwrap();
    }
    let back = tmp.path().join("nine.bin");
    let out = offline(
        tmp.path(),
        &[
            "ec",
            "decode",
            shards.to_str().unwrap(),
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("only 11 of the 20") && err.contains("12 are needed"),
        "{err}"
    );
    assert!(!back.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_no_adapt_refuses_fewer_than_n_hosts_instead_of_shrinking() {
    let (a, _hosts) = mesh(3, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "f.bin", 200_000, 9, None);
    let args = ["put", src.to_str().unwrap(), "--k", "4", "--n", "8"];
    let mut strict = args.to_vec();
    strict.push("--no-adapt");
    let refused = a.cli(&strict);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("no_hosts")
            && err.contains("only 3 storage host(s)")
            && err.contains("at least 8"),
        "{err}"
    );
    assert_eq!(a.cli_json(&["ls"])["assets"].as_array().unwrap().len(), 0);
    // Without it the scheme shrinks to the hosts there are.
    let put = a.cli_json(&args);
    assert_eq!(put["adapted"], true, "{put}");
    assert!(put["n"].as_u64().unwrap() <= 3, "{put}");
}
