//! Wallet and ledger routes: `/wallet/*`, `/ledger/*`, `/quorum/*`. Amounts are integers of
//! micro-credits.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::market::{MerkleProof, SignedEnvelope};

/// Answer of `GET /wallet/balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    /// The account: a peer id or `system`.
    pub account: String,
    /// Final balance, micro-credits.
    pub balance: u64,
    /// The account's last final nonce.
    pub nonce: u64,
    /// The nonce its next transaction should carry.
    pub next_nonce: u64,
    /// Credits in circulation, micro-credits.
    pub supply: u64,
}

/// Answer of `GET /wallet/balances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balances {
    /// Final balance per account, micro-credits.
    pub accounts: std::collections::BTreeMap<String, u64>,
    /// Credits in circulation (the genesis total), micro-credits.
    pub supply: u64,
}

/// Body of `POST /wallet/tx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Destination peer id (or `system`).
    pub dst: String,
    /// Amount, micro-credits.
    pub amount: u64,
    /// Fee, micro-credits; halfway between `tx_fee_min` and `tx_fee_max` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<u64>,
    /// Nonce; the next free one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    /// `false`: only sign and return the transaction (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit: Option<bool>,
    /// Wait this long for finality before answering, milliseconds (at most 60 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// Answer of `POST /wallet/tx`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SendResponse {
    /// The transaction's id.
    pub tx_id: String,
    /// The nonce it carries.
    pub nonce: u64,
    /// Whether it was submitted to the witnesses.
    pub submitted: bool,
    /// The signed transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<SignedEnvelope>,
    /// Its state after waiting (with `wait_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<TxView>,
}

/// A transaction as the wallet sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    /// Transaction id.
    pub id: String,
    /// `pending` or `final`.
    pub state: String,
    /// What it does: `transfer`, `settle` (a job paid by its requester), `reconfig` (a new
    /// witness epoch) or `mint` (old records only).
    pub kind: String,
    /// Paying account.
    pub src: String,
    /// Receiving account.
    pub dst: String,
    /// Amount, micro-credits.
    pub amount: u64,
    /// Fee, micro-credits.
    pub fee: u64,
    /// The payer's nonce.
    pub nonce: u64,
    /// Free-form note (a settlement names its payment order: `order:<id>`).
    pub meta: Option<String>,
    /// Who signed it.
    pub author: String,
    /// When it was signed, Unix milliseconds.
    pub created_ms: u64,
    /// When this node received it, Unix milliseconds.
    pub received_ms: u64,
    /// When it became final here, Unix milliseconds.
    pub final_ms: Option<u64>,
    /// Witnesses that signed for it.
    pub witnesses: Vec<String>,
    /// Their weight, thousandths.
    pub weight_milli: u64,
    /// Weight needed for finality, thousandths.
    pub quorum_milli: u64,
    /// Pending and can no longer become final.
    pub dead: bool,
}

/// Answer of `GET /wallet/txs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TxList {
    /// Newest first.
    pub txs: Vec<TxView>,
}

/// Body of `POST /ledger/blocks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBlockRequest {
    /// Make a block even when no receipts wait.
    #[serde(default)]
    pub allow_empty: bool,
}

/// Answer of `POST /ledger/blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedBlocks {
    /// Ids of the blocks made.
    pub created: Vec<String>,
}

/// A block in lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockSummary {
    /// Block id (hash).
    pub id: String,
    /// Author's peer id.
    pub author: String,
    /// Parent block ids.
    pub parents: Vec<String>,
    /// The receipt batch's Merkle root, hex.
    pub root: String,
    /// Receipts in the block.
    pub receipts: u64,
    /// When it was made, Unix milliseconds.
    pub timestamp_ms: u64,
}

/// Answer of `GET /ledger/blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockList {
    /// Valid blocks known.
    pub count: u64,
    /// The DAG's tips.
    pub tips: Vec<String>,
    /// Newest first.
    pub blocks: Vec<BlockSummary>,
}

/// Answer of `GET /ledger/blocks/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BlockDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: BlockSummary,
    /// The decoded receipt bodies, in batch order.
    #[schema(value_type = Vec<Object>)]
    pub receipt_bodies: Vec<Value>,
    /// The signed block.
    pub block: SignedEnvelope,
}

