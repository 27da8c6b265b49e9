//! `GET /radio` and `GET /mesh`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Answer of `GET /radio`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RadioResponse {
    /// Whether the node runs any radio link.
    pub enabled: bool,
    /// The gateway's counters; null without radios.
    pub status: Option<RadioStatus>,
}

/// The radio gateway's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RadioStatus {
    /// Every link.
    pub links: Vec<LinkStatus>,
    /// Peers heard by radio.
    pub peers: u64,
    /// Beacons accepted.
    pub beacons_accepted: u64,
    /// Frames that were not well-formed beacons.
    pub beacons_malformed: u64,
    /// Beacons with a bad key or signature.
    pub beacons_invalid: u64,
    /// Replayed or stale beacons.
    pub beacons_replayed: u64,
    /// When a beacon was last heard, Unix milliseconds.
    pub last_heard_ms: Option<u64>,
}

/// One radio link's counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LinkStatus {
    /// Link name: kind and index, e.g. `kiss0`.
    pub name: String,
    /// The configured link spec.
    pub link: String,
    /// `via` of peers heard on it.
    pub via: String,
    /// Largest frame, bytes.
    pub mtu: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Airtime spent since start, milliseconds.
    pub airtime_total_ms: u64,
    /// Airtime spent in the current duty-cycle window, milliseconds.
    pub airtime_window_ms: u64,
    /// Airtime allowed per window, milliseconds.
    pub airtime_budget_ms: u64,
    /// The duty cycle (fraction of time).
    pub duty_cycle: f64,
    /// The duty-cycle window, seconds.
    pub window_s: u64,
    /// Sends refused (and retried later) because the budget was spent.
    pub sends_deferred: u64,
    /// Beacons sent.
    pub beacons_sent: u64,
    /// Fresh beacons heard.
    pub beacons_heard: u64,
    /// Size of this node's last beacon, bytes.
    pub beacon_bytes: u64,
    /// Airtime of that beacon, milliseconds.
    pub beacon_airtime_ms: u64,
    /// Sessions routed now.
    pub streams: u64,
    /// Peers last heard on this link.
    pub peers: Vec<String>,
}

/// Answer of `GET /mesh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeshResponse {
    /// Whether mesh metrics are available (batctl, babeld or a metrics file).
    pub available: bool,
    /// The metrics; null when unavailable.
    pub mesh: Option<MeshStatus>,
    /// The factor the broker scores hosts by (1.0 without metrics).
    pub mesh_factor: f64,
}

/// Mesh health as the broker uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MeshStatus {
    /// Where the figures come from: `batman`, `babel` or `file`.
    pub source: String,
    /// The mesh works: at least one live neighbour (or the file says so).
    pub mesh_ok: bool,
    /// Live neighbours.
    pub neighbours: u32,
    /// Mean path metric, 0 (perfect) ..= 1 (unusable); null without routes.
    pub path_metric: Option<f64>,
    /// Routes (originators) known.
    pub routes: u32,
    /// The neighbours.
    #[serde(default)]
    pub neighbour_list: Vec<Neighbour>,
    /// When the figures were read, Unix milliseconds.
    #[serde(default)]
    pub polled_at_ms: u64,
}

/// A neighbour as the mesh daemon sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Neighbour {
    /// MAC (BATMAN) or link-local IP (Babel).
    pub address: String,
    /// Interface it is heard on.
    pub interface: String,
    /// Link cost or quality as the daemon reports it; null when unknown.
    pub metric: Option<f64>,
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(raw: &str) {
        let v: Value = serde_json::from_str(raw).unwrap();
        let t: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
    }

    #[test]
    fn radio_round_trips() {
        round_trip::<RadioResponse>(r#"{"enabled":false,"status":null}"#);
        round_trip::<RadioResponse>(
            r#"{"enabled":true,"status":{"links":[{"name":"kiss0","link":"kiss:/dev/pts/3",
            "via":"radio:kiss0","mtu":220,"frames_in":4,"frames_out":5,"bytes_in":400,
            "bytes_out":500,"airtime_total_ms":1200,"airtime_window_ms":300,
            "airtime_budget_ms":36000,"duty_cycle":0.01,"window_s":3600,"sends_deferred":0,
            "beacons_sent":2,"beacons_heard":1,"beacon_bytes":103,"beacon_airtime_ms":180,
            "streams":0,"peers":["12D3KooWP"]}],"peers":1,"beacons_accepted":1,
            "beacons_malformed":0,"beacons_invalid":0,"beacons_replayed":0,
            "last_heard_ms":17}}"#,
        );
    }

    #[test]
    fn mesh_round_trips() {
        round_trip::<MeshResponse>(r#"{"available":false,"mesh":null,"mesh_factor":1.0}"#);
        round_trip::<MeshResponse>(
            r#"{"available":true,"mesh":{"source":"babel","mesh_ok":true,"neighbours":1,
            "path_metric":0.25,"routes":2,"neighbour_list":[{"address":"fe80::1",
            "interface":"wlan0","metric":96.0}],"polled_at_ms":5},"mesh_factor":0.9}"#,
        );
    }
}
