//! Storage routes: `/storage/*`. Long work (put, get, repair) runs as an operation that
//! `GET /storage/ops/{id}` follows.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// An operation's state (`GET` and `DELETE /storage/ops/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpStatus {
    /// Operation id.
    #[serde(default)]
    pub op_id: String,
    /// `put`, `get` or `repair`.
    #[serde(default)]
    pub kind: String,
    /// When it started, Unix milliseconds (absent in the answer that starts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Its counters (absent in the answer that starts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<OpProgress>,
    /// `running`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// A cancellation was asked for and the operation is stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested: Option<bool>,
    /// The result when done; its shape depends on `kind` ([`PutResult`], [`GetResult`],
    /// [`RepairReport`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Error code when failed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Error message when failed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Counters of a running operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpProgress {
    /// Bytes to process.
    pub total_bytes: u64,
    /// Bytes processed.
    pub done_bytes: u64,
    /// Shards to move.
    pub shards_total: u64,
    /// Shards moved.
    pub shards_done: u64,
    /// Bytes sent to hosts.
    pub bytes_sent: u64,
    /// Bytes received from hosts.
    pub bytes_received: u64,
}

/// Result of a put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PutResult {
    /// Asset id.
    pub asset_id: String,
    /// Human name of the file.
    pub name: Option<String>,
    /// File size, bytes.
    pub size: u64,
    /// `ec` or `rep`.
    pub mode: String,
    /// Data shards per segment.
    pub k: u64,
    /// Total shards per segment.
    pub n: u64,
    /// The scheme used, e.g. `rs(12,20)`.
    pub scheme: String,
    /// The scheme was adapted to the hosts available.
    pub adapted: bool,
    /// Shard size, bytes.
    pub shard_size: u64,
    /// Segments.
    pub segments: u64,
    /// Shards placed on hosts.
    pub shards_placed: u64,
    /// Shards in the asset.
    pub shards_total: u64,
    /// Distinct hosts used.
    pub hosts: u64,
    /// The upload resumed an earlier one.
    pub resumed: bool,
    /// Shards sent by this run.
    pub shards_sent: u64,
    /// Bytes sent by this run.
    pub bytes_sent: u64,
    /// Hosts holding a copy of the manifest.
    pub manifest_copies: u64,
    /// Wall-clock time, milliseconds.
    pub duration_ms: u64,
    /// When hosts drop the asset, Unix milliseconds (`expires_in_s`); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// Result of a get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GetResult {
    /// Asset id.
    pub asset_id: String,
    /// Human name of the file.
    pub name: Option<String>,
    /// Where the file was written.
    pub out: String,
    /// File size, bytes.
    pub size: u64,
    /// Segments.
    pub segments: u64,
    /// Shards fetched.
    pub shards_fetched: u64,
    /// Corrupt shards bypassed.
    pub corrupt_shards: u64,
    /// Fetches that failed.
    pub failed_fetches: u64,
    /// Hosts that did not answer.
    pub unreachable_hosts: u64,
    /// Whole-file BLAKE3, hex (verified).
    pub file_blake3: String,
    /// Wall-clock time, milliseconds.
    pub duration_ms: u64,
}

/// What `POST /storage/rm` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RmResult {
    /// Asset id.
    pub asset_id: String,
    /// Hosts the manifest names.
    pub hosts: u64,
    /// Hosts that dropped the asset.
    pub hosts_confirmed: u64,
    /// Shards those hosts removed.
    pub shards_deleted: u64,
    /// Hosts that did not confirm (they keep the shards), with what they answered.
    pub not_confirmed: Vec<RmHost>,
}

/// A host that did not confirm a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RmHost {
    /// Peer id.
    pub host: String,
    /// Its answer, or why there was none.
    pub answer: String,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RepairReport {
    /// Asset id.
    pub asset_id: String,
    /// Segments in the asset.
    pub segments: u64,
    /// Total shards per segment (n).
    pub n: u64,
    /// Fewest reachable shards of any segment before the repair.
    pub reachable_min_before: u64,
    /// Fewest reachable shards of any segment after the repair.
    pub reachable_min_after: u64,
    /// Segments rebuilt.
    pub segments_repaired: u64,
    /// Shards rebuilt and stored on new hosts.
    pub shards_rebuilt: u64,
    /// Segments with fewer than k reachable shards (lost).
    pub segments_lost: u64,
    /// Manifest revision after the repair.
    pub revision: u64,
}

