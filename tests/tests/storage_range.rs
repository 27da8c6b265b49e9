//! Range and stream reads with real processes: `offgrid get ASSET --range START-END` and
//! `GET /storage/assets/{id}/content` with `Range` fetch only the segments they need;
//! `offgrid get ASSET -` streams the whole file to stdout; bad ranges get 416 or a clear CLI
//! error; a reader that stops does not leak the node's read slots.

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod storage_common;

use std::{process::Command, time::Duration};

use offgrid_e2e::{bin, wait_until, TestNode};
use sha2::{Digest, Sha256};
use storage_common::*;

/// EC 4 of 8 with 64 KiB shards: a segment holds a little under 256 KiB.
const N: u64 = 8;

async fn served(hosts: &[TestNode]) -> u64 {
    let mut sum = 0;
    for h in hosts {
        sum += h.get("/storage/status").await["host"]["served_shards"]
            .as_u64()
            .unwrap();
    }
    sum
}

fn put(a: &TestNode, src: &std::path::Path) -> (String, u64) {
    let put = a.cli_json(&[
        "put",
        src.to_str().unwrap(),
        "--k",
        "4",
        "--n",
        "8",
        "--shard-size",
        "64KiB",
    ]);
    (
        put["asset_id"].as_str().unwrap().to_owned(),
        put["segments"].as_u64().unwrap(),
    )
}

