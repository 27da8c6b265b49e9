//! Put and get throughput of 64 MiB across 20 local hosts (real processes on loopback),
//! healthy and then degraded (8 of the 20 hosts killed, the same assets got again).
//! Prints medians and the degraded/healthy ratio beside Tahoe-LAFS's figures measured on
//! this kind of machine (shared/NOTES.md, 2026-12-06); asserts nothing. Goals on this
//! machine: put ≥ 100 MB/s, get ≥ 150 MB/s, degraded get ≥ 0.8× the healthy get.
//!
//! Run: `cargo build --release -p offgrid-node -p offgrid-cli && cargo bench -p offgrid-e2e --bench storage_put_get`
//! Environment: `OFFGRID_BENCH_RUNS` (default 3), `OFFGRID_BENCH_MIB` (default 64),
//! `OFFGRID_BENCH_PROFILE=DIR`: record each put and get of the first run system-wide with
//! `perf record -a` into `DIR/<shard size>-<put|get>.data` (the client is the lowest pid;
//! `perf report --sort pid,sym` splits client from hosts).

// Test support: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/storage_common/mod.rs"]
mod storage_common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Instant,
};

use storage_common::{assert_same_file, mesh, write_random};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `perf record -a` into `dir/name.data` until dropped (then SIGINT so perf writes its file).
struct Perf(Child);

impl Perf {
    fn start(dir: Option<&Path>, name: &str) -> Option<Perf> {
        let out: PathBuf = dir?.join(format!("{name}.data"));
        let child = Command::new("perf")
            .args(["record", "-a", "-F", "999", "-q", "-o"])
            .arg(&out)
            .spawn()
            .map_err(|e| eprintln!("cannot start perf: {e}"))
            .ok()?;
        // perf needs a moment to open its events; without it the first samples are lost.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Some(Perf(child))
    }
}

impl Drop for Perf {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("OFFGRID_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mib: usize = std::env::var("OFFGRID_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let profile = if offgrid_e2e::bin("offgrid-node")
        .to_string_lossy()
        .contains("/release/")
    {
        "release"
    } else {
        "debug"
    };
    let profile_dir = std::env::var_os("OFFGRID_BENCH_PROFILE").map(PathBuf::from);
    let (a, mut hosts) = mesh(20, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let size = mib << 20;
    let src = write_random(dir.path(), "bench.bin", size, 42, None);
    let mb = size as f64 / 1e6;
    // Per scheme: its name, the last asset put, and the healthy get median.
    let mut kept: Vec<(&str, String, f64)> = Vec::new();
    for (scheme, args) in [
        (
            "ec 12/20, 64 KiB shards",
            vec!["--k", "12", "--n", "20", "--shard-size", "64KiB"],
        ),
        (
            "ec 12/20, 256 KiB shards",
            vec!["--k", "12", "--n", "20", "--shard-size", "256KiB"],
        ),
    ] {
        let (mut put, mut get, mut put_node, mut get_node) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut last_asset = String::new();
        for run in 0..runs {
            let mut cmd = vec!["put", src.to_str().unwrap_or_default()];
            cmd.extend(&args);
            let size_tag = args[args.len() - 1].to_owned();
            let perf = Perf::start(
                profile_dir.as_deref().filter(|_| run == 0),
                &format!("{size_tag}-put"),
            );
            let t = Instant::now();
            let v = a.cli_json(&cmd);
            put.push(mb / t.elapsed().as_secs_f64());
            drop(perf);
            put_node.push(mb / (v["duration_ms"].as_f64().unwrap_or(1.0) / 1000.0));
            let asset = v["asset_id"].as_str().unwrap_or_default().to_owned();
            let out = dir.path().join(format!("back-{run}.bin"));
            let perf = Perf::start(
                profile_dir.as_deref().filter(|_| run == 0),
                &format!("{size_tag}-get"),
            );
            let t = Instant::now();
            let g = a.cli_json(&["get", &asset, "-o", out.to_str().unwrap_or_default()]);
            get.push(mb / t.elapsed().as_secs_f64());
            drop(perf);
            get_node.push(mb / (g["duration_ms"].as_f64().unwrap_or(1.0) / 1000.0));
            assert_same_file(&src, &out);
            let _ = std::fs::remove_file(&out);
            last_asset = asset;
        }
        kept.push((scheme, last_asset, median(get.clone())));
        println!(
            "{mib} MiB across 20 hosts, {scheme} ({profile} build, {runs} runs): put median {:.0} MB/s (node {:.0}), get median {:.0} MB/s (node {:.0}) — goals put ≥ 100, get ≥ 150",
            median(put), median(put_node), median(get), median(get_node)
        );
    }
    // Degraded: 8 of the 20 hosts killed, the same assets got again.
    for h in hosts.iter_mut().take(8) {
        h.kill9();
    }
    for (scheme, asset, healthy) in kept {
        let mut get = Vec::new();
        for run in 0..runs {
            let out = dir.path().join(format!("degraded-{run}.bin"));
            let t = Instant::now();
            a.cli_json(&["get", &asset, "-o", out.to_str().unwrap_or_default()]);
            get.push(mb / t.elapsed().as_secs_f64());
            assert_same_file(&src, &out);
            let _ = std::fs::remove_file(&out);
        }
        let degraded = median(get);
        println!(
            "{mib} MiB, {scheme} ({profile} build, {runs} runs): get healthy {healthy:.0} MB/s, with 8 of 20 hosts killed {degraded:.0} MB/s, ratio {:.2} — goal ≥ 0.80",
            degraded / healthy
        );
    }
    println!(
        "Tahoe-LAFS 1.20 on 20 local nodes, 16 MiB (shared/NOTES.md, 2026-12-06): 12-of-20 put 9.7, get 4.8, get after killing 8 11.9 MB/s; 3-of-10 put 19.1, get 35.5, get after killing 7 42.5 MB/s"
    );
}