/// Answer of `GET /storage/assets/{id}/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssetCheck {
    /// Asset id.
    pub asset_id: String,
    /// Data shards per segment.
    pub k: u64,
    /// Total shards per segment.
    pub n: u64,
    /// Segments.
    pub segments: u64,
    /// Fewest reachable shards of any segment.
    pub reachable_min: u64,
    /// Reachable shards per segment.
    pub reachable: Vec<u64>,
    /// Segments under k plus the repair margin.
    pub segments_below_threshold: u64,
    /// Segments under k (lost).
    pub segments_lost: u64,
    /// Hosts that did not answer.
    pub hosts_down: Vec<String>,
    /// Shard health per host: what the manifest places there and what it still holds.
    #[serde(default)]
    pub hosts: Vec<HostShards>,
}

/// One host's share of an asset, in [`AssetCheck`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostShards {
    /// Host peer id.
    pub peer: String,
    /// Shards the manifest places on it.
    pub shards: u64,
    /// Of those, shards it answered that it holds.
    pub present: u64,
    /// Whether it answered at all.
    pub up: bool,
}

/// Answer of `POST /storage/share`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShareResponse {
    /// Asset id.
    pub asset_id: String,
    /// The new reader.
    pub peer: String,
    /// The peer could already read it.
    pub already_shared: bool,
    /// Readers now.
    pub readers: u64,
    /// Manifest revision.
    pub revision: u64,
    /// Hosts holding a copy of the manifest.
    pub manifest_copies: u64,
}

/// An asset this node can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssetSummary {
    /// Asset id.
    pub asset_id: String,
    /// Human name of the file.
    pub name: Option<String>,
    /// File size, bytes.
    pub size: u64,
    /// Scheme, e.g. `rs(12,20)`.
    pub scheme: String,
    /// Data shards per segment.
    pub k: u64,
    /// Total shards per segment.
    pub n: u64,
    /// Segments.
    pub segments: u64,
    /// Shards in the asset.
    pub shards: u64,
    /// Owner peer id.
    pub owner: String,
    /// This node owns it.
    pub owned: bool,
    /// Readers.
    pub readers: u64,
    /// Manifest revision.
    pub revision: u64,
    /// When it was stored, Unix milliseconds.
    pub created_ms: u64,
    /// When hosts drop it, Unix milliseconds; absent: kept until the owner deletes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// Answer of `GET /storage/assets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssetList {
    /// Newest first.
    pub assets: Vec<AssetSummary>,
}

/// Answer of `POST /storage/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContentKey {
    /// Asset id.
    pub asset_id: String,
    /// The content key, hex.
    pub key: String,
}

/// The shard host's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostStatus {
    /// Shards held.
    pub shards: u64,
    /// Bytes held.
    pub used_bytes: u64,
    /// The quota, bytes.
    pub quota_bytes: u64,
    /// Shard bytes of accepted stores since start.
    pub received_bytes: u64,
    /// Accepted stores since start.
    pub received_shards: u64,
    /// Stores that wrote a new shard since start.
    pub stored_shards: u64,
    /// Shards served since start.
    pub served_shards: u64,
    /// Requests answered busy since start.
    pub busy: u64,
    /// Stores refused for the quota since start.
    pub quota_refusals: u64,
    /// Peers with shards here.
    pub peers: u64,
    /// Bytes on disk charged to those peers (file-system blocks, not payload).
    pub peer_disk_bytes: u64,
    /// Bytes on disk kept for any one peer.
    pub peer_quota_bytes: u64,
    /// Shards kept for any one peer.
    pub peer_quota_shards: u64,
    /// Stores refused by a per-peer limit (bytes, shards, peers kept) since start.
    pub limit_refusals: u64,
    /// Free bytes on the shard directory's file system, as last seen (absent when it cannot
    /// be asked, or before the first store).
    pub free_bytes: Option<u64>,
    /// Free bytes below which new shards are refused.
    pub min_free_bytes: u64,
    /// Stores refused by the free-space floor since start.
    pub low_disk_refusals: u64,
    /// Rotten shards found since start.
    pub corrupt: u64,
}

/// Answer of `GET /storage/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageStatus {
    /// The shard host.
    pub host: HostStatus,
    /// Assets this node can read.
    pub assets: u64,
    /// Of those, assets it owns.
    pub assets_owned: u64,
    /// Uploads that can be resumed.
    pub uploads_in_progress: u64,
    /// Operations running.
    pub ops_running: u64,
}

