//! The event loop's side of the ledger: gossip topics `offgrid/blocks/1`, `offgrid/tx/1`,
//! `offgrid/reputation/1` and the `/offgrid/ledger-sync/1.0.0` protocol.
//!
//! The loop only routes: inbound gossip and sync traffic goes to the ledger service
//! (`crate::chain`) with `try_send`, never waiting, and the service's [`LedgerOut`]s come
//! back as [`Command::Ledger`]. Gossip is relayed only once the service has validated it; a
//! message the service cannot take (queue full, no ledger) is ignored, not relayed.

use libp2p::{
    gossipsub::{self, IdentTopic, MessageAcceptance, MessageId, TopicHash},
    request_response::{self, ResponseChannel},
    PeerId,
};
use offgrid_behaviours::ledger_sync::{self, BLOCKS_TOPIC, REPUTATION_TOPIC, TX_TOPIC};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{Client, ClientError, Command, EventLoop};
use crate::chain::{GossipKind, LedgerIn};

/// What the ledger service asks the event loop to do.
#[derive(Debug)]
pub enum LedgerOut {
    /// Publish on a ledger topic.
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
    /// Send a sync request.
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

/// The event loop's link to the ledger service.
#[derive(Debug, Default)]
pub struct LedgerLink {
    tx: Option<mpsc::Sender<LedgerIn>>,
}

impl Client {
    /// Hands a ledger output to the event loop.
    pub async fn ledger(&self, out: LedgerOut) -> Result<(), ClientError> {
        self.tx
            .send(Command::Ledger(out))
            .await
            .map_err(|_| ClientError::Closed)
    }
}

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

impl EventLoop {
    /// Connects the loop to the ledger service; call before [`EventLoop::run`].
    pub fn attach_ledger(&mut self, tx: mpsc::Sender<LedgerIn>) {
        self.ledger.tx = Some(tx);
    }

    /// Subscribes to the ledger topics.
    pub(super) fn ledger_subscribe(&mut self) {
        if self.ledger.tx.is_none() {
            return;
        }
        for t in [BLOCKS_TOPIC, TX_TOPIC, REPUTATION_TOPIC] {
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&IdentTopic::new(t))
            {
                warn!(topic = t, error = %e, "cannot subscribe");
            }
        }
    }

    /// Whether a gossip topic belongs to the ledger.
    pub(super) fn is_ledger_topic(&self, topic: &TopicHash) -> bool {
        kind_of(topic).is_some()
    }

    fn send_to_ledger(&mut self, input: LedgerIn) -> Result<(), Box<LedgerIn>> {
        match &self.ledger.tx {
            Some(tx) => tx.try_send(input).map_err(|e| match e {
                mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => {
                    Box::new(i)
                }
            }),
            None => Err(Box::new(input)),
        }
    }

    /// A gossip message on a ledger topic: the service validates it later.
    pub(super) fn on_ledger_gossip(
        &mut self,
        message: gossipsub::Message,
        from: PeerId,
        message_id: MessageId,
    ) {
        let Some(kind) = kind_of(&message.topic) else {
            return;
        };
        let input = LedgerIn::Gossip {
            kind,
            data: message.data,
            from,
            message_id,
        };
        if let Err(LedgerIn::Gossip { message_id, .. }) = self.send_to_ledger(input).map_err(|b| *b)
        {
            debug!(peer = %from, "ledger busy; gossip ignored");
            self.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&message_id, &from, MessageAcceptance::Ignore);
        }
    }

    /// A peer connected (`up`) or lost its last connection.
    pub(super) fn on_ledger_peer(&mut self, peer: PeerId, up: bool) {
        let input = if up {
            LedgerIn::PeerUp(peer)
        } else {
            LedgerIn::PeerDown(peer)
        };
        let _ = self.send_to_ledger(input);
    }

    /// A peer subscribed to a topic.
    pub(super) fn on_ledger_subscribed(&mut self, peer: PeerId, topic: &TopicHash) {
        if kind_of(topic) == Some(GossipKind::Tx) {
            let _ = self.send_to_ledger(LedgerIn::Subscribed(peer));
        }
    }

    /// Sync protocol events.
    pub(super) fn on_ledger_sync(&mut self, ev: ledger_sync::Event) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    // Dropping the channel when the service is busy fails the peer's request.
                    let _ = self.send_to_ledger(LedgerIn::SyncRequest {
                        peer,
                        request,
                        channel,
                    });
                }
                request_response::Message::Response { response, .. } => {
                    let _ = self.send_to_ledger(LedgerIn::SyncResponse { peer, response });
                }
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "ledger sync request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "ledger sync answer not delivered");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Carries out what the ledger service asked.
    pub(super) fn on_ledger_command(&mut self, out: LedgerOut) {
        match out {
            LedgerOut::Publish { topic, data } => {
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(IdentTopic::new(topic), data)
                {
                    // Typically NoPeersSubscribedToTopic: the service republishes pending
                    // items when a peer subscribes, and sync fills any gap.
                    debug!(topic, error = %e, "ledger gossip not published");
                }
            }
            LedgerOut::Validate {
                message_id,
                from,
                acceptance,
            } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &from, acceptance);
            }
            LedgerOut::Request { peer, request } => {
                self.swarm
                    .behaviour_mut()
                    .ledger_sync
                    .send_request(&peer, request);
            }
            LedgerOut::Respond { channel, response } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .ledger_sync
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!("peer went away before the ledger sync answer");
                }
            }
        }
    }
}
