//! The shard host's task: inbound shard requests from the router to the [`ShardHost`].
//!
//! A request either gets an immediate answer (busy, refused, a cached read) or becomes a
//! task bounded by the host's semaphores, which answers through the network when done. The
//! router never touches the disk.

use std::sync::Arc;

use offgrid_net::{Net, ShardRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::host::{Handled, ShardHost};

/// Capacity of the shard host's request queue. Beyond it the router answers busy.
pub const QUEUE: usize = 256;

/// Serves inbound shard requests until cancelled.
pub async fn serve(
    host: Arc<ShardHost>,
    mut requests: mpsc::Receiver<ShardRequest>,
    net: Arc<dyn Net>,
    cancel: CancellationToken,
) {
    loop {
        let r = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(r) = requests.recv() => r,
            else => break,
        };
        match host.handle(r.peer, r.request) {
            Handled::Now(response) => net.respond_shard(r.reply, response).await,
            Handled::Later(work) => {
                let net = net.clone();
                tokio::spawn(async move {
                    let response = work.await;
                    net.respond_shard(r.reply, response).await;
                });
            }
        }
    }
}
