//! How the router's events reach the ledger service: the ledger topics, connection events
//! and sync traffic, each converted to a [`LedgerIn`] and handed over without waiting.

use libp2p::gossipsub::{IdentTopic, TopicHash};
use offgrid_behaviours::ledger_sync::{BLOCKS_TOPIC, REPUTATION_TOPIC, TX_TOPIC};
use offgrid_net::{GossipEvent, PeerEvent, Sink, SyncEvent};
use tokio::sync::mpsc;

use super::{GossipKind, LedgerIn};

fn kind_of(topic: &TopicHash) -> Option<GossipKind> {
    [
        (BLOCKS_TOPIC, GossipKind::Blocks),
        (TX_TOPIC, GossipKind::Tx),
        (REPUTATION_TOPIC, GossipKind::Reputation),
    ]
    .into_iter()
    .find(|(t, _)| IdentTopic::new(*t).hash() == *topic)
    .map(|(_, k)| k)
}

fn gossip(ev: GossipEvent) -> Option<LedgerIn> {
    match ev {
        GossipEvent::Message {
            topic,
            data,
            from,
            id,
        } => Some(LedgerIn::Gossip {
            kind: kind_of(&topic)?,
            data,
            from,
            message_id: id,
        }),
        // Only a new transaction subscriber makes the wallet republish what is pending.
        GossipEvent::Subscribed { peer, topic } => {
            (kind_of(&topic) == Some(GossipKind::Tx)).then_some(LedgerIn::Subscribed(peer))
        }
    }
}

/// The ledger's sinks: its three topics, connection events and sync traffic.
pub struct Sinks {
    /// Topic name and sink, per ledger topic.
    pub topics: Vec<(String, Sink<GossipEvent>)>,
    /// Peers coming and going.
    pub connections: Sink<PeerEvent>,
    /// Sync requests and answers.
    pub sync: Sink<SyncEvent>,
}

/// Builds the sinks that feed `tx`. A full queue refuses: gossip is then ignored (not
/// relayed) and a sync request fails at the peer, rather than the swarm waiting.
pub fn sinks(tx: &mpsc::Sender<LedgerIn>) -> Sinks {
    let topics = [BLOCKS_TOPIC, TX_TOPIC, REPUTATION_TOPIC]
        .into_iter()
        .map(|t| {
            let tx = tx.clone();
            let sink = Sink::new(move |ev| match gossip(ev) {
                Some(i) => tx.try_send(i).map_err(|_| None),
                None => Err(None),
            });
            (t.to_owned(), sink)
        })
        .collect();
    let ctx = tx.clone();
    let connections = Sink::new(move |ev| {
        let i = match ev {
            PeerEvent::Connected { peer, .. } => LedgerIn::PeerUp(peer),
            PeerEvent::Disconnected(peer) => LedgerIn::PeerDown(peer),
            _ => return Ok(()),
        };
        ctx.try_send(i).map_err(|_| None)
    });
    let stx = tx.clone();
    let sync = Sink::new(move |ev| {
        let i = match ev {
            SyncEvent::Request {
                peer,
                request,
                channel,
            } => LedgerIn::SyncRequest {
                peer,
                request,
                channel,
            },
            SyncEvent::Response { peer, response } => LedgerIn::SyncResponse { peer, response },
        };
        stx.try_send(i).map_err(|_| None)
    });
    Sinks {
        topics,
        connections,
        sync,
    }
}
