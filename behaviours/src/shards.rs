//! The shard protocol: store, fetch and check encrypted shards, and keep asset manifests.
//!
//! Request-response on [`PROTOCOL_NAME`] with a size-capped CBOR codec. A shard is at most
//! [`MAX_SHARD_BYTES`]; a manifest (a `SignedManifest` as JSON) at most
//! [`MAX_MANIFEST_BYTES`]; the codec's caps are those plus [`FRAMING_BYTES`]. Shard bytes
//! travel as CBOR byte strings ([`Bytes`]), not as arrays of integers.
//!
//! [`Request::StoreBatch`] carries up to [`MAX_BATCH_SHARDS`] shards of at most
//! [`MAX_BATCH_BYTES`] together for one host, which makes them durable together (one group
//! commit) and answers one [`ShardOutcome`] per shard; a batch counts as one store slot.
//! [`Request::FetchBatch`] asks one host for up to [`MAX_BATCH_SHARDS`] shards at once; the
//! host answers [`Response::ShardBatch`], one [`FetchedShard`] per hash, with at most
//! [`MAX_BATCH_BYTES`] of shard bytes (a shard that would not fit is answered
//! [`FetchedShard::Busy`]), which keeps the answer under [`MAX_RESPONSE_BYTES`]. Every shard
//! in it was checked against its hash by the host, as for [`Request::Fetch`]; a batch counts
//! as one fetch slot.
//!
//! A host answers [`Response::Busy`] when its store slots are taken (the client waits
//! `retry_after_ms` plus jitter and retries), [`Response::QuotaExceeded`] when the shard
//! would not fit (the client places it elsewhere), [`Response::LimitReached`] when a limit of
//! the host other than its total quota refuses it — this peer's own quota, the number of peers
//! it keeps shards for, or its file system's free-space floor; the [`LimitCode`] says which
//! (the client places it elsewhere too), [`Response::NotFound`] and
//! [`Response::Corrupt`] on fetch (the client fetches another shard), and
//! [`Response::Refused`] for anything malformed (a bad hash, bytes that do not match it).
//!
//! [`Response::LimitReached`] and [`ShardOutcome::LimitReached`] were added beside the
//! existing answers, which keep their meaning; a client built before them cannot decode
//! them, fails the request, and moves to another host after its retries, as it would have
//! for a full host.

use std::{fmt, time::Duration};

use libp2p::{request_response, StreamProtocol};
use serde::{
    de::{self, SeqAccess, Visitor},
    Deserialize, Deserializer, Serialize, Serializer,
};

/// Protocol name.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new("/offgrid/shards/1.0.0");

/// Largest shard a host accepts or returns.
pub const MAX_SHARD_BYTES: usize = 1 << 20;
/// Largest signed manifest carried (JSON). About 20 000 shard entries.
pub const MAX_MANIFEST_BYTES: usize = 8 << 20;
/// Most hashes in one [`Request::Has`].
pub const MAX_HAS_HASHES: usize = 4096;
/// Most shards in one [`Request::StoreBatch`] or [`Request::FetchBatch`].
pub const MAX_BATCH_SHARDS: usize = 64;
/// Most shard bytes in one [`Request::StoreBatch`] or [`Response::ShardBatch`] (the sum of
/// its shards' lengths).
pub const MAX_BATCH_BYTES: usize = 4 << 20;
/// Room for the CBOR framing, the hash and the enum tags around the payload.
pub const FRAMING_BYTES: usize = 64 * 1024;
/// Largest request on the wire (a manifest or a full batch, whichever is larger).
pub const MAX_REQUEST_BYTES: u64 =
    (max(MAX_MANIFEST_BYTES, MAX_BATCH_BYTES) + FRAMING_BYTES) as u64;
