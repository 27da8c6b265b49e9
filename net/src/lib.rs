//! The swarm task of an Offgrid-Net node.
//!
//! One task, the [`EventLoop`], owns the libp2p `Swarm`. It routes and keeps no business
//! state: services send [`Command`]s through a cloneable [`Client`] (each with a `oneshot`
//! for its reply, outbound requests waiting in a pending map keyed by request id), and
//! inbound traffic leaves as typed events ([`PeerEvent`], [`GossipEvent`],
//! [`AuctionRequest`], [`ShardRequest`], [`SyncEvent`]) through bounded, non-blocking
//! [`Sink`]s given to the loop at start ([`Inbound`]). A service answers an inbound
//! request through the [`Net`] trait, which [`Client`] implements and
//! [`testing::FakeNet`] fakes for unit tests.
//!
//! Nothing here imports the node's services: who to dial, what to announce, how to price a
//! job or where a shard lives are decided above this crate.

mod behaviour;
mod client;
mod event_loop;
mod events;
mod nat;
mod routing;
pub mod testing;

use std::time::Duration;

pub use behaviour::{
    content_message_id, Behaviour, BehaviourEvent, KAD_PROTOCOL, PROTOCOL_VERSION,
};
pub use client::{Client, ClientError, Command, Dial, LedgerOut, Net, Snapshot, COMMAND_QUEUE};
pub use event_loop::EventLoop;
pub use events::{
    AuctionRequest, GossipEvent, Inbound, InboundRequest, PeerEvent, Reply, ShardRequest, Sink,
    SyncEvent,
};
use libp2p::{identity::Keypair, noise, tcp, yamux, Swarm};
pub use nat::RelayLimits;

/// What the swarm is built with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most established connections.
    pub max_connections: u32,
    /// Most connections per peer.
    pub max_connections_per_peer: u32,
    /// Most pending connections each way.
    pub max_pending: u32,
    /// Largest gossip message, bytes.
    pub max_gossip_bytes: usize,
    /// Local discovery by mDNS.
    pub mdns: bool,
    /// Close connections idle this long.
    pub idle_timeout: Duration,
    /// Longest an auction request may take (the slowest executor, plus slack).
    pub auction_timeout: Duration,
    /// Longest a shard request may take.
    pub shard_timeout: Duration,
    /// Identify's agent string.
    pub agent_version: String,
    /// Node-wide budget of inbound request bytes buffered at once, over every protocol and
    /// connection (each stream's first `codec::FREE_BYTES` are not charged).
    pub inbound_budget_bytes: usize,
    /// Longest an inbound request may take to arrive in full.
    pub request_read_timeout: Duration,
    /// Concurrent inbound streams per connection: auction, shards, ledger sync.
    pub max_streams: StreamLimits,
    /// Serve as a relay v2 with these bounds; `None`: not a relay.
    pub relay_server: Option<RelayLimits>,
}

/// Concurrent streams per connection and protocol (request-response counts inbound and
/// outbound streams together; libp2p drops an inbound stream past the limit at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Quotes and job runs.
    pub auction: usize,
    /// Shard store and fetch (up to 8 MiB each).
    pub shards: usize,
    /// Ledger sync.
    pub ledger_sync: usize,
    /// Yamux substreams of every protocol together.
    pub yamux: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        // Outbound requests count too: a broker quotes and runs many jobs on one host at
        // once (a host's burst may be 64), a put or get keeps up to 16 shard requests in
        // flight. Memory is bounded by the codec's caps and the node-wide budget, not by
        // these counts.
        StreamLimits {
            auction: 64,
            shards: 16,
            ledger_sync: 8,
            yamux: 128,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_connections: 256,
            max_connections_per_peer: 4,
            max_pending: 64,
            max_gossip_bytes: 256 * 1024,
            mdns: true,
            idle_timeout: Duration::from_secs(300),
            auction_timeout: Duration::from_secs(35),
            shard_timeout: Duration::from_secs(30),
            agent_version: "offgrid-net".into(),
            inbound_budget_bytes: 32 << 20,
            request_read_timeout: Duration::from_secs(10),
            max_streams: StreamLimits::default(),
            relay_server: None,
        }
    }
}

impl Config {
    /// With or without mDNS.
    pub fn with_mdns(mut self, on: bool) -> Self {
        self.mdns = on;
        self
    }
}

/// Errors building the swarm.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The transport could not be built.
    #[error("building the transport: {0}")]
    Transport(String),
    /// The behaviour could not be built.
    #[error("building the network behaviour: {0}")]
    Behaviour(String),
}

/// Builds the swarm: TCP (and QUIC with the `quic` feature), Noise, Yamux and the
/// [`Behaviour`].
pub fn build_swarm(key: &Keypair, cfg: &Config) -> Result<Swarm<Behaviour>, BuildError> {
    let yamux_streams = cfg.max_streams.yamux;
    let yamux_cfg = move || {
        let mut y = yamux::Config::default();
        y.set_max_num_streams(yamux_streams);
        y
    };
    let builder = libp2p::SwarmBuilder::with_existing_identity(key.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux_cfg,
        )
        .map_err(|e| BuildError::Transport(e.to_string()))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    // Circuits through a relay are upgraded like any connection: Noise end to end, so the
    // relay sees only ciphertext.
    let builder = builder
        .with_relay_client(noise::Config::new, yamux_cfg)
        .map_err(|e| BuildError::Transport(e.to_string()))?;
    let idle = cfg.idle_timeout;
    let swarm = builder
        .with_behaviour(|key, relay_client| Behaviour::new(key, relay_client, cfg))
        .map_err(|e| BuildError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
