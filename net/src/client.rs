//! The services' side of the swarm: [`Command`]s over a bounded channel, each with a
//! `oneshot` for its reply, behind the [`Net`] trait that services are written against.

use futures::future::BoxFuture;
use libp2p::{
    gossipsub::{MessageAcceptance, MessageId},
    request_response::ResponseChannel,
    Multiaddr, PeerId,
};
use offgrid_behaviours::{auction, ledger_sync, shards};
use tokio::sync::{mpsc, oneshot};

use crate::events::Reply;

/// Capacity of the command channel; callers wait when the router is this far behind.
pub const COMMAND_QUEUE: usize = 1024;

/// Errors talking to the swarm.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The router has stopped (the node is shutting down).
    #[error("the node is shutting down")]
    Closed,
    /// The request failed: the transport's reason (dial failure, timeout, closed stream).
    #[error("{0}")]
    Refused(String),
}

/// What the swarm looks like now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses the swarm listens on.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected: Vec<PeerId>,
}

/// A dial the peer service decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The peer.
    pub peer: PeerId,
    /// Addresses to try.
    pub addrs: Vec<Multiaddr>,
    /// Dial from a fresh port rather than the listen port (avoids simultaneous-open races
    /// between two nodes that found each other at once).
    pub new_port: bool,
    /// Only when not connected and not already dialling.
    pub only_if_disconnected: bool,
}

/// What the ledger service asks of the gossip and sync protocols.
#[derive(Debug)]
pub enum LedgerOut {
    /// Publish on a topic.
    Publish {
        /// Topic name.
        topic: &'static str,
        /// Payload.
        data: Vec<u8>,
    },
    /// The verdict on a gossip message (only accepted messages are relayed).
    Validate {
        /// The message.
        message_id: MessageId,
        /// The peer that forwarded it.
        from: PeerId,
        /// Verdict.
        acceptance: MessageAcceptance,
    },
    /// Send a sync request; its answer comes back as a [`crate::SyncEvent::Response`].
    Request {
        /// To whom.
        peer: PeerId,
        /// What.
        request: ledger_sync::Request,
    },
    /// Answer a peer's sync request.
    Respond {
        /// The pending answer.
        channel: ResponseChannel<ledger_sync::Response>,
        /// The answer.
        response: ledger_sync::Response,
    },
}

/// Requests to the router.
#[derive(Debug)]
pub enum Command {
    /// What the swarm looks like.
    Snapshot(oneshot::Sender<Snapshot>),
    /// An auction request to a peer; the reply waits for its answer.
    Auction {
        /// The host.
        peer: PeerId,
        /// The request.
        request: auction::Request,
        /// Its answer, or why none came.
        reply: oneshot::Sender<Result<auction::Response, ClientError>>,
    },
    /// A shard request to a peer.
    Shard {
        /// The host.
        peer: PeerId,
        /// The request.
        request: shards::Request,
        /// Its answer, or why none came.
        reply: oneshot::Sender<Result<shards::Response, ClientError>>,
    },
    /// Answer an inbound auction request.
    RespondAuction(ResponseChannel<auction::Response>, auction::Response),
    /// Answer an inbound shard request.
    RespondShard(ResponseChannel<shards::Response>, shards::Response),
    /// Gossip and sync for the ledger (no reply).
    Ledger(LedgerOut),
    /// Publish on any topic (announcements); fire and forget.
    Publish {
        /// Topic name.
        topic: String,
        /// Payload.
        data: Vec<u8>,
    },
    /// Verdict on a gossip message from a non-ledger topic.
    Validate {
        /// The message.
        id: MessageId,
        /// The peer that forwarded it.
        from: PeerId,
        /// Verdict.
        acceptance: MessageAcceptance,
    },
    /// Dial a peer.
    DialPeer(Dial),
    /// Dial a bare address.
    DialAddr {
        /// Where.
        addr: Multiaddr,
        /// Whether the dial was started.
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    /// Tell Kademlia where a peer is.
    KadAddress(PeerId, Multiaddr),
    /// Run a Kademlia bootstrap (fails quietly with an empty table).
    KadBootstrap,
}

/// The network as the services see it. [`Client`] is the real one; tests use
/// [`crate::testing::FakeNet`].
pub trait Net: Send + Sync + 'static {
    /// Sends an auction request and waits for the answer.
    fn auction(
        &self,
        peer: PeerId,
        request: auction::Request,
    ) -> BoxFuture<'static, Result<auction::Response, ClientError>>;
    /// Sends a shard request and waits for the answer.
    fn shard(
        &self,
        peer: PeerId,
        request: shards::Request,
    ) -> BoxFuture<'static, Result<shards::Response, ClientError>>;
    /// Answers an inbound auction request (waits while the router is busy: an answer is
    /// never dropped for lack of queue space).
    fn respond_auction(
        &self,
        reply: Reply<auction::Response>,
        response: auction::Response,
    ) -> BoxFuture<'static, ()>;
    /// Answers an inbound shard request (waits while the router is busy).
    fn respond_shard(
        &self,
        reply: Reply<shards::Response>,
        response: shards::Response,
    ) -> BoxFuture<'static, ()>;
    /// Publishes on a topic (best effort: nobody subscribed yet is not an error).
    fn publish(&self, topic: String, data: Vec<u8>);
    /// The verdict on a gossip message.
    fn validate(&self, id: MessageId, from: PeerId, acceptance: MessageAcceptance);
    /// Dials a peer.
    fn dial(&self, dial: Dial);
    /// Tells Kademlia where a peer is.
    fn kad_address(&self, peer: PeerId, addr: Multiaddr);
    /// Runs a Kademlia bootstrap.
    fn kad_bootstrap(&self);
    /// What the swarm looks like.
    fn snapshot(&self) -> BoxFuture<'static, Result<Snapshot, ClientError>>;
}

