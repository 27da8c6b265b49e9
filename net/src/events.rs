//! What the router hands to the services: typed inbound events, delivered through
//! [`Sink`]s that never wait.
//!
//! The swarm task must never block on a slow service, so every hand-off is a `try_send` on
//! a bounded channel. When a service's queue is full the router answers for it: an inbound
//! request gets the protocol's "busy" answer, a gossip message is ignored (not relayed).

use std::sync::Arc;

use libp2p::{
    gossipsub::{MessageId, TopicHash},
    request_response::ResponseChannel,
    Multiaddr, PeerId,
};
use offgrid_behaviours::{auction, ledger_sync, shards};
use tokio::sync::{mpsc, oneshot};

/// A non-blocking hand-off of one kind of event to a service. A refused event (queue full
/// or service stopped) comes back when the sink can return it, so that the router can
/// answer for the service.
pub struct Sink<T> {
    offer: Arc<dyn Fn(T) -> Result<(), Option<T>> + Send + Sync>,
}

impl<T> Clone for Sink<T> {
    fn clone(&self) -> Self {
        Sink {
            offer: self.offer.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Sink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sink")
    }
}

impl<T: Send + 'static> Sink<T> {
    /// A sink from any non-blocking delivery function.
    pub fn new(offer: impl Fn(T) -> Result<(), Option<T>> + Send + Sync + 'static) -> Self {
        Sink {
            offer: Arc::new(offer),
        }
    }

    /// Delivers into a bounded channel; a refused event comes back.
    pub fn channel(tx: mpsc::Sender<T>) -> Self {
        Sink::new(move |t| {
            tx.try_send(t).map_err(|e| match e {
                mpsc::error::TrySendError::Full(t) | mpsc::error::TrySendError::Closed(t) => {
                    Some(t)
                }
            })
        })
    }

    /// Delivers into a bounded channel of the service's own input type.
    pub fn channel_into<U: From<T> + Send + 'static>(tx: mpsc::Sender<U>) -> Self {
        Sink::new(move |t| tx.try_send(U::from(t)).map_err(|_| None))
    }

    /// Refuses everything (no service attached).
    pub fn refuse() -> Self {
        Sink::new(|t| Err(Some(t)))
    }

    /// Hands `event` over; `false` when it was not taken.
    pub fn send(&self, event: T) -> bool {
        (self.offer)(event).is_ok()
    }

    /// Hands `event` over; gives it back (when it can) if it was not taken.
    pub fn offer(&self, event: T) -> Result<(), Option<T>> {
        (self.offer)(event)
    }
}

/// Where the answer to an inbound request goes: back over libp2p, or to a local caller (a
/// radio session, a test) waiting on a oneshot.
#[derive(Debug)]
pub enum Reply<R> {
    /// Answer on the libp2p request-response stream.
    Swarm(ResponseChannel<R>),
    /// Answer to an in-process caller.
    Local(oneshot::Sender<R>),
}

/// A request from a peer on one of the request-response protocols.
#[derive(Debug)]
pub struct InboundRequest<Req, Resp> {
    /// The peer (authenticated by the connection or the radio session).
    pub peer: PeerId,
    /// What it asks.
    pub request: Req,
    /// Where the answer goes; answer through [`crate::Net::respond_auction`] and friends.
    pub reply: Reply<Resp>,
}

/// An auction request (quote or run) for the market's host.
pub type AuctionRequest = InboundRequest<auction::Request, auction::Response>;
/// A shard request for the storage host.
pub type ShardRequest = InboundRequest<shards::Request, shards::Response>;

/// Discovery and connection events, for the peer registry.
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// The swarm listens on a new address.
    Listening(Multiaddr),
    /// A listen address went away.
    ListenExpired(Multiaddr),
    /// A first connection to `peer` opened; `dialed` is the address when we dialled.
    Connected {
        /// The peer.
        peer: PeerId,
        /// The address we dialled (none for inbound connections).
        dialed: Option<Multiaddr>,
    },
    /// The last connection to `peer` closed.
    Disconnected(PeerId),
    /// A peer's identify info: the addresses it says it listens on (capped).
    Identified {
        /// The peer.
        peer: PeerId,
        /// Its listen addresses, without `/p2p/`.
        listen_addrs: Vec<Multiaddr>,
    },
    /// mDNS found peers on the LAN.
    Mdns(Vec<(PeerId, Multiaddr)>),
    /// Kademlia learnt addresses of a peer.
    Routing {
        /// The peer.
        peer: PeerId,
        /// Its addresses.
        addrs: Vec<Multiaddr>,
    },
}

