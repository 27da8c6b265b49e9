//! Persisted upload progress, so that a killed `put` resumes by sending only what is missing.
//!
//! The node saves an [`UploadState`] (as JSON in its store) after every acknowledgement. On
//! resume it checks that the source file is unchanged ([`UploadState::matches_source`]),
//! re-reads each recorded segment, checks it against the recorded plaintext hash
//! ([`UploadState::resume_nonce`]) and re-seals it with the recorded nonce, which reproduces
//! exactly the shards the hosts already acknowledged; only the [`UploadState::missing`] ones
//! are sent. The content key survives the crash wrapped for the owner.

use std::{
    fs::Metadata,
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    crypto::{WrappedKey, NONCE_LEN},
    ec::Scheme,
    manifest::{SegmentEntry, ShardEntry},
};

/// One shard's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardProgress {
    /// Shard index within its segment.
    pub index: u16,
    /// BLAKE3 hex of the shard.
    pub hash: String,
    /// The host that acknowledged it durably, once one has.
    pub host: Option<String>,
}

/// One prepared segment's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentProgress {
    /// Segment index.
    pub index: u64,
    /// The nonce it was sealed with, hex; re-used only for the identical plaintext.
    pub nonce: String,
    /// BLAKE3 hex of the segment's plaintext, to prove the plaintext is unchanged on resume.
    pub plain_blake3: String,
    /// Sealed length.
    pub cipher_len: u64,
    /// Every shard of the segment.
    pub shards: Vec<ShardProgress>,
}

/// The persisted progress of one upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Asset id, hex.
    pub asset_id: String,
    /// The file being uploaded.
    pub source_path: PathBuf,
    /// Its size when the upload started.
    pub file_size: u64,
    /// Its modification time when the upload started, ms since the Unix epoch.
    pub mtime_ms: u64,
    /// Scheme in use (after adaptation).
    pub scheme: Scheme,
    /// Shard size.
    pub shard_size: u32,
    /// Segments the file has.
    pub segment_count: u64,
    /// When the upload started, ms since the Unix epoch (becomes the manifest's `created_ms`).
    pub created_ms: u64,
    /// The content key wrapped for the owner, so a resumed upload uses the same key.
    pub owner_key: WrappedKey,
    /// Segments prepared so far, in order.
    pub segments: Vec<SegmentProgress>,
    /// The salt binding the asset id to the owner key, hex (absent in uploads begun before
    /// ids were bound).
    #[serde(default)]
    pub id_salt: Option<String>,
}

/// A shard that still needs a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingShard<'a> {
    /// Segment index.
    pub segment: u64,
    /// Shard index.
    pub shard: u16,
    /// The shard's hash.
    pub hash: &'a str,
}

/// Why an upload state update or resume check failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadError {
    /// Segments must be recorded in order.
    #[error("segment {got} recorded out of order: expected {expected}")]
    OutOfOrder {
        /// The next index expected.
        expected: u64,
        /// The index given.
        got: u64,
    },
    /// No such segment or shard in the state.
    #[error("no shard {shard} in recorded segment {segment}")]
    UnknownShard {
        /// Segment index.
        segment: u64,
        /// Shard index.
        shard: u16,
    },
    /// The segment's plaintext differs from when it was first sealed: resuming would reuse a
    /// nonce with different data, so the upload must restart.
    #[error("segment {0} of the source file changed since the upload started; restart the upload")]
    SourceChanged(u64),
    /// The recorded nonce is not valid hex of the right length.
    #[error("recorded nonce of segment {0} is malformed")]
    BadNonce(u64),
}

