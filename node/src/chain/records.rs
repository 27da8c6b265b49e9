//! What the wallet keeps in the store and what a state change asks of the service: the
//! records of transactions and witness promises, the store writes they become, and the
//! effects of one change ([`Effects`]).

use std::collections::BTreeSet;

use offgrid_ledger::{
    wallet::{Slot, VerifiedTx},
    Tx, TxReject, Witness,
};
use serde::{Deserialize, Serialize};

use crate::store::{StoreError, Table};

/// Whether a transaction is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    /// Seen, not (yet) certified by a quorum.
    Pending,
    /// Certified by witnesses whose weight reaches the quorum.
    Final,
}

/// A transaction as the node stores it (`Table::Txs`, keyed by id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxRecord {
    /// The signed transaction.
    pub tx: Tx,
    /// Pending or final.
    pub status: TxStatus,
    /// The attestations that made it final (empty while pending).
    pub cert: Vec<Witness>,
    /// When this node first saw it, Unix milliseconds.
    pub received_ms: u64,
    /// When this node saw it become final.
    pub final_ms: Option<u64>,
}

/// A witness's durable promise (`Table::WitnessRecords`, keyed by [`Slot::key`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WitnessRecord {
    /// The slot.
    pub slot: Slot,
    /// The only transaction this witness signs for it.
    pub tx_id: String,
}

/// A store write a round will commit.
#[derive(Debug, Clone)]
pub enum Write {
    /// `Table::Txs`.
    Tx(String, TxRecord),
    /// `Table::WitnessRecords`.
    Witness(String, WitnessRecord),
    /// `Table::Blocks`.
    Block(String, offgrid_ledger::Block),
    /// `Table::Meta`: the reconfigurations this witness's operator approved.
    Approvals(Vec<String>),
}

/// `Table::Meta` key of [`Write::Approvals`].
pub const APPROVALS_KEY: &str = "reconfig_approvals";

impl Write {
    /// This write as a store operation.
    pub fn op(&self) -> Result<crate::store::Op, StoreError> {
        use crate::store::Op;
        match self {
            Write::Tx(k, v) => Op::put(Table::Txs, k.as_str(), v),
            Write::Witness(k, v) => Op::put(Table::WitnessRecords, k.as_str(), v),
            Write::Block(k, v) => Op::put(Table::Blocks, k.as_str(), v),
            Write::Approvals(v) => Op::put(Table::Meta, APPROVALS_KEY, v),
        }
    }
}

/// What a state change asks the service to do.
#[derive(Debug, Default)]
pub struct Effects {
    /// Store writes, committed together before anything below is sent.
    pub ops: Vec<Write>,
    /// Transactions to gossip.
    pub txs: Vec<Tx>,
    /// Transactions this witness recorded in this round, attested together by
    /// [`WalletCore::seal`] before the commit.
    pub to_attest: Vec<VerifiedTx>,
    /// Attestations to gossip.
    pub attests: Vec<Witness>,
    /// Transactions that became final.
    pub finalized: Vec<String>,
    /// Transactions certified by attestations but unknown here: fetch them.
    pub want_txs: BTreeSet<String>,
    /// Blocks to gossip.
    pub blocks: Vec<offgrid_ledger::Block>,
}

/// Why a local send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The witnesses would refuse it.
    #[error("{0}")]
    Rejected(#[from] TxReject),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(String),
}
