//! Offgrid-Net storage: segment encryption, erasure coding, manifests and the shard file store.
//!
//! This crate is the pure, local half of storage: no networking and no libp2p. The node wires
//! it to the mesh. A file travels through it like this:
//!
//! 1. [`segmenter::SegmentReader`] streams the file in segments of
//!    [`ec::Codec::segment_plain_len`] bytes (a 4 GiB file never needs 4 GiB of memory) and
//!    hashes the whole file with BLAKE3 as it goes.
//! 2. [`asset::prepare_segment`] encrypts each segment with the file's random content key
//!    ([`crypto::encrypt_segment`], XChaCha20-Poly1305, asset id and segment index as associated
//!    data), erasure-codes the ciphertext ([`ec::Codec::encode`]) and hashes every shard.
//! 3. Hosts keep shards in a [`shardstore::ShardStore`], content-addressed by BLAKE3 and made
//!    durable (fsync + rename + directory fsync) before they are acknowledged.
//! 4. The owner signs a [`manifest::Manifest`] ([`manifest::SignedManifest`]); the content key
//!    travels inside it wrapped for each reader's X25519 key ([`crypto::wrap_key`]), derived
//!    from the reader's Ed25519 identity ([`keys`]).
//! 5. [`asset::recover_segment`] reverses step 2 from any k hash-verified shards, and
//!    [`segmenter::FileAssembler`] writes the segments to a temporary file, checks the
//!    whole-file hash, and renames it into place.
//!
//! # Why reed-solomon-erasure
//!
//! Erasure coding uses `reed-solomon-erasure` 6 with its `simd-accel` feature (GF(2^8), C SIMD
//! kernels built with `cc`, no system package needed). Measured by `benches/ec.rs` on this
//! machine, one thread, RS 12/20: encode 1.9–2.9 GB/s and worst-case reconstruct (8 data shards
//! lost) 1.8–2.9 GB/s for 4 KiB, 64 KiB and 1 MiB shards (ranges over runs on a shared box) ([`ec::Codec`] codes in 16 KiB column
//! slices so that 1 MiB shards stay in L2). `reed-solomon-simd` encodes a little faster
//! (2.6 GB/s) but reconstructs about 4× slower (0.4 GB/s, 0.09 GB/s at 4 KiB shards), and a
//! `get` after host loss is reconstruct-bound.
//!
//! The crate has had no release since 2022 and pulls `lru` 0.7 (`cargo tree -i lru` shows
//! reed-solomon-erasure as its only dependent), which carries the unsoundness advisory
//! RUSTSEC-2026-0253 (fixed upstream in lru 0.18.2, out of reach of reed-solomon-erasure's
//! `^0.7` requirement). We never call `lru` ourselves: reed-solomon-erasure's only use of it is
//! `LruCache::new`, `get` and `put` on its internal decode-matrix cache, behind a mutex, with no
//! iterators or references held across calls. The advisory's exact list of affected functions
//! could not be read offline when this was written; re-check it with `cargo audit` when the
//! advisory database is reachable. The codec sits behind [`ec::Codec`], so swapping crates
//! touches one module.

// Tests may unwrap: a panic there is a test failure with its message.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod asset;
pub mod crypto;
pub mod delete;
pub mod ec;
pub mod folder;
pub mod keys;
pub mod manifest;
pub mod policy;
pub mod segmenter;
pub mod shardstore;
pub mod upload;

pub use asset::{
    prepare_segment, prepare_segment_with_nonce, recover_segment, PreparedShard, ShardCandidate,
};
pub use crypto::{decrypt_segment, encrypt_segment, unwrap_key, wrap_key, WrappedKey};
pub use ec::{adapt, Codec, Scheme};
pub use manifest::{Manifest, SegmentEntry, ShardEntry, SignedManifest};
pub use policy::{Distribution, Policy, PolicyError};
pub use segmenter::{FileAssembler, SegmentReader};
pub use shardstore::{disk_cost, PutOutcome, ShardStore, StoreError};
pub use upload::UploadState;

/// The message an Ed25519 signature covers for a signed record of kind `tag`:
/// `tag || 0x0A || bytes`, the project's one domain-separation rule (the ledger's
/// `signed_message`; this crate does not depend on the ledger). Tags are
/// [`manifest::MANIFEST_TAG`] and [`policy::POLICY_TAG`].
pub fn signed_message(tag: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(tag.len() + 1 + bytes.len());
    m.extend_from_slice(tag);
    m.push(b'\n');
    m.extend_from_slice(bytes);
    m
}

/// Lower-case hex of the BLAKE3 hash of `bytes`: the name of a shard everywhere in Offgrid-Net.
pub fn shard_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Whether `s` is a well-formed shard hash: 64 lower-case hex digits.
///
/// Shard hashes become file names in the [`ShardStore`], so anything else is refused before it
/// gets near a path.
pub fn is_valid_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
