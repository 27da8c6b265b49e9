//! A fake [`Net`] for unit tests of the services: it records what a service sends and
//! answers outbound requests from a script, with no swarm and no sockets.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;
use libp2p::{
    gossipsub::{MessageAcceptance, MessageId},
    Multiaddr, PeerId,
};
use offgrid_behaviours::{auction, shards};

use crate::{ClientError, Dial, Net, Reply, Snapshot};

/// Something a service did through the fake.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// An auction request.
    Auction(PeerId, auction::Request),
    /// A shard request (its kind, as debug text: shard requests carry bulk bytes).
    Shard(PeerId, String),
    /// An answer to an inbound auction request.
    AuctionAnswer(auction::Response),
    /// An answer to an inbound shard request (debug text).
    ShardAnswer(String),
    /// A publication.
    Publish(String, Vec<u8>),
    /// A gossip verdict.
    Validate(MessageId, PeerId, MessageAcceptance),
    /// A dial.
    Dial(Dial),
    /// A Kademlia address.
    KadAddress(PeerId, Multiaddr),
    /// A Kademlia bootstrap.
    KadBootstrap,
}

/// Answers auction requests in code (after a delay, never, from a real host…).
pub type AuctionResponder = Arc<
    dyn Fn(PeerId, auction::Request) -> BoxFuture<'static, Result<auction::Response, ClientError>>
        + Send
        + Sync,
>;
/// Answers shard requests in code.
pub type ShardResponder = Arc<
    dyn Fn(PeerId, shards::Request) -> BoxFuture<'static, Result<shards::Response, ClientError>>
        + Send
        + Sync,
>;

#[derive(Default)]
struct State {
    sent: Vec<Sent>,
    auction: HashMap<PeerId, VecDeque<Result<auction::Response, ClientError>>>,
    shard: HashMap<PeerId, VecDeque<Result<shards::Response, ClientError>>>,
    auction_responder: Option<AuctionResponder>,
    shard_responder: Option<ShardResponder>,
    snapshot: Snapshot,
}

/// The fake. Clones share their state.
#[derive(Clone, Default)]
pub struct FakeNet {
    state: Arc<Mutex<State>>,
}

impl FakeNet {
    /// An empty fake: every request fails as if the peer were unreachable.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A test that panicked while holding the lock has failed already.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// Queues `peer`'s next answer to an auction request.
    pub fn answer_auction(&self, peer: PeerId, r: Result<auction::Response, ClientError>) {
        self.with(|s| s.auction.entry(peer).or_default().push_back(r));
    }

    /// Queues `peer`'s next answer to a shard request.
    pub fn answer_shard(&self, peer: PeerId, r: Result<shards::Response, ClientError>) {
        self.with(|s| s.shard.entry(peer).or_default().push_back(r));
    }

    /// Answers every auction request with `f` instead of the queued answers (still
    /// recorded in [`FakeNet::sent`]).
    pub fn respond_auctions_with(&self, f: AuctionResponder) {
        self.with(|s| s.auction_responder = Some(f));
    }

    /// Answers every shard request with `f` instead of the queued answers.
    pub fn respond_shards_with(&self, f: ShardResponder) {
        self.with(|s| s.shard_responder = Some(f));
    }

    /// Sets what [`Net::snapshot`] returns.
    pub fn set_snapshot(&self, snap: Snapshot) {
        self.with(|s| s.snapshot = snap);
    }

    /// Everything sent so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.with(|s| s.sent.clone())
    }

    /// Forgets what was sent.
    pub fn clear(&self) {
        self.with(|s| s.sent.clear());
    }

    fn record(&self, x: Sent) {
        self.with(|s| s.sent.push(x));
    }
}

fn unreachable<T>() -> Result<T, ClientError> {
    Err(ClientError::Refused("no scripted answer".into()))
}

impl Net for FakeNet {
    fn auction(
        &self,
        peer: PeerId,
        request: auction::Request,
    ) -> BoxFuture<'static, Result<auction::Response, ClientError>> {
        self.record(Sent::Auction(peer, request.clone()));
        if let Some(f) = self.with(|s| s.auction_responder.clone()) {
            return f(peer, request);
        }
        let r = self.with(|s| s.auction.get_mut(&peer).and_then(VecDeque::pop_front));
        Box::pin(async move { r.unwrap_or_else(unreachable) })
    }

    fn shard(
        &self,
        peer: PeerId,
        request: shards::Request,
    ) -> BoxFuture<'static, Result<shards::Response, ClientError>> {
        self.record(Sent::Shard(peer, format!("{request:?}")));
        if let Some(f) = self.with(|s| s.shard_responder.clone()) {
            return f(peer, request);
        }
        let r = self.with(|s| s.shard.get_mut(&peer).and_then(VecDeque::pop_front));
        Box::pin(async move { r.unwrap_or_else(unreachable) })
    }

    fn respond_auction(
        &self,
        reply: Reply<auction::Response>,
        response: auction::Response,
    ) -> BoxFuture<'static, ()> {
        self.record(Sent::AuctionAnswer(response.clone()));
        if let Reply::Local(tx) = reply {
            let _ = tx.send(response);
        }
        Box::pin(async {})
    }

    fn respond_shard(
        &self,
        reply: Reply<shards::Response>,
        response: shards::Response,
    ) -> BoxFuture<'static, ()> {
        self.record(Sent::ShardAnswer(format!("{response:?}")));
        if let Reply::Local(tx) = reply {
            let _ = tx.send(response);
        }
        Box::pin(async {})
    }

    fn publish(&self, topic: String, data: Vec<u8>) {
        self.record(Sent::Publish(topic, data));
    }

    fn validate(&self, id: MessageId, from: PeerId, acceptance: MessageAcceptance) {
        self.record(Sent::Validate(id, from, acceptance));
    }

    fn dial(&self, dial: Dial) {
        self.record(Sent::Dial(dial));
    }

    fn kad_address(&self, peer: PeerId, addr: Multiaddr) {
        self.record(Sent::KadAddress(peer, addr));
    }

    fn kad_bootstrap(&self) {
        self.record(Sent::KadBootstrap);
    }

    fn snapshot(&self) -> BoxFuture<'static, Result<Snapshot, ClientError>> {
        let s = self.with(|s| s.snapshot.clone());
        Box::pin(async move { Ok(s) })
    }
}
