//! `offgrid rm`: the owner's signed delete. Every host the manifest names gets the order
//! ([`offgrid_storage::delete::SignedDelete`]) and drops the asset's shards and its copy of
//! the manifest (see `host_delete.rs`); then this node forgets the asset. A host that does not
//! answer keeps its shards: the answer names it.

use std::collections::BTreeSet;

use libp2p::PeerId;
use offgrid_behaviours::shards::{Bytes, Request, Response};
use offgrid_storage::delete::SignedDelete;
use serde_json::{json, Value};
use tracing::info;

use super::{Claim, Storage, StorageError};
use crate::store::{Op, Table};

impl Storage {
    /// Deletes an asset this node owns from every host that holds it, then from this node.
    ///
    /// # Errors
    /// [`StorageError::NotFound`] for an asset this node does not hold,
    /// [`StorageError::NotOwner`] for one it does not own, [`StorageError::Conflict`] while
    /// a repair of it runs.
    pub async fn rm(&self, asset: &str) -> Result<Value, StorageError> {
        if !offgrid_storage::is_valid_hash(asset) {
            return Err(StorageError::Invalid(
                "asset must be 64 lower-case hex digits".into(),
            ));
        }
        let Some(_claim) = Claim::take(&self.active_repairs, asset) else {
            return Err(StorageError::Conflict(format!(
                "a repair of {asset} is running; delete it when it ends"
            )));
        };
        let signed = self
            .local_manifest(asset)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("no asset {asset} on this node")))?;
        let manifest = signed
            .verify()
            .map_err(|e| StorageError::Integrity(format!("stored manifest: {e}")))?;
        if manifest.owner_pubkey != hex::encode(self.identity.public_key()) {
            return Err(StorageError::NotOwner {
                asset: asset.to_owned(),
                owner: manifest.owner.clone(),
                action: "delete",
            });
        }
        let order = SignedDelete::sign(self.identity.signing_key(), asset, crate::now_ms());
        let order = serde_json::to_vec(&order)
            .map_err(|e| StorageError::internal("encoding the delete order", e))?;
        let hosts: BTreeSet<PeerId> = manifest
            .segments
            .iter()
            .flat_map(|s| &s.shards)
            .filter_map(|s| s.host.parse().ok())
            .collect();
        let jobs: Vec<_> = hosts
            .iter()
            .map(|peer| {
                let request = Request::Delete {
                    asset_id: asset.to_owned(),
                    order: Bytes(order.clone()),
                };
                async move { (*peer, self.ask_host(*peer, request).await) }
            })
            .collect();
        let answers = super::repair::bounded(jobs, self.cfg.max_in_flight.max(1)).await;
        let (mut confirmed, mut shards) = (0u64, 0u64);
        let mut not_confirmed = Vec::new();
        for (peer, answer) in answers {
            match answer {
                Ok(Response::Deleted { shards: n }) => {
                    confirmed += 1;
                    shards += n;
                }
                other => not_confirmed.push(json!({
                    "host": peer.to_string(),
                    "answer": match other {
                        Ok(Response::NotFound) => "the host holds no manifest of it".to_owned(),
                        Ok(Response::Refused { reason }) => reason,
                        Ok(r) => format!("unexpected answer {r:?}"),
                        Err(e) => e,
                    },
                })),
            }
        }
        self.store
            .commit(vec![Op::delete(Table::Manifests, asset)])
            .await
            .map_err(|e| StorageError::internal("forgetting the asset", e))?;
        info!(
            asset,
            hosts = hosts.len(),
            confirmed,
            shards,
            "asset deleted"
        );
        Ok(json!({
            "asset_id": asset,
            "hosts": hosts.len(),
            "hosts_confirmed": confirmed,
            "shards_deleted": shards,
            "not_confirmed": not_confirmed,
        }))
    }
}
