//! Erasure coding of sealed segments: Reed–Solomon over GF(2^8) or plain replication.
//!
//! A sealed segment (see [`crate::crypto`]) is cut into k data shards of exactly `shard_size`
//! bytes (the last one zero padded) and n − k parity shards are added; any k of the n rebuild
//! it. With [`Scheme::Replicate`] every one of the r shards is a full copy of the segment (not
//! padded, so a short last segment costs only its own length).
//!
//! # Adaptive (k, n) policy
//!
//! Shards go on n distinct hosts. With fewer hosts than n, [`adapt`] shrinks the scheme:
//!
//! 1. `hosts >= n`: keep (k, n).
//! 2. `hosts < 2`: error; one host cannot give any loss tolerance.
//! 3. otherwise `n' = hosts`, `k' = max(1, floor(n' · k / n))`: the expansion n'/k' is at
//!    least n/k (unless k' had to be raised to 1, e.g. 1/3 on 2 hosts gives 1/2), so the
//!    fraction of hosts that may fail does not shrink;
//! 4. parity `n' − k'` is raised to at least `min(4, n − k, n' − 1)` by lowering k' (never
//!    asking for more parity than the original scheme had, and always leaving k' ≥ 1).
//!
//! For the default 12/20: 15 hosts → 9/15, 10 hosts → 6/10, 6 hosts → 2/6, 3 hosts → 1/3,
//! 2 hosts → 1/2. Replication adapts to `r' = min(r, hosts)` with the same two-host floor.

use std::fmt;

use reed_solomon_erasure::galois_8::ReedSolomon;
use serde::{Deserialize, Serialize};

use crate::crypto::SEGMENT_OVERHEAD;

/// Most shards GF(2^8) Reed–Solomon can produce.
pub const MAX_SHARDS: u16 = 256;
/// Largest sealed segment a codec may produce; bounds the memory of one segment in flight.
pub const MAX_SEGMENT_BYTES: usize = 256 << 20;

/// How a segment is spread over shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Scheme {
    /// Reed–Solomon: k data shards plus n − k parity; any k rebuild the segment.
    ReedSolomon {
        /// Data shards.
        k: u16,
        /// Total shards.
        n: u16,
    },
    /// r full copies of the segment; any one is enough.
    Replicate {
        /// Copies.
        r: u16,
    },
}

impl Scheme {
    /// Shards needed to rebuild a segment: k, or 1 for replication.
    pub fn data_shards(&self) -> usize {
        match *self {
            Scheme::ReedSolomon { k, .. } => usize::from(k),
            Scheme::Replicate { .. } => 1,
        }
    }

    /// Shards produced per segment: n or r.
    pub fn total_shards(&self) -> usize {
        match *self {
            Scheme::ReedSolomon { n, .. } => usize::from(n),
            Scheme::Replicate { r } => usize::from(r),
        }
    }

    /// Checks the parameters: 1 ≤ k < n ≤ 256, or 1 ≤ r ≤ 256.
    ///
    /// # Errors
    /// [`SchemeError`] naming the broken rule.
    pub fn validate(&self) -> Result<(), SchemeError> {
        match *self {
            Scheme::ReedSolomon { k, n } if k == 0 || n <= k || n > MAX_SHARDS => {
                Err(SchemeError::InvalidReedSolomon { k, n })
            }
            Scheme::Replicate { r } if r == 0 || r > MAX_SHARDS => {
                Err(SchemeError::InvalidReplication { r })
            }
            _ => Ok(()),
        }
    }

    /// This scheme shrunk to fit `hosts` distinct hosts; see the module docs for the policy.
    ///
    /// # Errors
    /// [`AdaptError`] for an invalid scheme or fewer than two hosts.
    pub fn adapt(&self, hosts: usize) -> Result<Scheme, AdaptError> {
        match *self {
            Scheme::ReedSolomon { k, n } => {
                adapt(k, n, hosts).map(|(k, n)| Scheme::ReedSolomon { k, n })
            }
            Scheme::Replicate { r } => {
                self.validate()?;
                if hosts < 2 {
                    return Err(AdaptError::TooFewHosts { hosts });
                }
                let r = u16::try_from(hosts).map_or(r, |hosts| hosts.min(r));
                Ok(Scheme::Replicate { r })
            }
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::ReedSolomon { k, n } => write!(f, "rs {k}/{n}"),
            Scheme::Replicate { r } => write!(f, "replicate r={r}"),
        }
    }
}

