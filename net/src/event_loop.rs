//! The task that owns the swarm. It only routes: commands in, typed events out. The
//! request-response protocols are routed in [`crate::routing`].

use std::collections::HashMap;

use futures::StreamExt;
use libp2p::{
    gossipsub::{self, IdentTopic, MessageAcceptance, TopicHash},
    identify, kad, mdns,
    multiaddr::Protocol,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        SwarmEvent,
    },
    Multiaddr, Swarm,
};
use offgrid_behaviours::{auction, shards};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    client::{ClientError, Command, Dial, LedgerOut, Snapshot},
    events::{GossipEvent, Inbound, PeerEvent, Sink},
    routing::Pending,
    Behaviour, BehaviourEvent,
};

/// Most addresses the router remembers per peer, and most peers, for dialling a peer that
/// a request is addressed to.
const MAX_ADDRS_PER_PEER: usize = 8;
const MAX_ADDRESS_BOOK: usize = 4096;

/// The router.
pub struct EventLoop {
    pub(crate) swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    pub(crate) inbound: Inbound,
    topics: HashMap<TopicHash, Sink<GossipEvent>>,
    listen_addrs: Vec<Multiaddr>,
    pub(crate) auctions: Pending<auction::Response>,
    pub(crate) shards: Pending<shards::Response>,
    paths: crate::nat::Paths,
}

