//! Sharing an asset, listing assets, and signing public-asset policies.
//!
//! `share` wraps the content key for another peer: the peer id embeds its Ed25519 public
//! key, which maps to an X25519 key ([`offgrid_storage::keys`]). The owner adds the wrap to
//! the manifest, re-signs it (revision + 1), keeps it, and sends it to the hosts and to the
//! peer itself, whose node keeps it as readable; the peer can then `offgrid get` the asset.

use offgrid_ledger::peer_id::pubkey_from_peer_id;
use offgrid_storage::{
    keys::x25519_public_from_ed25519_public, policy::POLICY_VERSION, unwrap_key, wrap_key,
    Distribution, Policy, SignedManifest,
};
use serde_json::{json, Value};

use super::{Storage, StorageError};
use crate::store::Table;

impl Storage {
    /// Shares an asset this node owns with `peer`.
    ///
    /// # Errors
    /// [`StorageError::Invalid`] for a malformed peer id, [`StorageError::NotOwner`],
    /// [`StorageError::NotFound`].
    pub async fn share(&self, asset: &str, peer: &str) -> Result<Value, StorageError> {
        let peer_id: libp2p::PeerId = peer
            .parse()
            .map_err(|_| StorageError::Invalid(format!("{peer:?} is not a peer id")))?;
        let ed = pubkey_from_peer_id(peer).ok_or_else(|| {
            StorageError::Invalid(format!("peer id {peer} does not embed an Ed25519 key"))
        })?;
        let x = x25519_public_from_ed25519_public(&ed)
            .map_err(|e| StorageError::Invalid(format!("peer {peer}: {e}")))?;
        let signed = self
            .local_manifest(asset)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("no asset {asset} on this node")))?;
        let mut manifest = signed
            .verify()
            .map_err(|e| StorageError::Integrity(e.to_string()))?;
        if manifest.owner_pubkey != hex::encode(self.identity.public_key()) {
            return Err(StorageError::NotOwner {
                asset: asset.to_owned(),
                owner: manifest.owner.clone(),
                action: "share",
            });
        }
        let already = manifest.wrapped_key_for(&x).is_some();
        let signed = if already {
            signed
        } else {
            let ours = manifest
                .wrapped_key_for(&self.identity.x25519_public())
                .ok_or_else(|| StorageError::Integrity("the owner's key wrap is missing".into()))?;
            let key = unwrap_key(ours, &self.identity.x25519_secret())
                .map_err(|e| StorageError::Integrity(e.to_string()))?;
            let wrapped = wrap_key(&key, &x).map_err(|e| StorageError::Invalid(e.to_string()))?;
            manifest.wrapped_keys.push(wrapped);
            manifest.revision += 1;
            let signed = SignedManifest::sign(self.identity.signing_key(), &manifest)
                .map_err(|e| StorageError::internal("signing the manifest", e))?;
            self.save_manifest(asset, &signed).await?;
            signed
        };
        let copies = self.publish_manifest(&manifest, &signed, &[peer_id]).await;
        Ok(json!({
            "asset_id": asset,
            "peer": peer,
            "already_shared": already,
            "readers": manifest.wrapped_keys.len(),
            "revision": manifest.revision,
            "manifest_copies": copies,
        }))
    }

    /// Assets this node can read, newest first.
    ///
    /// # Errors
    /// [`StorageError::Internal`] when the store cannot be read.
    pub async fn list(&self) -> Result<Vec<Value>, StorageError> {
        let store = self.store.clone();
        let all =
            tokio::task::spawn_blocking(move || store.scan::<SignedManifest>(Table::Manifests))
                .await
                .map_err(|e| StorageError::internal("listing assets", e))?
                .map_err(|e| StorageError::internal("listing assets", e))?;
        let me = hex::encode(self.identity.public_key());
        let now = crate::now_ms();
        let mut rows: Vec<(u64, Value)> = all
            .into_iter()
            .filter_map(|(_, s)| s.verify().ok())
            // An expired asset is gone for its readers at once; the hosts' and this node's
            // garbage collection drop what is left of it.
            .filter(|m| !m.is_expired(now))
            .map(|m| {
                let shards: usize = m.segments.iter().map(|s| s.shards.len()).sum();
                let mut row = json!({
                        "asset_id": m.asset_id,
                        "name": m.name,
                        "size": m.size,
                        "scheme": m.scheme.to_string(),
                        "k": m.scheme.data_shards(),
                        "n": m.scheme.total_shards(),
                        "segments": m.segment_count,
                        "shards": shards,
                        "owner": m.owner,
                        "owned": m.owner_pubkey == me,
                        "readers": m.wrapped_keys.len(),
                        "revision": m.revision,
                        "created_ms": m.created_ms,
                });
                if let Some(at) = m.expires_ms {
                    row["expires_ms"] = at.into();
                }
                (m.created_ms, row)
            })
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(rows.into_iter().map(|(_, v)| v).collect())
    }

    /// Asset ids this node owns.
    pub(crate) async fn owned_assets(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|v| v["owned"] == true)
            .filter_map(|v| v["asset_id"].as_str().map(str::to_owned))
            .collect())
    }

    /// The content key of an asset this node can read, hex (to hand to someone out of band).
    ///
    /// # Errors
    /// [`StorageError::NotFound`], [`StorageError::NotShared`].
    pub async fn content_key(&self, asset: &str) -> Result<Value, StorageError> {
        let (manifest, _) = self.find_manifest(asset).await?;
        let wrapped = manifest
            .wrapped_key_for(&self.identity.x25519_public())
            .ok_or_else(|| StorageError::NotShared {
                asset: asset.to_owned(),
                owner: manifest.owner.clone(),
                me: self.me(),
            })?;
        let key = unwrap_key(wrapped, &self.identity.x25519_secret())
            .map_err(|e| StorageError::Integrity(e.to_string()))?;
        Ok(json!({ "asset_id": asset, "key": hex::encode(key) }))
    }

    /// Signs a policy document for an asset this node can read.
    ///
    /// # Errors
    /// [`StorageError::Invalid`] for a bad policy, [`StorageError::NotFound`].
    pub async fn sign_policy(
        &self,
        asset: &str,
        license: String,
        distribution: Distribution,
        safety_tags: Vec<String>,
    ) -> Result<Value, StorageError> {
        if self.local_manifest(asset).await?.is_none() {
            return Err(StorageError::NotFound(format!(
                "no asset {asset} on this node"
            )));
        }
        let policy = Policy {
            version: POLICY_VERSION,
            asset_id: asset.to_owned(),
            license,
            distribution,
            safety_tags,
            signer: self.me(),
            verify_key: hex::encode(self.identity.public_key()),
            issued_ms: crate::now_ms(),
        };
        policy
            .sign(self.identity.signing_key())
            .map_err(|e| StorageError::Invalid(e.to_string()))
    }
}
