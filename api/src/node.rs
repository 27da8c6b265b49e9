//! Node routes: `/status`, `/toggle`, `/pubkeys`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::peers::Announcement;

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// This node's libp2p peer id.
    pub peer_id: String,
    /// The node's version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Addresses the swarm listens on.
    pub listen_addrs: Vec<String>,
    /// Peer counts.
    pub peers: PeerCounts,
    /// Jobs this node is running or brokering now.
    pub jobs_in_flight: u64,
}

/// Peer counts in [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerCounts {
    /// Peers with an open connection.
    pub connected: u64,
    /// Peers known (connected or not).
    pub known: u64,
    /// Known peers that announce themselves as active hosts.
    pub active_hosts: u64,
}

/// Body of `POST /toggle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToggleRequest {
    /// Whether this node offers its resources.
    pub active: bool,
}

/// Answer of `POST /toggle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToggleResponse {
    /// Whether this node offers its resources now.
    pub active: bool,
    /// The announcement as it is now published.
    pub announcement: Announcement,
}

/// `GET /pubkeys`: this node's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PubKeys {
    /// libp2p peer id.
    pub peer_id: String,
    /// Ed25519 public key, hex.
    pub ed25519: String,
    /// X25519 public key (derived from the Ed25519 seed), hex.
    pub x25519: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(raw: &str) {
        let v: Value = serde_json::from_str(raw).unwrap();
        let t: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
    }

    #[test]
    fn status_round_trips() {
        round_trip::<Status>(
            r#"{"peer_id":"12D3KooWQ","version":"0.1.0","uptime_s":12,
            "listen_addrs":["/ip4/127.0.0.1/tcp/4001"],
            "peers":{"connected":2,"known":3,"active_hosts":1},"jobs_in_flight":0}"#,
        );
    }

    #[test]
    fn toggle_and_keys_round_trip() {
        round_trip::<ToggleResponse>(
            r#"{"active":false,"announcement":{"node_id":"12D3KooWA","seq":3,"active":false,
            "prices":{"compute":30000},"job_types":["echo"],"min_oncall_percent":50,
            "burst_percent_max":80,"burst":4,"capacity":{"cpu_cores":2,"storage_bytes":1},
            "listen_addrs":[],"issued_at_ms":9}}"#,
        );
        round_trip::<ToggleRequest>(r#"{"active":true}"#);
        round_trip::<PubKeys>(r#"{"peer_id":"12D3KooWQ","ed25519":"ab","x25519":"cd"}"#);
    }
}