/// A file's modification time in ms since the Unix epoch, when the platform reports one.
pub fn mtime_ms(meta: &Metadata) -> Option<u64> {
    let modified = meta.modified().ok()?;
    let since = modified.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Milliseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl UploadState {
    /// Whether the source file still has the size and mtime recorded at the start.
    pub fn matches_source(&self, meta: &Metadata) -> bool {
        meta.len() == self.file_size && mtime_ms(meta) == Some(self.mtime_ms)
    }

    /// Records a freshly sealed segment and its shard hashes (none acknowledged yet).
    ///
    /// # Errors
    /// [`UploadError::OutOfOrder`] unless `index` is the next segment.
    pub fn record_segment(
        &mut self,
        index: u64,
        nonce: &[u8; NONCE_LEN],
        plaintext: &[u8],
        cipher_len: u64,
        shard_hashes: Vec<(u16, String)>,
    ) -> Result<(), UploadError> {
        let expected = self.segments.len() as u64;
        if index != expected {
            return Err(UploadError::OutOfOrder {
                expected,
                got: index,
            });
        }
        self.segments.push(SegmentProgress {
            index,
            nonce: hex::encode(nonce),
            plain_blake3: crate::shard_hash(plaintext),
            cipher_len,
            shards: shard_hashes
                .into_iter()
                .map(|(index, hash)| ShardProgress {
                    index,
                    hash,
                    host: None,
                })
                .collect(),
        });
        Ok(())
    }

    /// The nonce to re-seal segment `index` with, after checking that `plaintext` is what was
    /// sealed the first time. `None` if the segment was never recorded (seal it afresh).
    ///
    /// # Errors
    /// [`UploadError::SourceChanged`] if the plaintext differs, [`UploadError::BadNonce`].
    pub fn resume_nonce(
        &self,
        index: u64,
        plaintext: &[u8],
    ) -> Result<Option<[u8; NONCE_LEN]>, UploadError> {
        let Some(segment) = self.segment(index) else {
            return Ok(None);
        };
        if segment.plain_blake3 != crate::shard_hash(plaintext) {
            return Err(UploadError::SourceChanged(index));
        }
        let nonce = hex::decode(&segment.nonce).map_err(|_| UploadError::BadNonce(index))?;
        nonce
            .try_into()
            .map(Some)
            .map_err(|_| UploadError::BadNonce(index))
    }

    fn segment(&self, index: u64) -> Option<&SegmentProgress> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.segments.get(i))
    }

    /// Records that `host` durably acknowledged shard `shard` of segment `segment`.
    ///
    /// # Errors
    /// [`UploadError::UnknownShard`] if that shard was never recorded.
    pub fn ack(&mut self, segment: u64, shard: u16, host: &str) -> Result<(), UploadError> {
        let unknown = UploadError::UnknownShard { segment, shard };
        let entry = usize::try_from(segment)
            .ok()
            .and_then(|i| self.segments.get_mut(i))
            .and_then(|s| s.shards.iter_mut().find(|s| s.index == shard))
            .ok_or(unknown)?;
        entry.host = Some(host.to_owned());
        Ok(())
    }

    /// Shards of recorded segments that no host has acknowledged yet.
    pub fn missing(&self) -> impl Iterator<Item = MissingShard<'_>> + '_ {
        self.segments.iter().flat_map(|segment| {
            segment
                .shards
                .iter()
                .filter(|shard| shard.host.is_none())
                .map(move |shard| MissingShard {
                    segment: segment.index,
                    shard: shard.index,
                    hash: &shard.hash,
                })
        })
    }

    /// The first segment not yet recorded, if any remain.
    pub fn next_unrecorded(&self) -> Option<u64> {
        let next = self.segments.len() as u64;
        (next < self.segment_count).then_some(next)
    }

    /// Hosts that already hold a shard of this segment (to keep its shards on distinct hosts).
    pub fn hosts_of(&self, segment: u64) -> Vec<&str> {
        self.segment(segment)
            .map(|s| s.shards.iter().filter_map(|s| s.host.as_deref()).collect())
            .unwrap_or_default()
    }

    /// Whether every segment is recorded and has at least `k` acknowledged shards.
    pub fn is_complete(&self, k: usize) -> bool {
        self.segments.len() as u64 == self.segment_count
            && self
                .segments
                .iter()
                .all(|s| s.shards.iter().filter(|s| s.host.is_some()).count() >= k)
    }

    /// Acknowledged shards per segment, in manifest form.
    pub fn manifest_segments(&self) -> Vec<SegmentEntry> {
        self.segments
            .iter()
            .map(|segment| SegmentEntry {
                index: segment.index,
                cipher_len: segment.cipher_len,
                shards: segment
                    .shards
                    .iter()
                    .filter_map(|shard| {
                        shard.host.as_ref().map(|host| ShardEntry {
                            index: shard.index,
                            hash: shard.hash.clone(),
                            host: host.clone(),
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{new_nonce, wrap_key};

    fn state(segment_count: u64) -> UploadState {
        UploadState {
            asset_id: hex::encode([1u8; 32]),
            source_path: "/tmp/source.bin".into(),
            file_size: 123,
            mtime_ms: 456,
            scheme: Scheme::ReedSolomon { k: 2, n: 3 },
            shard_size: 64,
            segment_count,
            created_ms: 789,
            owner_key: wrap_key(&[7u8; 32], &[9u8; 32]).unwrap(),
            segments: Vec::new(),
            id_salt: None,
        }
    }

    fn hashes(segment: u8) -> Vec<(u16, String)> {
        (0..3u16)
            .map(|i| (i, crate::shard_hash(&[segment, i as u8])))
            .collect()
    }

    #[test]
    fn progress_missing_and_completion() {
        let mut up = state(2);
        assert!(!up.is_complete(2));
        assert_eq!(up.next_unrecorded(), Some(0));
        up.record_segment(0, &new_nonce(), b"zero", 44, hashes(0))
            .unwrap();
        assert_eq!(
            up.record_segment(5, &new_nonce(), b"x", 41, hashes(5)),
            Err(UploadError::OutOfOrder {
                expected: 1,
                got: 5
            })
        );
        up.record_segment(1, &new_nonce(), b"one", 43, hashes(1))
            .unwrap();
        assert_eq!(up.next_unrecorded(), None);
        assert_eq!(up.missing().count(), 6);
        up.ack(0, 0, "hostA").unwrap();
        up.ack(0, 2, "hostB").unwrap();
        up.ack(1, 1, "hostC").unwrap();
        assert_eq!(
            up.ack(1, 9, "hostC"),
            Err(UploadError::UnknownShard {
                segment: 1,
                shard: 9
            })
        );
        assert!(!up.is_complete(2), "segment 1 has one ack");
        let missing: Vec<_> = up.missing().map(|m| (m.segment, m.shard)).collect();
        assert_eq!(missing, vec![(0, 1), (1, 0), (1, 2)]);
        assert_eq!(up.hosts_of(0), vec!["hostA", "hostB"]);
        up.ack(1, 2, "hostD").unwrap();
        assert!(up.is_complete(2));
        assert!(!up.is_complete(3));
        let segments = up.manifest_segments();
        assert_eq!(segments[0].shards.len(), 2);
        assert_eq!(segments[1].shards[1].host, "hostD");
    }

    #[test]
    fn survives_json_and_guards_resumed_nonces() {
        let mut up = state(1);
        let nonce = new_nonce();
        up.record_segment(0, &nonce, b"plain", 45, hashes(0))
            .unwrap();
        up.ack(0, 1, "hostA").unwrap();
        let back: UploadState = serde_json::from_str(&serde_json::to_string(&up).unwrap()).unwrap();
        assert_eq!(back, up);
        assert_eq!(back.resume_nonce(0, b"plain"), Ok(Some(nonce)));
        assert_eq!(
            back.resume_nonce(0, b"plaiN"),
            Err(UploadError::SourceChanged(0))
        );
        assert_eq!(back.resume_nonce(1, b"new"), Ok(None));
    }

    #[test]
    fn source_check_uses_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 123]).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let mut up = state(1);
        up.mtime_ms = mtime_ms(&meta).unwrap();
        assert!(up.matches_source(&meta));
        up.file_size = 124;
        assert!(!up.matches_source(&meta));
    }
}
