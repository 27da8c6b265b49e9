//! The radio gateway: this node on LoRa (KISS TNCs), UDP multicast and the simulated
//! medium.
//!
//! - **Beacons.** Every link sends this node's signed beacon ([`offgrid_transports::beacon`])
//!   every `beacon_interval_s`, within two budgets: the announce cap (`announce_fraction` of
//!   airtime) and the node's own duty cycle ([`link::Budgeted`], which refuses any frame,
//!   beacon or not, that would exceed it). Received beacons are verified and filtered
//!   (replays, stale sequence numbers and malformed frames dropped and counted), then merged
//!   into the peer registry by the event loop with `via = lora | ble | udp`.
//! - **Small business.** A peer heard only by radio is still a market candidate (from the
//!   ACTIVE flag and capabilities of its beacon). The broker's quote and run requests to it
//!   go over a [`session::Session`]: an authenticated X25519 key exchange in two messages,
//!   then ChaCha20-Poly1305 frames, over an `ArqStream` (fragmentation, selective-repeat
//!   ARQ, keep-alive); a [`offgrid_transports::demux::Demux`] lets beacons and several
//!   sessions share one link. Messages use a compact radio profile ([`wire`]): binary
//!   fields and receipts the broker rebuilds from the host's timings and signature.
//!
//! **Design choice.** A full libp2p `Transport` over a link exists
//! ([`offgrid_transports::p2p::RadioTransport`], addresses `/offgrid-radio/<link>/<addr>`),
//! and Noise + Yamux run on it, but the node does not put its Swarm on radio: stock libp2p
//! costs several times the airtime. Measured on the simulated medium at SF7/125 kHz with the
//! same ARQ settings (`node/benches/radio_airtime.rs`, bytes on air with ARQ headers and ACKs):
//!
//! | | stock libp2p on `RadioTransport` | this compact profile |
//! |---|---|---|
//! | connection setup, until the first request can be sent | 866 B, 20 frames, 1.8 s | 261 B, 4 frames, 0.5 s |
//! | auction round (quote + run + receipt) | 2389 B, 32 frames, 4.3 s | 276 B, 8 frames, 0.6 s |
//! | one quote request-response on a warm connection | 459 B, 8 frames, 0.9 s | — |
//!
//! Stock setup alone is over the 400-byte goal (multistream-select names, Noise XX with
//! protobuf identity payloads, Yamux negotiation); every request opens a Yamux stream and
//! negotiates the protocol name on it; and the auction's Done carries the full signed receipt
//! that the compact profile rebuilds from the host's timings and signature. So radio peers
//! get this compact RPC as a second path to a peer inside the event loop: the broker and the
//! host code are the same on both paths. Bulk shards and gossipsub stay on IP.

mod config;
mod gateway;
pub mod link;
pub mod session;
pub mod wire;

use std::sync::Arc;

use anyhow::Context as _;
pub use config::{LinkSpec, RadioConfig, DEFAULT_BAUD};
pub use gateway::{arq_config, peer_of, Gateway};
use offgrid_transports::demux::Demux;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

use libp2p::PeerId;
use offgrid_behaviours::announce::Announcement;
use offgrid_net::{AuctionRequest, Sink};
use tokio::sync::{mpsc, watch};

use crate::identity::Identity;

/// Queue of received beacons and of inbound sessions per link.
const LINK_QUEUE: usize = 32;
/// Sessions routed at once per link (in and out, lingering ones included).
const MAX_STREAMS: usize = 16;

/// What a beacon said about a peer.
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

/// What the gateway is plugged into.
pub struct Wiring {
    /// Verified beacons, for the peer registry.
    pub beacons: Sink<BeaconInfo>,
    /// Requests from brokers over radio sessions, for the market's host.
    pub requests: mpsc::Sender<AuctionRequest>,
    /// This node's current announcement (beacons are built from it).
    pub announcement: watch::Receiver<Announcement>,
}

/// A handle to the running gateway.
pub type RadioHandle = Arc<Gateway>;

/// One link's counters (`GET /radio`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// Link name: kind and index, e.g. `kiss0`.
    pub name: String,
    /// The configured link spec.
    pub link: String,
    /// `via` of peers heard on it.
    pub via: String,
    /// Largest frame.
    pub mtu: usize,
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
    /// Size of this node's last beacon.
    pub beacon_bytes: u64,
    /// Airtime of that beacon, milliseconds.
    pub beacon_airtime_ms: u64,
    /// Sessions routed now.
    pub streams: usize,
    /// Peers last heard on this link.
    pub peers: Vec<String>,
}

/// The gateway's status (`GET /radio`, `offgrid radio status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RadioStatus {
    /// Every link.
    pub links: Vec<LinkStatus>,
    /// Peers heard by radio.
    pub peers: usize,
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

/// This node's station id on a simulator: the first 8 bytes of its public key.
pub fn station_id(identity: &Identity) -> u64 {
    let k = identity.public_key();
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[..8]);
    u64::from_be_bytes(b)
}

/// Opens the configured links and starts the gateway's tasks; does nothing without radios.
pub async fn start(
    radios: &[RadioConfig],
    cluster_id: &str,
    identity: &Identity,
    wiring: Wiring,
    cancel: &CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Option<RadioHandle>> {
    if radios.is_empty() {
        return Ok(None);
    }
    let mut links = Vec::new();
    let mut queues = Vec::new();
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for cfg in radios {
        let spec = cfg.validate().map_err(|e| anyhow::anyhow!(e))?;
        let n = counts.entry(spec.kind()).or_default();
        let name = format!("{}{}", spec.kind(), n);
        *n += 1;
        let ep = link::open(cfg, &spec, station_id(identity))
            .await
            .with_context(|| format!("opening radio {}", cfg.link))?;
        let (tx, rx) = ep.split();
        let (demux, beacons, accept) = Demux::spawn(rx, MAX_STREAMS, LINK_QUEUE);
        info!(link = %name, spec = %cfg.link, mtu = offgrid_transports::Link::mtu(&tx), "radio link open");
        links.push((name, cfg.clone(), tx, demux));
        queues.push((beacons, accept));
    }
    let gw = Arc::new(Gateway::new(
        identity.clone(),
        wiring,
        cluster_id.to_owned(),
        links,
    ));
    for (i, (beacons, accept)) in queues.into_iter().enumerate() {
        tasks.spawn(gw.clone().hear_loop(i, beacons, cancel.clone()));
        tasks.spawn(gw.clone().accept_loop(i, accept, cancel.clone()));
        tasks.spawn(gw.clone().beacon_loop(i, cancel.clone()));
    }
    tasks.spawn(gw.clone().reap_loop(cancel.clone()));
    Ok(Some(gw))
}
