//! One shard to or from one host, with retries.
//!
//! A transport failure (dial refused, timeout, closed connection) is retried up to
//! `storage.max_attempts` times with exponential backoff (100 ms, 200 ms, 400 ms, … capped
//! at 2 s) plus up to 100 % random jitter, so that many clients that failed together do not
//! come back together. A busy host is asked again after its `retry_after_ms` plus jitter;
//! busy answers do not use up attempts but are capped at [`MAX_BUSY_WAITS`]. Answers that
//! will not change (quota or another limit, refused, not found, corrupt) return at once so
//! the caller can try another host. A get's fetch batches are the exception: one attempt
//! each, since the get has other shards to ask and drops a failed host at once.
//!
//! A request's latency goes into the host's stats; a batch of fetches counts as one request
//! per shard, each taking its share of the batch's time, so that hosts asked for batches of
//! different sizes (or single shards) compare fairly when a get ranks them.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use offgrid_behaviours::shards::{Bytes, FetchedShard, Request, Response, ShardData, ShardOutcome};

use super::Storage;
use offgrid_net::ClientError;

/// Most busy answers waited out per request before giving up on the host.
pub const MAX_BUSY_WAITS: u32 = 200;
const BASE_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Outcome of a store on one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Durable on the host.
    Stored,
    /// The host is full: do not ask it again in this operation.
    Full,
    /// The host did not answer (after retries): treat it as down.
    Unreachable(String),
    /// The host refused: try another.
    Refused(String),
}

/// Outcome of a fetch from one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The bytes (not yet checked against the manifest).
    Bytes(Vec<u8>),
    /// The host does not have it, or found it rotten.
    Missing {
        /// The host reported it corrupt on its disk.
        corrupt: bool,
    },
    /// The host did not answer (after retries): treat it as down.
    Unreachable(String),
}

fn jitter(d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::random_range(0..ms))
}

fn backoff(attempt: u32) -> Duration {
    let d = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    d + jitter(d)
}

impl Storage {
    /// Sends `request` to `peer`, retrying transport failures and busy answers.
    pub(crate) async fn ask_host(
        &self,
        peer: PeerId,
        request: Request,
    ) -> Result<Response, String> {
        self.ask_host_for(peer, request, 1, self.cfg.max_attempts)
            .await
    }

    /// [`Storage::ask_host`] for a request about `shards` shards: the latency observed is
    /// the request's time divided among them; `attempts` transport failures end it.
    async fn ask_host_for(
        &self,
        peer: PeerId,
        request: Request,
        shards: u32,
        attempts: u32,
    ) -> Result<Response, String> {
        let mut attempt = 0;
        let mut busy = 0;
        loop {
            let started = Instant::now();
            match self.client.shard_request(peer, request.clone()).await {
                Ok(Response::Busy { retry_after_ms }) => {
                    busy += 1;
                    if busy > MAX_BUSY_WAITS {
                        return Err("host stayed busy".into());
                    }
                    let wait = Duration::from_millis(retry_after_ms.clamp(1, 5_000));
                    tokio::time::sleep(wait + jitter(wait)).await;
                }
                Ok(other) => {
                    self.stats.observe(peer, started.elapsed() / shards.max(1));
                    return Ok(other);
                }
                Err(ClientError::Closed) => return Err("the node is shutting down".into()),
                Err(ClientError::Refused(e)) => {
                    attempt += 1;
                    if attempt >= attempts.max(1) {
                        return Err(e);
                    }
                    tokio::time::sleep(backoff(attempt - 1)).await;
                }
            }
        }
    }

    /// Stores one shard on one host.
    pub(crate) async fn store_on(&self, peer: PeerId, hash: &str, bytes: &[u8]) -> StoreOutcome {
        let request = Request::Store {
            hash: hash.to_owned(),
            bytes: Bytes(bytes.to_vec()),
        };
        let host = peer.to_string();
        match self.ask_host(peer, request).await {
            Ok(Response::Stored { .. }) => {
                self.reputation.hit(&host);
                StoreOutcome::Stored
            }
            Ok(Response::QuotaExceeded { used, quota }) => {
                tracing::debug!(%peer, used, quota, "host full");
                StoreOutcome::Full
            }
            Ok(Response::LimitReached { code, used, limit }) => {
                tracing::debug!(%peer, code = code.as_str(), used, limit, "host limit reached");
                StoreOutcome::Full
            }
            Ok(Response::Refused { reason }) => {
                self.reputation.miss(&host);
                StoreOutcome::Refused(reason)
            }
            Ok(other) => StoreOutcome::Refused(format!("unexpected answer {other:?}")),
            Err(e) => {
                self.reputation.miss(&host);
                StoreOutcome::Unreachable(e)
            }
        }
    }

