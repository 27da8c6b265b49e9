#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn setup(len: usize, shard: u32) -> (tempfile::TempDir, PathBuf, Vec<u8>, EncodeReport) {
    let tmp = tempfile::tempdir().unwrap();
    let data = random(len, len as u64 + 3);
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, &data).unwrap();
    let report = encode(&src, &tmp.path().join("shards"), 12, 20, shard).unwrap();
    (tmp, src, data, report)
}

#[test]
fn any_8_of_20_files_deleted_decode_to_the_original() {
    let (tmp, _, data, report) = setup(300_000, 4096);
    assert_eq!(report.files.len(), 20);
    assert_eq!(report.segments, 300_000u64.div_ceil(12 * 4096));
    // The worst case (the first 8 data shards), parity only, and a scattered pick.
    let picks: [Vec<usize>; 3] = [
        (0..8).collect(),
        (12..20).collect(),
        vec![1, 3, 4, 9, 11, 14, 17, 19],
    ];
    for (round, gone) in picks.iter().enumerate() {
        let dir = tmp.path().join(format!("copy-{round}"));
        std::fs::create_dir(&dir).unwrap();
        for (i, f) in report.files.iter().enumerate() {
            if !gone.contains(&i) {
                std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
            }
        }
        let out = tmp.path().join(format!("out-{round}.bin"));
        let r = decode(&dir, &out).unwrap();
        assert_eq!(r.files_used, 12);
        assert!(std::fs::read(&out).unwrap() == data, "round {round}");
    }
}

#[test]
fn nine_missing_files_are_refused_and_leave_nothing() {
    let (tmp, _, _, report) = setup(100_000, 4096);
    for f in &report.files[..9] {
        std::fs::remove_file(f).unwrap();
    }
    let out = tmp.path().join("out.bin");
    let err = decode(&tmp.path().join("shards"), &out).unwrap_err();
    assert!(
        matches!(&err, FolderError::NotEnough(m) if m.contains("only 11 of the 20")),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn a_corrupt_shard_is_skipped_and_an_empty_file_round_trips() {
    let (tmp, _, data, report) = setup(50_000, 4096);
    // Flip a byte inside the first segment's shard of 8 files: 12 good ones remain.
    for f in &report.files[..8] {
        let mut b = std::fs::read(f).unwrap();
        let at = b.len() / 2;
        b[at] ^= 1;
        std::fs::write(f, b).unwrap();
    }
    let out = tmp.path().join("out.bin");
    let r = decode(&tmp.path().join("shards"), &out).unwrap();
    assert_eq!(r.corrupt_shards, 8);
    assert!(std::fs::read(&out).unwrap() == data);

    let empty = tmp.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    encode(&empty, &tmp.path().join("e"), 3, 5, 1024).unwrap();
    let back = tmp.path().join("empty.out");
    decode(&tmp.path().join("e"), &back).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"");
}
