//! Peer routes: `/peers` and `/announce`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What a host offers (`GET /announce`, and each peer's last announcement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Announcement {
    /// The announcing node's peer id.
    pub node_id: String,
    /// Increases with every new announcement of this node.
    pub seq: u64,
    /// Whether the host takes jobs.
    pub active: bool,
    /// Price per unit, per resource type, in micro-credits.
    pub prices: BTreeMap<String, u64>,
    /// Job types this host has an executor for.
    pub job_types: Vec<String>,
    /// Percent of time the host promises to be on call.
    pub min_oncall_percent: u8,
    /// Highest percent of capacity lent in bursts.
    pub burst_percent_max: u8,
    /// Most jobs run at once.
    pub burst: u32,
    /// Advertised capacity.
    pub capacity: Capacity,
    /// Listen multiaddrs.
    pub listen_addrs: Vec<String>,
    /// When it was issued, Unix milliseconds.
    pub issued_at_ms: u64,
}

/// Advertised capacity of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    /// CPU cores offered.
    pub cpu_cores: u32,
    /// Bytes of shard storage offered.
    pub storage_bytes: u64,
}

/// Body of `POST /announce`: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRequest {
    /// New prices per resource type, decimal credits (strings keep them exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub prices: Option<BTreeMap<String, Value>>,
    /// Percent of time on call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_oncall_percent: Option<u8>,
    /// Highest percent of capacity lent in bursts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_percent_max: Option<u8>,
    /// Most jobs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Whether to take jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
}

/// Answer of `GET /peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeersResponse {
    /// Every known peer.
    pub peers: Vec<PeerInfo>,
}

/// A known peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    /// libp2p peer id.
    pub peer_id: String,
    /// Known multiaddrs, oldest first.
    pub addrs: Vec<String>,
    /// How it was heard: `mdns`, `bootstrap`, `radio:<link>`, ...
    pub via: String,
    /// Whether a connection is open.
    pub connected: bool,
    /// First heard, Unix milliseconds.
    pub first_seen_ms: u64,
    /// Last heard, Unix milliseconds.
    pub last_seen_ms: u64,
    /// Active by its announcement, else by its beacon; null when neither is known.
    pub active: Option<bool>,
    /// Whether its announcement's signature was checked.
    pub verified: bool,
    /// Its last announcement.
    pub announcement: Option<Announcement>,
    /// Its last radio beacon.
    pub beacon: Option<BeaconSummary>,
}

/// What a radio beacon said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BeaconSummary {
    /// The ACTIVE flag.
    pub active: bool,
    /// The capability bitmap.
    pub capabilities: u16,
    /// The advertised price, micro-credits.
    pub price: Option<u32>,
    /// When it was heard, Unix milliseconds.
    pub heard_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANN: &str = r#"{"node_id":"12D3KooWA","seq":3,"active":true,
        "prices":{"compute":30000},"job_types":["echo"],"min_oncall_percent":50,
        "burst_percent_max":80,"burst":4,"capacity":{"cpu_cores":2,"storage_bytes":1024},
        "listen_addrs":["/ip4/127.0.0.1/tcp/1"],"issued_at_ms":9}"#;

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(raw: &str) {
        let v: Value = serde_json::from_str(raw).unwrap();
        let t: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
    }

    #[test]
    fn announcement_round_trips() {
        round_trip::<Announcement>(ANN);
        round_trip::<AnnounceRequest>(r#"{"prices":{"compute":"0.03"},"burst":2}"#);
    }

    #[test]
    fn peers_round_trip() {
        round_trip::<PeersResponse>(&format!(
            r#"{{"peers":[{{"peer_id":"12D3KooWA","addrs":["/ip4/127.0.0.1/tcp/1"],
            "via":"mdns","connected":true,"first_seen_ms":1,"last_seen_ms":2,"active":true,
            "verified":true,"announcement":{ANN},"beacon":null}},
            {{"peer_id":"12D3KooWB","addrs":[],"via":"radio:kiss0","connected":false,
            "first_seen_ms":1,"last_seen_ms":2,"active":null,"verified":false,
            "announcement":null,"beacon":{{"active":true,"capabilities":3,"price":null,
            "heard_ms":5}}}}]}}"#
        ));
    }
}
