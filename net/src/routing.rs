//! Routing of the request-response protocols: an inbound request goes to its service's
//! sink (or is answered busy when the service cannot take it now), a response completes the
//! pending outbound request it answers.

use std::collections::HashMap;

use libp2p::{
    request_response::{self, Message, OutboundRequestId},
    PeerId,
};
use offgrid_behaviours::{auction, ledger_sync, shards};
use tokio::sync::oneshot;
use tracing::debug;

use crate::{
    client::ClientError,
    event_loop::EventLoop,
    events::{InboundRequest, Reply, SyncEvent},
};

/// What a host's queue being full tells the broker: come back shortly.
const BUSY_RETRY_MS: u64 = 200;

/// Outbound requests waiting for their answer, by request id.
pub(crate) type Pending<R> = HashMap<OutboundRequestId, oneshot::Sender<Result<R, ClientError>>>;

impl EventLoop {
    pub(crate) fn on_auction(&mut self, ev: auction::Event) {
        let Some((peer, request, channel)) = route_response(ev, &mut self.auctions, "auction")
        else {
            return;
        };
        let reply = Reply::Swarm(channel);
        let req = InboundRequest {
            peer,
            request,
            reply,
        };
        // A host that cannot take the request now gets it answered busy for it.
        if let Err(Some(req)) = self.inbound.auction.offer(req) {
            if let Reply::Swarm(ch) = req.reply {
                let busy = auction::Response::Busy {
                    retry_after_ms: BUSY_RETRY_MS,
                };
                let _ = self.swarm.behaviour_mut().auction.send_response(ch, busy);
            }
        }
    }

    pub(crate) fn on_shards(&mut self, ev: shards::Event) {
        let Some((peer, request, channel)) = route_response(ev, &mut self.shards, "shard") else {
            return;
        };
        let req = InboundRequest {
            peer,
            request,
            reply: Reply::Swarm(channel),
        };
        if let Err(Some(req)) = self.inbound.shards.offer(req) {
            if let Reply::Swarm(ch) = req.reply {
                let busy = shards::Response::Busy {
                    retry_after_ms: BUSY_RETRY_MS,
                };
                let _ = self.swarm.behaviour_mut().shards.send_response(ch, busy);
            }
        }
    }

    pub(crate) fn on_sync(&mut self, ev: ledger_sync::Event) {
        let ev = match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request {
                    request, channel, ..
                } => SyncEvent::Request {
                    peer,
                    request,
                    channel,
                },
                Message::Response { response, .. } => SyncEvent::Response { peer, response },
            },
            request_response::Event::OutboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "ledger sync request failed");
                return;
            }
            _ => return,
        };
        // A busy ledger drops the channel, which fails the peer's request.
        if !self.inbound.sync.send(ev) {
            debug!("ledger busy; sync traffic dropped");
        }
    }
}

/// Completes our pending outbound requests; returns an inbound request for a service.
fn route_response<Req, Resp>(
    ev: request_response::Event<Req, Resp>,
    pending: &mut Pending<Resp>,
    what: &str,
) -> Option<(PeerId, Req, request_response::ResponseChannel<Resp>)> {
    match ev {
        request_response::Event::Message { peer, message, .. } => match message {
            Message::Request {
                request, channel, ..
            } => return Some((peer, request, channel)),
            Message::Response {
                request_id,
                response,
            } => {
                if let Some(reply) = pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
        },
        request_response::Event::OutboundFailure {
            request_id,
            error,
            peer,
            ..
        } => {
            debug!(%peer, %error, what, "request failed");
            if let Some(reply) = pending.remove(&request_id) {
                let _ = reply.send(Err(ClientError::Refused(error.to_string())));
            }
        }
        request_response::Event::InboundFailure { peer, error, .. } => {
            debug!(%peer, %error, what, "answer not delivered");
        }
        request_response::Event::ResponseSent { .. } => {}
    }
    None
}