/// Body of `POST /storage/put`: a file on the node's own disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRequest {
    /// Absolute path of the file to store.
    pub path: String,
    /// `ec` (Reed–Solomon, default) or `rep` (replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Data shards per segment (`ec`); the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u16>,
    /// Shards per segment (`ec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u16>,
    /// Replicas (`rep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<u16>,
    /// Shard size, 1..=1048576 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_size: Option<u32>,
    /// A name to list the asset under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Refuse to put with fewer than n hosts (`503 no_hosts`) instead of shrinking (k, n)
    /// to the hosts available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_adapt: Option<bool>,
    /// Seconds until the hosts drop the asset and free its space (at least 1, at most
    /// 100 years); absent: kept until the owner deletes it (`POST /storage/rm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3_155_760_000_u64)]
    pub expires_in_s: Option<u64>,
}

/// Body of `POST /storage/get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// The asset id, 64 lower-case hex digits.
    pub asset: String,
    /// Absolute path to write the file to.
    pub out: String,
    /// The content key, 64 hex digits, for an asset shared out of band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Body of `POST /storage/share`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    /// The asset id.
    pub asset: String,
    /// Peer id of the new reader.
    pub peer: String,
}

/// Body of `POST /storage/repair` and `POST /storage/key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssetRequest {
    /// The asset id, 64 lower-case hex digits.
    pub asset: String,
}

/// Body of `POST /storage/policy/sign`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySignRequest {
    /// The asset id (an asset this node holds).
    pub asset: String,
    /// The licence the asset is published under.
    pub license: String,
    /// `ec` (default) or `rep`: the distribution the policy requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Data shards per segment (`ec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u16>,
    /// Shards per segment (`ec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u16>,
    /// Replicas (`rep`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<u16>,
    /// Safety tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_tags: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(raw: &str) {
        let v: Value = serde_json::from_str(raw).unwrap();
        let t: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
    }

    #[test]
    fn ops_round_trip() {
        round_trip::<OpStatus>(r#"{"op_id":"op-1","kind":"put","state":"running"}"#);
        round_trip::<OpStatus>(
            r#"{"op_id":"op-1","kind":"get","started_ms":1,"progress":{"total_bytes":10,
            "done_bytes":5,"shards_total":4,"shards_done":2,"bytes_sent":0,
            "bytes_received":5},"state":"failed","error":"no_hosts","message":"only 0"}"#,
        );
    }

    #[test]
    fn results_round_trip() {
        round_trip::<GetResult>(
            r#"{"asset_id":"a","name":null,"out":"/tmp/x","size":3,"segments":1,
            "shards_fetched":2,"corrupt_shards":0,"failed_fetches":0,"unreachable_hosts":0,
            "file_blake3":"ab","duration_ms":4}"#,
        );
        round_trip::<StorageStatus>(
            r#"{"host":{"shards":1,"used_bytes":2,"quota_bytes":3,"received_bytes":4,
            "received_shards":5,"stored_shards":6,"served_shards":7,"busy":0,
            "quota_refusals":0,"peers":1,"peer_disk_bytes":4608,"peer_quota_bytes":9,
            "peer_quota_shards":8,"limit_refusals":2,"free_bytes":null,"min_free_bytes":1,
            "low_disk_refusals":0,"corrupt":0},"assets":1,"assets_owned":1,
            "uploads_in_progress":0,"ops_running":0}"#,
        );
        round_trip::<ContentKey>(r#"{"asset_id":"a","key":"00"}"#);
    }

    #[test]
    fn requests_round_trip() {
        round_trip::<PutRequest>(r#"{"path":"/x","mode":"ec","k":2,"n":4,"shard_size":64}"#);
        round_trip::<GetRequest>(r#"{"asset":"a","out":"/y"}"#);
        round_trip::<ShareRequest>(r#"{"asset":"a","peer":"p"}"#);
        round_trip::<AssetRequest>(r#"{"asset":"a"}"#);
        round_trip::<PolicySignRequest>(r#"{"asset":"a","license":"cc0","mode":"rep","r":3}"#);
        assert!(serde_json::from_str::<AssetRequest>(r#"{"asset":"a","x":1}"#).is_err());
    }
}