/// A cloneable handle to the router.
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
}

impl Client {
    /// A client and the receiving end for [`crate::EventLoop::new`].
    pub fn channel() -> (Client, mpsc::Receiver<Command>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        (Client { tx }, rx)
    }

    async fn ask<T>(
        tx: mpsc::Sender<Command>,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ClientError> {
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Sends a command that has no reply, waiting while the router is busy.
    pub async fn send(&self, cmd: Command) -> Result<(), ClientError> {
        self.tx.send(cmd).await.map_err(|_| ClientError::Closed)
    }

    /// Sends a command without waiting. A full queue means the router is far behind; the
    /// command is then dropped, which every fire-and-forget caller tolerates (gossip is
    /// republished, dials are retried, an unanswered request times out at the peer).
    fn fire(&self, cmd: Command) {
        if self.tx.try_send(cmd).is_err() {
            tracing::debug!("router queue full or closed; command dropped");
        }
    }

    /// Hands a ledger output to the router (waits while the router is busy).
    pub async fn ledger(&self, out: LedgerOut) -> Result<(), ClientError> {
        self.send(Command::Ledger(out)).await
    }

    /// Sends an auction request and waits for the answer.
    pub async fn request(
        &self,
        peer: PeerId,
        request: auction::Request,
    ) -> Result<auction::Response, ClientError> {
        Self::ask(self.tx.clone(), |reply| Command::Auction {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Sends a shard request and waits for the answer.
    pub async fn shard_request(
        &self,
        peer: PeerId,
        request: shards::Request,
    ) -> Result<shards::Response, ClientError> {
        Self::ask(self.tx.clone(), |reply| Command::Shard {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Dials an address.
    pub async fn dial_addr(&self, addr: Multiaddr) -> Result<(), ClientError> {
        Self::ask(self.tx.clone(), |reply| Command::DialAddr { addr, reply }).await?
    }

    /// What the swarm looks like.
    pub async fn snapshot(&self) -> Result<Snapshot, ClientError> {
        Self::ask(self.tx.clone(), Command::Snapshot).await
    }
}

impl Net for Client {
    fn auction(
        &self,
        peer: PeerId,
        request: auction::Request,
    ) -> BoxFuture<'static, Result<auction::Response, ClientError>> {
        let c = self.clone();
        Box::pin(async move { c.request(peer, request).await })
    }

    fn shard(
        &self,
        peer: PeerId,
        request: shards::Request,
    ) -> BoxFuture<'static, Result<shards::Response, ClientError>> {
        let c = self.clone();
        Box::pin(async move { c.shard_request(peer, request).await })
    }

    fn respond_auction(
        &self,
        reply: Reply<auction::Response>,
        response: auction::Response,
    ) -> BoxFuture<'static, ()> {
        let c = self.clone();
        Box::pin(async move {
            match reply {
                Reply::Swarm(ch) => {
                    let _ = c.send(Command::RespondAuction(ch, response)).await;
                }
                Reply::Local(tx) => {
                    let _ = tx.send(response);
                }
            }
        })
    }

    fn respond_shard(
        &self,
        reply: Reply<shards::Response>,
        response: shards::Response,
    ) -> BoxFuture<'static, ()> {
        let c = self.clone();
        Box::pin(async move {
            match reply {
                Reply::Swarm(ch) => {
                    let _ = c.send(Command::RespondShard(ch, response)).await;
                }
                Reply::Local(tx) => {
                    let _ = tx.send(response);
                }
            }
        })
    }

    fn publish(&self, topic: String, data: Vec<u8>) {
        self.fire(Command::Publish { topic, data });
    }

    fn validate(&self, id: MessageId, from: PeerId, acceptance: MessageAcceptance) {
        self.fire(Command::Validate {
            id,
            from,
            acceptance,
        });
    }

    fn dial(&self, dial: Dial) {
        self.fire(Command::DialPeer(dial));
    }

    fn kad_address(&self, peer: PeerId, addr: Multiaddr) {
        self.fire(Command::KadAddress(peer, addr));
    }

    fn kad_bootstrap(&self) {
        self.fire(Command::KadBootstrap);
    }

    fn snapshot(&self) -> BoxFuture<'static, Result<Snapshot, ClientError>> {
        let c = self.clone();
        Box::pin(async move { Client::snapshot(&c).await })
    }
}
