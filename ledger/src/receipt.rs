//! Receipts (schema v0.1): a host's signed statement that it ran a job.
//!
//! A receipt is a [`Signed`] [`ReceiptBody`]. Money and sizes are integers of a smallest unit:
//! `units` is the job size in micro-units (size `0.25` → `250_000`) and `price` is the quoted
//! price per whole unit in micro-credits (`0.03` → `30_000`), so the amount due is
//! `units × price / 1_000_000` micro-credits, rounded down.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    peer_id::peer_id_from_pubkey,
    signed::{Signed, VerifyError},
};

/// The receipt schema version this crate writes and accepts.
pub const RECEIPT_VERSION: &str = "0.1";

/// Micro-units per whole unit (and micro-credits per credit).
pub const MICRO: u64 = 1_000_000;

/// Measurements of a job run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Compute tokens consumed, in whole tokens (the backend's `usage.total_tokens`, else
    /// about one per 4 bytes of input and output).
    pub compute_tokens: u64,
    /// Wall-clock time of the run in milliseconds.
    pub latency_ms: u64,
    /// Size of the job input in bytes.
    pub input_bytes: u64,
    /// Size of the job output in bytes.
    pub output_bytes: u64,
}

/// Hashes binding the receipt to the job's input and output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proofs {
    /// Lowercase hex BLAKE3 of the input.
    pub input_blake3: String,
    /// Lowercase hex BLAKE3 of the output.
    pub output_blake3: String,
}

/// The signed content of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    /// Schema version, [`RECEIPT_VERSION`].
    pub version: String,
    /// Cluster (mesh) the job ran in.
    pub cluster_id: String,
    /// The job's id (Core's idempotency key).
    pub job_id: String,
    /// Kind of resource sold, e.g. `compute`.
    pub resource_type: String,
    /// Job size in micro-units: size `0.25` is `250_000`.
    pub units: u64,
    /// Measurements of the run.
    pub metrics: Metrics,
    /// Input and output hashes.
    pub proofs: Proofs,
    /// Content ids of stored artefacts, if any.
    pub cids: Vec<String>,
    /// The host's peer id; must match `host_pubkey` and the envelope's key.
    pub node_id: String,
    /// The host's Ed25519 public key, lowercase hex; must equal the envelope's key.
    pub host_pubkey: String,
    /// The broker's peer id.
    pub broker_id: String,
    /// When the run started, Unix milliseconds.
    pub started_at_ms: u64,
    /// When the run finished, Unix milliseconds.
    pub finished_at_ms: u64,
    /// Quoted price per whole unit in micro-credits: `0.03` is `30_000`.
    pub price: u64,
    /// The requester's payment order for this job, as it came with the run request: what
    /// makes the receipt a claim on the requester's account (see [`crate::payment`]). Absent
    /// when the job ran unpaid (no wallet on the mesh); such a receipt claims nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<crate::payment::PaymentOrder>,
}

/// A receipt as it travels and is stored.
pub type SignedReceipt = Signed<ReceiptBody>;

impl crate::signed::Domain for ReceiptBody {
    /// The type tag of a host's receipt for a job.
    const TAG: &'static [u8] = b"offgrid/receipt/v1";
}

/// Why a receipt was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Signature or decoding failure.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The body's `version` is not [`RECEIPT_VERSION`].
    #[error("unsupported receipt version {0:?}")]
    Version(String),
    /// `host_pubkey` differs from the key that signed the envelope.
    #[error("host_pubkey does not match the signing key")]
    PubkeyMismatch,
    /// `node_id` is not the peer id of the signing key.
    #[error("node_id does not match the signing key")]
    NodeIdMismatch,
}

impl ReceiptBody {
    /// Amount due in micro-credits: `units × price / 1_000_000`, rounded down, saturating at
    /// `u64::MAX` (see [`ReceiptBody::checked_amount_due`]).
    pub fn amount_due(&self) -> u64 {
        self.checked_amount_due().unwrap_or(u64::MAX)
    }

