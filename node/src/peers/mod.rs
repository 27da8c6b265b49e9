//! Peers: every peer heard of on any link, this node's own announcement, and whom to dial.
//!
//! One task, the [`service`], owns the [`registry::Registry`]. It takes discovery and
//! connection events from the swarm's router ([`offgrid_net::PeerEvent`]), announcements
//! from gossip, beacons from the radio gateway and mesh metrics from the mesh poller, and
//! answers the other services through a [`PeersHandle`]. It decides dials (only the lower
//! peer id dials at once, redials back off) and persists changed records through the
//! store's writer, so the swarm task never waits on the disk.
//!
//! - [`registry`]: the records and their merge rules (pure);
//! - [`offer`]: what this node offers, shared with the market's host;
//! - `announce`: signing, publishing and verifying announcements;
//! - `dial`: the dial policy;
//! - `radio`: peers heard by beacon and requests routed over radio.

mod announce;
mod dial;
pub mod offer;
mod radio;
pub mod registry;
mod service;
#[cfg(test)]
mod service_tests;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use libp2p::PeerId;
use offgrid_behaviours::{announce::Announcement, auction};
use offgrid_net::{ClientError, Net};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use self::{
    offer::{HostSettings, HostUpdate, Offer},
    radio::covers,
    registry::PeerRecord,
    service::{announce_topic, start, Input, Parts, Started},
};
use crate::{mesh::MeshStatus, radio::RadioStatus};

/// Capacity of the peer service's inputs.
pub const QUEUE: usize = 4096;

/// The link a peer is heard over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    /// TCP/IP (LAN, Wi-Fi, the internet).
    Ip,
    /// A LoRa radio (KISS serial TNC, or the simulator).
    Lora,
    /// Bluetooth LE.
    Ble,
    /// UDP multicast (a LAN standing in for a radio).
    Udp,
}

impl Via {
    /// The name used in records and on the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Ip => "ip",
            Via::Lora => "lora",
            Via::Ble => "ble",
            Via::Udp => "udp",
        }
    }

    /// Parses a name; unknown names are `None`.
    pub fn parse(s: &str) -> Option<Via> {
        Some(match s {
            "ip" => Via::Ip,
            "lora" => Via::Lora,
            "ble" => Via::Ble,
            "udp" => Via::Udp,
            _ => return None,
        })
    }

    /// Whether this is a radio link (slow, airtime-budgeted).
    pub fn is_radio(self) -> bool {
        self != Via::Ip
    }
}

/// A snapshot of the network for `/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetStatus {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses the swarm listens on.
    pub listen_addrs: Vec<String>,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Peers in the registry.
    pub known_peers: usize,
    /// Known peers whose announcement says active.
    pub active_hosts: usize,
    /// Jobs this node is running as a host right now.
    pub jobs_in_flight: usize,
}

/// A host that could take a job, as the registry knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Host peer id.
    pub peer: PeerId,
    /// The same as text (the broker's tables are keyed by it; encoding it per job showed
    /// in profiles).
    pub id: String,
    /// Link it is heard over.
    pub via: String,
    /// Announced price per unit for the job type, micro-credits.
    pub price: u64,
    /// Mesh health factor (1.0 when unknown).
    pub mesh: f64,
}

/// Questions to the peer service.
#[derive(Debug)]
pub(crate) enum Query {
    Status(oneshot::Sender<NetStatus>),
    Peers(oneshot::Sender<Vec<PeerRecord>>),
    Announcement(oneshot::Sender<Announcement>),
    Update(HostUpdate, oneshot::Sender<Result<Announcement, String>>),
    Candidates(String, oneshot::Sender<Vec<Candidate>>),
    /// The radio route to a peer, when requests to it must go over radio.
    RadioRoute(PeerId, oneshot::Sender<Option<crate::radio::RadioHandle>>),
    RadioStatus(oneshot::Sender<Option<RadioStatus>>),
    MeshStatus(oneshot::Sender<Option<MeshStatus>>),
}

/// Longest a request over radio may take before its caller is told it failed.
const RADIO_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A cloneable handle to the peer service, with the network for requests to peers.
#[derive(Clone)]
pub struct PeersHandle {
    tx: mpsc::Sender<Query>,
    net: Arc<dyn Net>,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for PeersHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeersHandle").finish_non_exhaustive()
    }
}

impl PeersHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Query,
    ) -> Result<T, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Network snapshot.
    pub async fn status(&self) -> Result<NetStatus, ClientError> {
        let mut s = self.ask(Query::Status).await?;
        s.jobs_in_flight = self.in_flight.load(Ordering::Relaxed);
        Ok(s)
    }

    /// Every known peer.
    pub async fn peers(&self) -> Result<Vec<PeerRecord>, ClientError> {
        self.ask(Query::Peers).await
    }

    /// This node's announcement.
    pub async fn announcement(&self) -> Result<Announcement, ClientError> {
        self.ask(Query::Announcement).await
    }

    /// Changes what this node offers; persisted and announced at once.
    pub async fn update_host(&self, update: HostUpdate) -> Result<Announcement, ClientError> {
        self.ask(|r| Query::Update(update, r))
            .await?
            .map_err(ClientError::Refused)
    }

    /// Active hosts offering `job_type`.
    pub async fn candidates(&self, job_type: String) -> Result<Vec<Candidate>, ClientError> {
        self.ask(|r| Query::Candidates(job_type, r)).await
    }

    /// Radio links and counters; `None` when the node has no radio.
    pub async fn radio_status(&self) -> Result<Option<RadioStatus>, ClientError> {
        self.ask(Query::RadioStatus).await
    }

    /// The latest mesh metrics.
    pub async fn mesh_status(&self) -> Result<Option<MeshStatus>, ClientError> {
        self.ask(Query::MeshStatus).await
    }

    /// Sends an auction request to a host and waits for its answer: over radio when the
    /// host is heard only by beacon, else over libp2p.
    pub async fn request(
        &self,
        peer: PeerId,
        request: auction::Request,
    ) -> Result<auction::Response, ClientError> {
        match self.ask(|r| Query::RadioRoute(peer, r)).await? {
            Some(radio) => {
                match tokio::time::timeout(RADIO_REQUEST_TIMEOUT, radio.request(peer, request))
                    .await
                {
                    Ok(r) => r.map_err(ClientError::Refused),
                    Err(_) => Err(ClientError::Refused("no answer over radio in time".into())),
                }
            }
            None => self.net.auction(peer, request).await,
        }
    }

    /// The network, for requests that never go over radio (shards).
    pub fn net(&self) -> &Arc<dyn Net> {
        &self.net
    }
}

impl PeersHandle {
    /// Sends a shard request (shards never go over radio).
    pub async fn shard_request(
        &self,
        peer: PeerId,
        request: offgrid_behaviours::shards::Request,
    ) -> Result<offgrid_behaviours::shards::Response, ClientError> {
        self.net.shard(peer, request).await
    }
}
