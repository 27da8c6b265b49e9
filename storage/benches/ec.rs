//! Erasure-coding and crypto throughput, single-threaded ("per core").
//!
//! Run: `cargo bench -p offgrid-storage --bench ec`. Prints medians of several runs and
//! asserts nothing. MB/s are over the data bytes (k × shard size), 1 MB = 10^6 bytes.
//! Every run walks a pool of distinct stripes (about 96 MiB of data) so that the caches hold
//! only what a real put or get would have in them; memcpy copies the same bytes, from the
//! same pool, in the same run, as the baseline beside each figure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Instant};

use offgrid_storage::{
    crypto::{decrypt_segment, encrypt_segment, new_content_key},
    Codec, Scheme,
};
use rand::Rng;

const RUNS: usize = 7;
const POOL_BYTES: usize = 96 << 20;
const K: u16 = 12;
const N: u16 = 20;
const LOST: usize = 8;
const GOAL_ENCODE_MBS: f64 = 1500.0;
const GOAL_RECONSTRUCT_MBS: f64 = 1000.0;

fn random(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mbs(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / seconds / 1e6
}

struct Row {
    shard_size: usize,
    encode: f64,
    encode_memcpy: f64,
    reconstruct: f64,
    reconstruct_memcpy: f64,
}

fn bench_shard_size(shard_size: usize) -> Row {
    let codec = Codec::new(Scheme::ReedSolomon { k: K, n: N }, shard_size as u32).unwrap();
    let data_len = codec.segment_capacity();
    let stripes = (POOL_BYTES / data_len).max(4);
    let total = stripes * data_len;
    let pool: Vec<Vec<u8>> = (0..stripes).map(|_| random(data_len)).collect();
    let mut sink = vec![0u8; data_len];

    let (mut encode, mut encode_memcpy) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let start = Instant::now();
        for segment in &pool {
            black_box(codec.encode(black_box(segment)).unwrap());
        }
        encode.push(mbs(total, start.elapsed().as_secs_f64()));
        let start = Instant::now();
        for segment in &pool {
            sink.copy_from_slice(black_box(segment));
            black_box(&mut sink);
        }
        encode_memcpy.push(mbs(total, start.elapsed().as_secs_f64()));
    }

    // Worst case: 8 data shards lost, rebuilt from 4 data + 8 parity.
    let encoded: Vec<Vec<Vec<u8>>> = pool.iter().map(|s| codec.encode(s).unwrap()).collect();
    drop(pool);
    let (mut reconstruct, mut reconstruct_memcpy) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let inputs: Vec<Vec<Option<Vec<u8>>>> = encoded
            .iter()
            .map(|shards| {
                shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i >= LOST).then(|| s.clone()))
                    .collect()
            })
            .collect();
        let start = Instant::now();
        for input in inputs {
            black_box(codec.reconstruct(input, data_len).unwrap());
        }
        reconstruct.push(mbs(total, start.elapsed().as_secs_f64()));
        let start = Instant::now();
        for shards in &encoded {
            for (i, shard) in shards[LOST..LOST + usize::from(K)].iter().enumerate() {
                sink[i * shard_size..(i + 1) * shard_size].copy_from_slice(black_box(shard));
            }
            black_box(&mut sink);
        }
        reconstruct_memcpy.push(mbs(total, start.elapsed().as_secs_f64()));
    }

    // Sanity: the benchmarked path really rebuilds the data.
    let probe: Vec<Option<Vec<u8>>> = encoded[0]
        .iter()
        .enumerate()
        .map(|(i, s)| (i >= LOST).then(|| s.clone()))
        .collect();
    let rebuilt = codec.reconstruct(probe, data_len).unwrap();
    assert_eq!(&rebuilt[..shard_size], &encoded[0][0][..]);

    Row {
        shard_size,
        encode: median(encode),
        encode_memcpy: median(encode_memcpy),
        reconstruct: median(reconstruct),
        reconstruct_memcpy: median(reconstruct_memcpy),
    }
}

fn bench_crypto() -> (f64, f64, f64) {
    const SEGMENT: usize = 64 * 1024;
    let count = 512;
    let key = new_content_key();
    let asset = [1u8; 32];
    let plains: Vec<Vec<u8>> = (0..count).map(|_| random(SEGMENT)).collect();
    let total = count * SEGMENT;
    let (mut enc, mut dec, mut hash) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let start = Instant::now();
        let sealed: Vec<Vec<u8>> = plains
            .iter()
            .enumerate()
            .map(|(i, p)| encrypt_segment(&key, &asset, i as u64, p).unwrap())
            .collect();
        enc.push(mbs(total, start.elapsed().as_secs_f64()));
        let start = Instant::now();
        for (i, s) in sealed.iter().enumerate() {
            black_box(decrypt_segment(&key, &asset, i as u64, s).unwrap());
        }
        dec.push(mbs(total, start.elapsed().as_secs_f64()));
        let start = Instant::now();
        for p in &plains {
            black_box(blake3::hash(black_box(p)));
        }
        hash.push(mbs(total, start.elapsed().as_secs_f64()));
    }
    (median(enc), median(dec), median(hash))
}

fn verdict(value: f64, goal: f64) -> &'static str {
    if value >= goal {
        "meets goal"
    } else {
        "BELOW goal"
    }
}

fn main() {
    println!(
        "offgrid-storage EC benchmark: RS {K}/{N} (reed-solomon-erasure, simd-accel), one thread"
    );
    println!("medians of {RUNS} runs; MB/s over data bytes (k x shard size); 1 MB = 10^6 B");
    println!("goals per core: encode >= {GOAL_ENCODE_MBS:.0} MB/s, reconstruct (8 data shards lost) >= {GOAL_RECONSTRUCT_MBS:.0} MB/s");
    println!();
    println!(
        "{:>10} | {:>12} {:>12} | {:>14} {:>12}",
        "shard", "encode MB/s", "memcpy MB/s", "reconstr. MB/s", "memcpy MB/s"
    );
    println!("{}", "-".repeat(70));
    let mut rows = Vec::new();
    for shard_size in [4 * 1024, 64 * 1024, 1024 * 1024] {
        let row = bench_shard_size(shard_size);
        println!(
            "{:>10} | {:>12.0} {:>12.0} | {:>14.0} {:>12.0}",
            format!("{} KiB", row.shard_size / 1024),
            row.encode,
            row.encode_memcpy,
            row.reconstruct,
            row.reconstruct_memcpy
        );
        rows.push(row);
    }
    println!();
    for row in &rows {
        println!(
            "{:>5} KiB: encode {} ({:.2} GB/s), reconstruct {} ({:.2} GB/s)",
            row.shard_size / 1024,
            verdict(row.encode, GOAL_ENCODE_MBS),
            row.encode / 1000.0,
            verdict(row.reconstruct, GOAL_RECONSTRUCT_MBS),
            row.reconstruct / 1000.0
        );
    }
    let (enc, dec, hash) = bench_crypto();
    println!();
    println!("64 KiB segments: XChaCha20-Poly1305 encrypt {enc:.0} MB/s, decrypt {dec:.0} MB/s; BLAKE3 {hash:.0} MB/s");
}
