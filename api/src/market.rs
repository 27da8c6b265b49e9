//! Market routes: `/market/run`, `/market/quote`, `/receipts/export`, `/reputation`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Body of `POST /market/run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Job id (idempotency key); the node generates one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Job type; hosts need an executor for it.
    #[serde(rename = "type", alias = "job_type")]
    pub job_type: String,
    /// Size in units: a decimal string (exact to 1e-6) or a number. Absent: an LLM call (a
    /// payload with `prompt` or `messages`) is sized in tokens from its prompt and
    /// `max_tokens` (a unit is one token), anything else is one unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub size: Option<Value>,
    /// Payload handed to the executor, any JSON.
    #[serde(default)]
    pub payload: Value,
    /// Overall deadline, seconds (1..=3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Hosts to run on and compare (1..=5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<usize>,
    /// Run on this host only (its peer id); paid and receipted as usual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Answer of `POST /market/run` (and Core's job result): a completed job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunResponse {
    /// Job id.
    pub job_id: String,
    /// Peer id of the host whose result was accepted.
    pub host: String,
    /// Price per unit in credits (display copy of `price_micro`).
    pub price: f64,
    /// Price per unit, micro-credits.
    pub price_micro: u64,
    /// The executor's output: its JSON when it is JSON, else the text as a string.
    pub output: Value,
    /// The host's signed receipt with its decoded body.
    pub receipt: ReceiptView,
    /// Every host tried, in order.
    pub attempts: Vec<Attempt>,
    /// Hosts that agreed (redundancy > 1).
    pub replicas: Vec<String>,
    /// Quotes received in the auction.
    pub quotes: u64,
    /// Wall-clock time from request to result, milliseconds.
    pub duration_ms: u64,
}

/// One host tried for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    /// Host peer id.
    pub host: String,
    /// What happened: `ok`, or why it failed.
    pub outcome: String,
}

/// A receipt as shown to people and to Core: the signed body's fields beside the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// Receipt schema version.
    pub version: String,
    /// Cluster (mesh) the job ran in.
    pub cluster_id: String,
    /// The job's id.
    pub job_id: String,
    /// Kind of resource sold, e.g. `compute`.
    pub resource_type: String,
    /// Job size in micro-units.
    pub units: u64,
    /// Measurements of the run.
    pub metrics: ReceiptMetrics,
    /// Input and output hashes.
    pub proofs: ReceiptProofs,
    /// Content ids of stored artefacts.
    pub cids: Vec<String>,
    /// The host's peer id.
    pub node_id: String,
    /// The host's Ed25519 public key, hex.
    pub host_pubkey: String,
    /// The broker's peer id.
    pub broker_id: String,
    /// When the run started, Unix milliseconds.
    pub started_at_ms: u64,
    /// When the run finished, Unix milliseconds.
    pub finished_at_ms: u64,
    /// Quoted price per whole unit, micro-credits.
    pub price: u64,
    /// The envelope: signed bytes, signature and key.
    #[serde(flatten)]
    pub envelope: SignedEnvelope,
}

/// Measurements in a receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptMetrics {
    /// Compute tokens consumed, micro-tokens (the signed value).
    pub compute_tokens: u64,
    /// `compute_tokens` in whole tokens, for display only.
    pub compute_tokens_m: f64,
    /// Wall-clock time of the run, milliseconds.
    pub latency_ms: u64,
    /// Size of the job input, bytes.
    pub input_bytes: u64,
    /// Size of the job output, bytes.
    pub output_bytes: u64,
}

/// Hashes binding a receipt to the job's input and output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptProofs {
    /// Lowercase hex BLAKE3 of the input.
    pub input_blake3: String,
    /// Lowercase hex BLAKE3 of the output.
    pub output_blake3: String,
}

/// A signed record's envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SignedEnvelope {
    /// The body's compact JSON bytes exactly as signed, base64.
    pub signed: String,
    /// Ed25519 signature over those bytes, hex.
    pub sig: String,
    /// The signer's Ed25519 public key, hex.
    pub pubkey: String,
}

/// `GET /market/quote` query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuoteQuery {
    /// Host peer id.
    pub peer: String,
    /// Job type.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Units, decimal; one unit when absent.
    #[serde(default)]
    pub size: Option<String>,
}

/// Answer of `GET /market/quote`: a quote, a refusal or a busy signal, always with `peer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuoteResponse {
    /// The host asked.
    pub peer: String,
    /// Job type quoted (with a quote).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub job_type: Option<String>,
    /// Price per unit in credits (with a quote; display copy of `price_micro`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Price per unit, micro-credits (with a quote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_micro: Option<u64>,
    /// Until when the quote holds, Unix milliseconds (with a quote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ms: Option<u64>,
    /// Jobs the host can still take (with a quote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_left: Option<u64>,
    /// Why the host declined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declined: Option<String>,
    /// The host is busy; `retry_after_ms` says when to ask again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<bool>,
    /// When to ask again, milliseconds (when busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Any other answer of the host, debug-printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unexpected: Option<String>,
}

