//! Signed public-asset policy documents (original design v0.7).
//!
//! A policy says under which license and with which distribution an asset is published, and
//! which safety tags its publisher attaches. It is a JSON object:
//!
//! ```json
//! {"version": 1, "asset_id": "<64 hex>", "license": "MIT",
//!  "distribution": {"mode": "rep", "r": 5}, "safety_tags": ["reviewed"],
//!  "signer": "<peer id>", "verify_key": "<ed25519 public key, hex>",
//!  "issued_ms": 1764000000000, "signature": "<ed25519 signature, hex>"}
//! ```
//!
//! `signature` is Ed25519 by `verify_key` over the type tag [`POLICY_TAG`], a newline
//! (0x0A), then the canonical JSON of the object without `signature`: keys sorted at every
//! level, no insignificant whitespace, UTF-8 — the same rule as the Core API's HMAC, so any
//! language can check it. The tag keeps a policy signature from passing as any other signed
//! record of the project, or the reverse ([`crate::signed_message`]). A verifier canonicalises what it
//! received (including fields it does not know), so no field can be added or changed without
//! breaking the signature.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ec::Scheme;

/// The type tag a policy signature covers before the canonical JSON.
pub const POLICY_TAG: &[u8] = b"offgrid/policy/v1";

/// The policy format version this crate writes and reads.
pub const POLICY_VERSION: u32 = 1;
/// Most safety tags, and the longest tag or license in bytes.
pub const MAX_TAGS: usize = 32;
/// Longest license or tag, bytes.
pub const MAX_TEXT: usize = 128;

/// How the asset is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Distribution {
    /// Reed–Solomon k of n.
    Ec {
        /// Data shards.
        k: u16,
        /// Total shards.
        n: u16,
    },
    /// r replicas.
    Rep {
        /// Copies.
        r: u16,
    },
}

impl Distribution {
    /// The equivalent coding scheme.
    pub fn scheme(self) -> Scheme {
        match self {
            Distribution::Ec { k, n } => Scheme::ReedSolomon { k, n },
            Distribution::Rep { r } => Scheme::Replicate { r },
        }
    }
}

/// A policy document without its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Format version, [`POLICY_VERSION`].
    pub version: u32,
    /// The asset, 64 hex digits.
    pub asset_id: String,
    /// License identifier (SPDX where there is one), e.g. `MIT`.
    pub license: String,
    /// How the asset is distributed.
    pub distribution: Distribution,
    /// Publisher's safety tags.
    pub safety_tags: Vec<String>,
    /// The signer's peer id.
    pub signer: String,
    /// The signer's Ed25519 public key, hex.
    pub verify_key: String,
    /// When it was signed, ms since the Unix epoch.
    pub issued_ms: u64,
}

/// Why a policy could not be made or was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not a JSON object, or a field is missing or malformed.
    #[error("malformed policy: {0}")]
    Malformed(String),
    /// The signature does not verify over the canonical bytes.
    #[error("policy signature does not verify: the document was altered or forged")]
    BadSignature,
    /// The verify key is not the signing key, or not a valid key.
    #[error("policy verify_key is not a valid Ed25519 public key")]
    BadKey,
}

/// The canonical JSON of a value: keys sorted at every level, compact.
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    if let Some(inner) = map.get(k) {
                        write(inner, out);
                    }
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

