//! `offgrid get`: fetch any k verified shards per segment, rebuild, decrypt, check, write.
//!
//! The manifest comes from the node's store, or else from the peers (hosts keep a copy),
//! verified against the owner's signature ([`manifest`]). The content key is unwrapped with
//! this node's X25519 key (or given explicitly). The fetch loop ([`fetch`]) hands the
//! segments over in order; it asks k plus a margin of shards per segment at once, keeps the
//! first k verified, and drops a failed or slow host for the rest of the get.
//!
//! Three readers share it: [`Storage::get`] writes the whole file on the node's disk (a
//! writer thread appends segments in order to a temporary file next to the destination,
//! checks size and whole-file BLAKE3, and renames it into place), and [`stream`] serves a
//! byte range, or the whole file, as an HTTP body (`GET /storage/assets/{id}/content`),
//! fetching only the segments it covers.

pub mod fetch;
mod manifest;
pub mod stream;

use std::{path::PathBuf, sync::Arc, time::Instant};

use offgrid_storage::{unwrap_key, Codec, FileAssembler, Manifest};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use self::fetch::{FetchEnd, FetchStats, Span, PER_HOST_IN_FLIGHT};
use super::{ops::Progress, Storage, StorageError};

/// Bytes of shards a get asks for ahead of the next segment to write (fetched or decoded
/// segments waiting to be written count too).
pub const GET_BUDGET: usize = 16 << 20;

/// What to get.
#[derive(Debug, Clone)]
pub struct GetParams {
    /// Asset id, hex.
    pub asset: String,
    /// Absolute destination path on the node's disk.
    pub out: PathBuf,
    /// A content key given explicitly (hex in the API) instead of this node's wrapped one.
    pub key: Option<[u8; 32]>,
}

/// What a read of an asset needs: its verified manifest, key and codec.
pub(crate) struct Plan {
    pub(crate) manifest: Manifest,
    pub(crate) key: [u8; 32],
    /// The key was given explicitly (a decryption failure means a wrong key).
    pub(crate) explicit_key: bool,
    pub(crate) asset_bytes: [u8; 32],
    pub(crate) codec: Codec,
    pub(crate) k: usize,
}

impl Plan {
    /// Plaintext bytes of every segment but the last.
    pub(crate) fn segment_len(&self) -> u64 {
        self.codec.segment_plain_len() as u64
    }
}

impl Storage {
    /// The manifest, key and codec to read `asset` with.
    ///
    /// # Errors
    /// [`StorageError`]: malformed id, unknown asset, not shared with us, a key that does
    /// not open, or a malformed manifest.
    pub(crate) async fn plan(
        &self,
        asset: &str,
        key: Option<[u8; 32]>,
    ) -> Result<Plan, StorageError> {
        if !offgrid_storage::is_valid_hash(asset) {
            return Err(StorageError::Invalid(
                "asset must be 64 lower-case hex digits".into(),
            ));
        }
        let (manifest, _) = self.find_manifest(asset).await?;
        let explicit_key = key.is_some();
        let key = match key {
            Some(k) => k,
            None => {
                let wrapped = manifest
                    .wrapped_key_for(&self.identity.x25519_public())
                    .ok_or_else(|| StorageError::NotShared {
                        asset: manifest.asset_id.clone(),
                        owner: manifest.owner.clone(),
                        me: self.me(),
                    })?;
                unwrap_key(wrapped, &self.identity.x25519_secret()).map_err(|_| {
                    StorageError::WrongKey {
                        asset: manifest.asset_id.clone(),
                        segment: 0,
                    }
                })?
            }
        };
        let asset_bytes = manifest
            .asset_id_bytes()
            .map_err(|e| StorageError::Integrity(e.to_string()))?;
        let codec = Codec::new(manifest.scheme, manifest.shard_size)
            .map_err(|e| StorageError::Integrity(format!("manifest scheme: {e}")))?;
        if manifest.segments.len() as u64 != manifest.segment_count {
            return Err(StorageError::Integrity(
                "the manifest's segment list does not match its count".into(),
            ));
        }
        let k = manifest.scheme.data_shards();
        Ok(Plan {
            manifest,
            key,
            explicit_key,
            asset_bytes,
            codec,
            k,
        })
    }