impl EventLoop {
    /// A router over `swarm`, taking commands from `commands` and handing events to
    /// `inbound`'s sinks.
    pub fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        inbound: Inbound,
        cancel: CancellationToken,
    ) -> Self {
        EventLoop {
            swarm,
            commands,
            cancel,
            topics: HashMap::new(),
            inbound,
            listen_addrs: Vec::new(),
            auctions: HashMap::new(),
            shards: HashMap::new(),
            paths: crate::nat::Paths::default(),
        }
    }

    /// Runs until the cancellation token fires.
    pub async fn run(mut self) {
        for (topic, sink) in std::mem::take(&mut self.inbound.topics) {
            let t = IdentTopic::new(topic);
            if let Err(e) = self.swarm.behaviour_mut().gossipsub.subscribe(&t) {
                warn!(topic = %t, error = %e, "cannot subscribe");
            }
            self.topics.insert(t.hash(), sink);
        }
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                Some(cmd) = self.commands.recv() => self.on_command(cmd),
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
            }
        }
        info!("network stopped");
    }

    fn on_command(&mut self, cmd: Command) {
        let me = *self.swarm.local_peer_id();
        let b = self.swarm.behaviour_mut();
        match cmd {
            Command::Snapshot(reply) => {
                let _ = reply.send(Snapshot {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen_addrs: self.listen_addrs.clone(),
                    connected: self.swarm.connected_peers().copied().collect(),
                });
            }
            Command::Auction {
                peer,
                request,
                reply,
            } => {
                let id = b.auction.send_request(&peer, request);
                self.auctions.insert(id, reply);
            }
            Command::Shard {
                peer,
                request,
                reply,
            } => {
                if peer == me {
                    let _ = reply.send(Err(ClientError::Refused(
                        "cannot send a shard request to ourselves".into(),
                    )));
                    return;
                }
                if self.paths.relayed_only(&peer) {
                    let why = crate::nat::RELAYED_ONLY.into();
                    let _ = reply.send(Err(ClientError::Refused(why)));
                    return;
                }
                let id = b.shards.send_request(&peer, request);
                self.shards.insert(id, reply);
            }
            Command::RespondAuction(ch, response) => {
                if b.auction.send_response(ch, response).is_err() {
                    debug!("broker went away before the answer");
                }
            }
            Command::RespondShard(ch, response) => {
                if b.shards.send_response(ch, response).is_err() {
                    debug!("shard client went away before the answer");
                }
            }
            Command::Ledger(out) => self.on_ledger(out),
            Command::Publish { topic, data } => {
                if let Err(e) = b.gossipsub.publish(IdentTopic::new(topic), data) {
                    // Nobody subscribed yet: publishers republish when a peer subscribes.
                    debug!(error = %e, "not published");
                }
            }
            Command::Validate {
                id,
                from,
                acceptance,
            } => {
                b.gossipsub
                    .report_message_validation_result(&id, &from, acceptance);
            }
            Command::DialPeer(d) => self.dial(d),
            Command::DialAddr { addr, reply } => {
                let r = self.swarm.dial(addr);
                let _ = reply.send(r.map_err(|e| ClientError::Refused(e.to_string())));
            }
            Command::KadAddress(peer, addr) => {
                b.kad.add_address(&peer, addr);
            }
            Command::KadBootstrap => {
                // Fails only when the routing table is empty, which is fine.
                let _ = b.kad.bootstrap();
            }
        }
    }

    fn dial(&mut self, d: Dial) {
        if d.addrs.is_empty() || self.swarm.is_connected(&d.peer) {
            return;
        }
        let mut opts = DialOpts::peer_id(d.peer).addresses(d.addrs);
        if d.only_if_disconnected {
            opts = opts.condition(PeerCondition::DisconnectedAndNotDialing);
        }
        if d.new_port {
            opts = opts.allocate_new_port();
        }
        if let Err(e) = self.swarm.dial(opts.build()) {
            debug!(peer = %d.peer, error = %e, "dial not started");
        }
    }

    fn on_ledger(&mut self, out: LedgerOut) {
        let b = self.swarm.behaviour_mut();
        match out {
            LedgerOut::Publish { topic, data } => {
                if let Err(e) = b.gossipsub.publish(IdentTopic::new(topic), data) {
                    // Typically NoPeersSubscribedToTopic: the ledger republishes pending
                    // items when a peer subscribes, and sync fills any gap.
                    debug!(topic, error = %e, "ledger gossip not published");
                }
            }
            LedgerOut::Validate {
                message_id,
                from,
                acceptance,
            } => {
                b.gossipsub
                    .report_message_validation_result(&message_id, &from, acceptance);
            }
            LedgerOut::Request { peer, request } => {
                b.ledger_sync.send_request(&peer, request);
            }
            LedgerOut::Respond { channel, response } => {
                if b.ledger_sync.send_response(channel, response).is_err() {
                    debug!("peer went away before the ledger sync answer");
                }
            }
        }
    }

    fn peer_event(&self, ev: PeerEvent, to_all: bool) {
        if to_all {
            for s in &self.inbound.connections {
                s.send(ev.clone());
            }
        }
        if !self.inbound.peers.send(ev) {
            debug!("peer service busy; discovery event dropped");
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match &ev {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let relayed = endpoint.is_relayed();
                self.paths.opened(*peer_id, relayed);
            }
            SwarmEvent::ConnectionClosed {
                peer_id, endpoint, ..
            } => {
                let relayed = endpoint.is_relayed();
                self.paths.closed(*peer_id, relayed);
            }
            _ => {}
        }
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address.clone());
                }
                self.peer_event(PeerEvent::Listening(address), false);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| a != &address);
                self.peer_event(PeerEvent::ListenExpired(address), false);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } if num_established.get() == 1 => {
                debug!(%peer_id, "connected");
                let dialed = endpoint
                    .is_dialer()
                    .then(|| strip_p2p(endpoint.get_remote_address()));
                let ev = PeerEvent::Connected {
                    peer: peer_id,
                    dialed,
                };
                self.peer_event(ev, true);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(%peer_id, "disconnected");
                self.peer_event(PeerEvent::Disconnected(peer_id), true);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        let Some(ev) = crate::nat::on_event(&mut self.swarm, ev) else {
            return;
        };
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let listen_addrs = info
                    .listen_addrs
                    .iter()
                    .take(MAX_ADDRS_PER_PEER)
                    .map(strip_p2p)
                    .collect();
                let ev = PeerEvent::Identified {
                    peer: peer_id,
                    listen_addrs,
                };
                self.peer_event(ev, false);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                let found = found.into_iter().take(MAX_ADDRESS_BOOK).collect();
                self.peer_event(PeerEvent::Mdns(found), false);
            }
            BehaviourEvent::Kad(kad::Event::RoutingUpdated {
                peer, addresses, ..
            }) => {
                let addrs = addresses.into_vec().into_iter().take(MAX_ADDRS_PER_PEER);
                let ev = PeerEvent::Routing {
                    peer,
                    addrs: addrs.collect(),
                };
                self.peer_event(ev, false);
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                propagation_source,
                message_id,
            }) => {
                let taken = self.topics.get(&message.topic).is_some_and(|s| {
                    s.send(GossipEvent::Message {
                        topic: message.topic.clone(),
                        data: message.data,
                        from: propagation_source,
                        id: message_id.clone(),
                    })
                });
                if !taken {
                    // No service for the topic, or it is busy: not relayed.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            MessageAcceptance::Ignore,
                        );
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, topic }) => {
                if let Some(s) = self.topics.get(&topic) {
                    s.send(GossipEvent::Subscribed {
                        peer: peer_id,
                        topic,
                    });
                }
            }
            BehaviourEvent::Auction(ev) => self.on_auction(ev),
            BehaviourEvent::Shards(ev) => self.on_shards(ev),
            BehaviourEvent::LedgerSync(ev) => self.on_sync(ev),
            _ => {}
        }
    }
}

fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}