/// An invalid [`Scheme`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemeError {
    /// Reed–Solomon needs 1 ≤ k < n ≤ 256.
    #[error("invalid Reed-Solomon scheme {k}/{n}: need 1 <= k < n <= 256")]
    InvalidReedSolomon {
        /// Data shards.
        k: u16,
        /// Total shards.
        n: u16,
    },
    /// Replication needs 1 ≤ r ≤ 256.
    #[error("invalid replication factor {r}: need 1 <= r <= 256")]
    InvalidReplication {
        /// Copies.
        r: u16,
    },
}

/// Why [`adapt`] found no scheme.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdaptError {
    /// The scheme asked for was invalid to begin with.
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    /// Fewer than two hosts give no loss tolerance at all.
    #[error("only {hosts} host(s) available: storing needs at least 2 distinct hosts")]
    TooFewHosts {
        /// Hosts available.
        hosts: usize,
    },
    /// No (k', n') with k' ≥ 1 and parity ≥ 1 exists (kept as a guard; see the policy).
    #[error("no valid scheme with at least one data and one parity shard fits {hosts} hosts")]
    NoValidScheme {
        /// Hosts available.
        hosts: usize,
    },
}

/// The adaptive (k, n) policy for `hosts` distinct hosts; see the module docs.
///
/// # Errors
/// [`AdaptError`] for an invalid (k, n) or fewer than two hosts.
pub fn adapt(k: u16, n: u16, hosts: usize) -> Result<(u16, u16), AdaptError> {
    Scheme::ReedSolomon { k, n }.validate()?;
    if hosts >= usize::from(n) {
        return Ok((k, n));
    }
    if hosts < 2 {
        return Err(AdaptError::TooFewHosts { hosts });
    }
    // hosts < n <= 256, so it fits in u16; all arithmetic below stays under 256 * 256.
    let n2 = u16::try_from(hosts).map_err(|_| AdaptError::NoValidScheme { hosts })?;
    let (k32, n32, n2_32) = (u32::from(k), u32::from(n), u32::from(n2));
    let min_parity = 4u32.min(n32 - k32).min(n2_32 - 1);
    let k2 = (n2_32 * k32 / n32).max(1).min(n2_32 - min_parity);
    if k2 < 1 || k2 >= n2_32 {
        return Err(AdaptError::NoValidScheme { hosts });
    }
    let k2 = u16::try_from(k2).map_err(|_| AdaptError::NoValidScheme { hosts })?;
    Ok((k2, n2))
}

/// Why a [`Codec`] could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The scheme is invalid.
    #[error(transparent)]
    Scheme(#[from] SchemeError),
    /// The segment would not even hold the nonce and tag, or exceeds [`MAX_SEGMENT_BYTES`].
    #[error(
        "shard size {shard_size} with {data_shards} data shard(s) gives a {capacity}-byte \
         segment: must be more than {SEGMENT_OVERHEAD} and at most {MAX_SEGMENT_BYTES}"
    )]
    BadShardSize {
        /// Requested shard size.
        shard_size: u32,
        /// k (1 for replication).
        data_shards: usize,
        /// k × shard size.
        capacity: usize,
    },
}

/// Why a segment could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The segment is larger than k × shard size.
    #[error("segment of {len} bytes exceeds the codec's capacity of {capacity}")]
    TooLarge {
        /// Segment length.
        len: usize,
        /// k × shard size.
        capacity: usize,
    },
    /// The Reed–Solomon library refused; not expected, since the shard layout is set here.
    #[error("reed-solomon encode failed: {0}")]
    Codec(String),
}