/// Answer of `GET /ledger/prove/{receipt}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptProof {
    /// The block holding the receipt.
    pub block: String,
    /// The block's batch root, hex.
    pub root: String,
    /// The receipt's hash (hex BLAKE3 of its signed bytes).
    pub receipt_hash: String,
    /// The receipt as signed by its host.
    pub receipt: SignedEnvelope,
    /// The inclusion proof under `root`.
    pub proof: MerkleProof,
    /// Whether the proof verifies on the node.
    pub verified: bool,
}

/// Answer of `POST /ledger/settle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SettleResponse {
    /// Blocks made from waiting receipts.
    pub blocks: Vec<String>,
    /// Settlements submitted (one per receipt whose order is not paid yet).
    pub submitted: u64,
    /// The settlements (`kind` `settle`: payer → this host). The field keeps its old name,
    /// from when settling minted host rewards, so existing clients still read it.
    pub mints: Vec<TxView>,
}

/// A quorum item (`GET /quorum/items…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuorumItemView {
    /// `upload`, `job` or `token`.
    pub kind: String,
    /// Item id.
    pub id: String,
    /// Weight required.
    pub required: f64,
    /// Weight reached now (acks decay with age).
    pub effective_weight: f64,
    /// Whether the quorum is reached.
    pub reached: bool,
    /// Latest progress, 0..=1.
    pub progress: f64,
    /// When it was created, Unix milliseconds.
    pub created_ms: u64,
    /// Acknowledgements.
    pub acks: Vec<QuorumAck>,
}

/// One acknowledgement of a quorum item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuorumAck {
    /// Acknowledging node.
    pub node: String,
    /// Its weight.
    pub weight: f64,
    /// When it acknowledged, Unix milliseconds.
    pub at_ms: u64,
}

/// Answer of `GET /quorum/items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuorumItems {
    /// Newest first.
    pub items: Vec<QuorumItemView>,
}

/// Body of `POST /wallet/tx/submit`: a transaction signed elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The signed transaction.
    pub tx: SignedEnvelope,
    /// Wait this long for finality before answering, milliseconds (at most 60 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// Answer of `POST /wallet/tx/submit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// The transaction's id.
    pub tx_id: String,
    /// False when the wallet knew it already.
    pub new: bool,
    /// Its state after waiting (with `wait_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<TxView>,
}

/// Answer of `GET /ledger/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// Valid blocks in the DAG.
    pub blocks: u64,
    /// Blocks waiting for a parent.
    pub orphans: u64,
    /// Ids of the DAG's tips.
    pub tips: Vec<String>,
    /// Peers the ledger syncs with.
    pub peers: u64,
    /// The wallet, when it is on.
    pub wallet: Option<WalletSummary>,
    /// The genesis id a `wallet join` waits for, until a peer serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joining: Option<String>,
    /// What gossip brought that failed validation.
    pub rejected: Rejected,
}

/// The wallet part of `GET /ledger/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WalletSummary {
    /// Whether this node is a witness.
    pub witness: bool,
    /// The witness set and weights.
    pub witnesses: Vec<WitnessWeight>,
    /// Weight a transaction needs to be final, thousandths.
    pub quorum_milli: u64,
    /// Final transactions.
    pub final_txs: u64,
    /// Digest of the final transaction set (equal on nodes that agree).
    pub final_digest: String,
    /// Transactions still pending.
    pub pending_txs: u64,
    /// Credits in circulation, micro-credits.
    pub supply: u64,
    /// The witness epoch (0 until the first reconfiguration is final).
    #[serde(default)]
    pub epoch: u64,
    /// Id of the wallet's genesis (`None` when `[wallet] witnesses` configures it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_id: Option<String>,
}

/// A witness and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WitnessWeight {
    /// Peer id.
    pub peer: String,
    /// Weight, thousandths.
    pub weight_milli: u64,
}

/// Counters of rejected gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rejected {
    /// Blocks that failed validation.
    pub blocks: u64,
    /// Transaction messages that failed validation.
    pub txs: u64,
    /// Ids of the last rejected blocks (bounded).
    pub block_ids: Vec<String>,
    /// Reputation reports that failed validation.
    pub reputation: u64,
}

/// Answer of `GET /ledger/reputation`: the merged counters (a CRDT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReputationEntries {
    /// One entry per (observer, subject).
    pub entries: Vec<ReputationEntry>,
}

