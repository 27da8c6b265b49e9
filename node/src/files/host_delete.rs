//! The delete side of the shard host: the owner's signed delete of an asset
//! ([`Request::Delete`](offgrid_behaviours::shards::Request::Delete)).
//!
//! The order must verify ([`SignedDelete`]) and be signed by the owner key of the manifest
//! this host holds for the asset; anything else is refused and deletes nothing (a host
//! without the manifest answers not found). Then every shard the manifest lists that is
//! charged here to the owner's peer is removed from disk and from the owner's quota, and the
//! manifest goes, in one store commit, before the answer.

use std::{collections::HashSet, sync::Arc};

use libp2p::PeerId;
use offgrid_behaviours::shards::Response;
use offgrid_storage::{delete::SignedDelete, Manifest, SignedManifest};
use tracing::{info, warn};

use super::{Handled, ShardHost};
use crate::{
    files::quota::HostedShard,
    store::{Op, Table},
};

impl ShardHost {
    pub(super) fn delete_asset(
        self: &Arc<Self>,
        peer: PeerId,
        asset_id: String,
        order: Vec<u8>,
    ) -> Handled {
        let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
            return self.busy();
        };
        let this = self.clone();
        self.blocking(move || {
            let _permit = permit;
            this.delete_now(peer, &asset_id, &order)
        })
    }

    fn delete_now(&self, peer: PeerId, asset_id: &str, order: &[u8]) -> Response {
        let refused = |reason: String| Response::Refused { reason };
        let signed: SignedDelete = match serde_json::from_slice(order) {
            Ok(s) => s,
            Err(e) => return refused(format!("not a delete order: {e}")),
        };
        let order = match signed.verify() {
            Ok(o) => o,
            Err(e) => return refused(e.to_string()),
        };
        if order.asset_id != asset_id {
            return refused("the order names another asset".into());
        }
        let mut manifest = None;
        let mut tables = Vec::new();
        for table in [Table::Manifests, Table::HostedManifests] {
            if let Ok(Some(m)) = self.store.get::<SignedManifest>(table, asset_id) {
                if let Ok(m) = m.verify() {
                    tables.push(table);
                    manifest = Some(m);
                }
            }
        }
        let Some(manifest) = manifest else {
            return Response::NotFound;
        };
        if manifest.owner_pubkey != order.owner_pubkey {
            warn!(%peer, asset_id, "delete order not signed by the asset's owner refused");
            return refused("only the asset's owner can delete it".into());
        }
        let removed = match self.drop_asset(&manifest, &tables) {
            Ok(n) => n,
            Err(e) => {
                warn!(error = %e, asset_id, "cannot record a delete");
                return refused("the host cannot record the delete".into());
            }
        };
        info!(%peer, asset_id, shards = removed, "asset deleted by its owner");
        Response::Deleted { shards: removed }
    }

    /// Removes every shard of `manifest` charged here to its owner (disk, quota, index) and
    /// the manifest from `tables`, in one store commit; the shards removed from disk.
    /// Shards charged to someone else (the same bytes in another asset) stay.
    pub(super) fn drop_asset(
        &self,
        manifest: &Manifest,
        tables: &[Table],
    ) -> Result<u64, offgrid_store::StoreError> {
        let mut seen = HashSet::new();
        let mut ops = Vec::new();
        let mut removed = 0u64;
        for shard in manifest.segments.iter().flat_map(|s| &s.shards) {
            if !seen.insert(shard.hash.as_str()) {
                continue;
            }
            let Ok(Some(rec)) = self
                .store
                .get::<HostedShard>(Table::HostedShards, &shard.hash)
            else {
                continue;
            };
            if rec.peer != manifest.owner {
                // Held for someone else (the same bytes in another asset): theirs to keep.
                continue;
            }
            match self.shards.delete(&shard.hash) {
                Ok(true) => removed += 1,
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, hash = shard.hash, "cannot delete a shard");
                    continue;
                }
            }
            if let Ok(owner) = rec.peer.parse::<PeerId>() {
                self.quotas.forget(owner, rec.len);
            }
            ops.push(Op::delete(Table::HostedShards, shard.hash.as_str()));
        }
        for table in tables {
            ops.push(Op::delete(*table, manifest.asset_id.as_str()));
        }
        self.store.commit_blocking(ops)?;
        Ok(removed)
    }
}
