//! The event loop's side of the shard protocol: route inbound requests to the
//! [`ShardHost`], outbound ones from [`Client::shard_request`] to the swarm.
//!
//! The loop never touches the disk. An inbound request either gets an immediate answer
//! (busy, refused) or becomes a task bounded by the host's semaphores; the task sends the
//! answer back through a bounded channel that [`EventLoop::run`] selects on, and the loop
//! puts it on the wire.

use std::{collections::HashMap, sync::Arc};

use libp2p::{
    request_response::{self, OutboundRequestId, ResponseChannel},
    PeerId,
};
use offgrid_behaviours::shards::{Event, Request, Response};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::{Client, ClientError, Command, EventLoop};
use crate::files::host::{Handled, ShardHost};

/// A finished inbound request on its way back to the wire.
pub(crate) type Done = (ResponseChannel<Response>, Response);

/// Capacity of the channel of finished inbound requests. The host's semaphores bound the
/// tasks that can be running, so senders only wait when the loop is far behind.
const DONE_QUEUE: usize = 256;

/// Shard-protocol state owned by the event loop.
pub struct ShardsState {
    host: Option<Arc<ShardHost>>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, String>>>,
    done_tx: mpsc::Sender<Done>,
    /// Finished inbound requests; selected on in `run()`.
    pub(super) done: mpsc::Receiver<Done>,
}

impl Default for ShardsState {
    fn default() -> Self {
        let (done_tx, done) = mpsc::channel(DONE_QUEUE);
        ShardsState {
            host: None,
            pending: HashMap::new(),
            done_tx,
            done,
        }
    }
}

impl EventLoop {
    /// Makes this node a shard host: inbound shard requests go to `host`. Without one,
    /// they are refused.
    pub fn attach_shard_host(&mut self, host: Arc<ShardHost>) {
        self.shards.host = Some(host);
    }

    pub(super) fn on_shard_command(
        &mut self,
        peer: PeerId,
        request: Request,
        reply: oneshot::Sender<Result<Response, String>>,
    ) {
        if peer == self.identity.peer_id() {
            let _ = reply.send(Err("cannot send a shard request to ourselves".into()));
            return;
        }
        self.ensure_dialing(peer);
        let id = self
            .swarm
            .behaviour_mut()
            .shards
            .send_request(&peer, request);
        self.shards.pending.insert(id, reply);
    }

    pub(super) fn on_shard_done(&mut self, (channel, response): Done) {
        if self
            .swarm
            .behaviour_mut()
            .shards
            .send_response(channel, response)
            .is_err()
        {
            debug!("shard client went away before the answer");
        }
    }

    pub(super) fn on_shards(&mut self, ev: Event) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.on_shard_request(peer, request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.shards.pending.remove(&request_id) {
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
                debug!(%peer, %error, "shard request failed");
                if let Some(reply) = self.shards.pending.remove(&request_id) {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "shard answer not delivered");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_shard_request(
        &mut self,
        peer: PeerId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        let Some(host) = self.shards.host.clone() else {
            let refused = Response::Refused {
                reason: "this node does not host shards".into(),
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .shards
                .send_response(channel, refused);
            return;
        };
        match host.handle(peer, request) {
            Handled::Now(response) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .shards
                    .send_response(channel, response);
            }
            Handled::Later(work) => {
                let done = self.shards.done_tx.clone();
                tokio::spawn(async move {
                    let response = work.await;
                    let _ = done.send((channel, response)).await;
                });
            }
        }
    }
}

impl Client {
    /// Sends a shard-protocol request to `peer` and waits for its answer.
    ///
    /// # Errors
    /// [`ClientError::Refused`] with the transport's reason when no answer came (dial
    /// failure, timeout, connection closed), [`ClientError::Closed`] at shutdown.
    pub async fn shard_request(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, ClientError> {
        self.ask(|reply| Command::Shard {
            peer,
            request,
            reply,
        })
        .await?
        .map_err(ClientError::Refused)
    }
}