/// Runs `sh -c SCRIPT` with `$0` the CLI and `$1` the node's data dir; its stdout.
fn shell(a: &TestNode, script: &str, args: &[&str]) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(bin("offgrid"))
        .arg(a.data_dir())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn content(
    a: &TestNode,
    asset: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = reqwest::Client::new()
        .get(format!("{}/storage/assets/{asset}/content", a.api))
        .bearer_auth(&a.token);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_reads_fetch_only_their_segments_and_get_dash_streams_the_whole_file() {
    let (a, hosts) = mesh(N as usize, None).await;
    let dir = tempfile::tempdir().unwrap();
    let size: usize = 6 << 20;
    let src = write_random(dir.path(), "r.bin", size, 11, None);
    let bytes = std::fs::read(&src).unwrap();
    let (asset, segments) = put(&a, &src);
    assert!(segments >= 20, "{segments} segments");

    // One byte from the middle: one segment's shards at most, counted by the hosts.
    let mid = size / 2;
    let before = served(&hosts).await;
    let out = dir.path().join("one.bin");
    let spec = format!("{mid}-{mid}");
    let got = a.cli_json(&["get", &asset, "--range", &spec, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), &bytes[mid..=mid], "{got}");
    let seg = got["segments"].as_str().unwrap().to_owned();
    let (first, last) = seg.split_once('-').unwrap();
    assert_eq!(first, last, "{got}");
    let fetched = wait_until(Duration::from_secs(10), "the hosts' counters", || {
        let hosts = &hosts;
        async move {
            let n = served(hosts).await - before;
            (n >= 4).then_some(n)
        }
    })
    .await;
    assert!(
        fetched <= N,
        "a 1-byte range made the hosts serve {fetched} shards (one segment has {N})"
    );

    // A range across a segment boundary, through HTTP: 206 with Content-Range.
    let (s, e) = (mid - 300_000, mid + 300_000);
    let (status, headers, body) = content(&a, &asset, Some(&format!("bytes={s}-{e}"))).await;
    assert_eq!(status, 206);
    assert_eq!(
        headers["content-range"].to_str().unwrap(),
        format!("bytes {s}-{e}/{size}")
    );
    assert!(body == bytes[s..=e], "the range's bytes differ");
    // The last bytes by suffix, and an END past the end cut to the last byte (RFC 9110).
    let (status, _, body) = content(&a, &asset, Some("bytes=-10")).await;
    assert_eq!((status, body.as_slice()), (206, &bytes[size - 10..]));
    let (status, _, body) = content(
        &a,
        &asset,
        Some(&format!("bytes={}-{}", size - 3, size + 100)),
    )
    .await;
    assert_eq!((status, body.as_slice()), (206, &bytes[size - 3..]));

    // `get -` piped into sha256sum matches the original.
    let want = hex::encode(Sha256::digest(&bytes));
    let piped = shell(
        &a,
        r#""$0" --data-dir "$1" get "$2" - | sha256sum"#,
        &[&asset],
    );
    assert_eq!(piped.split_whitespace().next(), Some(want.as_str()));
    // And a reader that stops early (`| head`) ends the CLI quietly.
    let head = shell(
        &a,
        r#""$0" --data-dir "$1" get "$2" - | head -c 1000 | wc -c"#,
        &[&asset],
    );
    assert_eq!(head.trim(), "1000");

    // Bad ranges: 416 from the API, a clear error from the CLI.
    for bad in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 5, size + 9),
        "bytes=10-5".to_owned(),
        "bytes=0-99999999999999999999999".to_owned(),
        "bytes=0-1,5-6".to_owned(),
        "pages=1-2".to_owned(),
    ] {
        let (status, headers, body) = content(&a, &asset, Some(&bad)).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 416, "{bad}: {v}");
        assert_eq!(v["error"], "range_not_satisfiable", "{bad}: {v}");
        assert_eq!(
            headers["content-range"].to_str().unwrap(),
            format!("bytes */{size}")
        );
    }
    let inverted = a.cli(&["get", &asset, "--range", "10-5", "-o", "/tmp/never"]);
    assert_eq!(inverted.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&inverted.stderr).contains("before START"));
    let past = format!("{}-{}", size - 1, size + 10);
    let out = dir.path().join("past.bin");
    let past_end = a.cli(&["get", &asset, "--range", &past, "-o", out.to_str().unwrap()]);
    assert_eq!(past_end.status.code(), Some(1));
    let err = String::from_utf8_lossy(&past_end.stderr);
    assert!(err.contains("past the end"), "{err}");
    assert!(!out.exists(), "a failed range read leaves nothing");
    let start_past = format!("{size}-");
    let past_start = a.cli(&["get", &asset, "--range", &start_past, "-"]);
    let err = String::from_utf8_lossy(&past_start.stderr);
    assert!(
        past_start.status.code() == Some(1) && err.contains("range_not_satisfiable"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_reader_stops_frees_its_slot_and_the_node_stays_up() {
    let (a, _hosts) = mesh(N as usize, None).await;
    let dir = tempfile::tempdir().unwrap();
    let src = write_random(dir.path(), "s.bin", 4 << 20, 12, None);
    let bytes = std::fs::read(&src).unwrap();
    let (asset, _) = put(&a, &src);
    let http = reqwest::Client::new();
    // Three times as many readers as the node serves at once, each gone after its first
    // chunk: if a stopped reader kept its slot, a later one would be refused (503 busy).
    for i in 0..12 {
        let resp = wait_until(Duration::from_secs(20), "a read slot", || {
            let http = http.clone();
            let url = format!("{}/storage/assets/{asset}/content", a.api);
            let token = a.token.clone();
            async move {
                let r = http.get(url).bearer_auth(token).send().await.unwrap();
                match r.status().as_u16() {
                    200 => Some(r),
                    503 => None,
                    other => panic!("reader {i}: HTTP {other}"),
                }
            }
        })
        .await;
        let mut resp = resp;
        let chunk = resp.chunk().await.unwrap().unwrap();
        assert!(!chunk.is_empty() && bytes.starts_with(&chunk));
        drop(resp);
    }
    // The node still answers and a whole read still works.
    assert!(a.get("/status").await["peer_id"].is_string());
    let (status, _, body) = content(&a, &asset, None).await;
    assert_eq!(status, 200);
    assert!(body == bytes, "the whole read differs");
}
