//! The event loop's side of the radio gateway (`crate::radio`) and of the mesh metrics
//! (`crate::mesh`).
//!
//! The gateway's tasks never touch the registry: they send [`RadioCommand`]s on the command
//! channel, and this loop, the registry's single writer, merges them in order. Requests to
//! a peer heard only by radio leave through the gateway instead of the swarm, and radio
//! requests to this node reach the same [`Host`](crate::market::host::Host) as libp2p ones.

use std::{collections::HashMap, time::Duration};

use libp2p::PeerId;
use offgrid_behaviours::auction::{Request, Response};
use tokio::sync::oneshot;
use tracing::debug;

use super::{Candidate, Client, ClientError, Command, EventLoop};
use crate::{
    market::{
        host::{Finished, ReplyTo},
        scoring,
    },
    mesh::MeshStatus,
    now_ms,
    peers::registry::BeaconSummary,
    radio::{RadioHandle, RadioStatus},
};

/// Longest a request over radio may take before its caller is told it failed.
const RADIO_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// What a beacon said about a peer, as the event loop keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeaconInfo {
    /// The beacon's sender.
    pub peer: PeerId,
    /// The link kind it was heard on: `lora`, `ble` or `udp`.
    pub via: &'static str,
    /// Its address on that link, as `/offgrid-radio/<link>/<addr>`.
    pub addr: String,
    /// The ACTIVE flag.
    pub active: bool,
    /// The capability bitmap (`offgrid_transports::beacon::Capabilities`).
    pub capabilities: u16,
    /// The advertised price, micro-credits.
    pub price: Option<u32>,
    /// IP multiaddrs the beacon lists.
    pub ip_addrs: Vec<String>,
}

/// Messages from the radio gateway and the mesh poller to the event loop.
pub enum RadioCommand {
    /// The gateway is running; route radio requests through it.
    Attach(RadioHandle),
    /// A verified, fresh beacon.
    Beacon(BeaconInfo),
    /// A request from a broker over an authenticated radio session.
    Inbound {
        /// The broker (authenticated by the session).
        broker: PeerId,
        /// Its request.
        request: Request,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
    /// Radio links and counters (`None` without radios).
    Status {
        /// Reply.
        reply: oneshot::Sender<Option<RadioStatus>>,
    },
    /// New mesh metrics.
    Mesh(MeshStatus),
    /// The latest mesh metrics (`None` before the first poll or without a source).
    MeshStatus {
        /// Reply.
        reply: oneshot::Sender<Option<MeshStatus>>,
    },
}

impl std::fmt::Debug for RadioCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RadioCommand::Attach(_) => f.write_str("Attach"),
            RadioCommand::Beacon(b) => f.debug_tuple("Beacon").field(b).finish(),
            RadioCommand::Inbound { broker, .. } => {
                f.debug_struct("Inbound").field("broker", broker).finish()
            }
            RadioCommand::Status { .. } => f.write_str("Status"),
            RadioCommand::Mesh(m) => f.debug_tuple("Mesh").field(m).finish(),
            RadioCommand::MeshStatus { .. } => f.write_str("MeshStatus"),
        }
    }
}

/// The event loop's radio and mesh state.
#[derive(Default)]
pub struct RadioState {
    handle: Option<RadioHandle>,
    peers: HashMap<PeerId, BeaconInfo>,
    mesh: Option<MeshStatus>,
}

/// Whether a beacon's capabilities cover a job type: `echo` needs ECHO, anything else
/// COMPUTE (the quote tells whether the host really has that executor).
pub fn covers(capabilities: u16, job_type: &str) -> bool {
    use offgrid_transports::beacon::Capabilities as C;
    let caps = C(capabilities);
    match job_type {
        "echo" => caps.contains(C::ECHO),
        _ => caps.contains(C::COMPUTE),
    }
}

