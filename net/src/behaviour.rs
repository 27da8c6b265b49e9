//! The composed libp2p behaviour of a node.
// The NetworkBehaviour derive generates an undocumented event enum.
#![allow(missing_docs)]

use std::time::Duration;

use libp2p::{
    autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad, mdns, ping, relay,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour},
    StreamProtocol,
};

use crate::Config;

/// Identify protocol version string shared by all Offgrid nodes.
pub const PROTOCOL_VERSION: &str = "/offgrid/1.0.0";
/// Kademlia protocol name, separate from the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/offgrid/kad/1.0.0");

/// Every protocol a node speaks. (The derived event enum has one variant per field.)

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection caps (total, per peer, pending).
    pub limits: connection_limits::Behaviour,
    /// Exchange of listen addresses and protocols.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Announcements (and later blocks and transactions).
    pub gossipsub: gossipsub::Behaviour,
    /// Local network discovery; off with `--no-mdns`.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Discovery beyond one LAN via bootstrap peers.
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Quotes and job runs.
    pub auction: offgrid_behaviours::auction::Behaviour,
    /// Ledger catch-up (tips, blocks, final transactions); routed to the ledger service.
    pub ledger_sync: offgrid_behaviours::ledger_sync::Behaviour,
    /// Shard store/fetch/has and manifests .
    pub shards: offgrid_behaviours::shards::Behaviour,
    /// Relay v2 server, with bounded reservations and circuits; on with `relay_server`.
    pub relay_server: Toggle<relay::Behaviour>,
    /// Relay v2 client: reservations on known relays and circuits through them.
    pub relay_client: relay::client::Behaviour,
    /// Hole punching: upgrades a relayed connection to a direct one.
    pub dcutr: dcutr::Behaviour,
    /// AutoNAT v2: reachability of each of our addresses, checked by peers.
    pub autonat: autonat::v2::client::Behaviour,
    /// AutoNAT v2 server: dials back addresses peers ask about.
    pub autonat_server: autonat::v2::server::Behaviour,
}

/// The gossip message id: BLAKE3 of the topic and the payload, truncated to 20 bytes.
///
/// Messages carry no source or sequence number (see [`Behaviour::new`]), so the content is
/// the id: copies of one message arriving from several peers are recognised as duplicates,
/// and no peer can claim an id for different content. Publishers that send the same items
/// again make the payload differ (announcements carry a new seq, transaction gossip a
/// counter, reputation reports a timestamp).
pub fn content_message_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let mut h = blake3::Hasher::new();
    let topic = message.topic.as_str().as_bytes();
    h.update(&(topic.len() as u64).to_le_bytes());
    h.update(topic);
    h.update(&message.data);
    gossipsub::MessageId::new(&h.finalize().as_bytes()[..20])
}

/// Errors building the behaviour.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

impl Behaviour {
    /// Builds the behaviour from the node's key and the network config.
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        net: &Config,
    ) -> Result<Self, BuildError> {
        let peer_id = key.public().to_peer_id();
        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(net.max_connections))
                .with_max_established_per_peer(Some(net.max_connections_per_peer))
                .with_max_pending_incoming(Some(net.max_pending))
                .with_max_pending_outgoing(Some(net.max_pending)),
        );
        let identify = identify::Behaviour::new(
            identify::Config::new(PROTOCOL_VERSION.into(), key.public())
                .with_agent_version(net.agent_version.clone()),
        );
        // Gossip messages are not signed by gossipsub: every payload (announcement, block,
        // transactions and attestations, reputation report) carries its own Ed25519
        // signature, which the node checks before the message is relayed. Signing and
        // checking the envelope too doubled the signature work of the wallet, and gossipsub
        // checks the envelope of every duplicate copy it receives. Without an authenticated
        // source, message ids are content hashes; nothing may trust `Message::source`.
        let gossip_cfg = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_millis(500))
            .validation_mode(gossipsub::ValidationMode::None)
            .message_id_fn(content_message_id)
            // We verify our own signatures before a message is forwarded.
            .validate_messages()
            .max_transmit_size(net.max_gossip_bytes)
            // Small meshes are the norm off-grid: keep the mesh even with two peers.
            .mesh_n_low(1)
            .mesh_outbound_min(0)
            .build()
            .map_err(|e| format!("gossipsub config: {e}"))?;
        let gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_cfg)?;
        let mdns = if net.mdns {
            Some(mdns::tokio::Behaviour::new(
                mdns::Config {
                    query_interval: Duration::from_secs(5),
                    ..Default::default()
                },
                peer_id,
            )?)
        } else {
            None
        };
        let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
        // The event loop bootstraps when it has peers; kad's own timer only warns without.
        kad_cfg.set_periodic_bootstrap_interval(None);
        let mut kad =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_cfg);
        // Off-grid nodes rarely learn a confirmed external address; answer queries anyway.
        kad.set_mode(Some(kad::Mode::Server));
        // One budget for every protocol: what a flood holds on one is not there for another.
        let budget = offgrid_behaviours::Budget::new(net.inbound_budget_bytes);
        let inbound = |streams| {
            offgrid_behaviours::Inbound::streams(streams)
                .with_budget(budget.clone())
                .with_read_timeout(net.request_read_timeout)
        };
        let s = net.max_streams;
        let auction =
            offgrid_behaviours::auction::behaviour(net.auction_timeout, &inbound(s.auction));
        let shards = offgrid_behaviours::shards::behaviour(net.shard_timeout, &inbound(s.shards));
        let ledger_sync = offgrid_behaviours::ledger_sync::behaviour(
            Duration::from_secs(30),
            &inbound(s.ledger_sync),
        );
        Ok(Behaviour {
            auction,
            ledger_sync,
            shards,
            limits,
            identify,
            ping: ping::Behaviour::default(),
            gossipsub,
            mdns: mdns.into(),
            kad,
            relay_server: crate::nat::relay_server(peer_id, net.relay_server.as_ref()).into(),
            relay_client,
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: crate::nat::autonat_client(),
            autonat_server: crate::nat::autonat_server(),
        })
    }
}

#[cfg(test)]
mod tests {
    use libp2p::gossipsub::{Message, TopicHash};

    use super::*;

    fn msg(topic: &str, data: &[u8]) -> Message {
        Message {
            source: None,
            data: data.to_vec(),
            sequence_number: None,
            topic: TopicHash::from_raw(topic),
        }
    }

    #[test]
    fn message_ids_hash_topic_and_content_only() {
        let a = content_message_id(&msg("offgrid/tx/1", b"{}"));
        assert_eq!(a, content_message_id(&msg("offgrid/tx/1", b"{}")));
        assert_eq!(a.0.len(), 20);
        assert_ne!(a, content_message_id(&msg("offgrid/tx/1", b"{ }")));
        assert_ne!(a, content_message_id(&msg("offgrid/blocks/1", b"{}")));
        // A claimed source or sequence number does not change the id: it is not authenticated.
        let mut spoofed = msg("offgrid/tx/1", b"{}");
        spoofed.source = Some(libp2p::PeerId::random());
        spoofed.sequence_number = Some(7);
        assert_eq!(a, content_message_id(&spoofed));
    }

    #[test]
    fn the_behaviour_builds_with_unsigned_gossip() {
        let key = Keypair::generate_ed25519();
        let cfg = Config::default().with_mdns(false);
        let (_, relay_client) = relay::client::new(key.public().to_peer_id());
        assert!(Behaviour::new(&key, relay_client, &cfg).is_ok());
    }
}