impl Policy {
    /// Checks the fields that serde cannot.
    ///
    /// # Errors
    /// [`PolicyError::Malformed`] naming the field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |m: &str| Err(PolicyError::Malformed(m.to_owned()));
        if self.version != POLICY_VERSION {
            return bad("unsupported version");
        }
        if !crate::is_valid_hash(&self.asset_id) {
            return bad("asset_id must be 64 lower-case hex digits");
        }
        if self.license.trim().is_empty() || self.license.len() > MAX_TEXT {
            return bad("license must be 1..=128 bytes");
        }
        if self.safety_tags.len() > MAX_TAGS
            || self
                .safety_tags
                .iter()
                .any(|t| t.is_empty() || t.len() > MAX_TEXT)
        {
            return bad("at most 32 safety tags of 1..=128 bytes");
        }
        if self.distribution.scheme().validate().is_err() {
            return bad("distribution: need 1 <= k < n <= 256 or 1 <= r <= 256");
        }
        Ok(())
    }

    /// Signs the policy: the JSON document with `signature` added.
    ///
    /// # Errors
    /// [`PolicyError`] when the policy is invalid or names another key.
    pub fn sign(&self, key: &SigningKey) -> Result<Value, PolicyError> {
        self.validate()?;
        if self.verify_key != hex::encode(key.verifying_key().to_bytes()) {
            return Err(PolicyError::BadKey);
        }
        let mut doc =
            serde_json::to_value(self).map_err(|e| PolicyError::Malformed(e.to_string()))?;
        let sig = key.sign(&crate::signed_message(
            POLICY_TAG,
            canonical_json(&doc).as_bytes(),
        ));
        if let Value::Object(map) = &mut doc {
            map.insert(
                "signature".into(),
                Value::String(hex::encode(sig.to_bytes())),
            );
        }
        Ok(doc)
    }

    /// Verifies a signed document and returns its policy.
    ///
    /// # Errors
    /// [`PolicyError`] naming what failed.
    pub fn verify(doc: &Value) -> Result<Policy, PolicyError> {
        let Value::Object(map) = doc else {
            return Err(PolicyError::Malformed("not a JSON object".into()));
        };
        let mut unsigned = map.clone();
        let sig_hex = match unsigned.remove("signature") {
            Some(Value::String(s)) => s,
            _ => return Err(PolicyError::Malformed("missing signature".into())),
        };
        let policy: Policy = serde_json::from_value(Value::Object(unsigned.clone()))
            .map_err(|e| PolicyError::Malformed(e.to_string()))?;
        policy.validate()?;
        let key: [u8; 32] = hex::decode(&policy.verify_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(PolicyError::BadKey)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| PolicyError::BadKey)?;
        let sig: [u8; 64] = hex::decode(&sig_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| PolicyError::Malformed("signature must be 128 hex digits".into()))?;
        key.verify_strict(
            &crate::signed_message(
                POLICY_TAG,
                canonical_json(&Value::Object(unsigned)).as_bytes(),
            ),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| PolicyError::BadSignature)?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &SigningKey) -> Policy {
        Policy {
            version: POLICY_VERSION,
            asset_id: "ab".repeat(32),
            license: "MIT".into(),
            distribution: Distribution::Rep { r: 5 },
            safety_tags: vec!["reviewed".into(), "no-pii".into()],
            signer: "12D3KooWSigner".into(),
            verify_key: hex::encode(key.verifying_key().to_bytes()),
            issued_ms: 1_764_000_000_000,
        }
    }

    #[test]
    fn signed_policy_verifies_and_any_change_breaks_it() {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let doc = sample(&key).sign(&key).unwrap();
        assert_eq!(doc["distribution"]["mode"], "rep");
        assert_eq!(Policy::verify(&doc).unwrap(), sample(&key));
        // Key order in the file does not matter.
        let reparsed: Value = serde_json::from_str(&doc.to_string()).unwrap();
        assert!(Policy::verify(&reparsed).is_ok());
        let mut changed = doc.clone();
        changed["license"] = "GPL-3.0".into();
        assert_eq!(Policy::verify(&changed), Err(PolicyError::BadSignature));
        let mut added = doc.clone();
        added["extra"] = 1.into();
        assert_eq!(Policy::verify(&added), Err(PolicyError::BadSignature));
        let mut tags = doc.clone();
        tags["safety_tags"][0] = "unreviewed".into();
        assert_eq!(Policy::verify(&tags), Err(PolicyError::BadSignature));
        // A signature over the bare canonical JSON (no type tag) is refused.
        let mut untagged = doc;
        let mut unsigned = untagged.clone();
        unsigned.as_object_mut().unwrap().remove("signature");
        let bare = key.sign(canonical_json(&unsigned).as_bytes());
        untagged["signature"] = hex::encode(bare.to_bytes()).into();
        assert_eq!(Policy::verify(&untagged), Err(PolicyError::BadSignature));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":0,"y":"é"}],"c":null}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"d":[1,{"y":"é","z":0}]},"b":1}"#
        );
    }

    #[test]
    fn bad_documents_are_named() {
        let key = SigningKey::from_bytes(&[5u8; 32]);
        let mut p = sample(&key);
        p.asset_id = "xyz".into();
        assert!(matches!(p.sign(&key), Err(PolicyError::Malformed(_))));
        let other = SigningKey::from_bytes(&[6u8; 32]);
        assert_eq!(sample(&key).sign(&other), Err(PolicyError::BadKey));
        assert!(matches!(
            Policy::verify(&serde_json::json!([1])),
            Err(PolicyError::Malformed(_))
        ));
    }
}