/// Largest response on the wire (a manifest or a full [`Response::ShardBatch`]).
pub const MAX_RESPONSE_BYTES: u64 =
    (max(MAX_MANIFEST_BYTES, MAX_BATCH_BYTES) + FRAMING_BYTES) as u64;

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Bytes that serialise as one CBOR byte string (serde's default for `Vec<u8>` is an array
/// of integers, about twice the size and far slower to code).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        // Accepted for robustness; the size cap of the codec bounds it.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_SHARD_BYTES));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Bytes(out))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// Client → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Keep this shard; `hash` is the BLAKE3 hex of `bytes`.
    Store {
        /// BLAKE3 hex of the bytes.
        hash: String,
        /// The shard.
        bytes: Bytes,
    },
    /// Keep these shards (all for this host); answered by [`Response::StoredBatch`]. At most
    /// [`MAX_BATCH_SHARDS`] shards and [`MAX_BATCH_BYTES`] bytes, else refused whole.
    StoreBatch {
        /// The shards.
        shards: Vec<ShardData>,
    },
    /// Return this shard.
    Fetch {
        /// BLAKE3 hex.
        hash: String,
    },
    /// Return these shards; answered by [`Response::ShardBatch`]. 1 to
    /// [`MAX_BATCH_SHARDS`] hashes, else refused whole.
    FetchBatch {
        /// BLAKE3 hexes.
        hashes: Vec<String>,
    },
    /// Which of these shards do you hold?
    Has {
        /// BLAKE3 hexes, at most [`MAX_HAS_HASHES`].
        hashes: Vec<String>,
    },
    /// Keep this signed manifest (JSON of a `SignedManifest`).
    StoreManifest {
        /// Asset id, hex.
        asset_id: String,
        /// The signed manifest.
        manifest: Bytes,
    },
    /// Return the newest signed manifest you hold for this asset.
    FetchManifest {
        /// Asset id, hex.
        asset_id: String,
    },
    /// The owner deletes this asset: drop its shards and manifest (JSON of a signed delete
    /// order, checked against the owner key of the manifest held); answered by
    /// [`Response::Deleted`].
    Delete {
        /// Asset id, hex.
        asset_id: String,
        /// The signed order.
        order: Bytes,
    },
}

impl Request {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Store { .. } => "store",
            Request::StoreBatch { .. } => "store_batch",
            Request::Fetch { .. } => "fetch",
            Request::FetchBatch { .. } => "fetch_batch",
            Request::Has { .. } => "has",
            Request::StoreManifest { .. } => "store_manifest",
            Request::FetchManifest { .. } => "fetch_manifest",
            Request::Delete { .. } => "delete",
        }
    }
}

/// One shard of a [`Request::StoreBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardData {
    /// BLAKE3 hex of the bytes.
    pub hash: String,
    /// The shard.
    pub bytes: Bytes,
}

/// What became of one shard of a [`Request::StoreBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardOutcome {
    /// Durable on the host (fsynced or group-committed, and renamed).
    Stored {
        /// The host already had it.
        already_had: bool,
    },
    /// The shard does not fit in the host's quota.
    QuotaExceeded {
        /// Bytes used.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// A limit other than the host's total quota refused the shard (see [`LimitCode`]).
    LimitReached {
        /// Which limit.
        code: LimitCode,
        /// Where the peer (or the disk) stands, in the code's unit.
        used: u64,
        /// The limit, in the code's unit.
        limit: u64,
    },
    /// The host could not take this shard now (e.g. another store of it is in progress).
    Busy {
        /// Suggested wait, milliseconds.
        retry_after_ms: u64,
    },
    /// This shard was not acceptable (bad hash, bytes that do not match it, write failure).
    Refused {
        /// Why.
        reason: String,
    },
}

/// Which limit of a host refused a store; see [`Response::LimitReached`]. Nothing of a shard
/// refused so is stored, and retrying it on the same host is pointless until the limit moves
/// (the peer's shards are deleted, or disk space returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LimitCode {
    /// The bytes on disk the host keeps for this peer would pass the peer's quota (`used` and
    /// `limit` are bytes, counted in file-system blocks, not payload).
    PeerBytes,
    /// The shards the host keeps for this peer would pass the peer's quota (`used` and
    /// `limit` are shard counts).
    PeerShards,
    /// The host keeps shards for as many peers as it will and this peer is not one of them
    /// (`used` and `limit` are peer counts).
    Peers,
    /// The host's file system has less free space than its floor (`used` is the free bytes
    /// left after this shard, `limit` the floor).
    FreeSpace,
}

impl LimitCode {
    /// A stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitCode::PeerBytes => "peer_bytes",
            LimitCode::PeerShards => "peer_shards",
            LimitCode::Peers => "peers",
            LimitCode::FreeSpace => "free_space",
        }
    }
}

