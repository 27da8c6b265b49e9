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

/// Body of `POST /wallet/tx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Destination peer id (or `system`).
    pub dst: String,
    /// Amount, micro-credits.
    pub amount: u64,
    /// Fee, micro-credits; the configured minimum when absent.
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
    /// What it does, e.g. `transfer` or `mint`.
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
    /// Free-form note (a mint names its receipt batch).
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
    /// Mints submitted.
    pub submitted: u64,
    /// The mints.
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
        round_trip::<ReceiptProof>(
            r#"{"block":"b1","root":"ab","receipt_hash":"cd",
            "receipt":{"signed":"e30=","sig":"00","pubkey":"11"},
            "proof":{"index":0,"siblings":[]},"verified":true}"#,
        );
    }

    #[test]
    fn quorum_round_trips() {
        round_trip::<QuorumItems>(
            r#"{"items":[{"kind":"upload","id":"u1","required":2.0,"effective_weight":1.5,
            "reached":false,"progress":0.5,"created_ms":1,
            "acks":[{"node":"n","weight":1.5,"at_ms":2}]}]}"#,
        );
    }
}