impl EventLoop {
    /// Handles a [`RadioCommand`].
    pub(super) fn on_radio(&mut self, cmd: RadioCommand) {
        match cmd {
            RadioCommand::Attach(h) => self.radio.handle = Some(h),
            RadioCommand::Beacon(b) => {
                let now = now_ms();
                let peer = b.peer.to_string();
                for ip in &b.ip_addrs {
                    self.registry.observe(&peer, Some(ip), b.via, now);
                }
                self.registry.beacon(
                    &peer,
                    &b.addr,
                    b.via,
                    BeaconSummary {
                        active: b.active,
                        capabilities: b.capabilities,
                        price: b.price,
                        heard_ms: now,
                    },
                );
                debug!(%peer, via = b.via, active = b.active, "beacon merged");
                self.radio.peers.insert(b.peer, b);
            }
            RadioCommand::Inbound {
                broker,
                request,
                reply,
            } => self
                .host
                .on_radio_request(&self.settings, broker, request, reply),
            RadioCommand::Status { reply } => {
                let _ = reply.send(self.radio.handle.as_ref().map(|h| h.status()));
            }
            RadioCommand::Mesh(m) => self.radio.mesh = Some(m),
            RadioCommand::MeshStatus { reply } => {
                let _ = reply.send(self.radio.mesh.clone());
            }
        }
    }

    /// Whether a request to `peer` goes over radio: heard by beacon and not connected over IP.
    pub(super) fn routes_by_radio(&self, peer: &PeerId) -> bool {
        self.radio.handle.is_some()
            && self.radio.peers.contains_key(peer)
            && !self.swarm.is_connected(peer)
    }

    /// Sends an auction request over radio; the answer arrives on `reply` from a task, so
    /// the loop never waits for the air.
    pub(super) fn radio_request(
        &mut self,
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, String>>,
    ) {
        let Some(h) = self.radio.handle.clone() else {
            let _ = reply.send(Err("no radio".into()));
            return;
        };
        tokio::spawn(async move {
            let r =
                match tokio::time::timeout(RADIO_REQUEST_TIMEOUT, h.request(peer, request)).await {
                    Ok(r) => r,
                    Err(_) => Err("no answer over radio in time".into()),
                };
            let _ = reply.send(r);
        });
    }

    /// Radio peers whose latest beacon offers `job_type`, unless an announcement over IP
    /// already makes them a candidate.
    pub(super) fn radio_candidates(&self, job_type: &str) -> Vec<Candidate> {
        self.radio
            .peers
            .values()
            .filter(|b| b.active && covers(b.capabilities, job_type))
            .filter(|b| {
                self.registry
                    .get(&b.peer.to_string())
                    .is_none_or(|r| r.announcement.is_none())
            })
            .map(|b| Candidate {
                peer: b.peer,
                id: b.peer.to_string(),
                via: b.via.to_owned(),
                price: u64::from(b.price.unwrap_or(0)),
                mesh: 1.0,
            })
            .collect()
    }

    /// The broker's mesh factor for hosts reached over IP, from the latest mesh metrics.
    pub(super) fn mesh_factor(&self) -> f64 {
        match &self.radio.mesh {
            Some(m) => scoring::mesh_factor(
                Some(m.mesh_ok),
                m.neighbours,
                m.path_metric.map(|v| v.clamp(0.0, 1.0)),
            ),
            None => 1.0,
        }
    }

    /// Sends a finished run's answer where its request came from.
    pub(super) fn deliver_finished(&mut self, f: Finished) {
        self.host.run_finished();
        match f.channel {
            ReplyTo::Swarm(ch) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .auction
                    .send_response(ch, f.response)
                    .is_err()
                {
                    debug!("broker went away before the job's answer");
                }
            }
            ReplyTo::Radio(tx) => {
                if tx.send(f.response).is_err() {
                    debug!("radio broker went away before the job's answer");
                }
            }
        }
    }
}

impl Client {
    /// Hands a radio or mesh event to the event loop (waits while the loop is busy).
    pub async fn radio(&self, cmd: RadioCommand) -> Result<(), ClientError> {
        self.tx
            .send(Command::Radio(cmd))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Radio links and counters; `None` when the node has no radio.
    pub async fn radio_status(&self) -> Result<Option<RadioStatus>, ClientError> {
        self.ask(|reply| Command::Radio(RadioCommand::Status { reply }))
            .await
    }

    /// The latest mesh metrics.
    pub async fn mesh_status(&self) -> Result<Option<MeshStatus>, ClientError> {
        self.ask(|reply| Command::Radio(RadioCommand::MeshStatus { reply }))
            .await
    }
}
