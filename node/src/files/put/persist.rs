//! Saving and publishing what a put produced: a new upload's record, the coalesced saves of
//! its progress (so a stopped put resumes), and the signed manifest sent to its hosts.

use std::collections::HashSet;

use libp2p::PeerId;
use offgrid_storage::{
    crypto::new_content_key,
    manifest::new_bound_asset_id,
    upload::{mtime_ms, now_ms},
    wrap_key, Codec, Manifest, SegmentReader, SignedManifest, UploadState,
};

use super::{PutParams, UploadRecord};
use crate::{
    files::{Storage, StorageError},
    store::{Op, Table},
};

impl Storage {
    pub(super) fn new_upload(
        &self,
        params: &PutParams,
        meta: &std::fs::Metadata,
        hosts: usize,
    ) -> Result<UploadRecord, StorageError> {
        let scheme = params
            .scheme
            .adapt(hosts)
            .map_err(|_| StorageError::NoHosts {
                found: hosts,
                needed: 2,
            })?;
        let codec = Codec::new(scheme, params.shard_size)
            .map_err(|e| StorageError::Invalid(e.to_string()))?;
        let created_ms = now_ms();
        let (asset_id, id_salt) = new_bound_asset_id(&self.identity.public_key(), created_ms);
        let content_key = new_content_key();
        let owner_key = wrap_key(&content_key, &self.identity.x25519_public())
            .map_err(|e| StorageError::internal("wrapping the content key", e))?;
        let name = params.name.clone().or_else(|| {
            params
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        let expires_ms = params
            .expires_in
            .map(|d| created_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
        Ok(UploadRecord {
            expires_ms,
            requested: params.scheme,
            shard_size: params.shard_size,
            name,
            state: UploadState {
                asset_id: hex::encode(asset_id),
                source_path: params.path.clone(),
                file_size: meta.len(),
                mtime_ms: mtime_ms(meta).unwrap_or(0),
                scheme,
                shard_size: params.shard_size,
                segment_count: SegmentReader::<std::fs::File>::segment_count(
                    meta.len(),
                    codec.segment_plain_len(),
                ),
                created_ms,
                owner_key,
                segments: Vec::new(),
                id_salt: Some(hex::encode(id_salt)),
            },
        })
    }

    pub(super) fn persist_upload(
        &self,
        key: &str,
        record: &UploadRecord,
    ) -> tokio::task::JoinHandle<()> {
        let op = Op::put(Table::Uploads, key, record);
        let store = self.store.clone();
        tokio::spawn(async move {
            let saved = match op {
                Ok(op) => store.commit(vec![op]).await,
                Err(e) => Err(e),
            };
            if let Err(e) = saved {
                tracing::warn!(error = %e, "cannot save upload progress");
            }
        })
    }

    pub(super) async fn save_upload(
        &self,
        key: &str,
        record: &UploadRecord,
    ) -> Result<(), StorageError> {
        self.persist_upload(key, record)
            .await
            .map_err(|e| StorageError::internal("saving upload progress", e))
    }

    /// Sends a signed manifest to every host of the asset and to `extra` peers; returns how
    /// many kept it.
    pub(crate) async fn publish_manifest(
        &self,
        manifest: &Manifest,
        signed: &SignedManifest,
        extra: &[PeerId],
    ) -> usize {
        let Ok(bytes) = serde_json::to_vec(signed) else {
            return 0;
        };
        let mut peers: Vec<PeerId> = manifest
            .segments
            .iter()
            .flat_map(|s| s.shards.iter().filter_map(|e| e.host.parse().ok()))
            .chain(extra.iter().copied())
            .collect::<HashSet<PeerId>>()
            .into_iter()
            .collect();
        peers.retain(|p| *p != self.identity.peer_id());
        let request = offgrid_behaviours::shards::Request::StoreManifest {
            asset_id: manifest.asset_id.clone(),
            manifest: offgrid_behaviours::shards::Bytes(bytes),
        };
        let jobs: Vec<_> = peers
            .into_iter()
            .map(|peer| self.client.shard_request(peer, request.clone()))
            .collect();
        crate::files::repair::bounded(jobs, self.cfg.max_in_flight.max(1))
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(offgrid_behaviours::shards::Response::ManifestStored)))
            .count()
    }
}