/// Why a segment could not be rebuilt.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReconstructError {
    /// Too few shards: the fix is to fetch more.
    #[error("only {present} of {total} shards present, {needed} needed to rebuild the segment")]
    NotEnoughShards {
        /// Shards present.
        present: usize,
        /// Shards needed (k).
        needed: usize,
        /// Shards in the scheme (n).
        total: usize,
    },
    /// The slot vector does not have one entry per shard.
    #[error("got {got} shard slots, the scheme has {expected}")]
    WrongShardCount {
        /// Slots given.
        got: usize,
        /// n.
        expected: usize,
    },
    /// A present shard has the wrong length.
    #[error("shard {index} is {len} bytes, expected {expected}")]
    ShardSize {
        /// Shard index.
        index: usize,
        /// Its length.
        len: usize,
        /// The length it should have.
        expected: usize,
    },
    /// The claimed segment length exceeds what the shards can hold.
    #[error("segment length {original_len} exceeds the codec's capacity of {capacity}")]
    OriginalLenTooLarge {
        /// Claimed length.
        original_len: usize,
        /// k × shard size.
        capacity: usize,
    },
    /// The Reed–Solomon library refused; not expected after the checks above.
    #[error("reed-solomon reconstruct failed: {0}")]
    Codec(String),
}

/// Reed–Solomon works column by column, so a stripe is coded in slices of this many bytes of
/// every shard: the working set (n slices) then stays in L2 even with 1 MiB shards.
const COLUMN_CHUNK: usize = 16 * 1024;

/// `(start, end)` byte ranges that cover a shard in [`COLUMN_CHUNK`] steps.
fn column_chunks(shard_size: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..shard_size)
        .step_by(COLUMN_CHUNK)
        .map(move |start| (start, (start + COLUMN_CHUNK).min(shard_size)))
}