/// Answer of `GET /receipts/export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportResponse {
    /// Receipts in the batch (0 when nothing was issued since the last export).
    pub count: u64,
    /// The batch's Merkle root, hex; null without receipts.
    pub root: Option<String>,
    /// The batch; null without receipts.
    pub batch: Option<ReceiptBatch>,
}

/// A Merkle-rooted batch of receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReceiptBatch {
    /// Lowercase hex Merkle root over the receipts' signed bytes.
    pub root: String,
    /// When the batch was built, Unix milliseconds.
    pub created_at_ms: u64,
    /// The receipts, in leaf order.
    pub items: Vec<BatchItem>,
}

/// One receipt of a batch with its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// The receipt as signed by its host.
    pub receipt: SignedEnvelope,
    /// Position of the receipt in the batch.
    pub index: u64,
    /// Proof that the receipt's signed bytes are leaf `index` under the root.
    pub proof: MerkleProof,
}

/// Inclusion proof of one leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MerkleProof {
    /// Position of the leaf in the tree.
    pub index: u64,
    /// Sibling hashes from the leaf level upwards.
    pub siblings: Vec<MerkleSibling>,
}

/// One step of a Merkle proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MerkleSibling {
    /// Where the sibling sits: `left` or `right`.
    pub side: String,
    /// The sibling's hash, hex.
    pub hash: String,
}

/// Answer of `GET /reputation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReputationResponse {
    /// One row per host this broker has used.
    pub reputation: Vec<ReputationRow>,
}

/// A host's track record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReputationRow {
    /// Host peer id.
    pub peer: String,
    /// Jobs that succeeded.
    pub hits: u64,
    /// Jobs that failed.
    pub misses: u64,
    /// The factor the auction scores the host by.
    pub factor: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(raw: &str) -> T {
        let v: Value = serde_json::from_str(raw).unwrap();
        let t: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
        t
    }

    #[test]
    fn run_response_round_trips() {
        let r: RunResponse = round_trip(
            r#"{"job_id":"job-1","host":"12D3KooWH","price":0.03,"price_micro":30000,
            "output":{"echo":1},
            "receipt":{"version":"offgrid-receipt/1","cluster_id":"c1","job_id":"job-1",
              "resource_type":"compute","units":1000000,
              "metrics":{"compute_tokens":1500000,"compute_tokens_m":1.5,"latency_ms":4,
                "input_bytes":2,"output_bytes":10},
              "proofs":{"input_blake3":"aa","output_blake3":"bb"},"cids":[],
              "node_id":"12D3KooWH","host_pubkey":"cc","broker_id":"12D3KooWB",
              "started_at_ms":1,"finished_at_ms":5,"price":30000,
              "signed":"eyJhIjo3fQ==","sig":"dd","pubkey":"cc"},
            "attempts":[{"host":"12D3KooWH","outcome":"ok"}],"replicas":[],"quotes":2,
            "duration_ms":40}"#,
        );
        assert_eq!(r.receipt.envelope.sig, "dd");
    }

    #[test]
    fn run_request_round_trips() {
        round_trip::<RunRequest>(
            r#"{"type":"echo","size":"1","payload":{},"timeout_s":30,"redundancy":1}"#,
        );
        round_trip::<RunRequest>(r#"{"job_id":"j","type":"echo","payload":null}"#);
    }

    #[test]
    fn quote_variants_round_trip() {
        round_trip::<QuoteResponse>(
            r#"{"peer":"p","type":"compute","price":0.03,"price_micro":30000,
            "valid_until_ms":9,"capacity_left":3}"#,
        );
        round_trip::<QuoteResponse>(r#"{"peer":"p","declined":"no executor"}"#);
        round_trip::<QuoteResponse>(r#"{"peer":"p","busy":true,"retry_after_ms":500}"#);
        round_trip::<QuoteResponse>(r#"{"peer":"p","unexpected":"Ack"}"#);
    }

    #[test]
    fn export_round_trips() {
        round_trip::<ExportResponse>(r#"{"count":0,"root":null,"batch":null}"#);
        round_trip::<ExportResponse>(
            r#"{"count":1,"root":"ab","batch":{"root":"ab","created_at_ms":7,"items":[
            {"receipt":{"signed":"e30=","sig":"00","pubkey":"11"},"index":0,
             "proof":{"index":0,"siblings":[{"side":"left","hash":"22"}]}}]}}"#,
        );
    }

    #[test]
    fn reputation_round_trips() {
        round_trip::<ReputationResponse>(
            r#"{"reputation":[{"peer":"p","hits":3,"misses":1,"factor":0.8}]}"#,
        );
    }
}
