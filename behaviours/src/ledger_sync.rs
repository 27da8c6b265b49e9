//! Ledger replication: the gossip topics for blocks and transactions and the
//! `/offgrid/ledger-sync/1.0.0` request-response protocol that catches a node up.
//!
//! Blocks and transactions spread on gossipsub ([`BLOCKS_TOPIC`], [`TX_TOPIC`]); a node that
//! was offline, or that sees a block whose parents it lacks, asks a peer over the sync
//! protocol: first its tips ([`Request::Tips`]), then the blocks it misses
//! ([`Request::Blocks`]), then the final transactions with their witness certificates
//! ([`Request::FinalTxs`], paged). Every message is size-capped and verified by the receiver;
//! nothing here trusts the sender.

use std::time::Duration;

use libp2p::{request_response, StreamProtocol};
use offgrid_ledger::{
    dag::Block,
    wallet::{SignedGenesis, Witness},
    Tx,
};
use serde::{Deserialize, Serialize};

/// Protocol name.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new("/offgrid/ledger-sync/1.0.0");

/// Gossipsub topic of ledger blocks (JSON of a signed [`Block`]).
pub const BLOCKS_TOPIC: &str = "offgrid/blocks/1";
/// Gossipsub topic of transactions and witness attestations (JSON of [`TxGossip`]).
pub const TX_TOPIC: &str = "offgrid/tx/1";
/// Gossipsub topic of reputation counters: JSON of an
/// `offgrid_ledger::reputation::SignedReport`, the publisher's own observations signed with
/// its node key. (Version 1 carried bare entries and relied on gossipsub's message
/// signature, which nodes no longer send.)
pub const REPUTATION_TOPIC: &str = "offgrid/reputation/2";

/// Largest request on the wire.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Largest response on the wire (a page of blocks or final transactions).
pub const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
/// Most ids in one [`Request::Blocks`] or [`Request::Txs`].
pub const MAX_IDS_PER_REQUEST: usize = 256;
/// Most transactions in one page of [`Response::FinalTxs`].
pub const MAX_TXS_PER_PAGE: usize = 512;

/// What travels on [`TX_TOPIC`]: new transactions and witness attestations, batched so that
/// a busy node sends one message for many.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxGossip {
    /// Signed transactions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub txs: Vec<Tx>,
    /// Signed witness attestations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attests: Vec<Witness>,
    /// The publisher's message counter. Gossip message ids are hashes of the content, so
    /// this makes a republication of the same items a new message rather than a duplicate.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A final transaction with the attestations that make it final (its certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedTx {
    /// The transaction.
    pub tx: Tx,
    /// Witness attestations whose weight reaches the quorum.
    pub cert: Vec<Witness>,
}

/// Node → peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Your DAG tips and a digest of your final transactions.
    Tips,
    /// These blocks, by id (at most [`MAX_IDS_PER_REQUEST`]).
    Blocks(Vec<String>),
    /// Final transactions with ids strictly after `after`, in id order, at most `limit`.
    FinalTxs {
        /// Cursor: the last id of the previous page.
        after: Option<String>,
        /// Page size (capped at [`MAX_TXS_PER_PAGE`]).
        limit: u32,
    },
    /// These transactions, by id, with whatever attestations you hold.
    Txs(Vec<String>),
    /// The wallet genesis with this id (`offgrid wallet join`).
    Genesis(String),
}

/// Peer → node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Tips`].
    Tips {
        /// DAG tips, sorted.
        tips: Vec<String>,
        /// Number of blocks in the DAG.
        blocks: u64,
        /// Number of final transactions.
        final_txs: u64,
        /// XOR of the BLAKE3 hashes of the final transaction ids, lowercase hex: equal
        /// digests mean the same set.
        final_digest: String,
    },
    /// Answer to [`Request::Blocks`]: the blocks the peer has, in parent-first order.
    Blocks(Vec<Block>),
    /// Answer to [`Request::FinalTxs`].
    FinalTxs {
        /// The page.
        txs: Vec<CertifiedTx>,
        /// Cursor for the next page, `None` at the end.
        next: Option<String>,
    },
    /// Answer to [`Request::Txs`].
    Txs(Vec<CertifiedTx>),
    /// Answer to [`Request::Genesis`]: the genesis, if the peer holds the one asked for. The
    /// asker checks it against the id (`offgrid_ledger::wallet::verify_genesis`).
    Genesis(Option<SignedGenesis>),
    /// The peer cannot answer (no ledger, overloaded).
    Unavailable(String),
}

/// The libp2p behaviour of the sync protocol.
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

    use super::*;

    #[test]
    fn empty_gossip_is_compact_and_round_trips() {
        let g = TxGossip::default();
        let s = serde_json::to_string(&g).unwrap();
        assert_eq!(s, "{}");
        assert_eq!(serde_json::from_str::<TxGossip>(&s).unwrap(), g);
    }
}
