//! Offgrid-Net ledger: pure domain logic with no networking.
//!
//! - [`signed`]: the signed-envelope pattern (sign bytes once, verify then decode).
//! - [`peer_id`]: libp2p peer id text for Ed25519 keys, without libp2p.
//! - [`receipt`]: receipts (schema v0.1) and their verification.
//! - [`merkle`]: BLAKE3 Merkle trees with domain separation.
//! - [`batch`]: Merkle-rooted receipt batches.
//! - [`dag`]: the ledger block DAG (union merge, orphan pool, receipt lookup).
//! - [`wallet`]: transactions, witnessing, quorum finality and balances.
//! - [`payment`]: payment orders, and the claims receipts make on them.
//! - [`settlement`]: what settling a host's receipts transfers, payer to host.
//! - [`quorum`]: weighted, decaying acknowledgement quorums and the failover monitor.
//! - [`reputation`]: a grow-only reputation CRDT.
//! - [`bundle`]: store-and-forward bundles, their queue policy and set reconciliation.

// Tests may unwrap: a panic is the failure report.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod codec;

pub mod batch;
pub mod bundle;
pub mod dag;
pub mod merkle;
pub mod payment;
pub mod peer_id;
pub mod quorum;
pub mod receipt;
pub mod reputation;
pub mod settlement;
pub mod signed;
pub mod wallet;

pub use batch::{BatchError, BatchItem, ReceiptBatch};
pub use dag::{Block, BlockBody, BlockError, Dag, InsertOutcome};
pub use payment::{Claim, ClaimError, OrderBody, PaymentOrder};
pub use peer_id::{peer_id_from_pubkey, pubkey_from_peer_id};
pub use quorum::{auto_weight, Monitor, Policies, Policy, QuorumItem, QuorumKind, Requeue};
pub use receipt::{
    core_view, verify_receipt, Metrics, Proofs, ReceiptBody, ReceiptError, SignedReceipt,
};
pub use reputation::{ReputationCrdt, ReputationReport, SignedReport};
pub use settlement::{settlement, settlements};
pub use signed::{signed_message, Domain, SignError, Signed, VerifyError};
pub use wallet::{
    ApplyError, ApplyOutcome, Attestation, Finality, MintValidator, NoMints, Slot, Tx, TxBody,
    TxKind, TxReject, WalletParams, WalletState, Witness, WitnessBody, WitnessState,
};
