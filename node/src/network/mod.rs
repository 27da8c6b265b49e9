//! The swarm: one task owns it, everything else talks to it through a [`Client`].
//!
//! The [`EventLoop`] `select!`s over swarm events, [`Command`]s from the bounded command
//! channel, a housekeeping timer and the shutdown token. Each command carries a `oneshot`
//! for its reply, so a caller that gives up simply drops its receiver.

mod behaviour;
mod event_loop;
mod ledger;
mod radio;
mod shards;

use std::collections::BTreeMap;

pub use behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL, PROTOCOL_VERSION};
pub use event_loop::EventLoop;
pub use ledger::{LedgerLink, LedgerOut};
use libp2p::{Multiaddr, PeerId};
use offgrid_behaviours::{
    announce::Announcement,
    auction::{Request, Response},
};
pub use radio::{covers, BeaconInfo, RadioCommand, RadioState};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::peers::registry::PeerRecord;

/// Capacity of the command channel; callers wait when the loop is this far behind.
pub const COMMAND_QUEUE: usize = 1024;

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

/// A change to what this node offers (`POST /announce`, `POST /toggle`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostUpdate {
    /// Take jobs or not.
    #[serde(default)]
    pub active: Option<bool>,
    /// New prices per resource type, micro-credits; merged into the current ones.
    #[serde(default)]
    pub prices: Option<BTreeMap<String, u64>>,
    /// Percent of time on call.
    #[serde(default)]
    pub min_oncall_percent: Option<u8>,
    /// Highest percent of capacity lent in bursts.
    #[serde(default)]
    pub burst_percent_max: Option<u8>,
    /// Most jobs at once.
    #[serde(default)]
    pub burst: Option<u32>,
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

/// Requests to the event loop.
#[derive(Debug)]
pub enum Command {
    /// Network snapshot.
    Status {
        /// Reply.
        reply: oneshot::Sender<NetStatus>,
    },
    /// Every known peer.
    Peers {
        /// Reply.
        reply: oneshot::Sender<Vec<PeerRecord>>,
    },
    /// This node's current announcement.
    GetAnnouncement {
        /// Reply.
        reply: oneshot::Sender<Announcement>,
    },
    /// Change what this node offers, persist it and announce it at once.
    UpdateHost {
        /// The change.
        update: HostUpdate,
        /// Reply: the new announcement, or why the change was refused.
        reply: oneshot::Sender<Result<Announcement, String>>,
    },
    /// Active hosts whose announcement offers a job type.
    Candidates {
        /// Job type.
        job_type: String,
        /// Reply.
        reply: oneshot::Sender<Vec<Candidate>>,
    },
    /// Send an auction request to a peer and wait for its answer.
    Request {
        /// The host.
        peer: PeerId,
        /// The request.
        request: Request,
        /// Reply: the host's answer, or why none came.
        reply: oneshot::Sender<Result<Response, String>>,
    },
    /// Send a shard-protocol request to a peer and wait for its answer.
    Shard {
        /// The host.
        peer: PeerId,
        /// The request.
        request: offgrid_behaviours::shards::Request,
        /// Reply: the host's answer, or why none came.
        reply: oneshot::Sender<Result<offgrid_behaviours::shards::Response, String>>,
    },
    /// Something the ledger service asks of the swarm (no reply).
    Ledger(LedgerOut),
    /// A radio gateway or mesh poller event (`network/radio.rs`).
    Radio(RadioCommand),
    /// Dial an address.
    Dial {
        /// Where.
        addr: Multiaddr,
        /// Reply: whether the dial was started.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Errors talking to the event loop.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The event loop has stopped (the node is shutting down).
    #[error("the node is shutting down")]
    Closed,
    /// The request was refused.
    #[error("{0}")]
    Refused(String),
}

/// A cloneable handle to the event loop.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
}

impl Client {
    /// Wraps the sending side of the command channel.
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        Client { tx }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
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
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Every known peer.
    pub async fn peers(&self) -> Result<Vec<PeerRecord>, ClientError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// This node's announcement.
    pub async fn announcement(&self) -> Result<Announcement, ClientError> {
        self.ask(|reply| Command::GetAnnouncement { reply }).await
    }

    /// Changes what this node offers.
    pub async fn update_host(&self, update: HostUpdate) -> Result<Announcement, ClientError> {
        self.ask(|reply| Command::UpdateHost { update, reply })
            .await?
            .map_err(ClientError::Refused)
    }

    /// Active hosts offering `job_type`.
    pub async fn candidates(&self, job_type: String) -> Result<Vec<Candidate>, ClientError> {
        self.ask(|reply| Command::Candidates { job_type, reply })
            .await
    }

    /// Sends an auction request and waits for the answer.
    pub async fn request(&self, peer: PeerId, request: Request) -> Result<Response, ClientError> {
        self.ask(|reply| Command::Request {
            peer,
            request,
            reply,
        })
        .await?
        .map_err(ClientError::Refused)
    }

    /// Dials an address.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), ClientError> {
        self.ask(|reply| Command::Dial { addr, reply })
            .await?
            .map_err(ClientError::Refused)
    }
}
