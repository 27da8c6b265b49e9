//! The owner's signed delete of an asset (`offgrid rm`): hosts that hold the asset's
//! manifest check that the order is signed by that manifest's owner key, then drop the
//! asset's shards and the manifest.
//!
//! The signature covers [`DELETE_DOMAIN`] followed by the order's JSON, so a delete order
//! cannot be passed off as any other signed record (nor the reverse). An order names one
//! asset; asset ids are never reused (they bind the owner key, a salt and the creation
//! time), so an order replayed later deletes nothing new.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::is_valid_hash;

/// What a delete order's signature starts with.
pub const DELETE_DOMAIN: &[u8] = b"offgrid/delete/v1\n";

/// What the owner orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteOrder {
    /// The asset, 64 hex digits.
    pub asset_id: String,
    /// The owner's Ed25519 public key, hex (the manifest's `owner_pubkey`).
    pub owner_pubkey: String,
    /// When the owner signed it, ms since the Unix epoch.
    pub issued_ms: u64,
}

/// A delete order with the owner's signature, as it travels (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDelete {
    /// The order's JSON, as signed.
    pub order: String,
    /// Ed25519 signature over [`DELETE_DOMAIN`] || `order`, hex.
    pub sig: String,
}

/// Why a delete order does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeleteError {
    /// Not a delete order (malformed JSON, id or key).
    #[error("not a delete order: {0}")]
    Malformed(String),
    /// The signature does not verify under the order's owner key.
    #[error("the delete order's signature does not verify")]
    BadSignature,
}

impl SignedDelete {
    /// Signs an order to delete `asset_id` with the owner's key.
    pub fn sign(key: &SigningKey, asset_id: &str, issued_ms: u64) -> Self {
        let order = DeleteOrder {
            asset_id: asset_id.to_owned(),
            owner_pubkey: hex::encode(key.verifying_key().to_bytes()),
            issued_ms,
        };
        // A struct of strings and an integer always serialises.
        let order = serde_json::to_string(&order).unwrap_or_default();
        let mut msg = DELETE_DOMAIN.to_vec();
        msg.extend_from_slice(order.as_bytes());
        SignedDelete {
            order,
            sig: hex::encode(key.sign(&msg).to_bytes()),
        }
    }

    /// Checks the signature against the key the order names and returns the order. The
    /// caller still checks that this key owns the asset.
    ///
    /// # Errors
    /// [`DeleteError`].
    pub fn verify(&self) -> Result<DeleteOrder, DeleteError> {
        let order: DeleteOrder =
            serde_json::from_str(&self.order).map_err(|e| DeleteError::Malformed(e.to_string()))?;
        if !is_valid_hash(&order.asset_id) {
            return Err(DeleteError::Malformed("asset id".into()));
        }
        let key: [u8; 32] = hex::decode(&order.owner_pubkey)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DeleteError::Malformed("owner key".into()))?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| DeleteError::Malformed("owner key".into()))?;
        let sig: [u8; 64] = hex::decode(&self.sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(DeleteError::BadSignature)?;
        let mut msg = DELETE_DOMAIN.to_vec();
        msg.extend_from_slice(self.order.as_bytes());
        key.verify(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| DeleteError::BadSignature)?;
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_order_verifies_and_a_tampered_one_does_not() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let asset = "ab".repeat(32);
        let d = SignedDelete::sign(&key, &asset, 5);
        let order = d.verify().unwrap();
        assert_eq!(order.asset_id, asset);
        assert_eq!(
            order.owner_pubkey,
            hex::encode(key.verifying_key().to_bytes())
        );

        let mut other = d.clone();
        other.order = other.order.replace(&asset, &"cd".repeat(32));
        assert_eq!(other.verify(), Err(DeleteError::BadSignature));
        // Signed without the domain: not a delete order.
        let raw = SignedDelete {
            order: d.order.clone(),
            sig: hex::encode(key.sign(d.order.as_bytes()).to_bytes()),
        };
        assert_eq!(raw.verify(), Err(DeleteError::BadSignature));
        assert!(matches!(
            SignedDelete {
                order: "{}".into(),
                sig: d.sig
            }
            .verify(),
            Err(DeleteError::Malformed(_))
        ));
    }
}