/// What one node observed of another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReputationEntry {
    /// Peer id of the observer.
    pub observer: String,
    /// Peer id of the node observed.
    pub subject: String,
    /// Good outcomes.
    pub hits: u64,
    /// Bad outcomes.
    pub misses: u64,
}

/// Answer of `GET /wallet/witness-records`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WitnessRecords {
    /// What this node has witnessed.
    pub records: Vec<WitnessRecord>,
}

/// One witnessed slot: the transaction this node signed for an (account, nonce).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WitnessRecord {
    /// `account/nonce`.
    pub slot: String,
    /// The transaction witnessed there.
    pub tx_id: String,
}

/// Answer of `GET /quorum/policy`: the `[quorum]` section in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuorumPolicy {
    /// Weigh acks by link and reputation unless a node has an override.
    pub auto_weights: bool,
    /// Uploads (shards stored).
    pub upload: KindPolicy,
    /// Compute jobs.
    pub job: KindPolicy,
    /// Wallet tokens (transactions).
    pub token: KindPolicy,
}

/// The policy of one kind of quorum item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KindPolicy {
    /// Effective weight an item needs.
    pub required: f64,
    /// Weight of a node without an override.
    pub weight_default: f64,
    /// Per-node weight overrides, by peer id.
    pub node_weights: std::collections::BTreeMap<String, f64>,
    /// Seconds after which an ack counts half; 0 turns decay off.
    pub decay_half_life_s: f64,
    /// Seconds after which an ack no longer counts.
    pub max_age_s: f64,
}

/// Answer of `GET /quorum/alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuorumAlerts {
    /// Alerts raised by the failover monitor, newest last.
    pub alerts: Vec<QuorumAlert>,
}

/// An upload that stalled and was requeued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuorumAlert {
    /// The upload id.
    pub id: String,
    /// Which requeue this is.
    pub attempt: u32,
    /// When, Unix milliseconds.
    pub at_ms: u64,
    /// What happened.
    pub message: String,
}

/// One witness of `POST /wallet/init`: a peer id and its weight (`1.0` when unset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WitnessSpec {
    /// The witness's peer id.
    pub peer: String,
    /// Its weight (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// Body of `POST /wallet/init`: the genesis of a new wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WalletInitRequest {
    /// The witnesses of epoch 0.
    pub witnesses: Vec<WitnessSpec>,
    /// Initial balances, micro-credits per account (peer id or `system`).
    #[serde(default)]
    pub alloc: std::collections::BTreeMap<String, u64>,
    /// Weight a transaction's attestations must reach (default: just over half the total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<f64>,
    /// Smallest transfer fee, micro-credits (default from `[wallet] tx_fee_min`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_fee_min: Option<u64>,
    /// Largest transfer fee, micro-credits (default from `[wallet] tx_fee_max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_fee_max: Option<u64>,
}

/// Body of `POST /wallet/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WalletJoinRequest {
    /// Id of the genesis to fetch from peers (as `offgrid wallet init` printed it).
    pub genesis_id: String,
    /// Hold the answer until the genesis arrives or this many ms pass (default 30000, at
    /// most 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

/// Answer of `POST /wallet/init` and `POST /wallet/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WalletGenesis {
    /// Id of the wallet's genesis.
    pub genesis_id: String,
    /// Whether the wallet runs (a join still waiting for a peer to serve the genesis: false).
    pub running: bool,
}

/// Answer of `POST /wallet/witnesses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReconfigResponse {
    /// Id of the reconfiguration transaction (the same on every witness asking for the same
    /// change).
    pub tx_id: String,
    /// The epoch it opens once final.
    pub epoch: u64,
    /// Its state after `wait_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<TxView>,
}

