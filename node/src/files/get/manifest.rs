//! Which manifest a get trusts: the local copy, else the best one the peers hold.

use libp2p::PeerId;
use offgrid_behaviours::shards::{Request, Response};
use offgrid_storage::{Manifest, SignedManifest};

use crate::files::{Storage, StorageError};

impl Storage {
    /// The newest verified manifest of `asset`: the local copy, else the best one the peers
    /// hold.
    pub(crate) async fn find_manifest(
        &self,
        asset: &str,
    ) -> Result<(Manifest, SignedManifest), StorageError> {
        if let Some(signed) = self.local_manifest(asset).await? {
            let m = signed
                .verify()
                .map_err(|e| StorageError::Integrity(format!("stored manifest: {e}")))?;
            return Ok((m, signed));
        }
        let peers: Vec<PeerId> = self
            .client
            .peers()
            .await
            .map_err(|e| StorageError::Internal(e.to_string()))?
            .into_iter()
            .filter(|r| r.via == "ip" && r.connected)
            .filter_map(|r| r.peer_id.parse().ok())
            .collect();
        let request = Request::FetchManifest {
            asset_id: asset.to_owned(),
        };
        let jobs: Vec<_> = peers
            .into_iter()
            .map(|peer| self.client.shard_request(peer, request.clone()))
            .collect();
        let found: Vec<(Manifest, SignedManifest)> =
            crate::files::repair::bounded(jobs, self.cfg.max_in_flight.max(1))
                .await
                .into_iter()
                .filter_map(|answer| {
                    let Ok(Response::Manifest { manifest }) = answer else {
                        return None;
                    };
                    let signed: SignedManifest = serde_json::from_slice(&manifest.0).ok()?;
                    let m = signed.verify().ok()?;
                    (m.asset_id == asset).then_some((m, signed))
                })
                .collect();
        let best = choose_manifest(asset, found)?;
        if best
            .0
            .wrapped_key_for(&self.identity.x25519_public())
            .is_some()
        {
            self.save_manifest(asset, &best.1).await?;
        }
        Ok(best)
    }
}

/// Picks the manifest to trust among those peers sent for `asset`, never across owners: an
/// owner-bound id (see `offgrid_storage::manifest::bound_asset_id`) names its owner, so only
/// manifests signed by that key count; ids of the first format name no one, so manifests of
/// two owners for one of them are refused rather than chosen between (a host serving its own
/// file under a victim's id). Then the highest revision.
fn choose_manifest(
    asset: &str,
    found: Vec<(Manifest, SignedManifest)>,
) -> Result<(Manifest, SignedManifest), StorageError> {
    let owner = found
        .iter()
        .find(|(m, _)| m.owner_bound())
        .map(|(m, _)| m.owner_pubkey.clone());
    let candidates: Vec<_> = match &owner {
        Some(o) => found
            .into_iter()
            .filter(|(m, _)| &m.owner_pubkey == o)
            .collect(),
        None => {
            let owners: std::collections::BTreeSet<&str> =
                found.iter().map(|(m, _)| m.owner.as_str()).collect();
            if owners.len() > 1 {
                return Err(StorageError::Integrity(format!(
                    "manifests of {} different owners claim asset {asset} ({}); refusing to choose",
                    owners.len(),
                    owners.into_iter().collect::<Vec<_>>().join(", ")
                )));
            }
            found
        }
    };
    candidates
        .into_iter()
        .max_by_key(|(m, _)| m.revision)
        .ok_or_else(|| {
            StorageError::NotFound(format!(
                "asset {asset} is unknown here and no connected peer has its manifest"
            ))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use offgrid_storage::{manifest::new_bound_asset_id, Manifest, SignedManifest};

    use super::choose_manifest;
    use crate::{files::StorageError, identity::Identity};

    fn manifest(
        owner: &Identity,
        asset: &str,
        salt: Option<[u8; 16]>,
        revision: u64,
    ) -> (Manifest, SignedManifest) {
        let signed = crate::files::host_tests::signed_manifest(owner, asset, salt, revision);
        (signed.verify().unwrap(), signed)
    }

    /// A host answers with its own manifest under the victim's id, at a higher revision:
    /// the owner-bound id picks the victim's; for an id of the first format the two owners
    /// are refused by name, never chosen between.
    #[test]
    fn a_substituted_manifest_is_never_chosen() {
        let (victim, thief) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let (id, salt) = new_bound_asset_id(&victim.public_key(), 1);
        let asset = hex::encode(id);
        let genuine = manifest(&victim, &asset, Some(salt), 0);
        let fake = manifest(&thief, &asset, None, 99);
        let (m, _) = choose_manifest(&asset, vec![fake.clone(), genuine.clone()]).unwrap();
        assert_eq!(m.owner_pubkey, hex::encode(victim.public_key()));
        let (m, _) = choose_manifest(&asset, vec![genuine, fake]).unwrap();
        assert_eq!(m.revision, 0);

        let legacy = "ab".repeat(32);
        let a = manifest(&victim, &legacy, None, 0);
        let b = manifest(&thief, &legacy, None, 5);
        match choose_manifest(&legacy, vec![a.clone(), b]) {
            Err(StorageError::Integrity(msg)) => {
                assert!(msg.contains("2 different owners"), "{msg}");
                assert!(msg.contains(&victim.peer_id().to_string()), "{msg}");
            }
            other => panic!("chose across owners: {other:?}"),
        }
        // One owner's revisions: the highest.
        let a2 = manifest(&victim, &legacy, None, 3);
        let (m, _) = choose_manifest(&legacy, vec![a, a2]).unwrap();
        assert_eq!(m.revision, 3);
        assert!(matches!(
            choose_manifest(&legacy, vec![]),
            Err(StorageError::NotFound(_))
        ));
    }
}