/// A gossip message or subscription on a topic a service registered.
#[derive(Debug, Clone)]
pub enum GossipEvent {
    /// A message awaiting the service's verdict ([`crate::Net::validate`]); it is relayed
    /// only once accepted.
    Message {
        /// Its topic.
        topic: TopicHash,
        /// The payload (unsigned envelope: the payload carries its own signatures).
        data: Vec<u8>,
        /// The peer that forwarded it.
        from: PeerId,
        /// Id for the verdict.
        id: MessageId,
    },
    /// A peer subscribed to the topic.
    Subscribed {
        /// The peer.
        peer: PeerId,
        /// The topic.
        topic: TopicHash,
    },
}

/// Ledger-sync protocol traffic, for the ledger service.
#[derive(Debug)]
pub enum SyncEvent {
    /// A peer asks for tips, blocks or transactions.
    Request {
        /// The peer.
        peer: PeerId,
        /// Its request.
        request: ledger_sync::Request,
        /// Answer through [`crate::LedgerOut::Respond`].
        channel: ResponseChannel<ledger_sync::Response>,
    },
    /// A peer answered one of our requests.
    Response {
        /// The peer.
        peer: PeerId,
        /// Its answer.
        response: ledger_sync::Response,
    },
}

/// The services' inboxes, given to the router when it is built.
#[derive(Debug)]
pub struct Inbound {
    /// Discovery and connection events (the peer registry).
    pub peers: Sink<PeerEvent>,
    /// Connection events for other services (the ledger catches up with a new peer).
    pub connections: Vec<Sink<PeerEvent>>,
    /// Gossip topics to subscribe to, each with its service.
    pub topics: Vec<(String, Sink<GossipEvent>)>,
    /// Auction requests (the market's host).
    pub auction: Sink<AuctionRequest>,
    /// Shard requests (the storage host).
    pub shards: Sink<ShardRequest>,
    /// Ledger-sync traffic.
    pub sync: Sink<SyncEvent>,
}

impl Default for Inbound {
    /// Nothing attached: requests are answered busy or refused, gossip is ignored.
    fn default() -> Self {
        Inbound {
            peers: Sink::refuse(),
            connections: Vec::new(),
            topics: Vec::new(),
            auction: Sink::refuse(),
            shards: Sink::refuse(),
            sync: Sink::refuse(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_flood_beyond_the_queue_comes_back_to_the_router_and_never_blocks() {
        let (tx, mut rx) = mpsc::channel::<u32>(4);
        let sink = Sink::channel(tx);
        let refused: Vec<u32> = (0..100)
            .filter_map(|i| sink.offer(i).err().flatten())
            .collect();
        // Four queued, the other 96 handed back so the router can answer busy for them.
        assert_eq!(refused, (4..100).collect::<Vec<_>>());
        for want in 0..4 {
            assert_eq!(rx.try_recv().unwrap(), want);
        }
        // Room again: taken.
        assert!(sink.send(100));
        // A stopped service refuses too, and the event still comes back.
        drop(rx);
        assert_eq!(sink.offer(101), Err(Some(101)));
    }

    #[test]
    fn a_sink_into_another_input_type_and_a_refusing_sink_take_nothing_when_full() {
        #[derive(Debug, PartialEq)]
        struct Wrapped(u32);
        impl From<u32> for Wrapped {
            fn from(v: u32) -> Self {
                Wrapped(v)
            }
        }
        let (tx, mut rx) = mpsc::channel::<Wrapped>(1);
        let sink = Sink::<u32>::channel_into(tx);
        assert!(sink.send(1));
        assert!(!sink.send(2), "full");
        assert_eq!(rx.try_recv().unwrap(), Wrapped(1));
        assert!(!Sink::<u32>::refuse().send(3));
    }
}