    /// Amount due in micro-credits, or `None` if it does not fit in a `u64`.
    pub fn checked_amount_due(&self) -> Option<u64> {
        let wide = u128::from(self.units) * u128::from(self.price) / u128::from(MICRO);
        u64::try_from(wide).ok()
    }
}

/// Verifies a receipt: the signature over its bytes, the schema version, and that the body
/// names the signing key as `host_pubkey` and its peer id as `node_id`. Returns the decoded
/// body.
pub fn verify_receipt(receipt: &SignedReceipt) -> Result<ReceiptBody, ReceiptError> {
    let body = receipt.verify()?;
    if body.version != RECEIPT_VERSION {
        return Err(ReceiptError::Version(body.version));
    }
    if !body
        .host_pubkey
        .eq_ignore_ascii_case(&hex::encode(receipt.pubkey))
    {
        return Err(ReceiptError::PubkeyMismatch);
    }
    if body.node_id != peer_id_from_pubkey(&receipt.pubkey) {
        return Err(ReceiptError::NodeIdMismatch);
    }
    Ok(body)
}

/// JSON view of a receipt for Core: every body field, `metrics.compute_tokens_m`
/// (compute tokens in millions of tokens, a float for display only), the envelope's `signed`,
/// `sig` and `pubkey`, and `sig_domain`, the type tag: `sig` is Ed25519 over `sig_domain`, a
/// newline and the `signed` bytes, so Core can verify it itself.
pub fn core_view(receipt: &SignedReceipt, body: &ReceiptBody) -> Value {
    let mut view = match serde_json::to_value(body) {
        Ok(Value::Object(map)) => map,
        // A struct of strings and integers always serialises to an object.
        _ => serde_json::Map::new(),
    };
    if let Some(Value::Object(metrics)) = view.get_mut("metrics") {
        // Display only: the signed value stays the integer `compute_tokens`.
        let tokens_m = body.metrics.compute_tokens as f64 / MICRO as f64;
        metrics.insert("compute_tokens_m".into(), Value::from(tokens_m));
    }
    if let Ok(Value::Object(envelope)) = serde_json::to_value(receipt) {
        view.extend(envelope);
    }
    // What `sig` covers is this tag, a newline, then the `signed` bytes.
    view.insert(
        "sig_domain".into(),
        Value::from(String::from_utf8_lossy(<ReceiptBody as crate::Domain>::TAG)),
    );
    Value::Object(view)
}

