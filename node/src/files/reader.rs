//! The reader thread of a put: reads the source one segment at a time, seals, encodes
//! and hashes it, and hands the shards to the put driver over a bounded channel. On resume
//! it re-seals recorded segments with their recorded nonces (after checking the plaintext
//! is unchanged) and hands over only the shards no host acknowledged.

use std::path::PathBuf;

use offgrid_storage::{
    crypto::{new_nonce, NONCE_LEN},
    prepare_segment_with_nonce, shard_hash,
    upload::{SegmentProgress, ShardProgress},
    Codec, PreparedShard, SegmentReader,
};
use tokio::sync::mpsc;

use super::StorageError;

/// What the reader thread hands over.
pub(crate) enum Prepared {
    /// A segment with the shards that still need a host.
    Segment {
        index: u64,
        plain_len: u64,
        /// Set for a segment not recorded before.
        record: Option<SegmentProgress>,
        shards: Vec<PreparedShard>,
    },
    /// The whole file was read.
    End { file_blake3: [u8; 32], size: u64 },
}

/// Per recorded segment: nonce, plaintext hash, shard indices still missing.
pub(crate) type ResumeInfo = Vec<(String, String, Vec<u16>)>;

/// Runs on a blocking thread until the file is read or the receiver is gone.
pub(crate) fn read_segments(
    path: PathBuf,
    codec: Codec,
    content_key: [u8; 32],
    asset_id: [u8; 32],
    resume: ResumeInfo,
    tx: mpsc::Sender<Result<Prepared, StorageError>>,
) {
    let fail = |tx: &mpsc::Sender<_>, e: StorageError| {
        let _ = tx.blocking_send(Err(e));
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            return fail(
                &tx,
                StorageError::Invalid(format!("cannot open {}: {e}", path.display())),
            )
        }
    };
    let mut reader = SegmentReader::new(std::io::BufReader::new(file), codec.segment_plain_len());
    for item in reader.by_ref() {
        let (index, plain) = match item {
            Ok(x) => x,
            Err(e) => {
                return fail(
                    &tx,
                    StorageError::Invalid(format!("reading {}: {e}", path.display())),
                )
            }
        };
        let recorded = usize::try_from(index).ok().and_then(|i| resume.get(i));
        let (nonce, missing, record) = match recorded {
            Some((_, _, missing)) if missing.is_empty() => {
                let skip = Prepared::Segment {
                    index,
                    plain_len: plain.len() as u64,
                    record: None,
                    shards: Vec::new(),
                };
                if tx.blocking_send(Ok(skip)).is_err() {
                    return;
                }
                continue;
            }
            Some((nonce_hex, plain_hash, missing)) => {
                if shard_hash(&plain) != *plain_hash {
                    return fail(&tx, StorageError::Conflict(format!(
                        "segment {index} of {} changed since the upload started; run the put again to restart it",
                        path.display()
                    )));
                }
                let nonce: Option<[u8; NONCE_LEN]> =
                    hex::decode(nonce_hex).ok().and_then(|b| b.try_into().ok());
                let Some(nonce) = nonce else {
                    return fail(
                        &tx,
                        StorageError::Internal("malformed nonce in the upload state".into()),
                    );
                };
                (nonce, Some(missing.clone()), false)
            }
            None => (new_nonce(), None, true),
        };
        let shards = match prepare_segment_with_nonce(
            &codec,
            &content_key,
            &asset_id,
            index,
            &nonce,
            &plain,
        ) {
            Ok(s) => s,
            Err(e) => {
                return fail(
                    &tx,
                    StorageError::Internal(format!("sealing segment {index}: {e}")),
                )
            }
        };
        let record = record.then(|| SegmentProgress {
            index,
            nonce: hex::encode(nonce),
            plain_blake3: shard_hash(&plain),
            cipher_len: (plain.len() + offgrid_storage::crypto::SEGMENT_OVERHEAD) as u64,
            shards: shards
                .iter()
                .map(|s| ShardProgress {
                    index: s.index,
                    hash: s.hash.clone(),
                    host: None,
                })
                .collect(),
        });
        let shards = match missing {
            Some(missing) => shards
                .into_iter()
                .filter(|s| missing.contains(&s.index))
                .collect(),
            None => shards,
        };
        let msg = Prepared::Segment {
            index,
            plain_len: plain.len() as u64,
            record,
            shards,
        };
        if tx.blocking_send(Ok(msg)).is_err() {
            return;
        }
    }
    match reader.file_blake3() {
        Some(file_blake3) => {
            let size = reader.bytes_read();
            let _ = tx.blocking_send(Ok(Prepared::End { file_blake3, size }));
        }
        None => fail(
            &tx,
            StorageError::Invalid(format!("{} could not be read to its end", path.display())),
        ),
    }
}