/// Encoder/decoder for one (scheme, shard size). Cheap to share; build once per upload.
#[derive(Clone)]
pub struct Codec {
    scheme: Scheme,
    shard_size: usize,
    rs: Option<ReedSolomon>,
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Codec")
            .field("scheme", &self.scheme)
            .field("shard_size", &self.shard_size)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec for `scheme` with shards of `shard_size` bytes (the whole replica size for
    /// [`Scheme::Replicate`]).
    ///
    /// # Errors
    /// [`CodecError`] for an invalid scheme or a shard size that gives an unusable segment.
    pub fn new(scheme: Scheme, shard_size: u32) -> Result<Self, CodecError> {
        scheme.validate()?;
        let data_shards = scheme.data_shards();
        let size = usize::try_from(shard_size).unwrap_or(usize::MAX);
        let capacity = size.saturating_mul(data_shards);
        if capacity <= SEGMENT_OVERHEAD || capacity > MAX_SEGMENT_BYTES {
            return Err(CodecError::BadShardSize {
                shard_size,
                data_shards,
                capacity,
            });
        }
        let rs = match scheme {
            Scheme::ReedSolomon { k, n } => Some(
                ReedSolomon::new(usize::from(k), usize::from(n - k))
                    .map_err(|_| SchemeError::InvalidReedSolomon { k, n })?,
            ),
            Scheme::Replicate { .. } => None,
        };
        Ok(Codec {
            scheme,
            shard_size: size,
            rs,
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Bytes per shard.
    pub fn shard_size(&self) -> usize {
        self.shard_size
    }

    /// The largest sealed segment: k × shard size.
    pub fn segment_capacity(&self) -> usize {
        self.shard_size * self.scheme.data_shards()
    }

    /// The largest plaintext whose sealed form (plaintext + 24 nonce + 16 tag) fits in
    /// [`Codec::segment_capacity`]: the segment length the segmenter uses.
    pub fn segment_plain_len(&self) -> usize {
        // Codec::new guarantees capacity > SEGMENT_OVERHEAD.
        self.segment_capacity() - SEGMENT_OVERHEAD
    }

    /// Cuts a sealed segment into shards: n shards of exactly shard size (zero padded), or r
    /// copies of the segment.
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`] when the segment exceeds [`Codec::segment_capacity`].
    pub fn encode(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, EncodeError> {
        let capacity = self.segment_capacity();
        if segment.len() > capacity {
            return Err(EncodeError::TooLarge {
                len: segment.len(),
                capacity,
            });
        }
        let Some(rs) = &self.rs else {
            return Ok(vec![segment.to_vec(); self.scheme.total_shards()]);
        };
        let mut shards: Vec<Vec<u8>> = (0..self.scheme.total_shards())
            .map(|i| {
                let start = (i * self.shard_size).min(segment.len());
                let end = ((i + 1) * self.shard_size).min(segment.len());
                let mut shard = Vec::with_capacity(self.shard_size);
                shard.extend_from_slice(&segment[start..end]);
                shard.resize(self.shard_size, 0);
                shard
            })
            .collect();
        for (start, end) in column_chunks(self.shard_size) {
            let mut columns: Vec<&mut [u8]> =
                shards.iter_mut().map(|s| &mut s[start..end]).collect();
            rs.encode(&mut columns)
                .map_err(|e| EncodeError::Codec(format!("{e:?}")))?;
        }
        Ok(shards)
    }

    /// Rebuilds a sealed segment of `original_len` bytes from the shards present.
    ///
    /// `shards[i]` is shard i, or `None` when it is missing. Only the data shards are rebuilt;
    /// the shards given are consumed.
    ///
    /// # Errors
    /// [`ReconstructError::NotEnoughShards`] with how many were present and needed, or a
    /// shape error (slot count, shard length, segment length).
    pub fn reconstruct(
        &self,
        mut shards: Vec<Option<Vec<u8>>>,
        original_len: usize,
    ) -> Result<Vec<u8>, ReconstructError> {
        let total = self.scheme.total_shards();
        let needed = self.scheme.data_shards();
        if shards.len() != total {
            return Err(ReconstructError::WrongShardCount {
                got: shards.len(),
                expected: total,
            });
        }
        let capacity = self.segment_capacity();
        if original_len > capacity {
            return Err(ReconstructError::OriginalLenTooLarge {
                original_len,
                capacity,
            });
        }
        let present = shards.iter().filter(|s| s.is_some()).count();
        if present < needed {
            return Err(ReconstructError::NotEnoughShards {
                present,
                needed,
                total,
            });
        }
        let Some(rs) = &self.rs else {
            return self.pick_replica(shards, original_len);
        };
        for (index, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                if shard.len() != self.shard_size {
                    return Err(ReconstructError::ShardSize {
                        index,
                        len: shard.len(),
                        expected: self.shard_size,
                    });
                }
            }
        }
        // Data shards go straight into the output, and the missing ones are rebuilt in place
        // there, so the segment is assembled without a second copy.
        let mut segment = vec![0u8; capacity];
        let mut present = vec![false; total];
        for (index, shard) in shards.iter().enumerate().take(needed) {
            if let Some(shard) = shard {
                let at = index * self.shard_size;
                segment[at..at + self.shard_size].copy_from_slice(shard);
                present[index] = true;
            }
        }
        if present[..needed].iter().any(|p| !p) {
            for (start, end) in column_chunks(self.shard_size) {
                let mut columns: Vec<(&mut [u8], bool)> = Vec::with_capacity(total);
                for (index, data) in segment.chunks_mut(self.shard_size).enumerate() {
                    columns.push((&mut data[start..end], present[index]));
                }
                for parity in shards.iter_mut().skip(needed) {
                    match parity {
                        Some(parity) => columns.push((&mut parity[start..end], true)),
                        None => columns.push((&mut [], false)),
                    }
                }
                rs.reconstruct_data(&mut columns)
                    .map_err(|e| ReconstructError::Codec(format!("{e:?}")))?;
            }
        }
        segment.truncate(original_len);
        Ok(segment)
    }

    fn pick_replica(
        &self,
        shards: Vec<Option<Vec<u8>>>,
        original_len: usize,
    ) -> Result<Vec<u8>, ReconstructError> {
        let mut short = None;
        for (index, shard) in shards.into_iter().enumerate() {
            let Some(mut shard) = shard else { continue };
            if shard.len() >= original_len {
                shard.truncate(original_len);
                return Ok(shard);
            }
            short.get_or_insert((index, shard.len()));
        }
        let (index, len) = short.unwrap_or((0, 0));
        Err(ReconstructError::ShardSize {
            index,
            len,
            expected: original_len,
        })
    }
}

#[cfg(test)]
#[path = "ec_tests.rs"]
mod tests;