    /// Stores several shards on one host in one request (one group commit there); one
    /// outcome per shard, in order. A failure of the whole request is every shard's outcome.
    pub(crate) async fn store_batch_on(
        &self,
        peer: PeerId,
        shards: &[(&str, &[u8])],
    ) -> Vec<StoreOutcome> {
        let request = Request::StoreBatch {
            shards: shards
                .iter()
                .map(|(hash, bytes)| ShardData {
                    hash: (*hash).to_owned(),
                    bytes: Bytes(bytes.to_vec()),
                })
                .collect(),
        };
        let host = peer.to_string();
        let all = |o: StoreOutcome| vec![o; shards.len()];
        match self.ask_host(peer, request).await {
            Ok(Response::StoredBatch { outcomes }) if outcomes.len() == shards.len() => {
                let outcomes: Vec<StoreOutcome> = outcomes
                    .into_iter()
                    .map(|o| match o {
                        ShardOutcome::Stored { .. } => StoreOutcome::Stored,
                        ShardOutcome::QuotaExceeded { used, quota } => {
                            tracing::debug!(%peer, used, quota, "host full");
                            StoreOutcome::Full
                        }
                        ShardOutcome::LimitReached { code, used, limit } => {
                            tracing::debug!(%peer, code = code.as_str(), used, limit, "host limit reached");
                            StoreOutcome::Full
                        }
                        ShardOutcome::Busy { .. } => {
                            StoreOutcome::Refused("busy with the same shard".into())
                        }
                        ShardOutcome::Refused { reason } => StoreOutcome::Refused(reason),
                    })
                    .collect();
                if outcomes.contains(&StoreOutcome::Stored) {
                    self.reputation.hit(&host);
                } else if outcomes
                    .iter()
                    .any(|o| matches!(o, StoreOutcome::Refused(_)))
                {
                    self.reputation.miss(&host);
                }
                outcomes
            }
            Ok(Response::QuotaExceeded { used, quota }) => {
                tracing::debug!(%peer, used, quota, "host full");
                all(StoreOutcome::Full)
            }
            Ok(Response::LimitReached { code, used, limit }) => {
                tracing::debug!(%peer, code = code.as_str(), used, limit, "host limit reached");
                all(StoreOutcome::Full)
            }
            Ok(Response::Refused { reason }) => {
                self.reputation.miss(&host);
                all(StoreOutcome::Refused(reason))
            }
            Ok(other) => all(StoreOutcome::Refused(format!(
                "unexpected answer {other:?}"
            ))),
            Err(e) => {
                self.reputation.miss(&host);
                all(StoreOutcome::Unreachable(e))
            }
        }
    }

    /// Fetches one shard from one host.
    pub(crate) async fn fetch_from(&self, peer: PeerId, hash: &str) -> FetchOutcome {
        let request = Request::Fetch {
            hash: hash.to_owned(),
        };
        match self.ask_host(peer, request).await {
            Ok(Response::Shard { bytes }) => FetchOutcome::Bytes(bytes.0),
            Ok(Response::Corrupt) => FetchOutcome::Missing { corrupt: true },
            Ok(_) => FetchOutcome::Missing { corrupt: false },
            Err(e) => FetchOutcome::Unreachable(e),
        }
    }

    /// Fetches several shards from one host in one request; one outcome per hash, in order.
    /// A failure of the whole request is every shard's outcome. The bytes are not yet
    /// checked against the manifest. A transport failure is not retried: a get that has
    /// other hosts to ask moves on at once (busy answers are still waited out).
    pub(crate) async fn fetch_batch_once(
        &self,
        peer: PeerId,
        hashes: Vec<String>,
    ) -> Vec<FetchOutcome> {
        let count = hashes.len();
        let all = |o: FetchOutcome| vec![o; count];
        let request = Request::FetchBatch { hashes };
        let shards = u32::try_from(count).unwrap_or(u32::MAX);
        match self.ask_host_for(peer, request, shards, 1).await {
            Ok(Response::ShardBatch { shards }) if shards.len() == count => shards
                .into_iter()
                .map(|s| match s {
                    FetchedShard::Shard { bytes } => FetchOutcome::Bytes(bytes.0),
                    FetchedShard::Corrupt => FetchOutcome::Missing { corrupt: true },
                    // Not there, unreadable, or left out of a full answer: another
                    // candidate is asked.
                    FetchedShard::NotFound
                    | FetchedShard::Busy { .. }
                    | FetchedShard::Refused { .. } => FetchOutcome::Missing { corrupt: false },
                })
                .collect(),
            Ok(other) => {
                tracing::debug!(%peer, answer = ?other, "unexpected answer to a fetch batch");
                all(FetchOutcome::Missing { corrupt: false })
            }
            Err(e) => all(FetchOutcome::Unreachable(e)),
        }
    }
}