/// One shard of a [`Response::ShardBatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchedShard {
    /// The shard (verified against its hash by the host before sending).
    Shard {
        /// The bytes.
        bytes: Bytes,
    },
    /// The host does not hold it.
    NotFound,
    /// It rotted on the host's disk (it was quarantined).
    Corrupt,
    /// Not in this answer (it would have passed [`MAX_BATCH_BYTES`]); ask again.
    Busy {
        /// Suggested wait, milliseconds.
        retry_after_ms: u64,
    },
    /// A malformed hash, or the host cannot read the shard.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Host → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The shard is durable (fsynced and renamed) on the host.
    Stored {
        /// The host already had it.
        already_had: bool,
    },
    /// Answer to [`Request::StoreBatch`]: one outcome per shard, in order. Only shards
    /// answered [`ShardOutcome::Stored`] are durable.
    StoredBatch {
        /// Per shard, in the order of the request.
        outcomes: Vec<ShardOutcome>,
    },
    /// The shard asked for (verified against its hash by the host before sending).
    Shard {
        /// The bytes.
        bytes: Bytes,
    },
    /// Answer to [`Request::FetchBatch`]: one entry per hash, in order, with at most
    /// [`MAX_BATCH_BYTES`] of shard bytes in all.
    ShardBatch {
        /// Per hash, in the order of the request.
        shards: Vec<FetchedShard>,
    },
    /// Answer to [`Request::Has`], one flag per hash in order.
    Have {
        /// Whether each shard is held.
        present: Vec<bool>,
    },
    /// Answer to [`Request::Delete`]: the asset's shards and manifest are gone.
    Deleted {
        /// Shards removed from the host's disk.
        shards: u64,
    },
    /// The manifest was verified and kept.
    ManifestStored,
    /// A signed manifest (JSON of a `SignedManifest`).
    Manifest {
        /// The signed manifest.
        manifest: Bytes,
    },
    /// All store slots are taken; ask again later.
    Busy {
        /// Suggested wait, milliseconds.
        retry_after_ms: u64,
    },
    /// The shard does not fit in the host's quota.
    QuotaExceeded {
        /// Bytes used.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// A limit other than the host's total quota refused the shard (see [`LimitCode`]).
    LimitReached {
        /// Which limit.
        code: LimitCode,
        /// Where the peer (or the disk) stands, in the code's unit.
        used: u64,
        /// The limit, in the code's unit.
        limit: u64,
    },
    /// No such shard or manifest.
    NotFound,
    /// The shard rotted on the host's disk (it was quarantined).
    Corrupt,
    /// The request was malformed or not acceptable.
    Refused {
        /// Why.
        reason: String,
    },
}

/// The libp2p behaviour of the shard protocol.
pub type Behaviour = crate::CborBehaviour<Request, Response>;

/// Event of [`Behaviour`].
pub type Event = request_response::Event<Request, Response>;

