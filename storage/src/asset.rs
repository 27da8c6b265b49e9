//! The per-segment pipeline the node's put and get call: seal + encode + hash, and
//! verify + reconstruct + open.

use crate::{
    crypto::{
        decrypt_segment, encrypt_segment_with_nonce, new_nonce, DecryptError, EncryptError,
        NONCE_LEN, SEGMENT_OVERHEAD,
    },
    ec::{Codec, EncodeError, ReconstructError},
    shard_hash,
};

/// One shard ready to send to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedShard {
    /// Shard index within the segment.
    pub index: u16,
    /// BLAKE3 hex of `bytes`: its name on the host.
    pub hash: String,
    /// The shard itself (ciphertext or parity; never plaintext).
    pub bytes: Vec<u8>,
}

/// A shard fetched from a host, with the hash the manifest says it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCandidate {
    /// Shard index within the segment.
    pub index: u16,
    /// The hash from the manifest, hex.
    pub expected_hash: String,
    /// The bytes the host returned.
    pub bytes: Vec<u8>,
}

/// Why a segment could not be prepared.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrepareError {
    /// Sealing failed.
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
    /// Encoding failed (the plaintext exceeds [`Codec::segment_plain_len`]).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Why a segment could not be recovered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecoverError {
    /// Too few shards passed their hash check: fetch more from other hosts.
    #[error(
        "segment {segment}: only {valid} valid shard(s) of {total}, {needed} needed \
         ({} failed their hash check: {corrupt:?})",
        corrupt.len()
    )]
    NotEnoughShards {
        /// Segment index.
        segment: u64,
        /// Shards that passed their hash check (distinct indices).
        valid: usize,
        /// Indices of shards whose bytes did not match their hash (or were out of range).
        corrupt: Vec<u16>,
        /// Shards needed (k).
        needed: usize,
        /// Shards in the scheme (n).
        total: usize,
    },
    /// The manifest's sealed length cannot come from this codec.
    #[error(
        "segment {segment}: sealed length {cipher_len} impossible for this codec (max {capacity})"
    )]
    BadCipherLen {
        /// Segment index.
        segment: u64,
        /// The claimed length.
        cipher_len: u64,
        /// The codec's capacity.
        capacity: usize,
    },
    /// Reconstruction failed despite enough verified shards.
    #[error("segment {segment}: {source}")]
    Reconstruct {
        /// Segment index.
        segment: u64,
        /// The codec error.
        source: ReconstructError,
    },
    /// The rebuilt segment does not open: wrong key, or a manifest that lies.
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
}

/// Seals plaintext segment `index` under a fresh nonce, erasure-codes it and hashes the shards.
///
/// An upload that must be resumable records the nonce instead: call
/// [`prepare_segment_with_nonce`] with [`crate::crypto::new_nonce`] and save the nonce in the
/// [`crate::upload::UploadState`].
///
/// # Errors
/// [`PrepareError`] when the plaintext is longer than [`Codec::segment_plain_len`].
pub fn prepare_segment(
    codec: &Codec,
    content_key: &[u8; 32],
    asset_id: &[u8; 32],
    index: u64,
    plain: &[u8],
) -> Result<Vec<PreparedShard>, PrepareError> {
    prepare_segment_with_nonce(codec, content_key, asset_id, index, &new_nonce(), plain)
}

/// [`prepare_segment`] with a given nonce (a fresh one, or the recorded one when resuming).
///
/// # Errors
/// [`PrepareError`] when the plaintext is longer than [`Codec::segment_plain_len`].
pub fn prepare_segment_with_nonce(
    codec: &Codec,
    content_key: &[u8; 32],
    asset_id: &[u8; 32],
    index: u64,
    nonce: &[u8; NONCE_LEN],
    plain: &[u8],
) -> Result<Vec<PreparedShard>, PrepareError> {
    let sealed = encrypt_segment_with_nonce(content_key, asset_id, index, nonce, plain)?;
    let shards = codec.encode(&sealed)?;
    Ok(shards
        .into_iter()
        .zip(0u16..)
        .map(|(bytes, index)| PreparedShard {
            index,
            hash: shard_hash(&bytes),
            bytes,
        })
        .collect())
}

/// Rebuilds and opens segment `index` from fetched shards.
///
/// Every candidate is hash-checked first; a mismatch (or an out-of-range index) counts as
/// missing and is reported in [`RecoverError::NotEnoughShards`] if too few remain. Extra
/// candidates beyond k are fine; duplicates of an index count once.
///
/// # Errors
/// [`RecoverError`]: too few valid shards, impossible length, or decryption failure.
pub fn recover_segment(
    codec: &Codec,
    content_key: &[u8; 32],
    asset_id: &[u8; 32],
    index: u64,
    cipher_len: u64,
    shards: Vec<ShardCandidate>,
) -> Result<Vec<u8>, RecoverError> {
    let capacity = codec.segment_capacity();
    let original_len = usize::try_from(cipher_len)
        .ok()
        .filter(|len| (SEGMENT_OVERHEAD..=capacity).contains(len))
        .ok_or(RecoverError::BadCipherLen {
            segment: index,
            cipher_len,
            capacity,
        })?;
    let scheme = codec.scheme();
    let (needed, total) = (scheme.data_shards(), scheme.total_shards());
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; total];
    let mut corrupt = Vec::new();
    let mut valid = 0;
    for candidate in shards {
        let slot = slots.get_mut(usize::from(candidate.index));
        match slot {
            Some(slot)
                if slot.is_none() && shard_hash(&candidate.bytes) == candidate.expected_hash =>
            {
                *slot = Some(candidate.bytes);
                valid += 1;
            }
            Some(Some(_)) => {}
            _ => corrupt.push(candidate.index),
        }
    }
    if valid < needed {
        return Err(RecoverError::NotEnoughShards {
            segment: index,
            valid,
            corrupt,
            needed,
            total,
        });
    }
    let sealed =
        codec
            .reconstruct(slots, original_len)
            .map_err(|source| RecoverError::Reconstruct {
                segment: index,
                source,
            })?;
    Ok(decrypt_segment(content_key, asset_id, index, &sealed)?)
}