/// Body of `POST /wallet/witnesses`: a reconfiguration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WitnessChange {
    /// `add` or `remove`.
    pub op: String,
    /// The witness's peer id.
    pub peer: String,
    /// Weight of an added witness (default 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The new epoch's quorum weight (default: just over half its total).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<f64>,
    /// Hold the answer until the reconfiguration is final or this many ms pass (at most
    /// 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TX: &str = r#"{"id":"t1","state":"final","kind":"transfer","src":"a","dst":"b",
        "amount":5,"fee":1,"nonce":2,"meta":null,"author":"a","created_ms":1,"received_ms":2,
        "final_ms":3,"witnesses":["w1"],"weight_milli":1000,"quorum_milli":667,"dead":false}"#;

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(raw: &str) {
        let v: Value = serde_json::from_str(raw).unwrap();
        let t: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
    }

    #[test]
    fn wallet_round_trips() {
        round_trip::<Balance>(
            r#"{"account":"a","balance":10,"nonce":0,"next_nonce":1,"supply":100}"#,
        );
        round_trip::<TxList>(&format!(r#"{{"txs":[{TX}]}}"#));
        round_trip::<SendResponse>(&format!(
            r#"{{"tx_id":"t1","nonce":2,"submitted":true,
            "tx":{{"signed":"e30=","sig":"00","pubkey":"11"}},"view":{TX}}}"#
        ));
        round_trip::<SendRequest>(r#"{"dst":"b","amount":5,"wait_ms":1000}"#);
        round_trip::<Balances>(r#"{"accounts":{"a":3,"system":1},"supply":4}"#);
        round_trip::<SubmitRequest>(
            r#"{"tx":{"signed":"e30=","sig":"00","pubkey":"11"},"wait_ms":5}"#,
        );
        round_trip::<SubmitResponse>(&format!(r#"{{"tx_id":"t1","new":true,"view":{TX}}}"#));
        round_trip::<SettleResponse>(&format!(
            r#"{{"blocks":["b1"],"submitted":1,"mints":[{TX}]}}"#
        ));
    }

    #[test]
    fn blocks_round_trip() {
        let sum = r#""id":"b1","author":"a","parents":[],"root":"ab","receipts":1,
            "timestamp_ms":4"#;
        round_trip::<BlockList>(&format!(
            r#"{{"count":1,"tips":["b1"],"blocks":[{{{sum}}}]}}"#
        ));
        round_trip::<BlockDetail>(&format!(
            r#"{{{sum},"receipt_bodies":[{{"job_id":"j"}}],
            "block":{{"signed":"e30=","sig":"00","pubkey":"11"}}}}"#
        ));
        round_trip::<CreatedBlocks>(r#"{"created":["b1"]}"#);
        round_trip::<LedgerStatus>(
            r#"{"peer_id":"p","blocks":2,"orphans":0,"tips":["b1"],"peers":1,
            "wallet":{"witness":true,"epoch":0,"witnesses":[{"peer":"p","weight_milli":1000}],
            "quorum_milli":667,"final_txs":3,"final_digest":"ab","pending_txs":0,
            "supply":100},"rejected":{"blocks":1,"txs":0,"block_ids":["x"],"reputation":0}}"#,
        );
        round_trip::<ReputationEntries>(
            r#"{"entries":[{"observer":"a","subject":"b","hits":2,"misses":1}]}"#,
        );
        round_trip::<WitnessRecords>(r#"{"records":[{"slot":"a/1","tx_id":"t1"}]}"#);
        round_trip::<ReceiptProof>(
            r#"{"block":"b1","root":"ab","receipt_hash":"cd",
            "receipt":{"signed":"e30=","sig":"00","pubkey":"11"},
            "proof":{"index":0,"siblings":[]},"verified":true}"#,
        );
    }

    #[test]
    fn quorum_round_trips() {
        round_trip::<QuorumAlerts>(
            r#"{"alerts":[{"id":"u1","attempt":1,"at_ms":5,"message":"stalled"}]}"#,
        );
        round_trip::<QuorumPolicy>(
            r#"{"auto_weights":true,"upload":{"required":1.0,"weight_default":1.0,
            "node_weights":{"p":2.0},"decay_half_life_s":600.0,"max_age_s":3600.0},
            "job":{"required":0.5,"weight_default":1.0,"node_weights":{},
            "decay_half_life_s":600.0,"max_age_s":3600.0},"token":{"required":1.0,
            "weight_default":1.0,"node_weights":{},"decay_half_life_s":0.0,
            "max_age_s":86400.0}}"#,
        );
        round_trip::<QuorumItems>(
            r#"{"items":[{"kind":"upload","id":"u1","required":2.0,"effective_weight":1.5,
            "reached":false,"progress":0.5,"created_ms":1,
            "acks":[{"node":"n","weight":1.5,"at_ms":2}]}]}"#,
        );
    }
}