#[cfg(test)]
pub(crate) mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;

    /// A well-formed receipt body for the host `key`.
    pub(crate) fn body_for(key: &SigningKey, job_id: &str, units: u64, price: u64) -> ReceiptBody {
        let pubkey = key.verifying_key().to_bytes();
        ReceiptBody {
            version: RECEIPT_VERSION.into(),
            cluster_id: "c1".into(),
            job_id: job_id.into(),
            resource_type: "compute".into(),
            units,
            metrics: Metrics {
                compute_tokens: 100_000,
                latency_ms: 1234,
                input_bytes: 10,
                output_bytes: 20,
            },
            proofs: Proofs {
                input_blake3: hex::encode(blake3::hash(b"in").as_bytes()),
                output_blake3: hex::encode(blake3::hash(b"out").as_bytes()),
            },
            cids: vec![],
            node_id: peer_id_from_pubkey(&pubkey),
            host_pubkey: hex::encode(pubkey),
            broker_id: "broker".into(),
            started_at_ms: 1_000,
            finished_at_ms: 2_234,
            price,
            order: None,
        }
    }

    /// A signed receipt of host `seed` for job `j` carrying `order`, edited by `edit`.
    pub(crate) fn receipt_with_order(
        seed: u8,
        order: Option<crate::payment::PaymentOrder>,
        edit: impl FnOnce(&mut ReceiptBody),
    ) -> SignedReceipt {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let mut b = body_for(&key, "j", 1_000_000, 30_000);
        b.order = order;
        edit(&mut b);
        Signed::sign(&key, &b).unwrap()
    }

    /// A signed, valid receipt.
    pub(crate) fn receipt(seed: u8, job_id: &str, units: u64, price: u64) -> SignedReceipt {
        let key = SigningKey::from_bytes(&[seed; 32]);
        Signed::sign(&key, &body_for(&key, job_id, units, price)).unwrap()
    }

    #[test]
    fn valid_receipt_verifies() {
        let r = receipt(1, "job-1", 250_000, 30_000);
        let body = verify_receipt(&r).unwrap();
        assert_eq!(body.job_id, "job-1");
        assert_eq!(body.amount_due(), 7_500);
    }

    #[test]
    fn amount_due_is_floored_integer_arithmetic() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut b = body_for(&key, "j", 1_000_000, 30_000);
        assert_eq!(b.amount_due(), 30_000);
        b.units = 333_333;
        b.price = 3;
        assert_eq!(b.amount_due(), 0); // 0.999999 floors to 0
        b.units = 1_500_000;
        b.price = 7;
        assert_eq!(b.amount_due(), 10); // 10.5 floors to 10
        b.units = u64::MAX;
        b.price = 1_000_000;
        assert_eq!(b.checked_amount_due(), Some(u64::MAX));
        b.price = 2_000_000;
        assert_eq!(b.checked_amount_due(), None);
        assert_eq!(b.amount_due(), u64::MAX);
    }

    #[test]
    fn wrong_host_fields_are_rejected() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);

        let mut b = body_for(&key, "j", 1, 1);
        b.host_pubkey = hex::encode(other.verifying_key().as_bytes());
        let r = Signed::sign(&key, &b).unwrap();
        assert!(matches!(
            verify_receipt(&r),
            Err(ReceiptError::PubkeyMismatch)
        ));

        let mut b = body_for(&key, "j", 1, 1);
        b.node_id = peer_id_from_pubkey(other.verifying_key().as_bytes());
        let r = Signed::sign(&key, &b).unwrap();
        assert!(matches!(
            verify_receipt(&r),
            Err(ReceiptError::NodeIdMismatch)
        ));

        let mut b = body_for(&key, "j", 1, 1);
        b.version = "9.9".into();
        let r = Signed::sign(&key, &b).unwrap();
        assert!(matches!(verify_receipt(&r), Err(ReceiptError::Version(_))));

        // A body made for `key` but signed by `other`.
        let r = Signed::sign(&other, &body_for(&key, "j", 1, 1)).unwrap();
        assert!(matches!(
            verify_receipt(&r),
            Err(ReceiptError::PubkeyMismatch)
        ));

        let mut r = receipt(1, "j", 1, 1);
        r.bytes[3] ^= 0x20;
        assert!(matches!(verify_receipt(&r), Err(ReceiptError::Verify(_))));
    }

    #[test]
    fn core_view_has_body_metrics_and_envelope() {
        let r = receipt(1, "job-123", 250_000, 30_000);
        let body = verify_receipt(&r).unwrap();
        let v = core_view(&r, &body);
        assert_eq!(v["job_id"], "job-123");
        assert_eq!(v["node_id"], body.node_id);
        assert_eq!(v["units"], 250_000);
        assert_eq!(v["price"], 30_000);
        assert_eq!(v["metrics"]["compute_tokens"], 100_000);
        assert_eq!(v["metrics"]["compute_tokens_m"], 0.1);
        assert_eq!(v["metrics"]["latency_ms"], 1234);
        assert_eq!(v["sig"], hex::encode(r.sig));
        assert_eq!(v["pubkey"], body.host_pubkey);
        // Core can rebuild the envelope from the view and verify it.
        let env =
            serde_json::json!({"signed": v["signed"], "sig": v["sig"], "pubkey": v["pubkey"]});
        let back: SignedReceipt = serde_json::from_value(env).unwrap();
        assert_eq!(verify_receipt(&back).unwrap(), body);
    }
}
