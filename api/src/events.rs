//! The dashboard's live feed: `GET /market/jobs` (the jobs this node brokered lately) and the
//! events of `GET /events` (Server-Sent Events), whose `data` lines are these types as JSON.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::market::ReceiptView;

/// A job this node brokered: running, or how it ended (`GET /market/jobs`, and the events
/// `job_started` and `job_finished`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobRecord {
    /// Job id.
    pub job_id: String,
    /// Job type.
    pub job_type: String,
    /// `running`, `completed` or `failed`.
    pub state: String,
    /// When the broker took it, Unix milliseconds.
    pub started_ms: u64,
    /// When it ended, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// The host whose result was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Price per unit, micro-credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_micro: Option<u64>,
    /// The run's wall-clock time on the host, milliseconds (from its signed receipt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// From request to result at the broker, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The host's signed receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptView>,
    /// Error code when failed (the HTTP error codes of `POST /market/run`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Error message when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Answer of `GET /market/jobs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    /// Newest first; at most the last 64 jobs since the node started.
    pub jobs: Vec<JobRecord>,
}

/// A change in the peer registry (event `peer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PeerChange {
    /// `added`, `changed` or `removed`.
    pub change: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// How it was heard (`mdns`, `bootstrap`, `radio:<link>`, …).
    pub via: String,
    /// Whether a connection is open.
    pub connected: bool,
    /// Active by its announcement or beacon; null when unknown.
    pub active: Option<bool>,
    /// Last heard, Unix milliseconds.
    pub last_seen_ms: u64,
}

/// The first event of every stream (event `hello`), and the periodic `status` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Peers with an open connection.
    pub connected: u64,
    /// Peers known.
    pub known: u64,
    /// Known peers that announce themselves active.
    pub active_hosts: u64,
    /// Jobs running or brokered now.
    pub jobs_in_flight: u64,
}