/// Builds the behaviour.
/// `inbound` bounds what peers may make this node buffer.
pub fn behaviour(request_timeout: Duration, inbound: &crate::Inbound) -> Behaviour {
    crate::capped_cbor(
        PROTOCOL_NAME,
        MAX_REQUEST_BYTES,
        MAX_RESPONSE_BYTES,
        request_timeout,
        inbound,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use libp2p::request_response::Codec as _;

    use super::*;

    #[test]
    fn shard_bytes_travel_as_a_byte_string() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let req = Request::Store {
            hash: "ab".repeat(32),
            bytes: Bytes(bytes.clone()),
        };
        let mut codec = request_response::cbor::codec::Codec::<Request, Response>::default();
        let mut buf = Vec::new();
        futures_lite_block(codec.write_request(&PROTOCOL_NAME, &mut buf, req.clone()));
        assert!(
            buf.len() < bytes.len() + 200,
            "{} bytes on the wire",
            buf.len()
        );
        let back = futures_lite_block(codec.read_request(&PROTOCOL_NAME, &mut buf.as_slice()));
        assert_eq!(back, req);
    }

    #[test]
    fn a_full_batch_fits_the_request_cap() {
        let shard = vec![7u8; MAX_BATCH_BYTES / MAX_BATCH_SHARDS];
        let req = Request::StoreBatch {
            shards: (0..MAX_BATCH_SHARDS)
                .map(|_| ShardData {
                    hash: "cd".repeat(32),
                    bytes: Bytes(shard.clone()),
                })
                .collect(),
        };
        let mut codec = request_response::cbor::codec::Codec::<Request, Response>::default()
            .set_request_size_maximum(MAX_REQUEST_BYTES);
        let mut buf = Vec::new();
        futures_lite_block(codec.write_request(&PROTOCOL_NAME, &mut buf, req.clone()));
        assert!(buf.len() as u64 <= MAX_REQUEST_BYTES, "{} bytes", buf.len());
        let back = futures_lite_block(codec.read_request(&PROTOCOL_NAME, &mut buf.as_slice()));
        assert_eq!(back, req);
        // The framing allowance covers the per-shard overhead of a full batch.
        assert!(buf.len() - MAX_BATCH_BYTES < FRAMING_BYTES);
    }

    #[test]
    fn limit_refusals_round_trip_with_their_code() {
        let mut codec = capped_codec();
        for code in [
            LimitCode::PeerBytes,
            LimitCode::PeerShards,
            LimitCode::Peers,
            LimitCode::FreeSpace,
        ] {
            let resp = Response::StoredBatch {
                outcomes: vec![
                    ShardOutcome::Stored { already_had: false },
                    ShardOutcome::LimitReached {
                        code,
                        used: 7,
                        limit: 9,
                    },
                ],
            };
            for r in [
                resp,
                Response::LimitReached {
                    code,
                    used: 1,
                    limit: 2,
                },
            ] {
                let mut buf = Vec::new();
                futures_lite_block(codec.write_response(&PROTOCOL_NAME, &mut buf, r.clone()));
                let back =
                    futures_lite_block(codec.read_response(&PROTOCOL_NAME, &mut buf.as_slice()));
                assert_eq!(back, r);
            }
        }
    }

    fn capped_codec() -> crate::codec::Codec<Request, Response> {
        crate::codec::Codec::new(
            MAX_REQUEST_BYTES,
            MAX_RESPONSE_BYTES,
            &crate::Inbound::streams(1),
        )
    }

    #[test]
    fn a_full_fetch_batch_answer_fits_the_response_cap() {
        let req = Request::FetchBatch {
            hashes: (0..MAX_BATCH_SHARDS).map(|i| format!("{i:064x}")).collect(),
        };
        let mut codec = capped_codec();
        let mut buf = Vec::new();
        futures_lite_block(codec.write_request(&PROTOCOL_NAME, &mut buf, req.clone()));
        let back = futures_lite_block(codec.read_request(&PROTOCOL_NAME, &mut buf.as_slice()));
        assert_eq!(back, req);

        // The largest answer a host sends: MAX_BATCH_BYTES of shards plus per-shard outcomes.
        let mut shards: Vec<FetchedShard> = (0..MAX_BATCH_SHARDS - 3)
            .map(|_| FetchedShard::Shard {
                bytes: Bytes(vec![9u8; MAX_BATCH_BYTES / (MAX_BATCH_SHARDS - 3)]),
            })
            .collect();
        shards.extend([
            FetchedShard::NotFound,
            FetchedShard::Corrupt,
            FetchedShard::Busy { retry_after_ms: 20 },
        ]);
        let resp = Response::ShardBatch { shards };
        let mut buf = Vec::new();
        futures_lite_block(codec.write_response(&PROTOCOL_NAME, &mut buf, resp.clone()));
        assert!(
            buf.len() as u64 <= MAX_RESPONSE_BYTES,
            "{} bytes",
            buf.len()
        );
        assert!(buf.len() - MAX_BATCH_BYTES < FRAMING_BYTES);
        let back = futures_lite_block(codec.read_response(&PROTOCOL_NAME, &mut buf.as_slice()));
        assert_eq!(back, resp);
    }

    #[test]
    fn an_oversized_response_is_refused_by_the_codec() {
        // More shard bytes than the response cap: the reader stops at the cap and the
        // truncated answer does not decode.
        let shards = (0..=MAX_RESPONSE_BYTES as usize / MAX_SHARD_BYTES)
            .map(|_| FetchedShard::Shard {
                bytes: Bytes(vec![1u8; MAX_SHARD_BYTES]),
            })
            .collect();
        let mut codec = capped_codec();
        let mut buf = Vec::new();
        futures_lite_block(codec.write_response(
            &PROTOCOL_NAME,
            &mut buf,
            Response::ShardBatch { shards },
        ));
        assert!(buf.len() as u64 > MAX_RESPONSE_BYTES);
        let mut wire = buf.as_slice();
        assert!(block_result(codec.read_response(&PROTOCOL_NAME, &mut wire)).is_err());
    }

    #[test]
    fn a_request_with_too_many_hashes_for_the_codec_is_refused() {
        // Far beyond MAX_BATCH_SHARDS (which the host enforces): past the request cap itself.
        let hashes = vec!["ef".repeat(32); MAX_REQUEST_BYTES as usize / 64 + 1];
        let mut codec = capped_codec();
        let mut buf = Vec::new();
        futures_lite_block(codec.write_request(
            &PROTOCOL_NAME,
            &mut buf,
            Request::FetchBatch { hashes },
        ));
        let mut wire = buf.as_slice();
        assert!(block_result(codec.read_request(&PROTOCOL_NAME, &mut wire)).is_err());
    }

    /// Polls a future that never waits (in-memory I/O) to completion.
    fn futures_lite_block<T>(f: impl std::future::Future<Output = std::io::Result<T>>) -> T {
        block_result(f).unwrap()
    }

    /// Polls a future that never waits (in-memory I/O) to its result.
    fn block_result<T>(
        f: impl std::future::Future<Output = std::io::Result<T>>,
    ) -> std::io::Result<T> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let std::task::Poll::Ready(r) = f.as_mut().poll(&mut cx) {
                return r;
            }
        }
    }
}