    /// Gets an asset; see the module docs.
    ///
    /// `cancel` stops it: the fetches in flight are dropped and the temporary file is
    /// removed, so nothing appears at the destination; it returns
    /// [`StorageError::Cancelled`].
    ///
    /// # Errors
    /// [`StorageError`]: unknown asset, not shared with us, wrong key, fewer than k
    /// reachable shards of a segment, a failed integrity check, or cancelled.
    pub async fn get(
        &self,
        params: GetParams,
        progress: Arc<Progress>,
        cancel: &CancellationToken,
    ) -> Result<Value, StorageError> {
        let started = Instant::now();
        if !params.out.is_absolute() {
            return Err(StorageError::Invalid(
                "out must be an absolute path (the node writes it on its own disk)".into(),
            ));
        }
        let plan = self.plan(&params.asset, params.key).await?;
        let manifest = &plan.manifest;
        let file_hash: [u8; 32] = hex::decode(&manifest.file_blake3)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| StorageError::Integrity("malformed file hash".into()))?;
        Progress::add(&progress.total_bytes, manifest.size);
        Progress::add(
            &progress.shards_total,
            manifest.segment_count * plan.k as u64,
        );

        let assembler =
            FileAssembler::create(&params.out, manifest.size, file_hash).map_err(|e| {
                StorageError::Invalid(format!("cannot write {}: {e}", params.out.display()))
            })?;
        let (wtx, mut wrx) = mpsc::channel::<(u64, Vec<u8>)>(2);
        let writer = tokio::task::spawn_blocking(move || {
            let mut assembler = assembler;
            while let Some((index, plain)) = wrx.blocking_recv() {
                assembler.write_segment(index, &plain)?;
            }
            assembler.finish()
        });
        let mut stats = FetchStats::default();
        let fetched = self
            .fetch_segments(
                &plan,
                Span {
                    segments: 0..manifest.segment_count,
                    budget: GET_BUDGET,
                },
                wtx,
                &progress,
                cancel,
                &mut stats,
            )
            .await;
        match fetched {
            // The sender is gone: the writer ends and reports (a writer that failed first
            // reports its own error).
            Ok(_) => {}
            Err(StorageError::Cancelled(_)) => {
                // The writer, short of segments, removes its temporary file.
                let _ = writer.await;
                info!(asset = %manifest.asset_id, segments = stats.segments, "get cancelled");
                return Err(StorageError::Cancelled(format!(
                    "get of {} cancelled after {} of {} segments; nothing was written to {}",
                    manifest.asset_id,
                    stats.segments,
                    manifest.segment_count,
                    params.out.display()
                )));
            }
            Err(e) => {
                let _ = writer.await;
                return Err(e);
            }
        }
        let path = writer
            .await
            .map_err(|e| StorageError::internal("writing the file", e))?
            .map_err(|e| StorageError::Integrity(e.to_string()))?;
        info!(asset = %manifest.asset_id, out = %path.display(), fetched = stats.fetched, corrupt = stats.corrupt, dropped = stats.dropped_hosts, "get done");
        Ok(json!({
            "asset_id": manifest.asset_id,
            "name": manifest.name,
            "out": path.display().to_string(),
            "size": manifest.size,
            "segments": manifest.segment_count,
            "shards_fetched": stats.fetched,
            "corrupt_shards": stats.corrupt,
            "failed_fetches": stats.failed,
            "unreachable_hosts": stats.dropped_hosts,
            "cancelled_batches": stats.cancelled_batches,
            "file_blake3": manifest.file_blake3,
            "duration_ms": started.elapsed().as_millis() as u64,
        }))
    }
}
